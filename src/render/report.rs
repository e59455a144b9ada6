//! The apply report for people: one table row per account, the errors and failed
//! messages under it, and the closing `Apply …` line.

use comfy_table::{presets, Cell, CellAlignment, Table};

use crate::printer::escape_field as esc;
use crate::render::units::{bytes, count, counted};
use crate::report::{AccountStatus, Report};

/// The table and the closing line, for people.
pub(crate) fn report(report: &Report) -> String {
    let mut table = Table::new();
    table.load_style(presets::UTF8_HORIZONTAL_ONLY);
    table.set_header(vec![
        "account",
        "status",
        "folders +",
        "copied",
        "bytes",
        "skipped",
        "failed",
        "pending",
        "time",
    ]);
    for a in &report.accounts {
        let status = match a.status {
            AccountStatus::Done => "done",
            AccountStatus::Partial => "partial",
            AccountStatus::Failed => "failed",
        };
        let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
        table.add_row(vec![
            Cell::new(esc(&a.source_user)),
            Cell::new(status),
            right(count(a.folders_created)),
            right(count(a.copied)),
            right(bytes(a.bytes)),
            right(count(a.skipped)),
            right(count(a.failed.len() as u64)),
            right(count(a.pending)),
            right(format!("{:.1}s", a.seconds)),
        ]);
    }
    let mut out = table.to_string();
    out.push('\n');
    for a in &report.accounts {
        if let Some(e) = &a.error {
            out.push_str(&format!("{}: error: {}\n", esc(&a.source_user), esc(e)));
            // Indented under its error, one line per hint.
            for hint in a.hint.iter().flat_map(|h| h.lines()) {
                out.push_str(&format!("    hint: {}\n", esc(hint)));
            }
        }
        for f in &a.failed {
            out.push_str(&format!(
                "{}: failed: `{}` uid {}: {}\n",
                esc(&a.source_user),
                esc(&f.folder),
                f.uid,
                esc(&f.reason)
            ));
            for hint in f.hint.iter().flat_map(|h| h.lines()) {
                out.push_str(&format!("    hint: {}\n", esc(hint)));
            }
        }
        if a.retries > 0 || a.reconnects > 0 {
            out.push_str(&format!(
                "{}: connections were lost or refused: {}, {}, {} waiting\n",
                esc(&a.source_user),
                counted(a.retries, "retry", "retries"),
                counted(a.reconnects, "reconnect", "reconnects"),
                humantime::format_duration(std::time::Duration::from_secs(
                    a.retry_wait_seconds.round() as u64
                )),
            ));
        }
        for folder in &a.folders_recreated {
            out.push_str(&format!(
                "{}: destination folder `{}` was deleted during the run and made again; \
                 messages copied into it before are gone with it\n",
                esc(&a.source_user),
                esc(folder),
            ));
        }
        if a.pacing_waits > 0 {
            out.push_str(&format!(
                "{}: pacing slowed the copy: {} for {} in all ([limits] caps)\n",
                esc(&a.source_user),
                counted(a.pacing_waits, "wait", "waits"),
                humantime::format_duration(std::time::Duration::from_secs(
                    a.pacing_wait_seconds.round() as u64
                )),
            ));
        }
        if !a.vanished.is_empty() {
            out.push_str(&format!(
                "{}: {} vanished from the source since the plan (not copied)\n",
                esc(&a.source_user),
                counted(
                    a.vanished.len() as u64,
                    "planned message",
                    "planned messages"
                ),
            ));
        }
    }
    let s = &report.summary;
    out.push_str(&format!(
        "{}: {} ({}) copied, {} created; {} failed, {} pending.\n",
        if report.interrupted {
            "Apply interrupted"
        } else if report.all_done() {
            "Apply complete"
        } else {
            "Apply incomplete"
        },
        counted(s.copied, "message", "messages"),
        bytes(s.bytes),
        counted(s.folders_created, "folder", "folders"),
        count(s.failed),
        count(s.pending),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{AccountReport, FailedMessage};

    #[test]
    fn recreated_folders_are_told() {
        let mut a = AccountReport::new("a", "b");
        a.folders_recreated = vec!["Projects/2024".into()];
        a.settle();
        let text = report(&Report::new(vec![a], false));
        assert!(
            text.contains(
                "a: destination folder `Projects/2024` was deleted during the run and made \
                 again; messages copied into it before are gone with it\n"
            ),
            "{text}"
        );
        let quiet = report(&Report::new(vec![AccountReport::new("a", "b")], false));
        assert!(!quiet.contains("made again"), "{quiet}");
    }

    #[test]
    fn pacing_waits_are_told() {
        let mut a = AccountReport::new("a", "b");
        a.pacing_waits = 3;
        a.pacing_wait_seconds = 125.4;
        a.settle();
        let text = report(&Report::new(vec![a], false));
        assert!(
            text.contains("a: pacing slowed the copy: 3 waits for 2m 5s in all ([limits] caps)\n"),
            "{text}"
        );
        let quiet = report(&Report::new(vec![AccountReport::new("a", "b")], false));
        assert!(!quiet.contains("pacing"), "{quiet}");
    }

    #[test]
    fn retries_and_hints_of_failed_messages_are_told() {
        let mut a = AccountReport::new("a", "b");
        a.retries = 12;
        a.reconnects = 1;
        a.retry_wait_seconds = 61.2;
        a.failed.push(FailedMessage {
            folder: "INBOX".into(),
            uid: 9,
            reason: "the connection was lost 10 times".into(),
            date: String::new(),
            from: String::new(),
            subject: String::new(),
            size: 0,
            hint: Some("skip such messages with `max-size`".into()),
        });
        a.settle();
        let text = report(&Report::new(vec![a], false));
        assert!(
            text.contains(
                "a: failed: `INBOX` uid 9: the connection was lost 10 times\n    hint: skip such messages with `max-size`\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "a: connections were lost or refused: 12 retries, 1 reconnect, 1m 1s waiting\n"
            ),
            "{text}"
        );
        let quiet = report(&Report::new(vec![AccountReport::new("a", "b")], false));
        assert!(!quiet.contains("retries"), "{quiet}");
    }

    #[test]
    fn failed_messages_are_listed_under_the_table() {
        let mut a = AccountReport::new("a", "b");
        a.failed.push(FailedMessage {
            folder: "INBOX".into(),
            uid: 7,
            reason: "too big".into(),
            date: String::new(),
            from: String::new(),
            subject: String::new(),
            size: 0,
            hint: None,
        });
        a.settle();
        let r = Report::new(vec![a], false);
        let text = report(&r);
        assert!(text.contains("failed: `INBOX` uid 7: too big"), "{text}");
        assert!(text.ends_with("Apply incomplete: 0 messages (0 B) copied, 0 folders created; 1 failed, 0 pending.\n"), "{text}");
    }
}
