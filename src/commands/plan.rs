//! `mailshift plan`: inventory both sides of every selected account (read-only), plan,
//! render, optionally save.

use anyhow::Context as _;
use futures::stream::{self, StreamExt};

use super::AccountError;
use crate::cli::PlanArgs;
use crate::imap::{ConnectionCaps, Credentials};
use crate::inventory::{self, Inventory, InventoryError};
use crate::model::Side;
use crate::plan::{self, AccountPlan, HeldCounts, Rules};
use crate::planfile::PlanFile;
use crate::printer::Printer;
use crate::settings::{Account, Settings};
use crate::state::{cache, Ledger};
use crate::Outcome;

pub(super) async fn run(
    settings: &Settings,
    args: &PlanArgs,
    printer: &Printer,
) -> anyhow::Result<Outcome> {
    let plan = plan_all(settings).await;
    if let Some(path) = &args.out {
        plan.save(path)
            .with_context(|| format!("cannot save the plan to `{}`", path.display()))?;
        tracing::info!("plan saved to `{}`", path.display());
    }
    super::print_plan(printer, &plan, args.format, args.detail);
    Ok(if plan.has_errors() {
        Outcome::Failed
    } else if args.detailed_exitcode && plan.has_changes() {
        Outcome::ChangesPending
    } else {
        Outcome::Success
    })
}

/// Plans every selected account, `parallel-accounts` at a time, results in CSV order.
pub(super) async fn plan_all(settings: &Settings) -> PlanFile {
    // Whole seconds, rounded down, like the plan's other times.
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let caps = ConnectionCaps::new(settings);
    let parallel = settings.limits.parallel_accounts.max(1);
    let accounts: Vec<AccountPlan> = stream::iter(settings.accounts.iter())
        .map(|account| plan_account(settings, account, &caps))
        .buffered(parallel)
        .collect()
        .await;
    let mut plan = PlanFile::new(settings.config_digest.clone(), accounts);
    plan.inventory_started_at = Some(started);
    plan
}

/// Inventories both sides of one account and plans it; a failure becomes the account's
/// error (the other accounts go on).
pub(super) async fn plan_account(
    settings: &Settings,
    account: &Account,
    caps: &ConnectionCaps,
) -> AccountPlan {
    // The ledger first: an unreadable one stops the account before any connection.
    let ledger = match Ledger::read(
        &settings.state_dir,
        &settings.destination,
        &account.destination_user,
    ) {
        Ok(l) => l,
        Err(e) => {
            let error = AccountError::of(&e);
            tracing::error!(account = %account.source_user, "{}", error.text);
            return AccountPlan::failed(
                &account.source_user,
                &account.destination_user,
                format!("destination: {}", error.text),
                error.hint,
            );
        }
    };
    match try_plan_account(settings, account, caps, ledger.as_ref()).await {
        Ok(mut plan) => {
            plan.pacing = crate::plan::pacing::time_floor(&plan.summary, &settings.limits.pacing);
            if let Some(q) = plan.quota.filter(|q| q.over_quota) {
                tracing::warn!(
                    account = %account.source_user,
                    "over quota: the copy needs {} bytes, the destination has {} free",
                    plan.summary.bytes_to_copy,
                    q.free()
                );
            }
            plan
        }
        Err(e) => {
            let (InventoryError::Imap { side, source }
            | InventoryError::Folder { side, source, .. }) = &e;
            let error = AccountError::of_imap(settings, account, *side, &e, source);
            tracing::error!(account = %account.source_user, "{}", error.text);
            AccountPlan::failed(
                &account.source_user,
                &account.destination_user,
                error.text,
                error.hint,
            )
        }
    }
}

/// Attempts at one side's inventory when its connection is lost midway.
const INVENTORY_ATTEMPTS: u32 = 5;

async fn try_plan_account(
    settings: &Settings,
    account: &Account,
    caps: &ConnectionCaps,
    ledger: Option<&HeldCounts>,
) -> Result<AccountPlan, InventoryError> {
    let user = |side: Side| match side {
        Side::Source => account.source_user.as_str(),
        Side::Destination => account.destination_user.as_str(),
    };
    let collect = |side: Side| async move {
        let _permit = caps.of(side).acquire().await.expect("never closed");
        // A connection lost or stalled in the middle of the inventory (a flaky link, a
        // restarting server) is read again, a few times, after a backoff.
        let mut backoff = crate::imap::Backoff::new(crate::imap::RetryPolicy {
            budget: INVENTORY_ATTEMPTS - 1,
            ..crate::imap::RetryPolicy::from_limits(&settings.limits)
        });
        loop {
            let cached = cache::read(&settings.state_dir, settings.server(side), user(side), side);
            let extra = inventory::Extra {
                caps,
                connections: settings.limits.connections_per_account,
            };
            let result = inventory::collect(
                side,
                settings.server(side),
                &settings.limits,
                &Credentials::of(account, side),
                cached,
                Some(extra),
            )
            .await;
            match &result {
                Err(
                    InventoryError::Imap { source, .. } | InventoryError::Folder { source, .. },
                ) if matches!(
                    source,
                    crate::imap::ImapError::Closed { .. } | crate::imap::ImapError::Timeout { .. }
                ) =>
                {
                    tracing::warn!(account = %account.source_user, %side, "inventory: {source}; reading again");
                    let stalled_out = matches!(source, crate::imap::ImapError::Timeout { .. })
                        && !backoff.stalled();
                    if stalled_out || !backoff.failed(None).await {
                        return result;
                    }
                }
                _ => return result,
            }
        }
    };
    let (source, destination) = tokio::join!(collect(Side::Source), collect(Side::Destination));
    let (mut source, mut destination) = (source?, destination?);
    tracing::info!(
        account = %account.source_user,
        reused_source = source.reused,
        reused_destination = destination.reused,
        "inventory done"
    );
    // Remembered for the next plan; a cache that cannot be written only costs time.
    let remember = |side: Side, collected: &inventory::Collected| {
        if let Err(e) = cache::write(
            &settings.state_dir,
            settings.server(side),
            user(side),
            side,
            collected,
        ) {
            tracing::warn!(account = %account.source_user, %side, "cannot write the inventory cache ({e}); the next plan reads everything again");
        }
    };
    let rules = Rules {
        folders: &settings.folders,
        messages: &settings.messages,
        ledger,
    };
    let plan = |source: &Inventory, destination: &Inventory| {
        plan::plan_account(
            &account.source_user,
            &account.destination_user,
            source,
            destination,
            rules,
        )
    };
    let first = plan(&source.inventory, &destination.inventory);
    let requests = plan::content_requests(&first, &source.inventory, &destination.inventory);
    if requests.is_empty() {
        remember(Side::Source, &source);
        remember(Side::Destination, &destination);
        return Ok(first);
    }
    // Ambiguous groups: compare the bodies of just those messages, then plan again.
    tracing::info!(
        account = %account.source_user,
        "comparing the bodies of messages with equal identity headers"
    );
    let contents = |side: Side, uids| async move {
        let _permit = caps.of(side).acquire().await.expect("never closed");
        inventory::fetch_contents(
            side,
            settings.server(side),
            &settings.limits,
            &Credentials::of(account, side),
            uids,
        )
        .await
    };
    let (src, dst) = tokio::join!(
        contents(Side::Source, &requests.source),
        contents(Side::Destination, &requests.destination)
    );
    plan::set_contents(&mut source.inventory, &src?);
    plan::set_contents(&mut destination.inventory, &dst?);
    remember(Side::Source, &source);
    remember(Side::Destination, &destination);
    Ok(plan(&source.inventory, &destination.inventory))
}
