//! `mailshift apply [PLANFILE]`: plan (or load and check a saved plan), ask, execute,
//! report. Ctrl-C (or SIGTERM) stops taking new work, lets the in-flight batch finish,
//! writes the report, and exits 130 (143 for SIGTERM). The `--report` path is tried before
//! anything else, so an unwritable one is found before the copy, not after it.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use anyhow::Context as _;
use futures::stream::{self, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::apply::Executor;
use crate::cli::{ApplyArgs, Format};
use crate::diagnostics::Hinted;
use crate::plan::AccountPlan;
use crate::planfile::PlanFile;
use crate::printer::Printer;
use crate::progress::Progress;
use crate::render::text::{render_plan, TextOptions};
use crate::render::units::counted;
use crate::report::Report;
use crate::settings::{Account, Settings};
use crate::Outcome;

pub(super) async fn run(
    settings: &Settings,
    args: &ApplyArgs,
    printer: &Printer,
) -> anyhow::Result<Outcome> {
    if let Some(path) = &args.report {
        check_report_path(path)
            .with_context(|| format!("cannot write the report to `{}`", path.display()))?;
    }
    let plan = match &args.plan_file {
        Some(path) => {
            let plan = PlanFile::load(path)?;
            plan.check_digest(path, &settings.config_digest)?;
            if args.format == Format::Text {
                super::print_text(printer, &render_plan(&plan, TextOptions::default()));
            }
            plan
        }
        None => {
            let plan = super::plan::plan_all(settings).await;
            if args.format == Format::Text {
                super::print_text(printer, &render_plan(&plan, TextOptions::default()));
            }
            if plan.has_changes() && !args.auto_approve && args.format == Format::Json {
                return Err(Hinted::new(
                    "`apply --format json` cannot ask for confirmation",
                    "review the plan with `mailshift plan`, then add `--auto-approve`",
                )
                .into());
            }
            if plan.has_changes() && !args.auto_approve && !confirm(&plan, printer)? {
                printer.out("\nApply cancelled.\n");
                return Ok(Outcome::Failed);
            }
            plan
        }
    };
    let work = pair_accounts(settings, &plan, args.plan_file.as_deref())?;

    let cancel = CancellationToken::new();
    let stopped_by = Arc::new(std::sync::OnceLock::new());
    let watcher = {
        let cancel = cancel.clone();
        let stopped_by = Arc::clone(&stopped_by);
        let printer = *printer;
        tokio::spawn(async move {
            // Kubernetes and systemd stop a process with SIGTERM: the same orderly stop as
            // Ctrl-C, with its own exit status (143 = 128 + 15).
            let Some(signal) = next_stop_signal().await else {
                return;
            };
            let _ = stopped_by.set(signal);
            printer.err(&format!(
                "\n{}: finishing the messages in flight, then writing the report ({} again to abort)\n",
                signal.describe(),
                signal.again()
            ));
            cancel.cancel();
            if let Some(second) = next_stop_signal().await {
                std::process::exit(second.exit_status());
            }
        })
    };
    let executor = Executor {
        settings,
        caps: crate::imap::ConnectionCaps::new(settings),
        body_budget: Arc::new(Semaphore::new(crate::apply::BODY_BUDGET_KIB)),
        cancel: cancel.clone(),
        progress: Progress::new(std::io::stderr().is_terminal()),
        hints: super::hint_of,
        pacing: crate::apply::RunPacing::new(&settings.limits.pacing),
        fresh_plan: args.plan_file.is_none() && args.auto_approve,
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
            if report.status == crate::report::AccountStatus::Done && account_plan.error.is_none() {
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
        Format::Json => super::print_json(printer, &report.to_json()),
        Format::Text => super::print_text(
            printer,
            &format!("\n{}", crate::render::report::report(&report)),
        ),
    }
    Ok(if interrupted {
        match stopped_by.get() {
            Some(StopSignal::Terminate) => Outcome::Terminated,
            _ => Outcome::Interrupted,
        }
    } else if report.all_done() && !plan.has_errors() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// Finds out before any work whether the report can be written where `--report` says:
/// `Report::save` writes a temp file beside it and renames it over the path, so the
/// directory must take a new file and the path must not be a directory.
fn check_report_path(path: &std::path::Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "it is a directory",
        ));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    tempfile::NamedTempFile::new_in(dir).map(drop)
}

/// A request to stop: Ctrl-C (SIGINT) or SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    fn describe(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "interrupted",
            StopSignal::Terminate => "terminated (SIGTERM)",
        }
    }

    fn again(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "Ctrl-C",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    fn exit_status(self) -> i32 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }
}

/// Waits for the next SIGINT or SIGTERM; `None` if neither can be listened to.
async fn next_stop_signal() -> Option<StopSignal> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => t.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.ok().map(|()| StopSignal::Interrupt),
        Some(()) = term => Some(StopSignal::Terminate),
    }
}

/// Matches each planned account with its CSV row (credentials never live in a plan).
fn pair_accounts<'a>(
    settings: &'a Settings,
    plan: &'a PlanFile,
    plan_path: Option<&std::path::Path>,
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
            // The account is selected, but the plan copies it into another mailbox.
            Some(a) => {
                return Err(crate::planfile::PlanFileError::Stale {
                    path: plan_path
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    reason: format!(
                        "account `{}` now goes to `{}`, the plan copies it to `{}`",
                        a.source_user, a.destination_user, p.destination_user
                    ),
                }
                .into())
            }
            None => missing.push(p.source_user.clone()),
        }
    }
    if !missing.is_empty() && work.is_empty() {
        return Err(Hinted::new(
            format!(
                "none of the plan's accounts is selected: `{}`",
                missing.join("`, `")
            ),
            "select them with --account, or make a plan for the current selection",
        )
        .into());
    }
    for m in &missing {
        tracing::warn!("account `{m}` is in the plan but not selected now; skipped");
    }
    Ok(work)
}

/// Asks on the terminal; without one, `--auto-approve` is required.
fn confirm(plan: &PlanFile, printer: &Printer) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Hinted::new(
            "apply needs confirmation, and stdin is not a terminal",
            "review the plan, then run `mailshift apply --auto-approve` (or save it with `plan --out FILE` and `apply FILE --auto-approve`)",
        )
        .into());
    }
    let s = &plan.summary;
    printer.out(&format!(
        "\nDo you want to perform these actions?\n  mailshift will create {} and copy {} on the destination. Nothing is deleted; the source is not changed.\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ",
        counted(s.folders_to_create, "folder", "folders"),
        counted(s.messages_to_copy, "message", "messages"),
    ));
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}
