//! Big messages: one bigger than `[limits] stream-above` is never held whole. It is read
//! from the source in pieces (`UID FETCH n BODY.PEEK[]<offset.length>`, one piece in
//! flight while the previous one is written) and sent as one streamed APPEND literal.
//! It goes alone, over the lane's own sessions and under their retry policy: a cut on
//! either side drops the APPEND (a server discards a literal that never ended), and
//! before the message is sent again the destination is looked at, so that an APPEND
//! that completed just before the cut is counted, never doubled.
//!
//! `fix-bare-lf` does not apply: converting line endings changes the literal's length,
//! which must be announced before the first byte, so the message would have to be read
//! twice. A destination that refuses it records it as failed with its words and a hint.

use std::sync::Arc;

use crate::imap::{classify_words, ImapError, Transience};
use crate::model::Side;
use crate::plan::MessageCopy;
use crate::report::VanishedMessage;

use super::flags::without_refused;
use super::folder::SourceRun;
use super::lanes::Lane;
use super::reconcile::{read_keys_since, subtract_present};
use super::{ApplyError, BODY_BUDGET_KIB};

/// How one attempt at a big message ended.
enum Attempt {
    /// Appended, with its UID when the server said (APPENDUID).
    Copied {
        uid: Option<u32>,
        bytes: u64,
        flags: Vec<String>,
    },
    /// The destination refused it, in its words.
    Refused { words: String, flags: Vec<String> },
    /// The source no longer has it.
    Vanished,
    /// The source's answers do not add up (its size changed while it was read).
    Inconsistent(String),
    /// The source connection failed.
    SourceCut(ImapError),
    /// The destination connection failed; the message may have arrived.
    DestinationCut(ImapError),
}

