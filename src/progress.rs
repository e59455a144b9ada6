//! Apply progress: per-account bars (messages, bytes, ETA) when stderr is a terminal,
//! otherwise a one-line log entry per account every few seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::render::units::{bytes, count};

/// How often progress is logged when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct Progress {
    bars: Option<MultiProgress>,
}

impl Progress {
    /// Bars when `terminal`, periodic log lines otherwise.
    pub(crate) fn new(terminal: bool) -> Progress {
        Progress {
            bars: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    pub(crate) fn account(&self, name: &str, messages: u64, total_bytes: u64) -> AccountProgress {
        let bar = self.bars.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(messages));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {pos}/{len} messages, {msg} ({eta} left)",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar.set_message(format!("0 B of {}", bytes(total_bytes)));
            bar
        });
        AccountProgress {
            name: name.to_string(),
            bar,
            messages,
            total_bytes,
            done: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            last_log: Mutex::new(Instant::now()),
        }
    }
}

pub(crate) struct AccountProgress {
    name: String,
    bar: Option<ProgressBar>,
    messages: u64,
    total_bytes: u64,
    done: AtomicU64,
    done_bytes: AtomicU64,
    last_log: Mutex<Instant>,
}

impl AccountProgress {
    /// `n` more messages handled (copied, failed, vanished or found present), `b` bytes.
    pub(crate) fn advance(&self, n: u64, b: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let done_bytes = self.done_bytes.fetch_add(b, Ordering::Relaxed) + b;
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(format!(
                    "{} of {}",
                    bytes(done_bytes),
                    bytes(self.total_bytes)
                ));
            }
            None => {
                let mut last = self.last_log.lock().expect("not poisoned");
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    tracing::info!(
                        "{}: {}/{} messages, {} of {}",
                        self.name,
                        count(done),
                        count(self.messages),
                        bytes(done_bytes),
                        bytes(self.total_bytes)
                    );
                }
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
