//! Final passes after cutover (issue 8, ARCHITECTURE.md "After cutover"): what people did in
//! the new mailbox stays done. Mail they filed into another folder is not copied back,
//! mail they deleted is not copied again (the ledger), unless the config says so; a lost
//! state directory restores, never loses. The destination is read back with the test's
//! own IMAP client, and the source is proved unchanged.

use std::collections::BTreeMap;

use crate::apply_cli::{apply_ok, assert_bodies, multiset, small_messages};
use crate::scenario::{plan_line, rfc822_sizes, squash, CmdResult, Scenario};
use crate::support::{Layout, NewMessage, RawImap};

const NO_CHANGES: &str = "No changes. The destination has every message.";

/// The line of an account block that starts with `prefix` (whitespace squashed).
fn block_line(r: &CmdResult, prefix: &str) -> Option<String> {
    r.stdout.lines().map(squash).find(|l| l.starts_with(prefix))
}

/// Bodies of `msgs` minus those at `skip` indexes.
fn bodies_except(msgs: &[NewMessage], skip: &[usize]) -> BTreeMap<Vec<u8>, usize> {
    let kept: Vec<NewMessage> = msgs
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(_, m)| m.clone())
        .collect();
    multiset(&kept)
}

fn add(a: &mut BTreeMap<Vec<u8>, usize>, b: &BTreeMap<Vec<u8>, usize>) {
    for (k, n) in b {
        *a.entry(k.clone()).or_insert(0) += n;
    }
}

/// UID MOVE with the test's own client (Dovecot has MOVE).
fn move_uids(imap: &mut RawImap, from: &str, uids: &str, to: &str) {
    let r = imap.raw_command(&format!("SELECT {}", crate::support::quote(from)));
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    let r = imap.raw_command(&format!("UID MOVE {uids} {}", crate::support::quote(to)));
    assert!(r.last().unwrap().contains(" OK "), "{r:?}");
    imap.raw_command("UNSELECT");
}

#[track_caller]
fn plan_ok(s: &Scenario) -> CmdResult {
    let r = s.run(&["plan"]);
    assert_eq!(r.status, 0, "{r}");
    r
}

#[track_caller]
fn assert_no_changes(s: &Scenario) {
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.status, 0, "nothing left to do\n{r}");
    assert_eq!(r.last_line(), NO_CHANGES, "{r}");
}

