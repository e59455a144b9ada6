//! CLI behaviours the main apply/plan suites do not reach: a saved plan whose source
//! messages vanished before `apply`, the JSON `--log-file` (and that no password reaches it),
//! `check` over real TLS (implicit and STARTTLS, with and without `ca-file`, an unknown host),
//! and `apply` on a terminal (progress bars, the confirmation prompt) under a pseudo-terminal
//! made by util-linux `script`. Every result is read back with `RawImap`, never through the
//! code under test.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::scenario::{run_mailshift, CmdResult, Scenario, Side};
use crate::support::{Dovecot, Layout, MessageBuilder, NewMessage, RawImap, RawMessage};

// ---------------------------------------------------------------------------------------
// Helpers

/// `n` distinct small messages whose subjects start with `tag`.
fn messages(n: usize, tag: &str) -> Vec<NewMessage> {
    let tag = format!("{tag}-{}", crate::support::unique_user("x"));
    (0..n)
        .map(|i| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("{tag} {i}"))
                    .message_id(Some(&format!("<{tag}-{i}@extras.test>")))
                    .build(),
            )
        })
        .collect()
}

/// Body -> count, to compare what a folder holds with what was meant to be there.
fn bodies<'a>(msgs: impl IntoIterator<Item = &'a [u8]>) -> BTreeMap<Vec<u8>, usize> {
    let mut out = BTreeMap::new();
    for b in msgs {
        *out.entry(b.to_vec()).or_insert(0) += 1;
    }
    out
}

/// The destination folder holds exactly `want` (each body once, nothing else).
#[track_caller]
fn assert_folder_holds(dst: &mut RawImap, folder: &str, want: &[&NewMessage]) {
    let got: Vec<RawMessage> = dst.fetch_all(folder);
    let got = bodies(got.iter().map(|m| m.body.as_slice()));
    let want = bodies(want.iter().map(|m| m.body.as_slice()));
    assert_eq!(
        got.len(),
        want.len(),
        "`{folder}`: {} distinct bodies on the destination, {} expected",
        got.len(),
        want.len()
    );
    assert!(
        got == want,
        "`{folder}` on the destination differs from what was planned (missing or doubled)"
    );
}

/// The report file written by a run, parsed.
#[track_caller]
fn read_json(path: &Path, run: &CmdResult) -> Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no `{}` after the run ({e})\n{run}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {e}\n{text}"))
}

/// Every password of the scenario plus `extra` ones (e.g. a wrong CSV password).
fn secrets(s: &Scenario, extra: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = extra.iter().map(|e| e.to_string()).collect();
    for a in s.accounts() {
        out.push(a.source_password.clone());
        out.push(a.destination_password.clone());
    }
    out
}

#[track_caller]
fn assert_no_secret(secrets: &[String], what: &str, text: &str) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a password (`{secret}`) appears in {what}:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 1. A saved plan whose source messages vanished before apply.

