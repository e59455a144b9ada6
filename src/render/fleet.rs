//! Formats the fleet view of `mailshift report` (see `crate::fleet`): a table per account and
//! a closing line for people, JSON for tools, and CSV (RFC 4180, one header row) for the
//! helpdesk's spreadsheet. `--failed` lists every message that did not arrive instead.

use comfy_table::{presets, Cell, CellAlignment, Table};

use crate::fleet::{failed_rows, FailedRow, Fleet};
use crate::render::units::{bytes, count, counted};
use crate::report::AccountStatus;

fn status_word(status: Option<AccountStatus>) -> &'static str {
    match status {
        Some(AccountStatus::Done) => "done",
        Some(AccountStatus::Partial) => "partial",
        Some(AccountStatus::Failed) => "failed",
        None => "not applied",
    }
}

/// The `complete` column: what a plan newer than the latest run said.
fn complete_word(a: &crate::fleet::FleetAccount) -> String {
    match (a.complete, a.missing) {
        (Some(true), _) => "yes".to_string(),
        (Some(false), Some(0)) => "no: folders to create".to_string(),
        (Some(false), Some(n)) => format!("no: {} missing", count(n)),
        _ => "not checked".to_string(),
    }
}

/// Text from servers and messages stays on its line, control characters shown escaped (a
/// subject could otherwise move the cursor or fake a line of output).
fn clean(text: &str) -> String {
    crate::printer::escape_field(text).into_owned()
}

/// A CSV cell holds no control characters at all (a spreadsheet row stays one line).
fn csv_clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The per-account table, each failed account's error, and the closing line.
pub(crate) fn render_text(fleet: &Fleet) -> String {
    let mut out = String::new();
    if !fleet.accounts.is_empty() {
        let mut table = Table::new();
        table.load_style(presets::UTF8_HORIZONTAL_ONLY);
        let mut header = vec![
            "account", "status", "copied", "bytes", "failed", "pending", "runs", "last run",
        ];
        if fleet.plans > 0 {
            header.push("complete");
        }
        table.set_header(header);
        let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
        for a in &fleet.accounts {
            let mut row = vec![
                Cell::new(clean(&a.source_user)),
                Cell::new(status_word(a.status)),
                right(count(a.copied)),
                right(bytes(a.bytes)),
                right(count(a.failed)),
                right(count(a.pending)),
                right(count(u64::from(a.runs))),
                Cell::new(a.finished_at.as_deref().unwrap_or("unknown")),
            ];
            if fleet.plans > 0 {
                row.push(Cell::new(complete_word(a)));
            }
            table.add_row(row);
        }
        out.push_str(&table.to_string());
        out.push('\n');
    }
    for a in &fleet.accounts {
        if let Some(e) = &a.error {
            let lines: Vec<String> = e.lines().map(clean).collect();
            out.push_str(&format!(
                "{}: error: {}\n",
                clean(&a.source_user),
                lines.join("\n    ")
            ));
        }
    }
    let s = &fleet.summary;
    if fleet.plans > 0 {
        out.push_str(&format!(
            "Checked by a plan after their last run: {} complete, {} with {} missing (`--failed` lists them); {} not checked.\n",
            count(s.accounts_complete),
            count(s.accounts_incomplete),
            counted(s.missing, "message", "messages"),
            count(s.accounts - s.accounts_complete - s.accounts_incomplete),
        ));
    }
    let sources = if fleet.plans > 0 {
        format!(
            "{} and {}",
            counted(fleet.reports as u64, "report", "reports"),
            counted(fleet.plans as u64, "plan", "plans")
        )
    } else {
        counted(fleet.reports as u64, "report", "reports")
    };
    out.push_str(&format!(
        "Fleet: {} in {}: {} done, {} partial, {} failed; {} ({}) copied, {} failed, {} pending.\n",
        counted(s.accounts, "account", "accounts"),
        sources,
        count(s.accounts_done),
        count(s.accounts_partial),
        count(s.accounts_failed),
        counted(s.copied, "message", "messages"),
        bytes(s.bytes),
        count(s.failed),
        count(s.pending),
    ));
    out
}

