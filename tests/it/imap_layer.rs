//! The IMAP layer (`mailshift::imap`) against real Dovecot: listing, namespaces, EXAMINE
//! and FETCH on both layouts; TLS, STARTTLS and certificate errors; login failures with
//! the server's words and no password; refused ports, silent servers, dead sessions; and
//! the 10,000-message inventory FETCH as a single command.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use mailshift::imap::{ConnectReason, Credentials, ImapError, Reader, WireName};
use mailshift::settings::{AdminLogin, AuthMethod, Limits, Security, ServerSettings, TlsRoots};
use secrecy::SecretString;

use crate::support::{Dovecot, Layout, MessageBuilder, NewMessage, RawImap};

/// A folder name in the wire form the crate's IMAP layer takes.
pub(crate) fn wn(wire: &str) -> WireName {
    WireName::new(wire)
}

pub(crate) fn server(port: u16, security: Security) -> ServerSettings {
    ServerSettings {
        host: "127.0.0.1".into(),
        port,
        security,
        ca_file: None,
        tls_roots: TlsRoots::System,
        accept_invalid_certs: false,
        allow_plaintext_auth: false,
        auth: AuthMethod::Auto,
        token_command: None,
        max_connections: 10,
        admin: None,
    }
}

pub(crate) fn limits() -> Limits {
    Limits {
        parallel_accounts: 1,
        connections_per_account: 1,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        pacing: Default::default(),
        stream_above: 8 << 20,
    }
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.into(),
        password: Some(SecretString::from(password.to_string())),
    }
}

const DATE: &str = "02-Mar-2021 09:08:07 +0130";

