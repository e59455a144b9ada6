//! The read-only side of a connection. `Reader` has no method that changes anything on a
//! server: EXAMINE, LIST, LSUB, STATUS, NAMESPACE, CAPABILITY and `UID FETCH` with
//! `BODY.PEEK` are all it can send (that is how the source stays untouched: by type).
//!
//! Commands go through async-imap's `run_command`/`read_response` and are interpreted here,
//! because its high-level helpers turn a tagged NO into an empty success (FETCH, LIST) and
//! feed a bounded channel with unsolicited responses. Any I/O error, timeout, parse error or
//! a future dropped mid-command leaves the session unusable; later calls fail at once.

use std::collections::HashSet;
use std::time::Duration;

use async_imap::Session;
use imap_proto::{
    AttributeValue, MailboxDatum, NameAttribute, Outcome, Response, ResponseCode, Status,
};

use super::auth::{self, Credentials};
use super::error::{Endpoint, ImapError};
use super::namespace::{namespace_data, parse_namespace_data, Namespace};
use super::transport::{self, Capabilities, ImapIo};
use super::wire::{
    internal_date_to_rfc3339, keep_flag, quote, uid_and_body, uid_sets, unescape_quoted,
};
use crate::model::{FolderStatus, WireName};
use crate::settings::{Limits, ServerSettings};

/// One LIST answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The name as LIST returned it (modified UTF-7), quoting removed: the folder's identity.
    pub wire_name: WireName,
    pub delimiter: Option<char>,
    /// Attributes as sent (`\HasNoChildren`, `\Noselect`, `\Sent`, ...).
    pub attributes: Vec<String>,
}

impl ListEntry {
    /// `\Noselect` or `\NonExistent`: a name in the tree, not a folder to examine.
    pub fn is_noselect(&self) -> bool {
        self.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }
}

/// One LIST (or LSUB) answer as a [`ListEntry`], quoting removed.
pub(super) fn list_entry(data: &imap_proto::MailboxListData<'_>) -> ListEntry {
    ListEntry {
        wire_name: WireName::new(unescape_quoted(&data.name)),
        delimiter: data
            .delimiter
            .as_deref()
            .and_then(|d| unescape_quoted(d).chars().next()),
        attributes: data.name_attributes.iter().map(attribute_name).collect(),
    }
}

/// Metadata of one message from the inventory FETCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMeta {
    pub uid: u32,
    /// Flags and keywords, `\Recent` removed.
    pub flags: Vec<String>,
    /// INTERNALDATE as RFC 3339 with the server's offset; `None` if absent or unparsable.
    pub internal_date: Option<String>,
    pub size: u64,
    /// The `HEADER.FIELDS (MESSAGE-ID DATE FROM TO CC SUBJECT)` bytes.
    pub header: Vec<u8>,
}

/// One piece of a message read with [`Reader::fetch_piece`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// RFC822.SIZE now: the length of the whole message.
    pub size: u64,
    /// The bytes from the offset asked for (shorter at the end of the message).
    pub data: Vec<u8>,
}

/// What [`Reader::fetch_bodies`] could not deliver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodiesOutcome {
    /// Requested UIDs the server sent no body for (expunged meanwhile, or refused).
    pub missing: Vec<u32>,
    /// The server's words when it answered NO to (part of) the request.
    pub server_text: Option<String>,
}

/// A message found by [`Reader::arrived_after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub uid: u32,
    /// INTERNALDATE: when the server received the message.
    pub internal_date: chrono::DateTime<chrono::Utc>,
}

/// The metadata items of the inventory FETCH (ARCHITECTURE.md "Message identity").
pub(super) const META_ITEMS: &str =
    "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE FROM TO CC SUBJECT)])";

/// Longest UID set per `UID FETCH` (servers cap command lines; Dovecot at 64 KiB).
pub(super) const MAX_UID_SET: usize = 8_000;

/// A logged-in, read-only IMAP session.
pub struct Reader {
    pub(super) session: Session<ImapIo>,
    pub(super) ep: Endpoint,
    pub(super) idle: Duration,
    caps: Capabilities,
    /// The folder of the last successful EXAMINE.
    pub(super) selected: Option<WireName>,
    /// Set once the session is out of step with the server; the reason.
    pub(super) broken: Option<String>,
    /// A command started and did not finish (its future was dropped): the session is dead.
    pub(super) busy: bool,
    pub(super) raw_tags: u32,
    /// The server refused `STATUS … (APPENDLIMIT)` once: it is not asked again.
    no_status_appendlimit: bool,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("host", &self.ep.host)
            .field("port", &self.ep.port)
            .field("selected", &self.selected)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// What an EXAMINE (or SELECT) must have said: UIDVALIDITY (without it UIDs cannot be
    /// trusted) and EXISTS.
    pub(super) fn examined(
        &self,
        display: &str,
        uidvalidity: Option<u32>,
        exists: Option<u32>,
    ) -> Result<(u32, u32), ImapError> {
        let uidvalidity = uidvalidity.ok_or_else(|| {
            self.ep.protocol(
                display,
                "the server sent no UIDVALIDITY; its UIDs cannot be trusted",
            )
        })?;
        let exists =
            exists.ok_or_else(|| self.ep.protocol(display, "the server sent no EXISTS"))?;
        Ok((uidvalidity, exists))
    }

