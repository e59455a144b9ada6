//! Modern logins, proven (issue 11 item 3): XOAUTH2 and OAUTHBEARER against real Dovecots
//! whose `oauth2` passdb checks every token at the test's own introspection endpoint
//! (tests/support/oauth.rs). The accounts CSV holds no passwords for those sides, so a
//! login can only succeed with a token. No output, log or file may contain a token.

use std::fs;
use std::time::Duration;

use crate::apply_cli::{
    assert_bodies, message_count, multiset, small_messages, Running, BIG_FOLDER,
};
use crate::scenario::{CmdResult, Scenario, Side};
use crate::support::{
    Direction, Dovecot, Fault, FaultProxy, Introspection, Layout, MessageBuilder, NewMessage,
};

/// Source (XOAUTH2, classic layout) and destination (OAUTHBEARER, modern) behind one
/// introspection endpoint, one account `alice` without passwords in the CSV.
fn oauth_scenario(idp: &Introspection, token_command: &str, tmpfs: bool) -> Scenario {
    let server = |layout| {
        Dovecot::builder()
            .layout(layout)
            .mail_on_tmpfs(tmpfs)
            .extra_config(&idp.dovecot_config())
            .start()
    };
    let mut s = Scenario::new()
        .source_server(server(Layout::Classic))
        .destination_server(server(Layout::Modern))
        .server_config(
            Side::Source,
            &format!(
                "auth = \"xoauth2\"\ntoken-command = {}",
                toml_string(token_command)
            ),
        )
        .server_config(
            Side::Destination,
            &format!(
                "auth = \"oauthbearer\"\ntoken-command = {}",
                toml_string(token_command)
            ),
        )
        .account("alice");
    s.set_csv_password(Side::Source, "alice", "");
    s.set_csv_password(Side::Destination, "alice", "");
    s
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// No token (nor its secret part) in stdout, stderr, or any file the runs left in the
/// scenario dir (log file, plan, report, state).
#[track_caller]
fn assert_no_token_anywhere(s: &Scenario, idp: &Introspection, runs: &[&CmdResult]) {
    for r in runs {
        assert!(
            !r.all_output().contains(idp.secret()) && !r.all_output().contains("mst."),
            "a token in the output\n{r}"
        );
    }
    let mut stack = vec![s.dir().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = fs::read(&path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            if path.ends_with("migration.toml") {
                continue; // the token-command itself names the test secret
            }
            assert!(
                !text.contains(idp.secret()),
                "a token in `{}`",
                path.display()
            );
        }
    }
}

fn some_messages(tag: &str) -> Vec<NewMessage> {
    (0..6)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("{tag} {i}"))
                    .pad_to(2_000 + i * 300)
                    .build(),
            )
            .flags(if i % 2 == 0 { &["\\Seen"] } else { &[] })
        })
        .collect()
}

#[test]
fn xoauth2_and_oauthbearer_migrate_end_to_end_and_no_token_is_shown() {
    let idp = Introspection::start(Duration::from_secs(600));
    let s = oauth_scenario(&idp, &idp.token_command(), false);
    let mut src = s.src("alice");
    let inbox = some_messages("oauth inbox");
    let work = some_messages("oauth work");
    src.create("INBOX.Work");
    src.append_many("INBOX", &inbox);
    src.append_many("INBOX.Work", &work);
    let src_before = src.snapshot();

    let check = s.run(&["check", "-vvv"]);
    assert_eq!(check.status, 0, "{check}");
    let plan = s.run(&["plan", "--out", "p.json", "-vvv"]);
    assert_eq!(plan.status, 0, "{plan}");
    let apply = s.run(&[
        "apply",
        "p.json",
        "--report",
        "r.json",
        "-vvv",
        "--log-file",
        "apply.log",
    ]);
    assert_eq!(apply.status, 0, "{apply}");
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(s.path("r.json")).unwrap()).unwrap();
    assert_eq!(report["accounts"][0]["copied"], 12, "{report:#}");

    // Checked independently: the tests' own client, with the users' passwords.
    let mut dst = s.dst("alice");
    assert_bodies(&multiset(&inbox), &dst.fetch_all("INBOX"), "INBOX");
    assert_bodies(&multiset(&work), &dst.fetch_all("Work"), "Work");
    src_before.assert_unchanged(&src.snapshot());

    // Both mechanisms went through the endpoint, for the right users.
    let checked = idp.checked();
    let a = s.acct("alice");
    for user in [&a.source_user, &a.destination_user] {
        assert!(
            checked.iter().any(|c| c.active && &c.user == user),
            "no accepted token for `{user}`: {checked:?}"
        );
    }
    assert!(checked.iter().all(|c| c.active), "{checked:?}");
    // Trace level really was on (or the check below proves little).
    let log = fs::read_to_string(s.path("apply.log")).unwrap();
    assert!(
        log.contains("TRACE") || apply.stderr.contains("TRACE"),
        "{apply}"
    );
    assert_no_token_anywhere(&s, &idp, &[&check, &plan, &apply]);
}

