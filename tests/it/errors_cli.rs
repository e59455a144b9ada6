//! The ten most common errors, as a user sees them (issue 9): the whole stderr of the real
//! binary compared exactly, with only temp paths, ports and the test's unique user names
//! replaced by placeholders. A command that fails prints `error: …`, each cause once as
//! `  caused by: …`, then a blank line and `hint: …`. An error of one account does not stop
//! the run: stderr carries its one log line, and the account's block on stdout shows the
//! error on one line with its hint indented under it (also compared exactly).
//!
//! Over quota and a refused message are provoked with Dovecot's quota plugin (issue 8): a
//! full mailbox answers `[OVERQUOTA]` and stops the account, a message over the size limit
//! is refused with `[LIMIT]` and the rest is copied.

use std::fs;

use serde_json::Value;

use crate::scenario::{run_mailshift, CmdResult, Scenario, Side, SIZE_LIMIT};
use crate::support::{Dovecot, Layout, MessageBuilder, NewMessage};

/// Replaces run-specific text with placeholders, longest first (a user name may contain
/// another one's prefix).
struct Normaliser(Vec<(String, String)>);

impl Normaliser {
    fn new() -> Normaliser {
        Normaliser(Vec::new())
    }

    fn with(mut self, from: impl Into<String>, to: &str) -> Normaliser {
        let from = from.into();
        assert!(!from.is_empty(), "an empty string to replace with `{to}`");
        self.0.push((from, to.to_string()));
        self.0.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
        self
    }

    /// The scenario's users and ports.
    fn of(s: &Scenario) -> Normaliser {
        let mut n = Normaliser::new()
            .with(s.dir().display().to_string(), "<dir>")
            .with(format!(":{}", s.port(Side::Source)), ":<source-port>")
            .with(
                format!(":{}", s.port(Side::Destination)),
                ":<destination-port>",
            );
        for a in s.accounts() {
            n = n
                .with(a.source_user.clone(), &format!("<{}>", a.name))
                .with(a.destination_user.clone(), &format!("<{}>", a.name));
        }
        n
    }

    fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (from, to) in &self.0 {
            out = out.replace(from, to);
        }
        without_timings(&out)
    }
}

/// Dovecot ends some answers with how long they took: `(0.001 + 0.000 secs)` becomes
/// `(<secs>)`.
fn without_timings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(end) = rest.find(" secs)") {
        let Some(open) = rest[..end].rfind('(') else {
            break;
        };
        let inside = &rest[open + 1..end];
        let timing = inside
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | ' '));
        if timing {
            out.push_str(&rest[..open]);
            out.push_str("(<secs>)");
        } else {
            out.push_str(&rest[..end + " secs)".len()]);
        }
        rest = &rest[end + " secs)".len()..];
    }
    out.push_str(rest);
    out
}

/// The exact stderr, after normalising.
#[track_caller]
fn assert_stderr(r: &CmdResult, n: &Normaliser, want: &str) {
    let got = n.apply(&r.stderr);
    assert_eq!(got, want, "stderr differs\n{r}");
}

/// The account's block of a text plan (from its `a → b` line up to the next blank line),
/// after normalising.
fn account_block(r: &CmdResult, n: &Normaliser) -> String {
    let stdout = n.apply(&r.stdout);
    let start = stdout
        .find(" → ")
        .map(|i| stdout[..i].rfind('\n').map_or(0, |j| j + 1))
        .unwrap_or_else(|| panic!("no account block\n{r}"));
    stdout[start..]
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .to_string()
        + "\n"
}

/// Writes `migration.toml` and `accounts.csv` into a fresh dir (no server needed: these
/// errors stop the run before any connection).
fn files(config: &str, csv: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ms-errors-")
        .tempdir()
        .expect("temp dir");
    fs::write(dir.path().join("migration.toml"), config).unwrap();
    fs::write(dir.path().join("accounts.csv"), csv).unwrap();
    dir
}

const CONFIG: &str = "[source]\nhost = \"127.0.0.1\"\nport = 1\nsecurity = \"plain\"\n\n\
    [destination]\nhost = \"127.0.0.1\"\nport = 2\nsecurity = \"plain\"\n\n\
    [accounts]\ncsv = \"accounts.csv\"\n";