/// `--failed`: per account, every message not copied with its folder, date, from, subject,
/// size and the server's words; accounts whose latest run left messages pending say how many.
pub(crate) fn render_failed_text(fleet: &Fleet) -> String {
    let mut out = String::new();
    let rows = failed_rows(fleet);
    let mut pending_accounts = 0u64;
    let mut pending = 0u64;
    let mut failed_accounts = 0u64;
    let mut missing_accounts = 0u64;
    for a in &fleet.accounts {
        let mine: Vec<&FailedRow> = rows
            .iter()
            .filter(|r| r.source_user == a.source_user)
            .collect();
        // A plan newer than the run lists what is still missing, pending included.
        let pending_here = if a.complete.is_some() { 0 } else { a.pending };
        if mine.is_empty() && pending_here == 0 && a.error.is_none() {
            continue;
        }
        failed_accounts += u64::from(mine.iter().any(|r| r.kind == "failed"));
        missing_accounts += u64::from(mine.iter().any(|r| r.kind == "missing"));
        pending_accounts += u64::from(pending_here > 0);
        pending += pending_here;
        out.push_str(&format!(
            "{} → {}  ({})\n",
            clean(&a.source_user),
            clean(&a.destination_user),
            status_word(a.status)
        ));
        if let Some(e) = &a.error {
            out.push_str(&format!(
                "  error: {}\n",
                e.lines().map(clean).collect::<Vec<_>>().join("\n    ")
            ));
        }
        for r in mine {
            let why = if r.kind == "failed" {
                format!("server: {}", clean(&r.reason))
            } else {
                format!(
                    "missing on the destination (plan of {})",
                    a.checked_at.as_deref().unwrap_or("unknown time")
                )
            };
            out.push_str(&format!(
                "  {}  {}  {}  {}  ({})\n    {why}\n",
                clean(&r.folder),
                or_unknown(&r.date),
                or_unknown(&r.from),
                quoted_subject(&r.subject),
                bytes(r.size),
            ));
        }
        if pending_here > 0 {
            out.push_str(&format!(
                "  {} not copied yet (pending); `mailshift plan --detail --account {}` lists them\n",
                counted(pending_here, "message", "messages"),
                clean(&a.source_user)
            ));
        }
        out.push('\n');
    }
    let failed = rows.iter().filter(|r| r.kind == "failed").count() as u64;
    let missing = rows.len() as u64 - failed;
    let missing_part = if fleet.plans > 0 {
        format!(
            ", {} missing by a later plan in {}",
            counted(missing, "message", "messages"),
            counted(missing_accounts, "account", "accounts")
        )
    } else {
        String::new()
    };
    out.push_str(&format!(
        "Not copied: {} failed in {}{missing_part}, {} pending in {}.\n",
        counted(failed, "message", "messages"),
        counted(failed_accounts, "account", "accounts"),
        counted(pending, "message", "messages"),
        counted(pending_accounts, "account", "accounts"),
    ));
    out
}

fn or_unknown(text: &str) -> String {
    if text.trim().is_empty() {
        "(no date/from)".to_string()
    } else {
        clean(text)
    }
}

fn quoted_subject(subject: &str) -> String {
    if subject.is_empty() {
        "(no subject)".to_string()
    } else {
        format!("\"{}\"", clean(subject))
    }
}

/// The fleet as one JSON document.
pub(crate) fn render_json(fleet: &Fleet) -> String {
    serde_json::to_string_pretty(fleet).expect("a fleet view always serializes")
}

/// `--failed --format json`: the messages not copied.
pub(crate) fn render_failed_json(fleet: &Fleet) -> String {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        format_version: u32,
        reports: usize,
        failed: Vec<FailedRow>,
        summary: &'a crate::fleet::FleetSummary,
    }
    serde_json::to_string_pretty(&Doc {
        format_version: fleet.format_version,
        reports: fleet.reports,
        failed: failed_rows(fleet),
        summary: &fleet.summary,
    })
    .expect("a fleet view always serializes")
}

