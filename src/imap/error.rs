//! Errors of the IMAP layer, classified for the people who have to fix them: a refused
//! port, an unknown host, a certificate nobody trusts and a wrong password each say so,
//! name `host:port` and the user, quote the server's own words, and never carry a secret.

use std::fmt;
use std::io;
use std::time::Duration;

use tokio_rustls::rustls;

/// Why a TCP connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectReason {
    /// The host answered, but nothing listens on that port.
    Refused,
    /// The name does not resolve.
    UnknownHost(String),
    /// No answer within `connect-timeout`.
    TimedOut(Duration),
    /// Anything else the operating system reported.
    Other(String),
}

impl fmt::Display for ConnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectReason::Refused => f.write_str("connection refused"),
            ConnectReason::UnknownHost(detail) => write!(f, "unknown host ({detail})"),
            ConnectReason::TimedOut(after) => {
                write!(f, "no answer within {}", humantime::format_duration(*after))
            }
            ConnectReason::Other(detail) => f.write_str(detail),
        }
    }
}

impl crate::diagnostics::HasHint for ConnectReason {
    fn hint(&self) -> Option<String> {
        match self {
            ConnectReason::Refused => Some(
                "check `host`, `port` and `security` (993 is the usual port for `tls`, 143 \
                 for `starttls`/`plain`)"
                    .into(),
            ),
            ConnectReason::UnknownHost(_) => {
                Some("check the spelling of `host` and the DNS".into())
            }
            ConnectReason::TimedOut(_) => Some(
                "a firewall may drop the connection; check `host` and `port`, or raise \
                 `connect-timeout` in [limits]"
                    .into(),
            ),
            ConnectReason::Other(_) => None,
        }
    }
}

/// A sentence for people and, when the fix is knowable, what to do about it (printed as
/// a hint, never part of `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub text: String,
    pub hint: Option<String>,
}

impl Reason {
    pub(crate) fn hinted(text: impl Into<String>, hint: impl Into<String>) -> Reason {
        Reason {
            text: text.into(),
            hint: Some(hint.into()),
        }
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Reason {
        Reason { text, hint: None }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An error of the IMAP layer. `Display` is meant for users; what to do about it comes from
/// [`HasHint`](crate::diagnostics::HasHint). Nothing in here ever holds a password or a token.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to `{host}:{port}`: {reason}")]
    ConnectFailed {
        host: String,
        port: u16,
        reason: ConnectReason,
    },

    #[error("TLS with `{host}:{port}` failed: {reason}")]
    Tls {
        host: String,
        port: u16,
        /// What went wrong, with a hint when the fix is knowable.
        reason: Reason,
    },

    #[error("`{host}:{port}` does not offer STARTTLS")]
    StartTlsUnavailable { host: String, port: u16 },

    #[error("refusing to send credentials in plaintext to `{host}:{port}`: {reason}")]
    PlaintextAuthRefused {
        host: String,
        port: u16,
        reason: Reason,
    },

    #[error("login as `{user}` on `{host}:{port}` failed: {server_text}")]
    AuthFailed {
        user: String,
        host: String,
        port: u16,
        /// The server's words, e.g. `[AUTHENTICATIONFAILED] Authentication failed.`
        server_text: String,
        /// Set when the cause is known on this side (a password LOGIN cannot send).
        hint: Option<String>,
    },

    #[error("no password for `{user}` and no admin login configured for `{host}:{port}`")]
    NoPassword {
        user: String,
        host: String,
        port: u16,
    },

    /// `token-command` (of the server at `host:port`) for `user`; never its output.
    #[error("`token-command` for `{user}` on `{host}:{port}` failed: {reason}")]
    TokenCommand {
        user: String,
        host: String,
        port: u16,
        reason: Reason,
    },

    #[error(
        "no answer from `{host}:{port}` within {} while {doing}",
        humantime::format_duration(*after)
    )]
    Timeout {
        host: String,
        port: u16,
        doing: String,
        after: Duration,
    },

    #[error("`{host}:{port}` refused {command}: {server_text}")]
    Protocol {
        host: String,
        port: u16,
        /// The command, without arguments that could be secret (e.g. `EXAMINE \"Sent\"`).
        command: String,
        server_text: String,
    },

