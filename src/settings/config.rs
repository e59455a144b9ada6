//! `migration.toml` -> [`Settings`]: strict parsing (unknown keys are errors, so a typo never
//! silently falls back to a default), the defaults of docs/config.md, the safety rules
//! (no clear-text passwords to a remote host unless asked for), then the accounts CSV,
//! the selection and the admin secrets.
//!
//! Errors carry the file, the line (from the TOML span) and the key.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU16, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::accounts::{self, AdminLogins};
use super::error::Problem;
use super::select::{self, Selection};
use super::size::parse_size;
use super::{
    secret, Account, AdminLogin, AuthMethod, CutoverSettings, DeletedOnDestination,
    FlagsOnExisting, FolderRules, Limits, MessageRules, MovedOnDestination, PacingLimits,
    SecretSource, Security, ServerSettings, Settings, SettingsError, TlsRoots, ViewOnlyMessages,
};

// ---------------------------------------------------------------------------------------
// The file as written. Field names are the config keys (kebab-case); `Spanned` keeps the
// position of values that later checks must point at.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    source: RawServer,
    destination: RawServer,
    accounts: RawAccounts,
    #[serde(default)]
    folders: RawFolders,
    #[serde(default)]
    messages: RawMessages,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    cutover: RawCutover,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawState {
    dir: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCutover {
    #[serde(default)]
    new_mx: Vec<Spanned<String>>,
    #[serde(default)]
    nameservers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawServer {
    host: Spanned<String>,
    port: Option<NonZeroU16>,
    security: Option<Spanned<Security>>,
    ca_file: Option<Spanned<PathBuf>>,
    tls_roots: Option<TlsRoots>,
    accept_invalid_certs: Option<Spanned<bool>>,
    #[serde(default)]
    allow_plaintext_auth: bool,
    auth: Option<Spanned<AuthMethod>>,
    token_command: Option<Spanned<String>>,
    max_connections: Option<NonZeroUsize>,
    admin: Option<Spanned<RawAdmin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAdmin {
    user: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAccounts {
    csv: Spanned<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct RawFolders {
    exclude: Vec<Spanned<String>>,
    special_use: bool,
    include_views: bool,
    rename: RenameRules,
    view_only_messages: ViewOnlyMessages,
}

impl Default for RawFolders {
    fn default() -> Self {
        RawFolders {
            exclude: Vec::new(),
            special_use: true,
            include_views: false,
            rename: RenameRules::default(),
            view_only_messages: ViewOnlyMessages::Archive,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct RawMessages {
    max_size: Option<ByteSize>,
    copy_deleted: bool,
    flags_on_existing: FlagsOnExisting,
    fix_bare_lf: bool,
    moved_on_destination: MovedOnDestination,
    deleted_on_destination: DeletedOnDestination,
}

impl Default for RawMessages {
    fn default() -> Self {
        RawMessages {
            max_size: None,
            copy_deleted: false,
            flags_on_existing: FlagsOnExisting::Keep,
            fix_bare_lf: false,
            moved_on_destination: MovedOnDestination::Skip,
            deleted_on_destination: DeletedOnDestination::Skip,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct RawLimits {
    parallel_accounts: NonZeroUsize,
    connections_per_account: NonZeroUsize,
    connect_timeout: HumanDuration,
    idle_timeout: HumanDuration,
    account_bytes_per_day: Option<RateSize>,
    account_messages_per_second: Option<PositiveNumber>,
    bytes_per_second: Option<RateSize>,
    stream_above: ByteSize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            parallel_accounts: NonZeroUsize::new(4).unwrap(),
            connections_per_account: NonZeroUsize::new(2).unwrap(),
            connect_timeout: HumanDuration(Duration::from_secs(30)),
            idle_timeout: HumanDuration(Duration::from_secs(120)),
            account_bytes_per_day: None,
            account_messages_per_second: None,
            bytes_per_second: None,
            stream_above: ByteSize(DEFAULT_STREAM_ABOVE),
        }
    }
}

/// `stream-above`: messages bigger than 8 MiB are read and sent in 8 MiB pieces.
const DEFAULT_STREAM_ABOVE: u64 = 8 << 20;

const DEFAULT_MAX_CONNECTIONS: usize = 10;

/// `[folders.rename]` in file order (a TOML table has no order of its own: the value spans
/// give it back).
#[derive(Default)]
struct RenameRules(Vec<(String, Spanned<String>)>);

impl<'de> Deserialize<'de> for RenameRules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RenameRules;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of `\"source folder\" = \"destination folder\"`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RenameRules, A::Error> {
                let mut rules: Vec<(String, Spanned<String>)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Spanned<String>>()? {
                    rules.push((k, v));
                }
                rules.sort_by_key(|(_, v)| v.span().start);
                Ok(RenameRules(rules))
            }
        }
        d.deserialize_map(V)
    }
}

/// `"50MiB"`, `"1.5GiB"` or a plain integer of bytes.
struct ByteSize(u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"50MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A pacing size (`"500MB"`, `"1GiB"`, a number of bytes), more than zero: SI units are
/// decimal here, as providers state their caps.
struct RateSize(u64);

impl<'de> Deserialize<'de> for RateSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RateSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"500MB\" or \"1GiB\", or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RateSize, E> {
                let n = super::size::parse_rate_size(v).map_err(E::custom)?;
                self.visit_u64(n)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RateSize, E> {
                if v == 0 {
                    return Err(E::custom(
                        "must be more than zero (leave the key out for no cap)",
                    ));
                }
                Ok(RateSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RateSize, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("a size cannot be negative"))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number of things per second (`5`, `0.5`), more than zero and finite.
struct PositiveNumber(f64);

impl<'de> Deserialize<'de> for PositiveNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PositiveNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number more than zero, such as 5 or 0.5")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PositiveNumber, E> {
                if v.is_finite() && v > 0.0 {
                    Ok(PositiveNumber(v))
                } else {
                    Err(E::custom(
                        "must be more than zero (leave the key out for no cap)",
                    ))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PositiveNumber, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PositiveNumber, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

/// A humantime duration (`"30s"`, `"2m"`), more than zero.
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let duration = humantime::parse_duration(&s).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration `{s}`: {e}; expected e.g. \"30s\", \"2m\""
            ))
        })?;
        if duration.is_zero() {
            return Err(de::Error::custom(format!(
                "invalid duration `{s}`: must be more than zero"
            )));
        }
        Ok(HumanDuration(duration))
    }
}

// ---------------------------------------------------------------------------------------

/// What the error builders need to know about the config file.
struct ConfigFile<'a> {
    name: String,
    text: &'a str,
    dir: &'a Path,
}

impl ConfigFile<'_> {
    fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    fn error_at(&self, offset: Option<usize>, problem: impl Into<Problem>) -> SettingsError {
        let problem = problem.into();
        SettingsError::Config {
            file: self.name.clone(),
            line: offset.map(|o| self.line_of(o)),
            message: problem.message,
            hint: problem.hint,
        }
    }

    fn warning_at(&self, offset: usize, message: &str) -> String {
        format!("`{}` line {}: {message}", self.name, self.line_of(offset))
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The table named by a `[table]` / `[[table]]` header line (dotted, quotes removed).
fn header_on_line(text: &str, line: usize) -> Option<String> {
    let t = text.lines().nth(line.checked_sub(1)?)?.trim();
    if !t.starts_with('[') {
        return None;
    }
    let inner = t.trim_start_matches('[');
    let inner = &inner[..inner.find(']')?];
    Some(
        inner
            .split('.')
            .map(|p| p.trim().trim_matches('"'))
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// The `[table]` a line is in, or `None` at the top level. When the line is itself a header,
/// its parent (an unknown `[source.hots]` is a bad key of `[source]`).
fn table_context(text: &str, line: usize) -> Option<String> {
    if let Some(own) = header_on_line(text, line) {
        return own.rsplit_once('.').map(|(parent, _)| parent.to_string());
    }
    (1..line).rev().find_map(|l| header_on_line(text, l))
}

/// The key of a `key = value` line.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim().trim_matches('"').trim();
    (!key.is_empty() && !key.starts_with('[') && !key.starts_with('#')).then(|| key.to_string())
}

/// Turns a serde error from the TOML deserializer into "line N: ... `key` in `[table]`".
fn describe_toml_error(cfg: &ConfigFile<'_>, e: &toml::de::Error) -> SettingsError {
    let message = e.message().trim_end();
    let Some(span) = e.span() else {
        return cfg.error_at(None, message.to_string());
    };
    let line = cfg.line_of(span.start);
    let missing = message.starts_with("missing field `");
    // A missing key is reported at its table's header: that table is the context.
    // The root table has an empty span at offset 0.
    let context = match header_on_line(cfg.text, line) {
        _ if missing && span.is_empty() => None,
        Some(own) if missing => Some(own),
        _ => table_context(cfg.text, line),
    };
    let table = match &context {
        Some(t) => format!("in `[{t}]`"),
        None => "at the top level".to_string(),
    };
    // A missing top-level table has no line of its own.
    let at = (!(missing && context.is_none())).then_some(span.start);
    // serde's wording: "unknown field `hots`, expected one of ...", "missing field `host`".
    let message: Problem = if let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))
    {
        let kind = &message[..message.len() - rest.len()];
        match rest.split_once('`') {
            Some((field, _)) if missing && context.is_none() => Problem::hinted(
                format!("{kind}{field}` {table}"),
                format!("add a `[{field}]` table"),
            ),
            Some((field, tail)) => format!("{kind}{field}` {table}{tail}").into(),
            None => format!("{message} ({table})").into(),
        }
    } else if let Some(key) = key_on_line(cfg.text, line) {
        format!("`{key}` {table}: {message}").into()
    } else {
        format!("{table}: {message}").into()
    };
    cfg.error_at(at, message)
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.eq_ignore_ascii_case("localhost.")
        || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A server section checked, with its admin secret not yet fetched.
struct PendingServer {
    settings: ServerSettings,
    admin: Option<(usize, String, SecretSource)>,
}

fn check_server(
    cfg: &ConfigFile<'_>,
    side: &str,
    raw: RawServer,
    warnings: &mut Vec<String>,
) -> Result<PendingServer, SettingsError> {
    let host_at = raw.host.span().start;
    let host = raw.host.into_inner().trim().to_string();
    let bad_host = |why: &str, hint: Option<&str>| {
        cfg.error_at(
            Some(host_at),
            Problem {
                message: format!("`host` in `[{side}]` {why}"),
                hint: hint.map(str::to_string),
            },
        )
    };
    if host.is_empty() {
        return Err(bad_host("is empty", None));
    }
    if host.contains("://") {
        return Err(bad_host(
            "must be a bare server name",
            Some(
                "write `host = \"imap.example.com\"`, without a scheme; the port goes in \
                 `port`",
            ),
        ));
    }
    if host.chars().any(char::is_whitespace) {
        return Err(bad_host("contains whitespace", None));
    }
    let bracketless = host.trim_start_matches('[').trim_end_matches(']');
    if host.contains(':') && bracketless.parse::<IpAddr>().is_err() {
        return Err(bad_host(
            "must not contain a port",
            Some("put the port in `port = ...`"),
        ));
    }

    let (security, security_at) = match raw.security {
        Some(s) => (*s.get_ref(), Some(s.span().start)),
        None => (Security::Tls, None),
    };
    let port = raw.port.map(NonZeroU16::get).unwrap_or(match security {
        Security::Tls => 993,
        Security::StartTls | Security::Plain => 143,
    });
    if security == Security::Plain && !is_loopback(&host) {
        let at = security_at.unwrap_or(host_at);
        if !raw.allow_plaintext_auth {
            return Err(cfg.error_at(
                Some(at),
                Problem::hinted(
                    format!(
                        "`security = \"plain\"` in `[{side}]` would send passwords unencrypted \
                         to `{host}`"
                    ),
                    format!(
                        "use `security = \"starttls\"` or `\"tls\"`; if the network is \
                         trusted, add `allow-plaintext-auth = true` to `[{side}]`"
                    ),
                ),
            ));
        }
        warnings.push(cfg.warning_at(
            at,
            &format!("`[{side}]`: passwords and mail travel unencrypted to `{host}`"),
        ));
    }

    let accept_invalid_certs = match raw.accept_invalid_certs {
        Some(a) if *a.get_ref() => {
            if security != Security::Plain {
                warnings.push(cfg.warning_at(
                    a.span().start,
                    &format!(
                        "`[{side}]` accept-invalid-certs = true: the certificate of `{host}` is \
                         not checked, anyone on the network path can read the passwords and mail"
                    ),
                ));
            }
            true
        }
        _ => false,
    };

    let ca_file = match raw.ca_file {
        None => None,
        Some(c) => {
            let path = cfg.dir.join(c.get_ref());
            if !path.is_file() {
                return Err(cfg.error_at(
                    Some(c.span().start),
                    Problem::hinted(
                        format!(
                            "`ca-file` in `[{side}]`: `{}` does not exist or is not a file",
                            path.display()
                        ),
                        "a relative path is relative to the config file's directory",
                    ),
                ));
            }
            Some(path)
        }
    };

    let (auth, auth_at) = match raw.auth {
        Some(a) => (*a.get_ref(), Some(a.span().start)),
        None => (AuthMethod::Auto, None),
    };
    let token_command = match raw.token_command {
        None => None,
        Some(t) => {
            let at = t.span().start;
            let cmd = t.into_inner();
            if cmd.trim().is_empty() {
                return Err(
                    cfg.error_at(Some(at), format!("`token-command` in `[{side}]` is empty"))
                );
            }
            if !matches!(auth, AuthMethod::Xoauth2 | AuthMethod::OAuthBearer) {
                warnings.push(cfg.warning_at(
                    at,
                    &format!(
                        "`token-command` in `[{side}]` is ignored: it is only used with \
                         `auth = \"xoauth2\"` or `\"oauthbearer\"`"
                    ),
                ));
            }
            Some(cmd)
        }
    };
    if matches!(auth, AuthMethod::Xoauth2 | AuthMethod::OAuthBearer) && token_command.is_none() {
        let name = if auth == AuthMethod::Xoauth2 {
            "xoauth2"
        } else {
            "oauthbearer"
        };
        return Err(cfg.error_at(
            auth_at,
            Problem::hinted(
                format!("`auth = \"{name}\"` in `[{side}]` needs `token-command`"),
                "add `token-command = \"...\"`, a command that prints a bearer token for \
                 `{user}`",
            ),
        ));
    }

    let admin = match raw.admin {
        None => None,
        Some(a) => {
            let at = a.span().start;
            let line = cfg.line_of(at);
            let a = a.into_inner();
            let table = format!("`[{side}.admin]`");
            if a.user.trim().is_empty() {
                return Err(cfg.error_at(Some(at), format!("`user` in {table} is empty")));
            }
            let mut given: Vec<(&str, SecretSource)> = Vec::new();
            if let Some(v) = a.password_env {
                given.push(("password-env", SecretSource::Env(v)));
            }
            if let Some(v) = a.password_file {
                given.push(("password-file", SecretSource::File(v)));
            }
            if let Some(v) = a.password_command {
                given.push(("password-command", SecretSource::Command(v)));
            }
            match given.len() {
                1 => Some((line, a.user.trim().to_string(), given.remove(0).1)),
                0 => {
                    return Err(cfg.error_at(
                        Some(at),
                        Problem::hinted(
                            format!(
                                "{table} needs one of `password-env`, `password-file`, \
                                 `password-command`"
                            ),
                            format!(
                                "e.g. `password-env = \"{}_ADMIN_PASSWORD\"`",
                                side.to_uppercase()
                            ),
                        ),
                    ))
                }
                _ => {
                    let names: Vec<String> = given.iter().map(|(n, _)| format!("`{n}`")).collect();
                    return Err(cfg.error_at(
                        Some(at),
                        format!(
                            "{table} has {}: keep exactly one password source",
                            names.join(" and ")
                        ),
                    ));
                }
            }
        }
    };

    Ok(PendingServer {
        settings: ServerSettings {
            host,
            port,
            security,
            ca_file,
            tls_roots: raw.tls_roots.unwrap_or(TlsRoots::System),
            accept_invalid_certs,
            allow_plaintext_auth: raw.allow_plaintext_auth,
            auth,
            token_command,
            max_connections: raw
                .max_connections
                .map_or(DEFAULT_MAX_CONNECTIONS, NonZeroUsize::get),
            admin: None,
        },
        admin,
    })
}

/// The default `[state] dir`, relative to the config file.
const DEFAULT_STATE_DIR: &str = ".mailshift";

fn check_state(cfg: &ConfigFile<'_>, raw: RawState) -> Result<PathBuf, SettingsError> {
    match raw.dir {
        None => Ok(cfg.dir.join(DEFAULT_STATE_DIR)),
        Some(d) if d.get_ref().as_os_str().is_empty() => Err(cfg.error_at(
            Some(d.span().start),
            "`dir` in `[state]` is empty".to_string(),
        )),
        Some(d) => Ok(cfg.dir.join(d.get_ref())),
    }
}

/// `[cutover]`: MX names normalised (lower case, no trailing dot); nameservers as socket
/// addresses (port 53 when none is given).
fn check_cutover(cfg: &ConfigFile<'_>, raw: RawCutover) -> Result<CutoverSettings, SettingsError> {
    let mut new_mx = Vec::new();
    for mx in raw.new_mx {
        let name = mx
            .get_ref()
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if name.is_empty()
            || name.contains("://")
            || name
                .chars()
                .any(|c| c.is_whitespace() || c == ':' || c == '/')
        {
            return Err(cfg.error_at(
                Some(mx.span().start),
                Problem {
                    message: format!(
                        "`new-mx` in `[cutover]`: `{}` is not a host name",
                        mx.get_ref()
                    ),
                    hint: Some(
                        "list the new provider's MX host names, e.g. `new-mx = \
                         [\"mx1.new.example\"]`"
                            .to_string(),
                    ),
                },
            ));
        }
        if !new_mx.contains(&name) {
            new_mx.push(name);
        }
    }
    let mut nameservers = Vec::new();
    for ns in raw.nameservers {
        let text = ns.get_ref().trim();
        let addr = text
            .parse::<SocketAddr>()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
        match addr {
            Ok(a) => nameservers.push(a),
            Err(_) => {
                return Err(cfg.error_at(
                    Some(ns.span().start),
                    Problem {
                        message: format!(
                            "`nameservers` in `[cutover]`: `{text}` is not an IP address with \
                             an optional port"
                        ),
                        hint: Some(
                            "e.g. `nameservers = [\"192.0.2.53\", \"127.0.0.1:5353\"]`".to_string(),
                        ),
                    },
                ))
            }
        }
    }
    Ok(CutoverSettings {
        new_mx,
        nameservers,
    })
}

fn check_folders(cfg: &ConfigFile<'_>, raw: RawFolders) -> Result<FolderRules, SettingsError> {
    let mut exclude = Vec::new();
    for e in raw.exclude {
        if e.get_ref().trim().is_empty() {
            return Err(cfg.error_at(
                Some(e.span().start),
                "`exclude` in `[folders]` contains an empty pattern".to_string(),
            ));
        }
        exclude.push(e.into_inner());
    }
    let mut rename = Vec::new();
    for (from, to) in raw.rename.0 {
        if from.trim().is_empty() || to.get_ref().trim().is_empty() {
            return Err(cfg.error_at(
                Some(to.span().start),
                "`[folders.rename]`: folder names must not be empty".to_string(),
            ));
        }
        rename.push((from, to.into_inner()));
    }
    Ok(FolderRules {
        exclude,
        special_use: raw.special_use,
        include_views: raw.include_views,
        rename,
        view_only_messages: raw.view_only_messages,
    })
}

/// SHA-256 over the parsed config and every CSV row's users (never passwords): a saved
/// plan is stale when either changes. The config is digested as parsed data (keys sorted,
/// as canonical JSON), so comments, blank lines and key order do not make a plan stale.
/// All rows, so that `--account`/`--shard` do not change it.
fn config_digest(config: &toml::Table, accounts: &[Account]) -> String {
    let canonical = serde_json::to_value(config)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(canonical.as_bytes());
    h.update(b"\0accounts\0");
    for a in accounts {
        h.update(a.source_user.as_bytes());
        h.update(b"\t");
        h.update(a.destination_user.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn load(config_path: &Path, selection: &Selection) -> Result<Settings, SettingsError> {
    let name = config_path.display().to_string();
    let bytes = std::fs::read(config_path).map_err(|source| SettingsError::Read {
        file: name.clone(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| SettingsError::Config {
        file: name.clone(),
        line: Some(line_of(
            &String::from_utf8_lossy(&bytes[..e.valid_up_to()]),
            usize::MAX,
        )),
        message: "not valid UTF-8".to_string(),
        hint: None,
    })?;
    let dir = config_path.parent().unwrap_or(Path::new(""));
    let cfg = ConfigFile { name, text, dir };

    // Syntax first, so that its errors are not dressed up as a bad key.
    let parsed = match text.parse::<toml::Table>() {
        Ok(table) => table,
        Err(e) => {
            return Err(cfg.error_at(
                e.span().map(|s| s.start),
                format!("invalid TOML: {}", e.message().trim_end()),
            ))
        }
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| describe_toml_error(&cfg, &e))?;

    let mut warnings = Vec::new();
    let source = check_server(&cfg, "source", raw.source, &mut warnings)?;
    let destination = check_server(&cfg, "destination", raw.destination, &mut warnings)?;
    let folders = check_folders(&cfg, raw.folders)?;
    let state_dir = check_state(&cfg, raw.state)?;
    let cutover = check_cutover(&cfg, raw.cutover)?;

    let csv_at = raw.accounts.csv.span().start;
    let csv_path = dir.join(raw.accounts.csv.get_ref());
    let csv_name = csv_path.display().to_string();
    let csv_bytes = std::fs::read(&csv_path).map_err(|e| {
        cfg.error_at(
            Some(csv_at),
            Problem::hinted(
                format!("`csv` in `[accounts]`: cannot read `{csv_name}`: {e}"),
                "a relative path is relative to the config file's directory",
            ),
        )
    })?;
    let all_accounts = accounts::parse(
        &csv_bytes,
        &csv_name,
        // An admin login or a bearer token from `token-command` replaces the passwords.
        AdminLogins {
            source: source.admin.is_some() || source.settings.uses_token(),
            destination: destination.admin.is_some() || destination.settings.uses_token(),
        },
    )?;
    let digest = config_digest(&parsed, &all_accounts);
    let accounts = select::select(all_accounts, selection, &csv_name)?;

    // Secrets last: the cheap checks above fail first, and a password manager is only
    // asked once the config is known to be good.
    let resolve =
        |side: &str, pending: PendingServer| -> Result<ServerSettings, SettingsError> {
            let mut settings = pending.settings;
            if let Some((line, user, source)) = pending.admin {
                let password = secret::resolve(&source, dir, raw.limits.connect_timeout.0)
                    .map_err(|p| SettingsError::Config {
                        file: cfg.name.clone(),
                        line: Some(line),
                        message: format!("`[{side}.admin]` {}", p.message),
                        hint: p.hint,
                    })?;
                settings.admin = Some(AdminLogin { user, password });
            }
            Ok(settings)
        };
    let source = resolve("source", source)?;
    let destination = resolve("destination", destination)?;

    Ok(Settings {
        config_path: config_path.to_path_buf(),
        csv_path,
        source,
        destination,
        folders,
        messages: MessageRules {
            max_size: raw.messages.max_size.map(|s| s.0),
            copy_deleted: raw.messages.copy_deleted,
            flags_on_existing: raw.messages.flags_on_existing,
            fix_bare_lf: raw.messages.fix_bare_lf,
            moved_on_destination: raw.messages.moved_on_destination,
            deleted_on_destination: raw.messages.deleted_on_destination,
        },
        limits: Limits {
            parallel_accounts: raw.limits.parallel_accounts.get(),
            connections_per_account: raw.limits.connections_per_account.get(),
            connect_timeout: raw.limits.connect_timeout.0,
            idle_timeout: raw.limits.idle_timeout.0,
            pacing: PacingLimits {
                account_bytes_per_day: raw.limits.account_bytes_per_day.map(|s| s.0),
                account_messages_per_second: raw.limits.account_messages_per_second.map(|n| n.0),
                bytes_per_second: raw.limits.bytes_per_second.map(|s| s.0),
            },
            // A piece of 0 bytes would never end; below 64 KiB the round trips dominate.
            stream_above: raw.limits.stream_above.0.max(64 << 10),
        },
        state_dir,
        cutover,
        accounts,
        config_digest: digest,
        warnings,
    })
}

#[cfg(test)]
mod tests;
