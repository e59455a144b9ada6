//! `mailshift apply` end to end: the acceptance checks of issue 3, the real binary against
//! two real Dovecots, in both layout directions. The destination is always read back
//! independently of the code under test (raw `BODY.PEEK[]`, STATUS, `doveadm fetch`), and
//! every test proves the source did not change (snapshots before and after).
//!
//! The interruption tests (`kill -9`, SIGINT) use a folder of many small messages on tmpfs
//! Dovecots, so that the copy takes long enough to be caught in the middle.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::scenario::{plan_line, CmdResult, Scenario, SIZE_LIMIT};
use crate::support::{Dovecot, Layout, MessageBuilder, NewMessage, RawImap, RawMessage};

const OLD_DATE: &str = "01-Jan-2001 10:00:00 +0200";
const OLDER_DATE: &str = "15-Mar-1999 23:59:59 -0500";
const INDIA_DATE: &str = "31-Dec-2010 23:30:00 +0530";
const NO_CHANGES: &str = "No changes. The destination has every message.";
const STALE_HINT: &str = "hint: run mailshift plan again";

/// Runs a test body once per layout direction: `name::classic_to_modern` and
/// `name::modern_to_classic`.
macro_rules! both_directions {
    ($name:ident) => {
        mod $name {
            use crate::support::Layout;
            #[test]
            fn classic_to_modern() {
                super::$name(Layout::Classic, Layout::Modern);
            }
            #[test]
            fn modern_to_classic() {
                super::$name(Layout::Modern, Layout::Classic);
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Source and destination servers of the given layouts with one account, `alice`.
fn scenario(src: Layout, dst: Layout) -> Scenario {
    Scenario::new()
        .source(src)
        .destination(dst)
        .account("alice")
}

/// Wire name of the `\Sent` folder the harness creates for a layout.
fn sent(layout: Layout) -> String {
    match layout {
        Layout::Classic => "INBOX.Sent Items".to_string(),
        Layout::Modern => "Sent".to_string(),
    }
}

/// The report file written by the run, parsed; panics with the run's output if missing.
#[track_caller]
fn read_report(s: &Scenario, file: &str, run: &CmdResult) -> Value {
    let text = fs::read_to_string(s.path(file))
        .unwrap_or_else(|e| panic!("no report `{file}` after the run ({e})\n{run}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON: {e}\n{text}"))
}

/// `apply --auto-approve --report r.json EXTRA...`; returns the run and the report.
pub(crate) fn apply(s: &Scenario, extra: &[&str]) -> (CmdResult, Value) {
    let _ = fs::remove_file(s.path("r.json"));
    let mut args = vec!["apply", "--auto-approve", "--report", "r.json"];
    args.extend_from_slice(extra);
    let run = s.run(&args);
    let report = read_report(s, "r.json", &run);
    (run, report)
}

/// `apply` that must succeed with `copied` messages copied; returns the report.
#[track_caller]
pub(crate) fn apply_ok(s: &Scenario, extra: &[&str], copied: u64) -> Value {
    let (run, report) = apply(s, extra);
    assert_eq!(run.status, 0, "{run}");
    let acc = &report["accounts"][0];
    assert_eq!(acc["status"], "done", "{report:#}\n{run}");
    assert_eq!(acc["copied"], copied, "{report:#}\n{run}");
    assert_eq!(
        acc["failed"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    assert_eq!(acc["pending"], 0, "{report:#}");
    report
}

/// Seconds since the epoch of an IMAP date-time (`01-Jan-2020 10:00:00 +0000`, the day may
/// be space-padded), parsed here independently of the product.
#[track_caller]
fn instant(date: &str) -> i64 {
    let parts: Vec<&str> = date.split_whitespace().collect();
    assert_eq!(parts.len(), 3, "not an IMAP date-time: `{date}`");
    let dmy: Vec<&str> = parts[0].split('-').collect();
    let hms: Vec<i64> = parts[1]
        .split(':')
        .map(|p| p.parse().expect("time"))
        .collect();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months
        .iter()
        .position(|m| m.eq_ignore_ascii_case(dmy[1]))
        .unwrap_or_else(|| panic!("month in `{date}`")) as i64
        + 1;
    let day: i64 = dmy[0].parse().expect("day");
    let year: i64 = dmy[2].parse().expect("year");
    let zone = parts[2];
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let offset = sign
        * (zone[1..3].parse::<i64>().unwrap() * 3600 + zone[3..5].parse::<i64>().unwrap() * 60);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2] - offset
}

/// What must be equal between a source message and its copy: body bytes, flags (sorted,
/// without `\Recent`), INTERNALDATE as an instant.
type Fingerprint = (Vec<u8>, Vec<String>, i64);

fn fingerprints(msgs: &[RawMessage]) -> BTreeMap<Fingerprint, usize> {
    let mut out = BTreeMap::new();
    for m in msgs {
        *out.entry((m.body.clone(), m.flags.clone(), instant(&m.internal_date)))
            .or_insert(0) += 1;
    }
    out
}

/// Multiset of bodies.
pub(crate) fn bodies(msgs: &[RawMessage]) -> BTreeMap<Vec<u8>, usize> {
    let mut out = BTreeMap::new();
    for m in msgs {
        *out.entry(m.body.clone()).or_insert(0) += 1;
    }
    out
}

/// Bodies that differ between two multisets, for failure messages.
fn body_diff(want: &BTreeMap<Vec<u8>, usize>, got: &BTreeMap<Vec<u8>, usize>) -> String {
    let mut out = Vec::new();
    for (b, n) in want {
        let g = got.get(b).copied().unwrap_or(0);
        if g != *n {
            out.push(format!(
                "want {n}, got {g}: {:?}",
                crate::support::BodyDigest(b)
            ));
        }
    }
    for (b, g) in got {
        if !want.contains_key(b) {
            out.push(format!(
                "want 0, got {g}: {:?}",
                crate::support::BodyDigest(b)
            ));
        }
    }
    out.truncate(20);
    out.join("\n")
}

/// The destination folder holds exactly the source folder's messages (fingerprints).
#[track_caller]
fn assert_same_messages(src: &[RawMessage], dst: &[RawMessage], what: &str) {
    let (want, got) = (fingerprints(src), fingerprints(dst));
    assert!(
        want == got,
        "{what}: destination differs from the source\nsource: {src:#?}\ndestination: {dst:#?}"
    );
}

/// Exactly these bodies (as a multiset) in `dst`.
#[track_caller]
pub(crate) fn assert_bodies(want: &BTreeMap<Vec<u8>, usize>, dst: &[RawMessage], what: &str) {
    let got = bodies(dst);
    assert!(
        *want == got,
        "{what}: {} messages wanted, {} found; differences:\n{}",
        want.values().sum::<usize>(),
        dst.len(),
        body_diff(want, &got)
    );
}

pub(crate) fn multiset(msgs: &[NewMessage]) -> BTreeMap<Vec<u8>, usize> {
    let mut out = BTreeMap::new();
    for m in msgs {
        *out.entry(m.body.clone()).or_insert(0) += 1;
    }
    out
}

/// `STATUS folder (MESSAGES)`.
#[track_caller]
pub(crate) fn message_count(imap: &mut RawImap, folder: &str) -> u64 {
    let lines = imap.raw_command(&format!(
        "STATUS {} (MESSAGES)",
        crate::support::quote(folder)
    ));
    let line = lines
        .iter()
        .find(|l| l.starts_with("* STATUS"))
        .unwrap_or_else(|| panic!("STATUS {folder}: {lines:?}"));
    let at = line.find("MESSAGES ").expect("MESSAGES in STATUS") + 9;
    line[at..]
        .trim_end_matches(')')
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .expect("a count")
}

/// `STATUS` until it has not changed for 300 ms.
fn settled_count(imap: &mut RawImap, folder: &str) -> u64 {
    let mut last = message_count(imap, folder);
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(20));
        let n = message_count(imap, folder);
        if n != last {
            last = n;
            since = Instant::now();
        }
    }
    last
}

#[track_caller]
fn assert_no_changes(s: &Scenario) {
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.status, 0, "plan after apply must have nothing to do\n{r}");
    assert_eq!(r.last_line(), NO_CHANGES, "{r}");
}

/// Small distinct messages, `n` of them, for the big-folder tests.
pub(crate) fn small_messages(n: usize, tag: &str) -> Vec<NewMessage> {
    (0..n)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("{tag} {i}"))
                    .message_id(Some(&format!("<{tag}-{i}@bulk.test>")))
                    .build(),
            )
        })
        .collect()
}

