//! A token-introspection endpoint (RFC 7662) for Dovecot's `oauth2` passdb, so that XOAUTH2
//! and OAUTHBEARER logins are checked by a real server against tokens the test controls.
//!
//! Tokens are minted by a shell `token-command` without any HTTP client:
//! `mst.<user>.<issued, ns since the epoch>.<secret>` ([`Introspection::token_command`]).
//! The endpoint accepts a token when the secret is its own, the user is the one logging
//! in (Dovecot compares `username`), and it was issued less than `lifetime` ago and not
//! before [`Introspection::revoke_all`]. Every request is counted and remembered.
//!
//! ```ignore
//! let idp = Introspection::start(Duration::from_secs(60));
//! let dc = Dovecot::builder().extra_config(&idp.dovecot_config()).start();
//! // [destination] auth = "oauthbearer", token-command = idp.token_command()
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the endpoint answered, per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    pub user: String,
    pub active: bool,
    /// Why it was refused (`expired`, `revoked`, `foreign`).
    pub why: &'static str,
}

struct State {
    lifetime: Duration,
    /// Tokens issued before this (ns since the epoch) are refused.
    revoked_before: u128,
    checked: Vec<Checked>,
}

/// The running endpoint; stopped on drop.
pub(crate) struct Introspection {
    port: u16,
    secret: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos()
}

impl Introspection {
    /// Starts the endpoint on a free loopback port; tokens live for `lifetime`.
    pub(crate) fn start(lifetime: Duration) -> Introspection {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the introspection port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().unwrap().port();
        let secret = format!("S3cr3t{}x{}", std::process::id(), now_ns() % 1_000_000);
        let state = Arc::new(Mutex::new(State {
            lifetime,
            revoked_before: 0,
            checked: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, secret) = (Arc::clone(&state), Arc::clone(&stop), secret.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (state, secret) = (Arc::clone(&state), secret.clone());
                            thread::spawn(move || {
                                let _ = serve(stream, &state, &secret);
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        let dir = tempfile::Builder::new()
            .prefix("ms-oauth-")
            .tempdir()
            .expect("create the oauth2 config dir");
        set_mode(dir.path(), 0o755);
        let conf = format!(
            "introspection_mode = post\n\
             introspection_url = http://127.0.0.1:{port}/introspect\n\
             force_introspection = yes\n\
             username_attribute = username\n\
             active_attribute = active\n\
             active_value = true\n\
             timeout_msecs = 5000\n"
        );
        let path = dir.path().join("dovecot-oauth2.conf.ext");
        std::fs::write(&path, conf).expect("write dovecot-oauth2.conf.ext");
        set_mode(&path, 0o644);
        Introspection {
            port,
            secret,
            state,
            stop,
            thread: Some(thread),
            dir,
        }
    }

    /// Lines for [`DovecotBuilder::extra_config`](super::DovecotBuilder::extra_config):
    /// XOAUTH2 and OAUTHBEARER checked by this endpoint (passwords still work for the
    /// tests' own raw client).
    pub(crate) fn dovecot_config(&self) -> String {
        format!(
            "auth_mechanisms = plain login xoauth2 oauthbearer\n\
             passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}",
            self.dir.path().join("dovecot-oauth2.conf.ext").display()
        )
    }

    /// A `token-command` that prints a fresh token for `{user}`.
    pub(crate) fn token_command(&self) -> String {
        format!(
            "printf 'mst.%s.%s.{}' {{user}} \"$(date +%s%N)\"",
            self.secret
        )
    }

    /// A token for `user` issued `age` ago (for tests that need an old one).
    pub(crate) fn token_issued_ago(&self, user: &str, age: Duration) -> String {
        format!("mst.{user}.{}.{}", now_ns() - age.as_nanos(), self.secret)
    }

    /// The secret part of every token: no output or log may contain it.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// Every token issued until now is refused from now on.
    pub(crate) fn revoke_all(&self) {
        self.state.lock().unwrap().revoked_before = now_ns();
    }

    /// Every request answered so far.
    pub(crate) fn checked(&self) -> Vec<Checked> {
        self.state.lock().unwrap().checked.clone()
    }
}

impl Drop for Introspection {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// One HTTP/1.1 request: `POST /introspect` with `token=...`; answers and closes.
fn serve(stream: TcpStream, state: &Mutex<State>, secret: &str) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body);
    let token = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(percent_decode)
        .unwrap_or_default();
    let answer = check(&token, state, secret);
    let json = if answer.active {
        format!("{{\"active\":true,\"username\":\"{}\"}}", answer.user)
    } else {
        "{\"active\":false}".to_string()
    };
    state.lock().unwrap().checked.push(answer);
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{json}",
        json.len()
    )?;
    out.flush()
}

fn check(token: &str, state: &Mutex<State>, secret: &str) -> Checked {
    let refuse = |user: &str, why| Checked {
        user: user.to_string(),
        active: false,
        why,
    };
    // mst.<user>.<issued>.<secret>; the user may itself hold dots.
    let Some(rest) = token.strip_prefix("mst.") else {
        return refuse("", "foreign");
    };
    let mut parts = rest.rsplitn(3, '.');
    let (Some(sig), Some(issued), Some(user)) = (parts.next(), parts.next(), parts.next()) else {
        return refuse("", "foreign");
    };
    if sig != secret {
        return refuse(user, "foreign");
    }
    let Ok(issued) = issued.parse::<u128>() else {
        return refuse(user, "foreign");
    };
    let state = state.lock().unwrap();
    if issued < state.revoked_before {
        return refuse(user, "revoked");
    }
    if now_ns().saturating_sub(issued) > state.lifetime.as_nanos() {
        return refuse(user, "expired");
    }
    Checked {
        user: user.to_string(),
        active: true,
        why: "",
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
