//! The one error type of the settings layer. Every variant names the file and, where it
//! can, the line; messages never contain a secret or a CSV cell (the callers build the
//! `message` strings and are tested for that).

use std::io;

/// A config or CSV problem; the run stops before touching any server.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file, the CSV or a `password-file` cannot be read.
    #[error("cannot read `{file}`: {source}")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    /// `migration.toml` is invalid; `message` names the key and may end in a `hint:` line.
    #[error("`{file}`{}: {message}", line_suffix(*.line))]
    Config {
        file: String,
        line: Option<usize>,
        message: String,
    },
    /// The accounts CSV is invalid; `message` names the column, never a cell's content.
    #[error("`{file}` line {line}: {message}")]
    Accounts {
        file: String,
        line: usize,
        message: String,
    },
    /// `--account` names an account that is not in the CSV.
    #[error("{0}")]
    Selection(String),
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

impl crate::diagnostics::HasHint for SettingsError {
    fn hint(&self) -> Option<String> {
        None
    }
}
