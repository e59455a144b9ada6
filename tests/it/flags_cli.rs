//! `flags-on-existing`: "keep" (the default) never touches messages already on the
//! destination, even when their flags differ; "add" adds the source's missing flags and
//! never removes one.

use crate::scenario::Scenario;
use crate::support::{Layout, MessageBuilder, NewMessage};

fn scenario(extra: &str) -> (Scenario, Vec<u8>) {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .config(extra);
    let body = MessageBuilder::new().subject("flags").build();
    s.src("alice").append_many(
        "INBOX",
        &[NewMessage::new(body.clone()).flags(&["\\Seen", "$Label1"])],
    );
    // Already on the destination, read and flagged there by the user, label not set.
    s.dst("alice").append_many(
        "INBOX",
        &[NewMessage::new(body.clone()).flags(&["\\Flagged"])],
    );
    (s, body)
}

#[test]
fn keep_leaves_existing_messages_alone() {
    let (s, _) = scenario("");
    let before = s.dst("alice").snapshot();
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{plan}");
    assert_eq!(
        plan.last_line(),
        "No changes. The destination has every message."
    );
    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");
    before.assert_unchanged(&s.dst("alice").snapshot());
}

#[test]
fn add_adds_missing_flags_and_removes_none() {
    let (s, body) = scenario("[messages]\nflags-on-existing = \"add\"\n");
    let src_before = s.src("alice").snapshot();
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 2, "{plan}");
    assert!(
        plan.stdout.contains("flags: 1 existing message get"),
        "{plan}"
    );
    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");
    let msgs = s.dst("alice").fetch_all("INBOX");
    assert_eq!(msgs.len(), 1, "no copy was added");
    assert_eq!(msgs[0].body, body);
    assert_eq!(msgs[0].flags, vec!["$Label1", "\\Flagged", "\\Seen"]);
    src_before.assert_unchanged(&s.src("alice").snapshot());
    let again = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status, 0, "{again}");
}
