//! The subcommands, wired from the parsed command line to settings, inventory, planner,
//! renderers and the executor. Everything here returns an [`Outcome`] or an error that
//! `run` prints once.

mod apply;
mod check;
mod cutover;
mod plan;
mod show;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::settings::{self, Selection, Settings};
use crate::Outcome;

/// Whether text on stdout gets ANSI colours (`--color`, `NO_COLOR`, a terminal).
static STDOUT_COLOR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints text data on stdout, coloured when enabled.
pub fn print_text(text: &str) {
    if STDOUT_COLOR.load(std::sync::atomic::Ordering::Relaxed) {
        print!("{}", crate::render::text::colorize(text));
    } else {
        print!("{text}");
    }
}

/// Runs the parsed command line (stderr's colour was decided by the caller; stdout's here).
pub fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    use std::io::IsTerminal;
    let stdout_color = cli.global.color.enabled(std::io::stdout().is_terminal());
    STDOUT_COLOR.store(stdout_color, std::sync::atomic::Ordering::Relaxed);
    match cli.command {
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "mailshift", &mut std::io::stdout());
            Ok(Outcome::Success)
        }
        Command::Show(args) => show::run(&args),
        Command::Plan(args) => {
            let settings = load_settings(&cli.global)?;
            runtime()?.block_on(plan::run(&settings, &args))
        }
        Command::Check(args) => {
            let settings = load_settings(&cli.global)?;
            runtime()?.block_on(check::run(&settings, &args))
        }
        Command::Cutover(args) => {
            let settings = load_settings(&cli.global)?;
            runtime()?.block_on(cutover::run(&settings, &args))
        }
        Command::Apply(args) => {
            let settings = load_settings(&cli.global)?;
            runtime()?.block_on(apply::run(&settings, &args))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints a plan on stdout: the JSON document alone, or the text plan.
pub fn print_plan(plan: &crate::planfile::PlanFile, format: crate::cli::Format, detail: bool) {
    use crate::render::text::{render_plan, TextOptions};
    match format {
        crate::cli::Format::Json => println!("{}", plan.to_json()),
        crate::cli::Format::Text => print_text(&render_plan(plan, TextOptions { detail })),
    }
}

/// Loads and validates the config and the CSV; logs the settings' warnings.
pub fn load_settings(global: &crate::cli::GlobalArgs) -> anyhow::Result<Settings> {
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

/// The message for an IMAP error of one account on one side: the error (it names
/// `host:port`), plus a hint naming the CSV line when the login was refused.
pub fn account_error_text(
    settings: &Settings,
    account: &crate::settings::Account,
    side: crate::inventory::Side,
    error: &crate::imap::ImapError,
) -> String {
    let mut text = error.to_string();
    if matches!(error, crate::imap::ImapError::AuthFailed { .. }) && !text.contains("hint:") {
        text.push_str(&format!(
            "\nhint: check the {side} user and password in `{}` line {}",
            settings.csv_path.display(),
            account.line
        ));
    }
    text
}
