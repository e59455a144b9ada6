//! `mailshift plan` (and `show`) end to end: the real binary against two real Dovecots, the
//! acceptance checks of issue 2. Expected numbers come from what the test put on the
//! servers and read back itself (RFC822.SIZE), never from the code under test.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::scenario::{human_bytes, plan_line, rfc822_sizes, squash, thousands, Scenario, Side};
use crate::support::{Dovecot, Layout, MailboxSnapshot, MessageBuilder, NewMessage, RawImap};

const OLD_DATE: &str = "01-Jan-2001 10:00:00 +0200";
const OLDER_DATE: &str = "15-Mar-1999 23:59:59 -0500";

/// Every line of `text` squashed (whitespace runs → one space).
fn squashed_lines(text: &str) -> Vec<String> {
    text.lines().map(squash).collect()
}

#[track_caller]
fn assert_has_line(text: &str, expected: &str) {
    let lines = squashed_lines(text);
    assert!(
        lines.iter().any(|l| l == expected),
        "no line `{expected}` in:\n{text}"
    );
}

fn snapshot(imap: &mut RawImap) -> MailboxSnapshot {
    imap.snapshot()
}

/// Messages without `\Seen`, over all folders.
fn unseen(s: &MailboxSnapshot) -> usize {
    s.folders
        .values()
        .flat_map(|f| &f.messages)
        .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
        .count()
}

