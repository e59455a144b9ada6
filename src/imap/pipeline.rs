//! Pipelining (RFC 9051 §5.5): several tagged commands written together, their answers
//! matched by tag, so that a step of N independent commands costs one round trip instead
//! of N. Across the internet (20–100 ms per round trip) this is most of the time a
//! migration takes.
//!
//! async-imap sends one command and waits for it, so the commands go raw onto the
//! session's stream (as NAMESPACE and APPEND already do) and each answer is read whole
//! (line and literals) and parsed with imap-proto by the caller (NAMESPACE, which
//! imap-proto cannot parse, is read by our own parser).
//!
//! What stays sequential, by the RFC's ambiguity rules and by what servers do:
//! - nothing is pipelined behind LOGIN/AUTHENTICATE (servers drop such commands);
//! - only UID commands follow a command that may expunge (no sequence numbers);
//! - a command that depends on another one's *success* is not pipelined behind it: the
//!   writer creates folders in one pipelined round and subscribes the created ones in
//!   the next, never subscribing a folder whose CREATE failed;
//! - EXAMINE changes the selected folder: a server must finish it before it runs the
//!   FETCH behind it, so untagged answers are charged to the oldest unanswered command,
//!   and everything after an EXAMINE that failed is ignored by the callers.
//!
//! At most [`WINDOW_BYTES`] of commands are written ahead of their answers, so a long
//! pipeline cannot fill both directions' socket buffers and stall.

use std::collections::{HashMap, HashSet};

use imap_proto::{AttributeValue, MailboxDatum, Response, ResponseCode, Status, StatusAttribute};
use tokio::io::AsyncWriteExt;

use super::error::ImapError;
use super::namespace::{namespace_data, parse_namespace_data, Namespace};
use super::reader::{
    fetched_meta, is_special_use, list_entry, parse_storage_quota, BodiesOutcome, CommandEnd,
    FetchedMeta, ListEntry, Reader, MAX_UID_SET, META_ITEMS,
};
use super::transport::read_response_capped;
use super::wire::{keep_flag, uid_and_body, uid_sets, unescape_quoted};
use crate::model::{FolderStatus, WireName};

/// Bytes of commands written ahead of their answers.
const WINDOW_BYTES: usize = 16 * 1024;
/// Largest single answer (a line and its literals) read in a pipeline.
const MAX_PIPELINED_RESPONSE: u64 = 64 << 20;

/// A response as the pipeline hands it over: raw bytes, parse them with
/// [`imap_proto::Response::parse`] (or our NAMESPACE parser).
pub(super) type Raw<'a> = &'a [u8];

impl Reader {
    /// Sends `commands` (without tags) pipelined and reads every answer. `on_untagged(i,
    /// raw)` receives each untagged response, charged to the oldest command `i` that is
    /// not answered yet; the result is how each command ended, in the order given.
    ///
    /// An I/O error, a timeout, a BYE, a continuation request or a completion for an
    /// unknown tag is an error that kills the session: what the server did with the
    /// unanswered commands is then unknown (callers re-read before they rely on it).
    pub(super) async fn pipeline(
        &mut self,
        commands: &[String],
        label: &str,
        on_untagged: impl FnMut(usize, Raw<'_>),
    ) -> Result<Vec<CommandEnd>, ImapError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = commands.iter().find(|c| c.contains(['\r', '\n'])) {
            return Err(self
                .ep
                .protocol(label, format!("a command contains a line break: {bad:?}")));
        }
        self.begin()?;
        let result = self.pipeline_inner(commands, label, on_untagged).await;
        self.finish(result)
    }

