//! Hostile destinations (issue 6, item 6, the writing side): a destination that answers
//! APPEND or SELECT with something that is not IMAP, says `BYE` at random, never answers
//! an APPEND once its literal is sent, or answers the FETCH of the key stability read-back
//! or of the plan's inventory with a literal of tens of megabytes that then trickles in a
//! few bytes at a time (so that `idle-timeout`, which only sees silence, never fires).
//!
//! Each hostile account ends within the timeouts, with a clear error or — where a retry
//! gets through — with every message copied exactly once; no panic, bounded memory, and
//! the honest account of the same run completes. The destination is behind a
//! [`FaultProxy`] whose hostile hook knows which user logged in on each connection; the
//! test reads both servers with its own raw client, directly, not through the proxy.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::hostile::{account, assert_failed_saying, messages, run};
use crate::reliability::{multiset, Multiset};
use crate::scenario::{Scenario, Side};
use crate::support::{Act, ConnView, FaultProxy, Layout, MailboxSnapshot};

/// What each hostile destination account meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// APPEND answered with bytes that are not IMAP.
    GarbledAppend,
    /// SELECT answered with bytes that are not IMAP.
    GarbledSelect,
    /// On every other connection, `* BYE` and a closed connection at the 3rd–5th command.
    RandomBye,
    /// APPEND (its literal sent) never answered; the connection stays open.
    SilentAppend,
    /// The key stability read-back (a `UID FETCH` after an APPEND on the same connection)
    /// answered with a 100 MB literal that trickles.
    TricklingReadBack,
    /// The plan's inventory FETCH of the destination answered with a 50 MB literal that
    /// trickles.
    TricklingInventory,
}

const HOSTILE: &[(&str, Kind)] = &[
    ("dgarble", Kind::GarbledAppend),
    ("dselect", Kind::GarbledSelect),
    ("dbye", Kind::RandomBye),
    ("dsilent", Kind::SilentAppend),
    ("dreadback", Kind::TricklingReadBack),
    ("dinventory", Kind::TricklingInventory),
];

fn tag(chunk: &[u8]) -> String {
    let text = String::from_utf8_lossy(chunk);
    text.split(' ').next().unwrap_or("*").to_string()
}

fn trickle(head: String) -> Act {
    Act::Trickle {
        head: head.into_bytes(),
        every: Duration::from_millis(100),
        chunk: 16,
    }
}

/// The hostile server's script, per destination user.
fn script(users: HashMap<String, Kind>) -> impl Fn(&ConnView, &[u8]) -> Option<Act> + Send + Sync {
    // The n-th connection of each user (for "every other connection").
    let nth: Mutex<HashMap<usize, usize>> = Mutex::new(HashMap::new());
    let per_user: Mutex<HashMap<String, usize>> = Mutex::new(HashMap::new());
    move |view, chunk| {
        let user = view.user.as_ref()?;
        let kind = *users.get(user)?;
        let last = view.commands.last()?.as_str();
        let has = |c: &str| view.commands.iter().any(|x| x == c);
        match kind {
            Kind::GarbledAppend if last == "APPEND" => Some(Act::Stall(
                format!(
                    "* 1 FETCH (UID 1 BODY[] ((( \x01garbage\r\n{} OK done\r\n",
                    tag(chunk)
                )
                .into_bytes(),
            )),
            Kind::GarbledSelect if last == "SELECT" => Some(Act::Stall(
                format!(
                    "* FLAGS (\\Seen \x01 ((( garbage\r\n{} OK [READ-WRITE] done\r\n",
                    tag(chunk)
                )
                .into_bytes(),
            )),
            Kind::RandomBye => {
                let n = *nth.lock().unwrap().entry(view.index).or_insert_with(|| {
                    let mut counts = per_user.lock().unwrap();
                    let c = counts.entry(user.clone()).or_insert(0);
                    *c += 1;
                    *c - 1
                });
                let at = 3 + (n / 2) % 3;
                (n.is_multiple_of(2) && view.commands.len() >= at)
                    .then(|| Act::Close(b"* BYE random goodbye\r\n".to_vec()))
            }
            Kind::SilentAppend if last == "APPEND" => Some(Act::Stall(Vec::new())),
            Kind::TricklingReadBack if last == "UID FETCH" && has("APPEND") => Some(trickle(
                "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (MESSAGE-ID DATE FROM TO CC SUBJECT)] \
                 {100000000}\r\n"
                    .into(),
            )),
            Kind::TricklingInventory
                if has("EXAMINE") && view.commands.iter().any(|c| c == "UID FETCH") =>
            {
                Some(trickle(
                    "* 1 FETCH (UID 1 FLAGS () BODY[HEADER.FIELDS (MESSAGE-ID)] {50000000}\r\n"
                        .into(),
                ))
            }
            _ => None,
        }
    }
}

/// (lost, duplicated): source messages missing on the destination, and destination copies
/// beyond the source's count (by body; messages the destination had before are `extra`).
fn lost_and_doubled(src: &Multiset, dst: &Multiset, extra: &Multiset) -> (i64, i64) {
    let count = |v: &Multiset| {
        let mut m: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (b, _, _) in v {
            *m.entry(b.clone()).or_default() += 1;
        }
        m
    };
    let (cs, mut cd) = (count(src), count(dst));
    for (b, _, _) in extra {
        *cd.entry(b.clone()).or_default() -= 1;
    }
    let lost = cs
        .iter()
        .map(|(b, n)| (n - cd.get(b).copied().unwrap_or(0)).max(0))
        .sum();
    let doubled = cd
        .iter()
        .map(|(b, n)| (n - cs.get(b).copied().unwrap_or(0)).max(0))
        .sum();
    (lost, doubled)
}

