//! Connect-level stalls against the retry budget (issue 6): a server that accepts TCP but
//! never greets, and one whose TCP handshake never completes (its accept queue is full, so
//! the SYNs are dropped), each cost a whole `connect-timeout` per attempt. Both count as
//! timeouts: a session gives up after 3 of them without progress (about 3 ×
//! `connect-timeout`), not after the 16 failures that a server refusing connections at once
//! is allowed.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailshift::imap::{
    ConnectReason, Credentials, DestinationSession, ImapError, RetryPolicy, SessionConfig,
    SessionError,
};
use mailshift::settings::Security;
use secrecy::SecretString;

use crate::imap_layer::{limits, server};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

fn session(port: u16) -> DestinationSession {
    let mut l = limits();
    l.connect_timeout = CONNECT_TIMEOUT;
    let config = SessionConfig {
        server: server(port, Security::Plain),
        limits: l.clone(),
        creds: Credentials {
            user: "u".into(),
            password: Some(SecretString::from("p".to_string())),
        },
    };
    DestinationSession::new(config, RetryPolicy::from_limits(&l))
}

/// Connects until the give-up; (attempts the session counted, the last error, time).
async fn give_up(port: u16) -> (u32, ImapError, Duration) {
    let started = Instant::now();
    match session(port).connect().await {
        Err(SessionError::GaveUp { attempts, last }) => (attempts, last, started.elapsed()),
        Err(other) => panic!("expected a give-up, got {other:?}"),
        Ok(()) => panic!("connected to a server that never answers"),
    }
}

#[tokio::test]
async fn a_server_that_never_greets_is_given_up_after_three_connect_timeouts() {
    // Accepts every connection and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    let (attempts, last, took) = give_up(port).await;
    let accepted = accepted.load(Ordering::SeqCst);
    eprintln!(
        "never greets: {accepted} connections, gave up after {attempts} attempts in {took:?}: {last}"
    );
    assert!(matches!(last, ImapError::Timeout { .. }), "{last:?}");
    assert!(last.to_string().contains("greeting"), "{last}");
    assert_eq!(accepted, 3, "one connection per attempt, three attempts");
    assert!(
        took < CONNECT_TIMEOUT * 3 + Duration::from_secs(2),
        "gave up after {took:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_completes_the_handshake_is_given_up_after_three_connect_timeouts() {
    // A listener that never accepts: once its accept queue is full, the kernel drops new
    // SYNs and connecting times out (what a firewall that drops packets does).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // Full once three connects in a row time out (one slow connect under load is not).
    let mut timed_out = 0;
    while timed_out < 3 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => {
                queued.push(s);
                timed_out = 0;
            }
            Err(_) => timed_out += 1,
        }
        assert!(queued.len() < 10_000, "the accept queue never filled");
    }
    let (attempts, last, took) = give_up(addr.port()).await;
    eprintln!(
        "never completes the handshake ({} connections queued): gave up after {attempts} attempts in {took:?}: {last}",
        queued.len()
    );
    assert!(
        matches!(
            last,
            ImapError::ConnectFailed {
                reason: ConnectReason::TimedOut(_),
                ..
            }
        ),
        "{last:?}"
    );
    assert_eq!(attempts, 3, "{last}");
    assert!(
        took < CONNECT_TIMEOUT * 3 + Duration::from_secs(2),
        "gave up after {took:?}"
    );
    drop(listener);
}
