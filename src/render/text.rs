//! The terraform-style text plan (docs/plan-output.md): one block per account, an
//! optional per-account table, and the summary line, always the last line of stdout.

use std::fmt::Write as _;

use comfy_table::{presets, Cell, CellAlignment, Table};
use similar::{ChangeTag, TextDiff};

use unicode_width::UnicodeWidthStr;

use super::units::{bytes, count, counted};
use crate::plan::{
    AccountPlan, Deletions, FolderAction, FolderPlan, RuleKind, SkipReason, Summary,
};
use crate::planfile::PlanFile;
use crate::printer::escape_field as esc;

/// Options for rendering.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TextOptions {
    /// List every message to copy.
    pub detail: bool,
}

/// The whole plan as text, ending with the `Plan:` (or `No changes.`) line and a newline.
pub(crate) fn render_plan(plan: &PlanFile, options: TextOptions) -> String {
    let mut out = String::new();
    for account in &plan.accounts {
        render_account(&mut out, account, options);
        out.push('\n');
    }
    if plan.accounts.len() > 1 {
        out.push_str(&account_table(&plan.accounts));
        out.push_str("\n\n");
    }
    out.push_str(&summary_line(&plan.summary, plan.has_errors()));
    out.push('\n');
    out
}

/// ANSI colours for a terminal: additions green, merges yellow, errors red, the closing
/// line bold. Applied to the rendered text, so colourless output is never affected.
pub(crate) fn colorize(text: &str) -> String {
    const GREEN: &str = "\x1b[32m";
    const YELLOW: &str = "\x1b[33m";
    const RED: &str = "\x1b[31m";
    const BOLD: &str = "\x1b[1m";
    const RESET: &str = "\x1b[0m";
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let trimmed = body.trim_start();
        let style = if trimmed.starts_with("+ ") {
            Some(GREEN)
        } else if trimmed.starts_with("~ ") {
            Some(YELLOW)
        } else if trimmed.starts_with("error:") {
            Some(RED)
        } else if body.starts_with("Plan: ") || body.starts_with("No changes.") {
            Some(BOLD)
        } else {
            None
        };
        match style {
            Some(style) => {
                out.push_str(style);
                out.push_str(body);
                out.push_str(RESET);
            }
            None => out.push_str(body),
        }
        out.push_str(newline);
    }
    out
}

/// `Plan: 1 folder to create, 1,216 messages (85.3 MiB) to copy; 10,443 already present, 4 skipped.`
/// or `No changes. The destination has every message.`
pub(crate) fn summary_line(s: &Summary, any_error: bool) -> String {
    if !s.has_changes() && !any_error {
        return "No changes. The destination has every message.".to_string();
    }
    format!(
        "Plan: {} to create, {} ({}) to copy; {} already present, {} skipped.",
        counted(s.folders_to_create, "folder", "folders"),
        counted(s.messages_to_copy, "message", "messages"),
        bytes(s.bytes_to_copy),
        count(s.already_present),
        count(s.skipped),
    )
}

fn folder_marker(f: &FolderPlan) -> char {
    if f.action == FolderAction::Create {
        '+'
    } else if f.merged {
        '~'
    } else {
        '='
    }
}

fn folder_notes(f: &FolderPlan) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(su) = f.special_use {
        notes.push(su.attribute().to_string());
    }
    if f.merged {
        notes.push("merged".to_string());
    }
    if f.rule == RuleKind::Rename {
        notes.push("renamed".to_string());
    }
    if f.rule == RuleKind::WellKnownName {
        notes.push("by name".to_string());
    }
    if f.renamed_delimiter {
        notes.push("delimiter in name replaced by `_`".to_string());
    }
    if f.case_match {
        notes.push("case".to_string());
    }
    if f.subscribes_existing() {
        notes.push("subscribe".to_string());
    }
    // Cyrus and Courier keep `Archive/2019` as `INBOX.Archive.2019`: show the real path
    // wherever it differs from the display name.
    let on_server = crate::mutf7::decode(f.destination_wire.as_str())
        .unwrap_or_else(|_| f.destination_wire.as_str().to_owned());
    if on_server != f.destination {
        notes.push(format!("`{}` on the server", esc(&on_server)));
    }
    notes
}

fn is_listed(f: &FolderPlan, detail: bool) -> bool {
    detail || !f.is_noop() || f.merged || f.renamed_delimiter || f.case_match
}