    /// Connects (TLS as configured), logs in and reads the capabilities.
    pub async fn connect(
        server: &ServerSettings,
        limits: &Limits,
        creds: &Credentials,
    ) -> Result<Reader, ImapError> {
        let ep = Endpoint {
            host: server.host.clone(),
            port: server.port,
        };
        let greeted = transport::open(server, limits, &ep).await?;
        let (session, login_caps) = auth::login(greeted, server, limits, creds, &ep).await?;
        let mut reader = Reader {
            session,
            ep,
            idle: limits.idle_timeout,
            caps: Capabilities::default(),
            selected: None,
            broken: None,
            busy: false,
            raw_tags: 0,
            no_status_appendlimit: false,
        };
        // Capabilities may change with login (Dovecot announces more afterwards): those of
        // the login's tagged OK when it had them, else asked for (a round trip).
        if let Some(caps) = login_caps {
            reader.caps = caps;
            return Ok(reader);
        }
        let mut atoms = Vec::new();
        reader
            .run("CAPABILITY", "CAPABILITY", |r| {
                if let Response::Capabilities(caps) = r {
                    atoms.extend(caps.iter().map(capability_atom));
                }
            })
            .await?
            .ok_or_protocol(&reader.ep, "CAPABILITY")?;
        reader.caps = Capabilities::from_atoms(atoms.iter().map(String::as_str));
        Ok(reader)
    }

    /// Capabilities after login.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// RFC 7889: the server-wide `APPENDLIMIT=N` capability, in bytes (`None` when not
    /// offered, or offered without a number: then the limit is per folder).
    pub fn append_limit(&self) -> Option<u64> {
        self.caps
            .iter()
            .find_map(|c| c.strip_prefix("APPENDLIMIT="))
            .and_then(|n| n.parse().ok())
    }

    /// RFC 7889: `APPENDLIMIT` offered without a number: the limit is per folder, asked
    /// with [`Reader::folder_append_limit`].
    pub fn per_folder_append_limits(&self) -> bool {
        self.caps
            .iter()
            .any(|c| c.eq_ignore_ascii_case("APPENDLIMIT"))
    }

    /// RFC 7889 `STATUS name (APPENDLIMIT)`: the folder's own limit in bytes; `None` when
    /// the server says `NIL` (no limit), does not say, or refuses the item (Dovecot 2.3
    /// advertises a bare `APPENDLIMIT` when configured to but answers BAD here; then it is
    /// not asked again on this session, with one warning). Sent raw: imap-proto 0.17 does
    /// not know the item. Read-only.
    pub async fn folder_append_limit(
        &mut self,
        wire_name: &WireName,
    ) -> Result<Option<u64>, ImapError> {
        if self.no_status_appendlimit {
            return Ok(None);
        }
        let name = self.quoted(wire_name, "STATUS")?;
        self.begin()?;
        self.raw_tags += 1;
        let tag = format!("L{}", self.raw_tags);
        let result = transport::raw_command(
            self.session.get_mut(),
            &tag,
            &format!("STATUS {name} (APPENDLIMIT)"),
            &self.ep,
            self.idle,
        )
        .await;
        let (untagged, done) = self.finish(result)?;
        if !done.ok {
            self.no_status_appendlimit = true;
            tracing::warn!(host = %self.ep.host, text = %done.text, "the server offers APPENDLIMIT per folder but refuses STATUS (APPENDLIMIT); messages too big for a folder are found only when it refuses them");
            return Ok(None);
        }
        Ok(untagged
            .iter()
            .find_map(|line| parse_status_append_limit(&String::from_utf8_lossy(line))))
    }

