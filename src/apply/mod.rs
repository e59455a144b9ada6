//! The executor: the only code that holds a destination [`Writer`]. It creates the planned
//! folders (parents first) and copies the planned messages: `BODY.PEEK[]` from the source,
//! `APPEND` to the destination with the source flags and INTERNALDATE, in batches, with
//! fetching and appending overlapped. Before appending into a folder it re-reads whatever
//! arrived there since the plan (or since a dropped connection), so applying the same
//! plan twice, or two runs racing, never doubles a message.
//!
//! The parts: `mod.rs` runs an account (lock, ledger, stale check, folders, lanes);
//! `lanes.rs` spreads folders over connection pairs; `folder.rs` copies one folder;
//! `batch.rs` fetches and appends one batch; `big.rs` streams one message over
//! `stream-above` in pieces; `reconcile.rs` finds out what already
//! arrived; `flags.rs` decides which flags a folder stores; `lock.rs` is the local lock;
//! `pacing.rs` keeps to the `[limits]` pacing caps; `error.rs` says why an account stopped.

mod batch;
mod big;
mod error;
mod flags;
mod folder;
mod lanes;
mod lock;
mod pacing;
mod reconcile;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::imap::{
    ConnectionCaps, Credentials, DestinationSession, RetryPolicy, SessionConfig, SessionError,
    SourceSession,
};
use crate::model::{Side, WireName};
use crate::plan::{AccountPlan, FolderAction, FolderPlan, MessageCopy};
use crate::report::AccountReport;
use crate::settings::{Account, Settings};
use crate::state::LedgerWriter;

pub(crate) use error::ApplyError;
use lanes::{split_into_lanes, Lane};
use lock::DestinationLock;
use pacing::AccountPacer;
pub(crate) use pacing::RunPacing;

/// Default body budget: 24 MiB of fetched-but-not-yet-appended bodies in the whole run.
pub(crate) const BODY_BUDGET_KIB: usize = 24 * 1024;

/// Shared by all accounts of one run.
pub(crate) struct Executor<'a> {
    pub settings: &'a Settings,
    /// `max-connections` per server, shared with nothing else during an apply.
    pub caps: ConnectionCaps,
    /// Message bodies in memory at once, over all accounts and lanes, in KiB (see
    /// [`BODY_BUDGET_KIB`]): bounds peak memory whatever the parallelism.
    pub body_budget: Arc<Semaphore>,
    pub cancel: CancellationToken,
    pub progress: crate::progress::Progress,
    /// Finds the hints of an account's error (the command layer knows every error type).
    pub hints: crate::diagnostics::HintLookup,
    /// The pacing caps of `[limits]`: the run's buckets, and each account's.
    pub pacing: RunPacing,
    /// The plan was made by this run a moment ago (no plan file, no question asked): its
    /// folders may be created while the stale check runs.
    pub fresh_plan: bool,
}

/// What every step of one account's copy needs to know: the run and the account.
#[derive(Clone, Copy)]
struct Ctx<'r> {
    exec: &'r Executor<'r>,
    account: &'r Account,
    pacer: &'r AccountPacer<'r>,
}

