//! Admin (master) passwords: the config names where they live (`password-env`,
//! `password-file`, `password-command`), never the password itself, so `migration.toml`
//! can be committed. Errors say which source failed and never contain what it produced.

use std::path::Path;
use std::process::{Command, Stdio};

use secrecy::SecretString;

use super::error::Problem;
use super::SecretSource;

/// Fetches the secret. The error is a message without file or line (the caller adds them);
/// it never contains the secret, a command's output, or a file's content.
pub(crate) fn resolve(source: &SecretSource, base_dir: &Path) -> Result<SecretString, Problem> {
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
            // stderr is inherited so that the user sees why a password manager failed;
            // stdout (the secret) is captured and never shown.
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(if base_dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    base_dir
                })
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| Problem::from(format!("`password-command`: cannot run `sh`: {e}")))?;
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

    fn cmd(c: &str) -> Result<String, String> {
        resolve(&SecretSource::Command(c.into()), Path::new(""))
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
    fn file_is_relative_to_the_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let got = resolve(&SecretSource::File("pw".into()), dir.path()).unwrap();
        assert_eq!(got.expose_secret(), "s3cret");
        let e = resolve(&SecretSource::File("nope".into()), dir.path())
            .unwrap_err()
            .message;
        assert!(e.contains("`password-file`") && e.contains("nope"), "{e}");
    }

    #[test]
    fn missing_env_var_has_a_hint() {
        let e = resolve(
            &SecretSource::Env("MAILSHIFT_TEST_SURELY_UNSET_VAR".into()),
            Path::new(""),
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
