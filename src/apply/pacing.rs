//! Pacing for providers' caps (`[limits]` `account-bytes-per-day`,
//! `account-messages-per-second`, `bytes-per-second`): token buckets that the executor asks
//! before each FETCH (downloads) and each APPEND (uploads). A bucket hands out what it has
//! and pre-commits the rest, saying how long to wait; concurrent lanes queue behind each
//! other in that way, and a batch bigger than the burst simply waits longer. The rates are
//! the planner's (`plan::pacing::Rate`), so the plan's time floor and the run agree.
//!
//! Hand-written (60 lines) rather than `governor`: its buckets count cells, not bytes with
//! a fractional refill, it would add several crates, and tokio's clock here is the one the
//! tests pause and advance (`start_paused`), so waits of days are tested in microseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::model::Side;
use crate::plan::pacing::Rate;
use crate::settings::PacingLimits;

/// Waits shorter than this are not worth a sleep (or a count in the report).
const NEGLIGIBLE: Duration = Duration::from_millis(1);

struct Bucket {
    rate: Rate,
    /// (tokens, when they were counted); tokens go negative when waits are pre-committed.
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: Rate) -> Bucket {
        Bucket {
            rate,
            state: Mutex::new((rate.burst, Instant::now())),
        }
    }

    /// Takes `amount` now and returns how long the caller must wait before using it.
    fn reserve(&self, amount: f64, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, since) = *state;
        let refilled = now.saturating_duration_since(since).as_secs_f64() * self.rate.per_second;
        let tokens = (tokens + refilled).min(self.rate.burst);
        let wait = if tokens >= amount {
            0.0
        } else {
            (amount - tokens) / self.rate.per_second
        };
        *state = (tokens - amount, now);
        Duration::from_secs_f64(wait)
    }
}

/// Per direction: index 0 downloads (source), 1 uploads (destination).
fn index(side: Side) -> usize {
    match side {
        Side::Source => 0,
        Side::Destination => 1,
    }
}

/// The whole run's buckets (`bytes-per-second`) and the caps for each account.
pub(crate) struct RunPacing {
    limits: PacingLimits,
    bytes: [Option<Bucket>; 2],
}

impl RunPacing {
    pub(crate) fn new(limits: &PacingLimits) -> RunPacing {
        let bucket = || {
            limits
                .bytes_per_second
                .map(|n| Bucket::new(Rate::per_second(n as f64)))
        };
        RunPacing {
            limits: *limits,
            bytes: [bucket(), bucket()],
        }
    }

    /// The pacer of one account (its own buckets, and the run's).
    pub(crate) fn account(&self) -> AccountPacer<'_> {
        let bytes = || {
            self.limits
                .account_bytes_per_day
                .map(|n| Bucket::new(Rate::per_day(n)))
        };
        let messages = || {
            self.limits
                .account_messages_per_second
                .map(|n| Bucket::new(Rate::per_second(n)))
        };
        AccountPacer {
            run: self,
            bytes: [bytes(), bytes()],
            messages: [messages(), messages()],
            waits: AtomicU64::new(0),
            waited_micros: AtomicU64::new(0),
        }
    }
}

/// One account's pacing, shared by its lanes; counts the waits for the report.
pub(crate) struct AccountPacer<'r> {
    run: &'r RunPacing,
    bytes: [Option<Bucket>; 2],
    messages: [Option<Bucket>; 2],
    waits: AtomicU64,
    waited_micros: AtomicU64,
}

