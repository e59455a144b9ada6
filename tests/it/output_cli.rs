//! What reaches the admin's terminal: text from servers and messages is shown with its
//! control characters escaped (a subject must not retitle the window or erase a line),
//! JSON keeps it intact as JSON strings, and a reader that closes stdout early (`| head`)
//! ends the run cleanly.

use std::io::Read as _;
use std::process::{Command, Stdio};

use crate::scenario::{Scenario, Side};
use crate::support::{Direction, FaultProxy, Layout, MessageBuilder, NewMessage};

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';

/// No ESC or BEL byte anywhere in a text output: every one was escaped.
fn assert_no_terminal_controls(text: &str) {
    assert!(
        !text.contains(ESC) && !text.contains(BEL),
        "raw control characters reached the terminal:\n{text:?}"
    );
}

#[test]
fn hostile_subjects_senders_and_folder_names_are_escaped_in_text_and_intact_in_json() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    src.create("Reports");
    // `&ABs-` is modified UTF-7 for ESC: a folder name no client can show. Dovecot refuses
    // to CREATE it (`[CANNOT] Control characters not allowed in new mailbox names`) but
    // serves one that exists on disk (made by an older server or another tool).
    let maildir = s
        .source_dovecot()
        .mail_root()
        .join(&s.acct("alice").source_user)
        .join("Maildir")
        .join("evil&ABs-[2K");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let chown = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&maildir)
        .status()
        .unwrap();
    assert!(chown.success());
    let hostile = MessageBuilder::new()
        .subject("=?UTF-8?Q?invoice=1B]0;owned=07=1B[2K?=")
        .from("=?UTF-8?Q?Boss=1B[31m?= <boss@old.example>")
        .build();
    src.append_many("Reports", &[NewMessage::new(hostile)]);
    src.append_many(
        "evil&ABs-[2K",
        &[NewMessage::new(
            MessageBuilder::new().subject("inside").build(),
        )],
    );
    let before = src.snapshot();

    let text = s.run(&["plan", "--detail"]);
    assert_eq!(text.status, 0, "{text}");
    assert_no_terminal_controls(&text.stdout);
    assert_no_terminal_controls(&text.stderr);
    assert!(
        text.stdout
            .contains("invoice\\u{1b}]0;owned\\u{7}\\u{1b}[2K"),
        "{text}"
    );
    // The folder is listed as not migrated, with the reason, and never planned.
    assert!(
        text.stdout.contains("evil\\u{1b}[2K  not migrated"),
        "{text}"
    );
    assert!(text.stdout.contains("control character `U+001B`"), "{text}");

    let json = s.run(&["plan", "--format", "json"]);
    assert_eq!(json.status, 0, "{json}");
    assert_no_terminal_controls(&json.stdout);
    let doc = json.json();
    let subjects: Vec<String> = doc["accounts"][0]["folders"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["copy"].as_array().cloned().unwrap_or_default())
        .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        subjects.contains(&format!("invoice{ESC}]0;owned{BEL}{ESC}[2K")),
        "the JSON string holds the subject as it is: {subjects:?}"
    );
    let ignored = doc["accounts"][0]["ignored_folders"].to_string();
    assert!(ignored.contains("evil\\u001b[2K"), "{ignored}");

    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");
    assert_no_terminal_controls(&apply.stdout);
    let mut dst = s.dst("alice");
    let names: Vec<String> = dst.list().into_iter().map(|(_, _, n)| n).collect();
    assert!(
        !names.iter().any(|n| n.contains("&ABs-")),
        "the folder with a control character was created: {names:?}"
    );
    assert_eq!(dst.fetch_all("Reports").len(), 1);
    before.assert_unchanged(&src.snapshot());
}

#[test]
fn a_servers_words_with_control_characters_are_escaped() {
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice");
    s.set_csv_password(Side::Destination, "alice", "wrong-password");
    // The destination answers the failed login with a terminal escape in its text.
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .rewrite(
            Direction::ServerToClient,
            b"Authentication failed.",
            b"Authent\x1b]0;pwn\x07failed.",
        )
        .start();
    s.set_port(Side::Destination, proxy.port());

    let text = s.run(&["plan"]);
    assert_eq!(text.status, 1, "{text}");
    assert_no_terminal_controls(&text.stdout);
    assert_no_terminal_controls(&text.stderr);
    assert!(
        text.stdout.contains("Authent\\u{1b}]0;pwn\\u{7}failed."),
        "{text}"
    );
    let json = s.run(&["plan", "--format", "json"]);
    let error = json.json()["accounts"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains(&format!("Authent{ESC}]0;pwn{BEL}failed.")),
        "{error:?}"
    );
    assert!(proxy.fired() >= 1 || proxy.connections() >= 1);
}

#[test]
fn a_reader_that_stops_early_is_a_clean_end() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .account("bob");
    let mut src = s.src("alice");
    let many: Vec<NewMessage> = (0..40)
        .map(|i| NewMessage::new(MessageBuilder::new().subject(&format!("m{i}")).build()))
        .collect();
    src.append_many("INBOX", &many);
    let saved = s.run(&["plan", "--out", "plan.json"]);
    assert_eq!(saved.status, 0, "{saved}");
    // A big enough output that `head` closes the pipe before mailshift is done writing.
    let doc = std::fs::read_to_string(s.path("plan.json")).unwrap();
    let mut padded: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let account = padded["accounts"][0].clone();
    for i in 0..200 {
        // Distinct users: a plan file listing an account twice is refused as damaged.
        let mut copy = account.clone();
        copy["source_user"] = format!("{i}-{}", account["source_user"].as_str().unwrap()).into();
        padded["accounts"].as_array_mut().unwrap().push(copy);
    }
    std::fs::write(s.path("big.json"), serde_json::to_string(&padded).unwrap()).unwrap();

    for args in [
        vec!["show", "plan.json", "--detail"],
        vec!["show", "big.json", "--format", "json"],
        vec!["show", "big.json"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailshift"))
            .args(&args)
            .current_dir(s.dir())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read a little, then close our end like `head -2` does.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 64];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// A plain-text server that accepts the connection and never greets: the error says what
/// was awaited (the greeting), not a TLS handshake that never happens on `plain`.
#[test]
fn a_silent_plain_server_is_described_without_tls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold the connections, saying nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice")
        .config("[limits]\nconnect-timeout = \"1s\"\n");
    s.set_port(Side::Source, port);
    let r = s.run(&["check"]);
    assert_eq!(r.status, 1, "{r}");
    let out = r.all_output();
    assert!(out.contains("while waiting for the greeting"), "{r}");
    assert!(!out.contains("TLS"), "{r}");
}
