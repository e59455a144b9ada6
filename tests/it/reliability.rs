//! Reliability of `apply` on real networks (issue 6 acceptance): a link that cuts every
//! connection after a random 64–512 KiB on both sides, a message no connection can carry,
//! a server that refuses connections for a while, a destination restarted twice, `doveadm
//! kick`, a throttling destination, and a literal over async-imap's 512 MiB cap.
//!
//! Each test runs the real binary through a [`FaultProxy`] in front of real Dovecots,
//! checks that its faults fired, checks the destination with the test's own raw client
//! (multisets of bodies, flags and dates: nothing lost, nothing doubled) and the source
//! by snapshot, and prints what it measured (faults, lost, duplicated, time).
//!
//! The data is scaled down to keep the suite fast (2 × 120 messages of up to 200 KB);
//! `MAILSHIFT_ACCEPTANCE_FULL=1` runs the full 2 × 800 of the issue.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use crate::scenario::{run_mailshift_watched, CmdResult, Scenario, Side};
use crate::support::{
    Direction, Fault, FaultProxy, Layout, MailboxSnapshot, MessageBuilder, NewMessage, RawImap,
};

const APPLY: &[&str] = &["apply", "--auto-approve", "--report", "report.json", "-v"];

/// A reproducible stream of numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }
}

/// `n` messages of `lo..hi` bytes with varied flags and dates (one body twice, so that
/// "exactly once" is a multiset).
fn messages(tag: &str, n: usize, lo: usize, hi: usize, seed: u64) -> Vec<NewMessage> {
    let mut rng = Rng(seed);
    let twin = MessageBuilder::new()
        .subject(&format!("{tag} twin"))
        .pad_to(lo.max(600))
        .build();
    (0..n)
        .map(|i| {
            let body = if i == 3 || i == n / 2 {
                twin.clone()
            } else {
                MessageBuilder::new()
                    .subject(&format!("{tag} {i}"))
                    .pad_to(rng.between(lo, hi))
                    .build()
            };
            let flags: &[&str] = match i % 3 {
                0 => &["\\Seen"],
                1 => &["\\Seen", "\\Flagged"],
                _ => &[],
            };
            NewMessage::new(body).flags(flags).internal_date(&format!(
                "{:02}-Apr-2022 09:{:02}:00 +0200",
                i % 28 + 1,
                i % 60
            ))
        })
        .collect()
}

/// A folder's messages as sorted (body, flags, date) triples, read by the test's own client.
pub(crate) type Multiset = Vec<(Vec<u8>, Vec<String>, String)>;

pub(crate) fn multiset(imap: &mut RawImap, folder: &str) -> Multiset {
    let mut v: Multiset = imap
        .fetch_all(folder)
        .into_iter()
        .map(|m| (m.body, m.flags, m.internal_date))
        .collect();
    v.sort();
    v
}

/// (lost, duplicated) between the source and destination INBOX of `account`, by body
/// (and whether flags and dates agree for the rest).
fn lost_and_doubled(s: &Scenario, account: &str) -> (usize, usize, bool) {
    let src = multiset(&mut s.src(account), "INBOX");
    let dst = multiset(&mut s.dst(account), "INBOX");
    let count = |v: &Multiset| {
        let mut m: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (b, _, _) in v {
            *m.entry(b.clone()).or_default() += 1;
        }
        m
    };
    let (cs, cd) = (count(&src), count(&dst));
    let lost = cs
        .iter()
        .map(|(b, n)| (n - cd.get(b).copied().unwrap_or(0)).max(0))
        .sum::<i64>() as usize;
    let doubled = cd
        .iter()
        .map(|(b, n)| (n - cs.get(b).copied().unwrap_or(0)).max(0))
        .sum::<i64>() as usize;
    (lost, doubled, src == dst)
}

fn run(s: &Scenario, limit: Duration) -> CmdResult {
    s.run_watched(APPLY, limit, |_, _| {})
}

fn report(s: &Scenario) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(s.path("report.json")).expect("report written"))
        .expect("the report is JSON")
}