impl Ctx<'_> {
    fn settings(&self) -> &Settings {
        self.exec.settings
    }

    fn cancelled(&self) -> bool {
        self.exec.cancel.is_cancelled()
    }

    /// `batcher` made no bigger than one burst of the pacing caps on `side`.
    fn paced(&self, batcher: batch::Batcher, side: Side) -> batch::Batcher {
        let (messages, bytes) = self.pacer.batch_limit(side);
        batch::Batcher {
            messages: batcher.messages.min(messages),
            bytes: batcher.bytes.min(bytes),
        }
    }

    /// The pacing point: called with the messages and bytes about to be read from the
    /// source or written to the destination, before each FETCH and each APPEND. Waits here
    /// keep an account under its provider's caps (`[limits]` pacing keys, `pacing.rs`).
    /// `false` when the run was cancelled while waiting: then nothing is moved.
    async fn pace(&self, side: Side, messages: usize, bytes: u64) -> bool {
        self.pacer
            .admit(side, messages, bytes, &self.exec.cancel)
            .await
    }

    fn session_config(&self, side: Side) -> SessionConfig {
        let settings = self.settings();
        SessionConfig {
            server: match side {
                Side::Source => settings.source.clone(),
                Side::Destination => settings.destination.clone(),
            },
            limits: settings.limits.clone(),
            creds: Credentials::of(self.account, side),
        }
    }

    /// A source session (it connects on first use).
    fn source_session(&self) -> SourceSession {
        SourceSession::new(
            self.session_config(Side::Source),
            RetryPolicy::from_limits(&self.settings().limits),
        )
    }

    /// A destination session, connected (so that an unreachable destination fails here).
    async fn destination_session(&self) -> Result<DestinationSession, ApplyError> {
        let mut dst = DestinationSession::new(
            self.session_config(Side::Destination),
            RetryPolicy::from_limits(&self.settings().limits),
        );
        dst.connect().await.map_err(ApplyError::dst)?;
        Ok(dst)
    }
}

/// Counters of one account (or one lane of it) while it runs.
struct Tally<'r> {
    report: &'r mut AccountReport,
    progress: &'r crate::progress::AccountProgress,
    /// Keywords already warned about (one warning per keyword and account).
    warned_keywords: &'r std::sync::Mutex<BTreeSet<String>>,
    /// The account's ledger: every delivered copy is recorded, synced per batch.
    ledger: &'r std::sync::Mutex<LedgerWriter>,
}

impl Tally<'_> {
    /// Records delivered copies in the ledger and syncs it.
    fn record_delivered<'m>(
        &self,
        copies: impl IntoIterator<Item = &'m MessageCopy>,
    ) -> Result<(), ApplyError> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        for m in copies {
            ledger.delivered(m.key, m.ledger_base);
        }
        ledger.flush().map_err(ApplyError::Ledger)
    }
}

impl Executor<'_> {
    /// Applies one account's plan. Never fails as a whole: problems end up in the report.
    pub(crate) async fn apply_account(
        &self,
        account: &Account,
        plan: &AccountPlan,
    ) -> AccountReport {
        let started = Instant::now();
        let mut report = AccountReport::new(&plan.source_user, &plan.destination_user);
        report.skipped = plan.summary.skipped;
        let planned = plan.summary.messages_to_copy;
        if let Some(e) = &plan.error {
            report.error = Some(format!("not planned: {e}"));
            report.stamp_finished();
            report.hint = plan.hint.clone();
            report.settle();
            return report;
        }
        let pacer = self.pacing.account();
        if plan.has_changes() || !plan.ledger_updates.is_empty() {
            let result = match self.start_account(plan) {
                Ok((lock, ledger)) if plan.has_changes() => {
                    let progress = self.progress.account(
                        &plan.source_user,
                        planned,
                        plan.summary.bytes_to_copy,
                    );
                    let warned = std::sync::Mutex::new(BTreeSet::new());
                    let ledger = std::sync::Mutex::new(ledger);
                    let mut tally = Tally {
                        report: &mut report,
                        progress: &progress,
                        warned_keywords: &warned,
                        ledger: &ledger,
                    };
                    let ctx = Ctx {
                        exec: self,
                        account,
                        pacer: &pacer,
                    };
                    let result = ctx.copy_account(plan, &mut tally).await;
                    progress.finish();
                    drop(lock);
                    result
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                let d = crate::diagnostics::Diagnostic::of(&e, self.hints);
                tracing::error!(account = %plan.source_user, "{}", d.one_line());
                report.error = Some(d.one_line());
                report.hint = d.hint_text();
            }
        }
        let accounted = report.copied
            + report.failed.len() as u64
            + report.vanished.len() as u64
            + report.already_present;
        report.pending = planned.saturating_sub(accounted);
        report.seconds = started.elapsed().as_secs_f64();
        (report.pacing_waits, report.pacing_wait_seconds) = pacer.waited();
        report.stamp_finished();
        report.settle();
        report
    }

    /// Takes the account's lock, opens its ledger and records what the destination held
    /// at plan time (before anything is copied).
    fn start_account(
        &self,
        plan: &AccountPlan,
    ) -> Result<(DestinationLock, LedgerWriter), ApplyError> {
        let lock = DestinationLock::acquire(
            &self.settings.state_dir,
            &self.settings.destination.host,
            self.settings.destination.port,
            &plan.destination_user,
        )?;
        let mut ledger = LedgerWriter::open(
            &self.settings.state_dir,
            &self.settings.destination,
            &plan.destination_user,
        )
        .map_err(ApplyError::Ledger)?;
        ledger.reserve(plan.summary.messages_to_copy as usize + plan.ledger_updates.len());
        ledger
            .record_present(&plan.ledger_updates)
            .map_err(ApplyError::Ledger)?;
        Ok((lock, ledger))
    }
}