#[test]
fn moved_and_deleted_on_the_destination_stay_so_unless_configured() {
    let mut s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let tag = crate::support::unique_user("cut");
    let first = small_messages(100, &format!("{tag}-a"));
    let mut src = s.src("alice");
    src.append_many("INBOX", &first);
    apply_ok(&s, &[], 100);

    // The user, on the new server: files 20 into a folder, deletes 10.
    let mut dst = s.dst("alice");
    dst.create("Filed");
    let uids: Vec<u32> = dst.fetch_all("INBOX").iter().map(|m| m.uid).collect();
    assert_eq!(uids.len(), 100);
    move_uids(
        &mut dst,
        "INBOX",
        &format!("{}:{}", uids[0], uids[19]),
        "Filed",
    );
    dst.expunge("INBOX", &uids[20..30]);
    // Meanwhile 30 more arrive at the source.
    let later = small_messages(30, &format!("{tag}-b"));
    src.append_many("INBOX", &later);
    let src_before = src.snapshot();

    let r = plan_ok(&s);
    let sizes = rfc822_sizes(&mut src, "INBOX");
    let new_bytes: u64 = sizes
        .iter()
        .filter(|(uid, _)| **uid > 100)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(r.last_line(), plan_line(0, 30, new_bytes, 90, 10), "{r}");
    assert_eq!(
        block_line(&r, "moved on the destination:").as_deref(),
        Some("moved on the destination: 20"),
        "{r}"
    );
    assert_eq!(
        block_line(&r, "deleted on the destination:").as_deref(),
        Some("deleted on the destination: 10"),
        "{r}"
    );
    // The reason is in JSON, per skipped message.
    let json = s.run(&["plan", "--format", "json"]).json();
    let account = &json["accounts"][0];
    assert_eq!(account["summary"]["moved_on_destination"], 20, "{json:#}");
    assert_eq!(account["summary"]["deleted_on_destination"], 10, "{json:#}");
    let reasons: Vec<&str> = account["folders"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["skipped"].as_array().unwrap())
        .map(|m| m["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, vec!["deleted-on-destination"; 10], "{json:#}");

    apply_ok(&s, &[], 30);
    let mut inbox = bodies_except(&first, &(0..30).collect::<Vec<_>>());
    add(&mut inbox, &multiset(&later));
    assert_bodies(
        &inbox,
        &dst.fetch_all("INBOX"),
        "INBOX after the final pass",
    );
    assert_bodies(
        &multiset(&first[..20]),
        &dst.fetch_all("Filed"),
        "Filed is left alone",
    );
    assert_no_changes(&s);

    // `deleted-on-destination = "restore"`: the 10 come back.
    s.add_config("[messages]\ndeleted-on-destination = \"restore\"\n");
    apply_ok(&s, &[], 10);
    add(&mut inbox, &multiset(&first[20..30]));
    assert_bodies(&inbox, &dst.fetch_all("INBOX"), "INBOX after restore");
    assert_no_changes(&s);

    // `moved-on-destination = "copy"`: the 20 filed ones are copied into INBOX again.
    s.add_config("moved-on-destination = \"copy\"\n");
    apply_ok(&s, &[], 20);
    add(&mut inbox, &multiset(&first[..20]));
    assert_bodies(&inbox, &dst.fetch_all("INBOX"), "INBOX after moved = copy");
    assert_no_changes(&s);

    src_before.assert_unchanged(&src.snapshot());
}

#[test]
fn a_lost_state_directory_restores_deleted_mail_and_says_so() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Classic)
        .account("bob");
    let tag = crate::support::unique_user("lost");
    let msgs = small_messages(20, &tag);
    let mut src = s.src("bob");
    src.append_many("INBOX", &msgs);
    let src_before = src.snapshot();
    // No ledger yet and nothing on the destination: nothing to say about deletions.
    let r = plan_ok(&s);
    assert_eq!(block_line(&r, "deleted on the destination"), None, "{r}");
    apply_ok(&s, &[], 20);
    let ledger_dir = s.path(".mailshift/ledger");
    assert_eq!(
        std::fs::read_dir(&ledger_dir).map(|d| d.count()).ok(),
        Some(1),
        "one ledger file for the one destination account"
    );

    let mut dst = s.dst("bob");
    let uids: Vec<u32> = dst.fetch_all("INBOX").iter().map(|m| m.uid).collect();
    dst.expunge("INBOX", &uids[..5]);
    let r = plan_ok(&s);
    assert_eq!(r.last_line(), NO_CHANGES, "{r}");
    assert_eq!(
        block_line(&r, "deleted on the destination:").as_deref(),
        Some("deleted on the destination: 5"),
        "{r}"
    );
    // `plan` never writes the ledger.
    let before: Vec<u8> = ledger_bytes(&s);
    plan_ok(&s);
    assert_eq!(ledger_bytes(&s), before);

    std::fs::remove_dir_all(s.path(".mailshift")).unwrap();
    let r = plan_ok(&s);
    assert!(
        r.stdout.contains("deleted on the destination: not known"),
        "the plan says nothing is known about deletions\n{r}"
    );
    let sizes = rfc822_sizes(&mut src, "INBOX");
    let lost: u64 = sizes.values().take(5).sum();
    assert_eq!(r.last_line(), plan_line(0, 5, lost, 15, 0), "{r}");
    apply_ok(&s, &[], 5);
    assert_bodies(&multiset(&msgs), &dst.fetch_all("INBOX"), "all 20 back");
    assert_no_changes(&s);
    src_before.assert_unchanged(&src.snapshot());
}

fn ledger_bytes(s: &Scenario) -> Vec<u8> {
    let dir = s.path(".mailshift/ledger");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .expect("a ledger file")
        .unwrap()
        .path();
    std::fs::read(file).unwrap()
}

fn message(tag: &str, i: &str) -> NewMessage {
    NewMessage::new(
        crate::support::MessageBuilder::new()
            .subject(&format!("{tag} {i}"))
            .message_id(Some(&format!("<{tag}-{i}@gmail.test>")))
            .build(),
    )
}

#[test]
fn mail_only_in_gmail_all_mail_arrives_in_archive_exactly_once() {
    let all_mail = "[Gmail]/All Mail";
    let mut s = Scenario::new()
        .source_with(
            crate::support::Dovecot::builder()
                .layout(Layout::Modern)
                .special_folders(&[
                    ("Sent", Some("\\Sent")),
                    ("Trash", Some("\\Trash")),
                    (all_mail, Some("\\All")),
                ]),
        )
        .destination(Layout::Classic)
        .account("gina");
    let tag = crate::support::unique_user("gm");
    let inbox: Vec<NewMessage> = (1..=5).map(|i| message(&tag, &format!("in{i}"))).collect();
    let sent: Vec<NewMessage> = (1..=2).map(|i| message(&tag, &format!("s{i}"))).collect();
    let work = vec![message(&tag, "w1")];
    let archived: Vec<NewMessage> = (1..=6).map(|i| message(&tag, &format!("ar{i}"))).collect();
    let mut src = s.src("gina");
    src.create("Work");
    src.append_many("INBOX", &inbox);
    src.append_many("Sent", &sent);
    src.append_many("Work", &work);
    // All Mail: a copy of everything (as Gmail shows it) plus the archived-only mail.
    for part in [&inbox, &sent, &work, &archived] {
        src.append_many(all_mail, part);
    }
    let src_before = src.snapshot();

    // "skip": listed, not copied.
    s.set_config("[folders]\nview-only-messages = \"skip\"");
    let r = plan_ok(&s);
    assert!(
        r.stdout.contains(
            "not migrated: a view (\\All), not storage; 6 messages found only there not copied"
        ),
        "{r}"
    );
    let sizes =
        |folder: &str, src: &mut RawImap| -> u64 { rfc822_sizes(src, folder).values().sum() };
    let labelled = sizes("INBOX", &mut src) + sizes("Sent", &mut src) + sizes("Work", &mut src);
    // Folders to create on the classic destination: Work.
    assert_eq!(r.last_line(), plan_line(1, 8, labelled, 0, 0), "{r}");

    // "archive" (the default): the 6 go to Archive, created.
    s.set_config("");
    let r = plan_ok(&s);
    assert!(
        r.stdout
            .lines()
            .map(squash)
            .any(|l| l.starts_with(&format!("+ Archive ← {all_mail} (only there: 6)"))),
        "{r}"
    );
    let all_sizes = rfc822_sizes(&mut src, all_mail);
    let archived_bytes: u64 = all_sizes.values().rev().take(6).sum();
    assert_eq!(
        r.last_line(),
        plan_line(2, 14, labelled + archived_bytes, 0, 0),
        "{r}"
    );
    apply_ok(&s, &[], 14);
    let mut dst = s.dst("gina");
    assert_bodies(
        &multiset(&archived),
        &dst.fetch_all("INBOX.Archive"),
        "Archive",
    );
    assert_bodies(&multiset(&inbox), &dst.fetch_all("INBOX"), "INBOX");
    assert_bodies(&multiset(&work), &dst.fetch_all("INBOX.Work"), "Work");
    assert_bodies(&multiset(&sent), &dst.fetch_all("INBOX.Sent Items"), "Sent");
    assert_no_changes(&s);
    src_before.assert_unchanged(&src.snapshot());
}

#[test]
fn a_folder_differing_only_in_case_is_used_never_doubled() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination_with(
            crate::support::Dovecot::builder()
                .layout(Layout::Classic)
                .special_folders(&[]),
        )
        .account("cara");
    let tag = crate::support::unique_user("case");
    let archived: Vec<NewMessage> = (1..=3).map(|i| message(&tag, &format!("a{i}"))).collect();
    let projects: Vec<NewMessage> = (1..=2).map(|i| message(&tag, &format!("p{i}"))).collect();
    let mut src = s.src("cara");
    src.create("Projects");
    src.append_many("Archive", &archived);
    src.append_many("Projects", &projects);
    let src_before = src.snapshot();
    let mut dst = s.dst("cara");
    dst.create("INBOX.archive");
    dst.create("INBOX.projects");

    let r = plan_ok(&s);
    assert!(
        r.stdout
            .lines()
            .map(squash)
            .any(|l| l.starts_with("= projects ← Projects (case")),
        "{r}"
    );
    apply_ok(&s, &[], 5);
    assert_bodies(
        &multiset(&archived),
        &dst.fetch_all("INBOX.archive"),
        "archive",
    );
    assert_bodies(
        &multiset(&projects),
        &dst.fetch_all("INBOX.projects"),
        "projects",
    );
    let names: Vec<String> = dst.list().into_iter().map(|(_, _, n)| n).collect();
    for doubled in ["INBOX.Archive", "INBOX.Projects"] {
        assert!(
            !names.iter().any(|n| n == doubled),
            "{doubled} created: {names:?}"
        );
    }
    assert_no_changes(&s);
    src_before.assert_unchanged(&src.snapshot());
}

