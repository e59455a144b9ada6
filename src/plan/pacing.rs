//! The pacing caps as token-bucket rates (shared with the executor's pacer, so the plan's
//! promise and the run agree) and the least time an account's copy can take under them
//! (`at least 10.39 days at 500 MB/day` in the plan). Pure.

use serde::{Deserialize, Serialize};

use super::Summary;
use crate::settings::PacingLimits;

const DAY: f64 = 86_400.0;

/// A token bucket: `burst` may go at once, then `per_second`. In any window of T seconds
/// at most `burst + per_second * T` pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// At most `n` in any 24 hours: a burst of an hour's share, the rest spread evenly
    /// (so that burst + 24 h of refill = `n`, never more: providers count per day).
    pub(crate) fn per_day(n: u64) -> Rate {
        let n = n as f64;
        let burst = n / 24.0;
        Rate {
            per_second: (n - burst) / DAY,
            burst,
        }
    }

    /// `n` per second, with a burst of one second's worth (at least one unit).
    pub(crate) fn per_second(n: f64) -> Rate {
        Rate {
            per_second: n,
            burst: n.max(1.0),
        }
    }

    /// The least time, in seconds, to pass `amount` through a full bucket.
    pub(crate) fn least_seconds(&self, amount: f64) -> f64 {
        (amount - self.burst).max(0.0) / self.per_second
    }
}

/// The least time one account's copy can take under the caps, and the cap that decides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TimeFloor {
    /// Whole seconds, rounded down.
    pub seconds: u64,
    /// The deciding cap as configured, e.g. `500 MB/day`, `5 messages/s`, `10 MiB/s`.
    pub cap: String,
}

/// `None` without caps or when they do not slow this copy by a second or more. The
/// whole-run `bytes-per-second` counts as if the account were alone (a floor).
pub(crate) fn time_floor(summary: &Summary, caps: &PacingLimits) -> Option<TimeFloor> {
    let bytes = summary.bytes_to_copy as f64;
    let messages = summary.messages_to_copy as f64;
    let mut candidates: Vec<(f64, String)> = Vec::new();
    if let Some(n) = caps.account_bytes_per_day {
        candidates.push((
            Rate::per_day(n).least_seconds(bytes),
            format!("{}/day", describe_bytes(n)),
        ));
    }
    if let Some(n) = caps.account_messages_per_second {
        candidates.push((
            Rate::per_second(n).least_seconds(messages),
            format!("{} messages/s", describe_number(n)),
        ));
    }
    if let Some(n) = caps.bytes_per_second {
        candidates.push((
            Rate::per_second(n as f64).least_seconds(bytes),
            format!("{}/s", describe_bytes(n)),
        ));
    }
    let (seconds, cap) = candidates.into_iter().max_by(|a, b| a.0.total_cmp(&b.0))?;
    (seconds >= 1.0).then_some(TimeFloor {
        seconds: seconds as u64,
        cap,
    })
}

/// A cap in the units it was most likely written in: decimal when it is a whole number of
/// them (`500 MB`), else binary (`10 MiB`), else bytes.
fn describe_bytes(n: u64) -> String {
    for (unit, size) in [
        ("TB", 1_000_000_000_000u64),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("kB", 1_000),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{} {unit}", thousands(n / size));
        }
    }
    format!("{} B", thousands(n))
}

fn describe_number(n: f64) -> String {
    if n.fract() == 0.0 && n < 1e15 {
        thousands(n as u64)
    } else {
        format!("{n}")
    }
}

fn thousands(n: u64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(messages: u64, bytes: u64) -> Summary {
        Summary {
            messages_to_copy: messages,
            bytes_to_copy: bytes,
            ..Summary::default()
        }
    }

    #[test]
    fn a_day_cap_is_never_exceeded_in_any_24_hours() {
        let r = Rate::per_day(500_000_000);
        assert!((r.burst + r.per_second * DAY - 500_000_000.0).abs() < 1.0);
        assert_eq!(r.least_seconds(r.burst), 0.0);
    }

    #[test]
    fn the_floor_names_the_deciding_cap() {
        let caps = PacingLimits {
            account_bytes_per_day: Some(500_000_000),
            ..PacingLimits::default()
        };
        // 5 GB at 500 MB/day: the first hour's share at once, then 10.39 days.
        let f = time_floor(&summary(1_000, 5_000_000_000), &caps).unwrap();
        assert_eq!(f.cap, "500 MB/day");
        assert_eq!(f.seconds, 897_808); // (5e9 - 5e8/24) / ((5e8 - 5e8/24) / 86400)
        assert!((f.seconds as f64 / DAY - 10.39).abs() < 0.01);

        // Within the first hour's share: no floor worth showing.
        assert_eq!(time_floor(&summary(10, 1_000_000), &caps), None);
        assert_eq!(time_floor(&summary(0, 0), &caps), None);
        assert_eq!(
            time_floor(&summary(10_000, 5_000_000_000), &PacingLimits::default()),
            None
        );

        let caps = PacingLimits {
            account_bytes_per_day: Some(500_000_000),
            account_messages_per_second: Some(2.0),
            bytes_per_second: Some(10 << 20),
        };
        // 1,000,000 small messages: the message rate decides.
        let f = time_floor(&summary(1_000_000, 100_000_000), &caps).unwrap();
        assert_eq!(f.cap, "2 messages/s");
        assert_eq!(f.seconds, 499_999);
        // A few big ones with a tight run cap: bytes per second decides.
        let caps = PacingLimits {
            account_bytes_per_day: None,
            bytes_per_second: Some(1 << 20),
            ..caps
        };
        let f = time_floor(&summary(3, 101 << 20), &caps).unwrap();
        assert_eq!(f.cap, "1 MiB/s");
        assert_eq!(f.seconds, 100);
    }

    #[test]
    fn caps_are_described_as_written() {
        assert_eq!(describe_bytes(500_000_000), "500 MB");
        assert_eq!(describe_bytes(2_500_000_000), "2,500 MB");
        assert_eq!(describe_bytes(10 << 20), "10 MiB");
        assert_eq!(describe_bytes(1_000), "1 kB");
        assert_eq!(describe_bytes(1_500), "1,500 B");
        assert_eq!(describe_number(2.5), "2.5");
        assert_eq!(describe_number(20.0), "20");
    }
}