/// A running `mailshift` child (stdout/stderr to files in the scenario dir).
pub(crate) struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    pub(crate) fn start(s: &Scenario, args: &[&str]) -> Running {
        s.write_files();
        let stdout = s.path(".bg-stdout");
        let stderr = s.path(".bg-stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_mailshift"))
            .args(args)
            .current_dir(s.dir())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("run the mailshift binary");
        Running {
            child,
            stdout,
            stderr,
        }
    }

    pub(crate) fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            String::from_utf8_lossy(&fs::read(&self.stdout).unwrap_or_default()),
            String::from_utf8_lossy(&fs::read(&self.stderr).unwrap_or_default())
        )
    }

    /// Polls the destination until it holds some but not all of `total` messages.
    pub(crate) fn wait_until_partly_copied(
        &mut self,
        dst: &mut RawImap,
        folder: &str,
        total: u64,
    ) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "apply finished ({status}) before it could be interrupted: make the folder bigger\n{}",
                    self.output()
                );
            }
            let n = message_count(dst, folder);
            if n > 0 && n < total {
                return n;
            }
            assert!(n < total, "all {total} copied before the interruption");
            assert!(
                Instant::now() < deadline,
                "apply copied nothing within 60 s\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the exit (at most 60 s); returns the exit code (-1 for a signal).
    pub(crate) fn wait(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.output());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("apply did not exit within 60 s\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Full copy: fidelity, folders, subscriptions, report; then nothing left to do.

fn full_copy_with_fidelity_then_nothing_to_do(src_layout: Layout, dst_layout: Layout) {
    let s = scenario(src_layout, dst_layout);
    let mut src = s.src("alice");
    let nested = "Projekte/Entw&APw-rfe 2024/Q1"; // Projekte/Entwürfe 2024/Q1
    let middle = "Projekte/Entw&APw-rfe 2024";
    for path in ["Projekte", middle, nested, "Leer"] {
        src.create(&src_layout.wire(path));
    }
    for path in ["Projekte", nested, "Leer"] {
        src.subscribe(&src_layout.wire(path));
    }

    let inbox = vec![
        NewMessage::new(
            MessageBuilder::new()
                .subject("read, labelled")
                .pad_to(3000)
                .build(),
        )
        .flags(&["\\Seen", "$Label1"])
        .internal_date(OLD_DATE),
        NewMessage::new(
            MessageBuilder::new()
                .subject("answered, flagged")
                .body("Grüße aus München\n8-bit body ✓\n")
                .build(),
        )
        .flags(&["\\Answered", "\\Flagged"])
        .internal_date(OLDER_DATE),
        NewMessage::new(
            MessageBuilder::new()
                .subject("unread")
                .pad_to(300_000)
                .build(),
        )
        .internal_date(INDIA_DATE),
        NewMessage::new(
            MessageBuilder::new()
                .subject("no id")
                .message_id(None)
                .build(),
        )
        .flags(&["\\Seen", "\\Draft"])
        .internal_date(OLD_DATE),
    ];
    let sent_msgs = vec![
        NewMessage::new(MessageBuilder::new().subject("sent").build())
            .flags(&["\\Seen"])
            .internal_date(OLDER_DATE),
    ];
    let projekte = vec![
        NewMessage::new(MessageBuilder::new().subject("projekte").build())
            .flags(&["$Label1"])
            .internal_date(INDIA_DATE),
    ];
    let middle_msgs = vec![
        NewMessage::new(MessageBuilder::new().subject("entwurf").build())
            .flags(&["\\Draft"])
            .internal_date(OLD_DATE),
    ];
    let nested_msgs = vec![
        NewMessage::new(MessageBuilder::new().subject("q1 a").build())
            .flags(&["\\Seen", "\\Answered", "$Label1"])
            .internal_date(OLD_DATE),
        NewMessage::new(MessageBuilder::new().subject("q1 b").pad_to(20_000).build())
            .internal_date(OLDER_DATE),
    ];
    // (source wire, destination wire, messages)
    let folders = vec![
        ("INBOX".to_string(), "INBOX".to_string(), inbox),
        (sent(src_layout), sent(dst_layout), sent_msgs),
        (
            src_layout.wire("Projekte"),
            dst_layout.wire("Projekte"),
            projekte,
        ),
        (
            src_layout.wire(middle),
            dst_layout.wire(middle),
            middle_msgs,
        ),
        (
            src_layout.wire(nested),
            dst_layout.wire(nested),
            nested_msgs,
        ),
        (src_layout.wire("Leer"), dst_layout.wire("Leer"), vec![]),
    ];
    let mut total = 0u64;
    let mut total_bytes = 0u64;
    for (wire, _, msgs) in &folders {
        if !msgs.is_empty() {
            src.append_many(wire, msgs);
        }
        total += msgs.len() as u64;
        total_bytes += msgs.iter().map(|m| m.body.len() as u64).sum::<u64>();
    }
    let src_before = src.snapshot();

    let report = apply_ok(&s, &[], total);

    // The report (docs/json.md field names).
    assert_eq!(report["format_version"], 1, "{report:#}");
    assert_eq!(
        report["tool_version"],
        env!("CARGO_PKG_VERSION"),
        "{report:#}"
    );
    let acc = &report["accounts"][0];
    assert_eq!(acc["source_user"], s.acct("alice").source_user.as_str());
    assert_eq!(acc["bytes"], total_bytes, "{report:#}");
    assert!(report["summary"].is_object(), "{report:#}");
    assert_eq!(report["summary"]["copied"], total, "{report:#}");

    // Every message in its mapped folder, identical, read back independently.
    let mut dst = s.dst("alice");
    for (src_wire, dst_wire, _) in &folders {
        let want = src.fetch_all(src_wire);
        let got = dst.fetch_all(dst_wire);
        assert_same_messages(&want, &got, &format!("`{src_wire}` → `{dst_wire}`"));
    }
    // And once more through doveadm (no IMAP at all) for the nested non-ASCII folder.
    let utf8 = |layout: Layout| layout.wire(nested).replace("&APw-", "ü");
    let via_doveadm = s.destination_dovecot().doveadm_fetch(
        &s.acct("alice").destination_user,
        &["mailbox", &utf8(dst_layout)],
    );
    let mut want: Vec<(Vec<u8>, Vec<String>, i64)> = src
        .fetch_all(&src_layout.wire(nested))
        .into_iter()
        .map(|m| (m.body, m.flags, instant(&m.internal_date)))
        .collect();
    let mut got: Vec<(Vec<u8>, Vec<String>, i64)> = via_doveadm
        .into_iter()
        .map(|m| (m.text, m.flags, m.received_unixtime))
        .collect();
    want.sort();
    got.sort();
    assert!(
        want == got,
        "doveadm sees another `{nested}`:\nwant {want:?}\ngot {got:?}"
    );

    // Subscriptions: copied for the created folders, nothing invented.
    let subscribed = dst.list_subscribed();
    for path in ["Projekte", nested, "Leer"] {
        assert!(
            subscribed.contains(&dst_layout.wire(path)),
            "`{path}` not subscribed on the destination: {subscribed:?}"
        );
    }
    assert!(
        !subscribed.contains(&dst_layout.wire(middle)),
        "`{middle}` was not subscribed on the source: {subscribed:?}"
    );

    // Nothing left to do, and a second apply appends nothing.
    assert_no_changes(&s);
    let dst_before = dst.snapshot();
    let report = apply_ok(&s, &[], 0);
    assert_eq!(report["summary"]["copied"], 0, "{report:#}");
    dst_before.assert_unchanged(&dst.snapshot());
    // With nothing to do, apply does not ask, even without a terminal.
    let r = s.run(&["apply"]);
    assert_eq!(r.status, 0, "an empty plan never prompts\n{r}");
    assert!(!r.stdout.contains("Only 'yes'"), "{r}");
    dst_before.assert_unchanged(&dst.snapshot());

    src_before.assert_unchanged(&src.snapshot());
}
both_directions!(full_copy_with_fidelity_then_nothing_to_do);

// ---------------------------------------------------------------------------------------
// Delta passes.

fn delta_pass_copies_only_new_and_keeps_deleted(src_layout: Layout, dst_layout: Layout) {
    let s = scenario(src_layout, dst_layout);
    let mut src = s.src("alice");
    let work_src = src_layout.wire("Work");
    let work_dst = dst_layout.wire("Work");
    src.create(&work_src);
    let first_inbox: Vec<NewMessage> = (0..4)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("first {i}"))
                    .pad_to(1000 + i * 100)
                    .build(),
            )
            .flags(&["\\Seen"])
            .internal_date(OLD_DATE)
        })
        .collect();
    let first_work: Vec<NewMessage> = (0..2)
        .map(|i| NewMessage::new(MessageBuilder::new().subject(&format!("work {i}")).build()))
        .collect();
    let inbox_uids = src.append_many("INBOX", &first_inbox);
    src.append_many(&work_src, &first_work);
    apply_ok(&s, &[], 6);

    // Between passes: one message expunged on the source, four new ones arrive.
    src.expunge("INBOX", &inbox_uids[..1]);
    let new_inbox: Vec<NewMessage> = (0..3)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("new {i}"))
                    .pad_to(2000 + i * 10)
                    .build(),
            )
            .flags(&["$Label1"])
            .internal_date(INDIA_DATE)
        })
        .collect();
    let new_work = vec![NewMessage::new(
        MessageBuilder::new().subject("new work").build(),
    )];
    src.append_many("INBOX", &new_inbox);
    src.append_many(&work_src, &new_work);
    let src_before = src.snapshot();

    let new_bytes: u64 = new_inbox
        .iter()
        .chain(&new_work)
        .map(|m| m.body.len() as u64)
        .sum();
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.status, 2, "{r}");
    assert_eq!(r.last_line(), plan_line(0, 4, new_bytes, 5, 0), "{r}");
    let plan = s.run(&["plan", "--format", "json"]).json();
    let per_folder: BTreeMap<String, usize> = plan["accounts"][0]["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| {
            (
                f["destination"].as_str().unwrap().to_string(),
                f["copy"].as_array().map_or(0, Vec::len),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        per_folder,
        BTreeMap::from([("INBOX".to_string(), 3), ("Work".to_string(), 1)]),
        "{plan:#}"
    );

    apply_ok(&s, &[], 4);
    let mut dst = s.dst("alice");
    // INBOX: the expunged message stays; the new ones arrived once.
    let mut want = multiset(&first_inbox);
    for (b, n) in multiset(&new_inbox) {
        *want.entry(b).or_insert(0) += n;
    }
    let inbox = dst.fetch_all("INBOX");
    assert_bodies(&want, &inbox, "destination INBOX");
    let new_got: Vec<RawMessage> = inbox
        .into_iter()
        .filter(|m| new_inbox.iter().any(|n| n.body == m.body))
        .collect();
    let new_src: Vec<RawMessage> = src
        .fetch_all("INBOX")
        .into_iter()
        .filter(|m| new_inbox.iter().any(|n| n.body == m.body))
        .collect();
    assert_same_messages(&new_src, &new_got, "new INBOX messages");
    let mut want_work = multiset(&first_work);
    for (b, n) in multiset(&new_work) {
        *want_work.entry(b).or_insert(0) += n;
    }
    assert_bodies(&want_work, &dst.fetch_all(&work_dst), "destination Work");
    assert_no_changes(&s);
    src_before.assert_unchanged(&src.snapshot());
}
both_directions!(delta_pass_copies_only_new_and_keeps_deleted);

