//! The `check` result: one row per account with its login on both sides, the errors under
//! the table, and the closing line. Also the JSON shape of `check --format json`.

use comfy_table::{presets, Table};
use serde::Serialize;

use crate::printer::escape_field as esc;
use crate::render::units::{count, counted};

#[derive(Debug, Serialize)]
pub(crate) struct SideResult {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AccountCheck {
    pub source_user: String,
    pub destination_user: String,
    pub source: SideResult,
    pub destination: SideResult,
}

#[derive(Debug, Serialize)]
pub(crate) struct CheckReport {
    pub accounts: Vec<AccountCheck>,
    pub ok: bool,
    /// The capabilities that change what mailshift does, per side (from the first account
    /// that logged in there).
    pub capabilities: Vec<CapabilityRow>,
}

/// One capability that matters, on both sides.
#[derive(Debug, Serialize)]
pub(crate) struct CapabilityRow {
    pub name: &'static str,
    /// `None` when no login succeeded on that side.
    pub source: Option<bool>,
    pub destination: Option<bool>,
    /// What mailshift does differently without it.
    pub without: &'static str,
    /// Whether a side that matters lacks it (then `without` applies to this run).
    pub lacking: bool,
}

/// Which side a capability matters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Matters {
    Destination,
    Both,
    /// mailshift does not use it (yet): `without` says so whatever the servers offer.
    NotUsed,
}

/// The capabilities `check` reports, and what mailshift does without each.
pub(crate) const CAPABILITIES: &[(&str, Matters, &str)] = &[
    (
        "UIDPLUS",
        Matters::Destination,
        "destination: the copies' UIDs are unknown, so apply cannot read them back to check \
         that the server kept the identity headers, and asks for UIDNEXT after each batch",
    ),
    (
        "MULTIAPPEND",
        Matters::Destination,
        "destination: one APPEND per message instead of one per batch (slower, most of all \
         over long round trips)",
    ),
    (
        "LITERAL+",
        Matters::Destination,
        "destination: each message waits for the server's go-ahead before its body is sent \
         (one more round trip per message; LITERAL- does the same for small messages)",
    ),
    (
        "CONDSTORE",
        Matters::Both,
        "the inventory cache cannot prove a folder's flags unchanged: a later plan reads \
         every cached folder's flags again (one round trip)",
    ),
    (
        "QUOTA",
        Matters::Destination,
        "destination: the plan cannot tell whether the copy fits; a full mailbox shows only \
         when apply is refused with [OVERQUOTA]",
    ),
    (
        "APPENDLIMIT",
        Matters::Destination,
        "destination: messages over the server's size limit are found out only when APPEND \
         refuses them (listed as failed); set [messages] max-size to skip them in the plan",
    ),
    (
        "SPECIAL-USE",
        Matters::Both,
        "Sent, Drafts, Trash, Junk and Archive are recognised by their well-known and \
         localised names instead of their attributes",
    ),
    (
        "NAMESPACE",
        Matters::Both,
        "the folder prefix is guessed from LIST (`INBOX.` when every other folder starts \
         with it)",
    ),
    (
        "COMPRESS",
        Matters::NotUsed,
        "not used: mail travels uncompressed (COMPRESS=DEFLATE is not asked for)",
    ),
];

/// Whether `atoms` (upper-cased capabilities) offer `name` (`APPENDLIMIT` and `COMPRESS`
/// come with a value: `APPENDLIMIT=35651584`, `COMPRESS=DEFLATE`).
pub(crate) fn offers(atoms: &[String], name: &str) -> bool {
    atoms.iter().any(|a| {
        a == name
            || a.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// The capability rows from each side's capabilities (`None`: no login there).
pub(crate) fn capability_rows(
    source: Option<&[String]>,
    destination: Option<&[String]>,
) -> Vec<CapabilityRow> {
    CAPABILITIES
        .iter()
        .map(|(name, matters, without)| {
            let source = source.map(|a| offers(a, name));
            let destination = destination.map(|a| offers(a, name));
            let lacking = match matters {
                Matters::Destination => destination == Some(false),
                Matters::Both => source == Some(false) || destination == Some(false),
                Matters::NotUsed => true,
            };
            CapabilityRow {
                name,
                source,
                destination,
                without,
                lacking,
            }
        })
        .collect()
}

/// The capability table: one row per capability, yes/no per side, and what mailshift does
/// without it where a side lacks it.
fn render_capabilities(rows: &[CapabilityRow]) -> String {
    let mut table = Table::new();
    table.load_style(presets::UTF8_HORIZONTAL_ONLY);
    table.set_header(vec!["capability", "source", "destination", "without it"]);
    let cell = |v: Option<bool>| match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    for r in rows {
        table.add_row(vec![
            r.name.to_string(),
            cell(r.source).to_string(),
            cell(r.destination).to_string(),
            if r.lacking {
                r.without.to_string()
            } else {
                String::new()
            },
        ]);
    }
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    table.set_width(100);
    table.to_string()
}

pub(crate) fn render(report: &CheckReport) -> String {
    let mut table = Table::new();
    table.load_style(presets::UTF8_HORIZONTAL_ONLY);
    table.set_header(vec![
        "source",
        "destination",
        "source login",
        "destination login",
    ]);
    let cell = |r: &SideResult| {
        if r.ok {
            "ok".to_string()
        } else {
            "FAILED".to_string()
        }
    };
    for a in &report.accounts {
        table.add_row(vec![
            esc(&a.source_user).into_owned(),
            esc(&a.destination_user).into_owned(),
            cell(&a.source),
            cell(&a.destination),
        ]);
    }
    let mut out = table.to_string();
    out.push('\n');
    if !report.capabilities.is_empty() {
        out.push('\n');
        let rows = &report.capabilities;
        let source_known = rows.iter().any(|r| r.source.is_some());
        let destination_known = rows.iter().any(|r| r.destination.is_some());
        if !source_known && !destination_known {
            // A table of question marks says nothing: say why instead.
            out.push_str("capabilities: unknown, no login succeeded on either side\n");
        } else {
            out.push_str(&render_capabilities(rows));
            out.push('\n');
            for (side, known) in [("source", source_known), ("destination", destination_known)] {
                if !known {
                    out.push_str(&format!(
                        "{side} capabilities: unknown, no login succeeded there\n"
                    ));
                }
            }
        }
    }
    for a in &report.accounts {
        for (side, r) in [("source", &a.source), ("destination", &a.destination)] {
            if let Some(e) = &r.error {
                out.push_str(&format!("{}: {side} {}\n", esc(&a.source_user), esc(e)));
                // Indented under its error, one line per hint.
                for hint in r.hint.iter().flat_map(|h| h.lines()) {
                    out.push_str(&format!("    hint: {}\n", esc(hint)));
                }
            }
        }
    }
    let failed = report
        .accounts
        .iter()
        .filter(|a| !(a.source.ok && a.destination.ok))
        .count();
    let total = report.accounts.len() as u64;
    if failed == 0 {
        let who = match total {
            1 => "The account".to_string(),
            n => format!("All {} accounts", count(n)),
        };
        out.push_str(&format!("{who} can log in on both sides.\n"));
    } else {
        out.push_str(&format!(
            "{} of {} failed.\n",
            count(failed as u64),
            counted(total, "account", "accounts")
        ));
    }
    out
}