/// The account's classic source with awkward content, a modern destination holding part of
/// it (the same bytes, appended by the test). Returns the scenario and the expected numbers.
struct Classic2Modern {
    s: Scenario,
    /// (destination display path, messages to copy, bytes to copy)
    per_folder: Vec<(&'static str, u64, u64)>,
    folders_to_create: u64,
    messages: u64,
    bytes: u64,
    present: u64,
    skipped: u64,
}

fn classic_to_modern_partial() -> Classic2Modern {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    let mut dst = s.dst("alice");

    // INBOX: a read+keyword message, one without Message-ID (unseen), two identical ones,
    // one without Message-ID that is already on the destination, one \Deleted.
    let m_seen = NewMessage::new(MessageBuilder::new().subject("seen").pad_to(3000).build())
        .flags(&["\\Seen", "$Label1"])
        .internal_date(OLD_DATE);
    let m_noid = NewMessage::new(
        MessageBuilder::new()
            .subject("no id, unseen")
            .message_id(None)
            .pad_to(5000)
            .build(),
    )
    .internal_date(OLDER_DATE);
    let twin_body = MessageBuilder::new()
        .subject("twin")
        .message_id(Some("<twin@mailshift.test>"))
        .pad_to(7000)
        .build();
    let m_twin = NewMessage::new(twin_body.clone())
        .flags(&["\\Seen"])
        .internal_date(OLD_DATE);
    let m_noid_present = NewMessage::new(
        MessageBuilder::new()
            .subject("no id, present")
            .message_id(None)
            .date("Tue, 02 Jan 2024 11:00:00 +0100")
            .pad_to(2000)
            .build(),
    )
    .flags(&["\\Seen"]);
    let m_deleted = NewMessage::new(
        MessageBuilder::new()
            .subject("deleted")
            .pad_to(9000)
            .build(),
    )
    .flags(&["\\Deleted", "\\Seen"]);
    let inbox = [
        m_seen.clone(),
        m_noid.clone(),
        m_twin.clone(),
        m_twin.clone(),
        m_noid_present.clone(),
        m_deleted,
    ];
    let inbox_uids = src.append_many("INBOX", &inbox);
    // Destination INBOX: the read one, ONE of the twins, the present id-less one.
    dst.append_many(
        "INBOX",
        &[m_seen.clone(), m_twin.clone(), m_noid_present.clone()],
    );

    // Sent Items (\Sent) -> Sent: one already there, one missing.
    let sent1 = NewMessage::new(MessageBuilder::new().subject("sent 1").pad_to(1500).build())
        .flags(&["\\Seen"])
        .internal_date(OLD_DATE);
    let sent2 = NewMessage::new(MessageBuilder::new().subject("sent 2").pad_to(2500).build())
        .flags(&["\\Seen", "\\Answered"])
        .internal_date(OLD_DATE);
    let sent_uids = src.append_many("INBOX.Sent Items", &[sent1.clone(), sent2]);
    dst.append_many("Sent", &[sent1]);

    // Nested: INBOX.Projects (exists on the destination, empty) and INBOX.Projects.2024.
    src.create("INBOX.Projects");
    src.create("INBOX.Projects.2024");
    dst.create("Projects");
    let proj: Vec<NewMessage> = (0..2)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("project {i}"))
                    .pad_to(4000 + i)
                    .build(),
            )
            .flags(&["$Project"])
            .internal_date(OLDER_DATE)
        })
        .collect();
    let proj_uids = src.append_many("INBOX.Projects.2024", &proj);

    // Non-ASCII, a space, an ampersand.
    src.create("INBOX.Entw&APw-rfe");
    let e_uids = src.append_many(
        "INBOX.Entw&APw-rfe",
        &[NewMessage::new(
            MessageBuilder::new()
                .subject("=?utf-8?q?Entw=C3=BCrfe?=")
                .body("8-bit: \u{e4}\u{f6}\u{fc}\n")
                .pad_to(1200)
                .build(),
        )],
    );
    src.create("INBOX.Old Mail");
    let o_uids = src.append_many(
        "INBOX.Old Mail",
        &[
            NewMessage::new(MessageBuilder::new().subject("old").pad_to(6000).build())
                .flags(&["\\Seen", "\\Flagged"])
                .internal_date(OLDER_DATE),
        ],
    );
    src.create("INBOX.Q&-A");
    let q: Vec<NewMessage> = (0..2)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("q {i}"))
                    .pad_to(800)
                    .build(),
            )
        })
        .collect();
    let q_uids = src.append_many("INBOX.Q&-A", &q);

    // Expected bytes, from RFC822.SIZE as the source reports it.
    let size_of = |imap: &mut RawImap, folder: &str, uids: &[u32]| -> u64 {
        let sizes = rfc822_sizes(imap, folder);
        uids.iter().map(|u| sizes[u]).sum()
    };
    // INBOX copies: the id-less unseen one and one twin (same size as the other twin).
    let inbox_bytes = size_of(&mut src, "INBOX", &[inbox_uids[1], inbox_uids[3]]);
    let sent_bytes = size_of(&mut src, "INBOX.Sent Items", &sent_uids[1..]);
    let proj_bytes = size_of(&mut src, "INBOX.Projects.2024", &proj_uids);
    let e_bytes = size_of(&mut src, "INBOX.Entw&APw-rfe", &e_uids);
    let o_bytes = size_of(&mut src, "INBOX.Old Mail", &o_uids);
    let q_bytes = size_of(&mut src, "INBOX.Q&-A", &q_uids);
    // Sanity of the test itself: the twins have the same size, the bodies are what we sent.
    let inbox_sizes = rfc822_sizes(&mut src, "INBOX");
    assert_eq!(inbox_sizes[&inbox_uids[2]], inbox_sizes[&inbox_uids[3]]);
    assert_eq!(inbox_sizes[&inbox_uids[2]], twin_body.len() as u64);

    let per_folder = vec![
        ("INBOX", 2, inbox_bytes),
        ("Sent", 1, sent_bytes),
        ("Projects/2024", 2, proj_bytes),
        ("Entwürfe", 1, e_bytes),
        ("Old Mail", 1, o_bytes),
        ("Q&A", 2, q_bytes),
    ];
    let messages = per_folder.iter().map(|f| f.1).sum();
    let bytes = per_folder.iter().map(|f| f.2).sum();
    Classic2Modern {
        s,
        per_folder,
        folders_to_create: 4, // Projects/2024, Entwürfe, Old Mail, Q&A
        messages,
        bytes,
        present: 4, // INBOX: seen, one twin, id-less present; Sent: sent 1
        skipped: 1, // the \Deleted one
    }
}

