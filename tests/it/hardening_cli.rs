//! Defects found when the build was attacked (issue 6, item 7), outside the executor: a
//! `--report` path that cannot be written, a hand-edited plan file, a hanging
//! `password-command` or `token-command`. Each test failed before its fix.

use std::fs;
use std::time::Duration;

use crate::apply_cli::{message_count, small_messages};
use crate::scenario::{Scenario, Side};
use crate::support::Layout;

/// Modern → classic, one account `alice` with `n` small messages in the source INBOX.
fn filled(n: usize) -> Scenario {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Classic)
        .account("alice");
    s.src("alice").append_many(
        "INBOX",
        &small_messages(n, &crate::support::unique_user("hard")),
    );
    s
}

#[test]
fn an_unwritable_report_path_stops_apply_before_any_work() {
    let s = filled(3);
    let mut src = s.src("alice");
    let src_before = src.snapshot();
    let r = s.run(&["apply", "--auto-approve", "--report", "no-such-dir/r.json"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(
        r.stderr
            .contains("error: cannot write the report to `no-such-dir/r.json`"),
        "{r}"
    );
    // Nothing was planned (no plan on stdout) and nothing copied.
    assert!(!r.stdout.contains("Plan:"), "{r}");
    assert_eq!(message_count(&mut s.dst("alice"), "INBOX"), 0, "{r}");
    src_before.assert_unchanged(&src.snapshot());

    // A directory in place of the file is found out as early.
    fs::create_dir_all(s.path("a-dir")).unwrap();
    let r = s.run(&["apply", "--auto-approve", "--report", "a-dir"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(
        r.stderr.contains("cannot write the report to `a-dir`"),
        "{r}"
    );
    assert_eq!(message_count(&mut s.dst("alice"), "INBOX"), 0, "{r}");
}

#[test]
fn a_hand_edited_plan_file_is_refused_and_nothing_is_copied() {
    let s = filled(2);
    let r = s.run(&["plan", "--out", "p.json"]);
    assert_eq!(r.status, 0, "{r}");
    let mut plan: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(s.path("p.json")).unwrap()).unwrap();
    let folders = plan["accounts"][0]["folders"].as_array_mut().unwrap();
    let inbox = folders
        .iter_mut()
        .find(|f| f["destination"] == "INBOX")
        .expect("INBOX in the plan");
    let copies = inbox["copy"].as_array_mut().unwrap();
    assert_eq!(copies.len(), 2, "{plan:#}");
    let first = copies[0].clone();
    copies.push(first);
    fs::write(s.path("p.json"), plan.to_string()).unwrap();

    let user = s.acct("alice").source_user.clone();
    for args in [
        &["apply", "p.json", "--auto-approve"][..],
        &["show", "p.json"][..],
    ] {
        let r = s.run(args);
        assert_eq!(r.status, 1, "{args:?}\n{r}");
        assert!(
            r.stderr.contains(&format!(
                "error: the plan file `p.json` is damaged: account `{user}`, folder `INBOX`: UID 1 \
                 of source folder `INBOX` is listed twice"
            )),
            "{args:?}\n{r}"
        );
        assert!(
            r.stderr
                .contains("hint: make a new plan with `mailshift plan --out FILE`"),
            "{r}"
        );
        assert!(!r.stderr.contains("panicked"), "{r}");
    }
    assert_eq!(message_count(&mut s.dst("alice"), "INBOX"), 0);

    // A copy that points past its folder's sources (it panicked with `index out of bounds`).
    let mut plan: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(s.path("p.json")).unwrap()).unwrap();
    let inbox = plan["accounts"][0]["folders"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["destination"] == "INBOX")
        .unwrap();
    inbox["copy"].as_array_mut().unwrap().pop();
    inbox["sources"] = serde_json::json!([]);
    fs::write(s.path("p.json"), plan.to_string()).unwrap();
    let r = s.run(&["apply", "p.json", "--auto-approve"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(
        r.stderr.contains(
            "folder `INBOX`: the copy of UID 1 names source folder 0, but the folder has no \
             source folders"
        ),
        "{r}"
    );
    assert!(!r.stderr.contains("panicked"), "{r}");
    assert_eq!(message_count(&mut s.dst("alice"), "INBOX"), 0);
}

#[test]
fn a_hanging_password_command_fails_within_the_connect_timeout() {
    let s = filled(0).config(
        "[limits]\nconnect-timeout = \"1s\"\n\n[destination.admin]\nuser = \"admin\"\n\
         password-command = \"echo not-this; sleep 60\"",
    );
    let r = s.run(&["check", "-v"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(r.elapsed < Duration::from_secs(10), "{r}");
    assert!(
        r.stderr.contains(
            "`[destination.admin]` `password-command` gave no answer within 1s; it was stopped"
        ),
        "{r}"
    );
    assert!(
        r.stderr.contains("running `password-command`"),
        "-v shows it\n{r}"
    );
    assert!(!r.all_output().contains("not-this"), "{r}");
}

#[test]
fn a_hanging_token_command_fails_that_account_within_the_connect_timeout() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .server_config(
            Side::Destination,
            "auth = \"oauthbearer\"\ntoken-command = \"printf tok-secret; sleep 60\"",
        )
        .account("alice")
        .config("[limits]\nconnect-timeout = \"1s\"");
    let r = s.run(&["check", "-v"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(r.elapsed < Duration::from_secs(15), "{r}");
    let a = s.acct("alice");
    let port = s.port(Side::Destination);
    assert!(
        r.all_output().contains(&format!(
            "`token-command` for `{}` on `127.0.0.1:{port}` failed: `printf` gave no answer \
             within 1s; it was stopped",
            a.destination_user
        )),
        "{r}"
    );
    assert!(
        r.stderr.contains("running `token-command`"),
        "-v shows it\n{r}"
    );
    assert!(!r.all_output().contains("tok-secret"), "{r}");
}
