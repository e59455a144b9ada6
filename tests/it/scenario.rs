//! A builder-style harness for CLI-level tests: two private Dovecots (source and
//! destination), fresh users on both, a `migration.toml` + `accounts.csv` in a temp dir, and
//! the real `mailshift` binary run in that dir.
//!
//! ```ignore
//! let mut s = Scenario::new()
//!     .source(Layout::Classic)
//!     .destination(Layout::Modern)
//!     .account("alice")
//!     .account("bob");
//! s.src("alice").append_many("INBOX", &msgs);
//! s.set_source_password_in_csv("bob", "wrong");
//! let r = s.run(&["plan", "--detailed-exitcode"]);
//! assert_eq!(r.status, 2, "{r}");
//! ```
//!
//! The config and CSV are written again before every run, so a test can change an account's
//! CSV password or add TOML between runs.

#![allow(dead_code)]

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Dovecot, DovecotBuilder, Layout, RawImap};

/// A run of the binary is killed after this long (a hung plan must fail, not block CI).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Destination,
}

/// One migrated account: its users and real passwords on both servers, and what the CSV says.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    /// The short name the test uses (`alice`).
    pub name: String,
    pub source_user: String,
    pub source_password: String,
    pub destination_user: String,
    pub destination_password: String,
    /// What the CSV holds (normally the real passwords).
    pub csv_source_password: String,
    pub csv_destination_password: String,
}

/// The end of one run of the binary.
#[derive(Clone)]
pub(crate) struct CmdResult {
    /// Exit status; -1 when killed by a signal.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CmdResult {
    /// The last line of stdout (the `Plan:` / `No changes.` line in text mode).
    pub(crate) fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    /// stdout parsed as one JSON document (fails on anything else on stdout).
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{self}"))
    }

    /// stdout and stderr together.
    pub(crate) fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for CmdResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit status {} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

impl fmt::Debug for CmdResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Two servers, some accounts, a config dir.
pub(crate) struct Scenario {
    source: Option<Dovecot>,
    destination: Option<Dovecot>,
    /// Ports are kept apart from the servers, so a stopped server stays in the config.
    source_port: Option<u16>,
    destination_port: Option<u16>,
    accounts: Vec<Account>,
    extra_toml: String,
    /// Extra keys of `[source]` and `[destination]` (e.g. `auth`, `token-command`).
    source_toml: String,
    destination_toml: String,
    dir: tempfile::TempDir,
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new()
    }
}

impl Scenario {
    /// An empty scenario: no servers yet, a fresh temp dir.
    pub(crate) fn new() -> Scenario {
        Scenario {
            source: None,
            destination: None,
            source_port: None,
            destination_port: None,
            accounts: Vec::new(),
            extra_toml: String::new(),
            source_toml: String::new(),
            destination_toml: String::new(),
            dir: tempfile::Builder::new()
                .prefix("ms-scenario-")
                .tempdir()
                .expect("create the scenario dir"),
        }
    }

    /// Start a source Dovecot with this layout (default special folders).
    pub(crate) fn source(self, layout: Layout) -> Scenario {
        self.source_server(Dovecot::start(layout))
    }

    /// Start the source from a customised builder (special folders, extra config, ...).
    pub(crate) fn source_with(self, builder: DovecotBuilder) -> Scenario {
        self.source_server(builder.start())
    }

    /// Use an already running Dovecot as the source.
    pub(crate) fn source_server(mut self, dc: Dovecot) -> Scenario {
        assert!(
            self.accounts.is_empty(),
            "set the servers before the accounts"
        );
        self.source_port = Some(dc.port());
        self.source = Some(dc);
        self
    }

    /// Start a destination Dovecot with this layout.
    pub(crate) fn destination(self, layout: Layout) -> Scenario {
        self.destination_server(Dovecot::start(layout))
    }

    pub(crate) fn destination_with(self, builder: DovecotBuilder) -> Scenario {
        self.destination_server(builder.start())
    }

    pub(crate) fn destination_server(mut self, dc: Dovecot) -> Scenario {
        assert!(
            self.accounts.is_empty(),
            "set the servers before the accounts"
        );
        self.destination_port = Some(dc.port());
        self.destination = Some(dc);
        self
    }

