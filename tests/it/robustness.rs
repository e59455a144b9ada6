//! Robustness: what `plan` and `apply` do when the network or the server misbehaves.
//!
//! A [`FaultProxy`] between the binary and a real Dovecot cuts or stalls connections at
//! chosen points (mid-APPEND, right after a batch's tagged OK, mid-FETCH); a tiny scripted
//! IMAP server ([`Hostile`]) shows server quirks Dovecot never does. Every apply is checked
//! independently (raw `BODY.PEEK[]` multisets) and the source by snapshot. Every test also
//! checks that its fault really fired, or it would prove nothing.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::scenario::{CmdResult, Scenario, Side};
use crate::support::{
    Direction, Fault, FaultProxy, Layout, MailboxSnapshot, MessageBuilder, NewMessage, RawImap,
};

/// Messages in the folder the fault tests copy (3 APPEND batches of ≤ 200).
const MESSAGES: usize = 500;
/// Size of each of them: big enough that bodies dwarf the inventory's header traffic.
const MESSAGE_SIZE: usize = 4_000;

/// 500 messages for INBOX: varied flags, and one body present three times (in three
/// different batches), so "exactly once" is a multiset, not a set.
fn folder_messages() -> Vec<NewMessage> {
    let twin = MessageBuilder::new()
        .subject("the same message three times")
        .pad_to(MESSAGE_SIZE)
        .build();
    (0..MESSAGES)
        .map(|i| {
            let body = if i == 10 || i == 250 || i == 450 {
                twin.clone()
            } else {
                MessageBuilder::new()
                    .subject(&format!("robustness {i}"))
                    .pad_to(MESSAGE_SIZE)
                    .build()
            };
            let flags: &[&str] = match i % 4 {
                0 => &["\\Seen"],
                1 => &["\\Seen", "\\Flagged", "$Label1"],
                2 => &[],
                _ => &["\\Answered"],
            };
            NewMessage::new(body).flags(flags).internal_date(&format!(
                "{:02}-Mar-2021 08:{:02}:00 +0100",
                i % 28 + 1,
                i % 60
            ))
        })
        .collect()
}

/// A scenario with one account whose source INBOX holds [`folder_messages`]; returns it,
/// the source snapshot before anything ran, and the total body bytes.
fn filled_scenario(extra_toml: &str) -> (Scenario, MailboxSnapshot, u64) {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .config(extra_toml);
    let msgs = folder_messages();
    let bytes = msgs.iter().map(|m| m.body.len() as u64).sum();
    s.src("alice").append_many("INBOX", &msgs);
    let before = s.src("alice").snapshot();
    (s, before, bytes)
}

/// (body, flags, INTERNALDATE) of every message of a folder, sorted: a multiset.
fn multiset(imap: &mut RawImap, folder: &str) -> Vec<(Vec<u8>, Vec<String>, String)> {
    let mut v: Vec<_> = imap
        .fetch_all(folder)
        .into_iter()
        .map(|m| (m.body, m.flags, m.internal_date))
        .collect();
    v.sort();
    v
}

/// The destination INBOX holds every source INBOX message exactly once (bodies byte for
/// byte, flags, dates), and the source did not change.
#[track_caller]
fn assert_copied_exactly_once(s: &Scenario, before: &MailboxSnapshot, r: &CmdResult) {
    let src = multiset(&mut s.src("alice"), "INBOX");
    let dst = multiset(&mut s.dst("alice"), "INBOX");
    if src != dst {
        let count = |v: &[(Vec<u8>, Vec<String>, String)]| {
            let mut m: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
            for (b, _, _) in v {
                *m.entry(b.clone()).or_default() += 1;
            }
            m
        };
        let (cs, cd) = (count(&src), count(&dst));
        let missing = cs
            .iter()
            .filter(|(b, n)| cd.get(*b).copied().unwrap_or(0) < **n)
            .count();
        let doubled = cd
            .iter()
            .filter(|(b, n)| cs.get(*b).copied().unwrap_or(0) < **n)
            .count();
        panic!(
            "destination INBOX differs from the source: {} messages on the source, {} on the \
             destination; {missing} bodies missing or short, {doubled} bodies extra \
             (duplicated); flags/dates may differ too\n{r}",
            src.len(),
            dst.len()
        );
    }
    assert_eq!(src.len(), MESSAGES);
    before.assert_unchanged(&s.src("alice").snapshot());
}