#[test]
fn plan_classic_to_modern_reports_exactly_what_is_missing_and_changes_nothing() {
    let c = classic_to_modern_partial();
    let s = &c.s;
    let mut src = s.src("alice");
    let mut dst = s.dst("alice");
    let src_before = snapshot(&mut src);
    let dst_before = snapshot(&mut dst);
    let unseen_before = unseen(&src_before);
    assert_eq!(unseen_before, 6, "test set-up: unseen source messages");

    let r = s.run(&["plan"]);
    eprintln!("{r}");
    assert_eq!(r.status, 0, "{r}");
    let a = s.acct("alice");
    assert_eq!(
        r.stdout.lines().next().unwrap_or(""),
        format!("{} → {}", a.source_user, a.destination_user),
        "{r}"
    );

    // Folder mapping.
    assert_has_line(&r.stdout, "= Sent ← INBOX.Sent Items (\\Sent)");
    assert_has_line(&r.stdout, "+ Projects/2024 ← INBOX.Projects.2024");
    assert_has_line(&r.stdout, "+ Entwürfe ← INBOX.Entwürfe");
    assert_has_line(&r.stdout, "+ Old Mail ← INBOX.Old Mail");
    assert_has_line(&r.stdout, "+ Q&A ← INBOX.Q&A");
    let created: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("+ ") && l.contains('←'))
        .collect();
    assert_eq!(created.len(), 4, "folders to create: {created:?}\n{r}");

    // Messages per destination folder: `+ N (size)  Folder`.
    for (folder, n, bytes) in &c.per_folder {
        assert_has_line(
            &r.stdout,
            &format!("+ {} ({}) {folder}", thousands(*n), human_bytes(*bytes)),
        );
    }
    assert_has_line(&r.stdout, "skipped in INBOX: 1 \\Deleted");
    assert_has_line(&r.stdout, &format!("already present: {}", c.present));
    assert_eq!(
        r.last_line(),
        plan_line(
            c.folders_to_create,
            c.messages,
            c.bytes,
            c.present,
            c.skipped
        ),
        "{r}"
    );

    // The same numbers in JSON, bytes exact.
    let j = s.run(&["plan", "--format", "json"]);
    assert_eq!(j.status, 0, "{j}");
    let doc = j.json();
    let sum = &doc["summary"];
    assert_eq!(sum["folders_to_create"], c.folders_to_create, "{j}");
    assert_eq!(sum["messages_to_copy"], c.messages, "{j}");
    assert_eq!(sum["bytes_to_copy"], c.bytes, "{j}");
    assert_eq!(sum["already_present"], c.present, "{j}");
    assert_eq!(sum["skipped"], c.skipped, "{j}");
    assert_eq!(doc["accounts"][0]["summary"], *sum);

    // Neither server changed: bodies, flags (\Seen included), dates, folders.
    let src_after = snapshot(&mut src);
    src_before.assert_unchanged(&src_after);
    dst_before.assert_unchanged(&snapshot(&mut dst));
    assert_eq!(
        unseen(&src_after),
        unseen_before,
        "\\Seen was set on the source"
    );
    // And independently of IMAP: doveadm still sees the unseen id-less message unseen.
    let user = &s.acct("alice").source_user;
    let inbox = s
        .source_dovecot()
        .doveadm_fetch(user, &["mailbox", "INBOX"]);
    assert_eq!(inbox.len(), 6);
    assert!(
        inbox
            .iter()
            .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
            .count()
            == 1,
        "{inbox:?}"
    );
}

/// Fill `name`'s source INBOX and Sent Items, and the same messages on the destination.
fn identical_sides(s: &Scenario, name: &str) -> usize {
    let inbox: Vec<NewMessage> = (0..5)
        .map(|i| {
            NewMessage::new(MessageBuilder::new().pad_to(1000 + i * 10).build())
                .flags(if i % 2 == 0 { &["\\Seen"] } else { &[] })
                .internal_date(OLD_DATE)
        })
        .collect();
    let sent = vec![NewMessage::new(MessageBuilder::new().build()).flags(&["\\Seen"])];
    let (mut src, mut dst) = (s.src(name), s.dst(name));
    src.append_many("INBOX", &inbox);
    dst.append_many("INBOX", &inbox);
    let sent_src = s.layout(Side::Source).wire("Sent Items");
    src.append_many(&sent_src, &sent);
    dst.append_many("Sent", &sent);
    inbox.len() + sent.len()
}

