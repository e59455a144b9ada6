//! Smoke tests of the harness itself: both layouts start, folders with awkward names take
//! messages, what goes in comes back out (raw IMAP and doveadm), snapshots see changes.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::support::{Dovecot, Layout, MessageBuilder, NewMessage, RawImap};

const OLD_DATE: &str = "01-Jan-2001 10:00:00 +0200";

/// (path in mUTF-7 with `/` separators, the same path in UTF-8 as doveadm names it)
const FOLDERS: &[(&str, &str)] = &[
    ("Projects/2024/Q1", "Projects/2024/Q1"),
    ("Entw&APw-rfe", "Entwürfe"),
    ("Old Mail", "Old Mail"),
    ("R&-D", "R&D"),
];

fn fill_and_verify(layout: Layout) {
    let t = Instant::now();
    let dc = Dovecot::start(layout);
    let started = t.elapsed();
    assert!(started.as_secs_f64() < 5.0, "start took {started:?}");
    let (user, pw) = dc.fresh_user("smoke");
    let mut imap = RawImap::login(dc.port(), &user, &pw);

    // Auto-created special folders carry their attributes under the layout's names.
    let list = imap.list();
    let sent = list
        .iter()
        .find(|(attrs, _, _)| attrs.iter().any(|a| a == "\\Sent"))
        .unwrap_or_else(|| panic!("no \\Sent folder in {list:?}"));
    let expected_sent = match layout {
        Layout::Modern => "Sent",
        Layout::Classic => "INBOX.Sent Items",
    };
    assert_eq!(sent.2, expected_sent);
    assert_eq!(sent.1, Some(layout.separator()));

    let mut expected = Vec::new();
    for (path, utf8) in FOLDERS {
        let wire = layout.wire(path);
        imap.create(&wire);
        imap.subscribe(&wire);
        let body = MessageBuilder::new()
            .subject(&format!("in {utf8}"))
            .body("8-bit: \u{e4}\u{f6}\u{fc}\nline two\n")
            .build();
        let uid = imap.append(
            &wire,
            &["\\Seen", "$Label1", "Keyword_x"],
            Some(OLD_DATE),
            &body,
        );
        assert_eq!(uid, 1, "first message of a fresh folder");
        expected.push((
            wire,
            utf8.replace('/', &layout.separator().to_string()),
            body,
        ));
    }

    let names: Vec<String> = imap.list().into_iter().map(|(_, _, n)| n).collect();
    for (wire, _, _) in &expected {
        assert!(names.contains(wire), "`{wire}` not in LIST {names:?}");
    }
    assert!(imap.list_subscribed().contains(&expected[1].0));

    for (wire, utf8, body) in &expected {
        let msgs = imap.fetch_all(wire);
        assert_eq!(msgs.len(), 1);
        assert_eq!(&msgs[0].body, body, "raw bytes of `{wire}`");
        assert_eq!(msgs[0].flags, vec!["$Label1", "Keyword_x", "\\Seen"]);
        // INTERNALDATE keeps the instant, not necessarily the zone.
        assert!(
            msgs[0].internal_date == OLD_DATE
                || msgs[0].internal_date == "01-Jan-2001 08:00:00 +0000",
            "INTERNALDATE {}",
            msgs[0].internal_date
        );

        let mailbox = format!("{}{utf8}", layout.prefix());
        let seen = dc.doveadm_fetch(&user, &["mailbox", &mailbox]);
        assert_eq!(seen.len(), 1, "doveadm fetch of `{mailbox}`");
        assert_eq!(seen[0].mailbox, mailbox);
        assert_eq!(&seen[0].text, body, "doveadm bytes of `{mailbox}`");
        assert_eq!(seen[0].flags, vec!["$Label1", "Keyword_x", "\\Seen"]);
        assert_eq!(seen[0].received_unixtime, 978_336_000);
    }
}

#[test]
fn modern_layout_round_trips_awkward_folders() {
    fill_and_verify(Layout::Modern);
}

#[test]
fn classic_layout_round_trips_awkward_folders() {
    fill_and_verify(Layout::Classic);
}

