//! Getting a byte stream to an IMAP server up to the point where async-imap takes over:
//! TCP with connect and idle timeouts, implicit TLS or STARTTLS (never a plaintext
//! fallback), the greeting and the pre-login capabilities, all read raw because async-imap's
//! `Client` neither reads the greeting nor offers pre-login CAPABILITY.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream,
    ReadBuf,
};
use tokio::net::TcpStream;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::error::{ConnectReason, Endpoint, ImapError, Reason};
use super::tls;
use crate::settings::{Limits, Security, ServerSettings};

/// A TCP stream whose reads and writes time out after `idle-timeout`.
pub(crate) type Timed = Pin<Box<TimeoutStream<TcpStream>>>;

/// Plain or TLS, below async-imap, with a [`Guard`] on what the server sends.
pub(crate) struct Transport {
    link: Link,
    /// Watches the server's bytes before async-imap buffers them.
    pub(crate) guard: Guard,
    /// While a login runs, a copy of what the server sends: async-imap drops the
    /// `[CAPABILITY …]` code of a tagged OK to AUTHENTICATE, and reading it there saves a
    /// CAPABILITY round trip per connection. Only the server's side is kept (never what is
    /// written, so never a credential).
    tap: Option<Vec<u8>>,
}

/// Most bytes the login tap keeps (a login answer is a few hundred bytes).
const MAX_TAP: usize = 64 * 1024;

/// The byte stream itself.
pub(crate) enum Link {
    Plain(Timed),
    Tls(Box<TlsStream<Timed>>),
}

impl Transport {
    fn new(link: Link, idle: Duration) -> Transport {
        Transport {
            link,
            guard: Guard::new(idle),
            tap: None,
        }
    }

    /// Starts keeping a copy of what is read.
    pub(crate) fn start_tap(&mut self) {
        self.tap = Some(Vec::new());
    }

    /// Stops the tap and returns what it kept.
    pub(crate) fn take_tap(&mut self) -> Vec<u8> {
        self.tap.take().unwrap_or_default()
    }
}

/// What async-imap runs on: buffered, so a command is one write syscall.
pub(crate) type ImapIo = BufStream<Transport>;

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.link {
            Link::Plain(_) => "Transport::Plain",
            Link::Tls(_) => "Transport::Tls",
        })
    }
}

/// Slowest a response may arrive, on average, once it has taken longer than `idle-timeout`
/// (bytes per second). A server that trickles a literal a few bytes at a time never lets
/// `idle-timeout` fire; this rule ends it. No real link is this slow.
pub(crate) const MIN_BYTES_PER_SECOND: u64 = 1024;
/// Longest line (outside literals) accepted from a server: a line without an end would
/// otherwise be buffered up to async-imap's 512 MiB.
pub(crate) const MAX_LINE: u64 = 64 << 20;
/// Async-imap cannot hold a response bigger than this.
pub(crate) const ASYNC_IMAP_CAP: u64 = 512 << 20;

/// Watches the server's bytes as they arrive, below async-imap (which buffers a whole
/// response, literal and all, before anything above sees it): a literal announced bigger
/// than the caller expects ([`Guard::max_literal`], async-imap's 512 MiB cap by default)
/// is refused before a byte of it is buffered; a line longer than [`MAX_LINE`] is refused;
/// a response that arrives at under [`MIN_BYTES_PER_SECOND`] once it has taken longer
/// than `idle-timeout` is a stall (a trickle defeats the idle timeout, which only sees
/// silence). The guard follows the IMAP framing: lines end with LF, and a line ending in
/// `{n}` or `{n+}` is followed by `n` raw bytes.
#[derive(Debug)]
pub(crate) struct Guard {
    idle: Duration,
    /// Largest literal accepted, and what it is expected to hold.
    pub(crate) max_literal: u64,
    pub(crate) expecting: Option<&'static str>,
    /// Raw literal bytes still to come; 0 = in a line.
    literal_left: u64,
    /// Bytes of the current line so far, and its last few bytes (to find `{n}`).
    line_len: u64,
    tail: Vec<u8>,
    /// The response part in progress: when its first byte came, and how many came.
    started: Option<std::time::Instant>,
    got: u64,
    /// Size of the literal in progress (for the error message).
    literal_size: u64,
}