/// Lists, namespaces, examines and fetches one layout; the mailbox is unchanged afterwards.
async fn read_layout(layout: Layout) {
    let dc = Dovecot::start(layout);
    let (user, pw) = dc.fresh_user("reader");
    let mut raw = RawImap::login(dc.port(), &user, &pw);
    let projects = layout.wire("Projects");
    // A name with a quote: LIST sends it escaped, the reader must unescape it.
    let quoted = layout.wire("Say \"hi\"");
    for f in [&projects, &quoted] {
        raw.create(f);
    }
    raw.subscribe(&projects);
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            MessageBuilder::new()
                .subject(&format!("message {i}"))
                .message_id(Some(&format!("<m{i}@example.org>")))
                .body(format!("body {i}\n"))
                .build()
        })
        .collect();
    let uids = raw.append_many(
        &projects,
        &[
            NewMessage::new(bodies[0].clone())
                .flags(&["\\Seen", "$Label1"])
                .internal_date(DATE),
            NewMessage::new(bodies[1].clone()).flags(&["\\Flagged"]),
            NewMessage::new(bodies[2].clone()),
        ],
    );
    let before = raw.snapshot();

    let mut reader = Reader::connect(
        &server(dc.port(), Security::Plain),
        &limits(),
        &creds(&user, &pw),
    )
    .await
    .expect("connect");
    assert!(reader.capabilities().has("IMAP4rev1"));
    assert!(reader.capabilities().has("namespace"));

    let ns = reader
        .namespace()
        .await
        .expect("namespace")
        .expect("a personal namespace");
    assert_eq!(ns.prefix, layout.prefix());
    assert_eq!(ns.delimiter, Some(layout.separator()));

    // NAMESPACE went around async-imap: the session must still work (ARCHITECTURE.md "Server quirks").
    let list = reader.list_all().await.expect("list");
    let names: Vec<&str> = list.iter().map(|e| e.wire_name.as_str()).collect();
    for want in ["INBOX", projects.as_str(), quoted.as_str()] {
        assert!(names.contains(&want), "`{want}` not in {names:?}");
    }
    let sent_name = layout.wire(&layout.default_special_folders()[0].0);
    let sent = list
        .iter()
        .find(|e| e.wire_name.as_str() == sent_name)
        .expect("Sent folder");
    assert!(sent.attributes.iter().any(|a| a == "\\Sent"), "{sent:?}");
    assert!(list.iter().all(|e| e.delimiter == Some(layout.separator())));

    let subscribed = reader.subscribed().await.expect("lsub");
    assert!(subscribed.contains(&wn(&projects)), "{subscribed:?}");
    assert!(!subscribed.contains(&wn(&quoted)), "{subscribed:?}");

    let status = reader.examine(&wn(&projects)).await.expect("examine");
    assert_eq!(status.exists, 3);
    assert_eq!(status.uidnext, Some(uids[2] + 1));
    assert_eq!(
        status.uidvalidity,
        before.folder(&projects).unwrap().uidvalidity
    );

    let mut metas = Vec::new();
    reader
        .fetch_metadata(status.exists, |m| metas.push(m))
        .await
        .expect("fetch_metadata");
    assert_eq!(metas.iter().map(|m| m.uid).collect::<Vec<_>>(), uids);
    let first = &metas[0];
    let mut flags = first.flags.clone();
    flags.sort();
    // \Recent is dropped (Dovecot sets it on fresh messages), keywords are kept.
    assert_eq!(flags, ["$Label1", "\\Seen"]);
    assert!(metas[2].flags.is_empty(), "{:?}", metas[2].flags);
    // Dovecot keeps the instant, not the zone: compare instants.
    let date =
        chrono::DateTime::parse_from_rfc3339(first.internal_date.as_deref().expect("INTERNALDATE"))
            .expect("RFC 3339");
    assert_eq!(
        date,
        chrono::DateTime::parse_from_rfc3339("2021-03-02T09:08:07+01:30").unwrap()
    );
    assert_eq!(first.size, bodies[0].len() as u64);
    let header = String::from_utf8_lossy(&first.header);
    assert!(header.contains("Subject: message 0"), "{header}");
    assert!(header.contains("Message-ID: <m0@example.org>"), "{header}");
    assert!(!header.contains("body 0"), "{header}");

    // Bodies, byte for byte; a UID that does not exist is reported, not dropped.
    let mut got = Vec::new();
    let outcome = reader
        .fetch_bodies(&[uids[2], 999, uids[0]], |uid, body| got.push((uid, body)))
        .await
        .expect("fetch_bodies");
    got.sort();
    assert_eq!(
        got,
        vec![(uids[0], bodies[0].clone()), (uids[2], bodies[2].clone())]
    );
    assert_eq!(outcome.missing, vec![999]);

    // The quoted name can be examined again with the name LIST gave.
    let status = reader
        .examine(&wn(&quoted))
        .await
        .expect("examine quoted name");
    assert_eq!(status.exists, 0);
    reader
        .fetch_metadata(0, |_| panic!("no messages"))
        .await
        .unwrap();

    reader.logout().await.expect("logout");
    before.assert_unchanged(&raw.snapshot());
}

#[tokio::test]
async fn modern_layout_is_read_without_changes() {
    read_layout(Layout::Modern).await;
}

#[tokio::test]
async fn classic_layout_is_read_without_changes() {
    read_layout(Layout::Classic).await;
}

#[tokio::test]
async fn refused_examine_keeps_the_session_usable() {
    let dc = Dovecot::start(Layout::Modern);
    let (user, pw) = dc.fresh_user("nofolder");
    let mut reader = Reader::connect(
        &server(dc.port(), Security::Plain),
        &limits(),
        &creds(&user, &pw),
    )
    .await
    .unwrap();
    let err = reader.examine(&wn("Does Not Exist")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImapError::Protocol { .. }), "{err:?}");
    assert!(
        text.contains("EXAMINE \"Does Not Exist\"") && text.contains("doesn't exist"),
        "{text}"
    );
    // No folder is examined any more: fetching is refused locally.
    assert!(reader.fetch_metadata(1, |_| {}).await.is_err());
    let status = reader
        .examine(&wn("INBOX"))
        .await
        .expect("session still usable");
    assert_eq!(status.exists, 0);
}