#[test]
fn saved_plan_with_a_vanished_source_message_reports_it_and_copies_the_rest() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    let work_wire = Layout::Classic.wire("Work");
    src.create(&work_wire);
    let inbox = messages(3, "inbox");
    let work = messages(3, "work");
    src.append_many("INBOX", &inbox);
    let work_uids = src.append_many(&work_wire, &work);

    let r = s.run(&["plan", "--out", "p.json"]);
    assert_eq!(r.status, 0, "{r}");
    let plan = read_json(&s.path("p.json"), &r);
    assert_eq!(plan["summary"]["messages_to_copy"], 6, "{plan:#}");

    // The middle `Work` message disappears from the source between plan and apply.
    let gone = work_uids[1];
    src.expunge(&work_wire, &[gone]);
    let src_before = src.snapshot();
    assert_eq!(src_before.message_count(), 5);

    let r = s.run(&["apply", "p.json", "--auto-approve", "--report", "r.json"]);
    assert_eq!(r.status, 0, "a vanished message is not a failure\n{r}");
    let report = read_json(&s.path("r.json"), &r);
    let acc = &report["accounts"][0];
    assert_eq!(acc["status"], "done", "{report:#}");
    assert_eq!(acc["copied"], 5, "{report:#}");
    assert_eq!(acc["pending"], 0, "{report:#}");
    assert_eq!(
        acc["failed"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    let vanished = acc["vanished"].as_array().expect("a `vanished` list");
    assert_eq!(vanished.len(), 1, "{report:#}");
    assert_eq!(vanished[0]["uid"], gone, "{report:#}");
    // The source folder as the plan shows it (`← INBOX.Work`: the source's own name).
    assert_eq!(vanished[0]["source_folder"], "INBOX.Work", "{report:#}");
    assert!(
        r.stdout.contains("1 planned message vanished"),
        "the text report mentions the vanished message\n{r}"
    );
    assert!(
        r.last_line().starts_with("Apply complete:"),
        "last line: `{}`\n{r}",
        r.last_line()
    );

    let mut dst = s.dst("alice");
    assert_folder_holds(&mut dst, "INBOX", &inbox.iter().collect::<Vec<_>>());
    assert_folder_holds(&mut dst, "Work", &[&work[0], &work[2]]);
    src_before.assert_unchanged(&src.snapshot());

    // The same plan once more: nothing copied, the vanished message is still not an error.
    let r = s.run(&["apply", "p.json", "--auto-approve", "--report", "r2.json"]);
    assert_eq!(r.status, 0, "{r}");
    let again = read_json(&s.path("r2.json"), &r);
    assert_eq!(again["accounts"][0]["copied"], 0, "{again:#}");
    assert_folder_holds(&mut dst, "Work", &[&work[0], &work[2]]);
}

// ---------------------------------------------------------------------------------------
// 2. The JSON log file, with one account failing to log in.

#[test]
fn log_file_is_json_lines_without_passwords_and_names_the_failing_account() {
    const WRONG: &str = "Wr0ng-L0g-Pa55-91ae";
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Classic)
        .account("alice")
        .account("bob");
    let alice_msgs = messages(2, "log");
    s.src("alice").append_many("INBOX", &alice_msgs);
    s.set_csv_password(Side::Source, "bob", WRONG);
    let secrets = secrets(&s, &[WRONG]);
    let bob = s.acct("bob").source_user.clone();

    for (file, args) in [
        ("plan.jsonl", &["plan"][..]),
        ("apply.jsonl", &["apply", "--auto-approve"][..]),
    ] {
        let mut full = vec!["--log-file", file, "-vv"];
        full.extend_from_slice(args);
        let r = s.run(&full);
        assert_eq!(r.status, 1, "bob failed: exit 1\n{r}");
        assert_no_secret(&secrets, "stdout/stderr", &r.all_output());
        let log = fs::read_to_string(s.path(file))
            .unwrap_or_else(|e| panic!("no log file `{file}` ({e})\n{r}"));
        assert!(!log.trim().is_empty(), "`{file}` is empty\n{r}");
        for (i, line) in log.lines().enumerate() {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("`{file}` line {} is not JSON ({e}): {line}", i + 1));
        }
        assert_no_secret(&secrets, file, &log);
        assert!(
            log.contains(&bob),
            "`{file}` does not name the failing account `{bob}`:\n{log}"
        );
    }
    // alice was still copied by the apply.
    assert_folder_holds(
        &mut s.dst("alice"),
        "INBOX",
        &alice_msgs.iter().collect::<Vec<_>>(),
    );
}

// ---------------------------------------------------------------------------------------
// 3. `check` over TLS.

