//! The subcommands, wired from the parsed command line to settings, inventory, planner,
//! renderers and the executor. Everything here returns an [`Outcome`] or an error that
//! `run` prints once.

mod apply;
mod check;
mod cutover;
mod plan;
mod report;
mod show;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::printer::Printer;
use crate::settings::{self, Selection, Settings};
use crate::Outcome;

/// Prints a text rendering on stdout: escaped, coloured when stdout has colour.
pub(crate) fn print_text(printer: &Printer, text: &str) {
    printer.out_styled(text, crate::render::text::colorize);
}

/// Prints a JSON document (already escaped by serde_json) and a newline on stdout.
pub(crate) fn print_json(printer: &Printer, json: &str) {
    printer.out_raw(format!("{json}\n").as_bytes());
}

/// Runs the parsed command line.
pub(crate) fn dispatch(cli: Cli, printer: &Printer) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            clap_complete::generate(
                args.shell,
                &mut cmd,
                "mailshift",
                &mut printer.stdout_writer(),
            );
            Ok(Outcome::Success)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .context("cannot render the man page")?;
            printer.out_raw(&page);
            Ok(Outcome::Success)
        }
        Command::Show(args) => show::run(&args, printer),
        Command::Report(args) => report::run(&args, printer),
        Command::Plan(args) => {
            let settings = load_settings(&cli.global)?;
            runtime()?.block_on(plan::run(&settings, &args, printer))
        }
        Command::Check(args) => {
            let settings = load_settings(&cli.global)?;
            runtime()?.block_on(check::run(&settings, &args, printer))
        }
        Command::Cutover(args) => {
            let settings = load_settings(&cli.global)?;
            runtime()?.block_on(cutover::run(&settings, &args, printer))
        }
        Command::Apply(args) => {
            let settings = load_settings(&cli.global)?;
            runtime()?.block_on(apply::run(&settings, &args, printer))
        }
    }
}

/// The hint of one error in a chain: the command layer is the one place that knows every
/// error type (src/diagnostics.rs).
pub(crate) fn hint_of(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use crate::diagnostics::{HasHint, Hinted};
    if let Some(e) = e.downcast_ref::<Hinted>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::settings::SettingsError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::imap::ImapError>() {
        return e.hint();
    }

    if let Some(e) = e.downcast_ref::<crate::inventory::InventoryError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::planfile::PlanFileError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::apply::ApplyError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::fleet::FleetError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::state::StateError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<cutover::CutoverError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::cutover::dns::DnsError>() {
        return e.hint();
    }
    if let Some(e) = e.downcast_ref::<crate::cutover::state::StateError>() {
        return e.hint();
    }
    None
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints a plan on stdout: the JSON document alone, or the text plan.
pub(crate) fn print_plan(
    printer: &Printer,
    plan: &crate::planfile::PlanFile,
    format: crate::cli::Format,
    detail: bool,
) {
    use crate::render::text::{render_plan, TextOptions};
    match format {
        crate::cli::Format::Json => {
            // Streamed: a plan of 500,000 copies is not held again as text. Stdout errors
            // end the process inside the writer (broken pipe: cleanly).
            let out = std::io::BufWriter::with_capacity(1 << 16, printer.stdout_writer());
            let _ = plan.write_json(out);
        }
        crate::cli::Format::Text => print_text(printer, &render_plan(plan, TextOptions { detail })),
    }
}

/// Loads and validates the config and the CSV; logs the settings' warnings.
pub(crate) fn load_settings(global: &crate::cli::GlobalArgs) -> anyhow::Result<Settings> {
    let selection = Selection {
        accounts: global.accounts.clone(),
        shard: global.shard,
    };
    let settings = settings::load(&global.config, &selection)?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    if settings.accounts.is_empty() {
        tracing::warn!(
            "no account is selected{}",
            match global.shard {
                Some(shard) => format!(" (shard `{shard}` holds none of the CSV's accounts)"),
                None => String::new(),
            }
        );
    }
    Ok(settings)
}

/// An account's error as shown inside a plan, the check table or a report: the whole
/// chain on one line, and the hints apart (src/diagnostics.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountError {
    pub text: String,
    pub hint: Option<String>,
}

impl AccountError {
    /// Any account-level error: its chain and hints.
    pub(crate) fn of(error: &(dyn std::error::Error + 'static)) -> AccountError {
        let d = crate::diagnostics::Diagnostic::of(error, hint_of);
        AccountError {
            text: d.one_line(),
            hint: d.hint_text(),
        }
    }

    /// `error` (whose chain holds `imap`, the failure on `side`), plus what only this layer
    /// knows: a refused login names the CSV line to fix. Never a password.
    pub(crate) fn of_imap(
        settings: &Settings,
        account: &crate::settings::Account,
        side: crate::model::Side,
        error: &(dyn std::error::Error + 'static),
        imap: &crate::imap::ImapError,
    ) -> AccountError {
        let mut d = crate::diagnostics::Diagnostic::of(error, hint_of);
        if let crate::imap::ImapError::AuthFailed { .. } = imap {
            d.hints.push(format!(
                "check the {side} user and password in `{}` line {}",
                settings.csv_path.display(),
                account.line
            ));
        }
        AccountError {
            text: d.one_line(),
            hint: d.hint_text(),
        }
    }
}