#[tokio::test]
async fn wrong_password_reports_the_server_text_without_the_password() {
    // Dovecot delays failed logins by 2 s by default.
    let dc = Dovecot::builder()
        .extra_config("auth_failure_delay = 0")
        .start();
    let (user, _) = dc.fresh_user("wrongpw");
    let secret = "Hunter2-not-the-password";
    for auth in [AuthMethod::Auto, AuthMethod::Login, AuthMethod::Plain] {
        let mut s = server(dc.port(), Security::Plain);
        s.auth = auth;
        let err = Reader::connect(&s, &limits(), &creds(&user, secret))
            .await
            .unwrap_err();
        let (display, debug) = (err.to_string(), format!("{err:?}"));
        match &err {
            ImapError::AuthFailed {
                user: u,
                server_text,
                ..
            } => {
                assert_eq!(u, &user);
                assert!(
                    server_text.contains("[AUTHENTICATIONFAILED] Authentication failed."),
                    "{auth:?}: {server_text}"
                );
            }
            other => panic!("{auth:?}: expected AuthFailed, got {other:?}"),
        }
        assert!(
            display.contains(&user) && display.contains("127.0.0.1:"),
            "{display}"
        );
        assert!(
            !display.contains(secret) && !debug.contains(secret),
            "{display}\n{debug}"
        );
        eprintln!("{auth:?}: {display}");
    }
}

#[tokio::test]
async fn admin_login_reads_the_users_mailbox() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let master = dir.path().join("master-passwd");
    std::fs::write(&master, "admin:{PLAIN}admin-secret\n").unwrap();
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dc = Dovecot::builder()
        .extra_config("auth_failure_delay = 0")
        .extra_config(&format!(
            "passdb {{\n  driver = passwd-file\n  master = yes\n  args = scheme=PLAIN {}\n}}",
            master.display()
        ))
        .start();
    let (user, _) = dc.fresh_user("onbehalf");
    let mut s = server(dc.port(), Security::Plain);
    s.admin = Some(AdminLogin {
        user: "admin".into(),
        password: SecretString::from("admin-secret".to_string()),
    });
    let no_password = Credentials {
        user: user.clone(),
        password: None,
    };
    let mut reader = Reader::connect(&s, &limits(), &no_password)
        .await
        .expect("admin login");
    // Logged in as the user: their auto-created folders are there.
    let list = reader.list_all().await.unwrap();
    assert!(
        list.iter().any(|e| e.wire_name.as_str() == "Sent"),
        "{list:?}"
    );
    reader.logout().await.unwrap();

    // A wrong admin password fails as an AuthFailed for the user, without the password.
    s.admin.as_mut().unwrap().password = SecretString::from("wrong-admin-pw".to_string());
    let err = Reader::connect(&s, &limits(), &no_password)
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::AuthFailed { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wrong-admin-pw"));

    // Without an admin, a missing password is an error before anything is sent.
    s.admin = None;
    let err = Reader::connect(&s, &limits(), &no_password)
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::NoPassword { .. }), "{err:?}");
}

