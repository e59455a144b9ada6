//! `mailshift report` end to end (issue 10): real applies against real Dovecots write
//! `--report` files; the fleet view of them lists every message that did not arrive with
//! its folder, date, from, subject, size and the server's words, and merges re-runs by time.
//! Every apply is checked on the destination with the test's own client, and the source is
//! proved unchanged.

use std::fs;

use serde_json::Value;

use crate::scenario::{CmdResult, Scenario, SIZE_LIMIT};
use crate::support::{Dovecot, Layout, MessageBuilder, NewMessage};

const SERVER_WORDS: &str = "Mail size is larger than the maximum size allowed";

#[track_caller]
fn report_json(s: &Scenario, file: &str, run: &CmdResult) -> Value {
    let text = fs::read_to_string(s.path(file))
        .unwrap_or_else(|e| panic!("no report `{file}` ({e})\n{run}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {e}\n{text}"))
}

/// Subjects of a destination folder, read with the test's own client.
fn subjects(s: &Scenario, name: &str, folder: &str) -> Vec<String> {
    let mut dst = s.dst(name);
    let mut out: Vec<String> = dst
        .fetch_all(folder)
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m.body).into_owned();
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn report_lists_a_refused_message_with_folder_date_from_subject_and_the_servers_words() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination_with(
            Dovecot::builder()
                .layout(Layout::Modern)
                .extra_config(SIZE_LIMIT),
        )
        .account("alice")
        .account("bob");
    let work = Layout::Classic.wire("Work");
    let mut alice = s.src("alice");
    alice.create(&work);
    let small =
        |i: usize| NewMessage::new(MessageBuilder::new().subject(&format!("small {i}")).build());
    let big = NewMessage::new(
        MessageBuilder::new()
            .from("Carol Chen <carol@example.test>")
            .subject("Quarterly numbers, \"final\"")
            .date("Tue, 02 Jan 2024 09:30:00 +0100")
            .pad_to(100_000)
            .build(),
    );
    alice.append_many("INBOX", &[small(1), small(2)]);
    alice.append_many(&work, &[small(3), big.clone()]);
    let mut bob = s.src("bob");
    bob.append_many("INBOX", &[small(4)]);
    let (alice_before, bob_before) = (alice.snapshot(), bob.snapshot());

    let first = s.run(&["apply", "--auto-approve", "--report", "r1.json"]);
    assert_eq!(first.status, 1, "a partial apply exits 1\n{first}");
    let r1 = report_json(&s, "r1.json", &first);
    let failed = &r1["accounts"][0]["failed"][0];
    assert_eq!(failed["subject"], "Quarterly numbers, \"final\"", "{r1:#}");
    assert_eq!(failed["size"], big.body.len(), "{r1:#}");
    assert!(r1["created_at"].is_string(), "{r1:#}");

    // Independent check of what arrived: everything but the big message.
    assert_eq!(subjects(&s, "alice", "INBOX"), ["small 1", "small 2"]);
    assert_eq!(subjects(&s, "alice", "Work"), ["small 3"]);
    assert_eq!(subjects(&s, "bob", "INBOX"), ["small 4"]);

    // The text view of the failed messages.
    let r = s.run(&["report", "r1.json", "--failed"]);
    assert_eq!(r.status, 0, "{r}");
    let alice_user = &s.acct("alice").source_user;
    let bob_user = &s.acct("bob").source_user;
    for want in [
        format!("{alice_user} → {}  (partial)", s.acct("alice").destination_user),
        "  Work  Tue, 02 Jan 2024 09:30:00 +0100  Carol Chen <carol@example.test>  \"Quarterly numbers, \"final\"\"  (97.7 KiB)".to_string(),
        "    server: ".to_string(),
        SERVER_WORDS.to_string(),
        "Not copied: 1 message failed in 1 account, 0 messages pending in 0 accounts.".to_string(),
    ] {
        assert!(r.stdout.contains(&want), "{want:?} missing\n{r}");
    }
    assert!(
        !r.stdout.contains(bob_user.as_str()),
        "bob lost nothing\n{r}"
    );

    // The spreadsheet view: one header row, RFC 4180 quoting, the same fields.
    let r = s.run(&["report", "r1.json", "--failed", "--format", "csv"]);
    assert_eq!(r.status, 0, "{r}");
    assert!(
        r.stdout.starts_with(
            "source_user,destination_user,folder,date,from,subject,size,uid,reason,kind\r\n"
        ),
        "{r}"
    );
    assert!(
        r.stdout.contains(",\"Quarterly numbers, \"\"final\"\"\","),
        "RFC 4180 quoting\n{r}"
    );
    let mut csv = csv::Reader::from_reader(r.stdout.as_bytes());
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{r}");
    let row = &rows[0];
    assert_eq!(&row[0], alice_user.as_str());
    assert_eq!(&row[2], "Work");
    assert_eq!(&row[3], "Tue, 02 Jan 2024 09:30:00 +0100");
    assert_eq!(&row[4], "Carol Chen <carol@example.test>");
    assert_eq!(&row[5], "Quarterly numbers, \"final\"");
    assert_eq!(&row[6], big.body.len().to_string());
    assert!(row[8].contains(SERVER_WORDS), "{r}");

    // Completeness: a plan made after the run (plan times are whole seconds, so wait for
    // the next one) says bob is complete and alice still misses the refused message.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let plan = s.run(&["plan", "--out", "p.json"]);
    assert_eq!(plan.status, 0, "{plan}");
    let r = s.run(&["report", "r1.json", "p.json", "--format", "json"]);
    assert_eq!(r.status, 0, "{r}");
    let fleet = r.json();
    let by_user = |user: &str| {
        fleet["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["source_user"] == user)
            .cloned()
            .unwrap_or_else(|| panic!("{user} in {fleet:#}"))
    };
    assert_eq!(by_user(bob_user)["complete"], true, "{fleet:#}");
    assert_eq!(by_user(alice_user)["complete"], false, "{fleet:#}");
    assert_eq!(by_user(alice_user)["missing"], 1, "{fleet:#}");
    assert_eq!(fleet["plans"], 1, "{fleet:#}");
    let r = s.run(&["report", "r1.json", "p.json", "--failed"]);
    assert_eq!(r.status, 0, "{r}");
    for want in [
        "  Work  Tue, 02 Jan 2024 09:30:00 +0100  Carol Chen <carol@example.test>  \"Quarterly numbers, \"final\"\"",
        SERVER_WORDS,
        "Not copied: 1 message failed in 1 account, 0 messages missing by a later plan in 0 accounts, 0 messages pending in 0 accounts.",
    ] {
        assert!(r.stdout.contains(want), "{want:?} missing\n{r}");
    }
    let r = s.run(&["report", "r1.json", "p.json"]);
    assert!(
        r.stdout.contains(
            "Checked by a plan after their last run: 1 complete, 1 with 1 message missing"
        ),
        "{r}"
    );

    // A re-run: nothing new arrives, the big message fails again. The fleet view shows each
    // account once, as the latest run left it (copied 0), not the two runs added up.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = s.run(&["apply", "--auto-approve", "--report", "r2.json"]);
    assert_eq!(second.status, 1, "{second}");
    let r = s.run(&["report", "--format", "json", "r2.json", "r1.json"]);
    assert_eq!(r.status, 0, "{r}");
    let fleet = r.json();
    assert_eq!(fleet["reports"], 2, "{fleet:#}");
    assert_eq!(fleet["summary"]["accounts"], 2, "{fleet:#}");
    assert_eq!(fleet["summary"]["accounts_partial"], 1, "{fleet:#}");
    assert_eq!(fleet["summary"]["accounts_done"], 1, "{fleet:#}");
    assert_eq!(
        fleet["summary"]["copied"], 0,
        "latest runs copied nothing\n{fleet:#}"
    );
    assert_eq!(fleet["summary"]["failed"], 1, "{fleet:#}");
    for acc in fleet["accounts"].as_array().unwrap() {
        assert_eq!(acc["runs"], 2, "{fleet:#}");
        assert_eq!(acc["report_file"], "r2.json", "{fleet:#}");
    }
    // And the text view, with its closing line.
    let r = s.run(&["report", "r1.json", "r2.json"]);
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(
        r.last_line(),
        "Fleet: 2 accounts in 2 reports: 1 done, 1 partial, 0 failed; 0 messages (0 B) copied, 1 failed, 0 pending.",
        "{r}"
    );

    // Still exactly one copy of each small message, and the source untouched.
    assert_eq!(subjects(&s, "alice", "INBOX"), ["small 1", "small 2"]);
    assert_eq!(subjects(&s, "alice", "Work"), ["small 3"]);
    assert_eq!(subjects(&s, "bob", "INBOX"), ["small 4"]);
    alice_before.assert_unchanged(&s.src("alice").snapshot());
    bob_before.assert_unchanged(&s.src("bob").snapshot());
}

#[test]
fn report_refuses_missing_and_foreign_files_by_name() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("plan.json"),
        "{\"format_version\":1,\"accounts\":[]}",
    )
    .unwrap();
    let r = crate::scenario::run_mailshift(dir.path(), &["report", "plan.json"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(
        r.stderr
            .contains("`plan.json` is not an `apply --report` file"),
        "{r}"
    );
    let r = crate::scenario::run_mailshift(dir.path(), &["report", "shard-3.json"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(
        r.stderr.contains("cannot read the report `shard-3.json`"),
        "{r}"
    );
    let r = crate::scenario::run_mailshift(dir.path(), &["report"]);
    assert_eq!(r.status, 1, "at least one file is needed\n{r}");
}