// ---------------------------------------------------------------------------------------
// Duplicates and messages without identity.

fn twins_stay_two_and_idless_copied_once(src_layout: Layout, dst_layout: Layout) {
    let s = scenario(src_layout, dst_layout);
    let mut src = s.src("alice");
    let twin = NewMessage::new(
        MessageBuilder::new()
            .subject("twin")
            .message_id(Some("<twin@apply.test>"))
            .build(),
    )
    .flags(&["\\Seen"])
    .internal_date(OLD_DATE);
    let idless_twin = NewMessage::new(
        MessageBuilder::new()
            .subject("id-less twin")
            .message_id(None)
            .build(),
    );
    let msgs = vec![
        twin.clone(),
        twin,
        NewMessage::new(
            MessageBuilder::new()
                .subject("no id 1")
                .message_id(None)
                .build(),
        ),
        NewMessage::new(
            MessageBuilder::new()
                .subject("no id 2")
                .message_id(None)
                .date("Tue, 02 Jan 2024 11:00:00 +0100")
                .build(),
        )
        .flags(&["\\Flagged"]),
        // No identity header at all.
        NewMessage::new(b"\r\nbare body, no headers\r\n".to_vec()),
        idless_twin.clone(),
        idless_twin,
    ];
    src.append_many("INBOX", &msgs);
    let src_before = src.snapshot();
    let want = multiset(&msgs);
    let mut dst = s.dst("alice");
    for pass in 1..=3 {
        apply_ok(&s, &[], if pass == 1 { msgs.len() as u64 } else { 0 });
        assert_bodies(
            &want,
            &dst.fetch_all("INBOX"),
            &format!("after apply #{pass}"),
        );
    }
    assert_same_messages(&src.fetch_all("INBOX"), &dst.fetch_all("INBOX"), "INBOX");
    assert_no_changes(&s);
    src_before.assert_unchanged(&src.snapshot());
}
both_directions!(twins_stay_two_and_idless_copied_once);