/// Messages in the destination INBOX of `account`, as doveadm counts them.
fn dst_count(s: &Scenario, account: &str) -> usize {
    let user = &s.acct(account).destination_user;
    let out = s
        .destination_dovecot()
        .doveadm(&["mailbox", "status", "-u", user, "messages", "INBOX"]);
    let text = String::from_utf8_lossy(&out.stdout);
    if std::env::var_os("RELIABILITY_DEBUG").is_some() {
        eprintln!(
            "doveadm: {text:?} {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    text.split("messages=")
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn full() -> bool {
    std::env::var_os("MAILSHIFT_ACCEPTANCE_FULL").is_some()
}

/// Two accounts filled with `n` messages of `lo..hi` bytes each; their source snapshots.
fn two_accounts(n: usize, lo: usize, hi: usize) -> (Scenario, Vec<MailboxSnapshot>) {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .account("bob");
    let mut before = Vec::new();
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        s.src(name)
            .append_many("INBOX", &messages(name, n, lo, hi, 7 + i as u64));
        before.push(s.src(name).snapshot());
    }
    (s, before)
}

/// One account (`alice`, modern → modern) with `n` messages of `lo`..`hi` bytes in its
/// source INBOX, and the source as it was before the run.
fn alice_with(tag: &str, n: usize, lo: usize, hi: usize, seed: u64) -> (Scenario, MailboxSnapshot) {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice");
    s.src("alice")
        .append_many("INBOX", &messages(tag, n, lo, hi, seed));
    let before = s.src("alice").snapshot();
    (s, before)
}

#[test]
fn random_cuts_on_both_sides_copy_every_message_exactly_once() {
    let n = if full() { 800 } else { 120 };
    let (mut s, before) = two_accounts(n, 2_000, 200_000);
    let src = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::cut_randomly(
            Direction::ServerToClient,
            64 << 10,
            512 << 10,
            1,
        ))
        .start();
    let dst = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::cut_randomly(
            Direction::ClientToServer,
            64 << 10,
            512 << 10,
            2,
        ))
        .start();
    s.set_port(Side::Source, src.port());
    s.set_port(Side::Destination, dst.port());
    let r = run(&s, Duration::from_secs(if full() { 900 } else { 120 }));
    let faults = src.fired() + dst.fired();
    let mut totals = (0, 0);
    for name in ["alice", "bob"] {
        let (lost, doubled, same) = lost_and_doubled(&s, name);
        totals.0 += lost;
        totals.1 += doubled;
        assert!(
            same || lost + doubled > 0,
            "flags or dates differ for {name}\n{r}"
        );
    }
    eprintln!(
        "random cuts 64-512 KiB both sides, 2 x {n} messages: {faults} faults injected \
         (source {}, destination {}), lost {}, duplicated {}, {:.1}s, exit {}",
        src.fired(),
        dst.fired(),
        totals.0,
        totals.1,
        r.elapsed.as_secs_f64(),
        r.status
    );
    assert!(
        src.fired() >= 10 && dst.fired() >= 10,
        "too few cuts to prove anything\n{r}"
    );
    assert_eq!(totals, (0, 0), "lost, duplicated\n{r}");
    assert_eq!(r.status, 0, "{r}");
    let rep = report(&s);
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        let a = &rep["accounts"][i];
        assert_eq!(a["status"], "done", "{rep:#}");
        assert!(a["reconnects"].as_u64().unwrap() > 0, "{rep:#}");
        before[i].assert_unchanged(&s.src(name).snapshot());
    }
}

