//! Table tests for the cutover decisions: a domain walked through its life (high TTL,
//! lowered, ready, switched, propagated), edge cases, accounts and the exit verdict.

use chrono::TimeZone;

use super::*;

const NEW: &str = "mx1.new.example";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 4, 0, 0).unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

fn obs(hosts: &[&str], ttl: u32) -> MxObservation {
    MxObservation {
        hosts: hosts
            .iter()
            .enumerate()
            .map(|(i, h)| MxHost {
                preference: 10 * (i as u16 + 1),
                exchange: h.to_string(),
            })
            .collect(),
        ttl,
    }
}

fn new_mx() -> Vec<String> {
    vec![NEW.to_string(), "mx2.new.example".to_string()]
}

/// (minute, MX hosts, TTL).
type Step<'a> = (i64, &'a [&'a str], u32);

/// Runs the observations in order against one memory; returns each state.
fn walk(steps: &[Step<'_>]) -> Vec<DomainState> {
    let mut memory = DomainMemory::default();
    steps
        .iter()
        .map(|(minute, hosts, ttl)| {
            let (state, next) = decide_domain(at(*minute), &obs(hosts, *ttl), &new_mx(), &memory);
            memory = next;
            state
        })
        .collect()
}

#[test]
fn a_domain_through_its_whole_cutover() {
    let old: &[&str] = &["mx.old.example"];
    let new: &[&str] = &[NEW];
    let states = walk(&[
        (0, old, 3600),   // high TTL
        (10, old, 300),   // lowered: the old 3600 s may be cached until 10 + 60 min
        (69, old, 300),   // still within the hour
        (70, old, 300),   // lowered TTL in effect everywhere
        (80, new, 300),   // switched: old records cached up to 300 s
        (84, new, 300),   // still propagating
        (85, new, 300),   // propagated
        (500, new, 3600), // a later TTL change does not move the switch
    ]);
    assert_eq!(
        states,
        vec![
            DomainState::TtlTooHigh {
                ttl: 3600,
                lowered_in_effect_at: at(60)
            },
            DomainState::TtlLowering {
                ttl: 300,
                previous_ttl: 3600,
                in_effect_at: at(70)
            },
            DomainState::TtlLowering {
                ttl: 300,
                previous_ttl: 3600,
                in_effect_at: at(70)
            },
            DomainState::ReadyToSwitch { ttl: 300 },
            DomainState::Propagating {
                switched_at: at(80),
                until: at(85),
                old_ttl_unknown: false
            },
            DomainState::Propagating {
                switched_at: at(80),
                until: at(85),
                old_ttl_unknown: false
            },
            DomainState::Switched {
                switched_at: at(80),
                propagated_at: at(85)
            },
            DomainState::Switched {
                switched_at: at(80),
                propagated_at: at(85)
            },
        ]
    );
    assert_eq!(states[0].label(), "TTL too high");
    assert_eq!(states[1].label(), "TTL too high");
    assert_eq!(states[3].label(), "ready to switch");
    assert_eq!(states[4].label(), "switched, propagating");
    assert_eq!(states[6].label(), "switched");
}

#[test]
fn edge_cases() {
    let old: &[&str] = &["mx.old.example"];
    let new: &[&str] = &[NEW];
    let mixed: &[&str] = &[NEW, "mx.old.example"];
    // (name, steps, expected last state)
    let cases: Vec<(&str, Vec<Step<'_>>, DomainState)> = vec![
        (
            "exactly the limit is low enough",
            vec![(0, old, MAX_TTL)],
            DomainState::ReadyToSwitch { ttl: MAX_TTL },
        ),
        (
            "one above the limit is too high",
            vec![(0, old, MAX_TTL + 1)],
            DomainState::TtlTooHigh {
                ttl: MAX_TTL + 1,
                lowered_in_effect_at: at(15) + Duration::seconds(1),
            },
        ),
        (
            "a switch seen on the first run: the new TTL stands in for the unknown old one",
            vec![(0, new, 600)],
            DomainState::Propagating {
                switched_at: at(0),
                until: at(10),
                old_ttl_unknown: true,
            },
        ),
        (
            "mixed old and new hosts are not switched",
            vec![(0, mixed, 300)],
            DomainState::ReadyToSwitch { ttl: 300 },
        ),
        (
            "switched during a pending lowering: propagation waits for the old, higher TTL",
            vec![(0, old, 7200), (10, old, 300), (20, new, 300)],
            DomainState::Propagating {
                switched_at: at(20),
                until: at(130),
                old_ttl_unknown: false,
            },
        ),
        (
            "a second lowering does not shorten a longer pending one",
            vec![(0, old, 7200), (10, old, 600), (20, old, 300)],
            DomainState::TtlLowering {
                ttl: 300,
                previous_ttl: 7200,
                in_effect_at: at(130),
            },
        ),
        (
            "a second lowering after the first took effect waits for the middle TTL",
            vec![(0, old, 7200), (10, old, 900), (200, old, 300)],
            DomainState::TtlLowering {
                ttl: 300,
                previous_ttl: 900,
                in_effect_at: at(215),
            },
        ),
        (
            "raising the TTL again drops the pending lowering",
            vec![(0, old, 3600), (10, old, 300), (20, old, 600)],
            DomainState::ReadyToSwitch { ttl: 600 },
        ),
        (
            "switched back to the old MX forgets the switch",
            vec![(0, old, 300), (10, new, 300), (20, old, 300)],
            DomainState::ReadyToSwitch { ttl: 300 },
        ),
        (
            "switched back and forth: the switch time is the second one",
            vec![
                (0, old, 300),
                (10, new, 300),
                (20, old, 300),
                (30, new, 300),
            ],
            DomainState::Propagating {
                switched_at: at(30),
                until: at(35),
                old_ttl_unknown: false,
            },
        ),
    ];
    for (name, steps, want) in cases {
        let got = walk(&steps);
        assert_eq!(got.last(), Some(&want), "{name}");
    }
}

#[test]
fn no_mx_hosts_is_never_switched() {
    assert!(!points_to_new(&[], &new_mx()));
    assert!(points_to_new(&obs(&[NEW], 1).hosts, &new_mx()));
    assert!(points_to_new(
        &obs(&[NEW, "mx2.new.example"], 1).hosts,
        &new_mx()
    ));
}

fn pass(started: i64, uidvalidity: u32, uidnext: u32) -> FinalPass {
    FinalPass {
        source_host: "imap.old.example".into(),
        source_user: "alice@old.example".into(),
        started_at: at(started),
        inbox_uidvalidity: uidvalidity,
        inbox_uidnext: uidnext,
    }
}

fn inbox(uidvalidity: u32, since_pass: Option<u32>) -> InboxNow {
    InboxNow {
        uidvalidity,
        arrived_after_switch: vec![],
        since_final_pass: since_pass,
    }
}

#[test]
fn accounts() {
    let switched = Some(at(100));
    let cases = [
        (
            "not switched",
            None,
            None,
            inbox(1, None),
            AccountState::NotSwitched,
        ),
        (
            "no pass at all",
            switched,
            None,
            inbox(1, None),
            AccountState::NeedsFinalPass,
        ),
        (
            "only a pass before the switch",
            switched,
            Some(pass(90, 1, 5)),
            inbox(1, Some(0)),
            AccountState::NeedsFinalPass,
        ),
        (
            "a pass after the switch, nothing since",
            switched,
            Some(pass(110, 1, 5)),
            inbox(1, Some(0)),
            AccountState::Drained,
        ),
        (
            "a pass in the second the switch was first seen does not count",
            switched,
            Some(pass(100, 1, 5)),
            inbox(1, Some(0)),
            AccountState::NeedsFinalPass,
        ),
        (
            "mail since the pass",
            switched,
            Some(pass(110, 1, 5)),
            inbox(1, Some(2)),
            AccountState::NewMail { count: 2 },
        ),
        (
            "the INBOX was recreated (UIDVALIDITY changed)",
            switched,
            Some(pass(110, 1, 5)),
            inbox(2, None),
            AccountState::NeedsFinalPass,
        ),
    ];
    for (name, switched_at, pass, inbox, want) in cases {
        assert_eq!(
            decide_account(switched_at, pass.as_ref(), &inbox),
            want,
            "{name}"
        );
    }
}

#[test]
fn verdicts() {
    let switched = DomainState::Switched {
        switched_at: at(0),
        propagated_at: at(5),
    };
    let propagating = DomainState::Propagating {
        switched_at: at(0),
        until: at(5),
        old_ttl_unknown: false,
    };
    let drained = AccountState::Drained;
    let new_mail = AccountState::NewMail { count: 1 };
    assert_eq!(verdict([Some(&switched)], [Some(&drained)]), Verdict::Done);
    assert_eq!(verdict([Some(&switched)], []), Verdict::Done);
    assert_eq!(
        verdict([Some(&propagating)], [Some(&drained)]),
        Verdict::Waiting
    );
    assert_eq!(
        verdict([Some(&switched)], [Some(&new_mail)]),
        Verdict::Waiting
    );
    assert_eq!(
        verdict([Some(&propagating), None], [Some(&drained)]),
        Verdict::Failed
    );
    assert_eq!(verdict([Some(&switched)], [None]), Verdict::Failed);
    assert_eq!(Verdict::Done.code(), "done");
}

#[test]
fn domains_of_users() {
    assert_eq!(
        domain_of("Alice@Example.COM").as_deref(),
        Some("example.com")
    );
    assert_eq!(domain_of("a@b@x.example.").as_deref(), Some("x.example"));
    assert_eq!(domain_of("alice"), None);
    assert_eq!(domain_of("alice@"), None);
}

#[test]
fn memory_round_trips_through_json_with_rfc3339_times() {
    let (_, memory) = decide_domain(
        at(0),
        &obs(&[NEW], 300),
        &new_mx(),
        &DomainMemory::default(),
    );
    let json = serde_json::to_string(&memory).unwrap();
    assert!(
        json.contains("\"switched_at\":\"2026-11-30T04:00:00Z\""),
        "{json}"
    );
    let back: DomainMemory = serde_json::from_str(&json).unwrap();
    assert_eq!(back, memory);
}