const HEADER: &str = "source_user,source_password,destination_user,destination_password\n";

// ---------------------------------------------------------------------------------------
// Errors that stop the run: `error:`, causes, blank line, hint.

#[test]
fn missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_mailshift(dir.path(), &["plan"]);
    assert_eq!(r.status, 1, "{r}");
    assert_stderr(
        &r,
        &Normaliser::new(),
        "error: cannot read `migration.toml`\n\
         \x20 caused by: No such file or directory (os error 2)\n\
         \n\
         hint: run mailshift in the directory that holds it, or pass `--config FILE`\n",
    );
    assert_eq!(r.stdout, "", "{r}");
}

#[test]
fn bad_toml_key() {
    let dir = files(
        &CONFIG.replace("port = 2", "max-conections = 4"),
        &format!("{HEADER}a@x,pw,b@y,pw\n"),
    );
    let r = run_mailshift(dir.path(), &["plan"]);
    assert_eq!(r.status, 1, "{r}");
    assert_stderr(
        &r,
        &Normaliser::new(),
        "error: `migration.toml` line 8: unknown field `max-conections` in `[destination]`, \
         expected one of `host`, `port`, `security`, `ca-file`, `tls-roots`, \
         `accept-invalid-certs`, `allow-plaintext-auth`, `auth`, `token-command`, \
         `max-connections`, `admin`\n",
    );
    // A missing table is the one key error with a fix to suggest.
    let dir = files(
        &CONFIG.replace("[accounts]\ncsv = \"accounts.csv\"\n", ""),
        HEADER,
    );
    let r = run_mailshift(dir.path(), &["check"]);
    assert_eq!(r.status, 1, "{r}");
    assert_stderr(
        &r,
        &Normaliser::new(),
        "error: `migration.toml`: missing field `accounts` at the top level\n\
         \n\
         hint: add a `[accounts]` table\n",
    );
}

#[test]
fn bad_csv_row() {
    let dir = files(
        CONFIG,
        &format!("{HEADER}a@x,pw-SECRET,b@y,pw-SECRET\nc@x,pw,with,comma,d@y,pw\n"),
    );
    let r = run_mailshift(dir.path(), &["plan"]);
    assert_eq!(r.status, 1, "{r}");
    assert_stderr(
        &r,
        &Normaliser::new(),
        "error: `accounts.csv` line 3: 6 fields, but the header has 4\n\
         \n\
         hint: a value containing a comma must be quoted: `\"...\"`\n",
    );
}

#[test]
fn stale_plan() {
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice");
    s.src("alice")
        .append_many("INBOX", &[NewMessage::new(MessageBuilder::new().build())]);
    let r = s.run(&["plan", "--out", "p.json"]);
    assert_eq!(r.status, 0, "{r}");
    s.add_config("[folders]\nexclude = [\"Junk\"]");
    let mut dst = s.dst("alice");
    let before = dst.snapshot();
    let r = s.run(&["apply", "p.json", "--auto-approve"]);
    assert_eq!(r.status, 1, "{r}");
    assert_stderr(
        &r,
        &Normaliser::of(&s),
        "error: saved plan `p.json` is stale: the config file or the account list changed \
         since it was made\n\
         \n\
         hint: run mailshift plan again\n",
    );
    before.assert_unchanged(&dst.snapshot());
}

// ---------------------------------------------------------------------------------------
// Errors of one account: one log line on stderr, the error and its hint in its block.

#[test]
fn wrong_password() {
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination_with(
            Dovecot::builder()
                .layout(Layout::Modern)
                .extra_config("auth_failure_delay = 0"),
        )
        .account("alice");
    s.set_csv_password(Side::Destination, "alice", "not-the-password");
    let r = s.run(&["plan"]);
    assert_eq!(r.status, 1, "{r}");
    let n = Normaliser::of(&s);
    let error = "destination: login as `<alice>` on `127.0.0.1:<destination-port>` failed: \
                 [AUTHENTICATIONFAILED] Authentication failed.";
    assert_stderr(&r, &n, &format!("ERROR {error} account=<alice>\n"));
    assert_eq!(
        account_block(&r, &n),
        format!(
            "<alice> → <alice>\n  error: {error}\n    hint: check the destination user and \
             password in `accounts.csv` line 2\n"
        ),
        "{r}"
    );
    assert!(!r.all_output().contains("not-the-password"), "{r}");
}

