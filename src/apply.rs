//! The executor: the only code that holds a destination [`Writer`]. It creates the planned
//! folders (parents first) and copies the planned messages: `BODY.PEEK[]` from the source,
//! `APPEND` to the destination with the source flags and INTERNALDATE, in batches, with
//! fetching and appending overlapped. Before appending into a folder it re-reads whatever
//! arrived there since the plan (or since a dropped connection), so applying the same
//! plan twice, or two runs racing, never doubles a message.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::identity::{parse_headers, IdentityKey};
use crate::imap::{
    AppendItem, AppendResult, ConnectionCaps, Credentials, ImapError, Reader, Writer,
};
use crate::model::Side;
use crate::plan::{AccountPlan, FolderAction, FolderPlan, MessageCopy};
use crate::report::{AccountReport, FailedMessage, VanishedMessage};
use crate::settings::{Account, Settings};
use crate::state::{LedgerWriter, StateError};

/// At most this many messages per APPEND batch.
const BATCH_MESSAGES: usize = 200;
/// At most about this many bytes per batch (a single bigger message still goes alone).
const BATCH_BYTES: u64 = 4 * 1024 * 1024;
/// Default body budget: 24 MiB of fetched-but-not-yet-appended bodies in the whole run.
pub(crate) const BODY_BUDGET_KIB: usize = 24 * 1024;
/// Reconnect attempts after a dropped connection, per batch.
const RECONNECTS: u32 = 3;

/// Why an account stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error("{side}")]
    Imap {
        side: Side,
        #[source]
        source: ImapError,
    },
    #[error("source folder `{folder}` changed UIDVALIDITY since the plan (was {planned}, now {now}): the saved plan is stale")]
    StaleSource {
        folder: String,
        planned: u32,
        now: u32,
    },
    #[error("the destination rewrites headers; a re-run would duplicate (folder `{folder}`, destination uid {uid}: its identity headers differ from the source message's)")]
    RewritesHeaders { folder: String, uid: u32 },
    #[error("another mailshift apply is running for destination user `{user}` on `{host}`")]
    Locked { host: String, user: String },
    #[error("cannot create the lock file `{path}`")]
    LockFile {
        path: String,
        source: std::io::Error,
    },
    /// The ledger of what the destination held could not be written.
    #[error(transparent)]
    Ledger(StateError),
    /// The destination refused a message with `[OVERQUOTA]`: every later one would fail
    /// too, so the account stops here.
    #[error("the destination account is over its quota (folder `{folder}`): {words}")]
    OverQuota { folder: String, words: String },
}

impl ApplyError {
    fn source(source: ImapError) -> ApplyError {
        ApplyError::Imap {
            side: Side::Source,
            source,
        }
    }

    fn destination(source: ImapError) -> ApplyError {
        ApplyError::Imap {
            side: Side::Destination,
            source,
        }
    }
}

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
}

/// A held lock on (destination host, user); released on drop (the OS drops flock on exit,
/// so a `kill -9` leaves no stale lock).
struct DestinationLock {
    _file: File,
}

