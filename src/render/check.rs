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