// ---------------------------------------------------------------------------------------
// Saved plans.

/// INBOX with 3 messages, `Work` with 2: a saved plan creates `Work` and copies 5.
fn saved_plan_fixture(
    src_layout: Layout,
    dst_layout: Layout,
) -> (Scenario, Vec<NewMessage>, Vec<NewMessage>) {
    let s = scenario(src_layout, dst_layout);
    let mut src = s.src("alice");
    src.create(&src_layout.wire("Work"));
    let inbox: Vec<NewMessage> = (0..3)
        .map(|i| {
            NewMessage::new(MessageBuilder::new().subject(&format!("inbox {i}")).build())
                .flags(&["\\Seen"])
        })
        .collect();
    let work: Vec<NewMessage> = (0..2)
        .map(|i| NewMessage::new(MessageBuilder::new().subject(&format!("work {i}")).build()))
        .collect();
    src.append_many("INBOX", &inbox);
    src.append_many(&src_layout.wire("Work"), &work);
    let r = s.run(&["plan", "--out", "p.json"]);
    assert_eq!(r.status, 0, "{r}");
    (s, inbox, work)
}

fn saved_plan_applied_twice_copies_once(src_layout: Layout, dst_layout: Layout) {
    let (s, inbox, work) = saved_plan_fixture(src_layout, dst_layout);
    let mut src = s.src("alice");
    let src_before = src.snapshot();
    apply_ok(&s, &["p.json"], 5);
    let mut dst = s.dst("alice");
    assert_bodies(&multiset(&inbox), &dst.fetch_all("INBOX"), "INBOX");
    assert_bodies(
        &multiset(&work),
        &dst.fetch_all(&dst_layout.wire("Work")),
        "Work",
    );
    let dst_before = dst.snapshot();
    let report = apply_ok(&s, &["p.json"], 0);
    assert_eq!(report["summary"]["copied"], 0, "{report:#}");
    // `Work` was created by the first apply; the second finds it and says so.
    assert_eq!(report["summary"]["folders_created"], 0, "{report:#}");
    dst_before.assert_unchanged(&dst.snapshot());
    src_before.assert_unchanged(&src.snapshot());
}
both_directions!(saved_plan_applied_twice_copies_once);

