//! The command line (docs/commands.md, a fixed contract). Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::Shard;

/// Declarative IMAP mailbox migration: `plan` shows exactly what would be copied,
/// `apply` copies it. The source is never changed, nothing is ever deleted on the
/// destination, and re-running never duplicates a message.
#[derive(Debug, Parser)]
#[command(
    name = "mailshift",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Flags valid before or after the subcommand.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// The migration config (TOML, no secrets).
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "migration.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,

    /// Only this account (matches `source_user`); repeatable.
    #[arg(long = "account", global = true, value_name = "USER")]
    pub accounts: Vec<String>,

    /// Only the accounts in shard K of N (K in 0..N-1), by a hash of `source_user`.
    #[arg(long, global = true, value_name = "K/N")]
    pub shard: Option<Shard>,

    /// More logging on stderr: -v info, -vv debug, -vvv trace.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short = 'q', long = "quiet", global = true)]
    pub quiet: bool,

    /// When to use colors (`NO_COLOR` is honoured with `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Also write logs as JSON lines to this file.
    #[arg(long = "log-file", global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream; `auto` means a terminal and no (non-empty) `NO_COLOR`.
    pub fn enabled(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read both servers (read-only) and show what `apply` would create and copy.
    Plan(PlanArgs),
    /// Create the missing folders and copy the missing messages (never deletes).
    Apply(ApplyArgs),
    /// Check the config and CSV, connect and log in to every account on both sides.
    Check(CheckArgs),
    /// Render a saved plan file.
    Show(ShowArgs),
    /// DNS/MX readiness per mail domain and mail still arriving at the source (read-only).
    ///
    /// Exit status 0 when every domain is switched and propagated and no new mail reached
    /// the source since the last final pass, 2 while waiting, 1 on errors.
    Cutover(CutoverArgs),
    /// One fleet view of `apply --report` files (shards, re-runs): per account the latest
    /// run's status, copied / failed / pending, and the totals. Read-only.
    Report(ReportArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, generated from this command line's definitions.
    ///
    /// Install it with `mailshift man > /usr/local/share/man/man1/mailshift.1`.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Save the plan as JSON to this file (for `apply FILE` or `show FILE`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// List every message to copy (date, from, subject, size).
    #[arg(long)]
    pub detail: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `plan --out`; without it, plan now and ask.
    #[arg(value_name = "PLANFILE")]
    pub plan_file: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Write a JSON report of what was copied, failed and pending.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The plan file to render.
    #[arg(value_name = "PLANFILE")]
    pub plan_file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// List every message to copy.
    #[arg(long)]
    pub detail: bool,
}

/// Output formats of `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ReportFormat {
    #[default]
    Text,
    Json,
    /// RFC 4180, one header row (for spreadsheets).
    Csv,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Report files written by `apply --report` (any number: shards, re-runs). An account
    /// found in several is shown as its latest run left it. Plan files (`plan --out`) may
    /// be given too: a plan newer than an account's last run says whether it is complete.
    #[arg(value_name = "REPORTFILE", required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// List every message not copied: account, folder, date, from, subject, size and the
    /// server's words (or, by a later plan, that it is still missing).
    #[arg(long)]
    pub failed: bool,
}

#[derive(Debug, Args)]
pub struct CutoverArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Every `--account` value in `args`, wherever it stands (before or after the
/// subcommand), in order. Stops at `--`.
pub fn all_accounts(args: &[std::ffi::OsString]) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--" {
            break;
        }
        if arg == "--account" {
            if let Some(v) = iter.next() {
                out.push(v.to_string_lossy().into_owned());
            }
        } else if let Some(v) = arg.strip_prefix("--account=") {
            out.push(v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let a =
            Cli::try_parse_from(["mailshift", "-c", "x.toml", "--account", "a", "plan"]).unwrap();
        let b =
            Cli::try_parse_from(["mailshift", "plan", "-c", "x.toml", "--account", "a"]).unwrap();
        assert_eq!(a.global.config, b.global.config);
        assert_eq!(a.global.accounts, vec!["a".to_string()]);
        assert_eq!(b.global.accounts, vec!["a".to_string()]);
    }

    #[test]
    fn account_values_before_and_after_the_subcommand_add_up() {
        let args: Vec<std::ffi::OsString> = [
            "mailshift",
            "--account",
            "a",
            "plan",
            "--account=b",
            "--account",
            "c",
        ]
        .iter()
        .map(Into::into)
        .collect();
        assert_eq!(all_accounts(&args), vec!["a", "b", "c"]);
    }

    #[test]
    fn verbose_and_quiet_conflict() {
        assert!(Cli::try_parse_from(["mailshift", "-v", "-q", "check"]).is_err());
    }
}
