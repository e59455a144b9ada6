//! Copying one destination folder: select it, subtract what arrived since the plan, add
//! flags, then, per source folder, fetch batches from the source while the previous batch
//! is appended. Batches adapt to the link ([`Batcher`]); progress is counted per message:
//! bodies read before a cut are kept, and an APPEND that was cut is looked up on the
//! destination before anything of it is sent again.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::imap::{AppendResult, BodiesOutcome, ImapError, SessionError, SourceSession};
use crate::model::{Side, WireName};
use crate::plan::{AccountPlan, FolderPlan, MessageCopy, SourceFolder};
use crate::report::VanishedMessage;

use super::batch::{append_items, Batcher, Ready};
use super::flags::FlagFilter;
use super::lanes::Lane;
use super::reconcile::{read_keys_since, select_checked, subtract_present};
use super::{ApplyError, Ctx, BODY_BUDGET_KIB};

/// Attempts at one message sent alone before it is given up (recorded as failed, with the
/// reason) so that the rest of the folder goes on.
const ALONE_ATTEMPTS: u32 = 10;

impl Ctx<'_> {
    /// Checks that every source folder the plan reads still has the planned UIDVALIDITY,
    /// before anything is written: one pipelined STATUS round for all of them (retried by
    /// the session). A folder STATUS says nothing about is opened with EXAMINE
    /// ([`Ctx::open_source`]).
    pub(super) async fn check_sources(
        &self,
        plan: &AccountPlan,
        src: &mut SourceSession,
    ) -> Result<(), ApplyError> {
        let mut wanted: Vec<(&FolderPlan, usize)> = Vec::new();
        for folder in plan.folders.iter().filter(|f| !f.copy.is_empty()) {
            let sources: BTreeSet<usize> = folder.copy.iter().map(|m| m.source).collect();
            wanted.extend(sources.into_iter().map(|i| (folder, i)));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut names: Vec<WireName> = wanted
            .iter()
            .map(|(f, i)| f.sources[*i].wire_name.clone())
            .collect();
        names.sort();
        names.dedup();
        let found = src.statuses(&names).await.map_err(ApplyError::src)?;
        for (folder, index) in wanted {
            let source = &folder.sources[index];
            match (
                found.get(&source.wire_name).and_then(|s| s.uidvalidity),
                source.status,
            ) {
                (Some(now), Some(planned)) if now != planned.uidvalidity => {
                    return Err(ApplyError::StaleSource {
                        folder: source.name.clone(),
                        planned: planned.uidvalidity,
                        now,
                    });
                }
                (Some(_), _) => {}
                (None, _) => self.open_source(folder, index, src).await?,
            }
        }
        Ok(())
    }

    /// Opens the source folder read-only (retried) and checks it is the one the plan saw.
    pub(super) async fn open_source(
        &self,
        folder: &FolderPlan,
        source_index: usize,
        src: &mut SourceSession,
    ) -> Result<(), ApplyError> {
        let source = &folder.sources[source_index];
        let status = src
            .examine(&source.wire_name)
            .await
            .map_err(ApplyError::src)?;
        same_source_folder(source, status.uidvalidity)?;
        Ok(())
    }
}

/// Stops the account when the source folder is not the one the plan saw (its UIDVALIDITY
/// changed: UIDs mean other messages now).
fn same_source_folder(source: &SourceFolder, uidvalidity: u32) -> Result<(), ApplyError> {
    match source.status {
        Some(planned) if planned.uidvalidity != uidvalidity => Err(ApplyError::StaleSource {
            folder: source.name.clone(),
            planned: planned.uidvalidity,
            now: uidvalidity,
        }),
        _ => Ok(()),
    }
}

/// The first batch of a folder, read in the same round trip as its EXAMINE: how the
/// FETCH ended, the bodies that came, their share of the body budget.
pub(super) type Prefetched = (
    Result<BodiesOutcome, ImapError>,
    HashMap<u32, Vec<u8>>,
    tokio::sync::OwnedSemaphorePermit,
);