#[track_caller]
fn assert_refused_as_stale(r: &CmdResult) {
    assert_eq!(r.status, 1, "{r}");
    let out = r.all_output();
    assert!(out.contains("stale"), "no `stale` in the output\n{r}");
    assert!(
        out.contains(STALE_HINT),
        "no `{STALE_HINT}` in the output\n{r}"
    );
}

fn saved_plan_refused_when_source_uidvalidity_changed(src_layout: Layout, dst_layout: Layout) {
    let (s, _inbox, work) = saved_plan_fixture(src_layout, dst_layout);
    let mut src = s.src("alice");
    let work_wire = src_layout.wire("Work");
    let old_validity = src.folder_snapshot(&work_wire).uidvalidity;
    src.raw_command(&format!("DELETE {}", crate::support::quote(&work_wire)));
    src.create(&work_wire);
    src.append_many(&work_wire, &work);
    let new_validity = src.folder_snapshot(&work_wire).uidvalidity;
    assert_ne!(
        old_validity, new_validity,
        "the test must change UIDVALIDITY"
    );
    let src_before = src.snapshot();
    let mut dst = s.dst("alice");
    let dst_before = dst.snapshot();

    let _ = fs::remove_file(s.path("r.json"));
    let r = s.run(&["apply", "p.json", "--auto-approve", "--report", "r.json"]);
    assert_refused_as_stale(&r);
    // Refused means refused: no folder created, no message appended (INBOX included,
    // although its own UIDVALIDITY did not change).
    dst_before.assert_unchanged(&dst.snapshot());
    assert!(
        !dst.list()
            .iter()
            .any(|(_, _, n)| *n == dst_layout.wire("Work")),
        "`Work` was created by a refused plan\n{r}"
    );
    src_before.assert_unchanged(&src.snapshot());
}
both_directions!(saved_plan_refused_when_source_uidvalidity_changed);

