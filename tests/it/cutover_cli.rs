//! `mailshift cutover` end to end: a DNS server in the test (127.0.0.1, UDP) drives a domain
//! through every state — TTL too high, lowered (still too high until the old TTL has run
//! out), ready to switch, switched and propagating, switched — and a message delivered to
//! the source after the switch is reported for its account until a final pass copies it.
//!
//! Time is moved on honestly: by editing the times in the state file (`.mailshift/
//! cutover.json`), exactly as the next run reads them; no clock is faked in the binary.

use serde_json::Value;

use crate::scenario::Scenario;
use crate::support::{DnsServer, Layout, MessageBuilder};

const DOMAIN: &str = "new.example";

fn scenario(dns: &DnsServer) -> Scenario {
    Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account_in("alice", DOMAIN)
        .config(&format!(
            "[cutover]\nnew-mx = [\"mx1.new.example\", \"MX2.new.example.\"]\nnameservers = \
             [\"{}\"]\n",
            dns.address()
        ))
}

/// Moves every time in the state file of `domain` back by `hours`.
fn age_state(s: &Scenario, hours: i64) {
    let path = s.path(".mailshift/cutover.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).expect("state file"))
        .expect("state file is JSON");
    let memory = doc["domains"][DOMAIN]
        .as_object_mut()
        .expect("the domain is in the state file");
    for key in ["lowered_at", "switched_at", "propagated_at"] {
        if let Some(t) = memory.get(key).and_then(Value::as_str) {
            let t =
                chrono::DateTime::parse_from_rfc3339(t).unwrap() - chrono::Duration::hours(hours);
            memory.insert(key.to_string(), Value::String(t.to_rfc3339()));
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

fn domain_json(r: &crate::scenario::CmdResult) -> Value {
    let doc = r.json();
    let domains = doc["domains"].as_array().expect("domains").clone();
    assert_eq!(domains.len(), 1, "{r}");
    domains[0].clone()
}

#[test]
fn cutover_walks_a_domain_from_high_ttl_to_drained() {
    let dns = DnsServer::start();
    let s = scenario(&dns);
    let alice = s.acct("alice").clone();
    let mut src = s.src("alice");
    src.append(
        "INBOX",
        &["\\Seen"],
        Some("01-Mar-2021 10:00:00 +0000"),
        &MessageBuilder::new().subject("before the cutover").build(),
    );

    // 1. The old MX with a one-hour TTL: too high.
    dns.set_mx(DOMAIN, &[(10, "mx.old.example")], 3600);
    let r = s.run(&["cutover"]);
    assert_eq!(r.status, 2, "{r}");
    assert!(r.stdout.starts_with("new.example: TTL too high\n"), "{r}");
    assert!(
        r.stdout.contains("MX 10 mx.old.example  (TTL 3,600 s)"),
        "{r}"
    );
    assert!(
        r.stdout.contains("TTL 3,600 s (1h) is above 900 s (15m)")
            && r.stdout
                .contains("lowered now, the new TTL is in effect everywhere at"),
        "{r}"
    );
    assert!(
        r.stdout
            .contains(&format!("  {}: waiting for the switch", alice.source_user)),
        "{r}"
    );
    assert_eq!(
        r.last_line(),
        "Cutover: waiting (0 of 1 domain switched and propagated, 0 of 1 account drained).",
        "{r}"
    );
    assert!(s.path(".mailshift/cutover.json").is_file());

    // 2. Lowered to 5 minutes: resolvers may still cache the old hour.
    dns.set_mx(DOMAIN, &[(10, "mx.old.example")], 300);
    let r = s.run(&["cutover", "--format", "json"]);
    assert_eq!(r.status, 2, "{r}");
    let d = domain_json(&r);
    assert_eq!(d["state"], "ttl-too-high", "{r}");
    assert_eq!(d["ttl"], 300, "{r}");
    assert_eq!(d["previous_ttl"], 3600, "{r}");
    assert_eq!(d["ttl_source"], "configured-nameservers", "{r}");
    let r = s.run(&["cutover"]);
    assert_eq!(r.status, 2, "{r}");
    assert!(r.stdout.contains("new.example: TTL too high"), "{r}");
    assert!(
        r.stdout
            .contains("lowered from 3,600 s (1h): resolvers may still cache the records"),
        "{r}"
    );

    // 3. An hour later the lowered TTL is in effect: ready to switch.
    age_state(&s, 2);
    let r = s.run(&["cutover"]);
    assert_eq!(r.status, 2, "{r}");
    assert!(
        r.stdout.starts_with("new.example: ready to switch\n"),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("switch the MX records to mx1.new.example, mx2.new.example now"),
        "{r}"
    );

    // 4. MX switched: propagating for the old 5 minutes. No mail after the switch yet, but
    //    no final pass either.
    dns.set_mx(
        DOMAIN,
        &[(10, "mx1.new.example"), (20, "mx2.new.example")],
        300,
    );
    let r = s.run(&["cutover"]);
    assert_eq!(r.status, 2, "{r}");
    assert!(
        r.stdout.starts_with("new.example: switched, propagating\n"),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("resolvers may send mail to the old server until"),
        "{r}"
    );
    assert!(
        r.stdout.contains(&format!(
            "  {}: no mail arrived at the source after the switch; no final pass since the \
             switch: run `mailshift apply`",
            alice.source_user
        )),
        "{r}"
    );

    // 5. A message still reaches the old server after the switch.
    src.append(
        "INBOX",
        &[],
        None,
        &MessageBuilder::new()
            .subject("late delivery")
            .message_id(Some("<late-1@new.example>"))
            .build(),
    );
    let before = src.snapshot();
    let r = s.run(&["cutover", "--format", "json"]);
    assert_eq!(r.status, 2, "{r}");
    let doc = r.json();
    assert_eq!(doc["status"], "waiting", "{r}");
    assert_eq!(doc["domains"][0]["state"], "switched-propagating", "{r}");
    let a = &doc["accounts"][0];
    assert_eq!(a["source_user"], alice.source_user.as_str(), "{r}");
    assert_eq!(a["state"], "needs-final-pass", "{r}");
    assert_eq!(a["arrived_after_switch"], 1, "{r}");

    // 6. The old TTL has run out: switched. The late message is still only on the source.
    age_state(&s, 1);
    let r = s.run(&["cutover"]);
    assert_eq!(r.status, 2, "{r}");
    assert!(r.stdout.starts_with("new.example: switched\n"), "{r}");
    assert!(r.stdout.contains("propagated since"), "{r}");
    assert!(
        r.stdout.contains(&format!(
            "  {}: 1 message arrived at the source after the switch (last ",
            alice.source_user
        )),
        "{r}"
    );
    assert!(r.stdout.contains("no final pass since the switch"), "{r}");

    // 7. The final pass copies it; now the cutover is complete.
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.status, 2, "{r}");
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.status, 0, "{r}");
    let mut dst = s.dst("alice");
    let copied = dst.fetch_all("INBOX");
    assert!(
        copied
            .iter()
            .any(|m| String::from_utf8_lossy(&m.body).contains("late delivery")),
        "the late message is on the destination"
    );
    let r = s.run(&["cutover"]);
    assert_eq!(r.status, 0, "{r}");
    assert!(
        r.stdout.contains(&format!(
            "  {}: drained: nothing reached the source since the last final pass",
            alice.source_user
        )),
        "{r}"
    );
    assert_eq!(
        r.last_line(),
        "Cutover complete: every domain is switched and no mail reached the old server since \
         the last final pass (1 of 1 domain switched and propagated, 1 of 1 account drained).",
        "{r}"
    );
    before.assert_unchanged(&src.snapshot());

    // 8. Another message arrives at the old server: another final pass is needed.
    src.append(
        "INBOX",
        &[],
        None,
        &MessageBuilder::new().subject("later still").build(),
    );
    let before = src.snapshot();
    let r = s.run(&["cutover", "--format", "json"]);
    assert_eq!(r.status, 2, "{r}");
    let a = &r.json()["accounts"][0];
    assert_eq!(a["state"], "new-mail", "{r}");
    assert_eq!(a["since_last_final_pass"], 1, "{r}");
    assert_eq!(a["arrived_after_switch"], 2, "{r}");
    let r = s.run(&["cutover"]);
    assert!(
        r.stdout
            .contains("1 message reached the source since the last final pass (began ")
            && r.stdout.contains("run another final pass"),
        "{r}"
    );
    before.assert_unchanged(&src.snapshot());
    assert!(
        dns.queries() >= 10,
        "the answers came from the test's DNS server"
    );
}

#[test]
fn cutover_errors_exit_1_with_a_hint() {
    let dns = DnsServer::start();
    // An unknown domain: NXDOMAIN from the test server.
    let s = scenario(&dns);
    let r = s.run(&["cutover"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(r.stdout.starts_with("new.example: error\n"), "{r}");
    assert!(
        r.stdout
            .contains("the domain `new.example` does not exist in DNS"),
        "{r}"
    );
    assert!(r.stdout.contains("  hint: "), "{r}");
    assert_eq!(
        r.last_line(),
        "Cutover: 2 errors (0 of 1 domain switched and propagated, 0 of 1 account drained).",
        "{r}"
    );

    // No `new-mx`: nothing can be judged.
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account_in("bob", DOMAIN);
    let r = s.run(&["cutover"]);
    assert_eq!(r.status, 1, "{r}");
    assert!(r.stderr.contains("`[cutover] new-mx` is empty"), "{r}");
    assert!(
        r.stderr
            .contains("hint: add the new provider's MX host names"),
        "{r}"
    );

    // A user without a domain.
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("carol")
        .config("[cutover]\nnew-mx = [\"mx1.new.example\"]\nnameservers = [\"127.0.0.1:9\"]\n");
    let r = s.run(&["cutover", "--format", "json"]);
    assert_eq!(r.status, 1, "{r}");
    let a = &r.json()["accounts"][0];
    assert!(
        a["error"].as_str().unwrap().contains("has a mail domain"),
        "{r}"
    );
}