impl Ctx<'_> {
    /// Opens the source folder read-only and reads `batch` (its first messages) in the
    /// same round trip; checks it is the folder the plan saw before anything read is
    /// used. `None` when nothing was read (an empty batch, or cancelled while pacing).
    pub(super) async fn open_source_and_fetch(
        &self,
        folder: &FolderPlan,
        source_index: usize,
        batch: &[&MessageCopy],
        src: &mut SourceSession,
    ) -> Result<Option<Prefetched>, ApplyError> {
        let bytes: u64 = batch.iter().map(|m| m.size).sum();
        if batch.is_empty() || !self.pace(Side::Source, batch.len(), bytes).await {
            self.open_source(folder, source_index, src).await?;
            return Ok(None);
        }
        let kib: u64 = batch.iter().map(|m| m.size.div_ceil(1024)).sum();
        let kib = kib.clamp(1, BODY_BUDGET_KIB as u64) as u32;
        let permit = Arc::clone(&self.exec.body_budget)
            .acquire_many_owned(kib)
            .await
            .expect("never closed");
        let source = &folder.sources[source_index];
        let uids: Vec<u32> = batch.iter().map(|m| m.uid).collect();
        let mut got: HashMap<u32, Vec<u8>> = HashMap::with_capacity(uids.len());
        let largest = batch.iter().map(|m| m.size).max().unwrap_or(0);
        let (status, fetched) = src
            .examine_and_fetch(&source.wire_name, &uids, largest, |uid, body| {
                got.insert(uid, body);
            })
            .await
            .map_err(ApplyError::src)?;
        same_source_folder(source, status.uidvalidity)?;
        Ok(Some((fetched, got, permit)))
    }
}

/// The lane's next folder, opened while the last batch of the folder before it was
/// appended: its SELECT written behind that APPEND, its first source folder examined and
/// its first batch read meanwhile on the source connection.
pub(super) struct Ahead {
    pub(super) wire: WireName,
    /// The SELECT behind the APPEND went through (the session has it selected).
    pub(super) selected: bool,
    /// The first source folder (index), the UIDs asked for, what came.
    pub(super) source: Option<AheadSource>,
}

/// A next folder's first source folder (index) opened ahead, the UIDs asked for, what came.
pub(super) type AheadSource = (usize, Vec<u32>, Result<Option<Prefetched>, ApplyError>);

/// What the source connection did beside an APPEND.
enum SourceStep {
    Nothing,
    Batch(
        Result<Result<BodiesOutcome, ImapError>, SessionError>,
        HashMap<u32, Vec<u8>>,
        tokio::sync::OwnedSemaphorePermit,
    ),
    Ahead(usize, Vec<u32>, Result<Option<Prefetched>, ApplyError>),
}

/// The first batch of `folder`'s source folder `index`: its first messages in plan order,
/// as many as a batch holds, stopping before one over `stream-above`.
fn first_batch<'p>(ctx: &Ctx<'_>, folder: &'p FolderPlan, index: usize) -> Vec<&'p MessageCopy> {
    if ctx.cancelled() {
        return Vec::new();
    }
    let stream_above = ctx.settings().limits.stream_above;
    let small: Vec<&MessageCopy> = folder
        .copy
        .iter()
        .filter(|m| m.source == index)
        .take_while(|m| m.size <= stream_above)
        .collect();
    let n = ctx
        .paced(Batcher::default(), Side::Source)
        .take(small.iter().map(|m| m.size));
    small.into_iter().take(n).collect()
}

/// The copy of one source folder's messages into the selected destination folder.
pub(super) struct SourceRun<'p, 'a> {
    pub(super) folder: &'p FolderPlan,
    pub(super) source_index: usize,
    pub(super) allowed: &'a FlagFilter,
    /// Not fetched yet, in plan order.
    pub(super) queue: VecDeque<&'p MessageCopy>,
    /// Fetched, not appended yet.
    pub(super) ready: VecDeque<Ready<'p>>,
    pub(super) fetch_size: Batcher,
    pub(super) append_size: Batcher,
    /// Failed attempts at a message sent alone, per source UID.
    pub(super) alone: HashMap<u32, u32>,
    /// The destination's UIDNEXT before the batch in flight: where to look for what of it
    /// arrived when its APPEND is cut.
    pub(super) next_uid: Option<u32>,
    /// The lane's last source folder: its last batch gets the key stability check.
    pub(super) last: bool,
    /// The lane's next folder, when this is the folder's last source folder: opened
    /// beside this folder's last APPEND.
    pub(super) next: Option<&'p FolderPlan>,
}