/// Runs the binary like `Scenario::run`, but kills it (and fails) after `limit`.
fn run_bounded(s: &Scenario, args: &[&str], limit: Duration) -> CmdResult {
    let r = s.run_watched(args, limit, |_, _| {});
    if std::env::var_os("ROBUSTNESS_SHOW").is_some() {
        eprintln!("=== mailshift {args:?}\n{r}");
    }
    r
}

/// The `apply --report` document.
fn report(s: &Scenario) -> serde_json::Value {
    let text = fs::read_to_string(s.path("report.json")).expect("the report was written");
    serde_json::from_str(&text).expect("the report is JSON")
}

const APPLY: &[&str] = &["apply", "--auto-approve", "--report", "report.json", "-v"];

#[test]
fn destination_cut_mid_append_batch_reconnects_and_copies_exactly_once() {
    let (mut s, before, bytes) = filled_scenario("");
    // 60% of the bodies, client → server, on the connection that carries them (the plan's
    // destination connections send a few hundred bytes and never get there).
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::cut_after(Direction::ClientToServer, bytes * 6 / 10).times(1))
        .start();
    s.set_port(Side::Destination, proxy.port());
    let r = run_bounded(&s, APPLY, Duration::from_secs(60));
    assert_eq!(proxy.fired(), 1, "the cut never happened\n{r}");
    assert_eq!(r.status, 0, "{r}");
    assert_copied_exactly_once(&s, &before, &r);
    let rep = report(&s);
    assert_eq!(rep["accounts"][0]["status"], "done", "{rep:#}");
    assert_eq!(rep["accounts"][0]["copied"], MESSAGES as u64, "{rep:#}");
}

#[test]
fn destination_cut_after_a_batch_was_stored_but_not_acknowledged_copies_exactly_once() {
    let (mut s, before, _) = filled_scenario("");
    // The second batch's tagged `OK [APPENDUID ...]` never reaches the client: the server
    // stored 200 messages the client cannot know about.
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::cut_at(Direction::ServerToClient, b"[APPENDUID ").nth(2))
        .start();
    s.set_port(Side::Destination, proxy.port());
    let r = run_bounded(&s, APPLY, Duration::from_secs(60));
    assert_eq!(proxy.fired(), 1, "the cut never happened\n{r}");
    assert_eq!(r.status, 0, "{r}");
    assert_copied_exactly_once(&s, &before, &r);
    let rep = report(&s);
    assert_eq!(rep["accounts"][0]["status"], "done", "{rep:#}");
    assert_eq!(rep["accounts"][0]["copied"], MESSAGES as u64, "{rep:#}");
}

#[test]
fn source_cut_mid_body_fetch_reconnects_and_copies_exactly_once() {
    let (mut s, before, bytes) = filled_scenario("");
    // Half of the bodies, server → client: far more than the inventory's headers.
    let proxy = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::cut_after(Direction::ServerToClient, bytes / 2).times(1))
        .start();
    s.set_port(Side::Source, proxy.port());
    let r = run_bounded(&s, APPLY, Duration::from_secs(60));
    assert_eq!(proxy.fired(), 1, "the cut never happened\n{r}");
    assert_eq!(r.status, 0, "{r}");
    assert_copied_exactly_once(&s, &before, &r);
}

#[test]
fn source_cut_on_every_connection_still_moves_forward_and_completes() {
    let (mut s, before, bytes) = filled_scenario("");
    // Every connection carries a quarter of the bodies, then is cut: each one lets some
    // messages through, so the account is never given up.
    let proxy = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::cut_after(Direction::ServerToClient, bytes / 4))
        .start();
    s.set_port(Side::Source, proxy.port());
    let r = run_bounded(&s, APPLY, Duration::from_secs(60));
    assert!(proxy.fired() >= 4, "fewer cuts than the bodies need\n{r}");
    assert_eq!(r.status, 0, "{r}");
    assert_copied_exactly_once(&s, &before, &r);
    let rep = report(&s);
    let a = &rep["accounts"][0];
    assert_eq!(a["status"], "done", "{rep:#}");
    assert!(a["reconnects"].as_u64().unwrap() >= 3, "{rep:#}");
    assert!(a["retries"].as_u64().unwrap() >= 3, "{rep:#}");
}

