//! One batch of messages: fetched from the source in one `UID FETCH`, appended to the
//! destination in one (MULTI)APPEND, then settled message by message (copied or refused
//! with the server's words, bare LF and keyword fallbacks, quota).

use std::collections::{BTreeSet, VecDeque};

use crate::identity::IdentityKey;
use crate::imap::{classify_words, AppendItem, AppendResult, Transience};
use crate::message::InternalDate;
use crate::plan::{FolderPlan, MessageCopy};
use crate::report::FailedMessage;

use super::flags::{without_refused, FlagFilter};
use super::lanes::{Lane, PendingCheck};
use super::ApplyError;

/// A refused message with at most this many keywords PERMANENTFLAGS does not name is
/// tried again without each of them in turn before it is tried without all of them.
const MAX_KEYWORD_PROBES: usize = 4;

/// At most this many messages per batch (and the size batches grow back to).
const BATCH_MESSAGES: usize = 200;
/// At most about this many bytes per batch (a single bigger message still goes alone).
const BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// The size of the next batch: halved after a batch was cut (down to one message), grown
/// again (doubled) after each batch that went through whole. On a link that drops every
/// connection after a few hundred KiB, whole 4 MiB batches would never arrive; single
/// messages do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Batcher {
    pub(super) messages: usize,
    pub(super) bytes: u64,
}

impl Default for Batcher {
    fn default() -> Batcher {
        Batcher {
            messages: BATCH_MESSAGES,
            bytes: BATCH_BYTES,
        }
    }
}

impl Batcher {
    /// A batch was cut: the next one is half as big (at least one message).
    pub(super) fn shrink(&mut self) {
        self.messages = (self.messages / 2).max(1);
        self.bytes = (self.bytes / 2).max(1);
    }

    /// One message at a time from now on (until batches go through again).
    pub(super) fn single(&mut self) {
        self.messages = 1;
        self.bytes = 1;
    }

    /// A batch went through whole: the next one may be twice as big.
    pub(super) fn grow(&mut self) {
        self.messages = (self.messages * 2).min(BATCH_MESSAGES);
        self.bytes = (self.bytes * 2).min(BATCH_BYTES);
    }

    /// How many of `sizes` (in order) go into the next batch: at least one, at most
    /// `messages`, and no more than about `bytes`.
    pub(super) fn take(&self, sizes: impl IntoIterator<Item = u64>) -> usize {
        let mut n = 0;
        let mut bytes = 0;
        for size in sizes {
            if n > 0 && (n >= self.messages || bytes + size > self.bytes) {
                break;
            }
            bytes += size;
            n += 1;
        }
        n
    }
}

/// A fetched message waiting to be appended.
pub(super) struct Ready<'p> {
    pub(super) copy: &'p MessageCopy,
    pub(super) body: Vec<u8>,
    /// Its share of the body budget, released once it has been sent.
    pub(super) permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The APPEND items of a batch, with every flag but `\Recent` and the keywords the
/// account's destination already refused.
pub(super) fn append_items<'b>(
    batch: &'b [Ready<'_>],
    allowed: &FlagFilter,
    refused: &BTreeSet<String>,
) -> Vec<AppendItem<'b>> {
    batch
        .iter()
        .map(|r| AppendItem {
            // Keywords the folder does not claim to store are tried anyway: some
            // servers under-report PERMANENTFLAGS (pymap, some Exchange versions) and
            // store them. A refusal is retried without them (`retry_without_keywords`).
            flags: without_refused(allowed.optimistic(&r.copy.flags), refused),
            internal_date: r.copy.internal_date.map(InternalDate::to_rfc3339),
            body: std::borrow::Cow::Borrowed(r.body.as_slice()),
        })
        .collect()
}

impl Lane<'_, '_> {
    /// Records a message that will not be copied in this run, with the reason.
    pub(super) fn record_failed(
        &mut self,
        folder: &FolderPlan,
        m: &MessageCopy,
        reason: String,
        hint: Option<String>,
    ) {
        tracing::info!(
            account = %self.ctx.account.source_user,
            "`{}` uid {}: not copied: {reason}",
            folder.destination, m.uid
        );
        self.tally.report.failed.push(FailedMessage {
            folder: folder.destination.clone(),
            uid: m.uid,
            reason,
            date: m.display.date().to_string(),
            from: m.display.from().to_string(),
            subject: m.display.subject().to_string(),
            size: m.size,
            hint,
        });
        // Not progress for the retry budget: an account whose every message fails alone
        // must still give up, not fail them one by one for ever.
        self.tally.progress.advance(1, 0);
    }

