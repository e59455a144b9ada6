//! Hostile servers (issue 6, item 6): a source that answers the body fetch of one account
//! with a malformed response, a literal over async-imap's cap, silence, or `BYE`. Each such
//! account ends in a clear error within the configured timeouts (no panic, no hang, memory
//! bounded), and the honest account of the same run completes; exit 1.
//!
//! The source is a real Dovecot behind a [`FaultProxy`] whose `answer` hook replies to the
//! hostile accounts' `UID FETCH … BODY.PEEK[]` itself. Each hostile account's UIDs start at
//! its own thousand (`doveadm mailbox update --min-next-uid`), so the hook knows from the
//! UID set alone whose fetch it sees; the honest account's UIDs stay below 10 and its
//! fetches go through untouched.

use crate::reliability::multiset;
use std::fs;
use std::time::Duration;

use crate::scenario::{CmdResult, Scenario, Side};
use crate::support::{
    Act, ConnView, FaultProxy, Layout, MailboxSnapshot, MessageBuilder, NewMessage,
};

const APPLY: &[&str] = &["apply", "--auto-approve", "--report", "report.json", "-v"];

/// The hostile accounts and the first UID of each (what the proxy keys on).
const HOSTILE: &[(&str, u32)] = &[
    ("malformed", 1001),
    ("hugeliteral", 2001),
    ("silent", 3001),
    ("byebye", 4001),
    ("mute", 5001),
    ("bigliteral", 6001),
    ("trickle", 7001),
];

/// The proxy's answer to a client line: `Some(reply)` for a hostile account's body fetch.
fn hostile_answer(line: &[u8]) -> Option<Vec<u8>> {
    let line = std::str::from_utf8(line).ok()?;
    // The SASL PLAIN message of `mute`'s login: never answered (a server that greets, then
    // says nothing more). With SASL-IR it is the last word of `AUTHENTICATE PLAIN …`.
    let sasl = line.trim_end().rsplit(' ').next().unwrap_or("");
    if base64_decode(sasl).contains("\0mute-") {
        return Some(Vec::new());
    }
    if !line.contains(" BODY.PEEK[]") {
        return None;
    }
    let (tag, rest) = line.split_once(' ')?;
    let set = rest.strip_prefix("UID FETCH ")?;
    let first: u32 = set
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    match first / 1000 {
        // Not IMAP at all where a FETCH response should be.
        1 => Some(
            format!("* 1 FETCH (UID {first} BODY[] ((( \x01garbage\r\n{tag} OK done\r\n")
                .into_bytes(),
        ),
        // A literal of about 3.7 GiB announced, none of it sent.
        2 => Some(format!("* 1 FETCH (UID {first} BODY[] {{4000000000}}\r\n").into_bytes()),
        // Never answers: the command is swallowed.
        3 => Some(Vec::new()),
        // Goes away at once.
        4 => Some(b"* BYE not today\r\n".to_vec()),
        // A literal of 100 MB (under async-imap's 512 MiB cap) announced for a message of
        // 2 KB, a few bytes of it sent, then nothing.
        6 => {
            Some(format!("* 1 FETCH (UID {first} BODY[] {{100000000}}\r\nFrom: x\r\n").into_bytes())
        }
        _ => None,
    }
}

/// The `trickle` account's source: answers the body fetch with a literal of 900,000 bytes
/// (as much as a batch of these messages could hold) that arrives 16 bytes every 100 ms,
/// so that `idle-timeout`, which only sees silence, never fires.
fn trickle(view: &ConnView, chunk: &[u8]) -> Option<Act> {
    let line = std::str::from_utf8(chunk).ok()?;
    if view.commands.last()? != "UID FETCH" || !line.contains(" BODY.PEEK[]") {
        return None;
    }
    let set = line.split_once("UID FETCH ")?.1;
    let first: u32 = set
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    (first / 1000 == 7).then(|| Act::Trickle {
        head: format!("* 1 FETCH (UID {first} BODY[] {{900000}}\r\n").into_bytes(),
        every: Duration::from_millis(100),
        chunk: 16,
    })
}

/// Standard base64 (enough for a SASL PLAIN message); garbage in, garbage out.
fn base64_decode(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut bits, mut n, mut out) = (0u32, 0, Vec::new());
    for c in s.bytes().filter(|c| *c != b'=') {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            return String::new();
        };
        bits = bits << 6 | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `n` small seen messages, sizes growing by 300 bytes from 2,000 (shared with the
/// hostile-destination tests).
pub(crate) fn messages(tag: &str, n: usize) -> Vec<NewMessage> {
    (0..n)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("{tag} {i}"))
                    .pad_to(2_000 + 300 * i)
                    .build(),
            )
            .flags(&["\\Seen"])
            .internal_date("03-Mar-2023 10:00:00 +0000")
        })
        .collect()
}

/// Runs the binary, killing it (and failing) after `limit`; `peak_kib` gets the largest
/// resident set seen (VmHWM) while it ran.
pub(crate) fn run(s: &Scenario, limit: Duration) -> (CmdResult, u64) {
    let mut peak_kib = 0u64;
    let r = s.run_watched(APPLY, limit, |_, pid| {
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
    });
    (r, peak_kib)
}