#[test]
fn hostile_destinations_fail_their_own_account_within_the_timeouts_and_the_rest_completes() {
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("honest");
    for (name, _) in HOSTILE {
        s = s.account(name);
    }
    let mut s = s.config(
        "[limits]\nparallel-accounts = 7\nidle-timeout = \"1s\"\nconnect-timeout = \"1s\"\n",
    );
    let mut before: Vec<(String, MailboxSnapshot)> = Vec::new();
    let mut users = HashMap::new();
    for (name, kind) in HOSTILE {
        s.src(name).append_many("INBOX", &messages(name, 3));
        before.push((name.to_string(), s.src(name).snapshot()));
        users.insert(s.acct(name).destination_user.clone(), *kind);
    }
    s.src("honest").append_many("INBOX", &messages("honest", 5));
    before.push(("honest".into(), s.src("honest").snapshot()));
    // The inventory FETCH of the destination happens only when it holds something.
    let already = messages("already there", 1);
    s.dst("dinventory").append_many("INBOX", &already);
    let already = multiset(&mut s.dst("dinventory"), "INBOX");

    let proxy = FaultProxy::to(s.port(Side::Destination))
        .hostile(script(users))
        .start();
    let proxy = Arc::new(proxy);
    s.set_port(Side::Destination, proxy.port());
    let (r, peak_kib) = run(&s, Duration::from_secs(40));
    let acts = proxy.hostile_acts();
    eprintln!(
        "hostile destinations: exit {} in {:?}, {} hostile acts, peak RSS {} KiB",
        r.status,
        r.elapsed,
        acts.len(),
        peak_kib
    );
    assert_eq!(r.status, 1, "{r}");
    assert!(!r.all_output().contains("panicked"), "{r}");
    // Every hostile account met its hostile server (or the test proved nothing).
    for (name, kind) in HOSTILE {
        let user = &s.acct(name).destination_user;
        let mine: Vec<_> = acts.iter().filter(|(u, _, _)| u == user).collect();
        eprintln!("{name} ({kind:?}): {} acts: {mine:?}", mine.len());
        assert!(
            !mine.is_empty(),
            "{name}: the hostile server never acted\n{r}"
        );
    }
    // Silence and trickles cost at most 3 idle timeouts each (the stall budget), plus the
    // waits between them.
    assert!(
        r.elapsed < Duration::from_secs(25),
        "took {:?}\n{r}",
        r.elapsed
    );
    // A 100 MB literal announced is never buffered whole.
    assert!(peak_kib < 100 * 1024, "peak RSS {peak_kib} KiB\n{r}");

    let rep: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(s.path("report.json")).expect("report written"))
            .expect("the report is JSON");
    // Accounts whose retries get through: everything arrives exactly once.
    for (name, n) in [("honest", 5), ("dbye", 3), ("dreadback", 3)] {
        let a = account(&rep, &s.acct(name).source_user);
        assert_eq!(a["status"], "done", "{name}: {a:#}\n{r}");
        assert_eq!(a["copied"], n, "{name}: {a:#}");
    }
    let expect: &[(&str, &[&str])] = &[
        ("dgarble", &["not valid imap"]),
        ("dselect", &["not valid imap"]),
        ("dsilent", &["within 1s"]),
        ("dinventory", &["bytes/s"]),
    ];
    for (name, words) in expect {
        assert_failed_saying(&rep, &s, name, words, &r);
    }
    let (mut lost_total, mut doubled_total) = (0, 0);
    for (name, snap) in &before {
        snap.assert_unchanged(&s.src(name).snapshot());
        let src = multiset(&mut s.src(name), "INBOX");
        let dst = multiset(&mut s.dst(name), "INBOX");
        let extra = if name == "dinventory" {
            already.clone()
        } else {
            Vec::new()
        };
        let (lost, doubled) = lost_and_doubled(&src, &dst, &extra);
        let failed = expect.iter().any(|(n, _)| n == name);
        if failed {
            eprintln!(
                "{name}: {} on the source, {} on the destination, {} not copied (reported: the account failed), duplicated {doubled}",
                src.len(),
                dst.len(),
                src.len()
            );
        } else {
            eprintln!(
                "{name}: {} on the source, {} on the destination, lost {lost}, duplicated {doubled}",
                src.len(),
                dst.len()
            );
        }
        assert_eq!(doubled, 0, "{name}: nothing doubled");
        if failed {
            // Nothing half-copied: the destination holds what it held before.
            assert_eq!(dst, extra, "{name}: the destination is as it was");
        } else {
            assert_eq!(lost, 0, "{name}: nothing lost");
            assert_eq!(src, dst, "{name}: arrived exactly, with flags and dates");
            lost_total += lost;
            doubled_total += doubled;
        }
    }
    eprintln!(
        "hostile destinations: {} faults injected, lost {lost_total}, duplicated {doubled_total} (accounts that completed)",
        acts.len()
    );
}