    /// A fresh user on each server (unique names and passwords), in the CSV as given.
    pub(crate) fn account(mut self, name: &str) -> Scenario {
        assert!(
            !self.accounts.iter().any(|a| a.name == name),
            "account `{name}` twice"
        );
        let (source_user, source_password) = self.server(Side::Source).fresh_user(name);
        let (destination_user, destination_password) =
            self.server(Side::Destination).fresh_user(name);
        self.accounts.push(Account {
            name: name.to_string(),
            csv_source_password: source_password.clone(),
            csv_destination_password: destination_password.clone(),
            source_user,
            source_password,
            destination_user,
            destination_password,
        });
        self
    }

    /// Like [`Scenario::account`], with e-mail addresses as user names on both servers
    /// (`alice-PID-N@domain`), as `cutover` needs a mail domain.
    pub(crate) fn account_in(mut self, name: &str, domain: &str) -> Scenario {
        assert!(
            !self.accounts.iter().any(|a| a.name == name),
            "account `{name}` twice"
        );
        let user = format!("{}@{domain}", crate::support::unique_user(name));
        let password = format!("{user}-pw");
        self.server(Side::Source).add_user(&user, &password);
        self.server(Side::Destination).add_user(&user, &password);
        self.accounts.push(Account {
            name: name.to_string(),
            csv_source_password: password.clone(),
            csv_destination_password: password.clone(),
            source_user: user.clone(),
            source_password: password.clone(),
            destination_user: user,
            destination_password: password,
        });
        self
    }

    /// Extra TOML appended to `migration.toml` (whole tables, e.g. `[folders]\n...`).
    pub(crate) fn config(mut self, toml: &str) -> Scenario {
        self.add_config(toml);
        self
    }

    /// Like [`Scenario::config`], for a scenario already in use.
    pub(crate) fn add_config(&mut self, toml: &str) {
        self.extra_toml.push_str(toml);
        self.extra_toml.push('\n');
    }

    /// Extra keys for the `[source]` or `[destination]` table (`key = value` lines).
    pub(crate) fn server_config(mut self, side: Side, keys: &str) -> Scenario {
        let table = match side {
            Side::Source => &mut self.source_toml,
            Side::Destination => &mut self.destination_toml,
        };
        table.push_str(keys);
        table.push('\n');
        self
    }

    /// Replaces the extra TOML given so far.
    pub(crate) fn set_config(&mut self, toml: &str) {
        self.extra_toml = format!("{toml}\n");
    }

    /// The server of one side; panics if it was never started or was stopped.
    pub(crate) fn server(&self, side: Side) -> &Dovecot {
        match side {
            Side::Source => self.source.as_ref(),
            Side::Destination => self.destination.as_ref(),
        }
        .unwrap_or_else(|| panic!("no {side:?} server in this scenario (not started or stopped)"))
    }

    pub(crate) fn source_dovecot(&self) -> &Dovecot {
        self.server(Side::Source)
    }

    pub(crate) fn destination_dovecot(&self) -> &Dovecot {
        self.server(Side::Destination)
    }

    /// Port of a side as written into the config (still known after a stop).
    pub(crate) fn port(&self, side: Side) -> u16 {
        match side {
            Side::Source => self.source_port,
            Side::Destination => self.destination_port,
        }
        .unwrap_or_else(|| panic!("no {side:?} server in this scenario"))
    }

    /// Kill one server (its port stays in the config: connections are then refused).
    /// Restarts one side's Dovecot (SIGTERM, then the same port and mail); how long it
    /// was away.
    pub(crate) fn restart(&mut self, side: Side) -> Duration {
        match side {
            Side::Source => self.source.as_mut(),
            Side::Destination => self.destination.as_mut(),
        }
        .unwrap_or_else(|| panic!("no running {side:?} server to restart"))
        .restart()
    }

    pub(crate) fn stop(&mut self, side: Side) {
        let dc = match side {
            Side::Source => self.source.take(),
            Side::Destination => self.destination.take(),
        };
        drop(dc.unwrap_or_else(|| panic!("no running {side:?} server to stop")));
    }