/// A spreadsheet opens a cell starting with `=`, `+`, `-` or `@` as a formula: a subject
/// or a server's words are mail from anyone, so such a cell gets a leading `'`.
fn text_cell(text: &str) -> String {
    let text = csv_clean(text);
    if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text
    }
}

fn csv_string(write: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>) -> String {
    // RFC 4180: CRLF line ends, quotes doubled, fields quoted when needed.
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    write(&mut w).expect("writing CSV to memory cannot fail");
    let bytes = w.into_inner().expect("writing CSV to memory cannot fail");
    String::from_utf8(bytes).expect("every cell is UTF-8")
}

/// One row per account, one header row.
pub(crate) fn render_csv(fleet: &Fleet) -> String {
    csv_string(|w| {
        w.write_record([
            "source_user",
            "destination_user",
            "status",
            "copied",
            "bytes",
            "failed",
            "pending",
            "already_present",
            "skipped",
            "runs",
            "finished_at",
            "report_file",
            "error",
            "complete",
            "missing",
            "checked_at",
        ])?;
        for a in &fleet.accounts {
            w.write_record([
                text_cell(&a.source_user),
                text_cell(&a.destination_user),
                status_word(a.status).to_string(),
                a.copied.to_string(),
                a.bytes.to_string(),
                a.failed.to_string(),
                a.pending.to_string(),
                a.already_present.to_string(),
                a.skipped.to_string(),
                a.runs.to_string(),
                a.finished_at.clone().unwrap_or_default(),
                text_cell(a.report_file.as_deref().unwrap_or("")),
                text_cell(a.error.as_deref().unwrap_or("")),
                a.complete.map_or(String::new(), |c| c.to_string()),
                a.missing.map_or(String::new(), |n| n.to_string()),
                a.checked_at.clone().unwrap_or_default(),
            ])?;
        }
        Ok(())
    })
}