#[test]
fn unknown_host() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice");
    s.write_files();
    let config = s.config_text().replacen(
        &format!(
            "[destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"",
            s.port(Side::Destination)
        ),
        "[destination]\nhost = \"no-such-host.invalid\"\nport = 993\nsecurity = \"tls\"",
        1,
    );
    assert!(config.contains("no-such-host.invalid"), "{config}");
    fs::write(s.path("migration.toml"), config).unwrap();
    let r = run_mailshift(s.dir(), &["plan"]);
    assert_eq!(r.status, 1, "{r}");
    // The resolver's words depend on the machine (`Name or service not known`, `Temporary
    // failure in name resolution`): they are the part in parentheses.
    let n = Normaliser::of(&s);
    let unresolved = |text: &str| {
        let re_start = "unknown host (";
        match text.find(re_start) {
            Some(i) => {
                let rest = &text[i + re_start.len()..];
                let end = rest.find(')').expect("closing parenthesis");
                format!("{}<resolver>{}", &text[..i + re_start.len()], &rest[end..])
            }
            None => text.to_string(),
        }
    };
    let error = "destination: cannot connect to `no-such-host.invalid:993`: unknown host \
                 (<resolver>)";
    assert_eq!(
        unresolved(&n.apply(&r.stderr)),
        format!("ERROR {error} account=<alice>\n"),
        "{r}"
    );
    assert_eq!(
        unresolved(&account_block(&r, &n)),
        format!(
            "<alice> → <alice>\n  error: {error}\n    hint: check the spelling of `host` and \
             the DNS\n"
        ),
        "{r}"
    );
}

#[test]
fn untrusted_certificate() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination_with(Dovecot::builder().layout(Layout::Modern).tls(true))
        .account("alice");
    s.write_files();
    let tls_port = s.destination_dovecot().tls_port();
    let config = s.config_text().replacen(
        &format!(
            "[destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"",
            s.port(Side::Destination)
        ),
        &format!("[destination]\nhost = \"localhost\"\nport = {tls_port}\nsecurity = \"tls\""),
        1,
    );
    assert!(config.contains("localhost"), "{config}");
    fs::write(s.path("migration.toml"), config).unwrap();
    let r = run_mailshift(s.dir(), &["plan"]);
    assert_eq!(r.status, 1, "{r}");
    let n = Normaliser::of(&s).with(format!(":{tls_port}"), ":<tls-port>");
    let error = "destination: TLS with `localhost:<tls-port>` failed: the server's certificate \
                 is self-signed (a CA certificate used as a server certificate)";
    assert_stderr(&r, &n, &format!("ERROR {error} account=<alice>\n"));
    assert_eq!(
        account_block(&r, &n),
        format!(
            "<alice> → <alice>\n  error: {error}\n    hint: if the server uses a private CA \
             or a self-signed certificate, set `ca-file` to its PEM certificate; in a \
             container without system certificates, set `tls-roots = \"mozilla\"`\n"
        ),
        "{r}"
    );
}

/// The file `apply` locks for (destination host, port, user): the same name the executor
/// uses (`src/apply/lock.rs`, `DestinationLock`), under the state dir's private `locks/`
/// (the test runs without `XDG_RUNTIME_DIR`), so that the test can hold it like a running
/// apply.
fn lock_path(s: &Scenario, host: &str, port: u16, user: &str) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!(
        "{}\0{port}\0{}",
        host.to_ascii_lowercase(),
        user.to_lowercase()
    ));
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    s.path(".mailshift/locks").join(format!("{name}.lock"))
}

