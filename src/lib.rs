//! mailshift: declarative IMAP mailbox migration. `plan` reads both servers read-only and
//! shows what would be created; `apply` does it, never deleting, never duplicating.

pub(crate) mod apply;
pub mod cli;
pub(crate) mod commands;
pub(crate) mod cutover;
pub mod diagnostics;
#[cfg(test)]
mod docs_tests;
pub(crate) mod fleet;
pub(crate) mod identity;
pub mod imap;
pub(crate) mod inventory;
#[cfg(test)]
mod layering;
pub(crate) mod logging;
pub(crate) mod message;
pub(crate) mod model;
pub(crate) mod mutf7;
pub(crate) mod plan;
pub(crate) mod planfile;
pub(crate) mod printer;
pub(crate) mod progress;
pub(crate) mod render;
pub(crate) mod report;
pub mod settings;
pub(crate) mod state;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// How a command ended, mapped onto the exit statuses of docs/exit-status.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0.
    Success,
    /// 2, only for `plan --detailed-exitcode`.
    ChangesPending,
    /// 1: something failed and was already reported (e.g. one account).
    Failed,
    /// 130: Ctrl-C.
    Interrupted,
    /// 143: SIGTERM (128 + 15), e.g. from Kubernetes or systemd; handled like Ctrl-C.
    Terminated,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::ChangesPending => ExitCode::from(2),
            Outcome::Failed => ExitCode::from(1),
            Outcome::Interrupted => ExitCode::from(130),
            Outcome::Terminated => ExitCode::from(143),
        }
    }
}

/// Parses `args`, runs the command, prints any error chain once on stderr.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(mut cli) => {
            // clap lets a global flag given after the subcommand replace the values given
            // before it; `--account` is repeatable anywhere, so collect every occurrence.
            cli.global.accounts = cli::all_accounts(&args);
            cli
        }
        Err(e) => {
            let _ = e.print();
            // clap's own usage-error code is 2, which means "changes pending" here.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let stderr_color = cli.global.color.enabled(std::io::stderr().is_terminal());
    let stdout_color = cli.global.color.enabled(std::io::stdout().is_terminal());
    let printer = printer::Printer::new(stdout_color, stderr_color);
    if let Err(e) = logging::init(
        cli.global.verbose,
        cli.global.quiet,
        stderr_color,
        cli.global.log_file.as_deref(),
    ) {
        let path = cli
            .global
            .log_file
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        let e = anyhow::Error::new(e)
            .context(format!("cannot create the log file `{}`", path.display()));
        print_error(&printer, &e);
        return ExitCode::from(1);
    }
    match commands::dispatch(cli, &printer) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            print_error(&printer, &e);
            ExitCode::from(1)
        }
    }
}

/// `error: ...`, one `  caused by: ...` per cause, then the hints after a blank line
/// (src/diagnostics.rs).
pub fn print_error(printer: &printer::Printer, e: &anyhow::Error) {
    let diagnostic = diagnostics::Diagnostic::of_anyhow(e, commands::hint_of);
    printer.err(&diagnostic.render());
}