#[test]
fn small_cuts_on_small_messages_still_complete() {
    let (mut s, before) = two_accounts(60, 500, 6_000);
    let src = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::cut_randomly(
            Direction::ServerToClient,
            16 << 10,
            64 << 10,
            3,
        ))
        .start();
    let dst = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::cut_randomly(
            Direction::ClientToServer,
            16 << 10,
            64 << 10,
            4,
        ))
        .start();
    s.set_port(Side::Source, src.port());
    s.set_port(Side::Destination, dst.port());
    let r = run(&s, Duration::from_secs(120));
    let (mut lost, mut doubled) = (0, 0);
    for name in ["alice", "bob"] {
        let (l, d, _) = lost_and_doubled(&s, name);
        lost += l;
        doubled += d;
    }
    eprintln!(
        "random cuts 16-64 KiB both sides, 2 x 60 small messages: {} faults injected, lost \
         {lost}, duplicated {doubled}, {:.1}s",
        src.fired() + dst.fired(),
        r.elapsed.as_secs_f64()
    );
    assert!(src.fired() >= 3 && dst.fired() >= 3, "{r}");
    assert_eq!((lost, doubled), (0, 0), "{r}");
    assert_eq!(r.status, 0, "{r}");
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        before[i].assert_unchanged(&s.src(name).snapshot());
    }
    // Each cut costs at most one new connection: a source FETCH cut mid-answer reopens
    // the folder at once, and the retry after it used to drop that fresh connection and
    // log in again (two reconnects per cut in the report).
    let rep = report(&s);
    let reconnects: u64 = (0..2)
        .map(|i| rep["accounts"][i]["reconnects"].as_u64().unwrap())
        .sum();
    let cuts = (src.fired() + dst.fired()) as u64;
    assert!(
        (1..=cuts).contains(&reconnects),
        "{reconnects} reconnects for {cuts} cuts\n{rep:#}"
    );
}

#[test]
fn a_message_no_connection_can_carry_is_failed_with_a_hint_and_the_rest_arrive() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .config("[limits]\nconnect-timeout = \"2s\"\n");
    let mut msgs = messages("big", 40, 2_000, 100_000, 11);
    let big = MessageBuilder::new()
        .subject("two megabytes")
        .pad_to(2_000_000)
        .build();
    msgs.insert(20, NewMessage::new(big.clone()));
    s.src("alice").append_many("INBOX", &msgs);
    let before = s.src("alice").snapshot();
    let mut s = s;
    let src = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::cut_randomly(
            Direction::ServerToClient,
            64 << 10,
            512 << 10,
            5,
        ))
        .start();
    s.set_port(Side::Source, src.port());
    let r = run(&s, Duration::from_secs(120));
    let (lost, doubled, _) = lost_and_doubled(&s, "alice");
    eprintln!(
        "2 MB message behind cuts before 512 KiB: {} faults injected, lost {lost} (the big \
         one), duplicated {doubled}, {:.1}s",
        src.fired(),
        r.elapsed.as_secs_f64()
    );
    assert_eq!(r.status, 1, "{r}");
    assert_eq!(lost, 1, "only the big message is missing\n{r}");
    assert_eq!(doubled, 0, "{r}");
    let rep = report(&s);
    let a = &rep["accounts"][0];
    assert_eq!(a["status"], "partial", "{rep:#}");
    let failed = a["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{rep:#}");
    assert_eq!(failed[0]["size"], big.len() as u64, "{rep:#}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("connection was lost"), "{reason}");
    assert!(
        failed[0]["hint"].as_str().unwrap().contains("max-size"),
        "{rep:#}"
    );
    assert_eq!(a["pending"], 0, "{rep:#}");
    before.assert_unchanged(&s.src("alice").snapshot());
}

/// How long the destination refuses connections in the test below.
const REFUSAL: Duration = Duration::from_secs(30);