    /// RFC 9208 `GETQUOTAROOT`: the `STORAGE` resource of the folder's quota roots as
    /// (used, limit) in bytes (the protocol counts KiB), the tightest root when there are
    /// several. `None` without QUOTA, or when no root limits storage. Read-only.
    pub async fn storage_quota(
        &mut self,
        wire_name: &WireName,
    ) -> Result<Option<(u64, u64)>, ImapError> {
        if !self.caps.has("QUOTA") {
            return Ok(None);
        }
        let name = self.quoted(wire_name, "GETQUOTAROOT")?;
        self.begin()?;
        self.raw_tags += 1;
        let tag = format!("Q{}", self.raw_tags);
        let result = transport::raw_command(
            self.session.get_mut(),
            &tag,
            &format!("GETQUOTAROOT {name}"),
            &self.ep,
            self.idle,
        )
        .await;
        let (untagged, done) = self.finish(result)?;
        if !done.ok {
            tracing::warn!(host = %self.ep.host, text = %done.text, "GETQUOTAROOT refused; the plan cannot tell whether the copy fits");
            return Ok(None);
        }
        Ok(untagged
            .iter()
            .filter_map(|line| parse_storage_quota(&String::from_utf8_lossy(line)))
            .min_by_key(|(used, limit)| limit.saturating_sub(*used)))
    }

    /// `LIST "" "*"`, with special-use attributes. Dovecot sends them in a plain LIST; a
    /// server that offers SPECIAL-USE but did not is asked again with
    /// `RETURN (SPECIAL-USE)` (RFC 6154) and the attributes are merged.
    pub async fn list_all(&mut self) -> Result<Vec<ListEntry>, ImapError> {
        let mut entries = self.list_command("LIST \"\" \"*\"", "LIST").await?;
        let has_special_use = entries
            .iter()
            .any(|e| e.attributes.iter().any(|a| is_special_use(a)));
        if !has_special_use && self.caps.has("SPECIAL-USE") {
            let extra = self
                .list_command(
                    "LIST \"\" \"*\" RETURN (SPECIAL-USE)",
                    "LIST RETURN (SPECIAL-USE)",
                )
                .await?;
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
        Ok(entries)
    }

    /// `LSUB "" "*"`: the subscribed names (wire form, unescaped).
    pub async fn subscribed(&mut self) -> Result<Vec<WireName>, ImapError> {
        let entries = self.list_command("LSUB \"\" \"*\"", "LSUB").await?;
        Ok(entries.into_iter().map(|e| e.wire_name).collect())
    }

    pub(super) async fn list_command(
        &mut self,
        command: &str,
        display: &str,
    ) -> Result<Vec<ListEntry>, ImapError> {
        let mut entries = Vec::new();
        self.run(command, display, |r| {
            if let Response::MailboxData(MailboxDatum::List(data)) = r {
                entries.push(list_entry(data));
            }
        })
        .await?
        .ok_or_protocol(&self.ep, display)?;
        Ok(entries)
    }

    /// The personal namespace, `None` when the server has no NAMESPACE (or no personal
    /// namespace, or an answer we cannot read: then the caller guesses from LIST).
    ///
    /// Sent raw, below async-imap: imap-proto 0.17 cannot parse Dovecot's answer and would
    /// kill the session.
    pub async fn namespace(&mut self) -> Result<Option<Namespace>, ImapError> {
        if !self.caps.has("NAMESPACE") {
            return Ok(None);
        }
        self.begin()?;
        self.raw_tags += 1;
        let tag = format!("NS{}", self.raw_tags);
        let result = transport::raw_command(
            self.session.get_mut(),
            &tag,
            "NAMESPACE",
            &self.ep,
            self.idle,
        )
        .await;
        let (untagged, done) = self.finish(result)?;
        if !done.ok {
            tracing::warn!(host = %self.ep.host, text = %done.text, "NAMESPACE refused; guessing the prefix from LIST");
            return Ok(None);
        }
        for response in &untagged {
            if let Some(data) = namespace_data(response) {
                return match parse_namespace_data(data) {
                    Ok(ns) => Ok(ns),
                    Err(why) => {
                        tracing::warn!(host = %self.ep.host, %why, "unreadable NAMESPACE answer; guessing the prefix from LIST");
                        Ok(None)
                    }
                };
            }
        }
        Ok(None)
    }

    /// `EXAMINE` (read-only select). UIDVALIDITY is required; a missing UIDNEXT is asked
    /// for with STATUS.
    pub async fn examine(&mut self, wire_name: &WireName) -> Result<FolderStatus, ImapError> {
        self.selected = None;
        let name = self.quoted(wire_name, "EXAMINE")?;
        let display = format!("EXAMINE {name}");
        let (mut uidvalidity, mut uidnext, mut exists) = (None, None, None);
        self.run(&format!("EXAMINE {name}"), &display, |r| match r {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => match outcome.code {
                Some(ResponseCode::UidValidity(v)) => uidvalidity = Some(v),
                Some(ResponseCode::UidNext(v)) => uidnext = Some(v),
                _ => {}
            },
            Response::MailboxData(MailboxDatum::Exists(n)) => exists = Some(*n),
            _ => {}
        })
        .await?
        .ok_or_protocol(&self.ep, &display)?;
        let (uidvalidity, exists) = self.examined(&display, uidvalidity, exists)?;
        self.selected = Some(wire_name.clone());
        if uidnext.is_none() {
            uidnext = self.status_uidnext(wire_name).await?;
        }
        Ok(FolderStatus {
            uidvalidity,
            uidnext,
            exists,
        })
    }

    /// `STATUS name (UIDNEXT)`; `None` if the server does not say.
    pub(super) async fn status_uidnext(
        &mut self,
        wire_name: &WireName,
    ) -> Result<Option<u32>, ImapError> {
        let name = self.quoted(wire_name, "STATUS")?;
        let display = format!("STATUS {name} (UIDNEXT)");
        let mut uidnext = None;
        self.run(&display, &display, |r| {
            if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
                for s in status {
                    if let imap_proto::StatusAttribute::UidNext(n) = s {
                        uidnext = Some(*n);
                    }
                }
            }
        })
        .await?
        .ok_or_protocol(&self.ep, &display)?;
        Ok(uidnext)
    }