impl Lane<'_, '_> {
    pub(super) async fn copy_folder<'p>(
        &mut self,
        folder: &'p FolderPlan,
        next: Option<&'p FolderPlan>,
    ) -> Result<(), ApplyError> {
        // SELECT on the destination (behind a key check of the previous folder still due)
        // while the first source folder is opened and its first batch read (EXAMINE + UID
        // FETCH pipelined): the folder's first round trip does all of it. When the folder
        // was opened ahead (beside the last APPEND of the one before), what that did is
        // used instead.
        let first_source = folder.copy.iter().map(|m| m.source).min();
        let ctx = self.ctx;
        let (ahead_selected, ahead_source) = match self.ahead.take() {
            Some(a) if a.wire == folder.destination_wire => (
                a.selected,
                a.source
                    .filter(|(index, _, _)| Some(*index) == first_source),
            ),
            _ => (false, None),
        };
        // Still selected (no step since selected another folder), and no key check of the
        // folder before is left to read there.
        let ahead_selected = ahead_selected
            && self.pending_check.is_none()
            && self.dst.folder() == Some(&folder.destination_wire)
            && self.dst.last_select().is_some();
        let first_batch: Vec<&MessageCopy> = match (&ahead_source, first_source) {
            (Some((index, uids, _)), _) => {
                let uids: BTreeSet<u32> = uids.iter().copied().collect();
                folder
                    .copy
                    .iter()
                    .filter(|m| m.source == *index && uids.contains(&m.uid))
                    .collect()
            }
            (None, Some(index)) => first_batch(&ctx, folder, index),
            (None, None) => Vec::new(),
        };
        let pending = self.pending_check.take();
        let dst = &mut self.dst;
        let src = &mut self.src;
        let (sel, opened) = tokio::join!(
            async {
                match dst.last_select().filter(|_| ahead_selected) {
                    Some(sel) => Ok(sel.clone()),
                    None => select_checked(dst, pending, &folder.destination_wire).await,
                }
            },
            async {
                if let Some((_, _, result)) = ahead_source {
                    return result.map(Some);
                }
                match first_source {
                    Some(index) => ctx
                        .open_source_and_fetch(folder, index, &first_batch, src)
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            }
        );
        let sel = sel?;
        // The source folder open now, and the first batch read with it (if any).
        let (mut opened, mut prefetched) = match opened? {
            Some(fetched) => (first_source, fetched),
            None => (None, None),
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
            let found = read_keys_since(&mut self.dst, &folder.destination_wire, from)
                .await
                .map_err(ApplyError::dst)?;
            let removed = subtract_present(&mut remaining, found);
            if removed > 0 {
                tracing::info!(
                    account = %self.ctx.account.source_user,
                    "`{}`: {removed} planned messages are on the destination already (another run copied them)",
                    folder.destination
                );
                self.tally.report.already_present += removed;
                self.tally.progress.advance(removed, 0);
            }
        }
        let allowed = FlagFilter::new(&sel.permanent_flags, sel.new_keywords_allowed);
        if !folder.flag_updates.is_empty() {
            self.add_flags(folder, &sel, &allowed).await?;
        }
        let mut next_uid = sel.status.uidnext;

        // One source folder at a time: the reader has one folder open.
        let mut by_source: HashMap<usize, Vec<&MessageCopy>> = HashMap::new();
        for m in remaining {
            by_source.entry(m.source).or_default().push(m);
        }
        let mut sources: Vec<usize> = by_source.keys().copied().collect();
        sources.sort_unstable();
        let last_source = sources.last().copied();
        for source_index in sources {
            if self.ctx.cancelled() {
                return Ok(());
            }
            if opened.take() != Some(source_index) {
                self.ctx
                    .open_source(folder, source_index, &mut self.src)
                    .await?;
            }
            self.checks.last = false;
            let last_run = self.checks.last_folder && last_source == Some(source_index);
            let mut run = SourceRun {
                folder,
                source_index,
                allowed: &allowed,
                queue: by_source[&source_index].iter().copied().collect(),
                ready: VecDeque::new(),
                fetch_size: Batcher::default(),
                append_size: Batcher::default(),
                alone: HashMap::new(),
                next_uid,
                last: last_run,
                next: next.filter(|_| last_source == Some(source_index)),
            };
            if Some(source_index) == first_source {
                if let Some((result, got, permit)) = prefetched.take() {
                    // The first batch came with the EXAMINE: of it, what is still to copy
                    // (the re-read above may have found some of it there already).
                    let queued: BTreeSet<u32> = run.queue.iter().map(|m| m.uid).collect();
                    let asked: Vec<&MessageCopy> = first_batch
                        .iter()
                        .copied()
                        .filter(|m| queued.contains(&m.uid))
                        .collect();
                    let taken: BTreeSet<u32> = asked.iter().map(|m| m.uid).collect();
                    run.queue.retain(|m| !taken.contains(&m.uid));
                    self.settle_fetch(&mut run, asked, Ok(result), got, permit)
                        .await?;
                }
            }
            self.copy_source(&mut run).await?;
            next_uid = run.next_uid;
        }
        Ok(())
    }

    /// The batch loop of one source folder: fetch batch i+1 while batch i is appended.
    async fn copy_source<'p>(&mut self, run: &mut SourceRun<'p, '_>) -> Result<(), ApplyError> {
        let ctx = self.ctx;
        loop {
            let n = ctx
                .paced(run.append_size, Side::Destination)
                .take(run.ready.iter().map(|r| r.body.len() as u64));
            let mut to_append: Vec<Ready<'p>> = run.ready.drain(..n).collect();
            self.checks.last = run.last && run.ready.is_empty() && run.queue.is_empty();
            // Fetch only when everything fetched is on its way (bounded memory). A batch
            // stops before a message over `stream-above`: that one goes alone, streamed.
            let stream_above = ctx.settings().limits.stream_above;
            let to_fetch: Vec<&'p MessageCopy> = if ctx.cancelled() || !run.ready.is_empty() {
                Vec::new()
            } else {
                let small = run
                    .queue
                    .iter()
                    .take_while(|m| m.size <= stream_above)
                    .map(|m| m.size);
                let n = ctx.paced(run.fetch_size, Side::Source).take(small);
                run.queue.drain(..n).collect()
            };
            if to_append.is_empty() && to_fetch.is_empty() {
                if !ctx.cancelled() && run.ready.is_empty() {
                    if let Some(m) = run.queue.pop_front() {
                        self.flush_check().await?;
                        self.copy_big(run, m).await?;
                        continue;
                    }
                }
                return Ok(());
            }
            // A key check due from the last batch goes before anything else is appended
            // (else it waits for the next folder's SELECT, or the lane's end).
            if !to_append.is_empty() {
                self.flush_check().await?;
            }
            // The folder's last batch: the lane's next folder is opened beside it (its
            // first batch read, and its SELECT written behind this APPEND unless a key
            // check is due for this batch: that one reads this folder first).
            let last_of_folder = !to_append.is_empty()
                && to_fetch.is_empty()
                && run.ready.is_empty()
                && run.queue.is_empty();
            let next = run
                .next
                .filter(|_| last_of_folder && !ctx.cancelled() && self.ahead.is_none());
            let select_next = next
                .filter(|_| !self.checks.would_be_due() && self.pending_check.is_none())
                .map(|f| f.destination_wire.clone());
            let open_next = next.and_then(|f| {
                let index = f.copy.iter().map(|m| m.source).min()?;
                Some((f, index, first_batch(&ctx, f, index)))
            });
            let refused = self.refused_keywords();
            let (src, dst) = (&mut self.src, &mut self.dst);
            let (wire, allowed) = (&run.folder.destination_wire, run.allowed);
            let fetch = async {
                if let Some((f, index, batch)) = &open_next {
                    let uids = batch.iter().map(|m| m.uid).collect();
                    let result = ctx.open_source_and_fetch(f, *index, batch, src).await;
                    return SourceStep::Ahead(*index, uids, result);
                }
                if to_fetch.is_empty() {
                    return SourceStep::Nothing;
                }
                let bytes: u64 = to_fetch.iter().map(|m| m.size).sum();
                if !ctx.pace(Side::Source, to_fetch.len(), bytes).await {
                    return SourceStep::Nothing; // cancelled while pacing: these stay pending
                }
                // Wait for room in the body budget before reading the bodies.
                let kib: u64 = to_fetch.iter().map(|m| m.size.div_ceil(1024)).sum();
                let kib = kib.clamp(1, BODY_BUDGET_KIB as u64) as u32;
                let permit = Arc::clone(&ctx.exec.body_budget)
                    .acquire_many_owned(kib)
                    .await
                    .expect("never closed");
                let uids: Vec<u32> = to_fetch.iter().map(|m| m.uid).collect();
                let mut got: HashMap<u32, Vec<u8>> = HashMap::with_capacity(uids.len());
                let largest = to_fetch.iter().map(|m| m.size).max().unwrap_or(0);
                let result = src
                    .fetch_bodies(&uids, largest, |uid, body| {
                        got.insert(uid, body);
                    })
                    .await;
                SourceStep::Batch(result, got, permit)
            };
            // The batch's share of the body budget is released as soon as its bodies are
            // sent (inside the join), so that the fetch beside it, waiting for budget,
            // never waits on its own lane.
            let permits: Vec<_> = to_append
                .iter_mut()
                .filter_map(|r| r.permit.take())
                .collect();
            let append = async {
                if to_append.is_empty() {
                    return None;
                }
                let bytes: u64 = to_append.iter().map(|r| r.body.len() as u64).sum();
                if !ctx.pace(Side::Destination, to_append.len(), bytes).await {
                    return None; // cancelled while pacing: these stay pending
                }
                let items = append_items(&to_append, allowed, &refused);
                let result = match &select_next {
                    Some(next) => dst.append_batch_then_select(wire, &items, next).await,
                    None => dst
                        .append_batch(wire, &items)
                        .await
                        .map(|r| r.map(|results| (results, false))),
                };
                drop(permits);
                Some(result)
            };
            let (fetched, appended) = tokio::join!(fetch, append);
            if let Some(f) = next {
                if let Some(Ok(Ok((_, true)))) = &appended {
                    self.ahead_mut(f).selected = true;
                }
                if let SourceStep::Ahead(..) = fetched {
                    // Filled below.
                    self.ahead_mut(f);
                }
            }
            if let Some(result) = appended {
                let result = result.map(|r| r.map(|(results, _)| results));
                self.settle_append(run, to_append, result).await?;
            }
            match fetched {
                SourceStep::Nothing => {}
                SourceStep::Batch(result, got, permit) => {
                    self.settle_fetch(run, to_fetch, result, got, permit)
                        .await?;
                }
                SourceStep::Ahead(index, uids, result) => {
                    if let Some(a) = self.ahead.as_mut() {
                        a.source = Some((index, uids, result));
                    }
                }
            }
        }
    }

    /// The record of the next folder opened ahead (made when missing).
    fn ahead_mut(&mut self, next: &FolderPlan) -> &mut Ahead {
        self.ahead.get_or_insert_with(|| Ahead {
            wire: next.destination_wire.clone(),
            selected: false,
            source: None,
        })
    }

    /// Settles an APPEND: per message when answered; after a cut, what arrived is counted,
    /// the rest goes back (in a smaller batch) and a message that failed alone too often is
    /// given up.
    async fn settle_append<'p>(
        &mut self,
        run: &mut SourceRun<'p, '_>,
        mut batch: Vec<Ready<'p>>,
        result: Result<Result<Vec<AppendResult>, ImapError>, SessionError>,
    ) -> Result<(), ApplyError> {
        let folder = run.folder;
        match result.map_err(ApplyError::dst)? {
            Ok(results) => {
                run.next_uid = self
                    .record_results(folder, batch, results, run.allowed, &mut run.ready)
                    .await?;
                run.append_size.grow();
                Ok(())
            }
            Err(err) => {
                let alone = batch.len() == 1;
                let words = err.to_string();
                self.dst
                    .fail(err, "destination: APPEND")
                    .await
                    .map_err(ApplyError::dst)?;
                // The in-flight messages may have arrived: look before sending again.
                let arrived = self
                    .drop_arrived(
                        &folder.destination_wire,
                        &mut batch,
                        run.next_uid.unwrap_or(1),
                    )
                    .await?;
                if let Some(sel) = self.dst.last_select() {
                    run.next_uid = sel.status.uidnext;
                }
                if arrived > 0 {
                    self.src.backoff.progress();
                    self.dst.backoff.progress();
                }
                run.append_size.shrink();
                if alone && arrived == 0 {
                    let m = batch[0].copy;
                    if self.given_up(run, m, &words, "appending it to the destination") {
                        batch.clear();
                    }
                }
                for r in batch.into_iter().rev() {
                    run.ready.push_front(r);
                }
                Ok(())
            }
        }
    }

    /// Settles a FETCH: bodies that arrived are kept (also before a cut), UIDs the source
    /// no longer has are `vanished`, the rest goes back (in a smaller batch).
    async fn settle_fetch<'p>(
        &mut self,
        run: &mut SourceRun<'p, '_>,
        asked: Vec<&'p MessageCopy>,
        result: Result<Result<BodiesOutcome, ImapError>, SessionError>,
        mut got: HashMap<u32, Vec<u8>>,
        mut permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(), ApplyError> {
        let mut rest: Vec<&'p MessageCopy> = Vec::new();
        let mut received_any = false;
        for m in asked {
            match got.remove(&m.uid) {
                Some(body) => {
                    received_any = true;
                    let kib = (body.len() as u64).div_ceil(1024).max(1) as usize;
                    let share = permit.split(kib.min(permit.num_permits()));
                    run.ready.push_back(Ready {
                        copy: m,
                        body,
                        permit: share,
                    });
                }
                None => rest.push(m),
            }
        }
        drop(permit);
        match result.map_err(ApplyError::src)? {
            Ok(outcome) => {
                // Only a FETCH that completed says a message is gone.
                let missing: std::collections::BTreeSet<u32> =
                    outcome.missing.into_iter().collect();
                let source_folder = &run.folder.sources[run.source_index].name;
                for m in rest {
                    if missing.contains(&m.uid) {
                        self.tally.report.vanished.push(VanishedMessage {
                            source_folder: source_folder.clone(),
                            uid: m.uid,
                        });
                        self.tally.progress.advance(1, 0);
                    } else {
                        run.queue.push_front(m);
                    }
                }
                self.src.backoff.progress();
                run.fetch_size.grow();
                Ok(())
            }
            Err(err) => {
                if received_any {
                    self.src.backoff.progress();
                }
                let alone = rest.len() == 1;
                if let ImapError::TooLarge { .. } | ImapError::Oversized { .. } = err {
                    // Which message is too big is known only when it is fetched alone.
                    if alone {
                        let m = rest[0];
                        let hint = crate::diagnostics::HasHint::hint(&err);
                        self.record_failed(run.folder, m, err.to_string(), hint);
                        return Ok(());
                    }
                    run.fetch_size.single();
                } else {
                    let words = err.to_string();
                    self.src
                        .fail(err, "source: UID FETCH BODY.PEEK[]")
                        .await
                        .map_err(ApplyError::src)?;
                    run.fetch_size.shrink();
                    if alone && self.given_up(run, rest[0], &words, "reading it from the source") {
                        return Ok(());
                    }
                }
                for m in rest.into_iter().rev() {
                    run.queue.push_front(m);
                }
                Ok(())
            }
        }
    }

    /// Counts a failed attempt at `m` sent alone; after [`ALONE_ATTEMPTS`] records it as
    /// failed (the folder goes on) and returns true.
    pub(super) fn given_up(
        &mut self,
        run: &mut SourceRun<'_, '_>,
        m: &MessageCopy,
        words: &str,
        doing: &str,
    ) -> bool {
        let attempts = run.alone.entry(m.uid).or_insert(0);
        *attempts += 1;
        if *attempts < ALONE_ATTEMPTS {
            return false;
        }
        let reason = format!(
            "the connection was lost {attempts} times while {doing}, with nothing else in flight (last: {words})"
        );
        let hint = format!(
            "the link or the server drops connections before this message ({}) gets through; \
             run apply again over a better link, or skip such messages with `max-size` in [messages]",
            crate::render::units::bytes(m.size)
        );
        self.record_failed(run.folder, m, reason, Some(hint));
        true
    }
}