/// `--failed --format csv`: one row per message not copied, one header row.
pub(crate) fn render_failed_csv(fleet: &Fleet) -> String {
    csv_string(|w| {
        w.write_record([
            "source_user",
            "destination_user",
            "folder",
            "date",
            "from",
            "subject",
            "size",
            "uid",
            "reason",
            "kind",
        ])?;
        for r in failed_rows(fleet) {
            w.write_record([
                text_cell(&r.source_user),
                text_cell(&r.destination_user),
                text_cell(&r.folder),
                text_cell(&r.date),
                text_cell(&r.from),
                text_cell(&r.subject),
                r.size.to_string(),
                r.uid.to_string(),
                text_cell(&r.reason),
                r.kind.to_string(),
            ])?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::merge;
    use crate::fleet::tests::{input, run};

    const T: &str = "2026-11-30T05:00:00Z";

    fn sample() -> Fleet {
        let mut b = run(
            "b@old",
            3,
            &["=HYPERLINK(\"x\")", "Bill, \"Q3\"\r\nnumbers"],
            2,
            Some(T),
        );
        b.failed[0].reason = "NO [LIMIT] Message too large".into();
        let mut c = run("c@old", 0, &[], 7, Some(T));
        c.error = Some("login refused\nhint: check the password".into());
        c.settle();
        merge(&[input(
            "shard-0.json",
            vec![run("a@old", 1204, &[], 0, Some(T)), b, c],
        )])
    }

    #[test]
    fn text_has_a_row_per_account_and_the_closing_line() {
        let text = render_text(&sample());
        for want in [
            "a@old", "done", "1,204", "b@old", "partial", "c@old", "failed",
            "2026-11-30T05:00:00Z",
            "c@old: error: login refused\n    hint: check the password\n",
            "Fleet: 3 accounts in 1 report: 1 done, 1 partial, 1 failed; 1,207 messages (117.9 KiB) copied, 2 failed, 9 pending.\n",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        assert!(text.ends_with("pending.\n"));
    }

    #[test]
    fn failed_text_lists_each_message_with_the_servers_words() {
        let text = render_failed_text(&sample());
        for want in [
            "b@old → new-b@old  (partial)\n",
            "  INBOX  Mon, 1 Jan 2024 10:00:00 +0000  bob@example.com  \"=HYPERLINK(\"x\")\"  (1000 B)\n    server: NO [LIMIT] Message too large\n",
            // Control characters never reach the terminal.
            "\"Bill, \"Q3\"\\u{d}\\u{a}numbers\"",
            "  2 messages not copied yet (pending)",
            "c@old → new-c@old  (failed)\n  error: login refused\n",
            "Not copied: 2 messages failed in 1 account, 9 messages pending in 2 accounts.\n",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        assert!(!text.contains("a@old"), "{text}");
    }

    #[test]
    fn csv_is_rfc_4180_with_one_header_row() {
        let text = render_failed_csv(&sample());
        let mut lines = text.split("\r\n");
        assert_eq!(
            lines.next(),
            Some("source_user,destination_user,folder,date,from,subject,size,uid,reason,kind")
        );
        // Read it back as a spreadsheet would.
        let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][5], "'=HYPERLINK(\"x\")", "formulas are defused");
        assert_eq!(&rows[1][5], "Bill, \"Q3\"  numbers");
        assert_eq!(&rows[0][8], "NO [LIMIT] Message too large");
        assert_eq!(&rows[0][6], "1000");
        assert!(text.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{text}");

        let text = render_csv(&sample());
        let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        assert_eq!(&r.headers().unwrap()[0], "source_user");
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (&rows[0][0], &rows[0][2], &rows[0][3]),
            ("a@old", "done", "1204")
        );
        assert_eq!(&rows[2][12], "login refused hint: check the password");
    }

    #[test]
    fn plans_add_the_complete_column_and_the_missing_messages() {
        use crate::fleet::merge_with_plans;
        use crate::fleet::tests::planned;
        let reports = [input(
            "shard-0.json",
            vec![
                run("a@old", 5, &[], 0, Some(T)),
                run("b@old", 1, &[], 3, Some(T)),
            ],
        )];
        let later = "2026-11-30T06:00:00Z";
        let fleet = merge_with_plans(
            &reports,
            &[
                planned("a@old", &[], later),
                planned("b@old", &[("Work", 8, "Contract")], later),
            ],
        );
        let text = render_text(&fleet);
        for want in [
            "complete",
            "yes",
            "no: 1 missing",
            "Checked by a plan after their last run: 1 complete, 1 with 1 message missing (`--failed` lists them); 0 not checked.\n",
            "Fleet: 2 accounts in 1 report and 2 plans:",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        let text = render_failed_text(&fleet);
        for want in [
            "b@old → new-b@old  (partial)\n  Work  Tue, 2 Jan 2024 09:00:00 +0000  carol@example.com  \"Contract\"  (2.0 KiB)\n    missing on the destination (plan of 2026-11-30T06:00:00Z)\n",
            "Not copied: 0 messages failed in 0 accounts, 1 message missing by a later plan in 1 account, 0 messages pending in 0 accounts.\n",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        assert!(
            !text.contains("pending;"),
            "the plan supersedes pending\n{text}"
        );
        let csv = render_failed_csv(&fleet);
        assert!(csv.ends_with(",8,,missing\r\n"), "{csv}");
        let csv = render_csv(&fleet);
        assert!(csv.contains(",true,0,2026-11-30T06:00:00Z\r\n"), "{csv}");
    }

    #[test]
    fn json_documents() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&sample())).unwrap();
        assert_eq!(v["summary"]["accounts"], 3);
        assert_eq!(v["accounts"][1]["failed"], 2);
        assert!(v["accounts"][1].get("failed_messages").is_none());
        let v: serde_json::Value = serde_json::from_str(&render_failed_json(&sample())).unwrap();
        assert_eq!(v["failed"][0]["reason"], "NO [LIMIT] Message too large");
        assert_eq!(v["failed"][1]["subject"], "Bill, \"Q3\"\r\nnumbers");
    }
}