/// `migration.toml` with a plain source and this `[destination]` table (the scenario's own
/// config is plain-text to 127.0.0.1, so the file is written here, reusing its CSV).
fn write_config(s: &Scenario, destination: &str) {
    s.write_files();
    let text = format!(
        "[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\n[destination]\n{destination}\n\n[accounts]\ncsv = \"accounts.csv\"\n",
        s.port(Side::Source)
    );
    fs::write(s.path("migration.toml"), text).expect("write migration.toml");
}

/// `check` with the hand-written config.
fn check(s: &Scenario, destination: &str) -> CmdResult {
    write_config(s, destination);
    run_mailshift(s.dir(), &["check"])
}

/// The one stdout line naming `user` (with whatever else the caller needs on it).
#[track_caller]
fn error_line<'a>(r: &'a CmdResult, user: &str, server: &str) -> &'a str {
    let lines: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains(user) && l.contains(server))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line naming `{user}` and `{server}`\n{r}"
    );
    lines[0]
}

#[test]
fn check_over_tls_trusts_ca_file_and_explains_an_untrusted_certificate() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination_with(Dovecot::builder().layout(Layout::Modern).tls(true))
        .account("alice");
    let dc = s.destination_dovecot();
    let ca = dc.ca_pem_path().display().to_string();
    let (tls_port, plain_port) = (dc.tls_port(), dc.port());
    let user = s.acct("alice").source_user.clone();

    // Implicit TLS to `localhost` (the test certificate's SAN), trusted through ca-file.
    let r = check(
        &s,
        &format!("host = \"localhost\"\nport = {tls_port}\nsecurity = \"tls\"\nca-file = \"{ca}\""),
    );
    assert_eq!(r.status, 0, "implicit TLS with ca-file\n{r}");
    assert!(!r.stdout.contains("FAILED"), "{r}");

    // The certificate also names 127.0.0.1 (an IP SAN): connecting by address works too.
    let r = check(
        &s,
        &format!("host = \"127.0.0.1\"\nport = {tls_port}\nsecurity = \"tls\"\nca-file = \"{ca}\""),
    );
    assert_eq!(r.status, 0, "implicit TLS to the IP with ca-file\n{r}");

    // STARTTLS on the plain port, same trust.
    let r = check(
        &s,
        &format!(
            "host = \"localhost\"\nport = {plain_port}\nsecurity = \"starttls\"\nca-file = \"{ca}\""
        ),
    );
    assert_eq!(r.status, 0, "STARTTLS with ca-file\n{r}");

    // Without ca-file the self-signed certificate is not trusted: one clear line.
    let r = check(
        &s,
        &format!("host = \"localhost\"\nport = {tls_port}\nsecurity = \"tls\""),
    );
    assert_eq!(r.status, 1, "an untrusted certificate fails check\n{r}");
    let server = format!("localhost:{tls_port}");
    let line = error_line(&r, &user, &server);
    assert!(line.contains("destination"), "{line}");
    assert!(
        line.to_lowercase().contains("certificate"),
        "the line names a certificate problem: `{line}`\n{r}"
    );
    let hint = r
        .stdout
        .lines()
        .find(|l| l.contains("hint:"))
        .unwrap_or_else(|| panic!("no `hint:` line\n{r}"));
    assert!(
        hint.contains("ca-file"),
        "the hint names `ca-file`: `{hint}`"
    );
    // Said once, in words: not again as a raw library log line
    // (rustls-platform-verifier logs `invalid peer certificate: Other(...)` at error).
    assert!(
        !r.stderr.contains("invalid peer certificate"),
        "a raw TLS library error on stderr at the default verbosity\n{r}"
    );
    // The source side is fine, and says so.
    let j = {
        write_config(
            &s,
            &format!("host = \"localhost\"\nport = {tls_port}\nsecurity = \"tls\""),
        );
        run_mailshift(s.dir(), &["check", "--format", "json"])
    };
    assert_eq!(j.status, 1, "{j}");
    let doc = j.json();
    assert_eq!(doc["accounts"][0]["source"]["ok"], true, "{j}");
    assert_eq!(doc["accounts"][0]["destination"]["ok"], false, "{j}");
}

