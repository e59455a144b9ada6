//! The one error type of the settings layer. Every variant names the file and, where it
//! can, the line; messages never contain a secret or a CSV cell (the callers build the
//! `message` strings and are tested for that). What to do about an error is its `hint`,
//! never part of the message.

use std::io;

/// A config or CSV problem; the run stops before touching any server.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file cannot be read.
    #[error("cannot read `{file}`")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    /// `migration.toml` is invalid; `message` names the key.
    #[error("`{file}`{}: {message}", line_suffix(*.line))]
    Config {
        file: String,
        line: Option<usize>,
        message: String,
        hint: Option<String>,
    },
    /// The accounts CSV is invalid; `message` names the column, never a cell's content.
    #[error("`{file}` line {line}: {message}")]
    Accounts {
        file: String,
        line: usize,
        message: String,
        hint: Option<String>,
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
        match self {
            SettingsError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Some("run mailshift in the directory that holds it, or pass `--config FILE`".into())
            }
            SettingsError::Read { .. } => None,
            SettingsError::Config { hint, .. } | SettingsError::Accounts { hint, .. } => {
                hint.clone()
            }
            SettingsError::Selection(_) => {
                Some("`--account` matches the `source_user` column (case-insensitive)".into())
            }
        }
    }
}

/// A message and what to do about it, before the file and line are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub(crate) fn hinted(message: impl Into<String>, hint: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

impl From<String> for Problem {
    fn from(message: String) -> Problem {
        Problem {
            message,
            hint: None,
        }
    }
}

impl From<&str> for Problem {
    fn from(message: &str) -> Problem {
        message.to_string().into()
    }
}
