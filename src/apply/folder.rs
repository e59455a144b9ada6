//! Copying one destination folder: select it, subtract what arrived since the plan, add
//! flags, then fetch batches from each of its source folders while the previous batch is
//! appended.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::imap::{ImapError, Reader};
use crate::model::WireName;
use crate::plan::{AccountPlan, FolderPlan, MessageCopy};
use crate::report::VanishedMessage;

use super::batch::{append_fetched, fetch_batch, make_batches, Fetched};
use super::flags::FlagFilter;
use super::lanes::Lane;
use super::reconcile::{read_keys_since, subtract_present};
use super::{ApplyError, Ctx, BODY_BUDGET_KIB, RECONNECTS};

impl Ctx<'_> {
    /// Checks that every source folder the plan reads still has the planned UIDVALIDITY,
    /// before anything is written: one pipelined STATUS round for all of them. A folder
    /// STATUS says nothing about, or a lost connection, falls back to EXAMINE per folder
    /// ([`Ctx::open_source`], with its reconnects). The connection stays open for the
    /// copy; `None` when the plan reads no source folder.
    pub(super) async fn check_sources(
        &self,
        plan: &AccountPlan,
    ) -> Result<Option<Reader>, ApplyError> {
        let mut wanted: Vec<(&FolderPlan, usize)> = Vec::new();
        for folder in plan.folders.iter().filter(|f| !f.copy.is_empty()) {
            let sources: BTreeSet<usize> = folder.copy.iter().map(|m| m.source).collect();
            wanted.extend(sources.into_iter().map(|i| (folder, i)));
        }
        if wanted.is_empty() {
            return Ok(None);
        }
        let mut reader = None;
        let mut unchecked = wanted.clone();
        if let Ok(mut r) = self.connect_source().await {
            let mut names: Vec<WireName> = wanted
                .iter()
                .map(|(f, i)| f.sources[*i].wire_name.clone())
                .collect();
            names.sort();
            names.dedup();
            match r.statuses(&names).await {
                Ok(found) => {
                    unchecked.clear();
                    for (folder, index) in wanted {
                        let source = &folder.sources[index];
                        let now = found.get(&source.wire_name).and_then(|s| s.uidvalidity);
                        match (now, source.status) {
                            (Some(now), Some(planned)) if now != planned.uidvalidity => {
                                return Err(ApplyError::StaleSource {
                                    folder: source.name.clone(),
                                    planned: planned.uidvalidity,
                                    now,
                                });
                            }
                            (Some(_), _) => {}
                            (None, _) => unchecked.push((folder, index)),
                        }
                    }
                    reader = Some(r);
                }
                Err(e) if !e.kills_session() => reader = Some(r),
                Err(_) => {}
            }
        }
        for (folder, index) in unchecked {
            self.open_source(folder, index, &mut reader).await?;
        }
        Ok(reader)
    }

    /// (Re)opens the source folder read-only and checks it is the one the plan saw.
    pub(super) async fn open_source(
        &self,
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
                match self.connect_source().await {
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
}

impl Lane<'_, '_> {
    /// Reconnects the destination after a dropped connection and selects `folder` again.
    pub(super) async fn reconnect_destination(
        &mut self,
        folder: &FolderPlan,
        error: ImapError,
    ) -> Result<crate::imap::SelectInfo, ApplyError> {
        let mut last = error;
        for attempt in 1..=RECONNECTS {
            tracing::warn!(
                account = %self.ctx.account.source_user,
                "destination connection lost ({last}); reconnecting ({attempt}/{RECONNECTS})"
            );
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            match self.ctx.connect_destination().await {
                Ok(mut w) => match w.select(&folder.destination_wire).await {
                    Ok(sel) => {
                        self.writer = w;
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

    pub(super) async fn copy_folder(&mut self, folder: &FolderPlan) -> Result<(), ApplyError> {
        let sel = match self.writer.select(&folder.destination_wire).await {
            Ok(sel) => sel,
            Err(e) if e.kills_session() => self.reconnect_destination(folder, e).await?,
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
            let found = read_keys_since(&mut self.writer, from)
                .await
                .map_err(ApplyError::destination)?;
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
        let ctx = self.ctx;
        for source_index in sources {
            if ctx.cancelled() {
                return Ok(());
            }
            let messages = &by_source[&source_index];
            ctx.open_source(folder, source_index, &mut self.reader)
                .await?;
            let batches = make_batches(messages);
            // Pipeline: fetch batch i+1 from the source while batch i is appended.
            let mut fetched: Option<Fetched> = None;
            let mut next = 0;
            // Consecutive lost connections while fetching the same batch: a source that
            // drops every connection mid-FETCH must fail the account, not loop forever.
            let mut fetch_failures = 0;
            loop {
                let to_fetch = if ctx.cancelled() {
                    None
                } else {
                    batches.get(next).copied()
                };
                if to_fetch.is_none() && fetched.is_none() {
                    break;
                }
                let reader = &mut self.reader;
                let writer = &mut self.writer;
                let fetch = async {
                    match to_fetch {
                        Some(batch) => {
                            // Wait for room in the body budget before reading the bodies.
                            let kib: u64 = batch.iter().map(|m| m.size.div_ceil(1024)).sum();
                            let kib = kib.clamp(1, BODY_BUDGET_KIB as u64) as u32;
                            let permit = Arc::clone(&ctx.exec.body_budget)
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
                            let result = append_fetched(writer, folder, &f, &allowed).await;
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
                        .finish_append(folder, batch, result, &allowed, next_uid)
                        .await?;
                }
                match fetch_result {
                    None => {}
                    Some(Ok(f)) => {
                        for uid in &f.missing {
                            self.tally.report.vanished.push(VanishedMessage {
                                source_folder: folder.sources[source_index].name.clone(),
                                uid: *uid,
                            });
                        }
                        self.tally.progress.advance(f.missing.len() as u64, 0);
                        fetched = Some(f);
                        next += 1;
                        fetch_failures = 0;
                    }
                    Some(Err(e)) if e.kills_session() && fetch_failures < RECONNECTS => {
                        fetch_failures += 1;
                        tracing::warn!(account = %ctx.account.source_user, "source connection lost ({e}); reconnecting ({fetch_failures}/{RECONNECTS})");
                        self.reader = None;
                        ctx.open_source(folder, source_index, &mut self.reader)
                            .await?;
                        // The same batch is fetched again on the next turn.
                    }
                    Some(Err(e)) => return Err(ApplyError::source(e)),
                }
            }
        }
        Ok(())
    }
}