const QUOTA_CONFIG: &str = "mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins quota imap_quota
  imap_capability = +APPENDLIMIT=204800
}
plugin {
  quota = count:User quota
  quota_rule = *:storage=1M
  quota_max_mail_size = 200k
  quota_vsizes = yes
}";

#[test]
fn appendlimit_and_quota_are_known_before_copying_and_stop_the_account() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination_with(
            crate::support::Dovecot::builder()
                .layout(Layout::Modern)
                .extra_config(QUOTA_CONFIG),
        )
        .account("quinn");
    let tag = crate::support::unique_user("quota");
    let fits: Vec<NewMessage> = (0..12)
        .map(|i| {
            NewMessage::new(
                crate::support::MessageBuilder::new()
                    .subject(&format!("{tag} {i}"))
                    .pad_to(100_000)
                    .build(),
            )
        })
        .collect();
    let huge = NewMessage::new(
        crate::support::MessageBuilder::new()
            .subject(&format!("{tag} huge"))
            .pad_to(250_000)
            .build(),
    );
    let mut src = s.src("quinn");
    src.append_many("INBOX", &fits);
    src.append_many("INBOX", std::slice::from_ref(&huge));
    let src_before = src.snapshot();

    let r = plan_ok(&s);
    let sizes = rfc822_sizes(&mut src, "INBOX");
    let fit_bytes: u64 = sizes.values().take(12).sum();
    assert_eq!(r.last_line(), plan_line(0, 12, fit_bytes, 0, 1), "{r}");
    assert!(
        r.stdout.contains("1 over the destination's APPENDLIMIT"),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("destination storage: 1.0 MiB free of 1.0 MiB (quota)"),
        "{r}"
    );
    assert!(r.stdout.contains("  over quota: the copy needs"), "{r}");
    let json = s.run(&["plan", "--format", "json"]).json();
    assert_eq!(json["accounts"][0]["quota"]["over_quota"], true, "{json:#}");

    let (run, report) = crate::apply_cli::apply(&s, &[]);
    assert_eq!(run.status, 1, "{run}");
    let account = &report["accounts"][0];
    let error = account["error"].as_str().unwrap_or_default();
    assert!(error.contains("over its quota"), "{report:#}");
    assert!(
        error.contains("OVERQUOTA"),
        "the server's words: {report:#}"
    );
    // What arrived is a subset of the source, each message once.
    let mut dst = s.dst("quinn");
    let arrived = dst.fetch_all("INBOX");
    assert!(
        !arrived.is_empty() && arrived.len() < 12,
        "{}",
        arrived.len()
    );
    let want = multiset(&fits);
    let mut seen = BTreeMap::new();
    for m in &arrived {
        *seen.entry(m.body.clone()).or_insert(0) += 1;
    }
    for (body, n) in &seen {
        assert_eq!(*n, 1, "copied twice");
        assert!(want.contains_key(body), "not a source message");
    }
    src_before.assert_unchanged(&src.snapshot());
}

