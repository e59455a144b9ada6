//! `mailshift check`: config and CSV are valid, every account logs in on both sides.
//! Read-only: connect, log in, log out.

use futures::stream::{self, StreamExt};

use super::AccountError;
use crate::cli::{CheckArgs, Format};
use crate::imap::{ConnectionCaps, Credentials, ImapError, Reader};
use crate::model::Side;
use crate::printer::Printer;
use crate::render::check::{capability_rows, render, AccountCheck, CheckReport, SideResult};
use crate::settings::{Account, Settings};
use crate::Outcome;

/// Capabilities as announced after login, upper-cased.
type Atoms = Vec<String>;

/// Connects, logs in and out on one side; the capabilities after login.
async fn login(
    settings: &Settings,
    account: &Account,
    side: Side,
    caps: &ConnectionCaps,
) -> (SideResult, Option<Vec<String>>) {
    let _permit = caps.of(side).acquire().await.expect("never closed");
    let result: Result<Vec<String>, ImapError> = async {
        let reader = Reader::connect(
            settings.server(side),
            &settings.limits,
            &Credentials::of(account, side),
        )
        .await?;
        let atoms = reader.capabilities().iter().map(str::to_string).collect();
        reader.logout().await?;
        Ok(atoms)
    }
    .await;
    match result {
        Ok(atoms) => (
            SideResult {
                ok: true,
                error: None,
                hint: None,
            },
            Some(atoms),
        ),
        Err(e) => {
            let error = AccountError::of_imap(settings, account, side, &e, &e);
            (
                SideResult {
                    ok: false,
                    error: Some(error.text),
                    hint: error.hint,
                },
                None,
            )
        }
    }
}

pub(super) async fn run(
    settings: &Settings,
    args: &CheckArgs,
    printer: &Printer,
) -> anyhow::Result<Outcome> {
    let caps = ConnectionCaps::new(settings);
    let parallel = settings.limits.parallel_accounts.max(1);
    let checked: Vec<(AccountCheck, Option<Atoms>, Option<Atoms>)> =
        stream::iter(settings.accounts.iter())
            .map(|account| {
                let caps = &caps;
                async move {
                    let source = login(settings, account, Side::Source, caps);
                    let destination = login(settings, account, Side::Destination, caps);
                    let ((source, source_caps), (destination, destination_caps)) =
                        tokio::join!(source, destination);
                    (
                        AccountCheck {
                            source_user: account.source_user.clone(),
                            destination_user: account.destination_user.clone(),
                            source,
                            destination,
                        },
                        source_caps,
                        destination_caps,
                    )
                }
            })
            .buffered(parallel)
            .collect()
            .await;
    let source_caps = checked.iter().find_map(|(_, s, _)| s.clone());
    let destination_caps = checked.iter().find_map(|(_, _, d)| d.clone());
    let capabilities = if checked.is_empty() {
        Vec::new()
    } else {
        capability_rows(source_caps.as_deref(), destination_caps.as_deref())
    };
    let accounts: Vec<AccountCheck> = checked.into_iter().map(|(a, _, _)| a).collect();
    let ok = accounts.iter().all(|a| a.source.ok && a.destination.ok);
    let report = CheckReport {
        accounts,
        ok,
        capabilities,
    };
    match args.format {
        Format::Json => super::print_json(printer, &serde_json::to_string_pretty(&report)?),
        Format::Text => super::print_text(printer, &render(&report)),
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