#[test]
fn detailed_exitcode_is_0_without_changes_2_with_changes_1_on_error() {
    let mut s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let present = identical_sides(&s, "alice");

    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(
        r.last_line(),
        "No changes. The destination has every message.",
        "{r}"
    );
    assert_has_line(&r.stdout, &format!("already present: {present}"));
    // Without the flag, also 0.
    assert_eq!(s.run(&["plan"]).status, 0);

    // One new message on the source: exit 2 and exactly that message.
    let body = MessageBuilder::new().subject("new").pad_to(2048).build();
    s.src("alice").append("INBOX", &[], None, &body);
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.status, 2, "{r}");
    assert_eq!(
        r.last_line(),
        plan_line(0, 1, 2048, present as u64, 0),
        "{r}"
    );
    // Changes without --detailed-exitcode are still a success.
    assert_eq!(s.run(&["plan"]).status, 0);

    // A wrong password: 1, even with changes pending.
    s.set_csv_password(Side::Destination, "alice", "not-the-password");
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.status, 1, "{r}");
    let real = s.acct("alice").destination_password.clone();
    s.set_csv_password(Side::Destination, "alice", &real);
    assert_eq!(s.run(&["plan", "--detailed-exitcode"]).status, 2);

    // The destination server gone: 1.
    s.stop(Side::Destination);
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.status, 1, "{r}");
    let port = s.port(Side::Destination);
    assert!(
        r.stdout.contains(&format!("127.0.0.1:{port}")),
        "the error names the server:\n{r}"
    );
    assert!(!r.last_line().starts_with("No changes"), "{r}");
}

/// Two accounts, bob's source password in the CSV is wrong.
fn alice_ok_bob_wrong() -> (Scenario, &'static str) {
    const WRONG: &str = "Wr0ng-Pa55word-7c1d";
    let mut s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .account("bob");
    s.src("alice").append_many(
        "INBOX",
        &[NewMessage::new(MessageBuilder::new().pad_to(1500).build())],
    );
    s.set_csv_password(Side::Source, "bob", WRONG);
    (s, WRONG)
}

#[track_caller]
fn assert_no_password(s: &Scenario, wrong: &str, text: &str) {
    let mut secrets = vec![wrong.to_string()];
    for a in s.accounts() {
        secrets.push(a.source_password.clone());
        secrets.push(a.destination_password.clone());
    }
    for secret in secrets {
        assert!(
            !text.contains(&secret),
            "a password (`{secret}`) was printed:\n{text}"
        );
    }
}

#[test]
fn wrong_password_names_the_account_with_the_servers_words_and_others_still_plan() {
    let (s, wrong) = alice_ok_bob_wrong();
    let (alice, bob) = (s.acct("alice"), s.acct("bob"));
    for args in [
        &["plan"][..],
        &["plan", "-vvv"][..],
        &["plan", "--format", "json"][..],
        &["plan", "--detailed-exitcode"][..],
    ] {
        let r = s.run(args);
        assert_eq!(r.status, 1, "{args:?}: {r}");
        assert_no_password(&s, wrong, &r.all_output());
        if args.contains(&"json") {
            let doc = r.json();
            let accounts = doc["accounts"].as_array().unwrap();
            assert_eq!(accounts.len(), 2, "{r}");
            assert_eq!(accounts[0]["source_user"], alice.source_user.as_str());
            assert!(accounts[0].get("error").is_none(), "{r}");
            assert_eq!(accounts[0]["summary"]["messages_to_copy"], 1);
            assert_eq!(accounts[1]["source_user"], bob.source_user.as_str());
            let e = accounts[1]["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"));
            assert!(e.contains("[AUTHENTICATIONFAILED]"), "{e}");
            assert_eq!(
                doc["summary"]["messages_to_copy"], 1,
                "totals of good accounts"
            );
            continue;
        }
        // bob's block carries the server's words; alice's block is a normal plan.
        let bob_block: String = r
            .stdout
            .split("\n\n")
            .find(|b| b.starts_with(&bob.source_user))
            .unwrap_or_else(|| panic!("no block for bob:\n{r}"))
            .to_string();
        assert!(bob_block.contains("error:"), "{bob_block}");
        assert!(bob_block.contains("[AUTHENTICATIONFAILED]"), "{bob_block}");
        assert!(bob_block.contains("source"), "{bob_block}");
        let alice_block: String = r
            .stdout
            .split("\n\n")
            .find(|b| b.starts_with(&alice.source_user))
            .unwrap_or_else(|| panic!("no block for alice:\n{r}"))
            .to_string();
        assert!(!alice_block.contains("error"), "{alice_block}");
        assert_has_line(&alice_block, "+ 1 (1.5 KiB) INBOX");
        assert_eq!(r.last_line(), plan_line(0, 1, 1500, 0, 0), "{r}");
    }
}