#[test]
fn lock_held() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    src.append_many("INBOX", &[NewMessage::new(MessageBuilder::new().build())]);
    let src_before = src.snapshot();
    let mut dst = s.dst("alice");
    let dst_before = dst.snapshot();
    // Held as a running apply holds it.
    let path = lock_path(
        &s,
        "127.0.0.1",
        s.port(Side::Destination),
        &s.acct("alice").destination_user,
    );
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::set_permissions(
        path.parent().unwrap(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let held = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    held.try_lock().expect("nobody else holds the test's lock");
    let r = s.run(&["apply", "--auto-approve", "--format", "json"]);
    drop(held);
    assert_eq!(r.status, 1, "{r}");
    let n = Normaliser::of(&s);
    let error = "another mailshift apply is running for destination user `<alice>` on \
                 `127.0.0.1`";
    let hint = "wait for it to finish; two applies on one account would race";
    assert_stderr(&r, &n, &format!("ERROR {error} account=<alice>\n"));
    let report: Value = serde_json::from_str(&n.apply(&r.stdout)).expect("JSON report");
    let account = &report["accounts"][0];
    assert_eq!(account["status"], "failed", "{report:#}");
    assert_eq!(account["error"], error, "{report:#}");
    assert_eq!(account["hint"], hint, "{report:#}");
    dst_before.assert_unchanged(&dst.snapshot());
    src_before.assert_unchanged(&src.snapshot());
    // Released, the next apply runs and removes its lock file afterwards.
    fs::remove_file(&path).unwrap();
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.status, 0, "{r}");
    let left: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert!(left.is_empty(), "lock files left behind: {left:?}");
}

// ---------------------------------------------------------------------------------------
// Messages the destination refuses: the account goes on, and each refusal is listed once,
// with the server's words, under the report table.

/// A mailbox of 100 KiB: a second 60 KiB message does not fit (`[OVERQUOTA]`).
const QUOTA: &str = "mail_plugins = $mail_plugins quota
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=100k
}";

/// Applies and returns (stderr, the report's lines below the table), normalised.
fn apply_text(s: &Scenario) -> (CmdResult, String, Vec<String>) {
    let r = s.run(&["apply", "--auto-approve"]);
    let n = Normaliser::of(s);
    let stdout = n.apply(&r.stdout);
    let below: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("<alice>: ") || l.starts_with("    hint: "))
        .map(str::to_string)
        .collect();
    (r.clone(), n.apply(&r.stderr), below)
}

fn refused(config: &str, sizes: &[usize]) -> (Scenario, Vec<u32>) {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination_with(
            Dovecot::builder()
                .layout(Layout::Modern)
                .extra_config(config),
        )
        .account("alice");
    let msgs: Vec<NewMessage> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("message {i}"))
                    .pad_to(*size)
                    .build(),
            )
        })
        .collect();
    let uids = s.src("alice").append_many("INBOX", &msgs);
    (s, uids)
}

#[test]
fn refused_message() {
    let (s, uids) = refused(SIZE_LIMIT, &[1_000, 100_000]);
    let src_before = s.src("alice").snapshot();
    let (r, stderr, below) = apply_text(&s);
    assert_eq!(r.status, 1, "{r}");
    let words = "[LIMIT] Mail size is larger than the maximum size allowed by server \
                 configuration (<secs>).";
    // Said once, under the report table: not again as a log line.
    assert_eq!(stderr, "", "{r}");
    assert_eq!(
        below,
        vec![format!("<alice>: failed: `INBOX` uid {}: {words}", uids[1])],
        "{r}"
    );
    assert_eq!(s.dst("alice").fetch_all("INBOX").len(), 1, "{r}");
    src_before.assert_unchanged(&s.src("alice").snapshot());
}

#[test]
fn over_quota() {
    let (s, uids) = refused(QUOTA, &[60_000, 60_000]);
    let src_before = s.src("alice").snapshot();
    let (r, stderr, below) = apply_text(&s);
    assert_eq!(r.status, 1, "{r}");
    // Every later message would be refused too: the account stops, with what to do.
    let words = "[OVERQUOTA] Quota exceeded (mailbox for user is full) (<secs>).";
    let error = format!("the destination account is over its quota (folder `INBOX`): {words}");
    assert_eq!(stderr, format!("ERROR {error} account=<alice>\n"), "{r}");
    assert_eq!(
        below,
        vec![
            format!("<alice>: error: {error}"),
            "    hint: free space in the destination account or raise its quota, then run \
             apply again: what arrived stays, the rest is copied then"
                .to_string(),
            format!("<alice>: failed: `INBOX` uid {}: {words}", uids[1]),
        ],
        "{r}"
    );
    assert_eq!(s.dst("alice").fetch_all("INBOX").len(), 1, "{r}");
    src_before.assert_unchanged(&s.src("alice").snapshot());
}
