//! One batch of messages: fetched from the source in one `UID FETCH`, appended to the
//! destination in one (MULTI)APPEND, then settled message by message (copied or refused
//! with the server's words, bare LF and keyword fallbacks, quota).

use std::collections::HashMap;

use crate::identity::IdentityKey;
use crate::imap::{AppendItem, AppendResult, ImapError, Reader, Writer};
use crate::plan::{FolderPlan, MessageCopy};
use crate::report::FailedMessage;

use super::flags::FlagFilter;
use super::lanes::Lane;
use super::{ApplyError, RECONNECTS};

/// At most this many messages per APPEND batch.
const BATCH_MESSAGES: usize = 200;
/// At most about this many bytes per batch (a single bigger message still goes alone).
const BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// Bodies of one batch, in planned order, plus UIDs the source no longer has.
pub(super) struct Fetched<'p> {
    pub(super) items: Vec<(&'p MessageCopy, Vec<u8>)>,
    pub(super) missing: Vec<u32>,
    /// This batch's share of the body budget, held until it is appended.
    pub(super) budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

pub(super) async fn fetch_batch<'p>(
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
pub(super) fn make_batches<'a, 'p>(messages: &'a [&'p MessageCopy]) -> Vec<&'a [&'p MessageCopy]> {
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

/// Appends one fetched batch with the flags the folder can store.
pub(super) async fn append_fetched(
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

impl Lane<'_, '_> {
    /// Settles one appended batch. After a dropped connection it reconnects, finds out
    /// which of the batch's messages arrived, and appends only the rest (at most
    /// `RECONNECTS` times). Returns the destination's UIDNEXT after the batch.
    pub(super) async fn finish_append(
        &mut self,
        folder: &FolderPlan,
        mut batch: Fetched<'_>,
        mut result: Result<Vec<AppendResult>, ImapError>,
        allowed: &FlagFilter,
        mut next_uid: Option<u32>,
    ) -> Result<Option<u32>, ApplyError> {
        let mut attempts = 0;
        loop {
            match result {
                Ok(results) => return self.record_results(folder, &batch, results, allowed).await,
                Err(e) if e.kills_session() && attempts < RECONNECTS => {
                    attempts += 1;
                    let sel = self.reconnect_destination(folder, e).await?;
                    self.drop_arrived(&mut batch, next_uid.unwrap_or(1)).await?;
                    next_uid = sel.status.uidnext;
                    result = append_fetched(&mut self.writer, folder, &batch, allowed).await;
                }
                Err(e) => return Err(ApplyError::destination(e)),
            }
        }
    }

    /// Counts each message as copied or failed (retrying a refused bare-LF message with
    /// CRLF when `fix-bare-lf` is on), checks the keys stored, and returns UIDNEXT.
    async fn record_results(
        &mut self,
        folder: &FolderPlan,
        batch: &Fetched<'_>,
        results: Vec<AppendResult>,
        allowed: &FlagFilter,
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
                Err(words) => match self.retry_without_keywords(folder, m, body, allowed).await {
                    Some(Ok(uid)) => {
                        dropped_keywords = true;
                        self.warn_dropped_keywords(m, allowed);
                        Ok((uid, false))
                    }
                    _ => match self.retry_with_crlf(folder, m, body, allowed).await {
                        Some(Ok(uid)) => {
                            dropped_keywords =
                                allowed.filter(&m.flags) != allowed.optimistic(&m.flags);
                            if dropped_keywords {
                                self.warn_dropped_keywords(m, allowed);
                            }
                            Ok((uid, true))
                        }
                        _ => Err(words),
                    },
                },
            };
            let tally = &mut self.tally;
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
                        account = %self.ctx.account.source_user,
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
        self.tally.record_delivered(delivered)?;
        if let Some(words) = over_quota {
            return Err(ApplyError::OverQuota {
                folder: folder.destination.clone(),
                words,
            });
        }
        self.verify_keys(folder, &appended).await?;
        if uids_known {
            if let Some(uid) = appended.iter().map(|(uid, _)| *uid).max() {
                return Ok(Some(uid + 1));
            }
        }
        // No APPENDUID (no UIDPLUS): ask for UIDNEXT, so that a dropped connection later
        // re-reads exactly what the next batch added.
        match self.writer.select(&folder.destination_wire).await {
            Ok(sel) => Ok(sel.status.uidnext),
            Err(e) if e.kills_session() => {
                Ok(self.reconnect_destination(folder, e).await?.status.uidnext)
            }
            Err(e) => Err(ApplyError::destination(e)),
        }
    }

    /// With `fix-bare-lf`, a refused message containing bare LF is sent again with CRLF.
    async fn retry_with_crlf(
        &mut self,
        folder: &FolderPlan,
        m: &MessageCopy,
        body: &[u8],
        allowed: &FlagFilter,
    ) -> Option<AppendResult> {
        if !self.ctx.settings().messages.fix_bare_lf || !has_bare_lf(body) {
            return None;
        }
        let item = AppendItem {
            flags: allowed.filter(&m.flags),
            internal_date: m.internal_date.clone(),
            body: to_crlf(body).into(),
        };
        match self
            .writer
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
        &mut self,
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
        match self
            .writer
            .append_batch(&folder.destination_wire, std::slice::from_ref(&item))
            .await
        {
            Ok(mut results) => results.pop(),
            Err(_) => None,
        }
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A planned copy with a key made of one repeated byte.
    pub(crate) fn copy(uid: u32, key: u8, size: u64) -> MessageCopy {
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
    fn bare_lf_detection_and_fix() {
        assert!(has_bare_lf(b"a\nb"));
        assert!(!has_bare_lf(b"a\r\nb\r\n"));
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }
}
