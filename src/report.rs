//! What an apply did, per account: copied, failed (with the server's words), vanished,
//! pending. Rendered as a table for people and as `--report FILE` JSON for tools; field
//! names are a fixed contract (docs/json.md).

use std::path::Path;

use serde::{Deserialize, Serialize};

pub(crate) const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AccountStatus {
    /// Everything planned is on the destination.
    Done,
    /// Some messages failed or are still pending (interrupted).
    Partial,
    /// The account could not be worked on (login, stale plan, lost server).
    Failed,
}

/// A message the destination refused, or that could not be read.
///
/// `date`, `from`, `subject` and `size` were added so that the fleet report can answer
/// "which messages did not arrive?" on its own; reports written before them still load
/// (empty strings, size 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FailedMessage {
    /// Destination folder (display path).
    pub folder: String,
    /// Source UID.
    pub uid: u32,
    /// The server's words.
    pub reason: String,
    /// The message's `Date:` header, as the plan shows it.
    #[serde(default)]
    pub date: String,
    /// The message's `From:` header, as the plan shows it.
    #[serde(default)]
    pub from: String,
    /// The message's `Subject:` header, decoded.
    #[serde(default)]
    pub subject: String,
    /// Size in bytes on the source (RFC822.SIZE).
    #[serde(default)]
    pub size: u64,
    /// What to do about it, when that is knowable (e.g. `max-size` for a message no
    /// connection could carry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A planned source message that no longer exists on the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VanishedMessage {
    pub source_folder: String,
    pub uid: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AccountReport {
    pub source_user: String,
    pub destination_user: String,
    pub status: AccountStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about `error`, when that is knowable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub folders_created: u64,
    pub copied: u64,
    pub bytes: u64,
    /// Planned messages found on the destination at apply time (copied meanwhile by
    /// another run): not copied again.
    pub already_present: u64,
    pub skipped: u64,
    pub failed: Vec<FailedMessage>,
    pub vanished: Vec<VanishedMessage>,
    /// Planned messages neither copied nor failed (interrupted, or the account failed).
    pub pending: u64,
    /// Existing destination messages that got missing flags (`flags-on-existing = "add"`).
    #[serde(default)]
    pub flags_updated: u64,
    /// Bare-LF messages converted to CRLF because the destination refused them.
    pub fixed_bare_lf: u64,
    /// Messages copied without some of their keywords: the destination refused the APPEND
    /// with them (and did not list them, or `\*`, in PERMANENTFLAGS).
    #[serde(default)]
    pub keywords_dropped: u64,
    /// Attempts repeated after a dropped connection, a timeout or a temporary refusal
    /// (both sides).
    #[serde(default)]
    pub retries: u64,
    /// New connections made after a connection was lost (both sides).
    #[serde(default)]
    pub reconnects: u64,
    /// Seconds spent waiting before retries (backoff, and waits a server asked for).
    #[serde(default)]
    pub retry_wait_seconds: f64,
    /// Destination folders that disappeared during the run (deleted by someone there) and
    /// were made again to copy into; what had been copied into them before went with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders_recreated: Vec<String>,
    /// How often the pacing caps (`[limits]`) made the copy wait before a FETCH or an
    /// APPEND.
    #[serde(default)]
    pub pacing_waits: u64,
    /// Seconds spent in those waits.
    #[serde(default)]
    pub pacing_wait_seconds: f64,
    pub seconds: f64,
    /// When the work on this account ended (RFC 3339, UTC). `mailshift report` keeps the
    /// latest entry of an account across report files; absent in reports written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl AccountReport {
    pub(crate) fn new(source_user: &str, destination_user: &str) -> AccountReport {
        AccountReport {
            source_user: source_user.to_string(),
            destination_user: destination_user.to_string(),
            status: AccountStatus::Done,
            error: None,
            hint: None,
            folders_created: 0,
            copied: 0,
            bytes: 0,
            already_present: 0,
            skipped: 0,
            failed: Vec::new(),
            vanished: Vec::new(),
            pending: 0,
            flags_updated: 0,
            fixed_bare_lf: 0,
            keywords_dropped: 0,
            folders_recreated: Vec::new(),
            retries: 0,
            reconnects: 0,
            retry_wait_seconds: 0.0,
            pacing_waits: 0,
            pacing_wait_seconds: 0.0,
            seconds: 0.0,
            finished_at: None,
        }
    }

    /// Stamps the account with the current time as its `finished_at`.
    pub(crate) fn stamp_finished(&mut self) {
        self.finished_at = Some(now_rfc3339());
    }

    /// Adds what another connection lane of the same account did.
    pub(crate) fn absorb(&mut self, lane: AccountReport) {
        self.folders_created += lane.folders_created;
        self.copied += lane.copied;
        self.bytes += lane.bytes;
        self.already_present += lane.already_present;
        self.failed.extend(lane.failed);
        self.vanished.extend(lane.vanished);
        self.flags_updated += lane.flags_updated;
        self.fixed_bare_lf += lane.fixed_bare_lf;
        self.keywords_dropped += lane.keywords_dropped;
        for folder in lane.folders_recreated {
            if !self.folders_recreated.contains(&folder) {
                self.folders_recreated.push(folder);
            }
        }
        self.retries += lane.retries;
        self.reconnects += lane.reconnects;
        self.retry_wait_seconds += lane.retry_wait_seconds;
    }

    /// Sets the status from what happened.
    pub(crate) fn settle(&mut self) {
        self.status = if self.error.is_some() {
            AccountStatus::Failed
        } else if !self.failed.is_empty() || self.pending > 0 {
            AccountStatus::Partial
        } else {
            AccountStatus::Done
        };
    }
}

