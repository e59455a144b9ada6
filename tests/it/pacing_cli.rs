//! Pacing for providers' caps (issue 6 item 4), end to end: the plan shows the least time
//! the copy can take under the `[limits]` caps, and `apply` keeps to them (measured in a
//! short real window) and says in the report that pacing slowed it. The daily cap itself
//! is tested with a paused clock in `src/apply/pacing.rs` (the same buckets).

use std::fs;
use std::time::Duration;

use crate::apply_cli::{assert_bodies, multiset};
use crate::scenario::Scenario;
use crate::support::{Layout, MessageBuilder, NewMessage};

fn messages(n: usize, size: usize, tag: &str) -> Vec<NewMessage> {
    (0..n)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("{tag} {i}"))
                    .pad_to(size)
                    .build(),
            )
        })
        .collect()
}

fn paced(limits: &str, msgs: &[NewMessage]) -> Scenario {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .config(&format!("[limits]\n{limits}"));
    s.src("alice").append_many("INBOX", msgs);
    s
}

#[test]
fn the_plan_shows_the_least_time_under_the_caps() {
    let msgs = messages(10, 1_000, "floor");
    let s = paced("account-messages-per-second = 2", &msgs);
    let r = s.run(&["plan"]);
    assert_eq!(r.status, 0, "{r}");
    // 10 messages at 2 per second: the first second's 2 at once, 8 more take 4 s.
    assert!(
        r.stdout
            .lines()
            .any(|l| l == "  at least 4 seconds at 2 messages/s"),
        "{r}"
    );
    let json = s.run(&["plan", "--format", "json"]).json();
    assert_eq!(
        json["accounts"][0]["pacing"],
        serde_json::json!({"seconds": 4, "cap": "2 messages/s"}),
        "{json:#}"
    );

    // Without caps, no such line.
    let s = paced("parallel-accounts = 4", &messages(3, 1_000, "nocap"));
    let r = s.run(&["plan"]);
    assert!(!r.stdout.contains("at least"), "{r}");
}

#[test]
fn apply_keeps_to_the_caps_and_the_report_says_so() {
    // 6 messages of ~10 KiB with 20 KiB/s for the run: per direction the first second's
    // 20 KiB go at once, the other ~40 KiB take at least 2 s.
    let msgs = messages(6, 10 * 1024, "paced");
    let s = paced("bytes-per-second = \"20KiB\"", &msgs);
    let mut src = s.src("alice");
    let before = src.snapshot();
    let plan = s.run(&["plan"]);
    assert!(
        plan.stdout.contains("  at least 2 seconds at 20 KiB/s"),
        "{plan}"
    );
    let r = s.run(&["apply", "--auto-approve", "--report", "r.json"]);
    assert_eq!(r.status, 0, "{r}");
    assert!(
        r.elapsed >= Duration::from_secs(2),
        "the cap was not honoured: {:?}\n{r}",
        r.elapsed
    );
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(s.path("r.json")).unwrap()).unwrap();
    let a = &report["accounts"][0];
    assert_eq!(a["copied"], 6, "{report:#}");
    assert!(a["pacing_waits"].as_u64().unwrap() >= 1, "{report:#}");
    let waited = a["pacing_wait_seconds"].as_f64().unwrap();
    assert!(waited >= 1.9, "waited {waited} s: {report:#}");
    assert!(r.stdout.contains("alice"), "{r}");
    assert!(r.stdout.contains(": pacing slowed the copy: "), "{r}");
    // Nothing lost or doubled by the waits; the source untouched.
    assert_bodies(
        &multiset(&msgs),
        &s.dst("alice").fetch_all("INBOX"),
        "INBOX",
    );
    before.assert_unchanged(&src.snapshot());

    // The same copy without caps does not wait.
    let s = paced("parallel-accounts = 4", &messages(6, 10 * 1024, "unpaced"));
    let r = s.run(&["apply", "--auto-approve", "--report", "r.json"]);
    assert_eq!(r.status, 0, "{r}");
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(s.path("r.json")).unwrap()).unwrap();
    assert_eq!(report["accounts"][0]["pacing_waits"], 0, "{report:#}");
    assert!(!r.stdout.contains("pacing"), "{r}");
}

#[test]
fn connections_left_idle_by_long_pacing_waits_are_reopened_not_found_dead() {
    // Routers and servers drop idle connections, often silently: a proxy on each side
    // forgets a connection idle for 1.5 s. Pacing (0.5 messages/s) makes each side wait
    // about 2 s between messages, longer than that. A connection unused for more than half
    // of `idle-timeout` (1 s here) is reopened before use, so no command meets a dead
    // connection: no timeout, no retry, nothing lost or doubled.
    use crate::scenario::Side;
    use crate::support::FaultProxy;
    let msgs = messages(3, 4 * 1024, "idle");
    let mut s = paced(
        "account-messages-per-second = 0.5\nidle-timeout = \"2s\"\nconnect-timeout = \"1s\"\n",
        &msgs,
    );
    let before = s.src("alice").snapshot();
    let router = |side| {
        FaultProxy::to(s.port(side))
            .drop_idle_after(Duration::from_millis(1_500))
            .start()
    };
    let (src_router, dst_router) = (router(Side::Source), router(Side::Destination));
    s.set_port(Side::Source, src_router.port());
    s.set_port(Side::Destination, dst_router.port());
    let r = s.run(&["apply", "--auto-approve", "--report", "r.json", "-v"]);
    let drops = src_router.idle_drops() + dst_router.idle_drops();
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(s.path("r.json")).expect("report")).unwrap();
    let a = &report["accounts"][0];
    eprintln!(
        "idle connections during pacing waits: exit {} in {:?}, {drops} idle connections forgotten by the routers, {} pacing waits, {} retries, {} reconnects",
        r.status, r.elapsed, a["pacing_waits"], a["retries"], a["reconnects"]
    );
    assert_eq!(r.status, 0, "{r}");
    assert!(
        a["pacing_waits"].as_u64().unwrap() >= 2,
        "pacing made the lanes wait: {report:#}"
    );
    assert!(
        drops >= 1,
        "no connection was ever idle long enough to be forgotten: the test proved nothing\n{r}"
    );
    assert_eq!(a["copied"], 3, "{report:#}");
    assert_eq!(
        a["retries"], 0,
        "a command met a connection the router had forgotten\n{report:#}\n{r}"
    );
    assert!(r.elapsed < Duration::from_secs(15), "{:?}\n{r}", r.elapsed);
    let dst = s.dst("alice").fetch_all("INBOX");
    eprintln!(
        "{} on the source, {} on the destination (lost 0, duplicated 0 when equal)",
        msgs.len(),
        dst.len()
    );
    assert_bodies(&multiset(&msgs), &dst, "INBOX");
    before.assert_unchanged(&s.src("alice").snapshot());
}
