//! `mailshift report`: one view of a whole migration from any number of `apply --report`
//! files (one per shard, plus re-runs). A big migration runs as many shard processes on
//! many machines or pods; the helpdesk needs one answer per account ("is it done?") and one
//! list of the messages that did not arrive. Pure: the command reads the files, this module
//! parses and merges them (no I/O), `render::fleet` formats the result.
//!
//! Merging is by time, never by adding up: an account that appears in several reports (a
//! shard retried, a final pass after cutover) is shown as its latest run says.
//!
//! Plan files (`plan --out FILE`) may be given too: they answer "is it complete?". An
//! account whose latest plan is newer than its latest run is `complete` when that plan had
//! nothing to copy (`No changes.`), and otherwise lists the messages still missing on the
//! destination (date, from, subject) — the answer to "which messages did not arrive?".

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::planfile::PlanFile;
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

/// A plan file, read.
#[derive(Debug, Clone)]
pub(crate) struct PlanInput {
    pub name: String,
    pub plan: PlanFile,
}

/// What a file given to `mailshift report` holds.
#[derive(Debug, Clone)]
pub(crate) enum Document {
    Report(Report),
    Plan(PlanFile),
}

/// Parses a report or a plan file (a plan is recognised by its `config_digest`).
pub(crate) fn parse_document(file: &str, bytes: &[u8]) -> Result<Document, FleetError> {
    #[derive(serde::Deserialize)]
    struct Kind {
        format_version: u32,
        config_digest: Option<String>,
    }
    let kind: Kind = serde_json::from_slice(bytes).map_err(|source| FleetError::Parse {
        file: file.to_string(),
        source,
    })?;
    if kind.config_digest.is_none() {
        return parse_report(file, bytes).map(Document::Report);
    }
    if kind.format_version != crate::planfile::FORMAT_VERSION {
        return Err(FleetError::Version {
            file: file.to_string(),
            found: kind.format_version,
            supported: crate::planfile::FORMAT_VERSION,
        });
    }
    serde_json::from_slice(bytes)
        .map(Document::Plan)
        .map_err(|source| FleetError::Parse {
            file: file.to_string(),
            source,
        })
}

/// A message the latest plan of an account still had to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingMessage {
    /// Destination folder (display path).
    pub folder: String,
    /// Source UID.
    pub uid: u32,
    pub date: String,
    pub from: String,
    pub subject: String,
    pub size: u64,
}

/// One account as its latest run left it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FleetAccount {
    pub source_user: String,
    pub destination_user: String,
    /// The latest run's status; `None` for an account only planned, never applied.
    pub status: Option<AccountStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about `error` (reports written before the `hint` field carry it inside
    /// `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_file: Option<String>,
    /// How many runs of this account the reports hold.
    pub runs: u32,
    /// By a plan newer than the latest run: `true` when it had nothing to copy, `false`
    /// when messages are still missing. `null` when no plan was made since the last run
    /// (or the plan failed for this account).
    pub complete: Option<bool>,
    /// Messages still missing by that plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<u64>,
    /// When that plan was made (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// The plan file it is from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_file: Option<String>,
    #[serde(skip)]
    pub failed_messages: Vec<FailedMessage>,
    #[serde(skip)]
    pub missing_messages: Vec<MissingMessage>,
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
    /// Accounts a plan newer than their latest run found complete / not complete.
    pub accounts_complete: u64,
    pub accounts_incomplete: u64,
    /// Messages those plans still had to copy.
    pub missing: u64,
}

/// The merged view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Fleet {
    pub format_version: u32,
    /// How many report files were read.
    pub reports: usize,
    /// How many plan files were read.
    pub plans: usize,
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
    /// The server's words (empty for a message a newer plan still had to copy that no
    /// run tried).
    pub reason: String,
    /// `failed` (the latest run tried and the server refused) or `missing` (a plan newer
    /// than the latest run still had to copy it).
    pub kind: &'static str,
}

/// An instant to order runs by; runs without one sort first (oldest).
fn instant(text: Option<&str>) -> Option<DateTime<FixedOffset>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
}

/// Merges reports only (see [`merge_with_plans`]).
#[cfg(test)]
pub(crate) fn merge(inputs: &[Input]) -> Fleet {
    merge_with_plans(inputs, &[])
}

/// Merges the reports: per account (by `source_user`, case-insensitively) the run with the
/// latest time wins; equal times (or none) go to the later file, then the later entry. Then
/// each account's latest plan, when it is at least as new as that run, says whether the
/// account is complete.
pub(crate) fn merge_with_plans(inputs: &[Input], plans: &[PlanInput]) -> Fleet {
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
                status: Some(a.status),
                error: a.error.clone(),
                hint: a.hint.clone(),
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
                report_file: Some(input.name.clone()),
                runs,
                complete: None,
                missing: None,
                checked_at: None,
                plan_file: None,
                failed_messages: a.failed.clone(),
                missing_messages: Vec::new(),
            }
        })
        .collect();
    apply_plans(&mut accounts, plans);
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
            Some(AccountStatus::Done) => summary.accounts_done += 1,
            Some(AccountStatus::Partial) => summary.accounts_partial += 1,
            Some(AccountStatus::Failed) => summary.accounts_failed += 1,
            None => {}
        }
        match a.complete {
            Some(true) => summary.accounts_complete += 1,
            Some(false) => summary.accounts_incomplete += 1,
            None => {}
        }
        summary.missing += a.missing.unwrap_or(0);
        summary.copied += a.copied;
        summary.bytes += a.bytes;
        summary.failed += a.failed;
        summary.pending += a.pending;
    }
    Fleet {
        format_version: FLEET_FORMAT_VERSION,
        reports: inputs.len(),
        plans: plans.len(),
        accounts,
        summary,
    }
}