pub(crate) fn account<'a>(rep: &'a serde_json::Value, user: &str) -> &'a serde_json::Value {
    rep["accounts"]
        .as_array()
        .expect("accounts in the report")
        .iter()
        .find(|a| a["source_user"] == user)
        .unwrap_or_else(|| panic!("no account `{user}` in {rep:#}"))
}

/// The hostile account `name` did not complete, copied nothing, and its error or failed
/// messages say what its server did (one of `words`, case-insensitive).
#[track_caller]
pub(crate) fn assert_failed_saying(
    rep: &serde_json::Value,
    s: &Scenario,
    name: &str,
    words: &[&str],
    run: &CmdResult,
) {
    let a = account(rep, &s.acct(name).source_user);
    assert_ne!(a["status"], "done", "{name}: {a:#}");
    assert_eq!(a["copied"], 0, "{name}: {a:#}");
    let why = reasons(a).to_lowercase();
    eprintln!("{name}: {} after {}", a["error"], a["seconds"]);
    assert!(
        words.iter().any(|w| why.contains(&w.to_lowercase())),
        "{name}: the reason says what the server did ({words:?}): {a:#}\n{run}"
    );
}

/// Everything an account says about why it stopped: its error, hint and failed messages.
pub(crate) fn reasons(a: &serde_json::Value) -> String {
    format!("{} {} {}", a["error"], a["hint"], a["failed"])
}

#[test]
fn hostile_sources_fail_their_own_account_within_the_timeouts_and_the_honest_one_completes() {
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("honest");
    for (name, _) in HOSTILE {
        s = s.account(name);
    }
    let s = s.config(
        "[limits]\nparallel-accounts = 8\nidle-timeout = \"1s\"\nconnect-timeout = \"1s\"\n",
    );
    let mut s = s;
    let mut before: Vec<(String, MailboxSnapshot)> = Vec::new();
    for (name, first_uid) in HOSTILE {
        let user = s.acct(name).source_user.clone();
        let out = s.source_dovecot().doveadm(&[
            "mailbox",
            "update",
            "-u",
            &user,
            "--min-next-uid",
            &first_uid.to_string(),
            "INBOX",
        ]);
        assert!(
            out.status.success(),
            "doveadm mailbox update: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uids = s.src(name).append_many("INBOX", &messages(name, 3));
        assert_eq!(uids[0], *first_uid, "the hook keys on this UID");
        before.push((name.to_string(), s.src(name).snapshot()));
    }
    s.src("honest").append_many("INBOX", &messages("honest", 5));
    before.push(("honest".into(), s.src("honest").snapshot()));

    let proxy = FaultProxy::to(s.port(Side::Source))
        .answer(hostile_answer)
        .hostile(trickle)
        .start();
    s.set_port(Side::Source, proxy.port());
    let (r, peak_kib) = run(&s, Duration::from_secs(40));
    eprintln!(
        "hostile sources: exit {} in {:?}, {} fetches answered by the hostile hook, peak RSS {} KiB",
        r.status,
        r.elapsed,
        proxy.answered(),
        peak_kib
    );
    assert_eq!(r.status, 1, "{r}");
    assert!(
        proxy.answered() + proxy.hostile_acts().len() >= HOSTILE.len(),
        "every hostile account met its hostile server\n{r}"
    );
    assert!(!r.all_output().contains("panicked"), "{r}");
    // Silence costs at most 3 idle timeouts (the stall budget) plus the waits between them;
    // the BYEs are retried with backoff capped at 1 s up to the no-progress budget.
    assert!(
        r.elapsed < Duration::from_secs(25),
        "took {:?}\n{r}",
        r.elapsed
    );
    // Literals of 3.7 GiB and of 100 MB announced are never allocated.
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB\n{r}");

    let rep: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(s.path("report.json")).expect("report written"))
            .expect("the report is JSON");
    let honest = account(&rep, &s.acct("honest").source_user);
    assert_eq!(honest["status"], "done", "{honest:#}");
    assert_eq!(honest["copied"], 5, "{honest:#}");
    let src = multiset(&mut s.src("honest"), "INBOX");
    let dst = multiset(&mut s.dst("honest"), "INBOX");
    assert_eq!(
        src, dst,
        "the honest account arrived exactly, with flags and dates"
    );

    let expect: &[(&str, &[&str])] = &[
        ("malformed", &["not valid imap"]),
        ("hugeliteral", &["too large", "512"]),
        ("silent", &["within 1s"]),
        ("byebye", &["BYE", "not today"]),
        ("mute", &["within 1s"]),
        ("bigliteral", &["announced 100000000 bytes"]),
        ("trickle", &["under 1024 bytes/s"]),
    ];
    for (name, words) in expect {
        assert_failed_saying(&rep, &s, name, words, &r);
        assert!(
            multiset(&mut s.dst(name), "INBOX").is_empty(),
            "{name}: nothing half-copied on the destination"
        );
    }
    for (name, snap) in &before {
        snap.assert_unchanged(&s.src(name).snapshot());
    }
}