#[test]
fn check_unknown_host_names_the_account_and_the_host() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice");
    let user = s.acct("alice").source_user.clone();
    let r = check(
        &s,
        "host = \"no-such-host.invalid\"\nport = 993\nsecurity = \"tls\"",
    );
    assert_eq!(r.status, 1, "{r}");
    let line = error_line(&r, &user, "no-such-host.invalid");
    assert!(line.contains("destination"), "{line}");
    assert!(
        r.elapsed < Duration::from_secs(20),
        "an unknown host fails fast: {:?}",
        r.elapsed
    );
}

// ---------------------------------------------------------------------------------------
// 4 and 5. On a terminal: progress bars and the confirmation prompt, under util-linux
// `script`, which runs the command on a new pseudo-terminal and copies it to our stdout.

/// `script` from util-linux, if installed.
/// util-linux `script`, which gives the binary a pseudo-terminal. Missing means the
/// machine is not set up for the tests: fail and say how to install it.
fn script_program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("script"))
        .find(|p| p.is_file())
        .expect(
            "no `script` (util-linux) to make a pseudo-terminal; install it with \
             `apt-get install -y bsdutils` (.ci/run does)",
        )
}

/// POSIX shell single quotes.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// What came out of the pseudo-terminal.
struct PtyRun {
    status: i32,
    /// Everything written to the terminal (stdout and stderr interleaved), ANSI escapes
    /// removed, `\r\n` turned into `\n`.
    screen: String,
}

impl std::fmt::Display for PtyRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- terminal ---\n{}", self.status, self.screen)
    }
}

impl PtyRun {
    /// The last non-empty line as a terminal shows it (text after the last `\r`).
    fn last_visible_line(&self) -> &str {
        self.screen
            .lines()
            .map(|l| l.rsplit('\r').find(|p| !p.trim().is_empty()).unwrap_or(""))
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
    }
}

/// Drops CSI (`ESC [ ... final`) and two-byte escape sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        // A two-byte sequence ends here; a CSI runs up to its final byte.
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// Runs `mailshift ARGS` in the scenario dir on a pseudo-terminal (stdin, stdout and
/// stderr all on it), typing `input` (if any). Our end of `script`'s stdin stays open until
/// the run ends, so an early EOF cannot be mistaken for an answer.
fn run_on_terminal(script: &Path, s: &Scenario, args: &[&str], input: Option<&str>) -> PtyRun {
    s.write_files();
    let mut cmd = sh_quote(env!("CARGO_BIN_EXE_mailshift"));
    for a in args {
        cmd.push(' ');
        cmd.push_str(&sh_quote(a));
    }
    let out_path = s.path(".pty-out");
    let mut child = Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(s.dir())
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&out_path).expect("create the pty output file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("run `script`");
    let mut stdin = child.stdin.take().expect("script's stdin");
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).expect("type the answer");
        stdin.flush().expect("flush the answer");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for script") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`mailshift {args:?}` on a terminal did not finish within 120 s\n{}",
                String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    let raw = String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned();
    PtyRun {
        status: status.code().unwrap_or(-1),
        screen: strip_ansi(&raw).replace("\r\n", "\n"),
    }
}