impl Ctx<'_> {
    async fn copy_account(
        self,
        plan: &AccountPlan,
        tally: &mut Tally<'_>,
    ) -> Result<(), ApplyError> {
        let caps = &self.exec.caps;
        let _src_slot = caps.of(Side::Source).acquire().await.expect("never closed");
        let _dst_slot = caps
            .of(Side::Destination)
            .acquire()
            .await
            .expect("never closed");
        // The folders to copy and the lanes: decided first, so that every lane's
        // connections are opened at once, while the stale check and the folder creation
        // below run (across the internet each login is a few round trips).
        let work: Vec<&FolderPlan> = plan
            .folders
            .iter()
            .filter(|f| !f.copy.is_empty() || !f.flag_updates.is_empty())
            .collect();
        // `connections-per-account` lanes, each with its own connection pair, copy
        // different folders at once; extra lanes only while `max-connections` allows.
        let wanted = self
            .settings()
            .limits
            .connections_per_account
            .max(1)
            .min(work.len().max(1));
        let mut extra_slots = Vec::new();
        for _ in 1..wanted {
            match (
                caps.of(Side::Source).try_acquire(),
                caps.of(Side::Destination).try_acquire(),
            ) {
                (Ok(src), Ok(dst)) => extra_slots.push((src, dst)),
                _ => break,
            }
        }
        let lanes = split_into_lanes(&work, 1 + extra_slots.len());
        let mut lane_reports: Vec<AccountReport> = (1..lanes.len())
            .map(|_| AccountReport::new(&plan.source_user, &plan.destination_user))
            .collect();
        let (progress, warned, ledger) = (tally.progress, tally.warned_keywords, tally.ledger);
        // The other lanes connect now and start copying once the folders exist (`go`
        // says so; dropped without a word, the account stopped before).
        let (go, ready) = tokio::sync::watch::channel(false);
        let other_lanes = futures::future::join_all(lane_reports.iter_mut().zip(&lanes[1..]).map(
            |(report, folders)| {
                let mut ready = ready.clone();
                async move {
                    let mut src = self.source_session();
                    let mut dst = DestinationSession::new(
                        self.session_config(Side::Destination),
                        RetryPolicy::from_limits(&self.settings().limits),
                    );
                    let (s, d) = tokio::join!(src.connect(), dst.connect());
                    if ready.wait_for(|go| *go).await.is_err() {
                        return Ok(()); // the account stopped before copying
                    }
                    d.map_err(ApplyError::dst)?;
                    s.map_err(ApplyError::src)?;
                    let tally = Tally {
                        report,
                        progress,
                        warned_keywords: warned,
                        ledger,
                    };
                    let mut lane = Lane::new(self, src, dst, tally);
                    let result = lane.run(folders).await;
                    lane.logout().await;
                    result
                }
            },
        ));
        drop(ready);
        let report = &mut *tally.report;
        let main_lane = async {
            // Owned here: when this lane stops before `go`, the others hear of it.
            let go = go;
            let Some((src, dst)) = self.prepare_account(plan, report, &go).await? else {
                return Ok(()); // cancelled
            };
            let tally = Tally {
                report,
                progress,
                warned_keywords: warned,
                ledger,
            };
            let mut main_lane = Lane::new(self, src, dst, tally);
            let result = main_lane.run(&lanes[0]).await;
            if result.is_ok() {
                main_lane.logout().await;
            }
            result
        };
        let (main_result, other_results) = tokio::join!(main_lane, other_lanes);
        drop(extra_slots);
        for lane in lane_reports {
            tally.report.absorb(lane);
        }
        main_result?;
        for result in other_results {
            result?;
        }
        Ok(())
    }

    /// The steps before the first copy, on the account's first connection pair: the
    /// stale check of every source folder (while the destination connects), then the
    /// folders to create (every CREATE in one pipelined round; then `go` lets the other
    /// lanes start) and to subscribe (the next round: never a folder whose CREATE was
    /// refused). Returns the first lane's connections (`None`: cancelled).
    async fn prepare_account(
        self,
        plan: &AccountPlan,
        report: &mut AccountReport,
        go: &tokio::sync::watch::Sender<bool>,
    ) -> Result<Option<(SourceSession, DestinationSession)>, ApplyError> {
        // Refuse a stale plan before writing anything: every source folder the plan reads
        // must still have the UIDVALIDITY the plan saw. Checked per folder only, a saved
        // plan would create folders and fill the folders before the stale one, and only
        // then be refused. One pipelined STATUS round, while the destination connects.
        // Folders first, parents before children (the plan is in tree order): every CREATE
        // in one pipelined round, then the SUBSCRIBEs of those that exist now (never of a
        // folder whose CREATE was refused). A plan this run made a moment ago (no plan
        // file, no question asked) sends its CREATE round beside the stale check: a source
        // recreated in between still stops the account before anything is copied (the
        // folders it made stay, empty, for the next run).
        let creates: Vec<&FolderPlan> = plan
            .folders
            .iter()
            .filter(|f| f.action == FolderAction::Create)
            .collect();
        let names: Vec<WireName> = creates.iter().map(|f| f.destination_wire.clone()).collect();
        let mut src = self.source_session();
        let (checked, connected) = tokio::join!(self.check_sources(plan, &mut src), async {
            let mut dst = self.destination_session().await?;
            let created = if self.exec.fresh_plan {
                Some(dst.create_all(&names).await.map_err(ApplyError::dst)?)
            } else {
                None
            };
            Ok::<_, ApplyError>((dst, created))
        });
        checked?;
        let (mut dst, created) = connected?;
        if self.cancelled() {
            return Ok(None);
        }
        let created = match created {
            Some(created) => created,
            None => dst.create_all(&names).await.map_err(ApplyError::dst)?,
        };
        let mut refused = None;
        let mut subscribe = Vec::new();
        for (folder, result) in creates.iter().zip(created) {
            match result {
                Ok(created) => {
                    if folder.subscribe {
                        subscribe.push(folder.destination_wire.clone());
                    }
                    // A saved plan applied again finds its folders there already: not
                    // created now.
                    if created == crate::imap::Created::New {
                        report.folders_created += 1;
                        tracing::info!(account = %plan.source_user, "created folder `{}`", folder.destination);
                    }
                }
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        // Every folder exists now: the other lanes may start (the SUBSCRIBE round below
        // only delays this lane).
        if refused.is_none() {
            let _ = go.send(true);
        }
        // The existing INBOX, subscribed like the source's (the only existing folder a
        // plan subscribes; SUBSCRIBE of a subscribed folder is harmless on a re-run).
        let existing: Vec<&FolderPlan> = plan
            .folders
            .iter()
            .filter(|f| f.subscribes_existing())
            .collect();
        subscribe.extend(existing.iter().map(|f| f.destination_wire.clone()));
        for result in dst
            .subscribe_all(&subscribe)
            .await
            .map_err(ApplyError::dst)?
        {
            result.map_err(|e| ApplyError::dst(SessionError::Permanent(e)))?;
        }
        for folder in existing {
            tracing::info!(account = %plan.source_user, "subscribed folder `{}`", folder.destination);
        }
        if let Some(e) = refused {
            return Err(ApplyError::dst(SessionError::Permanent(e)));
        }
        dst.backoff.progress();
        Ok(Some((src, dst)))
    }
}