    /// One streamed `UID FETCH 1:*` of the inventory items for the examined folder
    /// (nothing is sent when `exists` is 0). Fewer messages than `exists` is an error:
    /// a refused or cut FETCH must never look like an empty folder.
    pub async fn fetch_metadata(
        &mut self,
        exists: u32,
        mut on_message: impl FnMut(FetchedMeta),
    ) -> Result<(), ImapError> {
        let folder = self.selected_folder("UID FETCH")?;
        if exists == 0 {
            return Ok(());
        }
        let mut seen = HashSet::with_capacity(exists as usize);
        let command = format!("UID FETCH 1:* {META_ITEMS}");
        self.run(&command, "UID FETCH 1:* (metadata)", |r| {
            let Response::Fetch(_, attrs) = r else { return };
            if let Some(meta) = fetched_meta(attrs) {
                if seen.insert(meta.uid) {
                    on_message(meta);
                }
            }
        })
        .await?
        .ok_or_protocol(&self.ep, "UID FETCH 1:* (metadata)")?;
        let received = seen.len() as u32;
        if received < exists {
            return Err(ImapError::IncompleteFetch {
                host: self.ep.host.clone(),
                port: self.ep.port,
                folder: folder.as_str().to_owned(),
                expected: exists,
                received,
            });
        }
        Ok(())
    }

    /// `UID FETCH <uids> BODY.PEEK[]` for the examined folder, as few commands as the
    /// command-line limit allows. Every body is passed to `on_body` as it arrives; UIDs
    /// the server did not deliver are returned in [`BodiesOutcome::missing`].
    pub async fn fetch_bodies(
        &mut self,
        uids: &[u32],
        mut on_body: impl FnMut(u32, Vec<u8>),
    ) -> Result<BodiesOutcome, ImapError> {
        self.selected_folder("UID FETCH")?;
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let mut received = HashSet::with_capacity(wanted.len());
        let mut outcome = BodiesOutcome::default();
        for set in uid_sets(uids, MAX_UID_SET) {
            let done = self
                .run(
                    &format!("UID FETCH {set} BODY.PEEK[]"),
                    "UID FETCH BODY.PEEK[]",
                    |r| {
                        let Response::Fetch(_, attrs) = r else { return };
                        if let Some((uid, body)) = uid_and_body(attrs) {
                            if wanted.contains(&uid) && received.insert(uid) {
                                on_body(uid, body.to_vec());
                            }
                        }
                    },
                )
                .await?;
            match done {
                CommandEnd::Ok => {}
                // Dovecot answers NO when some messages vanished; the rest still came.
                CommandEnd::No(text) => outcome.server_text = Some(text),
                CommandEnd::Bad(text) => {
                    return Err(self.ep.protocol("UID FETCH BODY.PEEK[]", text))
                }
            }
        }
        let mut missing: Vec<u32> = wanted.difference(&received).copied().collect();
        missing.sort_unstable();
        outcome.missing = missing;
        Ok(outcome)
    }

