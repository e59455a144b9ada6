//! Admin (master) passwords: the config names where they live (`password-env`,
//! `password-file`, `password-command`), never the password itself, so `migration.toml`
//! can be committed. Errors say which source failed and never contain what it produced.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::error::Problem;
use super::SecretSource;

/// Fetches the secret. The error is a message without file or line (the caller adds them);
/// it never contains the secret, a command's output, or a file's content.
/// A `password-command` that gives no answer within `timeout` (the `connect-timeout`) is
/// stopped, with everything it started.
pub(crate) fn resolve(
    source: &SecretSource,
    base_dir: &Path,
    timeout: Duration,
) -> Result<SecretString, Problem> {
    let value = match source {
        SecretSource::Env(name) => match std::env::var_os(name) {
            None => {
                return Err(Problem::hinted(
                    format!("`password-env`: the environment variable `{name}` is not set"),
                    format!(
                        "export `{name}` before running mailshift, or use `password-file` or \
                         `password-command`"
                    ),
                ))
            }
            Some(v) => v.into_string().map_err(|_| {
                Problem::from(format!(
                    "`password-env`: the environment variable `{name}` is not valid UTF-8"
                ))
            })?,
        },
        SecretSource::File(path) => {
            let full = base_dir.join(path);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                Problem::from(format!(
                    "`password-file`: cannot read `{}`: {e}",
                    full.display()
                ))
            })?;
            strip_one_newline(text)
        }
        SecretSource::Command(cmd) => {
            tracing::info!(
                "running `password-command` (at most {})",
                humantime::format_duration(timeout)
            );
            let out = run_command(cmd, base_dir, timeout).map_err(|e| match e {
                CommandFailure::Spawn(e) => {
                    Problem::from(format!("`password-command`: cannot run `sh`: {e}"))
                }
                CommandFailure::TimedOut => Problem::hinted(
                    format!(
                        "`password-command` gave no answer within {}; it was stopped",
                        humantime::format_duration(timeout)
                    ),
                    "run the command by hand: a password manager may be waiting for an \
                     unlock or a prompt; the limit is `connect-timeout` in [limits]",
                ),
            })?;
            if !out.status.success() {
                return Err(Problem::hinted(
                    format!(
                        "`password-command` failed ({}); its output is not shown",
                        out.status
                    ),
                    "run the command by hand to see what is wrong",
                ));
            }
            let text = String::from_utf8(out.stdout).map_err(|_| {
                Problem::from("`password-command` printed something that is not UTF-8")
            })?;
            strip_one_newline(text)
        }
    };
    if value.is_empty() {
        let which = match source {
            SecretSource::Env(_) => "`password-env`: the environment variable is empty",
            SecretSource::File(_) => "`password-file`: the file is empty",
            SecretSource::Command(_) => "`password-command` printed nothing",
        };
        return Err(which.into());
    }
    Ok(SecretString::from(value))
}

enum CommandFailure {
    Spawn(std::io::Error),
    TimedOut,
}

/// `sh -c CMD` in `dir`, in a process group of its own; stdout (the secret) is captured,
/// stderr is inherited so that the user sees why a password manager failed. After
/// `timeout` the whole group is killed (a shell's children too, or they would keep the
/// pipe open).
fn run_command(cmd: &str, dir: &Path, timeout: Duration) -> Result<Output, CommandFailure> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(CommandFailure::Spawn)?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    let deadline = Instant::now() + timeout;
    // The output is complete when the pipe closes; then the shell has exited or will.
    let stdout = rx.recv_timeout(timeout);
    loop {
        match (&stdout, child.try_wait()) {
            (Ok(_), Ok(Some(status))) => {
                return Ok(Output {
                    status,
                    stdout: stdout.expect("checked"),
                    stderr: Vec::new(),
                })
            }
            (Ok(_), Ok(None)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                kill_process_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                return Err(CommandFailure::TimedOut);
            }
        }
    }
}

/// Kills the process group led by `pid` (a command started with `process_group(0)`).
pub(crate) fn kill_process_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 0 {
            // SAFETY: kill(2) has no memory effects; a negative pid names the group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// Removes exactly one trailing `\n` (or `\r\n`): what `echo` and most password managers
/// add. Other whitespace belongs to the password.
fn strip_one_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const SECOND: Duration = Duration::from_secs(1);

    fn cmd(c: &str) -> Result<String, String> {
        resolve(&SecretSource::Command(c.into()), Path::new(""), SECOND)
            .map(|s| s.expose_secret().to_string())
            .map_err(|p| p.message)
    }

    #[test]
    fn command_output_loses_exactly_one_newline() {
        assert_eq!(cmd("printf 'pw\\n'").unwrap(), "pw");
        assert_eq!(cmd("printf 'pw\\r\\n'").unwrap(), "pw");
        assert_eq!(cmd("printf 'pw\\n\\n'").unwrap(), "pw\n");
        assert_eq!(cmd("printf ' pw '").unwrap(), " pw ");
    }

    #[test]
    fn command_failures_never_show_output() {
        let e = cmd("echo hunter2-secret; exit 3").unwrap_err();
        assert!(e.contains("failed") && !e.contains("hunter2"), "{e}");
        let e = cmd("true").unwrap_err();
        assert!(e.contains("printed nothing"), "{e}");
    }

    #[test]
    fn a_hanging_command_is_stopped_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        // The shell's child keeps stdout open: it must be killed with the shell.
        let c = "echo partial-secret; sleep 30; echo more".to_string();
        let e = resolve(
            &SecretSource::Command(c),
            dir.path(),
            Duration::from_millis(300),
        )
        .unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(e.message.contains("no answer within 300ms"), "{e:?}");
        assert!(!e.message.contains("partial-secret"), "{e:?}");
        assert!(e.hint.unwrap().contains("connect-timeout"));
        // A command that finishes in time is not affected by the limit.
        assert_eq!(cmd("sleep 0.1; echo pw").unwrap(), "pw");
    }

    #[test]
    fn file_is_relative_to_the_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let got = resolve(&SecretSource::File("pw".into()), dir.path(), SECOND).unwrap();
        assert_eq!(got.expose_secret(), "s3cret");
        let e = resolve(&SecretSource::File("nope".into()), dir.path(), SECOND)
            .unwrap_err()
            .message;
        assert!(e.contains("`password-file`") && e.contains("nope"), "{e}");
    }

    #[test]
    fn missing_env_var_has_a_hint() {
        let e = resolve(
            &SecretSource::Env("MAILSHIFT_TEST_SURELY_UNSET_VAR".into()),
            Path::new(""),
            SECOND,
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("`MAILSHIFT_TEST_SURELY_UNSET_VAR` is not set"),
            "{e:?}"
        );
        assert!(e.hint.unwrap().starts_with("export"));
    }
}