    #[error(
        "folder `{folder}` on `{host}:{port}`: the server returned {received} of {expected} \
         messages"
    )]
    IncompleteFetch {
        host: String,
        port: u16,
        folder: String,
        expected: u32,
        received: u32,
    },

    /// A response bigger than async-imap can hold (a literal over 512 MiB): the message
    /// cannot be read whole, however often it is tried.
    #[error(
        "a response from `{host}:{port}` is larger than the 512 MiB this client can read (while {doing})"
    )]
    TooLarge {
        host: String,
        port: u16,
        doing: String,
    },

    /// A literal announced far bigger than the message it should hold (its size in the
    /// plan): refused before any of it is buffered. The same answer comes every time.
    #[error(
        "`{host}:{port}` announced {announced} bytes while {doing}, more than the {expected} expected"
    )]
    Oversized {
        host: String,
        port: u16,
        doing: String,
        announced: u64,
        /// The limit, with what it is based on.
        expected: String,
    },

    /// A response that is not IMAP as mailshift reads it; the session is unusable.
    #[error("`{host}:{port}` sent {what} while {doing}: `{line}`")]
    Unparsable {
        host: String,
        port: u16,
        doing: String,
        /// What was wrong, in words (`a response that is not valid IMAP (at byte 10)`).
        what: String,
        /// The first bytes of the offending line, control characters escaped.
        line: String,
    },

    #[error("connection to `{host}:{port}` lost: {reason}")]
    Closed {
        host: String,
        port: u16,
        reason: String,
    },
}

impl ImapError {
    /// Whether the message already names the folder it is about.
    pub fn names_folder(&self) -> bool {
        matches!(self, ImapError::IncompleteFetch { .. })
    }

    /// After this error the connection is out of step with the server (or gone): it must
    /// never carry another command.
    pub fn kills_session(&self) -> bool {
        !matches!(
            self,
            ImapError::Protocol { .. } | ImapError::IncompleteFetch { .. }
        )
    }
}

/// `host:port` of a connection, carried into every error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub(crate) fn closed(&self, reason: impl Into<String>) -> ImapError {
        ImapError::Closed {
            host: self.host.clone(),
            port: self.port,
            reason: reason.into(),
        }
    }

    pub(crate) fn protocol(
        &self,
        command: impl Into<String>,
        text: impl Into<String>,
    ) -> ImapError {
        ImapError::Protocol {
            host: self.host.clone(),
            port: self.port,
            command: command.into(),
            server_text: text.into(),
        }
    }

    pub(crate) fn timeout(&self, doing: impl Into<String>, after: Duration) -> ImapError {
        ImapError::Timeout {
            host: self.host.clone(),
            port: self.port,
            doing: doing.into(),
            after,
        }
    }

    /// A response read raw (in a pipeline) that imap-proto cannot parse.
    pub(crate) fn unparsable_raw(&self, doing: &str, raw: &[u8]) -> ImapError {
        self.unparsable(
            doing,
            "a response that is not valid IMAP".to_string(),
            first_bytes(raw),
        )
    }

    fn unparsable(&self, doing: &str, what: String, line: String) -> ImapError {
        ImapError::Unparsable {
            host: self.host.clone(),
            port: self.port,
            doing: doing.to_string(),
            what,
            line,
        }
    }

    /// An I/O error on an established connection: a timeout, a TLS failure, a response
    /// that cannot be parsed, or a loss.
    pub(crate) fn io(&self, err: &io::Error, doing: &str, idle: Duration) -> ImapError {
        if let Some(guard) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<super::transport::GuardError>())
        {
            return self.guarded(guard, doing, idle);
        }
        if err.kind() == io::ErrorKind::TimedOut {
            return self.timeout(doing, idle);
        }
        if let Some((what, line)) = unparsable_response(&err.to_string()) {
            return self.unparsable(doing, what, line);
        }
        if let Some(tls) = rustls_error(err) {
            return ImapError::Tls {
                host: self.host.clone(),
                port: self.port,
                reason: explain_tls(tls),
            };
        }
        // async-imap's buffer stops at 512 MiB (a literal announced bigger than that).
        if err.to_string().contains("incoming data too large") {
            return ImapError::TooLarge {
                host: self.host.clone(),
                port: self.port,
                doing: doing.to_string(),
            };
        }
        // async-imap reports a server that hung up mid-response as "bytes remaining in
        // stream" (an UnexpectedEof); say what it means.
        if err.kind() == io::ErrorKind::UnexpectedEof || err.to_string().contains("bytes remaining")
        {
            return self.closed(format!("the server closed the connection (while {doing})"));
        }
        self.closed(format!("{err} (while {doing})"))
    }

    /// What the transport's guard stopped, for people.
    fn guarded(
        &self,
        guard: &super::transport::GuardError,
        doing: &str,
        idle: Duration,
    ) -> ImapError {
        use super::transport::{GuardError, ASYNC_IMAP_CAP};
        match guard {
            GuardError::Literal {
                announced,
                limit,
                expecting,
            } => match expecting {
                Some(what) if *announced <= ASYNC_IMAP_CAP => ImapError::Oversized {
                    host: self.host.clone(),
                    port: self.port,
                    doing: doing.to_string(),
                    announced: *announced,
                    expected: format!("{limit} bytes ({what})"),
                },
                _ => ImapError::TooLarge {
                    host: self.host.clone(),
                    port: self.port,
                    doing: format!("{doing}; {announced} bytes announced"),
                },
            },
            GuardError::Line => self.closed(format!(
                "the server sent a line longer than {} MiB while {doing}",
                super::transport::MAX_LINE >> 20
            )),
            GuardError::Trickle {
                got,
                literal,
                after,
            } => {
                let part = if *literal > 0 {
                    format!("of a {literal}-byte literal ")
                } else {
                    String::new()
                };
                self.timeout(
                    format!(
                        "{doing} (only {got} bytes {part}arrived in {}, under {} bytes/s)",
                        humantime::format_duration(Duration::from_secs(after.as_secs())),
                        super::transport::MIN_BYTES_PER_SECOND
                    ),
                    idle,
                )
            }
        }
    }

    /// An error from async-imap while running `command`. NO/BAD keep the session; the
    /// rest do not (see [`ImapError::kills_session`]).
    pub(crate) fn async_imap_error(
        &self,
        err: async_imap::error::Error,
        command: &str,
        idle: Duration,
    ) -> ImapError {
        use async_imap::error::Error as E;
        match err {
            E::No(dump) | E::Bad(dump) => self.protocol(command, server_text_from_dump(&dump)),
            E::Io(io) => self.io(&io, command, idle),
            E::ConnectionLost => {
                self.closed(format!("the server closed the connection during {command}"))
            }
            // Parse errors close async-imap's read side: the session is unusable.
            E::Parse(parse) => {
                use async_imap::error::ParseError as P;
                let (what, bytes) = match parse {
                    P::Invalid(bytes) => ("a response that is not valid IMAP", bytes),
                    P::DataNotUtf8(bytes, _) => ("text that is not UTF-8", bytes),
                    P::Unexpected(_) => ("a response that does not belong there", Vec::new()),
                    P::Authentication(text, _) => (
                        "an authentication challenge that is not base64",
                        text.into_bytes(),
                    ),
                    P::ExpectedResponseNotFound(_) => ("no answer to the command", Vec::new()),
                };
                self.unparsable(command, what.to_string(), first_bytes(&bytes))
            }
            other => self.closed(format!("{other} (during {command})")),
        }
    }
}

