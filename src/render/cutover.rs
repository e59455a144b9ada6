//! The text of `mailshift cutover`: one block per mail domain (its state, MX records, TTL
//! and what to do or wait for), one line per account (mail still arriving at the source),
//! then a summary line, always the last line.

use chrono::{DateTime, Utc};

use crate::cutover::{CutoverAccount, CutoverDomain, CutoverReport};
use crate::render::units::{count, counted};

/// `2026-11-30 05:40:12 UTC`.
fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `in 59m 30s` / `1h ago`.
fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let d = humantime::format_duration(std::time::Duration::from_secs(secs.unsigned_abs()));
    if secs >= 0 {
        format!("in {d}")
    } else {
        format!("{d} ago")
    }
}

fn seconds(ttl: u32) -> String {
    format!(
        "{} s ({})",
        count(u64::from(ttl)),
        humantime::format_duration(std::time::Duration::from_secs(u64::from(ttl)))
    )
}

fn domain_block(d: &CutoverDomain, report: &CutoverReport, out: &mut String) {
    let now = report.checked_at;
    let Some(label) = d.label else {
        out.push_str(&format!(
            "{}: error\n  {}\n",
            d.domain,
            d.error.as_deref().unwrap_or("unknown error")
        ));
        if let Some(h) = &d.hint {
            out.push_str(&format!("  hint: {h}\n"));
        }
        return;
    };
    out.push_str(&format!("{}: {label}\n", d.domain));
    let source = match d.ttl_source {
        Some("cache") => ", as cached by the resolver: the domain's own TTL may be higher",
        _ => "",
    };
    let mx: Vec<String> =
        d.mx.iter()
            .map(|m| format!("{} {}", m.preference, m.exchange))
            .collect();
    out.push_str(&format!(
        "  MX {}  (TTL {} s{source})\n",
        mx.join(", "),
        count(u64::from(d.ttl.unwrap_or(0)))
    ));
    let ttl = d.ttl.unwrap_or(0);
    match d.state {
        Some("ttl-too-high") => {
            if let (Some(prev), Some(until)) = (d.previous_ttl, d.ttl_in_effect_at) {
                out.push_str(&format!(
                    "  lowered from {}: resolvers may still cache the records that long, until \
                     {} ({})\n",
                    seconds(prev),
                    at(until),
                    relative(until, now)
                ));
            } else {
                out.push_str(&format!(
                    "  TTL {} is above {}: lower the MX TTL first; lowered now, the new TTL is \
                     in effect everywhere at {} ({})\n",
                    seconds(ttl),
                    seconds(report.max_ttl),
                    d.lowered_in_effect_at.map(at).unwrap_or_default(),
                    d.lowered_in_effect_at
                        .map(|t| relative(t, now))
                        .unwrap_or_default()
                ));
            }
        }
        Some("ready-to-switch") => {
            out.push_str(&format!(
                "  switch the MX records to {} now\n",
                report.new_mx.join(", ")
            ));
        }
        Some("switched-propagating") => {
            if let (Some(s), Some(p)) = (d.switched_at, d.propagated_at) {
                out.push_str(&format!(
                    "  switch first seen {}; resolvers may send mail to the old server until {} \
                     ({})\n",
                    at(s),
                    at(p),
                    relative(p, now)
                ));
            }
            if d.old_ttl_unknown {
                out.push_str(
                    "  the old TTL is unknown (no run before the switch): the new TTL stands \
                     in for it\n",
                );
            }
        }
        Some("switched") => {
            if let (Some(s), Some(p)) = (d.switched_at, d.propagated_at) {
                out.push_str(&format!(
                    "  switch first seen {}; propagated since {}\n",
                    at(s),
                    at(p)
                ));
            }
        }
        _ => {}
    }
    if !d.old_mx.is_empty() && d.mx.len() > d.old_mx.len() {
        out.push_str(&format!(
            "  still lists hosts that are not in `new-mx`: {}\n",
            d.old_mx.join(", ")
        ));
    }
}

fn account_line(a: &CutoverAccount, out: &mut String) {
    let who = if a.source_user == a.destination_user {
        a.source_user.clone()
    } else {
        format!("{} → {}", a.source_user, a.destination_user)
    };
    if let Some(e) = &a.error {
        let e = e.replace('\n', "\n    ");
        out.push_str(&format!("  {who}: error: {e}\n"));
        if let Some(h) = &a.hint {
            out.push_str(&format!("    hint: {h}\n"));
        }
        return;
    }
    let arrived = match (a.arrived_after_switch, a.last_arrival) {
        (0, _) => "no mail arrived at the source after the switch".to_string(),
        (n, Some(last)) => format!(
            "{} at the source after the switch (last {})",
            counted(u64::from(n), "message arrived", "messages arrived"),
            at(last)
        ),
        (n, None) => format!(
            "{} at the source after the switch",
            counted(u64::from(n), "message arrived", "messages arrived")
        ),
    };
    let text = match a.state {
        Some("not-switched") => "waiting for the switch".to_string(),
        Some("needs-final-pass") => format!(
            "{arrived}; no final pass since the switch: run `mailshift apply`{}",
            match (a.last_final_pass, a.since_last_final_pass) {
                (Some(p), Some(n)) if n > 0 => format!(
                    " ({} since the last pass, which began {})",
                    counted(
                        u64::from(n),
                        "message reached the source",
                        "messages reached the source"
                    ),
                    at(p)
                ),
                (Some(p), _) => format!(" (last pass began {})", at(p)),
                (None, _) => String::new(),
            }
        ),
        Some("new-mail") => format!(
            "{arrived}; {} since the last final pass (began {}): run another final pass",
            counted(
                u64::from(a.since_last_final_pass.unwrap_or(0)),
                "message reached the source",
                "messages reached the source"
            ),
            a.last_final_pass.map(at).unwrap_or_default()
        ),
        Some("drained") => format!(
            "drained: nothing reached the source since the last final pass (began {}); {arrived}",
            a.last_final_pass.map(at).unwrap_or_default()
        ),
        _ => "unknown".to_string(),
    };
    out.push_str(&format!("  {who}: {text}\n"));
}