/// One account's block.
pub(crate) fn render_account(out: &mut String, a: &AccountPlan, options: TextOptions) {
    let _ = writeln!(
        out,
        "{} → {}",
        esc(&a.source_user),
        esc(&a.destination_user)
    );
    if let Some(error) = &a.error {
        // Server words inside the error are escaped, line breaks too: it is one line.
        let _ = writeln!(out, "  error: {}", esc(error));
        for hint in a.hint.iter().flat_map(|h| h.lines()) {
            let _ = writeln!(out, "    hint: {}", esc(hint));
        }
        return;
    }
    let listed: Vec<&FolderPlan> = a
        .folders
        .iter()
        .filter(|f| is_listed(f, options.detail))
        .collect();
    let unchanged = a.folders.len() - listed.len();
    if !a.folders.is_empty() || !a.ignored_folders.is_empty() {
        let _ = writeln!(out, "  folders");
        // Display width, not chars: `日本語フォルダ` takes two columns per character.
        let width = listed
            .iter()
            .map(|f| esc(&f.destination).width())
            .max()
            .unwrap_or(0);
        for f in &listed {
            let sources: Vec<String> = f
                .sources
                .iter()
                .map(|s| match s.only_there {
                    Some(n) => format!("{} (only there: {})", esc(&s.name), count(n)),
                    None => esc(&s.name).into_owned(),
                })
                .collect();
            let notes = folder_notes(f);
            let destination = esc(&f.destination);
            let pad = width.saturating_sub(destination.width());
            let from = if sources.is_empty() {
                "(parent of a new folder)".to_string()
            } else {
                format!("← {}", sources.join(" + "))
            };
            let _ = write!(
                out,
                "    {} {}{}  {from}",
                folder_marker(f),
                destination,
                " ".repeat(pad),
            );
            if !notes.is_empty() {
                let _ = write!(out, "  ({})", notes.join(", "));
            }
            out.push('\n');
        }
        if unchanged > 0 {
            let _ = writeln!(
                out,
                "    = {} in place, nothing to copy",
                if listed.is_empty() {
                    counted(unchanged as u64, "folder", "folders")
                } else {
                    counted(unchanged as u64, "other folder", "other folders")
                },
            );
        }
        for ignored in &a.ignored_folders {
            let _ = writeln!(
                out,
                "    · {}  not migrated: {} ({})",
                esc(&ignored.source),
                esc(&ignored.reason),
                counted(ignored.messages, "message", "messages"),
            );
        }
    }
    let with_messages: Vec<&FolderPlan> = a
        .folders
        .iter()
        .filter(|f| !f.copy.is_empty() || !f.skipped.is_empty())
        .collect();
    if !with_messages.is_empty() {
        let _ = writeln!(out, "  messages");
        let count_w = with_messages
            .iter()
            .map(|f| count(f.copy.len() as u64).len())
            .max()
            .unwrap_or(1);
        let size_w = with_messages
            .iter()
            .map(|f| bytes(f.bytes_to_copy()).len() + 2)
            .max()
            .unwrap_or(0);
        for f in with_messages {
            if !f.copy.is_empty() {
                let size = format!("({})", bytes(f.bytes_to_copy()));
                let _ = writeln!(
                    out,
                    "    + {:>count_w$} {:<size_w$}  {}",
                    count(f.copy.len() as u64),
                    size,
                    esc(&f.destination),
                );
                if options.detail {
                    for m in &f.copy {
                        let _ = writeln!(
                            out,
                            "        {}  {}  {}  ({})",
                            esc(nonempty(m.display.date(), "(no date)")),
                            esc(nonempty(m.display.from(), "(no sender)")),
                            esc(nonempty(m.display.subject(), "(no subject)")),
                            bytes(m.size)
                        );
                    }
                }
            }
            if !f.skipped.is_empty() {
                let deleted = f
                    .skipped
                    .iter()
                    .filter(|s| s.reason == SkipReason::Deleted)
                    .count();
                let too_big: Vec<u64> = f
                    .skipped
                    .iter()
                    .filter(|s| s.reason == SkipReason::OverMaxSize)
                    .map(|s| s.size)
                    .collect();
                let gone = f
                    .skipped
                    .iter()
                    .filter(|s| s.reason == SkipReason::DeletedOnDestination)
                    .count();
                let mut parts = Vec::new();
                if deleted > 0 {
                    parts.push(format!("{} \\Deleted", count(deleted as u64)));
                }
                if gone > 0 {
                    parts.push(format!("{} deleted on the destination", count(gone as u64)));
                }
                if !too_big.is_empty() {
                    let sizes: Vec<String> = too_big.iter().map(|b| bytes(*b)).collect();
                    parts.push(format!(
                        "{} over max-size ({})",
                        count(too_big.len() as u64),
                        sizes.join(", ")
                    ));
                }
                let refused: Vec<String> = f
                    .skipped
                    .iter()
                    .filter(|s| s.reason == SkipReason::OverAppendLimit)
                    .map(|s| bytes(s.size))
                    .collect();
                if !refused.is_empty() {
                    parts.push(format!(
                        "{} over the destination's APPENDLIMIT ({})",
                        count(refused.len() as u64),
                        refused.join(", ")
                    ));
                }
                let _ = writeln!(
                    out,
                    "      skipped in {}: {}",
                    esc(&f.destination),
                    parts.join(", ")
                );
                if options.detail {
                    for m in &f.skipped {
                        let _ = writeln!(
                            out,
                            "        uid {}  {}  ({}): {}",
                            m.uid,
                            nonempty(&m.subject, "(no subject)"),
                            bytes(m.size),
                            m.reason.describe()
                        );
                    }
                }
            }
        }
    }
    let ambiguous: u64 = a.folders.iter().map(|f| f.ambiguous).sum();
    if ambiguous > 0 {
        let _ = writeln!(
            out,
            "  note: {} shared by several messages could not be told apart by content; the counts are exact, the copies are chosen by UID",
            counted(ambiguous, "identity key", "identity keys"),
        );
    }
    let _ = writeln!(
        out,
        "  already present: {}",
        count(a.summary.already_present)
    );
    after_cutover_lines(out, a);
    if a.summary.flags_to_add > 0 {
        let _ = writeln!(
            out,
            "  flags: {} get the source's missing flags (flags-on-existing = \"add\")",
            counted(
                a.summary.flags_to_add,
                "existing message",
                "existing messages"
            ),
        );
        if options.detail {
            for f in a.folders.iter().filter(|f| !f.flag_updates.is_empty()) {
                for u in &f.flag_updates {
                    let _ = writeln!(
                        out,
                        "    ~ {} uid {}: +{}",
                        esc(&f.destination),
                        u.uid,
                        u.add.join(" +")
                    );
                }
            }
        }
    }
    if a.summary.folders_to_create > 0 {
        out.push_str(&tree_diff(&a.tree_before, &a.tree_after));
    }
}

