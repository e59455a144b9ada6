//! Logging in: LOGIN, SASL PLAIN (also on behalf of a user, with an admin's credentials),
//! XOAUTH2 and OAUTHBEARER with a token from `token-command`. Secrets stay inside
//! `SecretString` until the moment they are written to the socket; nothing here logs them.

use std::process::Stdio;

use async_imap::{Authenticator, Client, Session};
use secrecy::{ExposeSecret, SecretString};

use super::error::{Endpoint, ImapError, Reason};
use super::transport::{Greeted, ImapIo};
use crate::settings::{AuthMethod, Limits, ServerSettings};

/// Who logs in. With `[source.admin]`/`[destination.admin]` (in [`ServerSettings::admin`])
/// the admin's credentials are used on behalf of `user` and `password` may be `None`.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: Option<SecretString>,
}

impl Credentials {
    /// The account's user and CSV password on one side.
    pub fn of(account: &crate::settings::Account, side: crate::model::Side) -> Credentials {
        use crate::model::Side;
        let (user, password) = match side {
            Side::Source => (&account.source_user, &account.source_password),
            Side::Destination => (&account.destination_user, &account.destination_password),
        };
        Credentials {
            user: user.clone(),
            password: password.clone(),
        }
    }
}

/// The mechanism actually used, decided from the settings and the capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mechanism {
    Login,
    Plain,
    /// SASL PLAIN with authzid = the user, authcid = the admin.
    AdminPlain,
    Xoauth2,
    OAuthBearer,
}