fn saved_plan_refused_after_config_change(src_layout: Layout, dst_layout: Layout) {
    let (mut s, _, _) = saved_plan_fixture(src_layout, dst_layout);
    s.add_config("[folders]\nexclude = [\"Nothing/**\"]\n");
    let mut dst = s.dst("alice");
    let dst_before = dst.snapshot();
    let r = s.run(&["apply", "p.json", "--auto-approve"]);
    assert_refused_as_stale(&r);
    dst_before.assert_unchanged(&dst.snapshot());
}
both_directions!(saved_plan_refused_after_config_change);

/// A comment or a blank line is not a change: the saved plan still applies.
#[test]
fn saved_plan_survives_a_comment_only_config_change() {
    let (mut s, _, _) = saved_plan_fixture(Layout::Classic, Layout::Modern);
    s.add_config("\n# reviewed by the change board on Monday\n\n");
    apply_ok(&s, &["p.json"], 5);
}

/// The CSV now sends the account into another mailbox than the plan was made for: the
/// plan is stale (not "no account selected"), and nothing is written.
#[test]
fn saved_plan_refused_when_the_destination_user_changed() {
    let (s, _, _) = saved_plan_fixture(Layout::Classic, Layout::Modern);
    let doc = fs::read_to_string(s.path("p.json")).unwrap();
    let dest = s.acct("alice").destination_user.clone();
    fs::write(
        s.path("p.json"),
        doc.replace(&format!("\"{dest}\""), "\"someone-else@new.example\""),
    )
    .unwrap();
    let mut dst = s.dst("alice");
    let dst_before = dst.snapshot();
    let r = s.run(&["apply", "p.json", "--auto-approve"]);
    assert_refused_as_stale(&r);
    assert!(r.all_output().contains("someone-else@new.example"), "{r}");
    assert!(
        !r.all_output().contains("none of the plan's accounts"),
        "{r}"
    );
    dst_before.assert_unchanged(&dst.snapshot());
}