/// How many bytes of an offending line an error shows.
const SHOWN_BYTES: usize = 60;

/// The start of the first line of `bytes`, at most [`SHOWN_BYTES`], for an error message:
/// control characters escaped (`\u{1b}`), invalid UTF-8 as `\xNN`, `…` when cut.
pub(crate) fn first_bytes(bytes: &[u8]) -> String {
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    let shown = &line[..line.len().min(SHOWN_BYTES)];
    let mut out = String::new();
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if line.len() > SHOWN_BYTES {
        out.push('…');
    }
    out
}

/// async-imap reports a response it cannot parse as an I/O error whose text is two Debug
/// dumps: `Error(Error { input: [42, 32, …], code: TakeWhile1 }) during parsing of "…"` (the
/// input left where nom gave up, then the whole buffer, which starts with the offending
/// response). Returns what was wrong, in words, and the first bytes of that line; `None`
/// for any other error.
pub(crate) fn unparsable_response(text: &str) -> Option<(String, String)> {
    const MARKER: &str = " during parsing of \"";
    let at = text.find(MARKER)?;
    let buffer = unescape_debug_str(&text[at + MARKER.len()..])?;
    // (nom's `input` is where its last alternative gave up, often the line's start: not
    // worth showing.)
    let what = "a response that is not valid IMAP".to_string();
    Some((what, first_bytes(buffer.as_bytes())))
}

fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Turns a rustls error into a sentence with a hint.
pub(crate) fn explain_tls(err: &rustls::Error) -> Reason {
    use rustls::CertificateError as C;
    const HINT_TRUST: &str = "if the server uses a private CA or a self-signed certificate, \
         set `ca-file` to its PEM certificate; in a container without system certificates, \
         set `tls-roots = \"mozilla\"`";
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer | C::BadSignature => Reason::hinted(
                format!("the server's certificate is not signed by a trusted authority ({cert:?})"),
                HINT_TRUST,
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => Reason::hinted(
                format!("the server's certificate is not valid for this host name ({cert:?})"),
                "connect with the name the certificate was issued for",
            ),
            C::Expired | C::ExpiredContext { .. } => {
                format!("the server's certificate has expired ({cert:?})").into()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => format!(
                "the server's certificate is not valid yet; check this machine's clock ({cert:?})"
            )
            .into(),
            C::Revoked => "the server's certificate has been revoked"
                .to_string()
                .into(),
            // webpki refuses a certificate marked CA:TRUE as a server certificate: in
            // practice a self-signed certificate made with openssl's defaults.
            C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
                Reason::hinted(
                    "the server's certificate is self-signed (a CA certificate used as a \
                     server certificate)",
                    HINT_TRUST,
                )
            }
            other => Reason::hinted(
                format!("the server's certificate was rejected ({other:?})"),
                HINT_TRUST,
            ),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            Reason::hinted(
                format!("the server does not speak TLS here ({err})"),
                "port 993 usually speaks implicit TLS (`security = \"tls\"`), port 143 \
                 `starttls` or `plain`",
            )
        }
        other => other.to_string().into(),
    }
}

/// Extracts the server's words from async-imap's error strings, which are Debug dumps such
/// as `code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")` or
/// `outcome: Outcome { tag: .., code: None, information: Some("...") }`.
pub(crate) fn server_text_from_dump(dump: &str) -> String {
    for marker in ["info: Some(\"", "information: Some(\""] {
        if let Some(start) = dump.find(marker) {
            if let Some(text) = unescape_debug_str(&dump[start + marker.len()..]) {
                let code = code_from_dump(dump);
                return match code {
                    Some(code) if !text.starts_with('[') => format!("[{code}] {text}"),
                    _ => text,
                };
            }
        }
    }
    dump.to_string()
}

/// `code: Some(TryCreate)` → `TRYCREATE` (only for codes without arguments).
fn code_from_dump(dump: &str) -> Option<String> {
    let start = dump.find("code: Some(")? + "code: Some(".len();
    let rest = &dump[start..];
    let end = rest.find(')')?;
    let code = &rest[..end];
    if code.chars().all(|c| c.is_ascii_alphanumeric()) && !code.is_empty() {
        Some(code.to_ascii_uppercase())
    } else {
        None
    }
}