    /// One piece of a big message: `UID FETCH <uid> (RFC822.SIZE BODY.PEEK[]<offset.len>)`
    /// in the examined folder. Async-imap buffers a whole FETCH literal, so a big message
    /// read in pieces never has more than one piece in memory. `None` when the server sent
    /// nothing for `uid` (the message is gone).
    pub async fn fetch_piece(
        &mut self,
        uid: u32,
        offset: u64,
        len: u64,
    ) -> Result<Option<Piece>, ImapError> {
        self.selected_folder("UID FETCH")?;
        let mut piece: Option<Piece> = None;
        let mut size: Option<u64> = None;
        let done = self
            .run(
                &format!("UID FETCH {uid} (RFC822.SIZE BODY.PEEK[]<{offset}.{len}>)"),
                "UID FETCH BODY.PEEK[]<offset.length>",
                |r| {
                    let Response::Fetch(_, attrs) = r else { return };
                    let mut this_uid = None;
                    let mut data = None;
                    let mut this_size = None;
                    for attr in attrs {
                        match attr {
                            AttributeValue::Uid(u) => this_uid = Some(*u),
                            AttributeValue::Rfc822Size(n) => this_size = Some(u64::from(*n)),
                            AttributeValue::BodySection {
                                section: None,
                                data: Some(d),
                                ..
                            } => data = Some(d),
                            _ => {}
                        }
                    }
                    if this_uid != Some(uid) {
                        return;
                    }
                    if this_size.is_some() {
                        size = this_size;
                    }
                    if let Some(d) = data {
                        piece = Some(Piece {
                            size: 0,
                            data: d.to_vec(),
                        });
                    }
                },
            )
            .await?;
        match done {
            CommandEnd::Ok => {}
            // Dovecot answers NO for an expunged message (nothing came: gone); a temporary
            // refusal is an error to retry.
            CommandEnd::No(text)
                if piece.is_some()
                    || super::session::classify_words(&text)
                        == super::session::Transience::Permanent => {}
            CommandEnd::No(text) | CommandEnd::Bad(text) => {
                return Err(self
                    .ep
                    .protocol("UID FETCH BODY.PEEK[]<offset.length>", text))
            }
        }
        Ok(match (piece, size) {
            (Some(mut p), Some(size)) => {
                p.size = size;
                Some(p)
            }
            // A server that answers a partial FETCH beyond the end with no data at all.
            (None, Some(size)) if offset >= size => Some(Piece {
                size,
                data: Vec::new(),
            }),
            _ => None,
        })
    }

    /// `UID FETCH <uids> BODY.PEEK[TEXT]` for the examined folder: the message bodies
    /// without the header, used only to tell apart messages whose identity headers are
    /// equal (ambiguous groups). UIDs the server did not deliver are returned.
    pub async fn fetch_texts(
        &mut self,
        uids: &[u32],
        mut on_text: impl FnMut(u32, &[u8]),
    ) -> Result<Vec<u32>, ImapError> {
        self.selected_folder("UID FETCH")?;
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let mut received = HashSet::with_capacity(wanted.len());
        for set in uid_sets(uids, MAX_UID_SET) {
            let done = self
                .run(
                    &format!("UID FETCH {set} BODY.PEEK[TEXT]"),
                    "UID FETCH BODY.PEEK[TEXT]",
                    |r| {
                        let Response::Fetch(_, attrs) = r else { return };
                        let mut uid = None;
                        let mut text: Option<&[u8]> = None;
                        for attr in attrs {
                            match attr {
                                AttributeValue::Uid(u) => uid = Some(*u),
                                AttributeValue::BodySection { data, .. } => {
                                    text = Some(data.as_deref().unwrap_or(&[]))
                                }
                                _ => {}
                            }
                        }
                        if let (Some(uid), Some(text)) = (uid, text) {
                            if wanted.contains(&uid) && received.insert(uid) {
                                on_text(uid, text);
                            }
                        }
                    },
                )
                .await?;
            match done {
                CommandEnd::Ok | CommandEnd::No(_) => {}
                CommandEnd::Bad(text) => {
                    return Err(self.ep.protocol("UID FETCH BODY.PEEK[TEXT]", text))
                }
            }
        }
        let mut missing: Vec<u32> = wanted.difference(&received).copied().collect();
        missing.sort_unstable();
        Ok(missing)
    }