#[tokio::test]
async fn refused_port_and_unknown_host_are_told_apart() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Reader::connect(&server(port, Security::Plain), &limits(), &creds("u", "p"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ImapError::ConnectFailed { reason: ConnectReason::Refused, port: p, .. } if *p == port),
        "{err:?}"
    );
    assert!(err.to_string().contains("connection refused"), "{err}");

    let mut s = server(143, Security::Plain);
    s.host = "no-such-host.invalid".into();
    let err = Reader::connect(&s, &limits(), &creds("u", "p"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ImapError::ConnectFailed {
                reason: ConnectReason::UnknownHost(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("`no-such-host.invalid:143`"),
        "{err}"
    );
}

#[tokio::test]
async fn tls_and_starttls_with_ca_file() {
    let dc = Dovecot::builder().tls(true).start();
    let (user, pw) = dc.fresh_user("tls");
    let c = creds(&user, &pw);

    for (port, security) in [
        (dc.tls_port(), Security::Tls),
        (dc.port(), Security::StartTls),
    ] {
        let mut s = server(port, security);
        s.ca_file = Some(dc.ca_pem_path().to_path_buf());
        let mut reader = Reader::connect(&s, &limits(), &c)
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}"));
        assert!(reader.examine(&wn("INBOX")).await.is_ok());
        reader.logout().await.unwrap();

        // The same with bundled Mozilla roots plus the anchor.
        s.tls_roots = TlsRoots::Mozilla;
        let reader = Reader::connect(&s, &limits(), &c)
            .await
            .unwrap_or_else(|e| panic!("{security:?} mozilla: {e}"));
        reader.logout().await.unwrap();

        // Without the anchor the self-signed certificate is refused, with a hint.
        for roots in [TlsRoots::System, TlsRoots::Mozilla] {
            s.ca_file = None;
            s.tls_roots = roots;
            let err = Reader::connect(&s, &limits(), &c).await.unwrap_err();
            assert!(
                matches!(err, ImapError::Tls { .. }),
                "{security:?} {roots:?}: {err:?}"
            );
            let hint = mailshift::diagnostics::HasHint::hint(&err).unwrap_or_default();
            assert!(hint.contains("ca-file"), "{err}\nhint: {hint}");
            eprintln!("{security:?} {roots:?} without ca-file: {err}");
        }

        // accept-invalid-certs connects anyway.
        s.accept_invalid_certs = true;
        Reader::connect(&s, &limits(), &c)
            .await
            .expect("accept-invalid-certs");
    }

    // Implicit TLS spoken to the plain port.
    let err = Reader::connect(&server(dc.port(), Security::Tls), &limits(), &c)
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    let dc = Dovecot::start(Layout::Modern);
    let (user, pw) = dc.fresh_user("nostarttls");
    let err = Reader::connect(
        &server(dc.port(), Security::StartTls),
        &limits(),
        &creds(&user, &pw),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ImapError::StartTlsUnavailable { .. }),
        "{err:?}"
    );
}

/// A server that accepts connections and runs `script` on each (blocking, in a thread).
fn fake_server(script: fn(std::net::TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || script(stream));
        }
    });
    port
}