// ---------------------------------------------------------------------------------------
// A message the destination refuses.

fn refused_message_is_reported_and_the_rest_copied(src_layout: Layout, dst_layout: Layout) {
    let s = Scenario::new()
        .source(src_layout)
        .destination_with(
            Dovecot::builder()
                .layout(dst_layout)
                .extra_config(SIZE_LIMIT),
        )
        .account("alice");
    let mut src = s.src("alice");
    src.create(&src_layout.wire("Work"));
    let small =
        |i: usize| NewMessage::new(MessageBuilder::new().subject(&format!("small {i}")).build());
    let big = NewMessage::new(
        MessageBuilder::new()
            .subject("too big")
            .pad_to(100_000)
            .build(),
    );
    let inbox = vec![small(1), small(2), big.clone(), small(3), small(4)];
    let work = vec![small(5)];
    let inbox_uids = src.append_many("INBOX", &inbox);
    src.append_many(&src_layout.wire("Work"), &work);
    let src_before = src.snapshot();

    let (r, report) = apply(&s, &[]);
    assert_eq!(r.status, 1, "a partial apply exits 1\n{r}");
    let acc = &report["accounts"][0];
    assert_eq!(acc["status"], "partial", "{report:#}");
    assert_eq!(acc["copied"], 5, "{report:#}");
    assert_eq!(acc["pending"], 0, "{report:#}");
    let failed = acc["failed"].as_array().expect("failed list");
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["folder"], "INBOX", "{report:#}");
    assert_eq!(failed[0]["uid"], inbox_uids[2], "{report:#}");
    let reason = failed[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("Mail size is larger than the maximum size allowed"),
        "the reason must carry the server's words: {reason:?}"
    );
    assert_eq!(report["summary"]["failed"], 1, "{report:#}");
    assert_eq!(
        r.all_output()
            .matches("Mail size is larger than the maximum size allowed")
            .count(),
        1,
        "the refusal is shown once (the report's `failed` line)\n{r}"
    );

    let mut dst = s.dst("alice");
    let mut want = multiset(&inbox);
    want.remove(&big.body);
    assert_bodies(
        &want,
        &dst.fetch_all("INBOX"),
        "INBOX without the refused message",
    );
    assert_bodies(
        &multiset(&work),
        &dst.fetch_all(&dst_layout.wire("Work")),
        "Work",
    );
    src_before.assert_unchanged(&src.snapshot());
}
both_directions!(refused_message_is_reported_and_the_rest_copied);

// ---------------------------------------------------------------------------------------
// Confirmation.