#[test]
fn a_refused_token_is_a_clear_login_error_with_a_hint() {
    let idp = Introspection::start(Duration::from_secs(600));
    // Right format, wrong signature: the endpoint answers `active: false`.
    let s = oauth_scenario(&idp, "printf 'mst.%s.1.not-the-secret' {user}", false);
    let r = s.run(&["check", "-vvv"]);
    assert_eq!(r.status, 1, "{r}");
    let a = s.acct("alice");
    let out = r.all_output();
    for (user, port) in [
        (&a.source_user, s.port(Side::Source)),
        (&a.destination_user, s.port(Side::Destination)),
    ] {
        assert!(
            out.contains(&format!("login as `{user}` on `127.0.0.1:{port}` failed:")),
            "{r}"
        );
    }
    assert!(out.contains("AUTHENTICATIONFAILED"), "{r}");
    assert!(
        out.contains("hint: the token from `token-command` was refused twice"),
        "{r}"
    );
    assert!(out.contains("IMAP.AccessAsApp"), "{r}");
    // A refused token is asked for again once (a new one), then given up.
    let checked = idp.checked();
    let tries = checked.iter().filter(|c| c.user == a.source_user).count();
    assert_eq!(tries, 2, "{checked:?}");
    assert!(!out.contains("not-the-secret"), "{r}");
}

#[test]
fn a_stale_cached_token_is_replaced_by_running_token_command_again() {
    let idp = Introspection::start(Duration::from_secs(600));
    // A helper with a cache: a stale token unless mailshift asks for a refresh.
    let stale = "printf 'mst.%s.1000.%s' {user}";
    let command = format!(
        "if [ \"$MAILSHIFT_TOKEN_REFRESH\" = 1 ]; then {}; else {stale} {}; fi",
        idp.token_command(),
        idp.secret()
    );
    let s = oauth_scenario(&idp, &command, false);
    let msgs = some_messages("stale");
    s.src("alice").append_many("INBOX", &msgs);
    let r = s.run(&["apply", "--auto-approve", "-v"]);
    assert_eq!(r.status, 0, "{r}");
    assert_bodies(
        &multiset(&msgs),
        &s.dst("alice").fetch_all("INBOX"),
        "INBOX",
    );
    assert!(
        r.stderr
            .contains("running `token-command` again for a new one"),
        "{r}"
    );
    let checked = idp.checked();
    assert!(
        checked.iter().any(|c| c.why == "expired") && checked.iter().any(|c| c.active),
        "{checked:?}"
    );
    assert_no_token_anywhere(&s, &idp, &[&r]);
}

/// Microsoft 365 and Google end an IMAP session when its token expires; the next login
/// must run `token-command` again. Here every token issued so far is revoked once the copy
/// has begun, and later the destination connection is cut in the middle of an APPEND: the
/// reconnect logs in with a new token and the copy completes, each message exactly once.
#[test]
fn tokens_revoked_mid_apply_are_replaced_at_the_reconnect_and_the_apply_completes() {
    let idp = Introspection::start(Duration::from_secs(600));
    let mut s = oauth_scenario(&idp, &idp.token_command(), true);
    let msgs = small_messages(BIG_FOLDER, &crate::support::unique_user("revoke"));
    let mut src = s.src("alice");
    src.append_many("INBOX", &msgs);
    let src_before = src.folder_snapshot("INBOX");
    // Batches hold at most a few hundred messages: the 40th APPEND command comes well
    // after the first messages arrived (when the tokens are revoked), and well before the end.
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::cut_at(Direction::ClientToServer, b"APPEND").nth(40))
        .start();
    s.set_port(Side::Destination, proxy.port());
    let total = msgs.len() as u64;
    let mut dst = s.dst("alice");

    let mut running = Running::start(&s, &["apply", "--auto-approve", "-v"]);
    let before_revoke = running.wait_until_partly_copied(&mut dst, "INBOX", total);
    idp.revoke_all();
    let revoked_at = idp.checked().len();
    let (code, out) = running.wait();
    assert_eq!(
        proxy.fired(),
        1,
        "the cut never happened: the test proved nothing\n{out}"
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(message_count(&mut dst, "INBOX"), total, "{out}");
    assert_bodies(&multiset(&msgs), &dst.fetch_all("INBOX"), "INBOX");
    assert_eq!(
        src_before,
        src.folder_snapshot("INBOX"),
        "the source changed"
    );
    // After the revocation, a login with a new token was accepted (the reconnect); an old
    // token would have been refused.
    let checked = idp.checked();
    let a = s.acct("alice");
    assert!(
        checked[revoked_at..]
            .iter()
            .any(|c| c.active && c.user == a.destination_user),
        "no destination login after the revocation ({before_revoke} of {total} copied \
         then): {checked:?}\n{out}"
    );
    assert!(proxy.connections() > 1, "no reconnect\n{out}");
}