#[test]
fn wrong_password_in_check() {
    let (s, wrong) = alice_ok_bob_wrong();
    let (alice, bob) = (s.acct("alice"), s.acct("bob"));
    let r = s.run(&["check"]);
    assert_eq!(r.status, 1, "{r}");
    assert_no_password(&s, wrong, &r.all_output());
    let bob_lines: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains(&bob.source_user) && l.contains("[AUTHENTICATIONFAILED]"))
        .collect();
    assert_eq!(bob_lines.len(), 1, "one error line for bob:\n{r}");
    assert!(bob_lines[0].contains("source"), "{r}");
    assert!(
        !r.stdout
            .lines()
            .any(|l| l.contains(&alice.source_user) && l.contains("AUTHENTICATIONFAILED")),
        "{r}"
    );
    // JSON: alice ok on both sides, bob's source failed with the server's words.
    let j = s.run(&["check", "--format", "json"]);
    assert_eq!(j.status, 1, "{j}");
    assert_no_password(&s, wrong, &j.all_output());
    let doc = j.json();
    let accounts = doc["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0]["source"]["ok"], true, "{j}");
    assert_eq!(accounts[0]["destination"]["ok"], true, "{j}");
    assert_eq!(accounts[1]["source"]["ok"], false, "{j}");
    assert_eq!(accounts[1]["destination"]["ok"], true, "{j}");
    assert!(
        accounts[1]["source"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("[AUTHENTICATIONFAILED]")),
        "{j}"
    );
}

