//! `mailshift check`: config and CSV are valid, every account logs in on both sides.
//! Read-only: connect, log in, log out.

use futures::stream::{self, StreamExt};

use super::AccountError;
use crate::cli::{CheckArgs, Format};
use crate::imap::{ConnectionCaps, Credentials, ImapError, Reader};
use crate::model::Side;
use crate::printer::Printer;
use crate::render::check::{render, AccountCheck, CheckReport, SideResult};
use crate::settings::{Account, Settings};
use crate::Outcome;

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
            hint: None,
        },
        Err(e) => {
            let error = AccountError::of_imap(settings, account, side, &e, &e);
            SideResult {
                ok: false,
                error: Some(error.text),
                hint: error.hint,
            }
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
        Format::Json => super::print_json(printer, &serde_json::to_string_pretty(&report)?),
        Format::Text => super::print_text(printer, &render(&report)),
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