/// `moved on the destination: N` and `deleted on the destination: N` (docs/plan-output.md,
/// ARCHITECTURE.md "After cutover"), when they apply; and, when nothing is known about deletions while the
/// destination already holds matching mail, says so.
fn after_cutover_lines(out: &mut String, a: &AccountPlan) {
    let s = &a.summary;
    if s.moved_on_destination > 0 {
        let _ = writeln!(
            out,
            "  moved on the destination: {}",
            count(s.moved_on_destination)
        );
    }
    if s.deleted_on_destination > 0 {
        let _ = writeln!(
            out,
            "  deleted on the destination: {}",
            count(s.deleted_on_destination)
        );
    } else if a.deletions == Deletions::Unknown && s.already_present > 0 {
        let _ = writeln!(
            out,
            "  deleted on the destination: not known (no ledger yet; anything missing is copied)"
        );
    }
    if let Some(p) = &a.pacing {
        let _ = writeln!(out, "  at least {} at {}", least_duration(p.seconds), p.cap);
    }
    if let Some(q) = &a.quota {
        let _ = writeln!(
            out,
            "  destination storage: {} free of {} (quota)",
            bytes(q.free()),
            bytes(q.limit)
        );
        if q.over_quota {
            let _ = writeln!(
                out,
                "  over quota: the copy needs {}, {} is free; apply stops the account at the quota",
                bytes(s.bytes_to_copy),
                bytes(q.free())
            );
        }
    }
}