#[test]
fn json_plan_saved_plan_and_show_agree() {
    let c = classic_to_modern_partial();
    let s = &c.s;
    let j = s.run(&["plan", "--format", "json"]);
    assert_eq!(j.status, 0, "{j}");
    let doc = j.json();
    let obj = doc.as_object().unwrap();
    for key in [
        "format_version",
        "tool_version",
        "created_at",
        "config_digest",
        "accounts",
        "summary",
    ] {
        assert!(obj.contains_key(key), "no `{key}` in {doc:#}");
    }
    assert!(doc["format_version"].is_u64());
    assert_eq!(doc["tool_version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["created_at"]
        .as_str()
        .is_some_and(|t| t.len() >= 20 && t.contains('T')));
    assert!(doc["config_digest"].as_str().is_some_and(|d| !d.is_empty()));
    let account = &doc["accounts"][0];
    let a = s.acct("alice");
    assert_eq!(account["source_user"], a.source_user.as_str());
    assert_eq!(account["destination_user"], a.destination_user.as_str());
    assert!(account["folders"].is_array());
    for key in [
        "folders_to_create",
        "messages_to_copy",
        "bytes_to_copy",
        "already_present",
        "skipped",
    ] {
        assert!(account["summary"][key].is_u64(), "account summary `{key}`");
        assert!(doc["summary"][key].is_u64(), "summary `{key}`");
    }
    assert_eq!(doc["summary"]["bytes_to_copy"], c.bytes);
    // The secrets never go into a plan.
    assert!(!j.stdout.contains(&a.source_password) && !j.stdout.contains(&a.destination_password));

    // plan --out, then show: the same text, the same document.
    let text = s.run(&["plan", "--out", "plan.json"]);
    assert_eq!(text.status, 0, "{text}");
    let saved = std::fs::read_to_string(s.path("plan.json")).expect("plan.json written");
    let saved: serde_json::Value = serde_json::from_str(&saved).expect("plan.json is JSON");
    assert_eq!(saved["summary"], doc["summary"]);
    assert_eq!(saved["config_digest"], doc["config_digest"]);
    assert!(!std::fs::read_to_string(s.path("plan.json"))
        .unwrap()
        .contains(&a.source_password));

    let shown = s.run(&["show", "plan.json"]);
    assert_eq!(shown.status, 0, "{shown}");
    assert_eq!(shown.last_line(), text.last_line());
    assert_eq!(
        shown.stdout, text.stdout,
        "show renders the saved plan as plan did"
    );

    let shown_json = s.run(&["show", "plan.json", "--format", "json"]);
    assert_eq!(shown_json.status, 0, "{shown_json}");
    assert_eq!(shown_json.json(), saved);

    // A saved plan is shown without any server: stop both.
    let mut s = c.s;
    s.stop(Side::Source);
    s.stop(Side::Destination);
    let again = s.run(&["show", "plan.json"]);
    assert_eq!(again.stdout, text.stdout, "{again}");
}

/// `sha256(lowercase(user))`, first 8 bytes big-endian, mod n (docs/commands.md, `--shard`), computed here.
fn shard_of(user: &str, n: u64) -> u64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(user.to_lowercase().as_bytes());
    u64::from_be_bytes(h[..8].try_into().unwrap()) % n
}