#[test]
fn source_cut_before_any_body_on_every_connection_gives_up_within_the_budget() {
    let (mut s, before, _) = filled_scenario("[limits]\nconnect-timeout = \"1s\"\n");
    // No body ever gets through: the no-progress budget ends the account (no endless
    // retry, no message counted as copied).
    let proxy = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::cut_at_every(Direction::ServerToClient, b"BODY[] {"))
        .start();
    s.set_port(Side::Source, proxy.port());
    let r = run_bounded(&s, APPLY, Duration::from_secs(60));
    assert!(proxy.fired() >= 5, "the cuts never happened\n{r}");
    assert_eq!(r.status, 1, "{r}");
    let port = proxy.port().to_string();
    let out = r.all_output();
    assert!(
        out.contains(&format!("127.0.0.1:{port}")) && out.contains("without progress"),
        "the error names the source server and the give-up\n{r}"
    );
    assert!(
        r.elapsed < Duration::from_secs(40),
        "took {:?}\n{r}",
        r.elapsed
    );
    let rep = report(&s);
    assert_eq!(rep["accounts"][0]["status"], "failed", "{rep:#}");
    assert_eq!(rep["accounts"][0]["copied"], 0, "{rep:#}");
    before.assert_unchanged(&s.src("alice").snapshot());
}

#[test]
fn destination_stalled_once_times_out_reconnects_and_finishes() {
    let (mut s, before, bytes) = filled_scenario("[limits]\nidle-timeout = \"2s\"\n");
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::stall_after(Direction::ClientToServer, bytes / 3).times(1))
        .start();
    s.set_port(Side::Destination, proxy.port());
    let r = run_bounded(&s, APPLY, Duration::from_secs(60));
    assert_eq!(proxy.fired(), 1, "the stall never happened\n{r}");
    assert_eq!(r.status, 0, "{r}");
    assert!(
        r.elapsed < Duration::from_secs(30),
        "took {:?}\n{r}",
        r.elapsed
    );
    assert_copied_exactly_once(&s, &before, &r);
}

#[test]
fn destination_stalled_on_every_connection_fails_with_a_timeout_naming_the_server() {
    let (mut s, before, _) =
        filled_scenario("[limits]\nidle-timeout = \"1s\"\nconnect-timeout = \"1s\"\n");
    // Every APPEND stalls: no progress is possible, so the stalls (caught by the idle
    // timeout) use up the retry budget.
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::stall_at_every(
            Direction::ClientToServer,
            b" APPEND ",
        ))
        .start();
    s.set_port(Side::Destination, proxy.port());
    let r = run_bounded(&s, APPLY, Duration::from_secs(60));
    assert!(proxy.fired() >= 1, "the stall never happened\n{r}");
    assert_eq!(r.status, 1, "{r}");
    assert!(
        r.elapsed < Duration::from_secs(50),
        "took {:?}\n{r}",
        r.elapsed
    );
    let out = r.all_output();
    assert!(
        out.contains(&format!("`127.0.0.1:{}`", proxy.port())) && out.contains("within 1s"),
        "a timeout error naming the destination server\n{r}"
    );
    let rep = report(&s);
    assert_ne!(rep["accounts"][0]["status"], "done", "{rep:#}");
    // What did arrive is there once: nothing doubled by the retries.
    let dst = multiset(&mut s.dst("alice"), "INBOX");
    let src = multiset(&mut s.src("alice"), "INBOX");
    let mut left = src.clone();
    for m in &dst {
        let i = left
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("a destination message is doubled or foreign\n{r}"));
        left.remove(i);
    }
    before.assert_unchanged(&s.src("alice").snapshot());
}

#[test]
fn plan_with_the_source_cut_mid_inventory_fails_that_account_only() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .account("bob");
    s.src("alice").append_many("INBOX", &folder_messages());
    let few: Vec<NewMessage> = (0..3)
        .map(|_| NewMessage::new(MessageBuilder::new().build()))
        .collect();
    s.src("bob").append_many("INBOX", &few);
    // alice's header FETCH is ~150 kB; bob's whole session a few kB.
    let mut s = s;
    let proxy = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::cut_after(Direction::ServerToClient, 40_000))
        .start();
    s.set_port(Side::Source, proxy.port());
    let r = run_bounded(&s, &["plan", "--format", "json"], Duration::from_secs(30));
    assert!(proxy.fired() >= 1, "the cut never happened\n{r}");
    assert_eq!(r.status, 1, "{r}");
    let plan = r.json();
    let account = |name: &str| {
        let user = &s.acct(name).source_user;
        plan["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["source_user"] == user.as_str())
            .unwrap_or_else(|| panic!("no account {user} in the plan\n{r}"))
            .clone()
    };
    let alice = account("alice");
    let error = alice["error"].as_str().unwrap_or_else(|| {
        panic!("alice's inventory was cut, yet the plan has no error for her:\n{alice:#}")
    });
    assert!(
        error.contains(&format!("127.0.0.1:{}", proxy.port())),
        "the error names the server: {error}"
    );
    assert_eq!(alice["summary"]["messages_to_copy"], 0, "{alice:#}");
    let bob = account("bob");
    assert!(bob["error"].is_null(), "{bob:#}");
    assert_eq!(bob["summary"]["messages_to_copy"], 3, "{bob:#}");
    assert_eq!(
        plan["summary"]["messages_to_copy"], 3,
        "only bob's messages count"
    );

    // The text form never says `No changes.` for it.
    let r = run_bounded(&s, &["plan"], Duration::from_secs(30));
    assert_eq!(r.status, 1, "{r}");
    assert!(r.stdout.contains("error:"), "{r}");
    assert!(r.last_line().starts_with("Plan: "), "{r}");
}