#[tokio::test]
async fn silent_server_times_out_at_the_greeting() {
    let port = fake_server(|s| {
        std::thread::sleep(Duration::from_secs(10));
        drop(s);
    });
    let mut l = limits();
    l.connect_timeout = Duration::from_millis(500);
    let t = Instant::now();
    let err = Reader::connect(&server(port, Security::Plain), &l, &creds("u", "p"))
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::Timeout { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_timeout_mid_session_makes_the_reader_unusable() {
    // Greets, accepts any login, answers CAPABILITY, then never answers EXAMINE.
    let port = fake_server(|s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake\r\n")
            .unwrap();
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            let tag = line.split(' ').next().unwrap().to_string();
            let cmd = line.to_ascii_uppercase();
            if cmd.contains(" LOGIN ") {
                w.write_all(format!("{tag} OK logged in\r\n").as_bytes())
                    .unwrap();
            } else if cmd.contains(" CAPABILITY") {
                w.write_all(format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n").as_bytes())
                    .unwrap();
            }
            line.clear();
        }
    });
    let mut l = limits();
    l.idle_timeout = Duration::from_millis(300);
    let mut s = server(port, Security::Plain);
    s.auth = AuthMethod::Login;
    let mut reader = Reader::connect(&s, &l, &creds("u", "p"))
        .await
        .expect("connect to the fake");
    let err = reader.examine(&wn("INBOX")).await.unwrap_err();
    assert!(matches!(err, ImapError::Timeout { .. }), "{err:?}");
    let err = reader.examine(&wn("INBOX")).await.unwrap_err();
    assert!(
        matches!(&err, ImapError::Closed { reason, .. } if reason.contains("unusable")),
        "{err:?}"
    );
}

#[tokio::test]
async fn ten_thousand_messages_in_one_fetch() {
    const N: usize = 10_000;
    // Dovecot logs the bytes each session received at logout: one FETCH command for the
    // whole folder keeps the client's input tiny; one command per message would not.
    let dc = Dovecot::builder()
        .mail_on_tmpfs(true)
        .extra_config("imap_logout_format = client_in=%i client_out=%o")
        .start();
    let (user, pw) = dc.fresh_user("big");
    let mut raw = RawImap::login(dc.port(), &user, &pw);
    raw.create("Big");
    let messages: Vec<NewMessage> = (0..N)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("n{i}"))
                    .body("x\n")
                    .build(),
            )
        })
        .collect();
    let t = Instant::now();
    raw.append_many("Big", &messages);
    let fill = t.elapsed();
    raw.logout();

    let mut reader = Reader::connect(
        &server(dc.port(), Security::Plain),
        &limits(),
        &creds(&user, &pw),
    )
    .await
    .unwrap();
    let status = reader.examine(&wn("Big")).await.unwrap();
    assert_eq!(status.exists as usize, N);
    let t = Instant::now();
    let mut count = 0usize;
    let mut last_uid = 0;
    reader
        .fetch_metadata(status.exists, |m| {
            assert!(m.uid > last_uid);
            last_uid = m.uid;
            count += 1;
        })
        .await
        .unwrap();
    let fetch = t.elapsed();
    assert_eq!(count, N);
    reader.logout().await.unwrap();
    eprintln!("fetch_metadata of {N} messages: {fetch:?} (fill: {fill:?})");

    // Find our session's logout line (the filler logged out first, with far more input).
    let deadline = Instant::now() + Duration::from_secs(5);
    let client_in = loop {
        let log = dc.log_tail();
        let ins: Vec<u64> = log
            .lines()
            .filter(|l| l.contains(&user))
            .filter_map(|l| l.split("client_in=").nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse().ok())
            .collect();
        if ins.len() >= 2 {
            break ins[1];
        }
        assert!(
            Instant::now() < deadline,
            "no logout lines in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("bytes sent by the reader's session: {client_in}");
    assert!(
        client_in < 600,
        "the reader sent {client_in} bytes: more than one FETCH"
    );
}

/// What the client sent through the proxy of
/// [`login_is_one_round_trip_and_takes_the_capabilities_from_its_answer`].
static LOGIN_CHUNKS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn record_chunk(chunk: &[u8]) -> Option<Vec<u8>> {
    LOGIN_CHUNKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(String::from_utf8_lossy(chunk).into_owned());
    None
}

/// Across the internet each round trip of a login counts: with SASL-IR the PLAIN message
/// goes with the AUTHENTICATE command (no `+` continuation), and the capabilities come
/// from the tagged OK's `[CAPABILITY …]` code (no CAPABILITY command after login). The
/// post-login capabilities (more than the greeting's) are the ones the reader knows.
#[tokio::test]
async fn login_is_one_round_trip_and_takes_the_capabilities_from_its_answer() {
    let dc = Dovecot::start(Layout::Modern);
    let (user, pw) = dc.fresh_user("irlogin");
    let proxy = crate::support::FaultProxy::to(dc.port())
        .answer(record_chunk)
        .start();
    let reader = Reader::connect(
        &server(proxy.port(), Security::Plain),
        &limits(),
        &creds(&user, &pw),
    )
    .await
    .expect("login");
    // Dovecot's greeting does not announce UIDPLUS or MULTIAPPEND; its login answer does.
    assert!(
        reader.capabilities().has("UIDPLUS"),
        "{:?}",
        reader.capabilities()
    );
    assert!(reader.capabilities().has("MULTIAPPEND"));
    let sent = LOGIN_CHUNKS.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one command for the whole login: {sent:?}");
    assert!(
        sent[0].starts_with("A0001 AUTHENTICATE PLAIN ") && sent[0].trim_end().len() > 30,
        "the PLAIN message rides with the command: {:?}",
        sent[0].split(' ').take(3).collect::<Vec<_>>()
    );
    // The same session still works (the tap is off, the stream in step).
    let mut reader = reader;
    let listed = reader.list_all().await.expect("LIST after login");
    assert!(listed.iter().any(|e| e.wire_name.as_str() == "INBOX"));
}
