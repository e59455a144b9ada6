//! Messages over `[limits] stream-above` (issue 10 item 6): read from the source in pieces
//! (`BODY.PEEK[]<offset.length>`) and sent as one streamed APPEND literal. Checked against
//! real Dovecot with the tests' own raw client: the destination holds each message once,
//! byte for byte, with its flags and date; the source is unchanged. Cuts in the middle of
//! the stream, on either side, and a cut after the destination stored the message but
//! before it said so, still end with exactly one copy.

use crate::apply_cli::apply_ok;
use crate::scenario::{Scenario, Side};
use crate::support::{Direction, Fault, FaultProxy};
use crate::support::{Layout, MessageBuilder, NewMessage};

/// A message of about `size` bytes whose lines are all different (numbered), so that a
/// piece sent twice, lost or out of order shows in a byte comparison.
fn big_message(tag: &str, size: usize) -> Vec<u8> {
    let mut body = String::with_capacity(size + 128);
    let mut i = 0u64;
    while body.len() + 200 < size {
        body.push_str(&format!(
            "{tag} line {i:09} the quick brown fox jumps over the lazy dog {:016x}\r\n",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ));
        i += 1;
    }
    MessageBuilder::new()
        .subject(&format!("big {tag}"))
        .message_id(Some(&format!("<big-{tag}@stream.test>")))
        .body(body)
        .build()
}

fn small(tag: &str, n: usize) -> Vec<NewMessage> {
    (0..n)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("{tag} {i}"))
                    .message_id(Some(&format!("<{tag}-{i}@stream.test>")))
                    .build(),
            )
        })
        .collect()
}

/// One account; INBOX holds `messages`; pieces of `stream_above`.
fn scenario(stream_above: &str, messages: &[NewMessage]) -> Scenario {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .config(&format!("[limits]\nstream-above = \"{stream_above}\"\n"));
    s.src("alice").append_many("INBOX", messages);
    s
}

/// The destination INBOX holds exactly the source INBOX (bodies byte for byte, flags,
/// dates), and the source is unchanged.
#[track_caller]
fn assert_exact_copy(s: &Scenario, before: &crate::support::MailboxSnapshot) {
    let src = s.src("alice").fetch_all("INBOX");
    let dst = s.dst("alice").fetch_all("INBOX");
    let key =
        |m: &crate::support::RawMessage| (m.body.clone(), m.flags.clone(), m.internal_date.clone());
    let mut want: Vec<_> = src.iter().map(key).collect();
    let mut got: Vec<_> = dst.iter().map(key).collect();
    want.sort();
    got.sort();
    assert_eq!(
        want.len(),
        got.len(),
        "the destination holds {} messages, the source {}",
        got.len(),
        want.len()
    );
    for (w, g) in want.iter().zip(&got) {
        assert!(
            w == g,
            "a message differs: source {} bytes {:?} {:?}, destination {} bytes {:?} {:?}",
            w.0.len(),
            w.1,
            w.2,
            g.0.len(),
            g.1,
            g.2
        );
    }
    before.assert_unchanged(&s.src("alice").snapshot());
}

#[test]
fn a_big_message_is_streamed_in_pieces_and_arrives_byte_exact() {
    let big = NewMessage::new(big_message("forty", 40 << 20))
        .flags(&["\\Seen", "$Label1"])
        .internal_date("03-Feb-2021 04:05:06 +0100");
    // Exactly one piece and one byte: the last piece is a single byte.
    let edge = NewMessage::new(
        MessageBuilder::new()
            .subject("edge")
            .message_id(Some("<edge@stream.test>"))
            .pad_to((4 << 20) + 1)
            .build(),
    );
    assert_eq!(edge.body.len(), (4 << 20) + 1);
    let mut messages = small("before", 3);
    messages.push(big);
    messages.push(edge);
    messages.extend(small("after", 3));
    let s = scenario("4MiB", &messages);
    let before = s.src("alice").snapshot();

    let report = apply_ok(&s, &["-vv"], messages.len() as u64);
    let bytes: u64 = messages.iter().map(|m| m.body.len() as u64).sum();
    assert_eq!(report["accounts"][0]["bytes"], bytes, "{report:#}");
    assert_exact_copy(&s, &before);

    let r = s.run(&["plan"]);
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(
        r.last_line(),
        "No changes. The destination has every message.",
        "{r}"
    );
}