// ---------------------------------------------------------------------------------------
// A scripted hostile IMAP server, for quirks Dovecot never shows.

/// How the scripted server misbehaves for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quirk {
    /// INBOX with three messages, answered correctly.
    Honest,
    /// EXAMINE answers without `[UIDVALIDITY n]`.
    NoUidValidity,
    /// `* 3 EXISTS`, but the FETCH returns one message and a tagged OK.
    ShortFetch,
    /// No NAMESPACE (the server never offers it); `.`-separated folders under `INBOX.`
    /// (Courier, Cyrus), `INBOX.Sent` without a special-use attribute.
    InboxPrefix,
}

/// A plain-text IMAP server on loopback that answers from a script. It never offers
/// NAMESPACE, SPECIAL-USE or anything else beyond IMAP4rev1 + AUTH=PLAIN. Which [`Quirk`]
/// applies is chosen by a substring of the login name.
struct Hostile {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Hostile {
    fn start(quirks: Vec<(String, Quirk)>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let quirks = quirks.clone();
                        thread::spawn(move || {
                            let _ = serve(stream, &quirks);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hostile { port, stop }
    }
}

/// The folders (wire name, delimiter, messages) a quirk's user has.
fn folders(quirk: Quirk) -> Vec<(&'static str, char, u32)> {
    match quirk {
        Quirk::InboxPrefix => vec![
            ("INBOX", '.', 0),
            ("INBOX.Sent", '.', 1),
            ("INBOX.Projects", '.', 2),
        ],
        _ => vec![("INBOX", '/', 3)],
    }
}

fn serve(stream: TcpStream, quirks: &[(String, Quirk)]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hostile test server ready\r\n")?;
    let mut quirk = Quirk::Honest;
    let mut selected: Option<(&str, u32)> = None;
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let (command, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut reply: Vec<u8> = Vec::new();
        let mut say = |s: &str| {
            reply.extend_from_slice(s.as_bytes());
            reply.extend_from_slice(b"\r\n");
        };
        match command.to_ascii_uppercase().as_str() {
            "AUTHENTICATE" => {
                out.write_all(b"+ \r\n")?;
                let mut response = String::new();
                lines.read_line(&mut response)?;
                // Good enough for a test: the user name is in the base64 SASL message,
                // so decode just enough to find a quirk's marker in it.
                let plain = base64_decode(response.trim());
                quirk = quirks
                    .iter()
                    .find(|(marker, _)| plain.contains(marker.as_str()))
                    .map(|(_, q)| *q)
                    .unwrap_or(Quirk::Honest);
                say(&format!("{tag} OK [CAPABILITY IMAP4rev1] logged in"));
            }
            "CAPABILITY" => {
                say("* CAPABILITY IMAP4rev1 AUTH=PLAIN");
                say(&format!("{tag} OK done"));
            }
            "LIST" => {
                for (name, delim, _) in folders(quirk) {
                    say(&format!("* LIST (\\HasNoChildren) \"{delim}\" {name}"));
                }
                say(&format!("{tag} OK done"));
            }
            "LSUB" => say(&format!("{tag} OK done")),
            "EXAMINE" => {
                let name = args.trim_matches('"');
                match folders(quirk).into_iter().find(|(n, _, _)| *n == name) {
                    Some((name, _, exists)) => {
                        say(&format!("* {exists} EXISTS"));
                        if quirk != Quirk::NoUidValidity {
                            say("* OK [UIDVALIDITY 1700000000] ok");
                        }
                        say(&format!("* OK [UIDNEXT {}] ok", exists + 1));
                        say(&format!("{tag} OK [READ-ONLY] examined"));
                        selected = Some((name, exists));
                    }
                    None => say(&format!("{tag} NO no such folder")),
                }
            }
            "UID" => {
                let (name, exists) = selected.unwrap_or(("", 0));
                let sent = if quirk == Quirk::ShortFetch {
                    1
                } else {
                    exists
                };
                for uid in 1..=sent {
                    let header = format!(
                        "Message-ID: <{uid}.{name}@hostile.test>\r\nFrom: a@hostile.test\r\n\
                         Subject: message {uid} of {name}\r\n\r\n"
                    );
                    say(&format!(
                        "* {uid} FETCH (UID {uid} FLAGS (\\Seen) INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" \
                         RFC822.SIZE {} BODY[HEADER.FIELDS (MESSAGE-ID DATE FROM TO CC SUBJECT)] {{{}}}\r\n{header})",
                        header.len() + 10,
                        header.len()
                    ));
                }
                say(&format!("{tag} OK fetched"));
            }
            "LOGOUT" => {
                say("* BYE bye");
                say(&format!("{tag} OK bye"));
                out.write_all(&reply)?;
                return Ok(());
            }
            _ => say(&format!("{tag} BAD not in the script")),
        }
        out.write_all(&reply)?;
    }
}

/// Standard base64, enough for a SASL PLAIN message.
fn base64_decode(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
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

/// A scenario whose source is the scripted server (a real Dovecot only creates the users),
/// with accounts `honest` and `name`.
fn hostile_scenario(name: &str, quirk: Quirk) -> (Scenario, Hostile) {
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("honest")
        .account(name);
    let hostile = Hostile::start(vec![(name.to_string(), quirk)]);
    s.set_port(Side::Source, hostile.port);
    (s, hostile)
}

/// The plan JSON's account for the scenario account `name`.
fn plan_account(s: &Scenario, plan: &serde_json::Value, name: &str) -> serde_json::Value {
    let user = s.acct(name).source_user.as_str();
    plan["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source_user"] == user)
        .unwrap_or_else(|| panic!("no account {user} in {plan:#}"))
        .clone()
}

#[test]
fn hostile_examine_without_uidvalidity_fails_that_account() {
    let (s, _server) = hostile_scenario("nouidvalidity", Quirk::NoUidValidity);
    let r = run_bounded(&s, &["plan", "--format", "json"], Duration::from_secs(30));
    assert_eq!(r.status, 1, "{r}");
    let plan = r.json();
    let bad = plan_account(&s, &plan, "nouidvalidity");
    let error = bad["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {bad:#}"));
    assert!(error.contains("UIDVALIDITY"), "{error}");
    assert!(
        error.contains("INBOX"),
        "the error names the folder: {error}"
    );
    let honest = plan_account(&s, &plan, "honest");
    assert!(honest["error"].is_null(), "{honest:#}");
    assert_eq!(honest["summary"]["messages_to_copy"], 3, "{honest:#}");
}

#[test]
fn hostile_fetch_shorter_than_exists_is_an_error_not_an_empty_folder() {
    let (s, _server) = hostile_scenario("shortfetch", Quirk::ShortFetch);
    let r = run_bounded(&s, &["plan", "--format", "json"], Duration::from_secs(30));
    assert_eq!(r.status, 1, "{r}");
    let plan = r.json();
    let bad = plan_account(&s, &plan, "shortfetch");
    let error = bad["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {bad:#}"));
    assert!(error.contains("1 of 3"), "{error}");
    assert_eq!(
        plan["summary"]["messages_to_copy"], 3,
        "only the honest account counts"
    );
    // And in text, never `No changes.`
    let r = run_bounded(&s, &["plan"], Duration::from_secs(30));
    assert_eq!(r.status, 1, "{r}");
    assert!(r.last_line().starts_with("Plan: "), "{r}");
}

#[test]
fn hostile_without_namespace_gets_its_inbox_prefix_guessed() {
    let (s, _server) = hostile_scenario("courier", Quirk::InboxPrefix);
    let r = run_bounded(&s, &["plan", "--format", "json"], Duration::from_secs(30));
    assert_eq!(r.status, 0, "{r}");
    let plan = r.json();
    let acct = plan_account(&s, &plan, "courier");
    assert!(acct["error"].is_null(), "{acct:#}");
    let target = |wire: &str| -> String {
        acct["folders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| {
                f["sources"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x["wire_name"] == wire))
            })
            .unwrap_or_else(|| panic!("no folder plan for `{wire}`: {acct:#}"))["destination"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Without the guessed prefix these would be `INBOX/Sent` and `INBOX/Projects`.
    assert_eq!(target("INBOX.Sent"), "Sent");
    assert_eq!(target("INBOX.Projects"), "Projects");
    assert_eq!(target("INBOX"), "INBOX");
    assert_eq!(acct["summary"]["messages_to_copy"], 3, "{acct:#}");
}