    /// Change the config's port of one side (e.g. to a port nobody listens on).
    pub(crate) fn set_port(&mut self, side: Side, port: u16) {
        match side {
            Side::Source => self.source_port = Some(port),
            Side::Destination => self.destination_port = Some(port),
        }
    }

    pub(crate) fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    #[track_caller]
    pub(crate) fn acct(&self, name: &str) -> &Account {
        self.accounts
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no account `{name}` in this scenario"))
    }

    /// Put another (e.g. wrong) password into the CSV; the server keeps the real one.
    pub(crate) fn set_csv_password(&mut self, side: Side, name: &str, password: &str) {
        let a = self
            .accounts
            .iter_mut()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no account `{name}` in this scenario"));
        match side {
            Side::Source => a.csv_source_password = password.to_string(),
            Side::Destination => a.csv_destination_password = password.to_string(),
        }
    }

    /// A new logged-in raw connection for one account and side.
    pub(crate) fn imap(&self, side: Side, name: &str) -> RawImap {
        let a = self.acct(name);
        let (user, pw) = match side {
            Side::Source => (&a.source_user, &a.source_password),
            Side::Destination => (&a.destination_user, &a.destination_password),
        };
        RawImap::login(self.server(side).port(), user, pw)
    }

    /// Raw connection to the source for `name`.
    pub(crate) fn src(&self, name: &str) -> RawImap {
        self.imap(Side::Source, name)
    }

    /// Raw connection to the destination for `name`.
    pub(crate) fn dst(&self, name: &str) -> RawImap {
        self.imap(Side::Destination, name)
    }

    /// The layout of one side.
    pub(crate) fn layout(&self, side: Side) -> Layout {
        self.server(side).layout()
    }

    /// The scenario's working dir (holds `migration.toml`, `accounts.csv`).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The config as it will be written.
    pub(crate) fn config_text(&self) -> String {
        let server = |table: &str, port: u16, extra: &str| {
            format!(
                "[{table}]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\n{extra}\n"
            )
        };
        let mut out = String::new();
        out.push_str(&server(
            "source",
            self.port(Side::Source),
            &self.source_toml,
        ));
        out.push_str(&server(
            "destination",
            self.port(Side::Destination),
            &self.destination_toml,
        ));
        out.push_str("[accounts]\ncsv = \"accounts.csv\"\n\n");
        out.push_str(&self.extra_toml);
        out
    }

    /// The CSV as it will be written (fields quoted, so any password works).
    pub(crate) fn csv_text(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut out =
            String::from("source_user,source_password,destination_user,destination_password\n");
        for a in &self.accounts {
            out.push_str(&format!(
                "{},{},{},{}\n",
                q(&a.source_user),
                q(&a.csv_source_password),
                q(&a.destination_user),
                q(&a.csv_destination_password)
            ));
        }
        out
    }

    /// Write `migration.toml` and `accounts.csv` into the dir.
    pub(crate) fn write_files(&self) {
        fs::write(self.path("migration.toml"), self.config_text()).expect("write migration.toml");
        fs::write(self.path("accounts.csv"), self.csv_text()).expect("write accounts.csv");
    }

    /// Write the files, run `mailshift ARGS` in the dir and wait for it.
    pub(crate) fn run(&self, args: &[&str]) -> CmdResult {
        self.write_files();
        run_mailshift(self.dir.path(), args)
    }

    /// [`Self::run`] with a time limit and a `tick(elapsed, pid)` while it runs
    /// ([`run_mailshift_watched`]).
    pub(crate) fn run_watched(
        &self,
        args: &[&str],
        limit: Duration,
        tick: impl FnMut(Duration, u32),
    ) -> CmdResult {
        self.write_files();
        run_mailshift_watched(self.dir.path(), args, limit, tick)
    }
}

/// Run the real binary with `args` in `dir` (stdin closed, no colours, no RUST_LOG).
/// Output goes to files, so a chatty run cannot block on a full pipe.
pub(crate) fn run_mailshift(dir: &Path, args: &[&str]) -> CmdResult {
    run_mailshift_watched(dir, args, RUN_TIMEOUT, |_, _| {})
}

