//! `mailshift check`: config and CSV are valid, every account logs in on both sides.
//! Read-only: connect, log in, log out.

use comfy_table::{presets, Table};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::account_error_text;
use crate::cli::{CheckArgs, Format};
use crate::imap::{ConnectionCaps, Credentials, ImapError, Reader};
use crate::inventory::Side;
use crate::render::units::{count, counted};
use crate::settings::{Account, Settings};
use crate::Outcome;

#[derive(Debug, Serialize)]
struct SideResult {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct AccountCheck {
    source_user: String,
    destination_user: String,
    source: SideResult,
    destination: SideResult,
}

#[derive(Debug, Serialize)]
struct CheckReport {
    accounts: Vec<AccountCheck>,
    ok: bool,
}

/// Connects, logs in and out on one side.
async fn login(
    settings: &Settings,
    account: &Account,
    side: Side,
    caps: &ConnectionCaps,
) -> SideResult {
    let _permit = caps.of(side).acquire().await.expect("never closed");
    let result: Result<(), ImapError> = async {
        let reader = Reader::connect(
            settings.server(side),
            &settings.limits,
            &Credentials::of(account, side),
        )
        .await?;
        reader.logout().await
    }
    .await;
    match result {
        Ok(()) => SideResult {
            ok: true,
            error: None,
        },
        Err(e) => SideResult {
            ok: false,
            error: Some(account_error_text(settings, account, side, &e)),
        },
    }
}

pub async fn run(settings: &Settings, args: &CheckArgs) -> anyhow::Result<Outcome> {
    let caps = ConnectionCaps::new(settings);
    let parallel = settings.limits.parallel_accounts.max(1);
    let accounts: Vec<AccountCheck> = stream::iter(settings.accounts.iter())
        .map(|account| {
            let caps = &caps;
            async move {
                let source = login(settings, account, Side::Source, caps);
                let destination = login(settings, account, Side::Destination, caps);
                let (source, destination) = tokio::join!(source, destination);
                AccountCheck {
                    source_user: account.source_user.clone(),
                    destination_user: account.destination_user.clone(),
                    source,
                    destination,
                }
            }
        })
        .buffered(parallel)
        .collect()
        .await;
    let ok = accounts.iter().all(|a| a.source.ok && a.destination.ok);
    let report = CheckReport { accounts, ok };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", render(&report)),
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

fn render(report: &CheckReport) -> String {
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
            a.source_user.clone(),
            a.destination_user.clone(),
            cell(&a.source),
            cell(&a.destination),
        ]);
    }
    let mut out = table.to_string();
    out.push('\n');
    for a in &report.accounts {
        for (side, r) in [("source", &a.source), ("destination", &a.destination)] {
            if let Some(e) = &r.error {
                // Continuation lines (`hint: ...`) are indented under their error.
                let e = e.replace('\n', "\n    ");
                out.push_str(&format!("{}: {side} {e}\n", a.source_user));
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