#[test]
fn keywords_are_kept_by_a_destination_that_under_reports_permanentflags() {
    use crate::support::{Direction, FaultProxy};
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("kim");
    let tag = crate::support::unique_user("kw");
    let msgs: Vec<NewMessage> = (1..=3)
        .map(|i| message(&tag, &format!("k{i}")).flags(&["\\Seen", "$Label1", "Project-X"]))
        .collect();
    let mut src = s.src("kim");
    src.append_many("INBOX", &msgs);
    let src_before = src.snapshot();
    // Dovecot says `\*` (any keyword may be created); the proxy hides it, as pymap and some
    // Exchange versions do, while the server still stores keywords on APPEND.
    let proxy = FaultProxy::to(s.port(crate::scenario::Side::Destination))
        .rewrite(Direction::ServerToClient, b" \\*)]", b")]   ")
        .start();
    s.set_port(crate::scenario::Side::Destination, proxy.port());
    let report = apply_ok(&s, &[], 3);
    assert_eq!(report["accounts"][0]["keywords_dropped"], 0, "{report:#}");
    let mut dst = s.dst("kim");
    let copied = dst.fetch_all("INBOX");
    assert_eq!(copied.len(), 3);
    for m in &copied {
        for keyword in ["$Label1", "Project-X", "\\Seen"] {
            assert!(
                m.flags.iter().any(|f| f == keyword),
                "`{keyword}` kept: {:?}",
                m.flags
            );
        }
    }
    src_before.assert_unchanged(&src.snapshot());
}