/// The whole text output; the last line is the summary.
pub(crate) fn render(report: &CutoverReport) -> String {
    let mut out = String::new();
    for d in &report.domains {
        domain_block(d, report, &mut out);
        out.push('\n');
    }
    if !report.accounts.is_empty() {
        out.push_str("accounts\n");
        for a in &report.accounts {
            account_line(a, &mut out);
        }
        out.push('\n');
    }
    let switched = report
        .domains
        .iter()
        .filter(|d| d.state == Some("switched"))
        .count() as u64;
    let drained = report
        .accounts
        .iter()
        .filter(|a| a.state == Some("drained"))
        .count() as u64;
    let errors = report.domains.iter().filter(|d| d.error.is_some()).count()
        + report.accounts.iter().filter(|a| a.error.is_some()).count();
    let tally = format!(
        "{} of {} switched and propagated, {} of {} drained",
        count(switched),
        counted(report.domains.len() as u64, "domain", "domains"),
        count(drained),
        counted(report.accounts.len() as u64, "account", "accounts"),
    );
    out.push_str(&match report.status {
        "done" => format!(
            "Cutover complete: every domain is switched and no mail reached the old server \
             since the last final pass ({tally}).\n"
        ),
        "waiting" => format!("Cutover: waiting ({tally}).\n"),
        _ => format!(
            "Cutover: {} ({tally}).\n",
            counted(errors as u64, "error", "errors")
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cutover::MxHost;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, h, m, 0).unwrap()
    }

    fn report(
        domains: Vec<CutoverDomain>,
        accounts: Vec<CutoverAccount>,
        status: &'static str,
    ) -> CutoverReport {
        CutoverReport {
            checked_at: t(5, 0),
            new_mx: vec!["mx1.new.example".into()],
            max_ttl: 900,
            domains,
            accounts,
            status,
        }
    }

    fn mx(name: &str) -> Vec<MxHost> {
        vec![MxHost {
            preference: 10,
            exchange: name.into(),
        }]
    }

    #[test]
    fn ttl_too_high_says_when_a_lowered_ttl_takes_effect() {
        let d = CutoverDomain {
            domain: "new.example".into(),
            state: Some("ttl-too-high"),
            label: Some("TTL too high"),
            mx: mx("mx.old.example"),
            ttl: Some(3600),
            ttl_source: Some("authoritative"),
            lowered_in_effect_at: Some(t(6, 0)),
            old_mx: vec!["mx.old.example".into()],
            ..CutoverDomain::default()
        };
        let text = render(&report(vec![d], vec![], "waiting"));
        assert_eq!(
            text,
            "new.example: TTL too high\n  MX 10 mx.old.example  (TTL 3,600 s)\n  TTL 3,600 s (1h) \
             is above 900 s (15m): lower the MX TTL first; lowered now, the new TTL is in \
             effect everywhere at 2026-11-30 06:00:00 UTC (in 1h)\n\nCutover: waiting (0 of 1 \
             domain switched and propagated, 0 of 0 accounts drained).\n"
        );
    }

    #[test]
    fn accounts_say_what_to_do() {
        let base = CutoverAccount {
            source_user: "a@old.example".into(),
            destination_user: "a@new.example".into(),
            switched_at: Some(t(4, 0)),
            ..CutoverAccount::default()
        };
        let cases = [
            (
                CutoverAccount {
                    state: Some("needs-final-pass"),
                    arrived_after_switch: 2,
                    last_arrival: Some(t(4, 30)),
                    ..base.clone()
                },
                "2 messages arrived at the source after the switch (last 2026-11-30 04:30:00 \
                 UTC); no final pass since the switch: run `mailshift apply`",
            ),
            (
                CutoverAccount {
                    state: Some("new-mail"),
                    arrived_after_switch: 1,
                    last_arrival: Some(t(4, 50)),
                    last_final_pass: Some(t(4, 40)),
                    since_last_final_pass: Some(1),
                    ..base.clone()
                },
                "1 message reached the source since the last final pass (began 2026-11-30 \
                 04:40:00 UTC): run another final pass",
            ),
            (
                CutoverAccount {
                    state: Some("drained"),
                    last_final_pass: Some(t(4, 40)),
                    since_last_final_pass: Some(0),
                    ..base.clone()
                },
                "a@old.example → a@new.example: drained: nothing reached the source since the \
                 last final pass (began 2026-11-30 04:40:00 UTC); no mail arrived at the source \
                 after the switch",
            ),
        ];
        for (a, want) in cases {
            let text = render(&report(vec![], vec![a], "waiting"));
            assert!(text.contains(want), "{text}");
        }
    }
}