impl AccountPacer<'_> {
    /// Waits until `messages` messages of `bytes` bytes may be read from the source or
    /// written to the destination. `false` when the run was cancelled during a wait (or
    /// before one): then they must not be moved now, or a cap would be exceeded.
    pub(crate) async fn admit(
        &self,
        side: Side,
        messages: usize,
        bytes: u64,
        cancel: &CancellationToken,
    ) -> bool {
        let i = index(side);
        let now = Instant::now();
        let wait = [
            (&self.run.bytes[i], bytes as f64),
            (&self.bytes[i], bytes as f64),
            (&self.messages[i], messages as f64),
        ]
        .into_iter()
        .filter_map(|(bucket, amount)| bucket.as_ref().map(|b| b.reserve(amount, now)))
        .max()
        .unwrap_or_default();
        if wait < NEGLIGIBLE {
            return true;
        }
        if cancel.is_cancelled() {
            return false;
        }
        self.waits.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "pacing: waiting {} before {} {messages} messages ({bytes} bytes)",
            humantime::format_duration(Duration::from_millis(wait.as_millis() as u64)),
            match side {
                Side::Source => "fetching",
                Side::Destination => "appending",
            }
        );
        let started = Instant::now();
        let finished = tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = cancel.cancelled() => false,
        };
        self.waited_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        finished
    }

    /// The most one batch should hold, (messages, bytes), so that it fits in one burst:
    /// then a cap holds within each second (or hour, for a daily cap), not only on average
    /// over many batches. A single bigger message still goes alone.
    pub(crate) fn batch_limit(&self, side: Side) -> (usize, u64) {
        let i = index(side);
        let messages = self.messages[i]
            .as_ref()
            .map_or(usize::MAX, |b| (b.rate.burst.floor() as usize).max(1));
        let bytes = [&self.run.bytes[i], &self.bytes[i]]
            .into_iter()
            .flatten()
            .map(|b| (b.rate.burst as u64).max(1))
            .min()
            .unwrap_or(u64::MAX);
        (messages, bytes)
    }

    /// (waits, seconds waited) so far.
    pub(crate) fn waited(&self) -> (u64, f64) {
        (
            self.waits.load(Ordering::Relaxed),
            self.waited_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(day: Option<u64>, mps: Option<f64>, bps: Option<u64>) -> PacingLimits {
        PacingLimits {
            account_bytes_per_day: day,
            account_messages_per_second: mps,
            bytes_per_second: bps,
        }
    }

    /// Admits `n` batches of `bytes` each in a row; returns the (paused) time it took.
    async fn time_for(p: &AccountPacer<'_>, side: Side, n: usize, msgs: usize, bytes: u64) -> f64 {
        let cancel = CancellationToken::new();
        let started = Instant::now();
        for _ in 0..n {
            assert!(p.admit(side, msgs, bytes, &cancel).await);
        }
        started.elapsed().as_secs_f64()
    }

    #[tokio::test(start_paused = true)]
    async fn a_daily_cap_spreads_a_day_of_bytes_over_the_day() {
        // 24 MB/day: an hour's share (1 MB) at once, then 23 MB over 24 hours.
        let run = RunPacing::new(&caps(Some(24_000_000), None, None));
        let p = run.account();
        let t = time_for(&p, Side::Destination, 24, 1, 1_000_000).await;
        assert!((t - 86_400.0).abs() < 1.0, "24 MB took {t} s");
        let (waits, waited) = p.waited();
        assert_eq!(waits, 23, "the first MB goes at once");
        assert!((waited - 86_400.0).abs() < 1.0, "{waited}");
        // Downloads count separately: the source side has its full burst.
        assert_eq!(time_for(&p, Side::Source, 1, 1, 1_000_000).await, 0.0);
        // Another account has its own cap.
        let q = run.account();
        assert_eq!(time_for(&q, Side::Destination, 1, 1, 1_000_000).await, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn in_any_day_no_more_than_the_cap_passes() {
        let cap = 10_000_000u64;
        let run = RunPacing::new(&caps(Some(cap), None, None));
        let p = run.account();
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let mut passed = 0u64;
        // Greedy uploads of 300 kB for two simulated days.
        while started.elapsed() < Duration::from_secs(2 * 86_400) {
            assert!(p.admit(Side::Destination, 1, 300_000, &cancel).await);
            if started.elapsed() <= Duration::from_secs(86_400) {
                passed += 300_000;
            }
        }
        assert!(passed <= cap, "{passed} bytes in the first 24 hours");
        assert!(
            passed >= cap - 600_000,
            "{passed}: the cap is used, not wasted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn messages_per_second_and_the_run_cap() {
        let run = RunPacing::new(&caps(None, Some(5.0), Some(1_000)));
        let p = run.account();
        // 5 messages/s: 20 messages one by one take 3 s after the first second's burst.
        let t = time_for(&p, Side::Source, 20, 1, 0).await;
        assert!((t - 3.0).abs() < 0.01, "{t}");
        // 1,000 B/s for the whole run, shared by two accounts: 4,000 B take 3 s.
        let q = run.account();
        let cancel = CancellationToken::new();
        let started = Instant::now();
        for pacer in [&p, &q, &p, &q] {
            assert!(pacer.admit(Side::Destination, 0, 1_000, &cancel).await);
        }
        let t = started.elapsed().as_secs_f64();
        assert!((t - 3.0).abs() < 0.01, "{t}");
    }

    #[test]
    fn batches_fit_in_one_burst() {
        let run = RunPacing::new(&PacingLimits::default());
        assert_eq!(
            run.account().batch_limit(Side::Source),
            (usize::MAX, u64::MAX)
        );
        let run = RunPacing::new(&caps(Some(24_000_000), Some(2.5), Some(300_000)));
        let p = run.account();
        assert_eq!(p.batch_limit(Side::Source), (2, 300_000));
        let run = RunPacing::new(&caps(Some(2_400_000), Some(0.2), None));
        assert_eq!(run.account().batch_limit(Side::Destination), (1, 100_000));
    }

    #[tokio::test(start_paused = true)]
    async fn without_caps_nothing_waits_and_a_cancel_ends_a_wait() {
        let run = RunPacing::new(&PacingLimits::default());
        let p = run.account();
        assert_eq!(
            time_for(&p, Side::Destination, 1000, 200, 1 << 30).await,
            0.0
        );
        assert_eq!(p.waited().0, 0);

        let run = RunPacing::new(&caps(Some(24_000), None, None));
        let p = run.account();
        let cancel = CancellationToken::new();
        assert!(p.admit(Side::Destination, 1, 1_000, &cancel).await);
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            stop.cancel();
        });
        let started = Instant::now();
        assert!(!p.admit(Side::Destination, 1, 1_000, &cancel).await);
        assert!(started.elapsed() < Duration::from_secs(61));
        // Once cancelled, what would have to wait is refused at once.
        assert!(!p.admit(Side::Destination, 1, 1_000, &cancel).await);
    }
}
