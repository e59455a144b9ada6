//! Pipelined steps that fail half-way (issue 7): one CREATE of a pipelined round refused,
//! the connection cut after some answers of a pipelined round (CREATE on the destination,
//! EXAMINE + FETCH of the inventory on the source). Whatever happened, a re-run leaves the
//! destination with every source message exactly once, checked with the test's own
//! client, and the source unchanged.

use std::collections::BTreeMap;

use crate::scenario::{CmdResult, Scenario, Side};
use crate::support::{
    Direction, Fault, FaultProxy, Layout, MailboxSnapshot, MessageBuilder, NewMessage, RawImap,
};

/// Source folders (classic wire names) and their message counts.
const FOLDERS: &[(&str, usize)] = &[
    ("INBOX", 3),
    ("INBOX.Alpha", 2),
    ("INBOX.Beta", 2),
    ("INBOX.Gamma", 2),
    ("INBOX.Zeta", 2),
];

/// A classic source with a few folders, an empty modern destination.
fn scenario() -> (Scenario, MailboxSnapshot) {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    for (folder, n) in FOLDERS {
        if *folder != "INBOX" {
            src.create(folder);
            src.subscribe(folder);
        }
        for i in 0..*n {
            let m = MessageBuilder::new()
                .subject(&format!("{folder} {i}"))
                .build();
            src.append(folder, &["\\Seen"], None, &m);
        }
    }
    let before = src.snapshot();
    (s, before)
}

/// Subjects per destination folder, by the test's own client.
fn destination_subjects(dst: &mut RawImap) -> BTreeMap<String, Vec<String>> {
    let snap = dst.snapshot();
    snap.folders
        .iter()
        .map(|(name, f)| {
            let mut subjects: Vec<String> = f
                .messages
                .iter()
                .map(|m| {
                    let text = String::from_utf8_lossy(&m.body).into_owned();
                    text.lines()
                        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
                        .unwrap_or_default()
                })
                .collect();
            subjects.sort();
            (name.clone(), subjects)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// Every source message exactly once in its mapped destination folder, the source
/// unchanged, and a new plan has nothing left to do.
#[track_caller]
fn assert_complete_once(s: &Scenario, before: &MailboxSnapshot) {
    let got = destination_subjects(&mut s.dst("alice"));
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (folder, n) in FOLDERS {
        let dst = folder.strip_prefix("INBOX.").unwrap_or(folder).to_string();
        let mut subjects: Vec<String> = (0..*n).map(|i| format!("{folder} {i}")).collect();
        subjects.sort();
        want.insert(dst, subjects);
    }
    assert_eq!(got, want, "lost or doubled on the destination");
    before.assert_unchanged(&s.src("alice").snapshot());
    let again = s.run(&["plan"]);
    assert_eq!(
        again.last_line(),
        "No changes. The destination has every message."
    );
}

/// `apply -v` through a proxy on `side` that injects `fault`: the fault fired once, the
/// run succeeded and [`assert_complete_once`] holds. Returns the run for more checks.
#[track_caller]
fn apply_through_one_fault(
    s: &mut Scenario,
    before: &MailboxSnapshot,
    side: Side,
    fault: Fault,
) -> CmdResult {
    let proxy = FaultProxy::to(s.port(side)).fault(fault).start();
    s.set_port(side, proxy.port());
    let r = s.run(&["apply", "--auto-approve", "-v"]);
    assert_eq!(proxy.fired(), 1, "the cut never happened\n{r}");
    assert_eq!(r.status, 0, "{r}");
    // The re-plan goes through the proxy too: its one fault is spent.
    assert_complete_once(s, before);
    r
}

#[test]
fn one_refused_create_in_a_pipelined_round_loses_and_doubles_nothing() {
    let (mut s, before) = scenario();
    // The destination sees `CREATE "~eta"` (an invalid name for Dovecot) instead of
    // `CREATE "Zeta"`: that one CREATE of the round is refused, the others succeed.
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .rewrite(
            Direction::ClientToServer,
            b"CREATE \"Zeta\"",
            b"CREATE \"~eta\"",
        )
        .start();
    s.set_port(Side::Destination, proxy.port());
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.status, 1, "the refused CREATE fails the account\n{r}");
    assert!(
        r.all_output().contains("CREATE"),
        "the error names the command\n{r}"
    );
    let mut dst = s.dst("alice");
    let names: Vec<String> = dst.list().into_iter().map(|(_, _, n)| n).collect();
    assert!(
        !names.iter().any(|n| n == "Zeta"),
        "the refused folder exists: {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "Alpha"),
        "the other CREATEs of the round went through: {names:?}"
    );
    // A folder whose CREATE failed is never subscribed; the created ones are.
    let subscribed = dst.list_subscribed();
    assert!(!subscribed.iter().any(|n| n == "Zeta"), "{subscribed:?}");
    assert!(subscribed.iter().any(|n| n == "Alpha"), "{subscribed:?}");
    // Nothing was appended before the folders were all there.
    assert!(destination_subjects(&mut dst).is_empty());
    before.assert_unchanged(&s.src("alice").snapshot());

    // Again, without the fault: complete, nothing twice.
    let port = s.destination_dovecot().port();
    s.set_port(Side::Destination, port);
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.status, 0, "{r}");
    assert_complete_once(&s, &before);
}

#[test]
fn a_connection_cut_after_some_create_answers_loses_and_doubles_nothing() {
    let (mut s, before) = scenario();
    // The first CREATE answer arrives, the second (tag `P2` of the writer's first
    // pipelined round) and those after it never do: the server may have made every folder.
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::cut_at(Direction::ServerToClient, b"P2 OK Create"))
        .start();
    s.set_port(Side::Destination, proxy.port());
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(proxy.fired(), 1, "the cut never happened\n{r}");
    // The session reconnects and sends again what had no answer; the folders the lost
    // round made are found there, and every message is copied once.
    assert_eq!(r.status, 0, "{r}");
    assert_complete_once(&s, &before);
    let subscribed = s.dst("alice").list_subscribed();
    for name in ["Alpha", "Beta", "Gamma", "Zeta"] {
        assert!(
            subscribed.iter().any(|n| n == name),
            "{name}: {subscribed:?}"
        );
    }
}