    /// Counts each message of an answered batch as copied or refused (retrying a refused
    /// bare-LF message with CRLF when `fix-bare-lf` is on, and without keywords the folder
    /// does not list). Messages refused for a temporary reason (`[UNAVAILABLE]`, throttling,
    /// ...) are handed back in `retry` after the wait the server asked for. Checks the keys
    /// stored and returns UIDNEXT.
    pub(super) async fn record_results<'p>(
        &mut self,
        folder: &FolderPlan,
        batch: Vec<Ready<'p>>,
        results: Vec<AppendResult>,
        allowed: &FlagFilter,
        retry: &mut VecDeque<Ready<'p>>,
    ) -> Result<Option<u32>, ApplyError> {
        // (destination UID, identity key) of every message that went in.
        let mut appended: Vec<(u32, IdentityKey)> = Vec::new();
        let mut delivered: Vec<&MessageCopy> = Vec::new();
        let mut over_quota: Option<String> = None;
        let mut uids_known = true;
        let mut temporary: Vec<Ready<'p>> = Vec::new();
        let mut wait: Option<std::time::Duration> = None;
        let mut last_words = String::new();
        let refused = self.refused_keywords();
        for (ready, result) in batch.into_iter().zip(results) {
            let (m, body) = (ready.copy, &ready.body);
            let all = allowed.optimistic(&m.flags);
            // What the batch sent (keywords refused earlier in the run left out).
            let tried = without_refused(all.clone(), &refused);
            let mut dropped_keywords = false;
            let result = match result {
                Ok(uid) => {
                    dropped_keywords = tried.len() != all.len();
                    Ok((uid, false))
                }
                Err(words) => {
                    if let Transience::Transient { after } = classify_words(&words) {
                        wait = wait.max(after);
                        last_words = words;
                        temporary.push(ready);
                        continue;
                    }
                    match self
                        .retry_without_keywords(folder, m, body, allowed, &tried, &words)
                        .await
                    {
                        Some((Ok(uid), sent)) => {
                            dropped_keywords = true;
                            self.warn_dropped_keywords(m, &sent);
                            Ok((uid, false))
                        }
                        _ => {
                            let strict = without_refused(allowed.filter(&m.flags), &refused);
                            match self.retry_with_crlf(folder, m, body, &strict).await {
                                Some(Ok(uid)) => {
                                    dropped_keywords = strict.len() != all.len();
                                    if dropped_keywords {
                                        self.warn_dropped_keywords(m, &strict);
                                    }
                                    Ok((uid, true))
                                }
                                _ => Err(words),
                            }
                        }
                    }
                }
            };
            match result {
                Ok((uid, fixed)) => {
                    let tally = &mut self.tally;
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
                    self.record_failed(folder, m, words, None);
                }
            }
        }
        if !delivered.is_empty() {
            self.src.backoff.progress();
            self.dst.backoff.progress();
        }
        self.tally.record_delivered(delivered)?;
        if let Some(words) = over_quota {
            return Err(ApplyError::OverQuota {
                folder: folder.destination.clone(),
                words,
            });
        }
        // The key stability check is sent with the lane's next destination command (the
        // next folder's SELECT, or before the next APPEND) rather than on its own.
        if self.checks.due() && !appended.is_empty() {
            self.flush_check().await?;
            self.pending_check = Some(PendingCheck {
                folder: folder.destination.clone(),
                wire: folder.destination_wire.clone(),
                appended: appended.clone(),
            });
        }
        if !temporary.is_empty() {
            tracing::info!(
                account = %self.ctx.account.source_user,
                "`{}`: the destination refused {} messages for now ({last_words}); trying again",
                folder.destination,
                temporary.len()
            );
            if self.dst.backoff.failed(wait).await {
                for r in temporary.into_iter().rev() {
                    retry.push_front(r);
                }
            } else {
                for r in temporary {
                    self.record_failed(
                        folder,
                        r.copy,
                        last_words.clone(),
                        Some(
                            "the destination kept refusing it for now; run apply again later"
                                .into(),
                        ),
                    );
                }
            }
        }
        if uids_known {
            if let Some(uid) = appended.iter().map(|(uid, _)| *uid).max() {
                return Ok(Some(uid + 1));
            }
        }
        // No APPENDUID (no UIDPLUS): ask for UIDNEXT, so that a dropped connection later
        // re-reads exactly what the next batch added.
        let sel = self
            .dst
            .select(&folder.destination_wire)
            .await
            .map_err(ApplyError::dst)?;
        Ok(sel.status.uidnext)
    }

    /// With `fix-bare-lf`, a refused message containing bare LF is sent again with CRLF.
    async fn retry_with_crlf(
        &mut self,
        folder: &FolderPlan,
        m: &MessageCopy,
        body: &[u8],
        flags: &[String],
    ) -> Option<AppendResult> {
        if !self.ctx.settings().messages.fix_bare_lf || !has_bare_lf(body) {
            return None;
        }
        let item = AppendItem {
            flags: flags.to_vec(),
            internal_date: m.internal_date.map(InternalDate::to_rfc3339),
            body: to_crlf(body).into(),
        };
        match self
            .dst
            .append_batch(&folder.destination_wire, std::slice::from_ref(&item))
            .await
        {
            Ok(Ok(mut results)) => results.pop(),
            _ => None,
        }
    }

    /// The destination refused a message that carried keywords PERMANENTFLAGS does not
    /// name (`tried`: the flags it was sent with): appends it again, in this order, with
    /// what PERMANENTFLAGS allows (a folder without `\*`); with one of those keywords left
    /// out at a time (a server that offers `\*` but refuses one keyword, e.g. Dovecot's
    /// `mail_max_keyword_length`); with only the flags PERMANENTFLAGS names. A refused
    /// attempt stores nothing, so the first accepted one is the only copy. Returns its
    /// result and flags; `None` when there was nothing to drop or the refusal is about
    /// something else (quota, size).
    async fn retry_without_keywords(
        &mut self,
        folder: &FolderPlan,
        m: &MessageCopy,
        body: &[u8],
        allowed: &FlagFilter,
        tried: &[String],
        words: &str,
    ) -> Option<(AppendResult, Vec<String>)> {
        let words = words.to_ascii_uppercase();
        if ["[OVERQUOTA]", "[TOOBIG]"]
            .iter()
            .any(|c| words.contains(c))
        {
            return None;
        }
        let unlisted: Vec<&String> = tried.iter().filter(|f| !allowed.is_listed(f)).collect();
        if unlisted.is_empty() {
            return None;
        }
        let mut attempts: Vec<Vec<String>> = Vec::new();
        let mut add = |flags: Vec<String>| {
            if flags.as_slice() != tried && !attempts.contains(&flags) {
                attempts.push(flags);
            }
        };
        add(allowed.filter(tried));
        if unlisted.len() <= MAX_KEYWORD_PROBES {
            for k in &unlisted {
                add(tried.iter().filter(|f| f != k).cloned().collect());
            }
        }
        add(allowed.listed(tried));
        for flags in attempts {
            let item = AppendItem {
                flags,
                internal_date: m.internal_date.map(InternalDate::to_rfc3339),
                body: body.into(),
            };
            match self
                .dst
                .append_batch(&folder.destination_wire, std::slice::from_ref(&item))
                .await
            {
                Ok(Ok(mut results)) => match results.pop() {
                    Some(Ok(uid)) => return Some((Ok(uid), item.flags)),
                    Some(Err(_)) => continue,
                    None => return None,
                },
                _ => return None,
            }
        }
        None
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
            flags: Default::default(),
            internal_date: None,
            key: IdentityKey([key; 32]),
            display: Default::default(),
            ledger_base: 0,
        }
    }

    #[test]
    fn batches_respect_count_and_bytes_and_adapt() {
        let mut b = Batcher::default();
        assert_eq!(b.take(std::iter::repeat_n(100, 450)), 200);
        assert_eq!(b.take([6 << 20, 6 << 20]), 1, "a big message goes alone");
        assert_eq!(b.take([]), 0);
        assert_eq!(b.take(std::iter::repeat_n(1 << 20, 10)), 4);
        b.shrink();
        assert_eq!(b.take(std::iter::repeat_n(1 << 20, 10)), 2);
        for _ in 0..30 {
            b.shrink();
        }
        assert_eq!(b.messages, 1);
        assert_eq!(b.take(std::iter::repeat_n(10, 10)), 1);
        b.grow();
        assert_eq!(b.take(std::iter::repeat_n(1, 10)), 2);
        for _ in 0..30 {
            b.grow();
        }
        assert_eq!(b, Batcher::default());
    }

    #[test]
    fn bare_lf_detection_and_fix() {
        assert!(has_bare_lf(b"a\nb"));
        assert!(!has_bare_lf(b"a\r\nb\r\n"));
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }
}
