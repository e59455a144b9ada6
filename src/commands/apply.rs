//! `mailshift apply [PLANFILE]`: plan (or load and check a saved plan), ask, execute,
//! report. Ctrl-C stops taking new work, lets the in-flight batch finish, writes the
//! report, and exits 130.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use futures::stream::{self, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::apply::Executor;
use crate::cli::{ApplyArgs, Format};
use crate::plan::AccountPlan;
use crate::planfile::PlanFile;
use crate::progress::Progress;
use crate::render::text::{render_plan, TextOptions};
use crate::render::units::counted;
use crate::report::Report;
use crate::settings::{Account, Settings};
use crate::Outcome;

pub async fn run(settings: &Settings, args: &ApplyArgs) -> anyhow::Result<Outcome> {
    let plan = match &args.plan_file {
        Some(path) => {
            let plan = PlanFile::load(path)?;
            plan.check_digest(path, &settings.config_digest)?;
            if args.format == Format::Text {
                super::print_text(&render_plan(&plan, TextOptions::default()));
            }
            plan
        }
        None => {
            let plan = super::plan::plan_all(settings).await;
            if args.format == Format::Text {
                super::print_text(&render_plan(&plan, TextOptions::default()));
            }
            if plan.has_changes() && !args.auto_approve && args.format == Format::Json {
                bail!("`apply --format json` cannot ask for confirmation\nhint: review the plan with `mailshift plan`, then add `--auto-approve`");
            }
            if plan.has_changes() && !args.auto_approve && !confirm(&plan)? {
                println!("\nApply cancelled.");
                return Ok(Outcome::Failed);
            }
            plan
        }
    };
    let work = pair_accounts(settings, &plan)?;

    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: finishing the messages in flight, then writing the report (Ctrl-C again to abort)");
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };
    let executor = Executor {
        settings,
        caps: crate::imap::ConnectionCaps::new(settings),
        body_budget: Arc::new(Semaphore::new(crate::apply::BODY_BUDGET_KIB)),
        cancel: cancel.clone(),
        progress: Progress::new(std::io::stderr().is_terminal()),
    };
    let parallel = settings.limits.parallel_accounts.max(1);
    let reports = stream::iter(work.iter())
        .map(|(account, plan)| executor.apply_account(account, plan))
        .buffered(parallel)
        .collect::<Vec<_>>()
        .await;
    watcher.abort();
    // Each account this apply finished is a final pass for `cutover`.
    if let Some(started) = plan
        .inventory_started_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        for ((_, account_plan), report) in work.iter().zip(&reports) {
            if report.status == crate::report::AccountStatus::Done && account_plan.error.is_none()
            {
                super::cutover::record_final_pass(
                    settings,
                    account_plan,
                    started.with_timezone(&chrono::Utc),
                );
            }
        }
    }
    let interrupted = cancel.is_cancelled();
    let report = Report::new(reports, interrupted);
    if let Some(path) = &args.report {
        report
            .save(path)
            .with_context(|| format!("cannot write the report to `{}`", path.display()))?;
    }
    match args.format {
        Format::Json => println!("{}", report.to_json()),
        Format::Text => print!("\n{}", report.render_text()),
    }
    Ok(if interrupted {
        Outcome::Interrupted
    } else if report.all_done() && !plan.has_errors() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// Matches each planned account with its CSV row (credentials never live in a plan).
fn pair_accounts<'a>(
    settings: &'a Settings,
    plan: &'a PlanFile,
) -> anyhow::Result<Vec<(&'a Account, &'a AccountPlan)>> {
    let by_user: HashMap<String, &Account> = settings
        .accounts
        .iter()
        .map(|a| (a.source_user.to_lowercase(), a))
        .collect();
    let mut work = Vec::new();
    let mut missing = Vec::new();
    for p in &plan.accounts {
        match by_user.get(&p.source_user.to_lowercase()) {
            Some(a) if a.destination_user == p.destination_user => work.push((*a, p)),
            _ => missing.push(p.source_user.clone()),
        }
    }
    if !missing.is_empty() && work.is_empty() {
        bail!(
            "none of the plan's accounts is selected: `{}`\nhint: select them with --account, or make a plan for the current selection",
            missing.join("`, `")
        );
    }
    for m in &missing {
        tracing::warn!("account `{m}` is in the plan but not selected now; skipped");
    }
    Ok(work)
}

/// Asks on the terminal; without one, `--auto-approve` is required.
fn confirm(plan: &PlanFile) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "apply needs confirmation, and stdin is not a terminal\nhint: review the plan, then run `mailshift apply --auto-approve` (or save it with `plan --out FILE` and `apply FILE --auto-approve`)"
        );
    }
    let s = &plan.summary;
    print!(
        "\nDo you want to perform these actions?\n  mailshift will create {} and copy {} on the destination. Nothing is deleted; the source is not changed.\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ",
        counted(s.folders_to_create, "folder", "folders"),
        counted(s.messages_to_copy, "message", "messages"),
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}