/// Adds each account's latest plan (by `created_at`, a tie to the later file): it decides
/// completeness when it is at least as new as the account's latest run. Accounts found
/// only in plans are added, never applied.
fn apply_plans(accounts: &mut Vec<FleetAccount>, plans: &[PlanInput]) {
    type Rank = (Option<DateTime<FixedOffset>>, usize, usize);
    let mut latest: HashMap<String, Rank> = HashMap::new();
    for (f, p) in plans.iter().enumerate() {
        for (e, a) in p.plan.accounts.iter().enumerate() {
            let rank = (instant(Some(&p.plan.created_at)), f, e);
            let slot = latest.entry(a.source_user.to_lowercase()).or_insert(rank);
            if rank > *slot {
                *slot = rank;
            }
        }
    }
    for (user, (time, f, e)) in latest {
        let plan = &plans[f].plan.accounts[e];
        let index = match accounts
            .iter()
            .position(|a| a.source_user.to_lowercase() == user)
        {
            Some(i) => i,
            None => {
                accounts.push(FleetAccount {
                    source_user: plan.source_user.clone(),
                    destination_user: plan.destination_user.clone(),
                    status: None,
                    error: None,
                    hint: None,
                    copied: 0,
                    bytes: 0,
                    failed: 0,
                    pending: 0,
                    already_present: 0,
                    skipped: 0,
                    finished_at: None,
                    report_file: None,
                    runs: 0,
                    complete: None,
                    missing: None,
                    checked_at: None,
                    plan_file: None,
                    failed_messages: Vec::new(),
                    missing_messages: Vec::new(),
                });
                accounts.len() - 1
            }
        };
        let account = &mut accounts[index];
        let run_time = instant(account.finished_at.as_deref());
        // A plan older than the latest run says nothing about what that run did.
        if account.runs > 0 && (time.is_none() || time < run_time) {
            continue;
        }
        if plan.error.is_some() {
            continue;
        }
        let missing: Vec<MissingMessage> = plan
            .folders
            .iter()
            .flat_map(|f| {
                f.copy.iter().map(move |m| MissingMessage {
                    folder: f.destination.clone(),
                    uid: m.uid,
                    date: m.display.date().to_string(),
                    from: m.display.from().to_string(),
                    subject: m.display.subject().to_string(),
                    size: m.size,
                })
            })
            .collect();
        account.complete = Some(!plan.has_changes());
        account.missing = Some(missing.len() as u64);
        account.checked_at = time.map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        account.missing_messages = missing;
        account.plan_file = Some(plans[f].name.clone());
    }
    accounts.sort_by(|a, b| {
        a.source_user
            .to_lowercase()
            .cmp(&b.source_user.to_lowercase())
            .then_with(|| a.source_user.cmp(&b.source_user))
    });
}