impl<'p> Lane<'_, '_> {
    /// Copies `m` (bigger than `stream-above`) alone, streamed, retried like a batch of
    /// one. A message that cannot be copied is recorded as failed and the folder goes on;
    /// cancelled or paced out, it goes back to the front of the queue (pending).
    pub(super) async fn copy_big(
        &mut self,
        run: &mut SourceRun<'p, '_>,
        m: &'p MessageCopy,
    ) -> Result<(), ApplyError> {
        let ctx = self.ctx;
        let piece = ctx.settings().limits.stream_above;
        let folder = run.folder;
        // After a permanent refusal with keywords the folder does not list: once more with
        // only the flags it stores.
        let mut strict = false;
        loop {
            if ctx.cancelled()
                || !ctx.pace(Side::Source, 1, m.size).await
                || !ctx.pace(Side::Destination, 1, m.size).await
            {
                run.queue.push_front(m);
                return Ok(());
            }
            // Two pieces at a time: the one being written and the one being read.
            let kib = (2 * piece).div_ceil(1024).clamp(1, BODY_BUDGET_KIB as u64) as u32;
            let permit = Arc::clone(&ctx.exec.body_budget)
                .acquire_many_owned(kib)
                .await
                .expect("never closed");
            let attempt = self.stream_once(run, m, piece, strict).await;
            drop(permit);
            match attempt? {
                Attempt::Copied { uid, bytes, flags } => {
                    let dropped = flags.len() != run.allowed.optimistic(&m.flags).len();
                    if dropped {
                        self.warn_dropped_keywords(m, &flags);
                    }
                    let tally = &mut self.tally;
                    tally.report.copied += 1;
                    tally.report.bytes += bytes;
                    tally.report.keywords_dropped += u64::from(dropped);
                    tally.progress.advance(1, bytes);
                    tally.record_delivered([m])?;
                    self.src.backoff.progress();
                    self.dst.backoff.progress();
                    match uid {
                        Some(uid) => {
                            self.verify_keys(
                                &folder.destination,
                                &folder.destination_wire,
                                &[(uid, m.key)],
                            )
                            .await?;
                            run.next_uid = Some(uid + 1);
                        }
                        None => {
                            let sel = self
                                .dst
                                .select(&folder.destination_wire)
                                .await
                                .map_err(ApplyError::dst)?;
                            run.next_uid = sel.status.uidnext;
                        }
                    }
                    return Ok(());
                }
                Attempt::Vanished => {
                    self.tally.report.vanished.push(VanishedMessage {
                        source_folder: folder.sources[run.source_index].name.clone(),
                        uid: m.uid,
                    });
                    self.tally.progress.advance(1, 0);
                    return Ok(());
                }
                Attempt::Inconsistent(reason) => {
                    self.record_failed(
                        folder,
                        m,
                        reason,
                        Some(
                            "the message changed on the source while it was read; run apply again"
                                .into(),
                        ),
                    );
                    return Ok(());
                }
                Attempt::Refused { words, flags } => {
                    if let Transience::Transient { after } = classify_words(&words) {
                        tracing::info!(
                            account = %ctx.account.source_user,
                            "`{}` uid {}: the destination refused it for now ({words}); trying again",
                            folder.destination, m.uid
                        );
                        if self.dst.backoff.failed(after).await {
                            continue;
                        }
                        self.record_failed(
                            folder,
                            m,
                            words,
                            Some(
                                "the destination kept refusing it for now; run apply again later"
                                    .into(),
                            ),
                        );
                        return Ok(());
                    }
                    let upper = words.to_ascii_uppercase();
                    let about_size = upper.contains("[OVERQUOTA]") || upper.contains("[TOOBIG]");
                    let listed =
                        without_refused(run.allowed.filter(&m.flags), &self.refused_keywords());
                    if !strict && !about_size && listed != flags {
                        strict = true;
                        continue;
                    }
                    if upper.contains("[OVERQUOTA]") {
                        return Err(ApplyError::OverQuota {
                            folder: folder.destination.clone(),
                            words,
                        });
                    }
                    let hint = ctx.settings().messages.fix_bare_lf.then(|| {
                        format!(
                            "`fix-bare-lf` does not apply to messages over `stream-above` ({}): \
                             raise `stream-above` in [limits] above this message's size to let it convert this one",
                            crate::render::units::bytes(piece)
                        )
                    });
                    self.record_failed(folder, m, words, hint);
                    return Ok(());
                }
                Attempt::SourceCut(err) => {
                    let words = err.to_string();
                    self.src
                        .fail(err, "source: UID FETCH BODY.PEEK[]<offset.length>")
                        .await
                        .map_err(ApplyError::src)?;
                    if self.given_up(run, m, &words, "reading it from the source") {
                        return Ok(());
                    }
                }
                Attempt::DestinationCut(err) => {
                    let words = err.to_string();
                    self.dst
                        .fail(err, "destination: APPEND (streamed)")
                        .await
                        .map_err(ApplyError::dst)?;
                    // The APPEND may have completed just before the cut: look first.
                    let found = read_keys_since(
                        &mut self.dst,
                        &folder.destination_wire,
                        run.next_uid.unwrap_or(1),
                    )
                    .await
                    .map_err(ApplyError::dst)?;
                    if let Some(sel) = self.dst.last_select() {
                        run.next_uid = sel.status.uidnext;
                    }
                    let mut copies = vec![m];
                    if subtract_present(&mut copies, found) > 0 {
                        tracing::info!(
                            account = %ctx.account.source_user,
                            "`{}` uid {}: the interrupted APPEND had arrived; not sending it again",
                            folder.destination, m.uid
                        );
                        let tally = &mut self.tally;
                        tally.report.copied += 1;
                        tally.report.bytes += m.size;
                        tally.progress.advance(1, m.size);
                        tally.record_delivered([m])?;
                        self.src.backoff.progress();
                        self.dst.backoff.progress();
                        return Ok(());
                    }
                    if self.given_up(run, m, &words, "appending it to the destination") {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// One attempt: the first piece (which says the size now), the APPEND announced with
    /// that size, then piece after piece: the next one read while the last one is written.
    /// Asks one byte more than the size says for the last piece, so that a message that
    /// grew is noticed before its literal is closed.
    async fn stream_once(
        &mut self,
        run: &SourceRun<'_, '_>,
        m: &MessageCopy,
        piece: u64,
        strict: bool,
    ) -> Result<Attempt, ApplyError> {
        let first = match self
            .src
            .fetch_piece(m.uid, 0, piece)
            .await
            .map_err(ApplyError::src)?
        {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Attempt::Vanished),
            Err(err) => return Ok(Attempt::SourceCut(err)),
        };
        let size = first.size;
        if first.data.len() as u64 != size.min(piece) {
            return Ok(Attempt::Inconsistent(format!(
                "the source said the message has {size} bytes but sent {} of the first {piece}",
                first.data.len()
            )));
        }
        let refused = self.refused_keywords();
        let flags = if strict {
            without_refused(run.allowed.filter(&m.flags), &refused)
        } else {
            without_refused(run.allowed.optimistic(&m.flags), &refused)
        };
        let mut stream = match self
            .dst
            .begin_append(
                &run.folder.destination_wire,
                &flags,
                m.internal_date.map(|d| d.to_rfc3339()).as_deref(),
                size,
            )
            .await
            .map_err(ApplyError::dst)?
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(words)) => return Ok(Attempt::Refused { words, flags }),
            Err(err) => return Ok(Attempt::DestinationCut(err)),
        };
        tracing::debug!(
            account = %self.ctx.account.source_user,
            "`{}` uid {}: {size} bytes, streamed in pieces of {piece} bytes",
            run.folder.destination, m.uid
        );
        let mut current = first.data;
        let mut offset = 0u64;
        loop {
            let next = offset + current.len() as u64;
            let ask = (size - next + 1).min(piece);
            let src = &mut self.src;
            let fetch = async {
                if next < size {
                    Some(src.fetch_piece(m.uid, next, ask).await)
                } else {
                    None
                }
            };
            let (sent, fetched) = tokio::join!(stream.send(&current), fetch);
            if let Err(err) = sent {
                return Ok(Attempt::DestinationCut(err));
            }
            let Some(fetched) = fetched else { break };
            // A failure drops `stream`, and with it the destination connection: the server
            // discards the unfinished APPEND.
            match fetched.map_err(ApplyError::src)? {
                Ok(Some(p)) => {
                    let want = (size - next).min(ask);
                    if p.size != size || p.data.len() as u64 != want {
                        return Ok(Attempt::Inconsistent(format!(
                            "the source said the message has {size} bytes, then {} bytes, and sent \
                             {} bytes at offset {next} where {want} were due",
                            p.size,
                            p.data.len()
                        )));
                    }
                    current = p.data;
                    offset = next;
                }
                Ok(None) => return Ok(Attempt::Vanished),
                Err(err) => return Ok(Attempt::SourceCut(err)),
            }
        }
        match self.dst.finish_append(stream).await {
            Ok(Ok(uid)) => Ok(Attempt::Copied {
                uid,
                bytes: size,
                flags,
            }),
            Ok(Err(words)) => Ok(Attempt::Refused { words, flags }),
            Err(err) => Ok(Attempt::DestinationCut(err)),
        }
    }
}