#[test]
fn a_server_refusing_connections_for_a_while_is_waited_for() {
    // Issue 6's acceptance: a server refusing new connections for 30 s is waited for. The
    // backoff is capped at connect-timeout: 5 s here, so the copy resumes within ~5 s of
    // the end of the refusal (with the default 30 s it could take up to 30 s more).
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice")
        .config("[limits]\nconnect-timeout = \"5s\"\n");
    s.src("alice")
        .append_many("INBOX", &messages("wait", 400, 2_000, 30_000, 13));
    let before = s.src("alice").snapshot();
    let dst = FaultProxy::to(s.port(Side::Destination))
        .delay(Duration::from_millis(15))
        .start();
    s.set_port(Side::Destination, dst.port());
    let mut refused_at = None;
    let r = s.run_watched(APPLY, Duration::from_secs(120), |t, _| {
        // Once the copy is under way: every connection is cut and new ones are closed
        // before the greeting, for 30 s.
        if refused_at.is_none() && dst_count(&s, "alice") >= 1 {
            dst.refuse_for(REFUSAL);
            refused_at = Some(t);
        }
    });
    let (lost, doubled, same) = lost_and_doubled(&s, "alice");
    eprintln!(
        "destination refusing connections for {} s: {} connections refused, lost {lost}, \
         duplicated {doubled}, {:.1}s",
        REFUSAL.as_secs(),
        dst.refused(),
        r.elapsed.as_secs_f64()
    );
    assert!(dst.refused() >= 2, "the refusal never mattered\n{r}");
    assert_eq!((lost, doubled), (0, 0), "lost, duplicated\n{r}");
    assert_eq!(r.status, 0, "{r}");
    assert!(same, "{r}");
    assert!(r.elapsed > REFUSAL, "{r}");
    // The counter of attempts moves on (it used to say (1/3) every time).
    assert!(
        r.stderr.contains("(2/16)") && r.stderr.contains("(3/16)"),
        "{r}"
    );
    let rep = report(&s);
    assert!(
        rep["accounts"][0]["retry_wait_seconds"].as_f64().unwrap() > 2.0,
        "{rep:#}"
    );
    before.assert_unchanged(&s.src("alice").snapshot());
}

#[test]
fn destination_restarted_twice_during_apply_loses_and_doubles_nothing() {
    let (mut s, before) = alice_with("restart", 600, 2_000, 30_000, 17);
    // A slow link keeps the copy going long enough for two restarts.
    let dst = FaultProxy::to(s.port(Side::Destination))
        .delay(Duration::from_millis(15))
        .start();
    let dst_port = dst.port();
    s.set_port(Side::Destination, dst_port);
    let mut restarts = Vec::new();
    // Once the first messages are there, and again once more arrived after that.
    let mut threshold = 1;
    // Restarts need the scenario mutably: run in its directory, not through it.
    s.write_files();
    let dir = s.dir().to_path_buf();
    let r = run_mailshift_watched(&dir, APPLY, Duration::from_secs(120), |_, _| {
        let there = dst_count(&s, "alice");
        if restarts.len() < 2 && there >= threshold {
            let away = s.restart(Side::Destination);
            restarts.push((there, away));
            threshold = there + 1;
        }
    });
    let (lost, doubled, same) = lost_and_doubled(&s, "alice");
    eprintln!(
        "destination restarted {} times ((messages there, time away): {restarts:?}): lost \
         {lost}, duplicated {doubled}, {:.1}s",
        restarts.len(),
        r.elapsed.as_secs_f64()
    );
    assert_eq!(
        restarts.len(),
        2,
        "the apply ended before two restarts\n{r}"
    );
    assert_eq!(r.status, 0, "{r}");
    assert!(same, "{r}");
    let rep = report(&s);
    assert!(
        rep["accounts"][0]["reconnects"].as_u64().unwrap() >= 2,
        "{rep:#}"
    );
    before.assert_unchanged(&s.src("alice").snapshot());
}

#[test]
fn doveadm_kick_during_apply_reconnects() {
    let (mut s, before) = alice_with("kick", 400, 2_000, 30_000, 19);
    let dst = FaultProxy::to(s.port(Side::Destination))
        .delay(Duration::from_millis(15))
        .start();
    s.set_port(Side::Destination, dst.port());
    let user = s.acct("alice").destination_user.clone();
    let mut kicks = 0;
    let mut threshold = 1;
    let r = s.run_watched(APPLY, Duration::from_secs(120), |_, _| {
        let there = dst_count(&s, "alice");
        if kicks < 2 && there >= threshold {
            threshold = there + 1;
            let out = s.destination_dovecot().doveadm(&["kick", &user]);
            if String::from_utf8_lossy(&out.stdout).contains(&user) {
                kicks += 1;
            }
        }
    });
    let (lost, doubled, same) = lost_and_doubled(&s, "alice");
    eprintln!("doveadm kick x{kicks}: lost {lost}, duplicated {doubled}");
    assert!(kicks >= 1, "nobody was kicked\n{r}");
    assert_eq!(r.status, 0, "{r}");
    assert!(same, "{r}");
    before.assert_unchanged(&s.src("alice").snapshot());
}