/// The current time as RFC 3339 in UTC, to the millisecond (`2026-11-30T05:01:02.345Z`).
fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReportSummary {
    pub folders_created: u64,
    pub copied: u64,
    pub bytes: u64,
    pub failed: u64,
    pub pending: u64,
    pub accounts_done: u64,
    pub accounts_partial: u64,
    pub accounts_failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Report {
    pub format_version: u32,
    pub tool_version: String,
    /// When the report was written (RFC 3339, UTC); absent in reports written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    pub interrupted: bool,
    pub accounts: Vec<AccountReport>,
    pub summary: ReportSummary,
}

impl Report {
    pub(crate) fn new(accounts: Vec<AccountReport>, interrupted: bool) -> Report {
        let mut summary = ReportSummary::default();
        for a in &accounts {
            summary.folders_created += a.folders_created;
            summary.copied += a.copied;
            summary.bytes += a.bytes;
            summary.failed += a.failed.len() as u64;
            summary.pending += a.pending;
            match a.status {
                AccountStatus::Done => summary.accounts_done += 1,
                AccountStatus::Partial => summary.accounts_partial += 1,
                AccountStatus::Failed => summary.accounts_failed += 1,
            }
        }
        Report {
            format_version: FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: Some(now_rfc3339()),
            interrupted,
            accounts,
            summary,
        }
    }

    pub(crate) fn all_done(&self) -> bool {
        self.accounts
            .iter()
            .all(|a| a.status == AccountStatus::Done)
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// Writes the report atomically.
    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, self.to_json().as_bytes())?;
        std::io::Write::write_all(&mut tmp, b"\n")?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_what_happened() {
        let mut a = AccountReport::new("a", "b");
        a.settle();
        assert_eq!(a.status, AccountStatus::Done);
        a.pending = 1;
        a.settle();
        assert_eq!(a.status, AccountStatus::Partial);
        a.error = Some("x".into());
        a.settle();
        assert_eq!(a.status, AccountStatus::Failed);
    }

    #[test]
    fn json_has_the_contract_fields() {
        let mut a = AccountReport::new("a", "b");
        a.failed.push(FailedMessage {
            folder: "INBOX".into(),
            uid: 7,
            reason: "too big".into(),
            date: "Mon, 1 Jan 2024 10:00:00 +0000".into(),
            from: "a@x".into(),
            subject: "Hello".into(),
            size: 1234,
            hint: None,
        });
        a.stamp_finished();
        a.settle();
        let r = Report::new(vec![a], false);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in [
            "format_version",
            "tool_version",
            "created_at",
            "accounts",
            "summary",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let acc = &v["accounts"][0];
        assert_eq!(acc["status"], "partial");
        assert_eq!(acc["failed"][0]["uid"], 7);
        for key in ["folder", "reason", "date", "from", "subject", "size"] {
            assert!(acc["failed"][0].get(key).is_some(), "{key}");
        }
        let finished = acc["finished_at"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(finished).is_ok(),
            "{finished}"
        );
        for key in ["source_user", "copied", "bytes", "pending"] {
            assert!(acc.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn reports_from_before_the_timestamps_still_load() {
        let old = r#"{"format_version":1,"tool_version":"0.1.0","interrupted":false,
            "accounts":[{"source_user":"a","destination_user":"b","status":"partial",
            "folders_created":0,"copied":1,"bytes":10,"already_present":0,"skipped":0,
            "failed":[{"folder":"INBOX","uid":3,"reason":"no"}],"vanished":[],"pending":0,
            "fixed_bare_lf":0,"seconds":0.5}],
            "summary":{"folders_created":0,"copied":1,"bytes":10,"failed":1,"pending":0,
            "accounts_done":0,"accounts_partial":1,"accounts_failed":0}}"#;
        let r: Report = serde_json::from_str(old).unwrap();
        assert_eq!(r.created_at, None);
        assert_eq!(r.accounts[0].finished_at, None);
        assert_eq!(r.accounts[0].failed[0].subject, "");
        assert_eq!(r.accounts[0].failed[0].size, 0);
    }
}