/// Dovecot 2.3 advertises a bare `APPENDLIMIT` (limits per folder, RFC 7889) when told to,
/// but refuses `STATUS … (APPENDLIMIT)` with BAD.
const PER_FOLDER_APPENDLIMIT: &str = "protocol imap {\n  imap_capability = +APPENDLIMIT\n}";

/// What a server with per-folder limits answers to `STATUS name (APPENDLIMIT)`: 50,000
/// bytes for `Small`, no limit (`NIL`) elsewhere. Other lines are forwarded to Dovecot.
fn status_appendlimit(line: &[u8]) -> Option<Vec<u8>> {
    let line = std::str::from_utf8(line).ok()?.strip_suffix("\r\n")?;
    let (tag, rest) = line.split_once(' ')?;
    let name = rest
        .strip_prefix("STATUS ")?
        .strip_suffix(" (APPENDLIMIT)")?;
    let limit = if name.trim_matches('"') == "Small" {
        "50000"
    } else {
        "NIL"
    };
    Some(
        format!("* STATUS {name} (APPENDLIMIT {limit})\r\n{tag} OK Status completed.\r\n")
            .into_bytes(),
    )
}

#[test]
fn a_folders_own_appendlimit_is_read_with_status_and_skips_before_copying() {
    use crate::scenario::Side;
    use crate::support::FaultProxy;
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination_with(
            crate::support::Dovecot::builder()
                .layout(Layout::Modern)
                .extra_config(PER_FOLDER_APPENDLIMIT),
        )
        .account("lena");
    let tag = crate::support::unique_user("limit");
    let sized = |i: &str, size: usize| {
        NewMessage::new(
            crate::support::MessageBuilder::new()
                .subject(&format!("{tag} {i}"))
                .pad_to(size)
                .build(),
        )
    };
    let inbox = [sized("inbox big", 100_000), sized("inbox small", 2_000)];
    let small = [sized("small big", 100_000), sized("small fits", 2_000)];
    let mut src = s.src("lena");
    src.create("Small");
    src.append_many("INBOX", &inbox);
    src.append_many("Small", &small);
    let src_before = src.snapshot();
    let mut dst = s.dst("lena");
    dst.create("Small");
    // Dovecot 2.3 cannot say a folder's own limit: the proxy answers the STATUS for it.
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .answer(status_appendlimit)
        .start();
    s.set_port(Side::Destination, proxy.port());

    let r = plan_ok(&s);
    assert!(
        proxy.answered() >= 2,
        "STATUS (APPENDLIMIT) was never asked"
    );
    assert!(
        block_line(&r, "skipped in Small:")
            .is_some_and(|l| l.contains("1 over the destination's APPENDLIMIT")),
        "{r}"
    );
    assert!(
        r.last_line()
            .starts_with("Plan: 0 folders to create, 3 messages"),
        "{r}"
    );
    assert!(
        r.last_line().ends_with("0 already present, 1 skipped."),
        "{r}"
    );
    let json = s.run(&["plan", "--format", "json"]).json();
    let folder = |name: &str| {
        json["accounts"][0]["folders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["destination"] == name)
            .unwrap_or_else(|| panic!("no `{name}` in {json:#}"))
            .clone()
    };
    assert_eq!(folder("Small")["skipped"][0]["reason"], "over-append-limit");
    assert_eq!(folder("INBOX")["skipped"].as_array().map(Vec::len), Some(0));

    apply_ok(&s, &[], 3);
    // Read back from Dovecot itself, past the proxy.
    let lena = s.acct("lena");
    let mut dst = RawImap::login(
        s.destination_dovecot().port(),
        &lena.destination_user,
        &lena.destination_password,
    );
    assert_bodies(&multiset(&inbox), &dst.fetch_all("INBOX"), "INBOX");
    assert_bodies(&multiset(&small[1..]), &dst.fetch_all("Small"), "Small");
    assert_no_changes(&s);
    src_before.assert_unchanged(&src.snapshot());
}

#[test]
fn a_destination_refusing_status_appendlimit_is_planned_without_per_folder_limits() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination_with(
            crate::support::Dovecot::builder()
                .layout(Layout::Modern)
                .extra_config(PER_FOLDER_APPENDLIMIT),
        )
        .account("mona");
    let msgs = small_messages(3, &crate::support::unique_user("nolimit"));
    let mut src = s.src("mona");
    src.append_many("INBOX", &msgs);
    let src_before = src.snapshot();
    let r = plan_ok(&s);
    assert!(
        r.last_line()
            .starts_with("Plan: 0 folders to create, 3 messages"),
        "{r}"
    );
    // Asked once, refused (BAD), not asked again on that connection: one warning.
    assert_eq!(
        r.stderr.matches("refuses STATUS (APPENDLIMIT)").count(),
        1,
        "{r}"
    );
    src_before.assert_unchanged(&src.snapshot());
}

