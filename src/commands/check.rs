//! `mailshift check`: config and CSV are valid, every account logs in on both sides.
//! Read-only: connect, log in, log out.

use comfy_table::{presets, Table};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::{credentials, ConnectionCaps};
use crate::cli::{CheckArgs, Format};
use crate::imap::{ImapError, Reader};
use crate::settings::{Account, ServerSettings, Settings};
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

async fn login(
    server: &ServerSettings,
    settings: &Settings,
    user: &str,
    password: &Option<secrecy::SecretString>,
    account: &Account,
    side: &str,
) -> SideResult {
    let result: Result<(), ImapError> = async {
        let reader =
            Reader::connect(server, &settings.limits, &credentials(user, password)).await?;
        reader.logout().await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => SideResult {
            ok: true,
            error: None,
        },
        Err(e) => {
            // The error names `host:port` itself.
            let mut text = e.to_string();
            if matches!(e, ImapError::AuthFailed { .. }) && !text.contains("hint:") {
                text.push_str(&format!(
                    "\nhint: check the {side} user and password in `{}` line {}",
                    settings.csv_path.display(),
                    account.line
                ));
            }
            SideResult {
                ok: false,
                error: Some(text),
            }
        }
    }
}

pub async fn run(settings: &Settings, args: &CheckArgs) -> anyhow::Result<Outcome> {
    let caps = ConnectionCaps::new(settings);
    let parallel = settings.limits.parallel_accounts.max(1);
    let accounts: Vec<AccountCheck> = stream::iter(settings.accounts.iter())
        .map(|account| {
            let caps = caps.clone();
            async move {
                let source = async {
                    let _p = caps.source.acquire().await.expect("never closed");
                    login(
                        &settings.source,
                        settings,
                        &account.source_user,
                        &account.source_password,
                        account,
                        "source",
                    )
                    .await
                };
                let destination = async {
                    let _p = caps.destination.acquire().await.expect("never closed");
                    login(
                        &settings.destination,
                        settings,
                        &account.destination_user,
                        &account.destination_password,
                        account,
                        "destination",
                    )
                    .await
                };
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
                out.push_str(&format!("{}: {side} {e}\n", a.source_user));
            }
        }
    }
    let failed = report
        .accounts
        .iter()
        .filter(|a| !(a.source.ok && a.destination.ok))
        .count();
    if failed == 0 {
        out.push_str(&format!(
            "All {} accounts can log in on both sides.\n",
            report.accounts.len()
        ));
    } else {
        out.push_str(&format!(
            "{failed} of {} accounts failed.\n",
            report.accounts.len()
        ));
    }
    out
}