    async fn pipeline_inner(
        &mut self,
        commands: &[String],
        label: &str,
        mut on_untagged: impl FnMut(usize, Raw<'_>),
    ) -> Result<Vec<CommandEnd>, ImapError> {
        let n = commands.len();
        let first_tag = self.raw_tags + 1;
        self.raw_tags += n as u32;
        let doing = format!("waiting for the answers to {label}");
        tracing::trace!(host = %self.ep.host, commands = n, %label, "imap pipeline");
        let mut ends: Vec<Option<CommandEnd>> = (0..n).map(|_| None).collect();
        let (mut sent, mut answered, mut oldest, mut in_flight) = (0usize, 0usize, 0usize, 0usize);
        let mut bye: Option<String> = None;
        let idle = self.idle;
        let ep = self.ep.clone();
        let stream = self.session.get_mut();
        while answered < n {
            let mut wrote = false;
            while sent < n && (in_flight == 0 || in_flight + commands[sent].len() <= WINDOW_BYTES) {
                let line = format!("P{} {}\r\n", first_tag + sent as u32, commands[sent]);
                stream
                    .write_all(line.as_bytes())
                    .await
                    .map_err(|e| ep.io(&e, &doing, idle))?;
                in_flight += commands[sent].len();
                sent += 1;
                wrote = true;
            }
            if wrote {
                stream.flush().await.map_err(|e| ep.io(&e, &doing, idle))?;
            }
            let raw = match read_response_capped(stream, &ep, &doing, idle, MAX_PIPELINED_RESPONSE)
                .await
            {
                Ok(raw) => raw,
                Err(ImapError::Closed { .. }) if bye.is_some() => {
                    return Err(
                        ep.closed(format!("the server said BYE: {}", bye.unwrap_or_default()))
                    )
                }
                Err(e) => return Err(e),
            };
            if raw.starts_with(b"+") {
                return Err(ep.closed(format!(
                    "the server asked for a continuation during {label}, which sends no literals"
                )));
            }
            if let Some(rest) = raw.strip_prefix(b"* ") {
                if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"BYE") {
                    bye = Some(String::from_utf8_lossy(&rest[3..]).trim().to_string());
                    continue;
                }
                while oldest < sent && ends[oldest].is_some() {
                    oldest += 1;
                }
                on_untagged(oldest.min(n - 1), &raw);
                continue;
            }
            let (index, end) = tagged(&raw, first_tag, n).ok_or_else(|| {
                ep.closed(format!(
                    "unexpected answer during {label}: `{}`",
                    String::from_utf8_lossy(&raw[..raw.len().min(80)]).trim_end()
                ))
            })?;
            if index >= sent || ends[index].is_some() {
                return Err(ep.closed(format!(
                    "unexpected completion for tag `P{}` during {label}",
                    first_tag + index as u32
                )));
            }
            in_flight -= commands[index].len();
            ends[index] = Some(end);
            answered += 1;
        }
        Ok(ends.into_iter().map(|e| e.expect("all answered")).collect())
    }
}

/// `P12 OK [CODE] text` → (index of the command, how it ended), for tags
/// `P{first}..P{first + n - 1}`.
fn tagged(raw: &[u8], first: u32, n: usize) -> Option<(usize, CommandEnd)> {
    let line = std::str::from_utf8(raw).ok()?.trim_end();
    let (tag, rest) = line.split_once(' ')?;
    let number: u32 = tag.strip_prefix('P')?.parse().ok()?;
    let index = number.checked_sub(first)? as usize;
    if index >= n {
        return None;
    }
    let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let text = text.to_string();
    let end = if status.eq_ignore_ascii_case("OK") {
        CommandEnd::Ok
    } else if status.eq_ignore_ascii_case("NO") {
        CommandEnd::No(text)
    } else if status.eq_ignore_ascii_case("BAD") {
        CommandEnd::Bad(text)
    } else {
        return None;
    };
    Some((index, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_lines() {
        assert!(matches!(
            tagged(b"P5 OK done\r\n", 5, 2),
            Some((0, CommandEnd::Ok))
        ));
        match tagged(b"P6 NO [ALREADYEXISTS] Mailbox exists\r\n", 5, 2) {
            Some((1, CommandEnd::No(text))) => assert_eq!(text, "[ALREADYEXISTS] Mailbox exists"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            tagged(b"P6 BAD x\r\n", 5, 2),
            Some((1, CommandEnd::Bad(_)))
        ));
        assert!(tagged(b"P7 OK x\r\n", 5, 2).is_none());
        assert!(tagged(b"P4 OK x\r\n", 5, 2).is_none());
        assert!(tagged(b"A1 OK x\r\n", 5, 2).is_none());
        assert!(tagged(b"P5 MAYBE x\r\n", 5, 2).is_none());
    }
}

/// What STATUS says about a folder (RFC 9051 §6.3.11), with HIGHESTMODSEQ where CONDSTORE
/// is offered (RFC 7162). A value the server did not send is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct MailboxStatus {
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub messages: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highestmodseq: Option<u64>,
}

/// An account's folder tree in one or two round trips: LIST (with the status of every
/// folder where LIST-STATUS is offered), LSUB, NAMESPACE and GETQUOTAROOT pipelined, then
/// STATUS of the folders LIST gave no status for, pipelined.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    pub entries: Vec<ListEntry>,
    /// Subscribed names (wire form, unescaped).
    pub subscribed: Vec<WireName>,
    pub namespace: Option<Namespace>,
    /// Per selectable folder's wire name; missing when the server would not say.
    pub statuses: HashMap<WireName, MailboxStatus>,
    /// RFC 9208 STORAGE of INBOX's quota roots (used, limit) in bytes, when asked for.
    pub storage: Option<(u64, u64)>,
}