/// Why the guard stopped a connection (an `io::Error`'s inner error, turned into an
/// [`ImapError`] by `Endpoint::io`).
#[derive(Debug)]
pub(crate) enum GuardError {
    /// A literal announced bigger than accepted.
    Literal {
        announced: u64,
        limit: u64,
        expecting: Option<&'static str>,
    },
    /// A line longer than [`MAX_LINE`].
    Line,
    /// Too slow: `got` bytes of a part (`literal` bytes long when it is a literal) in `after`.
    Trickle {
        got: u64,
        literal: u64,
        after: Duration,
    },
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::Literal { announced, .. } => {
                write!(f, "a literal of {announced} bytes announced")
            }
            GuardError::Line => write!(f, "a line longer than {MAX_LINE} bytes"),
            GuardError::Trickle { got, after, .. } => write!(
                f,
                "{got} bytes in {}",
                humantime::format_duration(Duration::from_millis(after.as_millis() as u64))
            ),
        }
    }
}

impl std::error::Error for GuardError {}

impl Guard {
    pub(crate) fn new(idle: Duration) -> Guard {
        Guard {
            idle,
            max_literal: ASYNC_IMAP_CAP,
            expecting: None,
            literal_left: 0,
            line_len: 0,
            tail: Vec::with_capacity(24),
            started: None,
            got: 0,
            literal_size: 0,
        }
    }

    /// Accept literals of at most `max` bytes (holding `what`, for the error) until
    /// [`Guard::reset_limit`].
    pub(crate) fn expect_literals(&mut self, max: u64, what: &'static str) {
        self.max_literal = max.min(ASYNC_IMAP_CAP);
        self.expecting = Some(what);
    }

    pub(crate) fn reset_limit(&mut self) {
        self.max_literal = ASYNC_IMAP_CAP;
        self.expecting = None;
    }

