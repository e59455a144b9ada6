//! `mailshift report`: one view of a whole migration from any number of `apply --report`
//! files (one per shard, plus re-runs). A big migration runs as many shard processes on
//! many machines or pods; the helpdesk needs one answer per account ("is it done?") and one
//! list of the messages that did not arrive. Pure: the command reads the files, this module
//! parses and merges them (no I/O), `render::fleet` formats the result.
//!
//! Merging is by time, never by adding up: an account that appears in several reports (a
//! shard retried, a final pass after cutover) is shown as its latest run says.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::report::{AccountStatus, FailedMessage, Report, FORMAT_VERSION};

/// The version of the `report --format json` documents.
pub(crate) const FLEET_FORMAT_VERSION: u32 = 1;

/// Why report files could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FleetError {
    #[error("cannot read the report `{file}`")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{file}` is not an `apply --report` file")]
    Parse {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{file}` has report format version {found}; this mailshift reads up to {supported}")]
    Version {
        file: String,
        found: u32,
        supported: u32,
    },
}

impl crate::diagnostics::HasHint for FleetError {
    fn hint(&self) -> Option<String> {
        match self {
            FleetError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some(
                    "a shard that has not finished yet has no report: wait for it, or leave \
                     its file out"
                        .to_string(),
                )
            }
            FleetError::Read { .. } => None,
            FleetError::Parse { .. } => Some(
                "pass the files written by `mailshift apply --report FILE` (not a plan file)"
                    .to_string(),
            ),
            FleetError::Version { .. } => {
                Some("read it with the mailshift version that wrote it, or a newer one".into())
            }
        }
    }
}

/// One report file, read.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    /// How the file is named in the output (its path as given).
    pub name: String,
    pub report: Report,
    /// When the report has no timestamps (written before they existed): the file's
    /// modification time, RFC 3339. Used only then.
    pub fallback_time: Option<String>,
}

/// Parses one report file's bytes.
pub(crate) fn parse_report(file: &str, bytes: &[u8]) -> Result<Report, FleetError> {
    // Check the version first, so that a newer file with other fields says so.
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let version: Version = serde_json::from_slice(bytes).map_err(|source| FleetError::Parse {
        file: file.to_string(),
        source,
    })?;
    if version.format_version > FORMAT_VERSION {
        return Err(FleetError::Version {
            file: file.to_string(),
            found: version.format_version,
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| FleetError::Parse {
        file: file.to_string(),
        source,
    })
}

/// One account as its latest run left it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FleetAccount {
    pub source_user: String,
    pub destination_user: String,
    pub status: AccountStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the latest run copied (earlier runs are not added: see the module header).
    pub copied: u64,
    pub bytes: u64,
    /// Messages the latest run could not copy.
    pub failed: u64,
    /// Planned messages the latest run neither copied nor failed.
    pub pending: u64,
    pub already_present: u64,
    pub skipped: u64,
    /// When the latest run ended (RFC 3339), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The report file the latest run is from.
    pub report_file: String,
    /// How many runs of this account the reports hold.
    pub runs: u32,
    #[serde(skip)]
    pub failed_messages: Vec<FailedMessage>,
}

/// Totals over the accounts' latest runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct FleetSummary {
    pub accounts: u64,
    pub accounts_done: u64,
    pub accounts_partial: u64,
    pub accounts_failed: u64,
    pub copied: u64,
    pub bytes: u64,
    pub failed: u64,
    pub pending: u64,
}

/// The merged view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Fleet {
    pub format_version: u32,
    /// How many report files were read.
    pub reports: usize,
    /// Sorted by `source_user` (case-insensitively).
    pub accounts: Vec<FleetAccount>,
    pub summary: FleetSummary,
}

/// One message that did not arrive, with its account: a row of `report --failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FailedRow {
    pub source_user: String,
    pub destination_user: String,
    pub folder: String,
    pub date: String,
    pub from: String,
    pub subject: String,
    pub size: u64,
    pub uid: u32,
    /// The server's words.
    pub reason: String,
}

/// An instant to order runs by; runs without one sort first (oldest).
fn instant(text: Option<&str>) -> Option<DateTime<FixedOffset>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
}