#[test]
fn apply_on_a_terminal_draws_progress_and_ends_with_the_report() {
    let script = script_program();
    let s = Scenario::new()
        .source_with(
            Dovecot::builder()
                .layout(Layout::Modern)
                .mail_on_tmpfs(true),
        )
        .destination_with(
            Dovecot::builder()
                .layout(Layout::Classic)
                .mail_on_tmpfs(true),
        )
        .account("alice")
        .account("bob");
    let alice_msgs = messages(3000, "pty");
    let bob_msgs = messages(500, "nopty");
    s.src("alice").append_many("INBOX", &alice_msgs);
    s.src("bob").append_many("INBOX", &bob_msgs);
    let alice = s.acct("alice").source_user.clone();
    let bob = s.acct("bob").source_user.clone();

    // On a terminal.
    let r = run_on_terminal(
        &script,
        &s,
        &["apply", "--auto-approve", "--account", &alice],
        None,
    );
    assert_eq!(r.status, 0, "{r}");
    assert!(
        r.last_visible_line().starts_with("Apply complete:"),
        "the report's line is the last thing on the terminal, got `{}`\n{r}",
        r.last_visible_line()
    );
    assert!(
        r.screen.contains("3,000"),
        "the plan/report counts the 3,000 messages\n{r}"
    );
    // The bar is drawn on the terminal (then cleared before the report).
    assert!(
        r.screen.contains("/3000 messages"),
        "no progress bar on the terminal\n{r}"
    );
    assert_folder_holds(
        &mut s.dst("alice"),
        "INBOX",
        &alice_msgs.iter().collect::<Vec<_>>(),
    );

    // Without a terminal, with -v: no bar drawn, and the same report.
    let r = s.run(&[
        "apply",
        "--auto-approve",
        "-v",
        "--account",
        &bob,
        "--report",
        "r.json",
    ]);
    assert_eq!(r.status, 0, "{r}");
    assert!(r.last_line().starts_with("Apply complete:"), "{r}");
    assert!(
        !r.stderr.contains("left)") && !r.stderr.contains('\r'),
        "a progress bar was drawn without a terminal\n{r}"
    );
    let report = read_json(&s.path("r.json"), &r);
    assert_eq!(report["accounts"][0]["copied"], 500, "{report:#}");
    assert_eq!(report["accounts"][0]["status"], "done", "{report:#}");
    assert_folder_holds(
        &mut s.dst("bob"),
        "INBOX",
        &bob_msgs.iter().collect::<Vec<_>>(),
    );
}

#[test]
fn apply_on_a_terminal_asks_and_only_yes_approves() {
    let script = script_program();
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    src.create(&Layout::Classic.wire("Work"));
    let inbox = messages(4, "ask");
    src.append_many("INBOX", &inbox);
    let src_before = src.snapshot();
    let mut dst = s.dst("alice");
    let dst_before = dst.snapshot();

    for answer in ["no\n", "y\n", "YES please\n"] {
        let r = run_on_terminal(&script, &s, &["apply"], Some(answer));
        assert_eq!(r.status, 1, "answer {answer:?}: {r}");
        assert!(
            r.screen.contains("Only 'yes' will be accepted to approve."),
            "{r}"
        );
        assert!(
            r.screen
                .contains("mailshift will create 1 folder and copy 4 messages on the destination"),
            "the question states what will happen, in words\n{r}"
        );
        assert_eq!(r.last_visible_line(), "Apply cancelled.", "{r}");
        dst_before.assert_unchanged(&dst.snapshot());
        assert!(
            !dst.list().iter().any(|(_, _, n)| n == "Work"),
            "`Work` created without approval\n{r}"
        );
    }

    let r = run_on_terminal(&script, &s, &["apply"], Some("yes\n"));
    assert_eq!(r.status, 0, "{r}");
    assert!(
        r.last_visible_line().starts_with("Apply complete:"),
        "{}\n{r}",
        r.last_visible_line()
    );
    assert_folder_holds(&mut dst, "INBOX", &inbox.iter().collect::<Vec<_>>());
    assert!(
        dst.list().iter().any(|(_, _, n)| n == "Work"),
        "`Work` was not created\n{r}"
    );
    src_before.assert_unchanged(&src.snapshot());

    // Nothing left to do: no question, even on a terminal.
    let r = run_on_terminal(&script, &s, &["apply"], None);
    assert_eq!(r.status, 0, "{r}");
    assert!(!r.screen.contains("Enter a value"), "{r}");
}