fn choose(server: &ServerSettings, caps: &super::Capabilities) -> Mechanism {
    if server.admin.is_some() {
        return Mechanism::AdminPlain;
    }
    match server.auth {
        AuthMethod::Auto if caps.has("AUTH=PLAIN") => Mechanism::Plain,
        AuthMethod::Auto | AuthMethod::Login => Mechanism::Login,
        AuthMethod::Plain => Mechanism::Plain,
        AuthMethod::Xoauth2 => Mechanism::Xoauth2,
        AuthMethod::OAuthBearer => Mechanism::OAuthBearer,
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Logs in on a greeted connection and returns the session, with the capabilities the
/// server sent in its tagged OK (`None` when it sent none: then they must be asked for).
pub(crate) async fn login(
    greeted: Greeted,
    server: &ServerSettings,
    limits: &Limits,
    creds: &Credentials,
    ep: &Endpoint,
) -> Result<(Session<ImapIo>, Option<super::Capabilities>), ImapError> {
    let mut client = Client::new(greeted.stream);
    // Keep a copy of the server's side of the login, for its `[CAPABILITY …]` code.
    client.get_mut().get_mut().start_tap();
    let greeted_caps = greeted.caps;
    let mut session = login_on(
        client,
        &greeted_caps,
        greeted.tls,
        server,
        limits,
        creds,
        ep,
    )
    .await?;
    let read = session.get_mut().get_mut().take_tap();
    Ok((session, super::transport::caps_in_login_answer(&read)))
}

async fn login_on(
    client: Client<ImapIo>,
    caps: &super::Capabilities,
    tls: bool,
    server: &ServerSettings,
    limits: &Limits,
    creds: &Credentials,
    ep: &Endpoint,
) -> Result<Session<ImapIo>, ImapError> {
    if !tls {
        let refuse = |reason: Reason| ImapError::PlaintextAuthRefused {
            host: ep.host.clone(),
            port: ep.port,
            reason,
        };
        if caps.has("LOGINDISABLED") {
            return Err(refuse(Reason::hinted(
                "the server advertises LOGINDISABLED on this unencrypted connection",
                "use `security = \"starttls\"` or `security = \"tls\"`",
            )));
        }
        if !server.allow_plaintext_auth && !is_loopback(&ep.host) {
            return Err(refuse(Reason::hinted(
                "`security = \"plain\"` to a remote host",
                "use `starttls` or `tls`, or set `allow-plaintext-auth = true` if the network \
                 is trusted",
            )));
        }
    }
    let mechanism = choose(server, caps);
    // RFC 4959 SASL-IR: the PLAIN message goes with the command, one round trip instead of
    // two (a `+` continuation then answered with an empty response, which aborts).
    let initial_response = caps.has("SASL-IR");
    tracing::debug!(host = %ep.host, user = %creds.user, ?mechanism, "logging in");
    let auth_failed = |text: String, hint: Option<&str>| ImapError::AuthFailed {
        user: creds.user.clone(),
        host: ep.host.clone(),
        port: ep.port,
        server_text: text,
        hint: hint.map(str::to_string),
    };
    let password = || {
        creds
            .password
            .as_ref()
            .ok_or_else(|| ImapError::NoPassword {
                user: creds.user.clone(),
                host: ep.host.clone(),
                port: ep.port,
            })
    };
    let result = match mechanism {
        Mechanism::Login => {
            let pw = password()?;
            client.login(&creds.user, pw.expose_secret()).await
        }
        Mechanism::Plain | Mechanism::AdminPlain => {
            let message = if mechanism == Mechanism::AdminPlain {
                let admin = server.admin.as_ref().expect("chosen only with an admin");
                plain_message(&creds.user, &admin.user, &admin.password)
            } else {
                plain_message("", &creds.user, password()?)
            };
            if initial_response {
                use base64::Engine as _;
                let command = SecretString::from(format!(
                    "PLAIN {}",
                    base64::engine::general_purpose::STANDARD.encode(&message)
                ));
                drop(message);
                client
                    .authenticate(command.expose_secret(), SaslOnce::empty())
                    .await
            } else {
                client.authenticate("PLAIN", SaslOnce::new(message)).await
            }
        }
        Mechanism::Xoauth2 | Mechanism::OAuthBearer => {
            return oauth_login(client, mechanism, server, limits, creds, ep).await;
        }
    };
    match result {
        Ok(session) => Ok(session),
        Err((err, _client)) => {
            use async_imap::error::Error as E;
            Err(match err {
                E::No(dump) | E::Bad(dump) => {
                    auth_failed(super::error::server_text_from_dump(&dump), None)
                }
                E::Validate(_) => auth_failed(
                    "the password contains a line break, which LOGIN cannot send".into(),
                    Some("use `auth = \"plain\"`"),
                ),
                other => ep.async_imap_error(other, "the login", limits.idle_timeout),
            })
        }
    }
}

/// XOAUTH2 / OAUTHBEARER with a token from `token-command`. A refused token (expired
/// between minting and use, or served stale from a helper's cache) gets one more try with a
/// new one: `token-command` runs again with `MAILSHIFT_TOKEN_REFRESH=1` set, on the same
/// connection. Every login (also after a reconnect) runs `token-command`, so a token that
/// expires during a long run is replaced at the next login.
async fn oauth_login(
    mut client: Client<ImapIo>,
    mechanism: Mechanism,
    server: &ServerSettings,
    limits: &Limits,
    creds: &Credentials,
    ep: &Endpoint,
) -> Result<Session<ImapIo>, ImapError> {
    let name = if mechanism == Mechanism::Xoauth2 {
        "XOAUTH2"
    } else {
        "OAUTHBEARER"
    };
    let mut refresh = false;
    loop {
        let token = run_token_command(server, limits, &creds.user, refresh).await?;
        let message = if mechanism == Mechanism::Xoauth2 {
            format!(
                "user={}\x01auth=Bearer {}\x01\x01",
                creds.user,
                token.expose_secret()
            )
        } else {
            format!(
                "n,a={},\x01auth=Bearer {}\x01\x01",
                creds.user.replace('=', "=3D").replace(',', "=2C"),
                token.expose_secret()
            )
        };
        drop(token);
        let sasl = SaslOnce::new(message.into_bytes());
        let error_report = sasl.error_report();
        match client.authenticate(name, sasl).await {
            Ok(session) => return Ok(session),
            Err((async_imap::error::Error::No(dump), back)) => {
                let status = error_report
                    .lock()
                    .ok()
                    .and_then(|r| r.as_deref().and_then(token_error_status));
                if !refresh {
                    tracing::info!(
                        user = %creds.user,
                        host = %ep.host,
                        "the server refused the token{}; running `token-command` again for a \
                         new one",
                        status.as_deref().map(|s| format!(" (`{s}`)")).unwrap_or_default()
                    );
                    refresh = true;
                    client = back;
                    continue;
                }
                let mut text = super::error::server_text_from_dump(&dump);
                if let Some(status) = status {
                    text.push_str(&format!(" (token refused: `{status}`)"));
                }
                return Err(ImapError::AuthFailed {
                    user: creds.user.clone(),
                    host: ep.host.clone(),
                    port: ep.port,
                    server_text: text,
                    hint: Some(OAUTH_REFUSED_HINT.to_string()),
                });
            }
            Err((async_imap::error::Error::Bad(dump), _)) => {
                return Err(ImapError::AuthFailed {
                    user: creds.user.clone(),
                    host: ep.host.clone(),
                    port: ep.port,
                    server_text: super::error::server_text_from_dump(&dump),
                    hint: Some(format!(
                        "the server may not offer `AUTH={name}`; check `auth` in the config"
                    )),
                })
            }
            Err((other, _)) => {
                return Err(ep.async_imap_error(other, "the login", limits.idle_timeout))
            }
        }
    }
}

const OAUTH_REFUSED_HINT: &str = "the token from `token-command` was refused twice (a second, \
     new one too): check that it is issued for this user and carries the IMAP scope \
     (Microsoft 365: `https://outlook.office365.com/.default`, the app's `IMAP.AccessAsApp` \
     permission with admin consent, and mailbox access for its service principal; Google: \
     `https://mail.google.com/` with domain-wide delegation for the service account)";

/// The `status` of an XOAUTH2/OAUTHBEARER error report (RFC 7628: a JSON object such as
/// `{"status":"invalid_token","schemes":"bearer"}`); it holds no secret.
fn token_error_status(report: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(report).ok()?;
    let status = v.get("status")?.as_str()?;
    (status.len() <= 64 && status.chars().all(|c| c.is_ascii_graphic())).then(|| status.to_string())
}

/// SASL PLAIN: `authzid NUL authcid NUL password`.
fn plain_message(authzid: &str, authcid: &str, password: &SecretString) -> Vec<u8> {
    let mut m = Vec::with_capacity(authzid.len() + authcid.len() + 32);
    m.extend_from_slice(authzid.as_bytes());
    m.push(0);
    m.extend_from_slice(authcid.as_bytes());
    m.push(0);
    m.extend_from_slice(password.expose_secret().as_bytes());
    m
}

/// Answers the first challenge with the message and every later one (an error report from
/// XOAUTH2/OAUTHBEARER) with an empty response, which makes the server finish with NO. The
/// error report is kept for the message.
struct SaslOnce {
    message: Option<Vec<u8>>,
    error_report: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

impl SaslOnce {
    fn new(message: Vec<u8>) -> SaslOnce {
        SaslOnce {
            message: Some(message),
            error_report: Default::default(),
        }
    }

    /// For a message sent as the initial response (SASL-IR): any challenge is answered
    /// with an empty response, which ends the exchange.
    fn empty() -> SaslOnce {
        SaslOnce {
            message: None,
            error_report: Default::default(),
        }
    }

    fn error_report(&self) -> std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>> {
        std::sync::Arc::clone(&self.error_report)
    }
}

impl Authenticator for SaslOnce {
    type Response = Vec<u8>;

    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        match self.message.take() {
            Some(m) => m,
            None => {
                if let Ok(mut report) = self.error_report.lock() {
                    *report = Some(challenge.to_vec());
                }
                Vec::new()
            }
        }
    }
}

/// Characters that can stand in a shell command unquoted.
fn shell_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._+-=%:,".contains(c))
}

/// `{user}` replaced: verbatim when it is shell-safe (so `'{user}'` in the template still
/// works for ordinary addresses), else single-quoted.
fn expand_token_command(template: &str, user: &str) -> String {
    let value = if shell_safe(user) {
        user.to_string()
    } else {
        format!("'{}'", user.replace('\'', r"'\''"))
    };
    template.replace("{user}", &value)
}

/// The program a command line starts (its first word), to name it in messages without
/// showing its arguments.
fn program_of(command: &str) -> &str {
    command.split_whitespace().next().unwrap_or("")
}

/// Runs `token-command` (`sh -c`, `{user}` replaced, `MAILSHIFT_USER` set, and
/// `MAILSHIFT_TOKEN_REFRESH=1` when the server refused the last token) and returns its
/// trimmed stdout. A command that gives no answer within `connect-timeout` is stopped with
/// everything it started; the error names the command's program, the user and the server,
/// never what it printed on stdout (the token).
async fn run_token_command(
    server: &ServerSettings,
    limits: &Limits,
    user: &str,
    refresh: bool,
) -> Result<SecretString, ImapError> {
    let fail = |reason: Reason| ImapError::TokenCommand {
        user: user.to_string(),
        host: server.host.clone(),
        port: server.port,
        reason,
    };
    let template = server.token_command.as_deref().ok_or_else(|| {
        fail(Reason::hinted(
            "no `token-command` is configured",
            "`auth = \"xoauth2\"` and `\"oauthbearer\"` need a `token-command` that prints an \
             access token",
        ))
    })?;
    let command = expand_token_command(template, user);
    let program = program_of(template);
    let limit = limits.connect_timeout;
    tracing::info!(
        user,
        host = %server.host,
        "running `token-command` (`{program}`, at most {})",
        humantime::format_duration(limit)
    );
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("MAILSHIFT_USER", user)
        .env("MAILSHIFT_TOKEN_REFRESH", if refresh { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run `sh`: {e}").into()))?;
    let pid = child.id();
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| fail(e.to_string().into()))?,
        Err(_) => {
            // The shell is killed on drop; what it started must go too, or it would keep
            // running (and keep the pipes open).
            if let Some(pid) = pid {
                crate::settings::kill_process_group(pid);
            }
            tracing::warn!(
                user,
                "`token-command` (`{program}`) gave no answer; stopped it"
            );
            return Err(fail(Reason::hinted(
                format!(
                    "`{program}` gave no answer within {}; it was stopped",
                    humantime::format_duration(limit)
                ),
                "run the command by hand: it may wait for a login, a prompt or the network; \
                 the limit is `connect-timeout` in [limits]",
            )));
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr: String = stderr.trim().chars().take(500).collect();
        return Err(fail(
            format!("`{program}` exited with {}: {stderr}", output.status).into(),
        ));
    }
    let token = String::from_utf8(output.stdout)
        .map_err(|_| fail(format!("`{program}` printed something that is not UTF-8").into()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(fail(format!("`{program}` printed nothing").into()));
    }
    Ok(SecretString::from(token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::Capabilities;
    use crate::settings::{AdminLogin, Security};
    use std::time::Duration;

    fn server(auth: AuthMethod) -> ServerSettings {
        ServerSettings {
            security: Security::Plain,
            auth,
            ..ServerSettings::for_tests("localhost", 143)
        }
    }

    #[test]
    fn mechanism_choice() {
        let with_plain = Capabilities::from_atoms(["IMAP4rev1", "AUTH=PLAIN"]);
        let without = Capabilities::from_atoms(["IMAP4rev1"]);
        assert_eq!(
            choose(&server(AuthMethod::Auto), &with_plain),
            Mechanism::Plain
        );
        assert_eq!(
            choose(&server(AuthMethod::Auto), &without),
            Mechanism::Login
        );
        assert_eq!(
            choose(&server(AuthMethod::Login), &with_plain),
            Mechanism::Login
        );
        assert_eq!(
            choose(&server(AuthMethod::Plain), &without),
            Mechanism::Plain
        );
        assert_eq!(
            choose(&server(AuthMethod::Xoauth2), &without),
            Mechanism::Xoauth2
        );
        let mut admin = server(AuthMethod::Login);
        admin.admin = Some(AdminLogin {
            user: "admin".into(),
            password: SecretString::from("x".to_string()),
        });
        assert_eq!(choose(&admin, &without), Mechanism::AdminPlain);
    }

    #[test]
    fn plain_message_layout() {
        let pw = SecretString::from("s3cret".to_string());
        assert_eq!(plain_message("", "bob", &pw), b"\0bob\0s3cret");
        assert_eq!(plain_message("bob", "admin", &pw), b"bob\0admin\0s3cret");
    }

    #[test]
    fn sasl_answers_once() {
        let mut s = SaslOnce::new(b"abc".to_vec());
        let report = s.error_report();
        assert_eq!(s.process(b""), b"abc");
        assert_eq!(s.process(b"{\"status\":\"401\"}"), b"");
        let report = report.lock().unwrap().clone().unwrap();
        assert_eq!(token_error_status(&report).as_deref(), Some("401"));
        assert_eq!(token_error_status(b"not json"), None);
    }

    #[test]
    fn token_command_expansion_quotes_unsafe_users() {
        assert_eq!(
            expand_token_command("get-token --user {user}", "bob@example.org"),
            "get-token --user bob@example.org"
        );
        assert_eq!(
            expand_token_command("get-token {user}", "x; rm -rf /"),
            "get-token 'x; rm -rf /'"
        );
        assert_eq!(
            expand_token_command("t {user}", "o'brien"),
            r"t 'o'\''brien'"
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("imap.example.org"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[tokio::test]
    async fn token_command_output_is_trimmed_and_failures_explained() {
        let limits = Limits {
            parallel_accounts: 1,
            connections_per_account: 1,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            pacing: Default::default(),
            stream_above: 8 << 20,
        };
        let mut s = server(AuthMethod::Xoauth2);
        s.token_command = Some("printf '  tok-%s\\n' {user}".into());
        let token = run_token_command(&s, &limits, "bob", false).await.unwrap();
        assert_eq!(token.expose_secret(), "tok-bob");

        s.token_command = Some("echo nope >&2; exit 3".into());
        let err = run_token_command(&s, &limits, "bob", false)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("exit status: 3") && text.contains("nope"),
            "{text}"
        );

        s.token_command = Some("true".into());
        let err = run_token_command(&s, &limits, "bob", false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("`true` printed nothing"), "{err}");
    }

    #[tokio::test]
    async fn a_hanging_token_command_is_stopped_after_the_connect_timeout() {
        let limits = Limits {
            parallel_accounts: 1,
            connections_per_account: 1,
            connect_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(5),
            pacing: Default::default(),
            stream_above: 8 << 20,
        };
        let mut s = server(AuthMethod::OAuthBearer);
        s.token_command = Some("echo tok-secret-123; sleep 30; echo more".into());
        let started = std::time::Instant::now();
        let err = run_token_command(&s, &limits, "bob@example.org", false)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        let text = err.to_string();
        assert_eq!(
            text,
            "`token-command` for `bob@example.org` on `localhost:143` failed: `echo` gave no \
             answer within 300ms; it was stopped"
        );
        assert!(!text.contains("tok-secret"), "{text}");
        use crate::diagnostics::HasHint as _;
        assert!(err.hint().unwrap().contains("connect-timeout"));
    }
}
