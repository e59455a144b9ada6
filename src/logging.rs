//! Logging set-up: human logs on stderr at the `-v`/`-q` level, optional JSON lines to
//! `--log-file`. async-imap logs every command at trace level, including
//! `LOGIN user "password"`, so its targets are capped at `warn` whatever `-v` says.

use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Targets that may print credentials at debug/trace level.
const CAPPED_TARGETS: &[&str] = &["async_imap", "imap_proto"];

/// Targets that log, at `error`, a TLS failure our own error already reports in words
/// (rustls-platform-verifier: `failed to verify TLS certificate: invalid peer certificate:
/// Other(OtherError(CaUsedAsEndEntity))`): shown only from `-vv` on.
const DEBUG_ONLY_TARGETS: &[&str] = &["rustls_platform_verifier", "rustls"];

fn level_for(verbose: u8, quiet: bool) -> LevelFilter {
    if quiet {
        return LevelFilter::ERROR;
    }
    match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

fn filter(level: LevelFilter) -> Targets {
    let mut targets = Targets::new().with_default(level);
    for t in CAPPED_TARGETS {
        targets = targets.with_target(*t, level.min(LevelFilter::WARN));
    }
    let tls_level = if level >= LevelFilter::DEBUG {
        level
    } else {
        LevelFilter::OFF
    };
    for t in DEBUG_ONLY_TARGETS {
        targets = targets.with_target(*t, tls_level);
    }
    targets
}

/// Installs the global subscriber. Fails only when the log file cannot be created.
pub(crate) fn init(
    verbose: u8,
    quiet: bool,
    color: bool,
    log_file: Option<&Path>,
) -> std::io::Result<()> {
    let level = level_for(verbose, quiet);
    let stderr_layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(verbose >= 2)
        .without_time()
        .with_filter(filter(level));
    let file_layer = match log_file {
        Some(path) => {
            // Owner-only, like plans and reports: logs name users and folders.
            let file = {
                use std::os::unix::fs::OpenOptionsExt as _;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)?
            };
            // The file log is at least info, so a batch run leaves a useful trail.
            let file_level = level.max(LevelFilter::INFO);
            Some(
                fmt::layer()
                    .json()
                    .with_writer(Mutex::new(file))
                    .with_filter(filter(file_level)),
            )
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_targets_are_capped_at_warn_even_at_trace() {
        let f = filter(level_for(3, false));
        assert!(!f.would_enable("async_imap::client", &tracing::Level::TRACE));
        assert!(!f.would_enable("imap_proto", &tracing::Level::DEBUG));
        assert!(f.would_enable("async_imap", &tracing::Level::WARN));
        assert!(f.would_enable("mailshift::apply", &tracing::Level::TRACE));
    }

    #[test]
    fn tls_library_errors_only_from_debug_on() {
        let target = "rustls_platform_verifier::verification::others";
        for verbose in [0, 1] {
            let f = filter(level_for(verbose, false));
            assert!(
                !f.would_enable(target, &tracing::Level::ERROR),
                "-v x{verbose}"
            );
        }
        assert!(filter(level_for(2, false)).would_enable(target, &tracing::Level::ERROR));
        assert!(!filter(level_for(0, false)).would_enable("rustls::conn", &tracing::Level::WARN));
        assert!(filter(level_for(0, false)).would_enable("mailshift::imap", &tracing::Level::ERROR));
    }

    #[test]
    fn quiet_means_errors_only() {
        assert_eq!(level_for(0, true), LevelFilter::ERROR);
        assert_eq!(level_for(2, false), LevelFilter::DEBUG);
    }
}