#[test]
fn the_streamed_path_is_the_one_used_above_the_threshold() {
    let messages = vec![NewMessage::new(big_message("twelve", 12 << 20))];
    let s = scenario("1MiB", &messages);
    let before = s.src("alice").snapshot();
    let (run, _) = crate::apply_cli::apply(&s, &["-vv"]);
    assert_eq!(run.status, 0, "{run}");
    assert!(
        run.stderr.contains("streamed in pieces of 1048576 bytes"),
        "the message was not streamed\n{run}"
    );
    assert_exact_copy(&s, &before);
}

#[test]
fn destination_cut_mid_stream_copies_the_big_message_exactly_once() {
    let mut messages = small("s", 2);
    messages.push(NewMessage::new(big_message("cutdst", 12 << 20)));
    let mut s = scenario("1MiB", &messages);
    let before = s.src("alice").snapshot();
    // Half of the big literal, client → server, on the connection that carries it.
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::cut_after(Direction::ClientToServer, 6 << 20).times(1))
        .start();
    s.set_port(Side::Destination, proxy.port());
    let report = apply_ok(&s, &[], 3);
    assert_eq!(proxy.fired(), 1, "the cut never happened\n{report:#}");
    assert!(
        report["accounts"][0]["reconnects"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    assert_exact_copy(&s, &before);
}

#[test]
fn source_cut_mid_stream_copies_the_big_message_exactly_once() {
    let messages = vec![NewMessage::new(big_message("cutsrc", 12 << 20))];
    let mut s = scenario("1MiB", &messages);
    let before = s.src("alice").snapshot();
    let proxy = FaultProxy::to(s.port(Side::Source))
        .fault(Fault::cut_after(Direction::ServerToClient, 6 << 20).times(1))
        .start();
    s.set_port(Side::Source, proxy.port());
    let report = apply_ok(&s, &[], 1);
    assert_eq!(proxy.fired(), 1, "the cut never happened\n{report:#}");
    // The raw client reads through the proxy too: its one fault is spent.
    assert_exact_copy(&s, &before);
}

#[test]
fn big_message_stored_but_not_acknowledged_is_not_sent_again() {
    let messages = vec![NewMessage::new(big_message("unacked", 6 << 20))];
    let mut s = scenario("1MiB", &messages);
    let before = s.src("alice").snapshot();
    // The tagged `OK [APPENDUID ...]` of the streamed APPEND never reaches the client: the
    // server stored the message; the client must find it, not send it again.
    let proxy = FaultProxy::to(s.port(Side::Destination))
        .fault(Fault::cut_at(Direction::ServerToClient, b"[APPENDUID ").times(1))
        .start();
    s.set_port(Side::Destination, proxy.port());
    let (run, report) = crate::apply_cli::apply(&s, &["-v"]);
    assert_eq!(run.status, 0, "{run}");
    assert_eq!(proxy.fired(), 1, "the cut never happened\n{run}");
    assert_eq!(report["accounts"][0]["copied"], 1, "{report:#}");
    assert!(
        run.stderr.contains("the interrupted APPEND had arrived"),
        "the stored message was not found on the destination\n{run}"
    );
    assert_exact_copy(&s, &before);
}

#[test]
fn a_message_held_whole_bigger_than_the_body_budget_does_not_stall_the_lane() {
    // `stream-above` raised over the message: it is fetched whole, needing the whole
    // 24 MiB body budget while the batch before it is appended. The permits of that batch
    // used to be released only after the fetch got its own: the lane waited for ever.
    let mut messages = small("first", 5);
    messages.push(NewMessage::new(big_message("whole", 30 << 20)));
    messages.extend(small("then", 2));
    let s = scenario("64MiB", &messages);
    let before = s.src("alice").snapshot();
    let (run, _) = crate::apply_cli::apply(&s, &["-vv"]);
    assert_eq!(run.status, 0, "{run}");
    assert!(run.elapsed < std::time::Duration::from_secs(120), "{run}");
    assert!(!run.stderr.contains("streamed in pieces"), "{run}");
    assert_exact_copy(&s, &before);
}