fn apply_without_terminal_needs_auto_approve(src_layout: Layout, dst_layout: Layout) {
    let s = scenario(src_layout, dst_layout);
    let mut src = s.src("alice");
    src.create(&src_layout.wire("Work"));
    src.append_many("INBOX", &[NewMessage::new(MessageBuilder::new().build())]);
    let mut dst = s.dst("alice");
    let dst_before = dst.snapshot();
    let r = s.run(&["apply"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(
        r.all_output().contains("--auto-approve"),
        "no hint about --auto-approve\n{r}"
    );
    dst_before.assert_unchanged(&dst.snapshot());
    assert!(
        !dst.list()
            .iter()
            .any(|(_, _, n)| *n == dst_layout.wire("Work")),
        "a folder was created without approval\n{r}"
    );
}
both_directions!(apply_without_terminal_needs_auto_approve);

// ---------------------------------------------------------------------------------------
// Interruptions (big folder on tmpfs).

pub(crate) const BIG_FOLDER: usize = 20_000;

fn big_scenario(src_layout: Layout, dst_layout: Layout) -> (Scenario, Vec<NewMessage>) {
    let s = Scenario::new()
        .source_with(Dovecot::builder().layout(src_layout).mail_on_tmpfs(true))
        .destination_with(Dovecot::builder().layout(dst_layout).mail_on_tmpfs(true))
        .account("alice");
    let msgs = small_messages(
        BIG_FOLDER,
        &format!("bulk-{}", crate::support::unique_user("m")),
    );
    s.src("alice").append_many("INBOX", &msgs);
    (s, msgs)
}

#[test]
fn kill_9_mid_apply_then_rerun_copies_each_message_once() {
    let (s, msgs) = big_scenario(Layout::Classic, Layout::Modern);
    let total = msgs.len() as u64;
    let mut src = s.src("alice");
    let src_before = src.folder_snapshot("INBOX");
    let mut dst = s.dst("alice");

    let mut running = Running::start(&s, &["apply", "--auto-approve"]);
    running.wait_until_partly_copied(&mut dst, "INBOX", total);
    let pid = running.child.id();
    running.child.kill().expect("kill -9 the apply"); // SIGKILL
    let (code, out) = running.wait();
    assert_eq!(code, -1, "killed by a signal (pid {pid})\n{out}");
    // A MULTIAPPEND fully sent before the kill is still stored by Dovecot after it:
    // wait until the count settles.
    let there = settled_count(&mut dst, "INBOX");
    assert!(
        there > 0 && there < total,
        "{there} of {total} after the kill"
    );

    let report = apply_ok(&s, &[], total - there);
    assert_eq!(report["accounts"][0]["copied"], total - there, "{report:#}");
    assert_bodies(
        &multiset(&msgs),
        &dst.fetch_all("INBOX"),
        "INBOX after kill -9 and a re-run",
    );
    // The ledger the killed run was writing is still usable: every copy is in it, so 10
    // deleted on the destination are known as deleted, not copied again.
    let uids: Vec<u32> = dst.fetch_all("INBOX").iter().map(|m| m.uid).collect();
    dst.expunge("INBOX", &uids[..10]);
    let r = s.run(&["plan"]);
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(r.last_line(), NO_CHANGES, "{r}");
    assert!(r.stdout.contains("deleted on the destination: 10"), "{r}");
    assert_eq!(
        src_before,
        src.folder_snapshot("INBOX"),
        "the source INBOX changed"
    );
}

#[test]
fn sigint_mid_apply_exits_130_with_report_then_rerun_completes() {
    signal_mid_apply_writes_the_report_then_rerun_completes("INT", 130);
}

/// Kubernetes and systemd stop a process with SIGTERM: the same orderly stop as Ctrl-C.
#[test]
fn sigterm_mid_apply_exits_143_with_report_then_rerun_completes() {
    signal_mid_apply_writes_the_report_then_rerun_completes("TERM", 143);
}

fn signal_mid_apply_writes_the_report_then_rerun_completes(signal: &str, want: i32) {
    let (s, msgs) = big_scenario(Layout::Modern, Layout::Classic);
    let total = msgs.len() as u64;
    let mut src = s.src("alice");
    let src_before = src.folder_snapshot("INBOX");
    let mut dst = s.dst("alice");

    let _ = fs::remove_file(s.path("r.json"));
    let mut running = Running::start(&s, &["apply", "--auto-approve", "--report", "r.json"]);
    running.wait_until_partly_copied(&mut dst, "INBOX", total);
    let pid = running.child.id().to_string();
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -{signal} {pid}");
    let (code, out) = running.wait();
    assert_eq!(code, want, "SIG{signal} exits {want}\n{out}");

    let text = fs::read_to_string(s.path("r.json"))
        .unwrap_or_else(|e| panic!("no report after SIG{signal} ({e})\n{out}"));
    let report: Value = serde_json::from_str(&text).expect("report JSON");
    let acc = &report["accounts"][0];
    assert_eq!(acc["status"], "partial", "{report:#}");
    let copied = acc["copied"].as_u64().expect("copied");
    let pending = acc["pending"].as_u64().expect("pending");
    assert!(pending > 0, "{report:#}");
    assert_eq!(
        copied + pending,
        total,
        "copied + pending = planned\n{report:#}"
    );
    let there = message_count(&mut dst, "INBOX");
    assert_eq!(
        there, copied,
        "the report says {copied} copied, the destination has {there}"
    );

    apply_ok(&s, &[], total - there);
    assert_bodies(
        &multiset(&msgs),
        &dst.fetch_all("INBOX"),
        &format!("INBOX after SIG{signal} and a re-run"),
    );
    assert_eq!(
        src_before,
        src.folder_snapshot("INBOX"),
        "the source INBOX changed"
    );
}

#[test]
fn a_second_apply_on_the_same_account_is_refused_while_the_first_runs() {
    let (s, msgs) = big_scenario(Layout::Classic, Layout::Modern);
    let total = msgs.len() as u64;
    let mut dst = s.dst("alice");
    // The second apply uses a saved plan, so it reaches the lock at once (no planning).
    let saved = s.run(&["plan", "--out", "p.json"]);
    assert_eq!(saved.status, 0, "{saved}");
    let mut first = Running::start(&s, &["apply", "--auto-approve"]);
    first.wait_until_partly_copied(&mut dst, "INBOX", total);
    let second = s.run(&["apply", "p.json", "--auto-approve"]);
    let (code, out) = first.wait();
    assert_eq!(code, 0, "the first apply finishes\n{out}");
    assert_eq!(second.status, 1, "{second}");
    assert!(
        second
            .all_output()
            .contains("another mailshift apply is running for destination user"),
        "{second}"
    );
    assert_bodies(
        &multiset(&msgs),
        &dst.fetch_all("INBOX"),
        "INBOX after two applies",
    );
}