/// [`run_mailshift`], failing after `limit` instead of the default, and calling
/// `tick(elapsed, pid)` about every 20 ms while the binary runs (to act on the servers
/// mid-run, or to watch the process).
pub(crate) fn run_mailshift_watched(
    dir: &Path,
    args: &[&str],
    limit: Duration,
    mut tick: impl FnMut(Duration, u32),
) -> CmdResult {
    let out_path = dir.join(".stdout");
    let err_path = dir.join(".stderr");
    let stdout = fs::File::create(&out_path).expect("create the stdout file");
    let stderr = fs::File::create(&err_path).expect("create the stderr file");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailshift"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("CLICOLOR_FORCE")
        // Locks go under the test's own state dir, not the user's runtime dir.
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("run the mailshift binary");
    let mut ticked = started;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mailshift") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mailshift {args:?} hung: still running after {limit:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                read_lossy(&out_path),
                read_lossy(&err_path)
            );
        }
        if ticked.elapsed() >= Duration::from_millis(20) {
            ticked = Instant::now();
            tick(started.elapsed(), child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    CmdResult {
        status: status.code().unwrap_or(-1),
        stdout: read_lossy(&out_path),
        stderr: read_lossy(&err_path),
        elapsed,
    }
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

/// A loopback port nobody listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr").port()
}

/// Collapse runs of whitespace to one space and trim (to compare aligned plan lines).
pub(crate) fn squash(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Binary units with one decimal, as docs/plan-output.md specifies (`0 B`, `512.0 KiB`,
/// `85.3 MiB`): written here independently of the product's formatter.
pub(crate) fn human_bytes(b: u64) -> String {
    if b < 1024 {
        return format!("{b} B");
    }
    let units = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

/// Integers with `,` thousands separators.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `UID -> RFC822.SIZE` of every message in `folder`, read with EXAMINE (changes nothing).
pub(crate) fn rfc822_sizes(
    imap: &mut RawImap,
    folder: &str,
) -> std::collections::BTreeMap<u32, u64> {
    let examine = imap.raw_command(&format!("EXAMINE {}", crate::support::quote(folder)));
    assert!(
        examine.last().is_some_and(|l| l.contains(" OK ")),
        "EXAMINE {folder}: {examine:?}"
    );
    let lines = imap.raw_command("UID FETCH 1:* (UID RFC822.SIZE)");
    let mut out = std::collections::BTreeMap::new();
    for line in &lines {
        let Some(open) = line.find("FETCH (") else {
            continue;
        };
        let items: Vec<&str> = line[open + 7..]
            .trim_end_matches(')')
            .split_whitespace()
            .collect();
        let get = |key: &str| -> u64 {
            let i = items
                .iter()
                .position(|k| k.eq_ignore_ascii_case(key))
                .unwrap_or_else(|| panic!("no {key} in `{line}`"));
            items[i + 1].parse().expect("a number")
        };
        out.insert(get("UID") as u32, get("RFC822.SIZE"));
    }
    imap.raw_command("UNSELECT");
    out
}

/// The expected `Plan:` line (docs/plan-output.md grammar), written independently of the product.
pub(crate) fn plan_line(
    folders: u64,
    messages: u64,
    bytes: u64,
    present: u64,
    skipped: u64,
) -> String {
    format!(
        "Plan: {} folder{} to create, {} message{} ({}) to copy; {} already present, {} skipped.",
        thousands(folders),
        if folders == 1 { "" } else { "s" },
        thousands(messages),
        if messages == 1 { "" } else { "s" },
        human_bytes(bytes),
        thousands(present),
        thousands(skipped),
    )
}

/// Dovecot 2.3 refuses any message over 64 KiB with
/// `NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration`.
pub(crate) const SIZE_LIMIT: &str = "mail_plugins = $mail_plugins quota
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_max_mail_size = 64k
}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_format_like_the_spec() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(512 * 1024), "512.0 KiB");
        assert_eq!(human_bytes(89_443_532), "85.3 MiB");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_216), "1,216");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(
            squash("  = Sent    ← INBOX.Sent Items  (\\Sent)"),
            "= Sent ← INBOX.Sent Items (\\Sent)"
        );
    }
}