#[test]
fn loss_while_reading_destination_metadata_reconnects() {
    let (mut s, before) = alice_with("meta", 50, 1_000, 5_000, 23);
    // The destination is empty at plan time, so the first identity headers it sends are
    // the key stability check's read-back after the first batch: cut there, once.
    let dst = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::cut_at(
            Direction::ServerToClient,
            b"BODY[HEADER.FIELDS",
        ))
        .start();
    s.set_port(Side::Destination, dst.port());
    let r = run(&s, Duration::from_secs(60));
    assert_eq!(dst.fired(), 1, "the cut never happened\n{r}");
    assert_eq!(r.status, 0, "{r}");
    let (lost, doubled, same) = lost_and_doubled(&s, "alice");
    assert_eq!((lost, doubled), (0, 0), "{r}");
    assert!(same, "{r}");
    before.assert_unchanged(&s.src("alice").snapshot());
}

#[test]
fn throttled_appends_wait_the_suggested_time_then_complete() {
    let (mut s, before) = alice_with("throttle", 30, 1_000, 4_000, 29);
    let backoff = Duration::from_millis(900);
    let dst = FaultProxy::to(s.port(Side::Destination))
        .throttle(
            1,
            backoff,
            "Request is throttled. Suggested Backoff Time: 900 ms",
        )
        .start();
    s.set_port(Side::Destination, dst.port());
    let r = run(&s, Duration::from_secs(60));
    let log = dst.appends();
    assert!(!log.throttled.is_empty(), "nothing was throttled\n{r}");
    let first = log.throttled[0];
    let resumed = log
        .forwarded
        .iter()
        .find(|t| **t > first)
        .copied()
        .unwrap_or_else(|| panic!("no APPEND got through after the throttling\n{r}"));
    let waited = resumed.duration_since(first);
    eprintln!(
        "throttled {} APPENDs; the next one came {waited:?} after the first refusal (asked: \
         {backoff:?})",
        log.throttled.len()
    );
    assert!(
        waited >= backoff,
        "the suggested backoff was not honoured: {waited:?}\n{r}"
    );
    assert!(waited < backoff * 4, "waited far too long: {waited:?}\n{r}");
    assert_eq!(r.status, 0, "{r}");
    let (lost, doubled, same) = lost_and_doubled(&s, "alice");
    assert_eq!((lost, doubled), (0, 0), "{r}");
    assert!(same, "{r}");
    let rep = report(&s);
    assert!(
        rep["accounts"][0]["retry_wait_seconds"].as_f64().unwrap() >= 0.9,
        "{rep:#}"
    );
    before.assert_unchanged(&s.src("alice").snapshot());
}

#[test]
fn a_literal_over_512_mib_fails_that_message_and_the_folder_goes_on() {
    let (mut s, before) = alice_with("huge", 4, 1_000, 3_000, 31);
    // The source announces message 2's body as a 600 MB literal (and sends nothing more):
    // more than async-imap will ever buffer.
    let src = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::replace_at_every(
            Direction::ServerToClient,
            b"(UID 2 BODY[] {",
            b"* 2 FETCH (UID 2 BODY[] {600000000}\r\n",
        ))
        .start();
    s.set_port(Side::Source, src.port());
    let r = run(&s, Duration::from_secs(60));
    assert!(
        src.fired() >= 1,
        "the huge literal was never announced\n{r}"
    );
    assert_eq!(r.status, 1, "{r}");
    let (lost, doubled, _) = lost_and_doubled(&s, "alice");
    assert_eq!((lost, doubled), (1, 0), "only message 2 is missing\n{r}");
    let rep = report(&s);
    let a = &rep["accounts"][0];
    assert_eq!(a["status"], "partial", "{rep:#}");
    assert_eq!(a["copied"], 3, "{rep:#}");
    let failed = a["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{rep:#}");
    assert_eq!(failed[0]["uid"], 2, "{rep:#}");
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("512 MiB"),
        "{rep:#}"
    );
    assert!(
        failed[0]["hint"].as_str().unwrap().contains("max-size"),
        "{rep:#}"
    );
    before.assert_unchanged(&s.src("alice").snapshot());
}
