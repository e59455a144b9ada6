//! `mailshift plan`: inventory both sides of every selected account (read-only), plan,
//! render, optionally save.

use std::fmt::Write as _;

use anyhow::Context as _;
use futures::stream::{self, StreamExt};

use super::{credentials, ConnectionCaps};
use crate::cli::PlanArgs;
use crate::imap::ImapError;
use crate::inventory::{self, InventoryError, Side};
use crate::plan::{self, AccountPlan, Rules};
use crate::planfile::PlanFile;
use crate::settings::{Account, Settings};
use crate::Outcome;

pub async fn run(settings: &Settings, args: &PlanArgs) -> anyhow::Result<Outcome> {
    let plan = plan_all(settings).await;
    if let Some(path) = &args.out {
        plan.save(path)
            .with_context(|| format!("cannot save the plan to `{}`", path.display()))?;
        tracing::info!("plan saved to `{}`", path.display());
    }
    super::print_plan(&plan, args.format, args.detail);
    Ok(if plan.has_errors() {
        Outcome::Failed
    } else if args.detailed_exitcode && plan.has_changes() {
        Outcome::ChangesPending
    } else {
        Outcome::Success
    })
}

/// Plans every selected account, `parallel-accounts` at a time, results in CSV order.
pub async fn plan_all(settings: &Settings) -> PlanFile {
    let caps = ConnectionCaps::new(settings);
    let parallel = settings.limits.parallel_accounts.max(1);
    let accounts: Vec<AccountPlan> = stream::iter(settings.accounts.iter())
        .map(|account| {
            let caps = caps.clone();
            async move { plan_account(settings, account, &caps).await }
        })
        .buffered(parallel)
        .collect()
        .await;
    PlanFile::new(settings.config_digest.clone(), accounts)
}

/// Inventories both sides of one account and plans it; a failure becomes the account's
/// error (the other accounts go on).
pub async fn plan_account(
    settings: &Settings,
    account: &Account,
    caps: &ConnectionCaps,
) -> AccountPlan {
    let source = async {
        let _permit = caps.source.acquire().await.expect("semaphore never closed");
        inventory::collect(
            Side::Source,
            &settings.source,
            &settings.limits,
            &credentials(&account.source_user, &account.source_password),
        )
        .await
    };
    let destination = async {
        let _permit = caps
            .destination
            .acquire()
            .await
            .expect("semaphore never closed");
        inventory::collect(
            Side::Destination,
            &settings.destination,
            &settings.limits,
            &credentials(&account.destination_user, &account.destination_password),
        )
        .await
    };
    let (source, destination) = tokio::join!(source, destination);
    let result = source.and_then(|s| destination.map(|d| (s, d)));
    match result {
        Ok((mut source, mut destination)) => {
            tracing::info!(account = %account.source_user, "inventory done");
            let rules = Rules {
                folders: &settings.folders,
                messages: &settings.messages,
            };
            let first = plan::plan_account(
                &account.source_user,
                &account.destination_user,
                &source,
                &destination,
                rules,
            );
            let requests = plan::content_requests(&first, &source, &destination);
            if requests.is_empty() {
                return first;
            }
            // Ambiguous groups: compare bodies on both sides, then plan again.
            tracing::info!(
                account = %account.source_user,
                "comparing the bodies of messages with equal identity headers"
            );
            let src_creds = credentials(&account.source_user, &account.source_password);
            let dst_creds = credentials(&account.destination_user, &account.destination_password);
            let contents = async {
                let src = inventory::fetch_contents(
                    Side::Source,
                    &settings.source,
                    &settings.limits,
                    &src_creds,
                    &requests.source,
                );
                let dst = inventory::fetch_contents(
                    Side::Destination,
                    &settings.destination,
                    &settings.limits,
                    &dst_creds,
                    &requests.destination,
                );
                let (src, dst) = tokio::join!(src, dst);
                Ok::<_, InventoryError>((src?, dst?))
            };
            match contents.await {
                Ok((src, dst)) => {
                    plan::set_contents(&mut source, &src);
                    plan::set_contents(&mut destination, &dst);
                    plan::plan_account(
                        &account.source_user,
                        &account.destination_user,
                        &source,
                        &destination,
                        rules,
                    )
                }
                Err(e) => {
                    let message = describe_account_error(settings, account, &e);
                    AccountPlan::failed(&account.source_user, &account.destination_user, message)
                }
            }
        }
        Err(e) => {
            let message = describe_account_error(settings, account, &e);
            tracing::error!(account = %account.source_user, "{}", message.lines().next().unwrap_or(""));
            AccountPlan::failed(&account.source_user, &account.destination_user, message)
        }
    }
}

/// One clear message for an account that failed: which side and server, the server's
/// words, and a hint naming the CSV line when it is a login problem. Never a password.
pub fn describe_account_error(
    settings: &Settings,
    account: &Account,
    e: &InventoryError,
) -> String {
    let (side, imap_error) = match e {
        InventoryError::Imap { side, source } => (*side, source),
        InventoryError::Folder { side, source, .. } => (*side, source),
    };
    // Every IMAP error names `host:port` already; add the folder when it does not.
    let text = imap_error.to_string();
    let mut out = match e {
        InventoryError::Folder { folder, .. } if !text.contains(&format!("`{folder}`")) => {
            format!("{side} folder `{folder}`: {text}")
        }
        _ => format!("{side}: {text}"),
    };
    if matches!(imap_error, ImapError::AuthFailed { .. }) && !out.contains("hint:") {
        let _ = write!(
            out,
            "\nhint: check the {side} user and password in `{}` line {}",
            settings.csv_path.display(),
            account.line
        );
    }
    out
}