#[test]
fn the_account_table_marks_an_account_over_quota() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination_with(
            crate::support::Dovecot::builder()
                .layout(Layout::Modern)
                .extra_config(QUOTA_CONFIG),
        )
        .account("quentin")
        .account("rita");
    let tag = crate::support::unique_user("table");
    let big: Vec<NewMessage> = (0..12)
        .map(|i| {
            NewMessage::new(
                crate::support::MessageBuilder::new()
                    .subject(&format!("{tag} {i}"))
                    .pad_to(100_000)
                    .build(),
            )
        })
        .collect();
    let mut quentin = s.src("quentin");
    quentin.append_many("INBOX", &big);
    let mut rita = s.src("rita");
    rita.append_many("INBOX", &small_messages(2, &tag));
    let before = (quentin.snapshot(), rita.snapshot());

    let r = plan_ok(&s);
    let row = |name: &str| {
        let user = &s.acct(name).source_user;
        r.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(user.as_str()) && !l.contains('→'))
            .map(|l| squash(l).trim().to_string())
            .unwrap_or_else(|| panic!("no table row for {user}\n{r}"))
    };
    assert!(row("quentin").ends_with(" over quota"), "{r}");
    assert!(row("rita").ends_with(" changes"), "{r}");
    before.0.assert_unchanged(&quentin.snapshot());
    before.1.assert_unchanged(&rita.snapshot());
}