/// What to fetch per folder in [`Reader::examine_fetch_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchItems {
    /// The inventory items (UID, FLAGS, INTERNALDATE, RFC822.SIZE, identity headers).
    Metadata,
    /// UID and FLAGS only: a cached inventory's flags brought up to date.
    Flags,
}

/// What EXAMINE and the FETCH behind it found in one folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Examined {
    pub status: FolderStatus,
    /// HIGHESTMODSEQ from EXAMINE, where CONDSTORE is offered (and enabled).
    pub highestmodseq: Option<u64>,
}

impl Reader {
    /// The status items asked for: HIGHESTMODSEQ too where CONDSTORE is offered.
    fn status_items(&self) -> &'static str {
        if self.capabilities().has("CONDSTORE") {
            "MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ"
        } else {
            "MESSAGES UIDNEXT UIDVALIDITY"
        }
    }

    /// LIST, LSUB, NAMESPACE (and GETQUOTAROOT "INBOX" when `quota`) pipelined, with the
    /// status of every selectable folder: from `LIST ... RETURN (STATUS (...))` (RFC
    /// 5819) where offered, else from one pipelined round of STATUS commands.
    pub async fn overview(&mut self, quota: bool) -> Result<Overview, ImapError> {
        let caps = self.capabilities().clone();
        let items = self.status_items();
        let list_status = caps.has("LIST-STATUS");
        let special = caps.has("SPECIAL-USE");
        let list = match (list_status, special) {
            (true, true) => format!("LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS ({items}))"),
            (true, false) => format!("LIST \"\" \"*\" RETURN (STATUS ({items}))"),
            (false, _) => "LIST \"\" \"*\"".to_string(),
        };
        let mut commands = vec![list, "LSUB \"\" \"*\"".to_string()];
        let namespace_at = caps.has("NAMESPACE").then(|| {
            commands.push("NAMESPACE".to_string());
            commands.len() - 1
        });
        let quota_at = (quota && caps.has("QUOTA")).then(|| {
            commands.push("GETQUOTAROOT \"INBOX\"".to_string());
            commands.len() - 1
        });
        let mut out = Overview::default();
        let mut unreadable: Option<String> = None;
        let mut namespace_raw: Option<Vec<u8>> = None;
        let ends = self
            .pipeline(&commands, "LIST, LSUB, NAMESPACE", |_, raw| {
                // Dispatched by what the answer is, not by order: LIST and LSUB answers
                // look alike once parsed, and a server may interleave them.
                let word = response_word(raw);
                if word.eq_ignore_ascii_case("NAMESPACE") {
                    namespace_raw = Some(raw.to_vec());
                    return;
                }
                if word.eq_ignore_ascii_case("QUOTA") {
                    if let Some(q) = parse_storage_quota(&String::from_utf8_lossy(raw)) {
                        out.storage = Some(match out.storage {
                            Some(old) if old.1.saturating_sub(old.0) <= q.1.saturating_sub(q.0) => {
                                old
                            }
                            _ => q,
                        });
                    }
                    return;
                }
                let (is_list, is_lsub, is_status) = (
                    word.eq_ignore_ascii_case("LIST"),
                    word.eq_ignore_ascii_case("LSUB"),
                    word.eq_ignore_ascii_case("STATUS"),
                );
                if !(is_list || is_lsub || is_status) {
                    return;
                }
                match Response::parse(raw) {
                    Ok((_, Response::MailboxData(MailboxDatum::List(data)))) => {
                        let entry = list_entry(&data);
                        if is_lsub {
                            out.subscribed.push(entry.wire_name);
                        } else {
                            out.entries.push(entry);
                        }
                    }
                    Ok((_, Response::MailboxData(MailboxDatum::Status { mailbox, status }))) => {
                        out.statuses.insert(
                            WireName::new(unescape_quoted(&mailbox)),
                            mailbox_status(&status),
                        );
                    }
                    _ => {
                        unreadable.get_or_insert_with(|| super::error::first_bytes(raw));
                    }
                }
            })
            .await?;
        if let Some(line) = unreadable {
            return Err(self
                .ep
                .protocol("LIST", format!("unreadable answer `{line}`")));
        }
        let mut ends = ends.into_iter();
        ends.next()
            .expect("LIST was sent")
            .ok_or_protocol(&self.ep, "LIST")?;
        ends.next()
            .expect("LSUB was sent")
            .ok_or_protocol(&self.ep, "LSUB")?;
        let rest: Vec<CommandEnd> = ends.collect();
        if let Some(at) = namespace_at {
            match &rest[at - 2] {
                CommandEnd::Ok => {
                    out.namespace = match namespace_raw.as_deref().and_then(namespace_data) {
                        Some(data) => match parse_namespace_data(data) {
                            Ok(ns) => ns,
                            Err(why) => {
                                tracing::warn!(host = %self.ep.host, %why, "unreadable NAMESPACE answer; guessing the prefix from LIST");
                                None
                            }
                        },
                        None => None,
                    }
                }
                CommandEnd::No(text) | CommandEnd::Bad(text) => {
                    tracing::warn!(host = %self.ep.host, %text, "NAMESPACE refused; guessing the prefix from LIST");
                }
            }
        }
        if let Some(at) = quota_at {
            if let CommandEnd::No(text) | CommandEnd::Bad(text) = &rest[at - 2] {
                tracing::warn!(host = %self.ep.host, %text, "GETQUOTAROOT refused; the plan cannot tell whether the copy fits");
                out.storage = None;
            }
        }
        // Special-use attributes only with RETURN (SPECIAL-USE) on some servers.
        let has_special_use = out
            .entries
            .iter()
            .any(|e| e.attributes.iter().any(|a| is_special_use(a)));
        if !has_special_use && special && !list_status {
            let extra = self
                .list_command(
                    "LIST \"\" \"*\" RETURN (SPECIAL-USE)",
                    "LIST RETURN (SPECIAL-USE)",
                )
                .await?;
            merge_attributes(&mut out.entries, extra);
        }
        // STATUS for the selectable folders LIST-STATUS said nothing about.
        let missing: Vec<WireName> = out
            .entries
            .iter()
            .filter(|e| !e.is_noselect() && !out.statuses.contains_key(&e.wire_name))
            .map(|e| e.wire_name.clone())
            .collect();
        if !missing.is_empty() {
            let found = self.statuses(&missing).await?;
            out.statuses.extend(found);
        }
        Ok(out)
    }

    /// `STATUS name (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ])` for every name,
    /// pipelined. A folder the server refuses STATUS for is left out.
    pub async fn statuses(
        &mut self,
        wire_names: &[WireName],
    ) -> Result<HashMap<WireName, MailboxStatus>, ImapError> {
        let items = self.status_items();
        let mut commands = Vec::with_capacity(wire_names.len());
        for name in wire_names {
            commands.push(format!("STATUS {} ({items})", self.quoted(name, "STATUS")?));
        }
        let mut found: Vec<Option<MailboxStatus>> = vec![None; wire_names.len()];
        let ends = self
            .pipeline(&commands, "STATUS", |i, raw| {
                if !response_word(raw).eq_ignore_ascii_case("STATUS") {
                    return;
                }
                if let Ok((_, Response::MailboxData(MailboxDatum::Status { mailbox, status }))) =
                    Response::parse(raw)
                {
                    // By the name in the answer; by order when the server spells it
                    // otherwise (e.g. `INBOX` for `inbox`).
                    let named = unescape_quoted(&mailbox);
                    let at = wire_names
                        .iter()
                        .position(|n| n.as_str() == named)
                        .unwrap_or(i);
                    found[at] = Some(mailbox_status(&status));
                }
            })
            .await?;
        let mut out = HashMap::with_capacity(wire_names.len());
        for ((name, end), status) in wire_names.iter().zip(ends).zip(found) {
            match (end, status) {
                (CommandEnd::Ok, Some(status)) => {
                    out.insert(name.clone(), status);
                }
                (CommandEnd::Ok, None) => {}
                (CommandEnd::No(text) | CommandEnd::Bad(text), _) => {
                    tracing::debug!(host = %self.ep.host, folder = name.as_str(), %text, "STATUS refused");
                }
            }
        }
        Ok(out)
    }

    /// EXAMINE + `UID FETCH 1:* items` for every folder, pipelined: one round trip for
    /// the lot instead of two per folder (the server finishes each EXAMINE before the
    /// FETCH behind it: RFC 9051 §5.5). `on_message(i, meta)` gets each message of
    /// folder `i` (for [`FetchItems::Flags`], `meta.header` is empty and only UID and
    /// flags are set). Per folder: its status, or why it failed (EXAMINE refused, no
    /// UIDVALIDITY, FETCH refused, fewer messages than EXISTS) — then whatever
    /// `on_message` got for that folder must be discarded.
    pub async fn examine_fetch_all(
        &mut self,
        folders: &[(WireName, FetchItems)],
        mut on_message: impl FnMut(usize, FetchedMeta),
    ) -> Result<Vec<Result<Examined, ImapError>>, ImapError> {
        self.selected = None;
        let wire_names: Vec<&WireName> = folders.iter().map(|(n, _)| n).collect();
        let mut commands = Vec::with_capacity(folders.len() * 2);
        for (name, items) in folders {
            commands.push(format!("EXAMINE {}", self.quoted(name, "EXAMINE")?));
            commands.push(match items {
                FetchItems::Metadata => format!("UID FETCH 1:* {META_ITEMS}"),
                FetchItems::Flags => "UID FETCH 1:* (UID FLAGS)".to_string(),
            });
        }
        #[derive(Default, Clone)]
        struct Seen {
            uidvalidity: Option<u32>,
            uidnext: Option<u32>,
            exists: Option<u32>,
            highestmodseq: Option<u64>,
            uids: HashSet<u32>,
        }
        let mut seen: Vec<Seen> = vec![Seen::default(); wire_names.len()];
        let ends = self
            .pipeline(&commands, "EXAMINE + UID FETCH", |i, raw| {
                let folder = i / 2;
                let Ok((_, response)) = Response::parse(raw) else {
                    return;
                };
                let s = &mut seen[folder];
                if i % 2 == 0 {
                    match response {
                        Response::Data {
                            status: Status::Ok,
                            outcome,
                        } => match outcome.code {
                            Some(ResponseCode::UidValidity(v)) => s.uidvalidity = Some(v),
                            Some(ResponseCode::UidNext(v)) => s.uidnext = Some(v),
                            Some(ResponseCode::HighestModSeq(v)) => s.highestmodseq = Some(v),
                            _ => {}
                        },
                        Response::MailboxData(MailboxDatum::Exists(n)) => s.exists = Some(n),
                        _ => {}
                    }
                    return;
                }
                let Response::Fetch(_, attrs) = response else {
                    return;
                };
                let meta = match folders[folder].1 {
                    FetchItems::Metadata => fetched_meta(&attrs),
                    FetchItems::Flags => fetched_flags(&attrs),
                };
                if let Some(meta) = meta {
                    if s.uids.insert(meta.uid) {
                        on_message(folder, meta);
                    }
                }
            })
            .await?;
        let mut out = Vec::with_capacity(wire_names.len());
        let mut ends = ends.into_iter();
        for (name, s) in wire_names.iter().zip(seen) {
            let examine = ends.next().expect("one EXAMINE per folder");
            let fetched = ends.next().expect("one FETCH per folder");
            let display = format!("EXAMINE {}", self.quoted(name, "EXAMINE")?);
            let result = (|| {
                examine.ok_or_protocol(&self.ep, &display)?;
                let (uidvalidity, exists) = self.examined(&display, s.uidvalidity, s.exists)?;
                fetched.ok_or_protocol(&self.ep, "UID FETCH 1:*")?;
                let received = s.uids.len() as u32;
                if received < exists {
                    return Err(ImapError::IncompleteFetch {
                        host: self.ep.host.clone(),
                        port: self.ep.port,
                        folder: name.as_str().to_string(),
                        expected: exists,
                        received,
                    });
                }
                Ok(Examined {
                    status: FolderStatus {
                        uidvalidity,
                        uidnext: s.uidnext,
                        exists,
                    },
                    highestmodseq: s.highestmodseq,
                })
            })();
            if result.is_ok() {
                self.selected = Some((*name).clone());
            }
            out.push(result);
        }
        Ok(out)
    }

    /// EXAMINE + `UID FETCH <uids> BODY.PEEK[]`, pipelined: a folder is opened and its
    /// first batch read in one round trip (the server finishes the EXAMINE before the
    /// FETCH behind it). The bodies are handed over only when the EXAMINE succeeded (a
    /// FETCH behind a failed EXAMINE reads no folder, or on a lax server the previous one:
    /// never used). `Ok((Err(_), _))` when the EXAMINE was refused or said no UIDVALIDITY;
    /// the FETCH part is how [`Reader::fetch_bodies`] would have ended. UIDs that do not fit
    /// into one command line are not asked for here (then nothing comes for them, and
    /// none is reported missing).
    #[allow(clippy::type_complexity)]
    pub async fn examine_fetch_bodies(
        &mut self,
        wire_name: &WireName,
        uids: &[u32],
        mut on_body: impl FnMut(u32, Vec<u8>),
    ) -> Result<
        (
            Result<FolderStatus, ImapError>,
            Result<BodiesOutcome, ImapError>,
        ),
        ImapError,
    > {
        self.selected = None;
        let display = format!("EXAMINE {}", self.quoted(wire_name, "EXAMINE")?);
        let sets = uid_sets(uids, MAX_UID_SET);
        let mut commands = vec![display.clone()];
        if let [set] = sets.as_slice() {
            commands.push(format!("UID FETCH {set} BODY.PEEK[]"));
        }
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let (mut uidvalidity, mut uidnext, mut exists) = (None, None, None);
        let mut bodies: Vec<(u32, Vec<u8>)> = Vec::with_capacity(uids.len());
        let mut received: HashSet<u32> = HashSet::with_capacity(uids.len());
        // A response that cannot be parsed is an error (never a message taken as gone).
        let mut unparsable: Option<Vec<u8>> = None;
        let ends = self
            .pipeline(&commands, "EXAMINE + UID FETCH BODY.PEEK[]", |i, raw| {
                let Ok((_, response)) = Response::parse(raw) else {
                    unparsable.get_or_insert_with(|| raw.to_vec());
                    return;
                };
                if i == 0 {
                    match response {
                        Response::Data {
                            status: Status::Ok,
                            outcome,
                        } => match outcome.code {
                            Some(ResponseCode::UidValidity(v)) => uidvalidity = Some(v),
                            Some(ResponseCode::UidNext(v)) => uidnext = Some(v),
                            _ => {}
                        },
                        Response::MailboxData(MailboxDatum::Exists(n)) => exists = Some(n),
                        _ => {}
                    }
                    return;
                }
                let Response::Fetch(_, attrs) = response else {
                    return;
                };
                if let Some((uid, body)) = uid_and_body(&attrs) {
                    if wanted.contains(&uid) && received.insert(uid) {
                        bodies.push((uid, body.to_vec()));
                    }
                }
            })
            .await?;
        if let Some(raw) = unparsable {
            return Err(self
                .ep
                .unparsable_raw("EXAMINE + UID FETCH BODY.PEEK[]", &raw));
        }
        let mut ends = ends.into_iter();
        let examined = (|| {
            ends.next()
                .expect("one answer per command")
                .ok_or_protocol(&self.ep, &display)?;
            self.examined(&display, uidvalidity, exists)
        })();
        let (uidvalidity, exists) = match examined {
            Ok(v) => v,
            Err(e) => {
                let fetch = Err(self
                    .ep
                    .protocol("UID FETCH BODY.PEEK[]", "the EXAMINE failed"));
                return Ok((Err(e), fetch));
            }
        };
        self.selected = Some(wire_name.clone());
        let fetched = match ends.next() {
            // Not sent: nothing came, and nothing is known to be gone.
            None => Ok(BodiesOutcome::default()),
            Some(end) => {
                let mut outcome = BodiesOutcome::default();
                match end {
                    CommandEnd::Ok => Ok(()),
                    // Dovecot answers NO when some messages vanished; the rest still came.
                    CommandEnd::No(text) => {
                        outcome.server_text = Some(text);
                        Ok(())
                    }
                    CommandEnd::Bad(text) => Err(self.ep.protocol("UID FETCH BODY.PEEK[]", text)),
                }
                .map(|()| {
                    for (uid, body) in bodies {
                        on_body(uid, body);
                    }
                    let mut missing: Vec<u32> = wanted.difference(&received).copied().collect();
                    missing.sort_unstable();
                    outcome.missing = missing;
                    outcome
                })
            }
        };
        if uidnext.is_none() {
            uidnext = self.status_uidnext(wire_name).await?;
        }
        Ok((
            Ok(FolderStatus {
                uidvalidity,
                uidnext,
                exists,
            }),
            fetched,
        ))
    }

    /// Writes `LOGOUT` and closes without waiting for the answer: nothing the server could
    /// say changes what was read, and across the internet the wait is a round trip.
    pub async fn close(mut self) {
        if self.broken.is_some() || self.busy {
            return;
        }
        let stream = self.session.get_mut();
        let _ = stream.write_all(b"L1 LOGOUT\r\n").await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}