/// Reads a Rust Debug string body up to its closing quote.
fn unescape_debug_str(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    // \u{XXXX}
                    let rest: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let hex = rest.trim_start_matches('{');
                    out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

impl crate::diagnostics::HasHint for ImapError {
    fn hint(&self) -> Option<String> {
        match self {
            ImapError::ConnectFailed { reason, .. } => reason.hint(),
            ImapError::Tls { reason, .. }
            | ImapError::PlaintextAuthRefused { reason, .. }
            | ImapError::TokenCommand { reason, .. } => reason.hint.clone(),
            ImapError::StartTlsUnavailable { .. } => Some(
                "use `security = \"tls\"` (usually port 993) if the server speaks implicit \
                 TLS; mailshift never falls back to plaintext"
                    .into(),
            ),
            ImapError::AuthFailed { hint, .. } => hint.clone(),
            ImapError::Timeout { .. } => Some(
                "the server may be overloaded; raise `idle-timeout` (or `connect-timeout`) in \
                 [limits]"
                    .into(),
            ),
            ImapError::IncompleteFetch { .. } => Some(
                "the folder changed during the scan or the server refused the FETCH; run the \
                 command again"
                    .into(),
            ),
            ImapError::TooLarge { .. } => Some(
                "skip such messages with `max-size` in [messages], or copy them another way \
                 (the server announced a message bigger than 512 MiB)"
                    .into(),
            ),
            ImapError::Oversized { .. } => Some(
                "the server announced far more data than the message (or header) it \
                 reported in the inventory; run apply again, and if it persists ask the \
                 server's admin"
                    .into(),
            ),
            ImapError::Unparsable { .. } => Some(
                "the server (or a proxy in front of it) does not speak IMAP as expected; if it \
                 happens again, report the line above to the server's admin"
                    .into(),
            ),
            ImapError::NoPassword { .. }
            | ImapError::Protocol { .. }
            | ImapError::Closed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_is_extracted_async_imap_error_dumps() {
        let cases = [
            (
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#,
                "[AUTHENTICATIONFAILED] Authentication failed.",
            ),
            (
                r#"outcome: Outcome { code: None, information: Some("Mailbox doesn't exist: \"Nope\"") }"#,
                "Mailbox doesn't exist: \"Nope\"",
            ),
            (
                r#"code: Some(TryCreate), info: Some("Mailbox doesn't exist")"#,
                "[TRYCREATE] Mailbox doesn't exist",
            ),
            (r#"code: None, info: Some("caf\u{e9}")"#, "café"),
            ("something else", "something else"),
        ];
        for (dump, want) in cases {
            assert_eq!(server_text_from_dump(dump), want, "{dump}");
        }
    }

    /// A server that greets, then answers a command with `garbage`; returns the error
    /// async-imap gives for it, as the IMAP layer reports it.
    async fn error_for(garbage: &'static [u8]) -> ImapError {
        use tokio::io::AsyncWriteExt as _;
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            server.write_all(garbage).await.unwrap();
            // Keep the pipe open: the error must come from the bytes, not from EOF.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(server);
        });
        let mut client = async_imap::Client::new(client);
        let ep = Endpoint {
            host: "imap.example".into(),
            port: 993,
        };
        match client.read_response().await {
            Err(e) => ep.io(&e, "UID FETCH", Duration::from_secs(1)),
            Ok(r) => panic!("parsed: {r:?}"),
        }
    }

    #[tokio::test]
    async fn unparsable_responses_are_told_in_words_with_the_line() {
        let e = error_for(b"* 1 FETCH (FLAGS (\\Seen) UID)\r\n* 2 FETCH (UID 7)\r\n").await;
        let text = e.to_string();
        assert!(matches!(e, ImapError::Unparsable { .. }), "{e:?}");
        assert_eq!(
            text,
            "`imap.example:993` sent a response that is not valid IMAP while UID FETCH: `* 1 \
             FETCH (FLAGS (\\Seen) UID)`"
        );
        assert!(
            !text.contains("TakeWhile") && !text.contains("input: ["),
            "{text}"
        );
        assert!(e.kills_session());
        use crate::diagnostics::HasHint as _;
        assert!(e.hint().unwrap().contains("does not speak IMAP"));

        // Control characters are escaped, and a long line is cut.
        let e = error_for(b"\x1b[31m* BYE \x07 nonsense nonsense nonsense nonsense nonsense nonsense nonsense\r\n").await;
        let ImapError::Unparsable { line, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(
            line.starts_with("\\u{1b}[31m* BYE \\u{7} nonsense"),
            "{line}"
        );
        assert!(line.ends_with('…'), "{line}");
        assert!(!e.to_string().contains('\x1b'), "{e}");
    }

    #[test]
    fn first_bytes_of_a_line() {
        assert_eq!(first_bytes(b"* OK hi\r\n* more"), "* OK hi");
        assert_eq!(first_bytes(b"\xff\xfeok"), "\\xff\\xfeok");
        assert_eq!(first_bytes(&[b'x'; 100]).chars().count(), SHOWN_BYTES + 1);
        assert_eq!(
            unparsable_response("some other error"),
            None,
            "only async-imap's parse dumps"
        );
    }

    #[test]
    fn connect_reasons_are_distinct() {
        let refused = ConnectReason::Refused.to_string();
        let unknown = ConnectReason::UnknownHost("no such name".into()).to_string();
        let timeout = ConnectReason::TimedOut(Duration::from_secs(30)).to_string();
        assert!(refused.starts_with("connection refused"));
        assert!(unknown.starts_with("unknown host"));
        assert!(timeout.starts_with("no answer within 30s"));
    }

    #[test]
    fn connect_reasons_hint_apart_from_the_message() {
        use crate::diagnostics::HasHint as _;
        let unknown = ConnectReason::UnknownHost("no such name".into());
        assert_eq!(unknown.to_string(), "unknown host (no such name)");
        assert_eq!(
            unknown.hint().as_deref(),
            Some("check the spelling of `host` and the DNS")
        );
        let e = ImapError::ConnectFailed {
            host: "h".into(),
            port: 1,
            reason: ConnectReason::Refused,
        };
        assert!(!e.to_string().contains("hint"), "{e}");
        assert!(e.hint().unwrap().contains("`security`"));
        assert_eq!(ConnectReason::Other("x".into()).hint(), None);
    }

    #[test]
    fn unknown_issuer_hints_at_ca_file() {
        let reason = explain_tls(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert!(
            reason.text.contains("not signed by a trusted authority"),
            "{reason:?}"
        );
        let hint = reason.hint.unwrap();
        assert!(hint.contains("ca-file"), "{hint}");
        assert!(hint.contains("tls-roots"), "{hint}");
    }

    #[test]
    fn protocol_errors_keep_the_session_others_kill_it() {
        let ep = Endpoint {
            host: "h".into(),
            port: 1,
        };
        assert!(!ep.protocol("EXAMINE", "no").kills_session());
        assert!(ep.closed("eof").kills_session());
        assert!(ep.timeout("FETCH", Duration::from_secs(1)).kills_session());
    }
}