/// Every message that did not arrive, account by account. For an account checked by a plan
/// newer than its latest run, that plan's missing messages (with the server's words where
/// the run had tried one and failed); otherwise the latest run's failed messages.
pub(crate) fn failed_rows(fleet: &Fleet) -> Vec<FailedRow> {
    let mut rows = Vec::new();
    for a in &fleet.accounts {
        let row =
            |folder: &str, uid: u32, date: &str, from: &str, subject: &str, size: u64| FailedRow {
                source_user: a.source_user.clone(),
                destination_user: a.destination_user.clone(),
                folder: folder.to_string(),
                date: date.to_string(),
                from: from.to_string(),
                subject: subject.to_string(),
                size,
                uid,
                reason: String::new(),
                kind: "missing",
            };
        if a.complete.is_some() {
            for m in &a.missing_messages {
                let mut r = row(&m.folder, m.uid, &m.date, &m.from, &m.subject, m.size);
                if let Some(f) = a
                    .failed_messages
                    .iter()
                    .find(|f| f.folder == m.folder && f.uid == m.uid)
                {
                    r.reason = f.reason.clone();
                    r.kind = "failed";
                }
                rows.push(r);
            }
        } else {
            for m in &a.failed_messages {
                let mut r = row(&m.folder, m.uid, &m.date, &m.from, &m.subject, m.size);
                r.reason = m.reason.clone();
                r.kind = "failed";
                rows.push(r);
            }
        }
    }
    rows
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
                hint: None,
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

    /// A plan of `user`, made at `at`, still copying `missing` (folder, uid, subject).
    pub(crate) fn planned(user: &str, missing: &[(&str, u32, &str)], at: &str) -> PlanInput {
        use crate::plan::{AccountPlan, FolderAction, FolderPlan, MessageCopy, RuleKind};
        let mut a = AccountPlan::failed(user, &format!("new-{user}"), String::new(), None);
        a.error = None;
        for (folder, uid, subject) in missing {
            a.folders.push(FolderPlan {
                destination: (*folder).into(),
                destination_wire: (*folder).into(),
                action: FolderAction::Exists,
                destination_status: None,
                sources: Vec::new(),
                rule: RuleKind::Default,
                special_use: None,
                merged: false,
                renamed_delimiter: false,
                subscribe: false,
                case_match: false,
                copy: vec![MessageCopy {
                    source: 0,
                    uid: *uid,
                    size: 2048,
                    flags: Default::default(),
                    internal_date: None,
                    key: crate::identity::IdentityKey([0; 32]),
                    ledger_base: 0,
                    display: crate::message::DisplayFields::new(
                        "Tue, 2 Jan 2024 09:00:00 +0000",
                        "carol@example.com",
                        subject,
                    ),
                }],
                already_present: 0,
                moved: 0,
                skipped: Vec::new(),
                ambiguous: 0,
                ambiguous_keys: Vec::new(),
                flag_updates: Vec::new(),
            });
            a.summary.messages_to_copy += 1;
            a.summary.bytes_to_copy += 2048;
        }
        let mut plan = PlanFile::new("digest".into(), vec![a]);
        plan.created_at = at.into();
        PlanInput {
            name: format!("plan-{user}"),
            plan,
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
                        a.status.unwrap(),
                        a.runs,
                        a.report_file.as_deref().unwrap(),
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
                ..FleetSummary::default()
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
    fn a_plan_newer_than_the_last_run_decides_completeness() {
        const T0: &str = "2026-11-30T04:00:00Z";
        let reports = [input(
            "r",
            vec![
                run("a", 5, &[], 0, Some(T1)),
                run("b", 3, &["refused"], 0, Some(T1)),
                run("c", 1, &[], 0, Some(T3)),
            ],
        )];
        let plans = [
            // a: complete by a later plan; an older plan that said otherwise is ignored.
            planned("a", &[("INBOX", 9, "old news")], T0),
            planned("a", &[], T3),
            // b: still missing the refused message (uid 1) and one no run tried.
            planned("b", &[("INBOX", 1, "refused"), ("Work", 4, "new")], T3),
            // c: the plan is older than the last run: unknown.
            planned("c", &[("INBOX", 2, "x")], T1),
            // d: planned, never applied.
            planned("d", &[("INBOX", 3, "waiting")], T1),
        ];
        let fleet = merge_with_plans(&reports, &plans);
        let got: Vec<_> = fleet
            .accounts
            .iter()
            .map(|a| {
                (
                    a.source_user.as_str(),
                    a.status,
                    a.complete,
                    a.missing,
                    a.checked_at.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "a",
                    Some(AccountStatus::Done),
                    Some(true),
                    Some(0),
                    Some("2026-11-30T05:30:00Z")
                ),
                (
                    "b",
                    Some(AccountStatus::Partial),
                    Some(false),
                    Some(2),
                    Some("2026-11-30T05:30:00Z")
                ),
                ("c", Some(AccountStatus::Done), None, None, None),
                ("d", None, Some(false), Some(1), Some(T1)),
            ]
        );
        assert_eq!(fleet.plans, 5);
        assert_eq!(
            (
                fleet.summary.accounts,
                fleet.summary.accounts_complete,
                fleet.summary.accounts_incomplete,
                fleet.summary.missing
            ),
            (4, 1, 2, 3)
        );
        // Which messages did not arrive: b's from its plan (the refused one with the
        // server's words), d's from its plan.
        let rows: Vec<_> = failed_rows(&fleet)
            .into_iter()
            .map(|r| (r.source_user, r.folder, r.uid, r.subject, r.kind, r.reason))
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "b".into(),
                    "INBOX".into(),
                    1,
                    "refused".into(),
                    "failed",
                    "NO [LIMIT] too big".into()
                ),
                (
                    "b".into(),
                    "Work".into(),
                    4,
                    "new".into(),
                    "missing",
                    String::new()
                ),
                (
                    "d".into(),
                    "INBOX".into(),
                    3,
                    "waiting".into(),
                    "missing",
                    String::new()
                ),
            ]
        );
    }

    #[test]
    fn parsing_tells_plans_from_reports() {
        let plan = planned("a", &[], T1).plan.to_json();
        assert!(matches!(
            parse_document("p", plan.as_bytes()).unwrap(),
            Document::Plan(_)
        ));
        let report = input("g", vec![run("a", 1, &[], 0, Some(T1))])
            .report
            .to_json();
        assert!(matches!(
            parse_document("r", report.as_bytes()).unwrap(),
            Document::Report(_)
        ));
        let e = parse_document("p", br#"{"format_version":2,"config_digest":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("format version 2"), "{e}");
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