impl DestinationLock {
    fn acquire(host: &str, user: &str) -> Result<DestinationLock, ApplyError> {
        let dir = std::env::temp_dir().join("mailshift-locks");
        let digest = Sha256::digest(format!(
            "{}\0{}",
            host.to_ascii_lowercase(),
            user.to_lowercase()
        ));
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let path: PathBuf = dir.join(format!("{name}.lock"));
        let io = |source| ApplyError::LockFile {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(DestinationLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(ApplyError::Locked {
                host: host.to_string(),
                user: user.to_string(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// Counters of one account while it runs.
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
                    let result = self.copy_account(account, plan, &mut tally).await;
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
        let lock =
            DestinationLock::acquire(&self.settings.destination.host, &plan.destination_user)?;
        let mut ledger = LedgerWriter::open(
            &self.settings.state_dir,
            &self.settings.destination,
            &plan.destination_user,
        )
        .map_err(ApplyError::Ledger)?;
        ledger
            .record_present(&plan.ledger_updates)
            .map_err(ApplyError::Ledger)?;
        Ok((lock, ledger))
    }

    async fn connect_source(&self, account: &Account) -> Result<Reader, ApplyError> {
        let creds = Credentials::of(account, Side::Source);
        Reader::connect(&self.settings.source, &self.settings.limits, &creds)
            .await
            .map_err(ApplyError::source)
    }

    async fn connect_destination(&self, account: &Account) -> Result<Writer, ApplyError> {
        let creds = Credentials::of(account, Side::Destination);
        Writer::connect(&self.settings.destination, &self.settings.limits, &creds)
            .await
            .map_err(ApplyError::destination)
    }

    async fn copy_account(
        &self,
        account: &Account,
        plan: &AccountPlan,
        tally: &mut Tally<'_>,
    ) -> Result<(), ApplyError> {
        let _src_slot = self
            .caps
            .of(Side::Source)
            .acquire()
            .await
            .expect("never closed");
        let _dst_slot = self
            .caps
            .of(Side::Destination)
            .acquire()
            .await
            .expect("never closed");
        // Refuse a stale plan before writing anything: every source folder the plan reads
        // must still have the UIDVALIDITY the plan saw (`open_source` checks it). Checked
        // per folder only, a saved plan would create folders and fill the folders before
        // the stale one, and only then be refused.
        let mut reader: Option<Reader> = None;
        for folder in plan.folders.iter().filter(|f| !f.copy.is_empty()) {
            let sources: BTreeSet<usize> = folder.copy.iter().map(|m| m.source).collect();
            for index in sources {
                self.open_source(account, folder, index, &mut reader)
                    .await?;
            }
        }
        let mut writer = self.connect_destination(account).await?;
        // Folders first, parents before children (the plan is in tree order).
        for folder in plan
            .folders
            .iter()
            .filter(|f| f.action == FolderAction::Create)
        {
            if self.cancel.is_cancelled() {
                return Ok(());
            }
            let created = writer
                .create(&folder.destination_wire)
                .await
                .map_err(ApplyError::destination)?;
            if folder.subscribe {
                writer
                    .subscribe(&folder.destination_wire)
                    .await
                    .map_err(ApplyError::destination)?;
            }
            // A saved plan applied again finds its folders there already: not created now.
            if created == crate::imap::Created::New {
                tally.report.folders_created += 1;
                tracing::info!(account = %plan.source_user, "created folder `{}`", folder.destination);
            }
        }
        let work: Vec<&FolderPlan> = plan
            .folders
            .iter()
            .filter(|f| !f.copy.is_empty() || !f.flag_updates.is_empty())
            .collect();
        // `connections-per-account` lanes, each with its own connection pair, copy
        // different folders at once; extra lanes only while `max-connections` allows.
        let wanted = self
            .settings
            .limits
            .connections_per_account
            .max(1)
            .min(work.len().max(1));
        let mut extra_slots = Vec::new();
        for _ in 1..wanted {
            match (
                self.caps.of(Side::Source).try_acquire(),
                self.caps.of(Side::Destination).try_acquire(),
            ) {
                (Ok(src), Ok(dst)) => extra_slots.push((src, dst)),
                _ => break,
            }
        }
        let lanes = split_into_lanes(&work, 1 + extra_slots.len());
        let progress = tally.progress;
        let warned = tally.warned_keywords;
        let ledger = tally.ledger;
        let mut lane_reports: Vec<AccountReport> = (1..lanes.len())
            .map(|_| AccountReport::new(&plan.source_user, &plan.destination_user))
            .collect();
        let main_lane = self.run_lane(account, &lanes[0], &mut reader, &mut writer, tally);
        let other_lanes = futures::future::join_all(lane_reports.iter_mut().zip(&lanes[1..]).map(
            |(report, folders)| async move {
                let mut tally = Tally {
                    report,
                    progress,
                    warned_keywords: warned,
                    ledger,
                };
                let mut reader = None;
                let mut writer = self.connect_destination(account).await?;
                let result = self
                    .run_lane(account, folders, &mut reader, &mut writer, &mut tally)
                    .await;
                if let Some(r) = reader {
                    let _ = r.logout().await;
                }
                let _ = writer.logout().await;
                result
            },
        ));
        let (main_result, other_results) = tokio::join!(main_lane, other_lanes);
        drop(extra_slots);
        for lane in lane_reports {
            tally.report.absorb(lane);
        }
        main_result?;
        for result in other_results {
            result?;
        }
        if let Some(r) = reader {
            let _ = r.logout().await;
        }
        let _ = writer.logout().await;
        Ok(())
    }

    /// Copies a lane's folders one after the other over one connection pair.
    async fn run_lane(
        &self,
        account: &Account,
        folders: &[&FolderPlan],
        reader: &mut Option<Reader>,
        writer: &mut Writer,
        tally: &mut Tally<'_>,
    ) -> Result<(), ApplyError> {
        for folder in folders {
            if self.cancel.is_cancelled() {
                break;
            }
            self.copy_folder(account, folder, reader, writer, tally)
                .await?;
        }
        Ok(())
    }

    /// Reconnects the destination after a dropped connection and selects `folder` again.
    async fn reconnect_destination(
        &self,
        account: &Account,
        folder: &FolderPlan,
        writer: &mut Writer,
        error: ImapError,
    ) -> Result<crate::imap::SelectInfo, ApplyError> {
        let mut last = error;
        for attempt in 1..=RECONNECTS {
            tracing::warn!(
                account = %account.source_user,
                "destination connection lost ({last}); reconnecting ({attempt}/{RECONNECTS})"
            );
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            match self.connect_destination(account).await {
                Ok(mut w) => match w.select(&folder.destination_wire).await {
                    Ok(sel) => {
                        *writer = w;
                        return Ok(sel);
                    }
                    Err(e) => last = e,
                },
                Err(ApplyError::Imap { source, .. }) => last = source,
                Err(other) => return Err(other),
            }
        }
        Err(ApplyError::destination(last))
    }

    /// (Re)opens the source folder read-only and checks it is the one the plan saw.
    async fn open_source(
        &self,
        account: &Account,
        folder: &FolderPlan,
        source_index: usize,
        reader: &mut Option<Reader>,
    ) -> Result<(), ApplyError> {
        let source = &folder.sources[source_index];
        let mut last = None;
        for attempt in 0..=RECONNECTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            }
            if reader.is_none() {
                match self.connect_source(account).await {
                    Ok(r) => *reader = Some(r),
                    Err(ApplyError::Imap { source, .. }) if attempt < RECONNECTS => {
                        last = Some(source);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let r = reader.as_mut().expect("connected above");
            match r.examine(&source.wire_name).await {
                Ok(status) => {
                    if let Some(planned) = source.status {
                        if planned.uidvalidity != status.uidvalidity {
                            return Err(ApplyError::StaleSource {
                                folder: source.name.clone(),
                                planned: planned.uidvalidity,
                                now: status.uidvalidity,
                            });
                        }
                    }
                    return Ok(());
                }
                Err(e) if e.kills_session() && attempt < RECONNECTS => {
                    *reader = None;
                    last = Some(e);
                }
                Err(e) => return Err(ApplyError::source(e)),
            }
        }
        Err(ApplyError::source(last.expect("an error was recorded")))
    }

    async fn copy_folder(
        &self,
        account: &Account,
        folder: &FolderPlan,
        reader: &mut Option<Reader>,
        writer: &mut Writer,
        tally: &mut Tally<'_>,
    ) -> Result<(), ApplyError> {
        let sel = match writer.select(&folder.destination_wire).await {
            Ok(sel) => sel,
            Err(e) if e.kills_session() => {
                self.reconnect_destination(account, folder, writer, e)
                    .await?
            }
            Err(e) => return Err(ApplyError::destination(e)),
        };
        let mut remaining: Vec<&MessageCopy> = folder.copy.iter().collect();
        // What arrived on the destination since the plan was made is not copied again.
        let reread_from = match folder.destination_status {
            Some(planned) if planned.uidvalidity == sel.status.uidvalidity => {
                match (planned.uidnext, sel.status.uidnext) {
                    (Some(a), Some(b)) if a == b => None,
                    (Some(a), _) => Some(a),
                    (None, _) => Some(1),
                }
            }
            Some(_) => Some(1),
            None if sel.status.exists > 0 => Some(1),
            None => None,
        };
        if let Some(from) = reread_from {
            let found = read_keys_since(writer, from)
                .await
                .map_err(ApplyError::destination)?;
            let removed = subtract_present(&mut remaining, found);
            if removed > 0 {
                tracing::info!(
                    account = %account.source_user,
                    "`{}`: {removed} planned messages are on the destination already (another run copied them)",
                    folder.destination
                );
                tally.report.already_present += removed;
                tally.progress.advance(removed, 0);
            }
        }
        let allowed = FlagFilter::new(&sel.permanent_flags, sel.new_keywords_allowed);
        if !folder.flag_updates.is_empty() {
            self.add_flags(folder, &sel, writer, &allowed, tally)
                .await?;
        }
        let mut next_uid = sel.status.uidnext;

        // One source folder at a time: the reader has one folder open.
        let mut by_source: HashMap<usize, Vec<&MessageCopy>> = HashMap::new();
        for m in remaining {
            by_source.entry(m.source).or_default().push(m);
        }
        let mut sources: Vec<usize> = by_source.keys().copied().collect();
        sources.sort_unstable();
        for source_index in sources {
            if self.cancel.is_cancelled() {
                return Ok(());
            }
            let messages = &by_source[&source_index];
            self.open_source(account, folder, source_index, reader)
                .await?;
            let batches = make_batches(messages);
            // Pipeline: fetch batch i+1 from the source while batch i is appended.
            let mut fetched: Option<Fetched> = None;
            let mut next = 0;
            // Consecutive lost connections while fetching the same batch: a source that
            // drops every connection mid-FETCH must fail the account, not loop forever.
            let mut fetch_failures = 0;
            loop {
                let to_fetch = if self.cancel.is_cancelled() {
                    None
                } else {
                    batches.get(next).copied()
                };
                if to_fetch.is_none() && fetched.is_none() {
                    break;
                }
                let fetch = async {
                    match to_fetch {
                        Some(batch) => {
                            // Wait for room in the body budget before reading the bodies.
                            let kib: u64 = batch.iter().map(|m| m.size.div_ceil(1024)).sum();
                            let kib = kib.clamp(1, BODY_BUDGET_KIB as u64) as u32;
                            let permit = Arc::clone(&self.body_budget)
                                .acquire_many_owned(kib)
                                .await
                                .expect("never closed");
                            let result = fetch_batch(reader.as_mut().expect("open"), batch).await;
                            Some(result.map(|mut f| {
                                f.budget = Some(permit);
                                f
                            }))
                        }
                        None => None,
                    }
                };
                let append = async {
                    match fetched.take() {
                        Some(mut f) => {
                            let permit = f.budget.take();
                            let result = self.append_fetched(writer, folder, &f, &allowed).await;
                            // Released as soon as the bodies are sent, so that a lane waiting
                            // for budget never waits on itself.
                            drop(permit);
                            Some((result, f))
                        }
                        None => None,
                    }
                };
                let (fetch_result, append_result) = tokio::join!(fetch, append);
                if let Some((result, batch)) = append_result {
                    next_uid = self
                        .finish_append(
                            account, folder, writer, batch, result, &allowed, next_uid, tally,
                        )
                        .await?;
                }
                match fetch_result {
                    None => {}
                    Some(Ok(f)) => {
                        for uid in &f.missing {
                            tally.report.vanished.push(VanishedMessage {
                                source_folder: folder.sources[source_index].name.clone(),
                                uid: *uid,
                            });
                        }
                        tally.progress.advance(f.missing.len() as u64, 0);
                        fetched = Some(f);
                        next += 1;
                        fetch_failures = 0;
                    }
                    Some(Err(e)) if e.kills_session() && fetch_failures < RECONNECTS => {
                        fetch_failures += 1;
                        tracing::warn!(account = %account.source_user, "source connection lost ({e}); reconnecting ({fetch_failures}/{RECONNECTS})");
                        *reader = None;
                        self.open_source(account, folder, source_index, reader)
                            .await?;
                        // The same batch is fetched again on the next turn.
                    }
                    Some(Err(e)) => return Err(ApplyError::source(e)),
                }
            }
        }
        Ok(())
    }

    /// `flags-on-existing = "add"`: adds the source's missing flags to existing destination
    /// messages, grouped by flag set. Skipped when the folder's UIDVALIDITY changed since
    /// the plan (the UIDs would name other messages).
    async fn add_flags(
        &self,
        folder: &FolderPlan,
        sel: &crate::imap::SelectInfo,
        writer: &mut Writer,
        allowed: &FlagFilter,
        tally: &mut Tally<'_>,
    ) -> Result<(), ApplyError> {
        if folder.destination_status.map(|s| s.uidvalidity) != Some(sel.status.uidvalidity) {
            tracing::warn!(
                account = %tally.report.source_user,
                "`{}` changed UIDVALIDITY since the plan; flags not added (run mailshift plan again)",
                folder.destination
            );
            return Ok(());
        }
        let mut by_flags: std::collections::BTreeMap<Vec<String>, Vec<u32>> = Default::default();
        for u in &folder.flag_updates {
            let flags = allowed.filter(&u.add);
            if !flags.is_empty() {
                by_flags.entry(flags).or_default().push(u.uid);
            }
        }
        for (flags, uids) in by_flags {
            writer
                .add_flags(&uids, &flags)
                .await
                .map_err(ApplyError::destination)?;
            tally.report.flags_updated += uids.len() as u64;
        }
        Ok(())
    }

    /// Appends one fetched batch with the flags the folder can store.
    async fn append_fetched(
        &self,
        writer: &mut Writer,
        folder: &FolderPlan,
        batch: &Fetched<'_>,
        allowed: &FlagFilter,
    ) -> Result<Vec<AppendResult>, ImapError> {
        let items: Vec<AppendItem> = batch
            .items
            .iter()
            .map(|(m, body)| AppendItem {
                // Keywords the folder does not claim to store are tried anyway: some
                // servers under-report PERMANENTFLAGS (pymap, some Exchange versions) and
                // store them. A refusal is retried without them (`retry_without_keywords`).
                flags: allowed.optimistic(&m.flags),
                internal_date: m.internal_date.clone(),
                body: std::borrow::Cow::Borrowed(body.as_slice()),
            })
            .collect();
        writer.append_batch(&folder.destination_wire, &items).await
    }

    /// Settles one appended batch. After a dropped connection it reconnects, finds out
    /// which of the batch's messages arrived, and appends only the rest (at most
    /// `RECONNECTS` times). Returns the destination's UIDNEXT after the batch.
    #[allow(clippy::too_many_arguments)]
    async fn finish_append(
        &self,
        account: &Account,
        folder: &FolderPlan,
        writer: &mut Writer,
        mut batch: Fetched<'_>,
        mut result: Result<Vec<AppendResult>, ImapError>,
        allowed: &FlagFilter,
        mut next_uid: Option<u32>,
        tally: &mut Tally<'_>,
    ) -> Result<Option<u32>, ApplyError> {
        let mut attempts = 0;
        loop {
            match result {
                Ok(results) => {
                    return self
                        .record_results(account, folder, writer, &batch, results, allowed, tally)
                        .await
                }
                Err(e) if e.kills_session() && attempts < RECONNECTS => {
                    attempts += 1;
                    let sel = self
                        .reconnect_destination(account, folder, writer, e)
                        .await?;
                    self.drop_arrived(account, writer, &mut batch, next_uid.unwrap_or(1), tally)
                        .await?;
                    next_uid = sel.status.uidnext;
                    result = self.append_fetched(writer, folder, &batch, allowed).await;
                }
                Err(e) => return Err(ApplyError::destination(e)),
            }
        }
    }

    /// The batch may have (partly) arrived before the connection dropped: reads what the
    /// destination has from UID `from` on, counts those as copied, and removes them from
    /// the batch.
    async fn drop_arrived(
        &self,
        account: &Account,
        writer: &mut Writer,
        batch: &mut Fetched<'_>,
        from: u32,
        tally: &mut Tally<'_>,
    ) -> Result<(), ApplyError> {
        let found = read_keys_since(writer, from)
            .await
            .map_err(ApplyError::destination)?;
        let mut copies: Vec<&MessageCopy> = batch.items.iter().map(|(m, _)| *m).collect();
        let before = copies.len();
        if subtract_present(&mut copies, found) == 0 {
            return Ok(());
        }
        let keep: BTreeSet<(usize, u32)> = copies.iter().map(|m| (m.source, m.uid)).collect();
        tracing::info!(
            account = %account.source_user,
            "{} of {before} messages of the interrupted batch had arrived; not sending them again",
            before - keep.len()
        );
        let mut arrived_copies = Vec::new();
        batch.items.retain(|(m, body)| {
            let arrived = !keep.contains(&(m.source, m.uid));
            if arrived {
                tally.report.copied += 1;
                tally.report.bytes += body.len() as u64;
                tally.progress.advance(1, body.len() as u64);
                arrived_copies.push(*m);
            }
            !arrived
        });
        tally.record_delivered(arrived_copies)
    }

    /// Counts each message as copied or failed (retrying a refused bare-LF message with
    /// CRLF when `fix-bare-lf` is on), checks the keys stored, and returns UIDNEXT.
    #[allow(clippy::too_many_arguments)]
    async fn record_results(
        &self,
        account: &Account,
        folder: &FolderPlan,
        writer: &mut Writer,
        batch: &Fetched<'_>,
        results: Vec<AppendResult>,
        allowed: &FlagFilter,
        tally: &mut Tally<'_>,
    ) -> Result<Option<u32>, ApplyError> {
        // (destination UID, identity key) of every message that went in.
        let mut appended: Vec<(u32, IdentityKey)> = Vec::new();
        let mut delivered: Vec<&MessageCopy> = Vec::new();
        let mut over_quota: Option<String> = None;
        let mut uids_known = true;
        for ((m, body), result) in batch.items.iter().zip(results) {
            let mut dropped_keywords = false;
            let result = match result {
                Ok(uid) => Ok((uid, false)),
                Err(words) => match self
                    .retry_without_keywords(writer, folder, m, body, allowed)
                    .await
                {
                    Some(Ok(uid)) => {
                        dropped_keywords = true;
                        self.warn_dropped_keywords(m, allowed, tally);
                        Ok((uid, false))
                    }
                    _ => match self.retry_with_crlf(writer, folder, m, body, allowed).await {
                        Some(Ok(uid)) => {
                            dropped_keywords =
                                allowed.filter(&m.flags) != allowed.optimistic(&m.flags);
                            if dropped_keywords {
                                self.warn_dropped_keywords(m, allowed, tally);
                            }
                            Ok((uid, true))
                        }
                        _ => Err(words),
                    },
                },
            };
            match result {
                Ok((uid, fixed)) => {
                    tally.report.copied += 1;
                    tally.report.fixed_bare_lf += u64::from(fixed);
                    tally.report.keywords_dropped += u64::from(dropped_keywords);
                    tally.report.bytes += body.len() as u64;
                    tally.progress.advance(1, body.len() as u64);
                    delivered.push(m);
                    match uid {
                        Some(uid) => appended.push((uid, m.key)),
                        None => uids_known = false,
                    }
                }
                Err(words) => {
                    if over_quota.is_none() && words.to_ascii_uppercase().contains("[OVERQUOTA]") {
                        over_quota = Some(words.clone());
                    }
                    // Shown once, in the report's `failed` lines; only logged here.
                    tracing::info!(
                        account = %account.source_user,
                        "`{}` uid {}: the destination refused the message: {words}",
                        folder.destination, m.uid
                    );
                    tally.report.failed.push(FailedMessage {
                        folder: folder.destination.clone(),
                        uid: m.uid,
                        reason: words,
                        date: m.date.clone(),
                        from: m.from.clone(),
                        subject: m.subject.clone(),
                        size: m.size,
                    });
                    tally.progress.advance(1, 0);
                }
            }
        }
        tally.record_delivered(delivered)?;
        if let Some(words) = over_quota {
            return Err(ApplyError::OverQuota {
                folder: folder.destination.clone(),
                words,
            });
        }
        self.verify_keys(folder, writer, &appended).await?;
        if uids_known {
            if let Some(uid) = appended.iter().map(|(uid, _)| *uid).max() {
                return Ok(Some(uid + 1));
            }
        }
        // No APPENDUID (no UIDPLUS): ask for UIDNEXT, so that a dropped connection later
        // re-reads exactly what the next batch added.
        match writer.select(&folder.destination_wire).await {
            Ok(sel) => Ok(sel.status.uidnext),
            Err(e) if e.kills_session() => Ok(self
                .reconnect_destination(account, folder, writer, e)
                .await?
                .status
                .uidnext),
            Err(e) => Err(ApplyError::destination(e)),
        }
    }

    /// The key stability check (ARCHITECTURE.md "Matching"): reads the identity headers of the messages
    /// just appended back from the destination. A server that rewrites them would make
    /// every later pass copy them again, so the account stops here.
    async fn verify_keys(
        &self,
        folder: &FolderPlan,
        writer: &mut Writer,
        appended: &[(u32, IdentityKey)],
    ) -> Result<(), ApplyError> {
        let Some(first) = appended.iter().map(|(uid, _)| *uid).min() else {
            return Ok(());
        };
        let mut stored: HashMap<u32, IdentityKey> = HashMap::with_capacity(appended.len());
        writer
            .fetch_metadata_since(first, |m| {
                stored.insert(m.uid, parse_headers(&m.header).key);
            })
            .await
            .map_err(ApplyError::destination)?;
        for (uid, key) in appended {
            match stored.get(uid) {
                Some(k) if k == key => {}
                // Expunged right away by someone else: nothing to compare.
                None => {}
                Some(_) => {
                    return Err(ApplyError::RewritesHeaders {
                        folder: folder.destination.clone(),
                        uid: *uid,
                    })
                }
            }
        }
        Ok(())
    }

    /// With `fix-bare-lf`, a refused message containing bare LF is sent again with CRLF.
    async fn retry_with_crlf(
        &self,
        writer: &mut Writer,
        folder: &FolderPlan,
        m: &MessageCopy,
        body: &[u8],
        allowed: &FlagFilter,
    ) -> Option<AppendResult> {
        if !self.settings.messages.fix_bare_lf || !has_bare_lf(body) {
            return None;
        }
        let item = AppendItem {
            flags: allowed.filter(&m.flags),
            internal_date: m.internal_date.clone(),
            body: to_crlf(body).into(),
        };
        match writer
            .append_batch(&folder.destination_wire, std::slice::from_ref(&item))
            .await
        {
            Ok(mut results) => results.pop(),
            Err(_) => None,
        }
    }

    /// The destination refused a message that carried keywords it does not list as
    /// storable: appends it again with only what PERMANENTFLAGS allows. `None` when there
    /// was nothing to drop (then the refusal is about something else).
    async fn retry_without_keywords(
        &self,
        writer: &mut Writer,
        folder: &FolderPlan,
        m: &MessageCopy,
        body: &[u8],
        allowed: &FlagFilter,
    ) -> Option<AppendResult> {
        let strict = allowed.filter(&m.flags);
        if strict == allowed.optimistic(&m.flags) {
            return None;
        }
        let item = AppendItem {
            flags: strict,
            internal_date: m.internal_date.clone(),
            body: body.into(),
        };
        match writer
            .append_batch(&folder.destination_wire, std::slice::from_ref(&item))
            .await
        {
            Ok(mut results) => results.pop(),
            Err(_) => None,
        }
    }

    /// One warning per keyword and account, for a message copied without it.
    fn warn_dropped_keywords(&self, m: &MessageCopy, allowed: &FlagFilter, tally: &Tally<'_>) {
        {
            for flag in &m.flags {
                if !allowed.allows(flag)
                    && tally
                        .warned_keywords
                        .lock()
                        .expect("not poisoned")
                        .insert(flag.clone())
                {
                    tracing::warn!(
                        account = %tally.report.source_user,
                        "the destination does not store the keyword `{flag}`; messages are copied without it"
                    );
                }
            }
        }
    }
}

/// Spreads folders over `lanes` lanes, biggest first onto the least loaded lane, each lane
/// keeping plan order. Lane 0 always exists.
fn split_into_lanes<'p>(folders: &[&'p FolderPlan], lanes: usize) -> Vec<Vec<&'p FolderPlan>> {
    let lanes = lanes.max(1);
    let weight =
        |f: &FolderPlan| f.bytes_to_copy() + 4096 * (f.copy.len() + f.flag_updates.len()) as u64;
    let mut order: Vec<usize> = (0..folders.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight(folders[i])));
    let mut load = vec![0u64; lanes];
    let mut assigned: Vec<Vec<usize>> = vec![Vec::new(); lanes];
    for i in order {
        let lane = (0..lanes)
            .min_by_key(|&l| load[l])
            .expect("at least one lane");
        load[lane] += weight(folders[i]);
        assigned[lane].push(i);
    }
    let mut result: Vec<Vec<&'p FolderPlan>> = assigned
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(|mut a| {
            a.sort_unstable();
            a.into_iter().map(|i| folders[i]).collect()
        })
        .collect();
    if result.is_empty() {
        result.push(Vec::new());
    }
    result
}

/// Bodies of one batch, in planned order, plus UIDs the source no longer has.
struct Fetched<'p> {
    items: Vec<(&'p MessageCopy, Vec<u8>)>,
    missing: Vec<u32>,
    /// This batch's share of the body budget, held until it is appended.
    budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

async fn fetch_batch<'p>(
    reader: &mut Reader,
    batch: &[&'p MessageCopy],
) -> Result<Fetched<'p>, ImapError> {
    let uids: Vec<u32> = batch.iter().map(|m| m.uid).collect();
    let mut bodies: HashMap<u32, Vec<u8>> = HashMap::with_capacity(batch.len());
    let outcome = reader
        .fetch_bodies(&uids, |uid, body| {
            bodies.insert(uid, body);
        })
        .await?;
    let items = batch
        .iter()
        .filter_map(|m| bodies.remove(&m.uid).map(|b| (*m, b)))
        .collect();
    Ok(Fetched {
        items,
        missing: outcome.missing,
        budget: None,
    })
}

/// Splits a folder's messages into batches by count and planned size.
fn make_batches<'a, 'p>(messages: &'a [&'p MessageCopy]) -> Vec<&'a [&'p MessageCopy]> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        if i > start && (i - start >= BATCH_MESSAGES || bytes + m.size > BATCH_BYTES) {
            batches.push(&messages[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += m.size;
    }
    if start < messages.len() {
        batches.push(&messages[start..]);
    }
    batches
}

/// Identity keys of the selected destination folder's messages with UID ≥ `from`.
async fn read_keys_since(writer: &mut Writer, from: u32) -> Result<Vec<IdentityKey>, ImapError> {
    let mut keys = Vec::new();
    writer
        .fetch_metadata_since(from, |m| keys.push(parse_headers(&m.header).key))
        .await?;
    Ok(keys)
}

/// Removes from `copies` one planned message per key found on the destination (lowest
/// UIDs first: an interrupted run copied in ascending order). Returns how many.
fn subtract_present(copies: &mut Vec<&MessageCopy>, found: Vec<IdentityKey>) -> u64 {
    let mut counts: HashMap<IdentityKey, u64> = HashMap::new();
    for k in found {
        *counts.entry(k).or_insert(0) += 1;
    }
    let before = copies.len();
    copies.retain(|m| match counts.get_mut(&m.key) {
        Some(n) if *n > 0 => {
            *n -= 1;
            false
        }
        _ => true,
    });
    (before - copies.len()) as u64
}

/// Which flags the destination folder stores (from SELECT's PERMANENTFLAGS).
pub(crate) struct FlagFilter {
    permanent: Vec<String>,
    new_keywords: bool,
}

impl FlagFilter {
    pub(crate) fn new(permanent: &[String], new_keywords: bool) -> FlagFilter {
        FlagFilter {
            permanent: permanent.to_vec(),
            new_keywords,
        }
    }

    /// System flags always pass (except `\Recent`); keywords only when the folder can
    /// store them.
    pub(crate) fn allows(&self, flag: &str) -> bool {
        if flag.eq_ignore_ascii_case("\\Recent") {
            return false;
        }
        flag.starts_with('\\')
            || self.new_keywords
            || self.permanent.iter().any(|p| p.eq_ignore_ascii_case(flag))
    }

    pub(crate) fn filter(&self, flags: &[String]) -> Vec<String> {
        flags.iter().filter(|f| self.allows(f)).cloned().collect()
    }

    /// Every flag but `\Recent`: what an APPEND tries first (a server may store keywords it
    /// does not announce).
    pub(crate) fn optimistic(&self, flags: &[String]) -> Vec<String> {
        flags
            .iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .cloned()
            .collect()
    }
}

fn has_bare_lf(body: &[u8]) -> bool {
    body.iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || body[i - 1] != b'\r'))
}