    /// Follows `bytes` (just read from the server) through the framing.
    fn feed(&mut self, bytes: &[u8], now: std::time::Instant) -> Result<(), GuardError> {
        let mut i = 0;
        while i < bytes.len() {
            if self.literal_left > 0 {
                let k = self.literal_left.min((bytes.len() - i) as u64);
                self.literal_left -= k;
                self.got += k;
                i += k as usize;
                if self.literal_left == 0 {
                    self.started = None;
                }
                continue;
            }
            // In a line: look for its end.
            if self.started.is_none() {
                self.started = Some(now);
                self.got = 0;
                self.literal_size = 0;
            }
            let rest = &bytes[i..];
            let end = rest.iter().position(|&b| b == b'\n');
            let take = end.map_or(rest.len(), |e| e + 1);
            let piece = &rest[..take];
            self.line_len += take as u64;
            self.got += take as u64;
            if piece.len() >= 24 {
                self.tail.clear();
                self.tail.extend_from_slice(&piece[piece.len() - 24..]);
            } else {
                self.tail.extend_from_slice(piece);
                let excess = self.tail.len().saturating_sub(24);
                self.tail.drain(..excess);
            }
            i += take;
            if end.is_none() {
                if self.line_len > MAX_LINE {
                    return Err(GuardError::Line);
                }
                continue;
            }
            let announced = literal_size(&self.tail);
            self.line_len = 0;
            self.tail.clear();
            match announced {
                Some(n) if n > self.max_literal => {
                    return Err(GuardError::Literal {
                        announced: n,
                        limit: self.max_literal,
                        expecting: self.expecting,
                    })
                }
                Some(n) if n > 0 => {
                    // The literal is timed on its own, from its announcement.
                    self.literal_left = n;
                    self.literal_size = n;
                    self.started = Some(now);
                    self.got = 0;
                }
                _ => self.started = None,
            }
        }
        if let Some(started) = self.started {
            let after = now.saturating_duration_since(started);
            if after > self.idle
                && (self.got as f64) < MIN_BYTES_PER_SECOND as f64 * after.as_secs_f64()
            {
                return Err(GuardError::Trickle {
                    got: self.got,
                    literal: self.literal_size,
                    after,
                });
            }
        }
        Ok(())
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.link {
            Link::Plain(s) => s.as_mut().poll_read(cx, buf),
            Link::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = polled {
            let fresh = &buf.filled()[before..];
            if let Some(tap) = this.tap.as_mut() {
                let room = MAX_TAP.saturating_sub(tap.len());
                tap.extend_from_slice(&fresh[..fresh.len().min(room)]);
            }
            if let Err(e) = this.guard.feed(fresh, std::time::Instant::now()) {
                return Poll::Ready(Err(io::Error::other(e)));
            }
        }
        polled
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().link {
            Link::Plain(s) => s.as_mut().poll_write(cx, buf),
            Link::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().link {
            Link::Plain(s) => s.as_mut().poll_flush(cx),
            Link::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().link {
            Link::Plain(s) => s.as_mut().poll_shutdown(cx),
            Link::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The server's capabilities (atoms, compared case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities(BTreeSet<String>);

impl Capabilities {
    /// Builds the set from capability atoms as sent (`IMAP4rev1`, `AUTH=PLAIN`, ...).
    pub fn from_atoms<'a>(atoms: impl IntoIterator<Item = &'a str>) -> Capabilities {
        Capabilities(atoms.into_iter().map(|a| a.to_ascii_uppercase()).collect())
    }

    /// `has("UIDPLUS")`, `has("AUTH=PLAIN")`; case-insensitive.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains(&name.to_ascii_uppercase())
    }

    /// All capabilities, upper-cased, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An open, greeted, not yet authenticated connection.
pub(crate) struct Greeted {
    pub stream: ImapIo,
    pub caps: Capabilities,
    pub tls: bool,
}

/// Connects, does TLS as configured and reads the greeting and capabilities.
pub(crate) async fn open(
    server: &ServerSettings,
    limits: &Limits,
    ep: &Endpoint,
) -> Result<Greeted, ImapError> {
    let tcp = tcp_connect(ep, limits.connect_timeout).await?;
    let _ = tcp.set_nodelay(true);
    let mut timed = TimeoutStream::new(tcp);
    timed.set_read_timeout(Some(limits.idle_timeout));
    timed.set_write_timeout(Some(limits.idle_timeout));
    let timed: Timed = Box::pin(timed);

    // TLS handshake and greeting are bounded by the connect timeout as a whole: a server
    // that accepts TCP and then says nothing should not cost `idle-timeout`.
    let setup = async {
        match server.security {
            Security::Tls => {
                let tls = handshake(server, ep, timed).await?;
                let mut stream = BufStream::new(Transport::new(
                    Link::Tls(Box::new(tls)),
                    limits.idle_timeout,
                ));
                let caps = greeting_and_caps(&mut stream, ep, limits).await?;
                Ok(Greeted {
                    stream,
                    caps,
                    tls: true,
                })
            }
            Security::StartTls => {
                let mut stream =
                    BufStream::new(Transport::new(Link::Plain(timed), limits.idle_timeout));
                let caps = greeting_and_caps(&mut stream, ep, limits).await?;
                if !caps.has("STARTTLS") {
                    return Err(ImapError::StartTlsUnavailable {
                        host: ep.host.clone(),
                        port: ep.port,
                    });
                }
                let (_, done) =
                    raw_command(&mut stream, "S1", "STARTTLS", ep, limits.idle_timeout).await?;
                if !done.ok {
                    return Err(ImapError::Tls {
                        host: ep.host.clone(),
                        port: ep.port,
                        reason: format!("the server refused STARTTLS: {}", done.text).into(),
                    });
                }
                // `into_inner` drops whatever was buffered after the OK: bytes injected
                // before the handshake must never be read as if they came over TLS.
                let Link::Plain(timed) = stream.into_inner().link else {
                    unreachable!("STARTTLS runs on a plain stream")
                };
                let tls = handshake(server, ep, timed).await?;
                let mut stream = BufStream::new(Transport::new(
                    Link::Tls(Box::new(tls)),
                    limits.idle_timeout,
                ));
                // No greeting follows the handshake; capabilities must be asked again.
                let caps = capability(&mut stream, ep, limits.idle_timeout).await?;
                Ok(Greeted {
                    stream,
                    caps,
                    tls: true,
                })
            }
            Security::Plain => {
                let mut stream =
                    BufStream::new(Transport::new(Link::Plain(timed), limits.idle_timeout));
                let caps = greeting_and_caps(&mut stream, ep, limits).await?;
                Ok(Greeted {
                    stream,
                    caps,
                    tls: false,
                })
            }
        }
    };
    // Say what was actually awaited: a plain connection has no TLS handshake.
    let doing = match server.security {
        Security::Tls => "setting up the connection (TLS handshake and greeting)",
        Security::StartTls => "setting up the connection (greeting, STARTTLS and TLS handshake)",
        Security::Plain => "waiting for the greeting",
    };
    match tokio::time::timeout(limits.connect_timeout, setup).await {
        Ok(result) => result,
        Err(_) => Err(ep.timeout(doing, limits.connect_timeout)),
    }
}

async fn tcp_connect(ep: &Endpoint, timeout: Duration) -> Result<TcpStream, ImapError> {
    let failed = |reason| ImapError::ConnectFailed {
        host: ep.host.clone(),
        port: ep.port,
        reason,
    };
    let attempt = async {
        let addrs: Vec<_> = tokio::net::lookup_host((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| failed(ConnectReason::UnknownHost(e.to_string())))?
            .collect();
        if addrs.is_empty() {
            return Err(failed(ConnectReason::UnknownHost("no address".into())));
        }
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let e = last.expect("at least one address was tried");
        Err(failed(match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectReason::Refused,
            _ => ConnectReason::Other(e.to_string()),
        }))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(failed(ConnectReason::TimedOut(timeout))),
    }
}

async fn handshake(
    server: &ServerSettings,
    ep: &Endpoint,
    timed: Timed,
) -> Result<TlsStream<Timed>, ImapError> {
    let tls_err = |reason: Reason| ImapError::Tls {
        host: ep.host.clone(),
        port: ep.port,
        reason,
    };
    let config = tls::client_config(server).map_err(tls_err)?;
    let name = tls::server_name(&ep.host).map_err(|e| tls_err(e.into()))?;
    TlsConnector::from(config)
        .connect(name, timed)
        .await
        .map_err(|e| match ep.io(&e, "the TLS handshake", Duration::ZERO) {
            // Not a rustls error: the peer hung up mid-handshake, typically a plain IMAP
            // port spoken to with TLS or a TLS port that rejects us.
            ImapError::Closed { .. } => tls_err(Reason::hinted(
                e.to_string(),
                format!(
                    "is `{}` a TLS port? 993 usually speaks implicit TLS \
                     (`security = \"tls\"`), 143 `starttls`",
                    ep.port
                ),
            )),
            other => other,
        })
}

/// Reads the greeting; returns the capabilities it announced or asks for them.
async fn greeting_and_caps(
    stream: &mut ImapIo,
    ep: &Endpoint,
    limits: &Limits,
) -> Result<Capabilities, ImapError> {
    let line = read_response(stream, ep, "waiting for the greeting", limits.idle_timeout).await?;
    let text = String::from_utf8_lossy(&line);
    let text = text.trim_end();
    let upper = text.to_ascii_uppercase();
    if upper.starts_with("* BYE") {
        return Err(ImapError::ConnectFailed {
            host: ep.host.clone(),
            port: ep.port,
            reason: ConnectReason::Other(format!(
                "the server refused the session: {}",
                text[5..].trim()
            )),
        });
    }
    if upper.starts_with("* PREAUTH") {
        return Err(ep.protocol(
            "the greeting",
            format!("pre-authenticated sessions (`{text}`) are not supported"),
        ));
    }
    if !upper.starts_with("* OK") {
        return Err(ep.closed(format!("this is not an IMAP server (greeting `{text}`)")));
    }
    match caps_in_code(text) {
        Some(caps) => Ok(caps),
        None => capability(stream, ep, limits.idle_timeout).await,
    }
}

/// The capabilities in the tagged OK of a login (`A0001 OK [CAPABILITY …] Logged in`), as
/// kept by the login tap: RFC 9051 §6.2 lets a server send them there, and Dovecot,
/// Cyrus and others do. `None` when the answer had none (then CAPABILITY is asked).
pub(crate) fn caps_in_login_answer(read: &[u8]) -> Option<Capabilities> {
    let text = String::from_utf8_lossy(read);
    text.lines().rev().find_map(|line| {
        let mut words = line.splitn(3, ' ');
        let tag = words.next()?;
        let status = words.next()?;
        if tag == "*" || tag == "+" || !status.eq_ignore_ascii_case("OK") {
            return None;
        }
        let rest = words.next()?.trim_start();
        rest.starts_with('[').then(|| caps_in_code(rest)).flatten()
    })
}

/// `* OK [CAPABILITY IMAP4rev1 STARTTLS] ready` → the capabilities.
fn caps_in_code(text: &str) -> Option<Capabilities> {
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    let code = &text[start + 1..end];
    let mut words = code.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("CAPABILITY") {
        return None;
    }
    Some(Capabilities::from_atoms(words))
}

/// A raw `CAPABILITY`.
async fn capability<S>(
    stream: &mut S,
    ep: &Endpoint,
    idle: Duration,
) -> Result<Capabilities, ImapError>
where
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    let (untagged, done) = raw_command(stream, "C1", "CAPABILITY", ep, idle).await?;
    if !done.ok {
        return Err(ep.protocol("CAPABILITY", done.text));
    }
    let mut atoms = Vec::new();
    for line in &untagged {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_ascii_whitespace();
        if words.next() == Some("*")
            && words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("CAPABILITY"))
        {
            atoms.extend(words.map(str::to_string));
        }
    }
    Ok(Capabilities::from_atoms(atoms.iter().map(String::as_str)))
}

/// The tagged completion of a raw command.
#[derive(Debug)]
pub(crate) struct Done {
    pub ok: bool,
    /// Everything after the tag and the status word.
    pub text: String,
}

/// Sends `tag command` and reads until the tagged completion. Only for commands whose
/// arguments are not secret. Returns the untagged responses (each complete, literals inline).
pub(crate) async fn raw_command<S>(
    stream: &mut S,
    tag: &str,
    command: &str,
    ep: &Endpoint,
    idle: Duration,
) -> Result<(Vec<Vec<u8>>, Done), ImapError>
where
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    let doing = format!("waiting for the answer to {command}");
    let line = format!("{tag} {command}\r\n");
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(|e| ep.io(&e, &doing, idle))?;
    stream.flush().await.map_err(|e| ep.io(&e, &doing, idle))?;
    let mut untagged = Vec::new();
    loop {
        let response = read_response(stream, ep, &doing, idle).await?;
        if let Some(rest) = response
            .strip_prefix(tag.as_bytes())
            .and_then(|r| r.strip_prefix(b" "))
        {
            let rest = String::from_utf8_lossy(rest);
            let rest = rest.trim_end();
            let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
            return Ok((
                untagged,
                Done {
                    ok: status.eq_ignore_ascii_case("OK"),
                    text: text.to_string(),
                },
            ));
        }
        if response.starts_with(b"* BYE") {
            return Err(ep.closed(format!(
                "the server said `{}`",
                String::from_utf8_lossy(&response).trim_end()
            )));
        }
        untagged.push(response);
    }
}

/// Longest raw response accepted before login or for NAMESPACE: these are small.
const MAX_RAW_RESPONSE: u64 = 1 << 20;

/// Reads one complete response: a line plus any literals it announces (`{n}` or `{n+}`
/// at the end of a line), CRLFs included.
pub(crate) async fn read_response<S>(
    stream: &mut S,
    ep: &Endpoint,
    doing: &str,
    idle: Duration,
) -> Result<Vec<u8>, ImapError>
where
    S: AsyncBufRead + Unpin,
{
    read_response_capped(stream, ep, doing, idle, MAX_RAW_RESPONSE).await
}

/// [`read_response`] with a caller's cap on the size of one response (line + literals).
pub(crate) async fn read_response_capped<S>(
    stream: &mut S,
    ep: &Endpoint,
    doing: &str,
    idle: Duration,
    cap: u64,
) -> Result<Vec<u8>, ImapError>
where
    S: AsyncBufRead + Unpin,
{
    let mut out = Vec::new();
    loop {
        let budget = cap.saturating_sub(out.len() as u64);
        let start = out.len();
        let n = (&mut *stream)
            .take(budget)
            .read_until(b'\n', &mut out)
            .await
            .map_err(|e| ep.io(&e, doing, idle))?;
        if n == 0 {
            return Err(ep.closed(format!("the server closed the connection while {doing}")));
        }
        if !out.ends_with(b"\n") {
            return Err(ep.closed(format!("oversized response while {doing}")));
        }
        match literal_size(&out[start..]) {
            None => return Ok(out),
            Some(size) => {
                if out.len() as u64 + size > cap {
                    return Err(ep.closed(format!("oversized response while {doing}")));
                }
                // Grown as the bytes arrive, not allocated as announced: a server that
                // announces 60 MB and sends nothing costs nothing.
                let from = out.len();
                (&mut *stream)
                    .take(size)
                    .read_to_end(&mut out)
                    .await
                    .map_err(|e| ep.io(&e, doing, idle))?;
                if ((out.len() - from) as u64) < size {
                    return Err(
                        ep.closed(format!("the server closed the connection while {doing}"))
                    );
                }
            }
        }
    }
}

/// `... {12}\r\n` → `Some(12)`; also `{12+}`.
fn literal_size(line: &[u8]) -> Option<u64> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_the_greeting_code() {
        let caps =
            caps_in_code("* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] Dovecot ready.").unwrap();
        assert!(caps.has("starttls"));
        assert!(caps.has("AUTH=PLAIN"));
        assert!(!caps.has("LOGINDISABLED"));
        assert!(caps_in_code("* OK Dovecot ready.").is_none());
        assert!(caps_in_code("* OK [ALERT] hi").is_none());
    }

    #[test]
    fn capabilities_from_the_tagged_login_answer() {
        let read = b"+ \r\nA0001 OK [CAPABILITY IMAP4rev1 LIST-STATUS MULTIAPPEND] Logged in\r\n";
        let caps = caps_in_login_answer(read).unwrap();
        assert!(caps.has("LIST-STATUS") && caps.has("multiappend"));
        assert!(caps_in_login_answer(b"A0001 OK Logged in\r\n").is_none());
        assert!(caps_in_login_answer(b"A0001 OK Logged in [CAPABILITY X]\r\n").is_none());
        assert!(caps_in_login_answer(b"* OK [CAPABILITY IMAP4rev1] hi\r\n").is_none());
        assert!(caps_in_login_answer(b"A0001 NO [CAPABILITY IMAP4rev1] no\r\n").is_none());
        assert!(caps_in_login_answer(b"").is_none());
    }

    #[test]
    fn literal_sizes() {
        assert_eq!(literal_size(b"* LIST () \"/\" {5}\r\n"), Some(5));
        assert_eq!(literal_size(b"A1 APPEND x {12+}\r\n"), Some(12));
        assert_eq!(literal_size(b"* OK done\r\n"), None);
        assert_eq!(literal_size(b"* OK {x}\r\n"), None);
    }

    #[test]
    fn the_guard_follows_lines_and_literals() {
        let t0 = std::time::Instant::now();
        let mut g = Guard::new(Duration::from_secs(1));
        g.expect_literals(100, "test");
        // A literal split over reads, then the rest of its line; a literal of 100 is fine.
        g.feed(b"* 1 FETCH (UID 5 BODY[] {100}\r\nabc", t0).unwrap();
        g.feed(&[b'x'; 97], t0).unwrap();
        g.feed(b")\r\nA1 OK done\r\n", t0).unwrap();
        assert_eq!(g.literal_left, 0);
        assert!(g.started.is_none(), "nothing in progress between responses");
        // A `{` inside the literal is not an announcement.
        g.feed(b"* 2 FETCH (BODY[] {5}\r\n{999}\r\n)\r\n", t0)
            .unwrap();
        // Announced over the limit: refused at once, before any of it.
        match g.feed(b"* 3 FETCH (BODY[] {101}\r\n", t0) {
            Err(GuardError::Literal {
                announced: 101,
                limit: 100,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        g.reset_limit();
        let mut g2 = Guard::new(Duration::from_secs(1));
        g2.feed(b"* 3 FETCH (BODY[] {100000000}\r\n", t0).unwrap();
    }

    #[test]
    fn the_guard_stops_a_trickle_but_not_a_pause() {
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut g = Guard::new(Duration::from_secs(1));
        g.feed(b"* 1 FETCH (BODY[] {100000000}\r\n", at(0)).unwrap();
        // A few bytes now and then: fine within idle-timeout...
        g.feed(b"xxxx", at(500)).unwrap();
        g.feed(b"xxxx", at(900)).unwrap();
        // ...but under 1 KiB/s once it has taken longer than that.
        match g.feed(b"xxxx", at(1_300)) {
            Err(GuardError::Trickle {
                got: 12,
                literal: 100_000_000,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // A fast literal after a pause between responses is not a trickle.
        let mut g = Guard::new(Duration::from_secs(1));
        g.feed(b"A1 OK done\r\n", at(0)).unwrap();
        g.feed(b"* 1 FETCH (BODY[] {4096}\r\n", at(5_000)).unwrap();
        g.feed(&[b'x'; 4096], at(5_100)).unwrap();
        g.feed(b")\r\n", at(9_000)).unwrap();
        // A line that never ends is refused.
        let mut g = Guard::new(Duration::from_secs(1000));
        let chunk = vec![b'y'; 1 << 20];
        let mut refused = false;
        for _ in 0..=(MAX_LINE >> 20) {
            if let Err(GuardError::Line) = g.feed(&chunk, at(0)) {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }

    #[tokio::test]
    async fn raw_responses_include_literals() {
        let ep = Endpoint {
            host: "h".into(),
            port: 1,
        };
        let data: &[u8] = b"* NAMESPACE (({6}\r\nINBOX. \".\")) NIL NIL\r\nN1 OK done\r\n";
        let mut reader = tokio::io::BufReader::new(data);
        let first = read_response(&mut reader, &ep, "test", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(first, &data[..data.len() - 12]);
        let second = read_response(&mut reader, &ep, "test", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(second, b"N1 OK done\r\n");
        let eof = read_response(&mut reader, &ep, "test", Duration::from_secs(1)).await;
        assert!(matches!(eof, Err(ImapError::Closed { .. })));
    }
}