/// A lower bound in words, rounded down: `10.3 days`, `5 hours`, `1 minute`, `42 seconds`.
fn least_duration(seconds: u64) -> String {
    let units: [(u64, &str, &str); 3] = [
        (86_400, "day", "days"),
        (3_600, "hour", "hours"),
        (60, "minute", "minutes"),
    ];
    for (size, one, many) in units {
        if seconds >= size {
            // One decimal below 10 (rounded down, it stays a lower bound), whole above.
            let tenths = seconds * 10 / size;
            return if tenths >= 100 || tenths.is_multiple_of(10) {
                let n = tenths / 10;
                format!("{n} {}", if n == 1 { one } else { many })
            } else {
                format!("{}.{} {many}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{seconds} second{}", if seconds == 1 { "" } else { "s" })
}

fn nonempty<'a>(s: &'a str, fallback: &'a str) -> &'a str {
    if s.is_empty() {
        fallback
    } else {
        s
    }
}

/// The destination folder tree before → after, as a line diff.
pub(crate) fn tree_diff(before: &[String], after: &[String]) -> String {
    let before = before.join("\n") + "\n";
    let after = after.join("\n") + "\n";
    let diff = TextDiff::from_lines(&before, &after);
    let mut out = String::from("  destination folders after apply\n");
    for change in diff.iter_all_changes() {
        let marker = match change.tag() {
            ChangeTag::Equal => ' ',
            ChangeTag::Insert => '+',
            // A plan never removes a folder; shown if it ever did, so it cannot hide.
            ChangeTag::Delete => '-',
        };
        let _ = writeln!(
            out,
            "    {marker} {}",
            esc(change.value().trim_end_matches('\n'))
        );
    }
    out
}

/// Per-account summary table.
pub(crate) fn account_table(accounts: &[AccountPlan]) -> String {
    let mut table = Table::new();
    table.load_style(presets::UTF8_HORIZONTAL_ONLY);
    table.set_header(vec![
        "account",
        "folders +",
        "messages +",
        "size",
        "present",
        "skipped",
        "status",
    ]);
    for a in accounts {
        let s = &a.summary;
        let status = if a.error.is_some() {
            "error"
        } else if a.quota.is_some_and(|q| q.over_quota) {
            "over quota"
        } else if s.has_changes() {
            "changes"
        } else {
            "up to date"
        };
        table.add_row(vec![
            Cell::new(esc(&a.source_user)),
            Cell::new(count(s.folders_to_create)).set_alignment(CellAlignment::Right),
            Cell::new(count(s.messages_to_copy)).set_alignment(CellAlignment::Right),
            Cell::new(bytes(s.bytes_to_copy)).set_alignment(CellAlignment::Right),
            Cell::new(count(s.already_present)).set_alignment(CellAlignment::Right),
            Cell::new(count(s.skipped)).set_alignment(CellAlignment::Right),
            Cell::new(status),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_grammar() {
        let s = Summary {
            folders_to_create: 1,
            messages_to_copy: 1216,
            bytes_to_copy: 89_443_532,
            already_present: 10_443,
            skipped: 4,
            flags_to_add: 0,
            ..Summary::default()
        };
        assert_eq!(
            summary_line(&s, false),
            "Plan: 1 folder to create, 1,216 messages (85.3 MiB) to copy; 10,443 already present, 4 skipped."
        );
        let one = Summary {
            messages_to_copy: 1,
            bytes_to_copy: 0,
            ..Summary::default()
        };
        assert_eq!(
            summary_line(&one, false),
            "Plan: 0 folders to create, 1 message (0 B) to copy; 0 already present, 0 skipped."
        );
    }

    #[test]
    fn least_durations_round_down() {
        assert_eq!(least_duration(1), "1 second");
        assert_eq!(least_duration(59), "59 seconds");
        assert_eq!(least_duration(60), "1 minute");
        assert_eq!(least_duration(90), "1.5 minutes");
        assert_eq!(least_duration(3_599), "59 minutes");
        assert_eq!(least_duration(5 * 3_600 + 1), "5 hours");
        assert_eq!(least_duration(897_808), "10 days");
        assert_eq!(least_duration(86_400 * 4 + 43_200), "4.5 days");
        assert_eq!(least_duration(86_400 * 2 - 1), "1.9 days");
    }

    #[test]
    fn no_changes_only_without_errors() {
        let s = Summary::default();
        assert_eq!(
            summary_line(&s, false),
            "No changes. The destination has every message."
        );
        assert!(summary_line(&s, true).starts_with("Plan: 0 folders to create"));
    }

    #[test]
    fn last_line_is_the_summary() {
        let plan = PlanFile::new(
            "d".into(),
            vec![AccountPlan::failed(
                "a",
                "b",
                "source: boom".into(),
                Some("fix it".into()),
            )],
        );
        let text = render_plan(&plan, TextOptions::default());
        assert!(
            text.contains("  error: source: boom\n    hint: fix it\n"),
            "{text}"
        );
        assert_eq!(
            text.lines().last().unwrap(),
            "Plan: 0 folders to create, 0 messages (0 B) to copy; 0 already present, 0 skipped."
        );
    }

    #[test]
    fn colours_only_wrap_lines() {
        let plain = "a → b\n    + INBOX\n  error: x\nPlan: 1 folder to create\n";
        let coloured = colorize(plain);
        assert!(
            coloured.contains("\x1b[32m    + INBOX\x1b[0m\n"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("\x1b[31m  error: x\x1b[0m\n"),
            "{coloured:?}"
        );
        let stripped = coloured
            .replace("\x1b[32m", "")
            .replace("\x1b[31m", "")
            .replace("\x1b[1m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, plain);
    }

    #[test]
    fn tree_diff_marks_new_folders() {
        let before = vec!["INBOX".to_string(), "Sent".to_string()];
        let after = vec![
            "INBOX".to_string(),
            "Projects".to_string(),
            "Sent".to_string(),
        ];
        let d = tree_diff(&before, &after);
        assert!(d.contains("    + Projects\n"), "{d}");
        assert!(d.contains("      INBOX\n"), "{d}");
    }
}