#[test]
fn snapshot_sees_flag_body_and_folder_changes() {
    let dc = Dovecot::start(Layout::Modern);
    let (user, pw) = dc.fresh_user("snap");
    let mut imap = RawImap::login(dc.port(), &user, &pw);
    let msgs: Vec<NewMessage> = (0..3)
        .map(|i| NewMessage::new(MessageBuilder::new().pad_to(2000 + i).build()).flags(&["\\Seen"]))
        .collect();
    let uids = imap.append_many("INBOX", &msgs);
    assert_eq!(uids, vec![1, 2, 3]);

    let before = imap.snapshot();
    // Reading (snapshot twice, from another connection too) changes nothing.
    assert_eq!(before, imap.snapshot());
    assert_eq!(before, RawImap::login(dc.port(), &user, &pw).snapshot());
    assert_eq!(before.folder("INBOX").unwrap().messages.len(), 3);

    imap.add_flags("INBOX", 2, &["\\Flagged"]);
    let after = imap.snapshot();
    assert_ne!(before, after);
    let diff = before.diff(&after);
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert!(diff[0].contains("uid 2: flags"), "{diff:?}");
    let panic = std::panic::catch_unwind(|| before.assert_unchanged(&after));
    assert!(
        panic.is_err(),
        "assert_unchanged must fail on a changed flag"
    );

    imap.remove_flags("INBOX", 2, &["\\Flagged"]);
    before.assert_unchanged(&imap.snapshot());

    imap.expunge("INBOX", &[3]);
    imap.create("New");
    let diff = before.diff(&imap.snapshot());
    assert!(diff.iter().any(|d| d.contains("uid 3: gone")), "{diff:?}");
    assert!(
        diff.iter()
            .any(|d| d.contains("`New`") && d.contains("appeared")),
        "{diff:?}"
    );
}

#[test]
fn special_folders_without_attributes_and_passwd_changes() {
    let dc = Dovecot::builder()
        .layout(Layout::Classic)
        .special_use_attributes(false)
        .start();
    let (user, pw) = dc.fresh_user("noattr");
    let mut imap = RawImap::login(dc.port(), &user, &pw);
    let list = imap.list();
    let sent = list
        .iter()
        .find(|(_, _, n)| n == "INBOX.Sent Items")
        .expect("Sent Items");
    assert!(!sent.0.iter().any(|a| a == "\\Sent"), "{list:?}");

    // Users added right after a login can log in at once (Dovecot's passwd-file cache).
    for _ in 0..3 {
        let (u, p) = dc.fresh_user("late");
        RawImap::login(dc.port(), &u, &p);
    }
    let out = dc.doveadm(&["user", "*"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listed.lines().count(),
        4,
        "doveadm user *:\n{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dc.doveadm(&["mailbox", "list", "-A"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A changed password takes effect at once.
    dc.add_user(&user, "other-pw");
    let lines = RawImap::connect(dc.port()).raw_command(&format!("LOGIN {user} {pw}"));
    assert!(lines.last().unwrap().contains(" NO "), "{lines:?}");
    RawImap::login(dc.port(), &user, "other-pw");
}

#[test]
fn append_many_fills_thousands_quickly() {
    let dc = Dovecot::builder().mail_on_tmpfs(true).start();
    let (user, pw) = dc.fresh_user("bulk");
    let mut imap = RawImap::login(dc.port(), &user, &pw);
    let msgs: Vec<NewMessage> = (0..2000)
        .map(|_| {
            NewMessage::new(MessageBuilder::new().pad_to(3000).build()).internal_date(OLD_DATE)
        })
        .collect();
    let t = Instant::now();
    let uids = imap.append_many("INBOX", &msgs);
    let took = t.elapsed();
    assert_eq!(uids, (1..=2000).collect::<Vec<u32>>());
    assert!(took.as_secs_f64() < 10.0, "2,000 appends took {took:?}");
    let back = imap.fetch_all("INBOX");
    assert_eq!(back.len(), 2000);
    assert!(back.iter().zip(&msgs).all(|(b, m)| b.body == m.body));
}

#[test]
fn tls_instance_serves_implicit_tls_and_starttls() {
    let dc = Dovecot::builder().tls(true).start();
    for extra in [vec![], vec!["-starttls", "imap"]] {
        let port = if extra.is_empty() {
            dc.tls_port()
        } else {
            dc.port()
        };
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args([
                "-verify_return_error",
                "-verify_hostname",
                "localhost",
                "-CAfile",
            ])
            .arg(dc.ca_pem_path())
            .args(&extra)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl s_client");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Verify return code: 0 (ok)"),
            "TLS on port {port} {extra:?} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
