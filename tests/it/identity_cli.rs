//! Message identity end to end: messages whose identity headers are equal but whose bodies
//! differ are told apart by content, so the right one is copied and none is doubled.

use crate::scenario::Scenario;
use crate::support::{Layout, MessageBuilder, NewMessage};

fn same_headers(body: &str) -> Vec<u8> {
    MessageBuilder::new()
        .from("robot@old.example")
        .to("alice@old.example")
        .subject("Daily report")
        .date("Mon, 01 Mar 2021 10:00:00 +0000")
        .message_id(None)
        .body(body)
        .build()
}

#[test]
fn equal_headers_different_bodies_copy_the_missing_one() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let a = same_headers("report A\r\n");
    let b = same_headers("report B, a different body\r\n");
    let c = same_headers("report C\r\n");
    let mut src = s.src("alice");
    src.append_many(
        "INBOX",
        &[
            NewMessage::new(a.clone()),
            NewMessage::new(b.clone()),
            NewMessage::new(c.clone()),
        ],
    );
    // The destination already has B (copied earlier by something else).
    let mut dst = s.dst("alice");
    dst.append_many("INBOX", &[NewMessage::new(b.clone())]);
    let before = src.snapshot();

    let plan = s.run(&["plan", "--format", "json"]);
    assert_eq!(plan.status, 0, "{plan}");
    let doc = plan.json();
    assert_eq!(doc["summary"]["messages_to_copy"], 2, "{plan}");
    assert_eq!(doc["summary"]["already_present"], 1, "{plan}");

    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");
    let mut bodies: Vec<Vec<u8>> = dst.fetch_all("INBOX").into_iter().map(|m| m.body).collect();
    bodies.sort();
    let mut expected = vec![a, b, c];
    expected.sort();
    assert_eq!(
        bodies, expected,
        "every body exactly once on the destination"
    );
    before.assert_unchanged(&src.snapshot());

    let again = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status, 0, "{again}");
    assert_eq!(
        again.last_line(),
        "No changes. The destination has every message."
    );
}

/// A destination that stores a different Subject than it was sent (simulated by a proxy
/// that rewrites the APPEND stream): every later pass would copy the message again, so
/// apply must stop that account after the first batch instead of carrying on.
#[test]
fn a_destination_that_rewrites_headers_stops_the_account() {
    use crate::scenario::Side;
    use crate::support::{Direction, FaultProxy};

    let mut s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let msgs: Vec<NewMessage> = (0..5)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("Quarterly numbers {i}"))
                    .build(),
            )
        })
        .collect();
    let mut src = s.src("alice");
    src.append_many("INBOX", &msgs);
    let before = src.snapshot();
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .rewrite(
            Direction::ClientToServer,
            b"Subject: Quarterly",
            b"Subject: Quartarly",
        )
        .start();
    s.set_port(Side::Destination, proxy.port());

    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 1, "{apply}");
    assert!(
        apply
            .all_output()
            .contains("the destination rewrites headers; a re-run would duplicate"),
        "{apply}"
    );
    before.assert_unchanged(&src.snapshot());
}