/// The word after `* ` (`LIST`, `STATUS`, `NAMESPACE`, ...), or empty.
fn response_word(raw: &[u8]) -> &str {
    let rest = raw.strip_prefix(b"* ").unwrap_or(b"");
    let end = rest
        .iter()
        .position(|b| *b == b' ' || *b == b'\r' || *b == b'\n')
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).unwrap_or("")
}

fn mailbox_status(status: &[StatusAttribute]) -> MailboxStatus {
    let mut out = MailboxStatus::default();
    for s in status {
        match s {
            StatusAttribute::UidValidity(v) => out.uidvalidity = Some(*v),
            StatusAttribute::UidNext(v) => out.uidnext = Some(*v),
            StatusAttribute::Messages(v) => out.messages = Some(*v),
            StatusAttribute::HighestModSeq(v) => out.highestmodseq = Some(*v),
            _ => {}
        }
    }
    out
}

/// UID and FLAGS of a FETCH response; `None` without both.
fn fetched_flags(attrs: &[AttributeValue<'_>]) -> Option<FetchedMeta> {
    let mut uid = None;
    let mut flags = None;
    for attr in attrs {
        match attr {
            AttributeValue::Uid(u) => uid = Some(*u),
            AttributeValue::Flags(f) => {
                flags = Some(
                    f.iter()
                        .filter(|f| keep_flag(f))
                        .map(|f| f.to_string())
                        .collect(),
                )
            }
            _ => {}
        }
    }
    Some(FetchedMeta {
        uid: uid?,
        flags: flags?,
        internal_date: None,
        size: 0,
        header: Vec::new(),
    })
}

fn merge_attributes(entries: &mut [ListEntry], extra: Vec<ListEntry>) {
    for x in extra {
        if let Some(e) = entries.iter_mut().find(|e| e.wire_name == x.wire_name) {
            for a in x.attributes {
                if !e.attributes.iter().any(|b| b.eq_ignore_ascii_case(&a)) {
                    e.attributes.push(a);
                }
            }
        }
    }
}