    /// Messages of the examined folder whose INTERNALDATE is at or after `after`
    /// (INTERNALDATE has whole seconds: a message of the same second counts):
    /// `UID SEARCH SINCE <day before>` (SEARCH compares dates only, in the server's time
    /// zone, so the day before is a safe superset), then `UID FETCH (UID INTERNALDATE)` of
    /// the candidates, compared to the second. Read-only like every other command here.
    pub async fn arrived_after(
        &mut self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Arrival>, ImapError> {
        self.selected_folder("UID SEARCH")?;
        let day = (after - chrono::Duration::days(1)).format("%d-%b-%Y");
        let display = format!("UID SEARCH SINCE {day}");
        let mut candidates: Vec<u32> = Vec::new();
        self.run(&display, &display, |r| {
            if let Response::MailboxData(MailboxDatum::Search(uids)) = r {
                candidates.extend(uids.iter().copied());
            }
        })
        .await?
        .ok_or_protocol(&self.ep, &display)?;
        let mut arrivals = Vec::new();
        let mut seen = HashSet::new();
        for set in uid_sets(&candidates, MAX_UID_SET) {
            let display = "UID FETCH (UID INTERNALDATE)";
            self.run(
                &format!("UID FETCH {set} (UID INTERNALDATE)"),
                display,
                |r| {
                    let Response::Fetch(_, attrs) = r else { return };
                    let mut uid = None;
                    let mut date = None;
                    for attr in attrs {
                        match attr {
                            AttributeValue::Uid(u) => uid = Some(*u),
                            AttributeValue::InternalDate(d) => {
                                date = internal_date_to_rfc3339(d)
                                    .and_then(|d| chrono::DateTime::parse_from_rfc3339(&d).ok())
                            }
                            _ => {}
                        }
                    }
                    if let (Some(uid), Some(date)) = (uid, date) {
                        let internal_date = date.with_timezone(&chrono::Utc);
                        if internal_date >= after && seen.insert(uid) {
                            arrivals.push(Arrival { uid, internal_date });
                        }
                    }
                },
            )
            .await?
            .ok_or_protocol(&self.ep, display)?;
        }
        arrivals.sort_by_key(|a| (a.internal_date, a.uid));
        Ok(arrivals)
    }

    /// UIDs of the examined folder at or above `first` (`UID SEARCH UID first:*`, which
    /// always matches the highest UID, hence the filter).
    pub async fn uids_from(&mut self, first: u32) -> Result<Vec<u32>, ImapError> {
        self.selected_folder("UID SEARCH")?;
        let display = format!("UID SEARCH UID {first}:*");
        let mut uids: Vec<u32> = Vec::new();
        self.run(&display, &display, |r| {
            if let Response::MailboxData(MailboxDatum::Search(found)) = r {
                uids.extend(found.iter().copied().filter(|&u| u >= first));
            }
        })
        .await?
        .ok_or_protocol(&self.ep, &display)?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// `LOGOUT`. Errors are reported but the connection is gone either way.
    pub async fn logout(mut self) -> Result<(), ImapError> {
        if self.broken.is_some() || self.busy {
            return Ok(());
        }
        // The server answers BYE then the tagged OK; a closed connection is fine too.
        match self.run("LOGOUT", "LOGOUT", |_| {}).await {
            Ok(_) | Err(ImapError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn selected_folder(&self, command: &str) -> Result<WireName, ImapError> {
        self.selected.clone().ok_or_else(|| {
            self.ep
                .protocol(command, "no folder is examined (call `examine` first)")
        })
    }

    pub(super) fn quoted(&self, wire_name: &WireName, command: &str) -> Result<String, ImapError> {
        quote(wire_name.as_str()).ok_or_else(|| {
            self.ep.protocol(
                command,
                format!(
                    "the folder name {:?} contains a line break",
                    wire_name.as_str()
                ),
            )
        })
    }

    /// The guard on what the server sends ([`transport::Guard`]).
    pub(super) fn guard(&mut self) -> &mut transport::Guard {
        &mut self.session.get_mut().get_mut().guard
    }

    /// Runs `step` accepting literals of at most `max` bytes (holding `what`): a server
    /// that announces more is refused before any of it is buffered
    /// ([`ImapError::Oversized`]).
    pub(super) async fn expecting<T>(
        &mut self,
        max: u64,
        what: &'static str,
        step: impl AsyncFnOnce(&mut Reader) -> Result<T, ImapError>,
    ) -> Result<T, ImapError> {
        self.guard().expect_literals(max, what);
        let result = step(self).await;
        self.guard().reset_limit();
        result
    }

    /// Refuses to start a command on a dead session.
    pub(super) fn begin(&mut self) -> Result<(), ImapError> {
        if self.busy && self.broken.is_none() {
            self.broken = Some("an earlier command was interrupted".into());
        }
        if let Some(why) = &self.broken {
            return Err(self.ep.closed(format!("the session is unusable: {why}")));
        }
        self.busy = true;
        Ok(())
    }

    /// Ends a command: marks the session dead when the error says so.
    pub(super) fn finish<T>(&mut self, result: Result<T, ImapError>) -> Result<T, ImapError> {
        self.busy = false;
        if let Err(e) = &result {
            if e.kills_session() {
                self.broken = Some(e.to_string());
                self.selected = None;
            }
        }
        result
    }

    /// Runs one command, handing every response before the tagged one to `on_response`.
    /// Returns how it ended; I/O errors, timeouts and parse errors are errors (and kill
    /// the session).
    pub(super) async fn run(
        &mut self,
        command: &str,
        display: &str,
        on_response: impl FnMut(&Response<'_>),
    ) -> Result<CommandEnd, ImapError> {
        self.begin()?;
        let result = self.run_inner(command, display, on_response).await;
        self.finish(result)
    }

    async fn run_inner(
        &mut self,
        command: &str,
        label: &str,
        mut on_response: impl FnMut(&Response<'_>),
    ) -> Result<CommandEnd, ImapError> {
        tracing::trace!(host = %self.ep.host, command = %label, "imap command");
        let id = self
            .session
            .run_command(command)
            .await
            .map_err(|e| self.ep.async_imap_error(e, label, self.idle))?;
        let mut bye = None;
        loop {
            let response = match self.session.read_response().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Err(self.ep.closed(match bye {
                        Some(text) => format!("the server said BYE: {text}"),
                        None => format!("the server closed the connection during {label}"),
                    }))
                }
                Err(e) => return Err(self.ep.io(&e, label, self.idle)),
            };
            match response.parsed() {
                Response::Done {
                    tag,
                    status,
                    outcome,
                } if *tag == id => {
                    let text = outcome_text(outcome);
                    return Ok(match status {
                        Status::Ok => CommandEnd::Ok,
                        Status::No => CommandEnd::No(text),
                        _ => CommandEnd::Bad(text),
                    });
                }
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => {
                    let text = outcome_text(outcome);
                    // A server closes the connection after BYE (RFC 3501 §7.1.5); one that
                    // keeps it open is not waited for until the idle timeout.
                    if label != "LOGOUT" {
                        return Err(self.ep.closed(format!("the server said BYE: {text}")));
                    }
                    bye = Some(text)
                }
                other => on_response(other),
            }
        }
    }
}

/// One message of the inventory FETCH items; `None` for a FETCH response without UID or
/// header section (an unsolicited flag update, not an answer to our command).
pub(super) fn fetched_meta(attrs: &[AttributeValue<'_>]) -> Option<FetchedMeta> {
    let mut meta = FetchedMeta {
        uid: 0,
        flags: Vec::new(),
        internal_date: None,
        size: 0,
        header: Vec::new(),
    };
    let (mut has_uid, mut has_header) = (false, false);
    for attr in attrs {
        match attr {
            AttributeValue::Uid(u) => {
                meta.uid = *u;
                has_uid = true;
            }
            AttributeValue::Flags(flags) => {
                meta.flags = flags
                    .iter()
                    .filter(|f| keep_flag(f))
                    .map(|f| f.to_string())
                    .collect();
            }
            AttributeValue::InternalDate(d) => meta.internal_date = internal_date_to_rfc3339(d),
            AttributeValue::Rfc822Size(n) => meta.size = u64::from(*n),
            AttributeValue::BodySection { data, .. } => {
                has_header = true;
                meta.header = data.as_deref().map(<[u8]>::to_vec).unwrap_or_default();
            }
            _ => {}
        }
    }
    // Without a header section this is an unsolicited flag update, not our answer.
    (has_uid && has_header).then_some(meta)
}

/// How a command ended.
#[derive(Debug)]
pub(super) enum CommandEnd {
    Ok,
    No(String),
    Bad(String),
}

impl CommandEnd {
    pub(super) fn ok_or_protocol(self, ep: &Endpoint, display: &str) -> Result<(), ImapError> {
        match self {
            CommandEnd::Ok => Ok(()),
            CommandEnd::No(text) | CommandEnd::Bad(text) => Err(ep.protocol(display, text)),
        }
    }
}

/// The server's words of a status response, with the response code when it has one.
pub(super) fn outcome_text(outcome: &Outcome<'_>) -> String {
    let info = outcome.information.as_deref().unwrap_or("").trim();
    let code = match &outcome.code {
        None => None,
        Some(ResponseCode::Alert) => Some("ALERT"),
        Some(ResponseCode::Parse) => Some("PARSE"),
        Some(ResponseCode::ReadOnly) => Some("READ-ONLY"),
        Some(ResponseCode::ReadWrite) => Some("READ-WRITE"),
        Some(ResponseCode::TryCreate) => Some("TRYCREATE"),
        Some(ResponseCode::UidNotSticky) => Some("UIDNOTSTICKY"),
        Some(_) => None,
    };
    match code {
        Some(code) => format!("[{code}] {info}"),
        None => info.to_string(),
    }
}

fn capability_atom(c: &imap_proto::Capability<'_>) -> String {
    match c {
        imap_proto::Capability::Imap4rev1 => "IMAP4rev1".to_string(),
        imap_proto::Capability::Auth(mech) => format!("AUTH={mech}"),
        imap_proto::Capability::Atom(atom) => atom.to_string(),
    }
}

pub(super) fn attribute_name(a: &NameAttribute<'_>) -> String {
    match a {
        NameAttribute::NoInferiors => "\\Noinferiors",
        NameAttribute::NoSelect => "\\Noselect",
        NameAttribute::Marked => "\\Marked",
        NameAttribute::Unmarked => "\\Unmarked",
        NameAttribute::All => "\\All",
        NameAttribute::Archive => "\\Archive",
        NameAttribute::Drafts => "\\Drafts",
        NameAttribute::Flagged => "\\Flagged",
        NameAttribute::Junk => "\\Junk",
        NameAttribute::Sent => "\\Sent",
        NameAttribute::Trash => "\\Trash",
        NameAttribute::Extension(s) => return s.to_string(),
        #[allow(unreachable_patterns)]
        _ => return format!("{a:?}"),
    }
    .to_string()
}

pub(super) fn is_special_use(attr: &str) -> bool {
    crate::model::SpecialUse::from_attribute(attr).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn attribute_names_round_trip_to_special_use() {
        assert_eq!(attribute_name(&NameAttribute::Sent), "\\Sent");
        assert_eq!(attribute_name(&NameAttribute::NoSelect), "\\Noselect");
        assert_eq!(
            attribute_name(&NameAttribute::Extension(Cow::Borrowed("\\HasNoChildren"))),
            "\\HasNoChildren"
        );
        assert!(is_special_use("\\sent"));
        assert!(!is_special_use("\\HasChildren"));
    }

    #[test]
    fn outcome_texts() {
        let o = Outcome {
            code: Some(ResponseCode::TryCreate),
            information: Some(Cow::Borrowed("Mailbox doesn't exist")),
        };
        assert_eq!(outcome_text(&o), "[TRYCREATE] Mailbox doesn't exist");
        let o = Outcome {
            code: None,
            information: Some(Cow::Borrowed("[NONEXISTENT] Mailbox doesn't exist: X")),
        };
        assert_eq!(outcome_text(&o), "[NONEXISTENT] Mailbox doesn't exist: X");
    }
}

/// `* STATUS name (… APPENDLIMIT n …)` → `Some(n)`; `NIL`, another answer or no such item
/// → `None`. The item list is the last parenthesised group (a name may hold parentheses).
fn parse_status_append_limit(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("* ")?;
    let (word, rest) = rest.split_once(' ')?;
    if !word.eq_ignore_ascii_case("STATUS") {
        return None;
    }
    let list = &rest[rest.rfind('(')? + 1..];
    let list = list.trim_end().trim_end_matches(')');
    let items: Vec<&str> = list.split_whitespace().collect();
    items
        .chunks_exact(2)
        .find(|c| c[0].eq_ignore_ascii_case("APPENDLIMIT"))
        .and_then(|c| c[1].parse().ok())
}

/// `* QUOTA "root" (STORAGE 10 1024 MESSAGE 3 100)` → (used, limit) of STORAGE, in bytes.
pub(super) fn parse_storage_quota(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("* ")?;
    let (word, rest) = rest.split_once(' ')?;
    if !word.eq_ignore_ascii_case("QUOTA") {
        return None;
    }
    let list = &rest[rest.rfind('(')? + 1..];
    let list = list.trim_end().trim_end_matches(')');
    let items: Vec<&str> = list.split_whitespace().collect();
    items.chunks_exact(3).find_map(|c| {
        let used: u64 = c[1].parse().ok()?;
        let limit: u64 = c[2].parse().ok()?;
        c[0].eq_ignore_ascii_case("STORAGE")
            .then_some((used.saturating_mul(1024), limit.saturating_mul(1024)))
    })
}

#[cfg(test)]
mod quota_tests {
    use super::{parse_status_append_limit, parse_storage_quota};

    #[test]
    fn status_append_limit_lines() {
        let parse = parse_status_append_limit;
        assert_eq!(
            parse("* STATUS Small (APPENDLIMIT 50000)\r\n"),
            Some(50_000)
        );
        assert_eq!(
            parse("* STATUS \"a (b)\" (MESSAGES 3 APPENDLIMIT 7)"),
            Some(7)
        );
        assert_eq!(parse("* status INBOX (appendlimit 9)"), Some(9));
        assert_eq!(parse("* STATUS INBOX (APPENDLIMIT NIL)"), None);
        assert_eq!(parse("* STATUS INBOX (MESSAGES 3)"), None);
        assert_eq!(parse("* QUOTA \"\" (APPENDLIMIT 1)"), None);
    }

    #[test]
    fn storage_quota_lines() {
        assert_eq!(
            parse_storage_quota("* QUOTA \"User quota\" (STORAGE 10 1024)\r\n"),
            Some((10 * 1024, 1024 * 1024))
        );
        assert_eq!(
            parse_storage_quota("* QUOTA \"\" (MESSAGE 3 100 STORAGE 1 2)"),
            Some((1024, 2048))
        );
        assert_eq!(parse_storage_quota("* QUOTA \"x\" (MESSAGE 3 100)"), None);
        assert_eq!(
            parse_storage_quota("* QUOTAROOT INBOX \"User quota\""),
            None
        );
    }
}