#[test]
fn a_source_cut_in_the_pipelined_inventory_is_read_again_never_short() {
    let (mut s, before) = scenario();
    // Cut after the answers to two EXAMINEs of the pipelined inventory round.
    let proxy = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::cut_at(Direction::ServerToClient, b"[READ-ONLY]").nth(3))
        .start();
    s.set_port(Side::Source, proxy.port());
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(proxy.fired(), 1, "the cut never happened\n{r}");
    // A cut inventory is never a short plan: the lost side is read again whole (issue 6:
    // a flaky link must not fail the account), and everything is copied once.
    assert!(
        r.stderr.contains("reading again"),
        "the inventory was not read again\n{r}"
    );
    assert_eq!(r.status, 0, "{r}");
    assert_complete_once(&s, &before);
}

#[test]
fn a_big_inventory_is_read_over_two_connections_and_is_complete() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    // 2,100 messages (over the 2,000 that pay for a second connection) in three folders.
    let mut total = 0;
    for (folder, n) in [("INBOX", 1_000), ("INBOX.Big", 700), ("INBOX.Small", 400)] {
        if folder != "INBOX" {
            src.create(folder);
        }
        let messages: Vec<NewMessage> = (0..n)
            .map(|i| {
                NewMessage::new(
                    MessageBuilder::new()
                        .subject(&format!("{folder} {i}"))
                        .build(),
                )
            })
            .collect();
        src.append_many(folder, &messages);
        total += n;
    }
    let before = src.snapshot();
    let r = s.run(&["plan", "--format", "json", "-vv"]);
    assert_eq!(r.status, 0, "{r}");
    assert!(
        r.stderr.contains("reading folders over 2 connection(s)"),
        "the source was read over one connection only\n{}",
        r.stderr
    );
    let doc = r.json();
    assert_eq!(
        doc["summary"]["messages_to_copy"].as_u64(),
        Some(total),
        "every message of every folder planned"
    );
    before.assert_unchanged(&src.snapshot());
}

#[test]
fn a_source_cut_in_a_folders_pipelined_examine_and_first_fetch_loses_and_doubles_nothing() {
    let (mut s, before) = scenario();
    // In the copy, a folder's EXAMINE and the FETCH of its first batch go in one round
    // (its answer holds `BODY[] {`; the inventory's holds `BODY[HEADER.FIELDS`): cut the
    // source connection after the first body of such a round, before the second.
    // The folder is opened again on a new connection and the batch read again: every
    // message arrives once, nothing read before the cut is appended twice.
    let cut = Fault::cut_at(Direction::ServerToClient, b"BODY[] {").nth(2);
    apply_through_one_fault(&mut s, &before, Side::Source, cut);
}

#[test]
fn a_destination_cut_in_a_pipelined_key_check_and_select_loses_and_doubles_nothing() {
    let (mut s, before) = scenario();
    // A lane's first batch is read back (the key stability check) in the same round as
    // the SELECT of its next folder; on the destination only these reads ask for the
    // identity headers. Cut the connection in the middle of the first such answer.
    // The session reconnects, selects the folder that was appended to again, reads the
    // keys back and selects the next one: every message once, the account done.
    let cut = Fault::cut_at(Direction::ServerToClient, b"BODY[HEADER.FIELDS (MESSAGE-ID");
    apply_through_one_fault(&mut s, &before, Side::Destination, cut);
}

/// [`scenario`] with one lane (one connection pair), so that the order of the copy is
/// the plan's: INBOX, Alpha, Beta, Gamma, Zeta. The first and the last batch get the key
/// stability check; the APPENDs of Alpha, Beta and Gamma carry the next folder's SELECT
/// behind them, and the next folder's EXAMINE and first FETCH run on the source meanwhile.
fn one_lane() -> (Scenario, MailboxSnapshot) {
    let (s, before) = scenario();
    (s.config("[limits]\nconnections-per-account = 1\n"), before)
}

#[test]
fn a_cut_after_an_append_with_the_next_select_behind_it_loses_and_doubles_nothing() {
    let (mut s, before) = one_lane();
    // Alpha's APPEND (the second of the run) and the SELECT of Beta behind it both reach
    // the server; the connection is cut before the client hears of either.
    let cut = Fault::cut_at(Direction::ServerToClient, b"[APPENDUID ").nth(2);
    let r = apply_through_one_fault(&mut s, &before, Side::Destination, cut);
    // Alpha is looked at again (on a new connection, Alpha selected, not Beta): its
    // messages are there and are not sent again; Beta is selected anew.
    assert!(
        r.stderr.contains("had arrived; not sending them again"),
        "the interrupted APPEND was not looked up\n{r}"
    );
}

#[test]
fn a_source_cut_while_the_next_folder_is_read_ahead_loses_and_doubles_nothing() {
    let (mut s, before) = one_lane();
    // INBOX's three bodies come with its EXAMINE; Alpha's two are read ahead while
    // INBOX's batch is appended: cut before Alpha's second body.
    let cut = Fault::cut_at(Direction::ServerToClient, b"BODY[] {").nth(5);
    apply_through_one_fault(&mut s, &before, Side::Source, cut);
}