/// Merges the reports: per account (by `source_user`, case-insensitively) the run with the
/// latest time wins; equal times (or none) go to the later file, then the later entry.
pub(crate) fn merge(inputs: &[Input]) -> Fleet {
    // (time, file index, entry index) of the winner, and the run count.
    type Rank = (Option<DateTime<FixedOffset>>, usize, usize);
    let mut best: HashMap<String, (Rank, u32)> = HashMap::new();
    for (f, input) in inputs.iter().enumerate() {
        let report_time = input
            .report
            .created_at
            .as_deref()
            .or(input.fallback_time.as_deref());
        for (e, account) in input.report.accounts.iter().enumerate() {
            let rank = (
                instant(account.finished_at.as_deref()).or_else(|| instant(report_time)),
                f,
                e,
            );
            best.entry(account.source_user.to_lowercase())
                .and_modify(|(r, runs)| {
                    *runs += 1;
                    if rank > *r {
                        *r = rank;
                    }
                })
                .or_insert((rank, 1));
        }
    }
    let mut accounts: Vec<FleetAccount> = best
        .into_values()
        .map(|((time, f, e), runs)| {
            let input = &inputs[f];
            let a = &input.report.accounts[e];
            FleetAccount {
                source_user: a.source_user.clone(),
                destination_user: a.destination_user.clone(),
                status: a.status,
                error: a.error.clone(),
                copied: a.copied,
                bytes: a.bytes,
                failed: a.failed.len() as u64,
                pending: a.pending,
                already_present: a.already_present,
                skipped: a.skipped,
                finished_at: time.map(|t| {
                    t.with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
                report_file: input.name.clone(),
                runs,
                failed_messages: a.failed.clone(),
            }
        })
        .collect();
    accounts.sort_by(|a, b| {
        a.source_user
            .to_lowercase()
            .cmp(&b.source_user.to_lowercase())
            .then_with(|| a.source_user.cmp(&b.source_user))
    });
    let mut summary = FleetSummary::default();
    for a in &accounts {
        summary.accounts += 1;
        match a.status {
            AccountStatus::Done => summary.accounts_done += 1,
            AccountStatus::Partial => summary.accounts_partial += 1,
            AccountStatus::Failed => summary.accounts_failed += 1,
        }
        summary.copied += a.copied;
        summary.bytes += a.bytes;
        summary.failed += a.failed;
        summary.pending += a.pending;
    }
    Fleet {
        format_version: FLEET_FORMAT_VERSION,
        reports: inputs.len(),
        accounts,
        summary,
    }
}

/// Every message the accounts' latest runs could not copy, account by account, in the
/// order the runs recorded them.
pub(crate) fn failed_rows(fleet: &Fleet) -> Vec<FailedRow> {
    fleet
        .accounts
        .iter()
        .flat_map(|a| {
            a.failed_messages.iter().map(move |m| FailedRow {
                source_user: a.source_user.clone(),
                destination_user: a.destination_user.clone(),
                folder: m.folder.clone(),
                date: m.date.clone(),
                from: m.from.clone(),
                subject: m.subject.clone(),
                size: m.size,
                uid: m.uid,
                reason: m.reason.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diagnostics::HasHint;
    use crate::report::AccountReport;

    /// A run of `user` that copied `copied`, failed `failed` messages and left `pending`,
    /// finished at `at` (None: no timestamp, as in old reports).
    pub(crate) fn run(
        user: &str,
        copied: u64,
        failed: &[&str],
        pending: u64,
        at: Option<&str>,
    ) -> AccountReport {
        let mut a = AccountReport::new(user, &format!("new-{user}"));
        a.copied = copied;
        a.bytes = copied * 100;
        a.pending = pending;
        a.failed = failed
            .iter()
            .enumerate()
            .map(|(i, subject)| FailedMessage {
                folder: "INBOX".into(),
                uid: i as u32 + 1,
                reason: "NO [LIMIT] too big".into(),
                date: "Mon, 1 Jan 2024 10:00:00 +0000".into(),
                from: "bob@example.com".into(),
                subject: (*subject).into(),
                size: 1000,
            })
            .collect();
        a.finished_at = at.map(str::to_string);
        a.settle();
        a
    }

    pub(crate) fn input(name: &str, accounts: Vec<AccountReport>) -> Input {
        let mut report = Report::new(accounts, false);
        report.created_at = None;
        Input {
            name: name.into(),
            report,
            fallback_time: None,
        }
    }

    const T1: &str = "2026-11-30T05:00:00Z";
    const T2: &str = "2026-11-30T06:00:00+01:00"; // = 05:00 UTC, equal to T1
    const T3: &str = "2026-11-30T05:30:00.250Z";

    #[test]
    fn latest_run_wins_per_account() {
        struct Case {
            name: &'static str,
            inputs: Vec<Input>,
            /// (account, copied, status, runs, file) per account, sorted.
            want: Vec<(&'static str, u64, AccountStatus, u32, &'static str)>,
        }
        let table = vec![
            Case {
                name: "disjoint shards are all kept",
                inputs: vec![
                    input("s0", vec![run("a", 5, &[], 0, Some(T1))]),
                    input("s1", vec![run("b", 7, &[], 0, Some(T1))]),
                ],
                want: vec![
                    ("a", 5, AccountStatus::Done, 1, "s0"),
                    ("b", 7, AccountStatus::Done, 1, "s1"),
                ],
            },
            Case {
                name: "a later re-run wins, whatever the file order",
                inputs: vec![
                    input("rerun", vec![run("a", 2, &[], 0, Some(T3))]),
                    input("first", vec![run("a", 98, &["x", "y"], 0, Some(T1))]),
                ],
                want: vec![("a", 2, AccountStatus::Done, 2, "rerun")],
            },
            Case {
                name: "offsets are compared as instants; a tie goes to the later file",
                inputs: vec![
                    input("one", vec![run("a", 1, &[], 0, Some(T2))]),
                    input("two", vec![run("a", 3, &[], 4, Some(T1))]),
                ],
                want: vec![("a", 3, AccountStatus::Partial, 2, "two")],
            },
            Case {
                name: "a timestamp beats none; names match case-insensitively",
                inputs: vec![
                    input("new", vec![run("A", 1, &[], 0, Some(T1))]),
                    input("old", vec![run("a", 9, &[], 0, None)]),
                ],
                want: vec![("A", 1, AccountStatus::Done, 2, "new")],
            },
            Case {
                name: "without any timestamp the later file wins",
                inputs: vec![
                    input("old", vec![run("a", 9, &["x"], 0, None)]),
                    input("new", vec![run("a", 1, &[], 0, None)]),
                ],
                want: vec![("a", 1, AccountStatus::Done, 2, "new")],
            },
            Case {
                name: "the same file twice counts as two runs, not double",
                inputs: vec![
                    input("r", vec![run("a", 4, &[], 0, Some(T1))]),
                    input("r", vec![run("a", 4, &[], 0, Some(T1))]),
                ],
                want: vec![("a", 4, AccountStatus::Done, 2, "r")],
            },
            Case {
                name: "no reports, no accounts",
                inputs: vec![],
                want: vec![],
            },
        ];
        for case in table {
            let fleet = merge(&case.inputs);
            let got: Vec<_> = fleet
                .accounts
                .iter()
                .map(|a| {
                    (
                        a.source_user.as_str(),
                        a.copied,
                        a.status,
                        a.runs,
                        a.report_file.as_str(),
                    )
                })
                .collect();
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn report_time_and_file_time_stand_in_for_account_times() {
        // Report-level created_at, then the file's mtime, in that order.
        let mut a = input("a", vec![run("u", 1, &[], 0, None)]);
        a.report.created_at = Some(T3.into());
        let mut b = input("b", vec![run("u", 2, &[], 0, None)]);
        b.fallback_time = Some(T1.into());
        assert_eq!(merge(&[a.clone(), b.clone()]).accounts[0].copied, 1);
        b.fallback_time = Some("2027-01-01T00:00:00Z".into());
        let fleet = merge(&[a, b]);
        assert_eq!(fleet.accounts[0].copied, 2);
        assert_eq!(
            fleet.accounts[0].finished_at.as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn totals_add_up_latest_runs_only() {
        let fleet = merge(&[
            input(
                "s0",
                vec![
                    run("a", 10, &[], 0, Some(T1)),
                    run("b", 3, &["big"], 2, Some(T1)),
                ],
            ),
            input("s1", vec![run("c", 0, &[], 0, Some(T1))]),
            input("rerun", vec![run("a", 1, &[], 0, Some(T3))]),
        ]);
        let mut c = run("c", 0, &[], 5, Some(T1));
        c.error = Some("login refused".into());
        c.settle();
        let fleet2 = merge(&[input("x", vec![c])]);
        assert_eq!(
            fleet.summary,
            FleetSummary {
                accounts: 3,
                accounts_done: 2,
                accounts_partial: 1,
                accounts_failed: 0,
                copied: 1 + 3,
                bytes: 100 + 300,
                failed: 1,
                pending: 2,
            }
        );
        assert_eq!(fleet.reports, 3);
        assert_eq!(fleet2.summary.accounts_failed, 1);
        assert_eq!(fleet2.accounts[0].error.as_deref(), Some("login refused"));
    }

    #[test]
    fn failed_rows_come_from_the_latest_run_only() {
        let fleet = merge(&[
            input("first", vec![run("a", 0, &["old one"], 0, Some(T1))]),
            input("again", vec![run("a", 0, &["still", "also"], 0, Some(T3))]),
            input("b", vec![run("b", 0, &["b's"], 0, Some(T1))]),
        ]);
        let rows = failed_rows(&fleet);
        let got: Vec<(&str, &str, u32)> = rows
            .iter()
            .map(|r| (r.source_user.as_str(), r.subject.as_str(), r.uid))
            .collect();
        assert_eq!(
            got,
            vec![("a", "still", 1), ("a", "also", 2), ("b", "b's", 1)]
        );
        let r = &rows[0];
        assert_eq!(
            (
                r.folder.as_str(),
                r.date.as_str(),
                r.from.as_str(),
                r.size,
                r.reason.as_str()
            ),
            (
                "INBOX",
                "Mon, 1 Jan 2024 10:00:00 +0000",
                "bob@example.com",
                1000,
                "NO [LIMIT] too big"
            )
        );
    }

    #[test]
    fn parsing_names_the_file_and_refuses_newer_versions() {
        let good = input("g", vec![run("a", 1, &[], 0, Some(T1))])
            .report
            .to_json();
        assert_eq!(
            parse_report("g", good.as_bytes()).unwrap().accounts.len(),
            1
        );
        let table: &[(&str, &str)] = &[
            ("{", "`f.json` is not an `apply --report` file"),
            (
                r#"{"format_version":1,"accounts":[]}"#,
                "`f.json` is not an `apply --report` file",
            ),
            (
                r#"{"format_version":9}"#,
                "`f.json` has report format version 9; this mailshift reads up to 1",
            ),
        ];
        for (text, want) in table {
            let e = parse_report("f.json", text.as_bytes()).unwrap_err();
            assert_eq!(e.to_string(), *want);
            assert!(e.hint().is_some());
        }
        let missing = FleetError::Read {
            file: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(missing.hint().unwrap().contains("not finished"));
    }
}