fn to_crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    for (i, b) in body.iter().enumerate() {
        if *b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(*b);
    }
    out
}

impl crate::diagnostics::HasHint for ApplyError {
    fn hint(&self) -> Option<String> {
        match self {
            ApplyError::Imap { .. } | ApplyError::LockFile { .. } => None,
            // Transparent: the chain goes on with the ledger's own cause, so its hint is
            // answered here.
            ApplyError::Ledger(e) => crate::diagnostics::HasHint::hint(e),
            ApplyError::StaleSource { .. } => Some("run mailshift plan again".into()),
            ApplyError::RewritesHeaders { .. } => Some(
                "this server changes Message-ID, Date, From, To, Cc or Subject on APPEND; \
                 report it with `-vv` output, and do not re-run apply on this account"
                    .into(),
            ),
            ApplyError::Locked { .. } => {
                Some("wait for it to finish; two applies on one account would race".into())
            }
            ApplyError::OverQuota { .. } => Some(
                "free space in the destination account or raise its quota, then run apply again: what arrived stays, the rest is copied then"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(uid: u32, key: u8, size: u64) -> MessageCopy {
        MessageCopy {
            source: 0,
            uid,
            size,
            flags: vec![],
            internal_date: None,
            key: IdentityKey([key; 32]),
            date: String::new(),
            from: String::new(),
            subject: String::new(),
            ledger_base: 0,
        }
    }

    #[test]
    fn subtract_removes_one_per_found_key_lowest_uid_first() {
        let a = [copy(1, 1, 10), copy(2, 1, 10), copy(3, 2, 10)];
        let mut v: Vec<&MessageCopy> = a.iter().collect();
        let removed = subtract_present(&mut v, vec![IdentityKey([1; 32]), IdentityKey([9; 32])]);
        assert_eq!(removed, 1);
        assert_eq!(v.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![2, 3]);
    }

    fn folder(name: &str, copies: Vec<MessageCopy>) -> FolderPlan {
        FolderPlan {
            destination: name.into(),
            destination_wire: name.into(),
            action: FolderAction::Exists,
            destination_status: None,
            sources: vec![],
            rule: crate::plan::RuleKind::Default,
            special_use: None,
            merged: false,
            renamed_delimiter: false,
            subscribe: false,
            case_match: false,
            copy: copies,
            already_present: 0,
            moved: 0,
            skipped: vec![],
            ambiguous: 0,
            ambiguous_keys: vec![],
            flag_updates: vec![],
        }
    }

    #[test]
    fn lanes_balance_by_size_and_keep_plan_order() {
        let big = folder("big", (0..10).map(|i| copy(i, 0, 1_000_000)).collect());
        let a = folder("a", (0..3).map(|i| copy(i, 0, 1_000_000)).collect());
        let b = folder("b", (0..4).map(|i| copy(i, 0, 1_000_000)).collect());
        let c = folder("c", (0..2).map(|i| copy(i, 0, 1_000_000)).collect());
        let all = [&a, &big, &b, &c];
        let lanes = split_into_lanes(&all, 2);
        let names: Vec<Vec<&str>> = lanes
            .iter()
            .map(|l| l.iter().map(|f| f.destination.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["big"], vec!["a", "b", "c"]]);
        assert_eq!(split_into_lanes(&all, 1)[0].len(), 4);
        assert_eq!(split_into_lanes(&[], 3), vec![Vec::<&FolderPlan>::new()]);
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let many: Vec<MessageCopy> = (0..450).map(|i| copy(i, 0, 100)).collect();
        let refs: Vec<&MessageCopy> = many.iter().collect();
        let b = make_batches(&refs);
        assert_eq!(
            b.iter().map(|x| x.len()).collect::<Vec<_>>(),
            vec![200, 200, 50]
        );
        let big: Vec<MessageCopy> = (0..3).map(|i| copy(i, 0, 6 * 1024 * 1024)).collect();
        let refs: Vec<&MessageCopy> = big.iter().collect();
        assert_eq!(make_batches(&refs).len(), 3);
        assert!(make_batches(&[]).is_empty());
    }

    #[test]
    fn keywords_pass_only_when_storable() {
        let f = FlagFilter::new(&["\\Seen".into(), "$Label1".into()], false);
        let flags: Vec<String> = ["\\Seen", "\\Recent", "$Label1", "custom", "\\Flagged"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(f.filter(&flags), vec!["\\Seen", "$Label1", "\\Flagged"]);
        let open = FlagFilter::new(&[], true);
        assert_eq!(
            open.filter(&flags),
            vec!["\\Seen", "$Label1", "custom", "\\Flagged"]
        );
        // The first APPEND tries every keyword (servers may under-report); only a refusal
        // falls back to `filter`.
        assert_eq!(
            f.optimistic(&flags),
            vec!["\\Seen", "$Label1", "custom", "\\Flagged"]
        );
    }

    #[test]
    fn bare_lf_detection_and_fix() {
        assert!(has_bare_lf(b"a\nb"));
        assert!(!has_bare_lf(b"a\r\nb\r\n"));
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn a_lock_is_exclusive_per_destination_account() {
        let user = format!("lock-test-{}", std::process::id());
        let first = DestinationLock::acquire("host.example", &user).unwrap();
        let err = DestinationLock::acquire("host.example", &user)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("another mailshift apply is running"),
            "{err}"
        );
        drop(first);
        assert!(DestinationLock::acquire("host.example", &user).is_ok());
    }
}