fn planned_users(r: &crate::scenario::CmdResult) -> Vec<String> {
    r.json()["accounts"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|a| a["source_user"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn account_and_shard_select_accounts() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .account("bob")
        .account("carol")
        .account("dave");
    let all: BTreeSet<String> = s.accounts().iter().map(|a| a.source_user.clone()).collect();

    let bob = s.acct("bob").source_user.clone();
    let r = s.run(&["plan", "--format", "json", "--account", &bob]);
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(planned_users(&r), vec![bob.clone()]);
    // Before the subcommand, too; repeatable.
    let carol = s.acct("carol").source_user.clone();
    let r = s.run(&["--account", &carol, "plan", "--format", "json"]);
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(planned_users(&r), vec![carol.clone()]);
    let r = s.run(&[
        "plan",
        "--format",
        "json",
        "--account",
        &bob,
        "--account",
        &carol,
    ]);
    assert_eq!(r.status, 0, "{r}");
    let got: BTreeSet<String> = planned_users(&r).into_iter().collect();
    assert_eq!(got, [bob.clone(), carol].into_iter().collect());

    let mut covered = Vec::new();
    for k in 0..2u64 {
        let shard = format!("{k}/2");
        let expected: BTreeSet<String> = all
            .iter()
            .filter(|u| shard_of(u, 2) == k)
            .cloned()
            .collect();
        let r = s.run(&["plan", "--format", "json", "--shard", &shard]);
        // An empty shard (1 run in 8) plans nothing, successfully.
        assert_eq!(r.status, 0, "{r}");
        let got = planned_users(&r);
        assert_eq!(
            got.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "--shard {shard}"
        );
        covered.extend(got);
    }
    covered.sort();
    assert_eq!(
        covered,
        all.into_iter().collect::<Vec<_>>(),
        "each account exactly once"
    );
}

#[test]
fn view_folders_are_listed_not_migrated_unless_included() {
    let src = Dovecot::builder()
        .layout(Layout::Classic)
        .special_folders(&[
            ("Sent Items", Some("\\Sent")),
            ("All Mail", Some("\\All")),
            ("Starred", Some("\\Flagged")),
        ])
        .start();
    let mut s = Scenario::new()
        .source_server(src)
        .destination(Layout::Modern)
        .account("alice");
    let mut imap = s.src("alice");
    let list = imap.list();
    assert!(
        list.iter()
            .any(|(a, _, n)| n == "INBOX.All Mail" && a.iter().any(|x| x == "\\All")),
        "test set-up: {list:?}"
    );
    let view_msgs: Vec<NewMessage> = (0..3)
        .map(|_| NewMessage::new(MessageBuilder::new().pad_to(1100).build()))
        .collect();
    imap.append_many("INBOX.All Mail", &view_msgs);
    imap.append_many("INBOX.Starred", &view_msgs[..1]);
    imap.append_many("INBOX", &view_msgs[..1]);

    // By default (`view-only-messages = "archive"`) the two messages found only in the
    // \All view go to the destination's \Archive folder.
    let r = s.run(&["plan"]);
    assert_eq!(r.status, 0, "{r}");
    assert!(
        squashed_lines(&r.stdout)
            .iter()
            .any(|l| l == "= Archive ← INBOX.All Mail (only there: 2)"),
        "{r}"
    );
    assert_eq!(r.last_line(), plan_line(0, 3, 3 * 1100, 0, 0), "{r}");
    s.add_config("[folders]\nview-only-messages = \"skip\"\n");
    let r = s.run(&["plan"]);
    assert_eq!(r.status, 0, "{r}");
    let view_lines: Vec<String> = squashed_lines(&r.stdout)
        .into_iter()
        .filter(|l| l.contains("not migrated"))
        .collect();
    assert_eq!(view_lines.len(), 2, "{r}");
    assert!(
        view_lines.iter().any(|l| l.contains("INBOX.All Mail")
            && l.contains("\\All")
            && l.contains("3 messages")),
        "{r}"
    );
    assert!(
        view_lines
            .iter()
            .any(|l| l.contains("INBOX.Starred") && l.contains("\\Flagged")),
        "{r}"
    );
    // Not counted: only the INBOX message is to copy.
    assert_eq!(r.last_line(), plan_line(0, 1, 1100, 0, 0), "{r}");

    s.add_config("include-views = true\n");
    let r = s.run(&["plan"]);
    assert_eq!(r.status, 0, "{r}");
    assert!(!r.stdout.contains("not migrated"), "{r}");
    assert_eq!(r.last_line(), plan_line(2, 5, 5 * 1100, 0, 0), "{r}");
}

#[test]
fn bad_config_and_usage_errors_exit_1_help_exits_0() {
    // No servers needed: the config is refused before any connection.
    let dir = tempfile::tempdir().unwrap();
    let config = "[source]\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\n\n[destination]\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\nmax-conections = 3\n\n[accounts]\ncsv = \"accounts.csv\"\n";
    std::fs::write(dir.path().join("migration.toml"), config).unwrap();
    std::fs::write(
        dir.path().join("accounts.csv"),
        "source_user,source_password,destination_user,destination_password\na,pw-a-1,,pw-a-2\n",
    )
    .unwrap();
    for args in [
        &["plan"][..],
        &["check"][..],
        &["plan", "--detailed-exitcode"][..],
    ] {
        let r = crate::scenario::run_mailshift(dir.path(), args);
        assert_eq!(r.status, 1, "{args:?}: {r}");
        assert!(r.stdout.is_empty(), "nothing on stdout: {r}");
        assert!(r.stderr.contains("migration.toml"), "names the file: {r}");
        assert!(r.stderr.contains("line 8"), "names the line: {r}");
        assert!(r.stderr.contains("max-conections"), "names the key: {r}");
    }

    let r = crate::scenario::run_mailshift(dir.path(), &["plan", "--no-such-flag"]);
    assert_eq!(r.status, 1, "usage error: {r}");
    assert!(r.stderr.contains("--no-such-flag"), "{r}");
    let r = crate::scenario::run_mailshift(dir.path(), &["frobnicate"]);
    assert_eq!(r.status, 1, "unknown subcommand: {r}");
    let r = crate::scenario::run_mailshift(dir.path(), &["plan", "--shard", "2/2"]);
    assert_eq!(r.status, 1, "bad shard: {r}");
    for args in [&["--help"][..], &["plan", "--help"][..], &["--version"][..]] {
        let r = crate::scenario::run_mailshift(dir.path(), args);
        assert_eq!(r.status, 0, "{args:?}: {r}");
        assert!(!r.stdout.is_empty(), "{r}");
    }
    // A missing config file: 1 and its name.
    let r = crate::scenario::run_mailshift(dir.path(), &["plan", "-c", "nope.toml"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(r.stderr.contains("nope.toml"), "{r}");
}

#[test]
fn ten_thousand_message_folder() {
    const N: usize = 10_000;
    let s = Scenario::new()
        .source_with(
            Dovecot::builder()
                .layout(Layout::Classic)
                .mail_on_tmpfs(true),
        )
        .destination_with(
            Dovecot::builder()
                .layout(Layout::Modern)
                .mail_on_tmpfs(true),
        )
        .account("bulk");
    let msgs: Vec<NewMessage> = (0..N)
        .map(|i| {
            NewMessage::new(MessageBuilder::new().pad_to(600 + i % 400).build())
                .flags(if i % 3 == 0 { &["\\Seen"] } else { &[] })
                .internal_date(OLD_DATE)
        })
        .collect();
    let t = Instant::now();
    let mut src = s.src("bulk");
    src.append_many("INBOX", &msgs);
    let fill = t.elapsed();
    let bytes: u64 = rfc822_sizes(&mut src, "INBOX").values().sum();
    assert_eq!(bytes, msgs.iter().map(|m| m.body.len() as u64).sum::<u64>());

    let log_path = s
        .source_dovecot()
        .config_path()
        .with_file_name("dovecot.log");
    let log_offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0) as usize;
    let r = s.run(&["plan", "--format", "json"]);
    assert_eq!(r.status, 0, "{r}");
    // One FETCH for the folder, not one per message: Dovecot logs the bytes each session
    // received from the client (`in=`); 10,000 FETCH commands would be well over 100 KB.
    let user = s.acct("bulk").source_user.clone();
    let sessions = disconnect_lines(&log_path, log_offset, &user);
    let received: u64 = sessions.iter().map(|l| log_field(l, "in=")).sum();
    let sent: u64 = sessions.iter().map(|l| log_field(l, "out=")).sum();
    eprintln!(
        "ten_thousand_message_folder: source sessions {}, bytes from client {received}, to client {sent}",
        sessions.len()
    );
    assert!(
        received < 5_000,
        "the plan sent {received} bytes to the source: {sessions:#?}"
    );
    assert!(
        sent > 10_000 * 100,
        "headers of 10,000 messages were read: {sessions:#?}"
    );
    let doc = r.json();
    assert_eq!(doc["summary"]["messages_to_copy"], N as u64);
    assert_eq!(doc["summary"]["bytes_to_copy"], bytes);
    let text = s.run(&["plan"]);
    assert_eq!(
        text.last_line(),
        plan_line(0, N as u64, bytes, 0, 0),
        "{text}"
    );
    eprintln!(
        "ten_thousand_message_folder: fill {fill:?}; plan (json) {:?}; plan (text) {:?}",
        r.elapsed, text.elapsed
    );
}

/// Dovecot's `Disconnected` log lines of `user` after byte `offset` of the log, waiting
/// (up to 5 s) until they appear and stop growing: the log process writes asynchronously.
fn disconnect_lines(log: &std::path::Path, offset: usize, user: &str) -> Vec<String> {
    let read = || -> Vec<String> {
        let text = std::fs::read(log).unwrap_or_default();
        String::from_utf8_lossy(&text[offset.min(text.len())..])
            .lines()
            .filter(|l| l.contains(&format!("imap({user})")) && l.contains("Disconnected"))
            .map(str::to_string)
            .collect()
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let mut last = read();
    while Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = read();
        if !now.is_empty() && now.len() == last.len() {
            return now;
        }
        last = now;
    }
    assert!(
        !last.is_empty(),
        "no `Disconnected` line for {user} in {}",
        log.display()
    );
    last
}

/// `in=123` -> 123 in a Dovecot log line.
fn log_field(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no `{key}` in `{line}`"));
    line[at + key.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad `{key}` in `{line}`"))
}
