//! Everything a run needs to know before it touches a server: the committed
//! `migration.toml` (no secrets), the accounts CSV (secrets, wrapped), and the selection
//! flags (`--account`, `--shard`). Errors name the file, line and key or column.

mod accounts;
mod config;
mod error;
mod secret;
mod select;
mod size;

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

pub use error::SettingsError;
pub(crate) use secret::kill_process_group;
pub use select::{shard_of, Selection, Shard, ShardParseError};
pub use size::parse_size;

/// How to reach a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS (port 993).
    Tls,
    /// Plain connect, then STARTTLS; fails if the server does not offer it.
    StartTls,
    /// No TLS at all.
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsRoots {
    System,
    Mozilla,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// PLAIN if offered, else LOGIN.
    Auto,
    Login,
    Plain,
    Xoauth2,
    OAuthBearer,
}

/// Where an admin (master) password comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    Command(String),
}

/// `[source.admin]` / `[destination.admin]`, resolved.
#[derive(Debug, Clone)]
pub struct AdminLogin {
    pub user: String,
    pub password: SecretString,
}

/// `[source]` / `[destination]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub ca_file: Option<PathBuf>,
    pub tls_roots: TlsRoots,
    pub accept_invalid_certs: bool,
    pub allow_plaintext_auth: bool,
    pub auth: AuthMethod,
    pub token_command: Option<String>,
    pub max_connections: usize,
    pub admin: Option<AdminLogin>,
}

impl ServerSettings {
    /// Logs in with a bearer token from `token-command` (XOAUTH2, OAUTHBEARER): the
    /// accounts CSV needs no password for this side.
    pub(crate) fn uses_token(&self) -> bool {
        matches!(self.auth, AuthMethod::Xoauth2 | AuthMethod::OAuthBearer)
    }

    /// A server with every option at its default (TLS, system roots, `auth = "auto"`),
    /// for unit tests that need settings but no config file.
    #[cfg(test)]
    pub(crate) fn for_tests(host: &str, port: u16) -> ServerSettings {
        ServerSettings {
            host: host.to_string(),
            port,
            security: Security::Tls,
            ca_file: None,
            tls_roots: TlsRoots::System,
            accept_invalid_certs: false,
            allow_plaintext_auth: false,
            auth: AuthMethod::Auto,
            token_command: None,
            max_connections: 10,
            admin: None,
        }
    }
}

/// `[folders]`.
#[derive(Debug, Clone, Default)]
pub struct FolderRules {
    /// Globs on decoded source paths (`/` separator, prefix stripped).
    pub exclude: Vec<String>,
    pub special_use: bool,
    pub include_views: bool,
    /// Prefix rename rules in file order: (source path, destination path).
    pub rename: Vec<(String, String)>,
    /// Messages found only in a `\All` view that is not included.
    pub view_only_messages: ViewOnlyMessages,
}

/// `view-only-messages`: what happens to mail that lives only in a `\All` view (Gmail's
/// archived mail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewOnlyMessages {
    /// Copy it to the destination's `\Archive` folder (else `Archive`, created).
    #[default]
    Archive,
    /// List it as skipped.
    Skip,
}

/// `moved-on-destination`: does a copy in another destination folder count as present?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MovedOnDestination {
    /// Yes: a user filed it elsewhere on the destination; not copied again.
    #[default]
    Skip,
    /// No: the per-folder rule alone decides (copies it again).
    Copy,
}

/// `deleted-on-destination`: copies the ledger saw on the destination that are gone now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletedOnDestination {
    /// Someone deleted them there: not copied again.
    #[default]
    Skip,
    /// Copy them again.
    Restore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagsOnExisting {
    Keep,
    Add,
}

/// `[messages]`.
#[derive(Debug, Clone)]
pub struct MessageRules {
    pub max_size: Option<u64>,
    pub copy_deleted: bool,
    pub flags_on_existing: FlagsOnExisting,
    pub fix_bare_lf: bool,
    pub moved_on_destination: MovedOnDestination,
    pub deleted_on_destination: DeletedOnDestination,
}

/// `[limits]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub parallel_accounts: usize,
    pub connections_per_account: usize,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub pacing: PacingLimits,
    /// `stream-above`: a message bigger than this is read from the source in pieces of
    /// this size (`BODY.PEEK[]<offset.length>`) and sent as one streamed APPEND literal,
    /// never held whole (bounded memory for huge messages). At least 64 KiB.
    pub stream_above: u64,
}

/// The pacing caps of `[limits]` for providers' quotas; `None` = no cap. Downloads from
/// the source and uploads to the destination are each counted against the same cap.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PacingLimits {
    /// `account-bytes-per-day`: per account and direction, in any 24 hours.
    pub account_bytes_per_day: Option<u64>,
    /// `account-messages-per-second`: per account and direction.
    pub account_messages_per_second: Option<f64>,
    /// `bytes-per-second`: the whole run, per direction.
    pub bytes_per_second: Option<u64>,
}

/// `[cutover]`.
#[derive(Debug, Clone, Default)]
pub struct CutoverSettings {
    /// MX host names of the new provider: lower case, no trailing dot.
    pub new_mx: Vec<String>,
    /// DNS servers to ask instead of the system's (tests, split-horizon DNS).
    pub nameservers: Vec<std::net::SocketAddr>,
}

/// One CSV row, validated.
#[derive(Debug, Clone)]
pub struct Account {
    pub source_user: String,
    /// `None` only when `[source.admin]` logs in on the user's behalf.
    pub source_password: Option<SecretString>,
    pub destination_user: String,
    /// `None` only when `[destination.admin]` logs in on the user's behalf.
    pub destination_password: Option<SecretString>,
    /// 1-based line in the CSV file (header = line 1).
    pub line: usize,
}

impl Settings {
    /// `[source]` or `[destination]`.
    pub fn server(&self, side: crate::model::Side) -> &ServerSettings {
        match side {
            crate::model::Side::Source => &self.source,
            crate::model::Side::Destination => &self.destination,
        }
    }
}

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: PathBuf,
    pub csv_path: PathBuf,
    pub source: ServerSettings,
    pub destination: ServerSettings,
    pub folders: FolderRules,
    pub messages: MessageRules,
    pub limits: Limits,
    /// `[state] dir`, resolved against the config file's directory: the ledger and the
    /// cutover observations (no secrets).
    pub state_dir: PathBuf,
    pub cutover: CutoverSettings,
    /// Selected accounts (after `--account` / `--shard`), in CSV order.
    pub accounts: Vec<Account>,
    /// SHA-256 (hex) over the config file bytes and the (source_user, destination_user)
    /// list of ALL the CSV's accounts (not only the selected ones), never over passwords.
    /// Saved plans carry it.
    pub config_digest: String,
    /// Loud warnings about risky settings (`accept-invalid-certs`, clear-text passwords);
    /// the caller logs each one on every run.
    pub warnings: Vec<String>,
}

/// Reads `config_path` and the accounts CSV it names, resolves the admin passwords, checks
/// every safety rule, and keeps the accounts picked by `selection`.
pub fn load(config_path: &Path, selection: &Selection) -> Result<Settings, SettingsError> {
    config::load(config_path, selection)
}
