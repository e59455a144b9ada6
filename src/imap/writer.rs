//! The destination side of a connection, and the only type in the crate that can change a
//! mailbox: CREATE, SUBSCRIBE, SELECT and APPEND. Only the apply executor holds one, and
//! only for the destination (ARCHITECTURE.md "Apply").
//!
//! It rides on a [`Reader`]'s connection (same connect, login, error handling and "dead
//! session" bookkeeping) and adds the write commands. APPEND is written raw below
//! async-imap, whose `append()` drops APPENDUID and knows neither MULTIAPPEND nor LITERAL+
//! (ARCHITECTURE.md "Server quirks"). The capabilities pick the fastest form:
//! - MULTIAPPEND: one command per chunk of messages. A NO refuses the whole chunk
//!   atomically (RFC 3502); then its messages are sent again one APPEND each, so a refused
//!   message gets its own error and the others still go in.
//! - otherwise one APPEND per message, pipelined when literals need not be synchronised
//!   (LITERAL+, or LITERAL- for literals up to 4,096 bytes, RFC 7888);
//! - otherwise synchronising literals, waiting for `+` before each message.

use std::collections::{HashMap, HashSet};
use std::fmt;

use imap_proto::rfc4315::UidSetMember;
use imap_proto::{MailboxDatum, Response, ResponseCode, Status};
use tokio::io::AsyncWriteExt;

use super::auth::Credentials;
use super::error::ImapError;
use super::reader::{fetched_meta, outcome_text, CommandEnd, FetchedMeta, Reader, META_ITEMS};
use super::transport::Capabilities;
use super::wire::{keep_flag, uid_sets, unescape_quoted};
use crate::model::{FolderStatus, WireName};
use crate::settings::{Limits, ServerSettings};

/// Largest literal accepted in an answer that carries identity header fields (a message's
/// MESSAGE-ID, DATE, FROM, TO, CC and SUBJECT): a destination announcing more is refused
/// before it is buffered ([`ImapError::Oversized`]).
pub(super) const MAX_HEADER_LITERAL: u64 = 8 << 20;

/// Most messages in one MULTIAPPEND command.
const MULTIAPPEND_MAX_ITEMS: usize = 200;
/// Most message bytes in one MULTIAPPEND command (a refused chunk is sent again).
const MULTIAPPEND_MAX_BYTES: usize = 16 << 20;
/// Largest literal LITERAL- lets us send without waiting for `+` (RFC 7888).
const LITERAL_MINUS_MAX: usize = 4096;

/// What SELECT said about a destination folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectInfo {
    pub status: FolderStatus,
    /// PERMANENTFLAGS as sent (`\Seen`, `$Forwarded`, `\*`, ...); empty if not sent.
    pub permanent_flags: Vec<String>,
    /// `\*` is in PERMANENTFLAGS: the folder stores keywords it has not seen yet.
    pub new_keywords_allowed: bool,
}

/// One message to append.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AppendItem<'a> {
    /// Flags and keywords to set; `\Recent` (and anything that is not a valid flag atom) is
    /// dropped. The caller decides which keywords the destination should get.
    pub flags: Vec<String>,
    /// INTERNALDATE as RFC 3339 (as [`FetchedMeta::internal_date`]); `None` = now.
    pub internal_date: Option<String>,
    /// The message, byte for byte.
    /// Borrowed from the caller's buffer where possible: no copy per message.
    pub body: std::borrow::Cow<'a, [u8]>,
}

impl fmt::Debug for AppendItem<'_> {
    // Never the body: message contents are not for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendItem")
            .field("flags", &self.flags)
            .field("internal_date", &self.internal_date)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The outcome of one appended message: `Ok(Some(uid))` with UIDPLUS (APPENDUID),
/// `Ok(None)` without, `Err(the server's words)` when it refused this message, e.g.
/// `[LIMIT] Mail size is larger than the maximum size allowed by server configuration`.
pub type AppendResult = Result<Option<u32>, String>;

/// What a CREATE found: the folder is new, or it was there already (made meanwhile by
/// another run or by the user), which is not a folder this run created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    AlreadyThere,
}

/// A logged-in session that may change the destination. Any `Err(ImapError)` that
/// [`ImapError::kills_session`] leaves it unusable: reconnect.
pub struct Writer {
    conn: Reader,
    /// The folder of the last successful SELECT.
    selected: Option<WireName>,
    raw_tags: u32,
    /// A command was written behind the APPEND being sent (its answer is still to read).
    then_sent: bool,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("conn", &self.conn)
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

/// What a SELECT's untagged answers said.
#[derive(Debug, Default)]
struct SelectSeen {
    uidvalidity: Option<u32>,
    uidnext: Option<u32>,
    exists: Option<u32>,
    permanent_flags: Vec<String>,
}

impl SelectSeen {
    fn take(&mut self, r: &Response<'_>) {
        match r {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => match &outcome.code {
                Some(ResponseCode::UidValidity(v)) => self.uidvalidity = Some(*v),
                Some(ResponseCode::UidNext(v)) => self.uidnext = Some(*v),
                Some(ResponseCode::PermanentFlags(flags)) => {
                    self.permanent_flags = flags.iter().map(|f| f.to_string()).collect()
                }
                _ => {}
            },
            Response::MailboxData(MailboxDatum::Exists(n)) => self.exists = Some(*n),
            _ => {}
        }
    }
}

impl Writer {
    /// Commands that work on the selected folder refuse to run without one.
    fn require_selected(&self, doing: &str) -> Result<(), ImapError> {
        match self.selected {
            Some(_) => Ok(()),
            None => Err(self
                .conn
                .ep
                .protocol(doing, "no folder is selected (call `select` first)")),
        }
    }

    /// Connects (TLS as configured), logs in and reads the capabilities, as [`Reader`].
    pub async fn connect(
        server: &ServerSettings,
        limits: &Limits,
        creds: &Credentials,
    ) -> Result<Writer, ImapError> {
        Ok(Writer {
            conn: Reader::connect(server, limits, creds).await?,
            selected: None,
            raw_tags: 0,
            then_sent: false,
        })
    }

    /// Capabilities after login.
    pub fn capabilities(&self) -> &Capabilities {
        self.conn.capabilities()
    }

    /// `CREATE`. A folder that already exists is a success: `[ALREADYEXISTS]` (RFC 5530)
    /// or, for servers without that code, a LIST that shows it.
    pub async fn create(&mut self, wire_name: &WireName) -> Result<Created, ImapError> {
        let name = self.conn.quoted(wire_name, "CREATE")?;
        let display = format!("CREATE {name}");
        let text = match self.conn.run(&display, &display, |_| {}).await? {
            CommandEnd::Ok => return Ok(Created::New),
            CommandEnd::No(text) if text.to_ascii_uppercase().contains("[ALREADYEXISTS]") => {
                return Ok(Created::AlreadyThere)
            }
            CommandEnd::No(text) => text,
            CommandEnd::Bad(text) => return Err(self.conn.ep.protocol(display, text)),
        };
        if self.exists(wire_name).await? {
            return Ok(Created::AlreadyThere);
        }
        Err(self.conn.ep.protocol(display, text))
    }

    /// CREATE of every folder, pipelined in the order given (parents before children):
    /// one round trip for all. Per folder as [`Writer::create`]: a folder that already
    /// exists is a success; a refusal is that folder's error and the others still go on.
    /// Nothing here depends on another command's success, so nothing waits; subscribing
    /// is a separate round ([`Writer::subscribe_all`]) so that a folder whose CREATE
    /// failed is never subscribed.
    pub async fn create_all(
        &mut self,
        wire_names: &[WireName],
    ) -> Result<Vec<Result<Created, ImapError>>, ImapError> {
        let mut commands = Vec::with_capacity(wire_names.len());
        for name in wire_names {
            commands.push(format!("CREATE {}", self.conn.quoted(name, "CREATE")?));
        }
        let ends = self.conn.pipeline(&commands, "CREATE", |_, _| {}).await?;
        let mut out = Vec::with_capacity(ends.len());
        for ((name, command), end) in wire_names.iter().zip(&commands).zip(ends) {
            out.push(match end {
                CommandEnd::Ok => Ok(Created::New),
                CommandEnd::No(text) if text.to_ascii_uppercase().contains("[ALREADYEXISTS]") => {
                    Ok(Created::AlreadyThere)
                }
                // Servers without [ALREADYEXISTS]: a LIST decides (rare: one round each).
                CommandEnd::No(text) => match self.exists(name).await? {
                    true => Ok(Created::AlreadyThere),
                    false => Err(self.conn.ep.protocol(command, text)),
                },
                CommandEnd::Bad(text) => Err(self.conn.ep.protocol(command, text)),
            });
        }
        Ok(out)
    }

    /// SUBSCRIBE of every folder, pipelined; per folder its outcome.
    pub async fn subscribe_all(
        &mut self,
        wire_names: &[WireName],
    ) -> Result<Vec<Result<(), ImapError>>, ImapError> {
        let mut commands = Vec::with_capacity(wire_names.len());
        for name in wire_names {
            commands.push(format!(
                "SUBSCRIBE {}",
                self.conn.quoted(name, "SUBSCRIBE")?
            ));
        }
        let ends = self
            .conn
            .pipeline(&commands, "SUBSCRIBE", |_, _| {})
            .await?;
        Ok(commands
            .iter()
            .zip(ends)
            .map(|(command, end)| end.ok_or_protocol(&self.conn.ep, command))
            .collect())
    }

    /// Whether LIST shows `wire_name` as an existing folder (selectable or not).
    async fn exists(&mut self, wire_name: &WireName) -> Result<bool, ImapError> {
        if wire_name.as_str().is_empty() {
            // `LIST "" ""` asks for the hierarchy delimiter, not for a folder.
            return Ok(false);
        }
        let name = self.conn.quoted(wire_name, "LIST")?;
        let display = format!("LIST \"\" {name}");
        let mut found = false;
        self.conn
            .run(&display, &display, |r| {
                if let Response::MailboxData(MailboxDatum::List(data)) = r {
                    let nonexistent = data.name_attributes.iter().any(|a| {
                        matches!(a, imap_proto::NameAttribute::Extension(e)
                            if e.eq_ignore_ascii_case("\\NonExistent"))
                    });
                    if unescape_quoted(&data.name) == wire_name.as_str() && !nonexistent {
                        found = true;
                    }
                }
            })
            .await?
            .ok_or_protocol(&self.conn.ep, &display)?;
        Ok(found)
    }

    /// `SUBSCRIBE`.
    pub async fn subscribe(&mut self, wire_name: &WireName) -> Result<(), ImapError> {
        let name = self.conn.quoted(wire_name, "SUBSCRIBE")?;
        let display = format!("SUBSCRIBE {name}");
        self.conn
            .run(&display, &display, |_| {})
            .await?
            .ok_or_protocol(&self.conn.ep, &display)
    }

    /// `SELECT` (read-write). UIDVALIDITY is required; a missing UIDNEXT is asked for with
    /// STATUS. Only SELECT reports the flags the folder can store (EXAMINE's
    /// PERMANENTFLAGS is always empty).
    pub async fn select(&mut self, wire_name: &WireName) -> Result<SelectInfo, ImapError> {
        self.selected = None;
        let name = self.conn.quoted(wire_name, "SELECT")?;
        let display = format!("SELECT {name}");
        let mut seen = SelectSeen::default();
        self.conn
            .run(&display, &display, |r| seen.take(r))
            .await?
            .ok_or_protocol(&self.conn.ep, &display)?;
        self.selected_by(wire_name, &display, seen).await
    }

    /// The folder `wire_name` is selected, as `seen` says (UIDVALIDITY and EXISTS are
    /// required; UIDNEXT is asked with STATUS when the SELECT did not say).
    async fn selected_by(
        &mut self,
        wire_name: &WireName,
        display: &str,
        seen: SelectSeen,
    ) -> Result<SelectInfo, ImapError> {
        let SelectSeen {
            uidvalidity,
            mut uidnext,
            exists,
            permanent_flags,
        } = seen;
        let (uidvalidity, exists) = self.conn.examined(display, uidvalidity, exists)?;
        self.selected = Some(wire_name.clone());
        if uidnext.is_none() {
            uidnext = self.conn.status_uidnext(wire_name).await?;
        }
        let new_keywords_allowed = permanent_flags.iter().any(|f| f == "\\*");
        Ok(SelectInfo {
            status: FolderStatus {
                uidvalidity,
                uidnext,
                exists,
            },
            permanent_flags,
            new_keywords_allowed,
        })
    }

    /// `UID FETCH <first_uid>:*` of the identity metadata in the selected folder, then
    /// `SELECT next`, pipelined: the key stability check of what was just appended to one
    /// folder rides in the same round trip as the SELECT of the next (RFC 9051 §5.5: the
    /// SELECT depends on nothing the FETCH answers, and a server finishes the FETCH in
    /// the old folder before it changes folders). Every message of the FETCH goes to
    /// `on_message` once the FETCH succeeded. `Ok(Err(_))` when only the SELECT was
    /// refused (the caller selects again its own way); `Err(_)` when the FETCH failed or
    /// the connection did.
    pub async fn fetch_since_then_select(
        &mut self,
        first_uid: u32,
        next: &WireName,
        mut on_message: impl FnMut(FetchedMeta),
    ) -> Result<Result<SelectInfo, ImapError>, ImapError> {
        self.require_selected("UID FETCH")?;
        let first_uid = first_uid.max(1);
        let name = self.conn.quoted(next, "SELECT")?;
        let select = format!("SELECT {name}");
        let commands = [
            format!("UID FETCH {first_uid}:* {META_ITEMS}"),
            select.clone(),
        ];
        let mut fetched: Vec<FetchedMeta> = Vec::new();
        let mut uids = HashSet::new();
        let mut seen = SelectSeen::default();
        self.selected = None;
        let ends = self
            .conn
            .pipeline(&commands, "UID FETCH + SELECT", |i, raw| {
                let Ok((_, response)) = Response::parse(raw) else {
                    return;
                };
                if i == 1 {
                    seen.take(&response);
                    return;
                }
                let Response::Fetch(_, attrs) = response else {
                    return;
                };
                if let Some(meta) = fetched_meta(&attrs) {
                    // `n:*` always includes the last message, even when its UID is < n.
                    if meta.uid >= first_uid && uids.insert(meta.uid) {
                        fetched.push(meta);
                    }
                }
            })
            .await?;
        let mut ends = ends.into_iter();
        let (fetch_end, select_end) = (ends.next(), ends.next());
        let display = format!("UID FETCH {first_uid}:* (metadata)");
        fetch_end
            .expect("one answer per command")
            .ok_or_protocol(&self.conn.ep, &display)?;
        fetched.into_iter().for_each(&mut on_message);
        if let Err(e) = select_end
            .expect("one answer per command")
            .ok_or_protocol(&self.conn.ep, &select)
        {
            return Ok(Err(e));
        }
        self.selected_by(next, &select, seen).await.map(Ok)
    }

    /// `UID STORE <uids> +FLAGS.SILENT (<flags>)` in the selected folder: adds flags to
    /// existing messages (`flags-on-existing = "add"`), never removes one. Flags that are
    /// not valid atoms, and `\Recent`, are left out. A permanent refusal is `Ok(Err(the
    /// server's words))` and leaves the session usable; a temporary one (`[UNAVAILABLE]`,
    /// throttling) is an `ImapError`, to be retried.
    pub async fn add_flags(
        &mut self,
        uids: &[u32],
        flags: &[String],
    ) -> Result<Result<(), String>, ImapError> {
        self.require_selected("UID STORE")?;
        let flags: Vec<&str> = flags
            .iter()
            .map(String::as_str)
            .filter(|f| keep_flag(f) && is_flag_atom(f))
            .collect();
        if flags.is_empty() || uids.is_empty() {
            return Ok(Ok(()));
        }
        let list = flags.join(" ");
        for set in uid_sets(uids, 8_000) {
            let command = format!("UID STORE {set} +FLAGS.SILENT ({list})");
            match self
                .conn
                .run(&command, "UID STORE +FLAGS.SILENT", |_| {})
                .await?
            {
                CommandEnd::Ok => {}
                // Refused (Dovecot: a keyword longer than `mail_max_keyword_length`): the
                // server's words; the session is fine.
                CommandEnd::No(text)
                    if super::session::classify_words(&text)
                        == super::session::Transience::Permanent =>
                {
                    return Ok(Err(text))
                }
                CommandEnd::No(text) => {
                    return Err(self.conn.ep.protocol("UID STORE +FLAGS.SILENT", text))
                }
                CommandEnd::Bad(text) => {
                    return Err(self.conn.ep.protocol("UID STORE +FLAGS.SILENT", text))
                }
            }
        }
        Ok(Ok(()))
    }

    /// The inventory metadata of every message with UID ≥ `first_uid` in the selected
    /// folder: what arrived since a plan or since a lost connection.
    pub async fn fetch_metadata_since(
        &mut self,
        first_uid: u32,
        mut on_message: impl FnMut(FetchedMeta),
    ) -> Result<(), ImapError> {
        self.require_selected("UID FETCH")?;
        let first_uid = first_uid.max(1);
        let command = format!("UID FETCH {first_uid}:* {META_ITEMS}");
        let display = format!("UID FETCH {first_uid}:* (metadata)");
        let mut seen = HashSet::new();
        let ep = self.conn.ep.clone();
        self.conn
            .expecting(MAX_HEADER_LITERAL, "identity header fields", async |conn| {
                conn.run(&command, &display, |r| {
                    let Response::Fetch(_, attrs) = r else { return };
                    if let Some(meta) = fetched_meta(attrs) {
                        // `n:*` always includes the last message, even when its UID is < n.
                        if meta.uid >= first_uid && seen.insert(meta.uid) {
                            on_message(meta);
                        }
                    }
                })
                .await
            })
            .await?
            .ok_or_protocol(&ep, &display)
    }

    /// Appends `items` to `wire_name`, in order; one result per item. A message the server
    /// refuses is an `Err(server's words)` in its slot and the others still go in. An
    /// `Err(ImapError)` is a connection-level failure (timeout, lost connection, unreadable
    /// answer): the writer is dead and what reached the server is unknown (re-read it with
    /// [`Writer::fetch_metadata_since`] on a new connection).
    pub async fn append_batch(
        &mut self,
        wire_name: &WireName,
        items: &[AppendItem<'_>],
    ) -> Result<Vec<AppendResult>, ImapError> {
        let folder = self.conn.quoted(wire_name, "APPEND")?;
        let mut results: Vec<Option<AppendResult>> = vec![None; items.len()];
        let mut prepared = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match prepare(index, item) {
                Ok(p) => prepared.push(p),
                Err(why) => results[index] = Some(Err(why)),
            }
        }
        if !prepared.is_empty() {
            self.conn.begin()?;
            let sent = self.append_prepared(&folder, items, &prepared).await;
            for (index, result) in self.conn.finish(sent)? {
                results[index] = Some(result);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("the server did not answer for this message".into())))
            .collect())
    }

    /// [`Writer::append_batch`] with `SELECT next` written right behind the last APPEND
    /// (after its literals: RFC 9051 §5.5 lets a command follow once the one before is
    /// complete), so that the next folder is selected in the same round trip. The
    /// appended messages go to `wire_name` by name; `next` is selected afterwards (the
    /// folder selected before is not any more). The second result is the SELECT's; an
    /// `Err(_)` outside is a connection-level failure, as for [`Writer::append_batch`]
    /// (what reached the server is unknown, and the SELECT's fate too).
    pub async fn append_batch_then_select(
        &mut self,
        wire_name: &WireName,
        items: &[AppendItem<'_>],
        next: &WireName,
    ) -> Result<(Vec<AppendResult>, Result<SelectInfo, ImapError>), ImapError> {
        let folder = self.conn.quoted(wire_name, "APPEND")?;
        let display = format!("SELECT {}", self.conn.quoted(next, "SELECT")?);
        let mut results: Vec<Option<AppendResult>> = vec![None; items.len()];
        let mut prepared = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match prepare(index, item) {
                Ok(p) => prepared.push(p),
                Err(why) => results[index] = Some(Err(why)),
            }
        }
        let settled = |results: Vec<Option<AppendResult>>| -> Vec<AppendResult> {
            results
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| Err("the server did not answer for this message".into()))
                })
                .collect()
        };
        if prepared.is_empty() {
            let select = self.select(next).await;
            return Ok((settled(results), select));
        }
        self.selected = None;
        self.conn.begin()?;
        self.then_sent = false;
        let tag = self.next_tag();
        let then = format!("{tag} {display}\r\n");
        let sent = self
            .append_prepared_then(&folder, items, &prepared, Some((&tag, &then)))
            .await;
        let (appended, seen) = self.conn.finish(sent)?;
        for (index, result) in appended {
            results[index] = Some(result);
        }
        let select = match seen {
            Some(Ok(seen)) => self.selected_by(next, &display, seen).await,
            Some(Err(e)) => Err(e),
            None => Err(self
                .conn
                .ep
                .protocol(&display, "the SELECT was not sent behind the APPEND")),
        };
        Ok((settled(results), select))
    }

    async fn append_prepared(
        &mut self,
        folder: &str,
        items: &[AppendItem<'_>],
        prepared: &[Prepared],
    ) -> Result<Vec<(usize, AppendResult)>, ImapError> {
        Ok(self
            .append_prepared_then(folder, items, prepared, None)
            .await?
            .0)
    }

    /// Appends `prepared`; with `then` = (tag, command line), that command is written
    /// behind the last APPEND and its answer read (a SELECT: what its untagged answers
    /// said, or how it was refused).
    #[allow(clippy::type_complexity)]
    async fn append_prepared_then(
        &mut self,
        folder: &str,
        items: &[AppendItem<'_>],
        prepared: &[Prepared],
        then: Option<(&str, &str)>,
    ) -> Result<
        (
            Vec<(usize, AppendResult)>,
            Option<Result<SelectSeen, ImapError>>,
        ),
        ImapError,
    > {
        let caps = self.conn.capabilities();
        let literals = Literals {
            plus: caps.has("LITERAL+"),
            minus: caps.has("LITERAL-"),
        };
        let multi = caps.has("MULTIAPPEND");
        let mut out = Vec::with_capacity(prepared.len());
        let mut seen = None;
        if multi && prepared.len() > 1 {
            let chunks = multiappend_chunks(items, prepared);
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                let then_here = then.filter(|_| i == last).map(|(_, line)| line);
                let result = self
                    .multiappend(folder, items, chunk, literals, then_here)
                    .await?;
                // The command behind it is answered next (also when the MULTIAPPEND was
                // refused before its last literal: then it was not sent).
                if let (Some((tag, _)), true) = (then, std::mem::take(&mut self.then_sent)) {
                    seen = Some(self.then_answer(tag).await?);
                }
                match result {
                    Ok(uids) => {
                        out.extend(chunk.iter().zip(uids).map(|(p, uid)| (p.index, Ok(uid))))
                    }
                    Err(text) => {
                        tracing::debug!(
                            host = %self.conn.ep.host,
                            %text,
                            messages = chunk.len(),
                            "MULTIAPPEND refused; appending one by one"
                        );
                        let then_again = then
                            .filter(|_| i == last && seen.is_none())
                            .map(|(_, line)| line);
                        out.extend(
                            self.append_singles(folder, items, chunk, literals, then_again)
                                .await?,
                        );
                        if let (Some((tag, _)), true) = (then, std::mem::take(&mut self.then_sent))
                        {
                            seen = Some(self.then_answer(tag).await?);
                        }
                    }
                }
            }
        } else {
            out.extend(
                self.append_singles(folder, items, prepared, literals, then.map(|(_, l)| l))
                    .await?,
            );
            if let (Some((tag, _)), true) = (then, std::mem::take(&mut self.then_sent)) {
                seen = Some(self.then_answer(tag).await?);
            }
        }
        Ok((out, seen))
    }

    /// Reads the answer to the command written behind an APPEND (a SELECT): its untagged
    /// answers until its tagged completion. `Err` inside when the server refused it.
    async fn then_answer(&mut self, tag: &str) -> Result<Result<SelectSeen, ImapError>, ImapError> {
        const LABEL: &str = "SELECT (behind APPEND)";
        let mut seen = SelectSeen::default();
        loop {
            let response = match self.conn.session.read_response().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Err(self
                        .conn
                        .ep
                        .closed(format!("the server closed the connection during {LABEL}")))
                }
                Err(e) => return Err(self.conn.ep.io(&e, LABEL, self.conn.idle)),
            };
            match response.parsed() {
                Response::Done {
                    tag: done,
                    status,
                    outcome,
                } => {
                    if done.0 != tag {
                        return Err(self.unexpected(&done.0, LABEL));
                    }
                    let text = outcome_text(outcome);
                    return Ok(match status {
                        Status::Ok => Ok(seen),
                        Status::No => Err(self.conn.ep.protocol(LABEL, text)),
                        _ => Err(self.conn.ep.protocol(LABEL, text)),
                    });
                }
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => {
                    let text = outcome_text(outcome);
                    return Err(self.conn.ep.closed(format!("the server said BYE: {text}")));
                }
                other => seen.take(other),
            }
        }
    }

    /// One MULTIAPPEND of `chunk`: per message its UID (if APPENDUID came), or the server's
    /// words when it refused the whole command.
    async fn multiappend(
        &mut self,
        folder: &str,
        items: &[AppendItem<'_>],
        chunk: &[Prepared],
        literals: Literals,
        then: Option<&str>,
    ) -> Result<Result<Vec<Option<u32>>, String>, ImapError> {
        const LABEL: &str = "MULTIAPPEND";
        let tag = self.next_tag();
        let mut head = format!("{tag} APPEND {folder}").into_bytes();
        for p in chunk {
            let body = &items[p.index].body;
            let sync = !literals.non_sync(body.len());
            p.push_head(&mut head, body.len(), sync);
            self.write(&head, LABEL).await?;
            head.clear();
            if sync {
                self.flush(LABEL).await?;
                match self.next_event(LABEL).await? {
                    Event::Continue => {}
                    Event::Done(done) if done.tag == tag => {
                        return match done.end {
                            CommandEnd::No(text) => Ok(Err(text)),
                            CommandEnd::Ok => Err(self
                                .conn
                                .ep
                                .closed("the server completed an APPEND before its message")),
                            CommandEnd::Bad(text) => Err(self.conn.ep.protocol(LABEL, text)),
                        };
                    }
                    Event::Done(done) => return Err(self.unexpected(&done.tag, LABEL)),
                }
            }
            self.write(body, LABEL).await?;
        }
        self.write(b"\r\n", LABEL).await?;
        if let Some(line) = then {
            self.write(line.as_bytes(), LABEL).await?;
            self.then_sent = true;
        }
        self.flush(LABEL).await?;
        match self.next_event(LABEL).await? {
            Event::Continue => Err(self
                .conn
                .ep
                .closed("the server asked for more data after a complete APPEND")),
            Event::Done(done) if done.tag == tag => match done.end {
                CommandEnd::Ok => Ok(Ok(assign_uids(done.uids, chunk.len()))),
                CommandEnd::No(text) => Ok(Err(text)),
                // A BAD may mean the server read our literals as commands: stop.
                CommandEnd::Bad(text) => Err(self.conn.ep.protocol(LABEL, text)),
            },
            Event::Done(done) => Err(self.unexpected(&done.tag, LABEL)),
        }
    }

    /// One APPEND per message, pipelined as far as the literals allow.
    async fn append_singles(
        &mut self,
        folder: &str,
        items: &[AppendItem<'_>],
        chunk: &[Prepared],
        literals: Literals,
        then: Option<&str>,
    ) -> Result<Vec<(usize, AppendResult)>, ImapError> {
        const LABEL: &str = "APPEND";
        let mut pending: HashMap<String, usize> = HashMap::with_capacity(chunk.len());
        let mut out = Vec::with_capacity(chunk.len());
        let mut head = Vec::with_capacity(256);
        for p in chunk {
            let body = &items[p.index].body;
            let sync = !literals.non_sync(body.len());
            let tag = self.next_tag();
            head.clear();
            head.extend_from_slice(format!("{tag} APPEND {folder}").as_bytes());
            p.push_head(&mut head, body.len(), sync);
            self.write(&head, LABEL).await?;
            pending.insert(tag.clone(), p.index);
            if sync {
                self.flush(LABEL).await?;
                // Earlier APPENDs may complete before the server asks for this literal.
                let proceed = loop {
                    match self.next_event(LABEL).await? {
                        Event::Continue => break true,
                        Event::Done(done) => {
                            let mine = done.tag == tag;
                            out.push(self.single_result(&mut pending, done)?);
                            if mine {
                                break false;
                            }
                        }
                    }
                };
                if !proceed {
                    continue;
                }
            }
            self.write(body, LABEL).await?;
            self.write(b"\r\n", LABEL).await?;
        }
        if let Some(line) = then {
            self.write(line.as_bytes(), LABEL).await?;
            self.then_sent = true;
        }
        self.flush(LABEL).await?;
        while !pending.is_empty() {
            match self.next_event(LABEL).await? {
                Event::Continue => {
                    return Err(self
                        .conn
                        .ep
                        .closed("the server asked for more data after a complete APPEND"))
                }
                Event::Done(done) => out.push(self.single_result(&mut pending, done)?),
            }
        }
        Ok(out)
    }

    fn single_result(
        &self,
        pending: &mut HashMap<String, usize>,
        done: Done,
    ) -> Result<(usize, AppendResult), ImapError> {
        let Some(index) = pending.remove(&done.tag) else {
            return Err(self.unexpected(&done.tag, "APPEND"));
        };
        match done.end {
            CommandEnd::Ok => Ok((index, Ok(assign_uids(done.uids, 1)[0]))),
            CommandEnd::No(text) => Ok((index, Err(text))),
            // A BAD may mean the server read our literals as commands: stop.
            CommandEnd::Bad(text) => Err(self.conn.ep.protocol("APPEND", text)),
        }
    }

    fn unexpected(&self, tag: &str, label: &str) -> ImapError {
        self.conn.ep.closed(format!(
            "unexpected completion for tag `{tag}` during {label}"
        ))
    }

    fn next_tag(&mut self) -> String {
        self.raw_tags += 1;
        format!("W{}", self.raw_tags)
    }

    async fn write(&mut self, bytes: &[u8], label: &str) -> Result<(), ImapError> {
        let (ep, idle) = (&self.conn.ep, self.conn.idle);
        self.conn
            .session
            .get_mut()
            .write_all(bytes)
            .await
            .map_err(|e| ep.io(&e, label, idle))
    }

    async fn flush(&mut self, label: &str) -> Result<(), ImapError> {
        let (ep, idle) = (&self.conn.ep, self.conn.idle);
        self.conn
            .session
            .get_mut()
            .flush()
            .await
            .map_err(|e| ep.io(&e, label, idle))
    }

    /// The next continuation request or tagged completion; untagged data is skipped.
    async fn next_event(&mut self, label: &str) -> Result<Event, ImapError> {
        let mut bye = None;
        loop {
            let response = match self.conn.session.read_response().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Err(self.conn.ep.closed(match bye {
                        Some(text) => format!("the server said BYE: {text}"),
                        None => format!("the server closed the connection during {label}"),
                    }))
                }
                Err(e) => return Err(self.conn.ep.io(&e, label, self.conn.idle)),
            };
            match response.parsed() {
                Response::Continue { .. } => return Ok(Event::Continue),
                Response::Done {
                    tag,
                    status,
                    outcome,
                } => {
                    let uids = match &outcome.code {
                        Some(ResponseCode::AppendUid(_, set)) => Some(expand_uid_set(set)),
                        _ => None,
                    };
                    let text = outcome_text(outcome);
                    let end = match status {
                        Status::Ok => CommandEnd::Ok,
                        Status::No => CommandEnd::No(text),
                        _ => CommandEnd::Bad(text),
                    };
                    return Ok(Event::Done(Done {
                        tag: tag.0.clone(),
                        end,
                        uids,
                    }));
                }
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => {
                    let text = outcome_text(outcome);
                    // A server closes the connection after BYE (RFC 3501 §7.1.5); one that
                    // keeps it open is not waited for until the idle timeout.
                    if label != "LOGOUT" {
                        return Err(self.conn.ep.closed(format!("the server said BYE: {text}")));
                    }
                    bye = Some(text)
                }
                _ => {}
            }
        }
    }

    /// Starts an APPEND of one message of `size` bytes whose literal is sent piece by
    /// piece ([`StreamedAppend`]): for messages too big to hold whole. The literal is
    /// always synchronising, so a server that refuses the message (size, quota, flags)
    /// says so before any of its bytes is sent; one round trip is nothing next to such a
    /// message. `Ok(Err(words))` when refused (the session stays usable).
    pub async fn begin_append(
        mut self,
        wire_name: &WireName,
        flags: &[String],
        internal_date: Option<&str>,
        size: u64,
    ) -> Result<Result<StreamedAppend, (Writer, String)>, ImapError> {
        const LABEL: &str = "APPEND (streamed)";
        let folder = self.conn.quoted(wire_name, "APPEND")?;
        let item = AppendItem {
            flags: flags.to_vec(),
            internal_date: internal_date.map(str::to_string),
            body: std::borrow::Cow::Borrowed(&[]),
        };
        let prepared = match prepare(0, &item) {
            Ok(p) => p,
            Err(why) => return Ok(Err((self, why))),
        };
        self.conn.begin()?;
        let tag = self.next_tag();
        let mut head = format!("{tag} APPEND {folder}").into_bytes();
        prepared.push_head(&mut head, size as usize, true);
        let result = async {
            self.write(&head, LABEL).await?;
            self.flush(LABEL).await?;
            self.next_event(LABEL).await
        }
        .await;
        match result {
            Ok(Event::Continue) => Ok(Ok(StreamedAppend {
                writer: self,
                tag,
                left: size,
            })),
            Ok(Event::Done(done)) if done.tag == tag => {
                let end = done.end;
                self.conn.finish(Ok(()))?;
                match end {
                    CommandEnd::No(text) => Ok(Err((self, text))),
                    CommandEnd::Ok => {
                        Err(self.dead("the server completed an APPEND before its message".into()))
                    }
                    CommandEnd::Bad(text) => {
                        let err = self.conn.ep.protocol(LABEL, text);
                        Ok(Err((self, err.to_string())))
                    }
                }
            }
            Ok(Event::Done(done)) => {
                let err = self.unexpected(&done.tag, LABEL);
                Err(self.dead_with(err))
            }
            Err(err) => Err(self.dead_with(err)),
        }
    }

    /// Marks the connection unusable and returns the error.
    fn dead(&mut self, why: String) -> ImapError {
        let err = self.conn.ep.closed(why);
        self.dead_with(err)
    }

    fn dead_with(&mut self, err: ImapError) -> ImapError {
        self.conn.busy = false;
        self.conn.broken.get_or_insert_with(|| err.to_string());
        self.selected = None;
        err
    }

    /// `LOGOUT`. Errors are reported but the connection is gone either way.
    pub async fn logout(self) -> Result<(), ImapError> {
        self.conn.logout().await
    }

    /// Writes `LOGOUT` and closes without waiting for the answer (every command sent
    /// before has been answered; across the internet the wait is a round trip).
    pub async fn close(self) {
        self.conn.close().await
    }
}

/// An APPEND whose literal is being written ([`Writer::begin_append`]). It owns the
/// connection: dropped before [`StreamedAppend::finish`], the connection goes with it,
/// and a server discards an APPEND whose literal never ended.
pub struct StreamedAppend {
    writer: Writer,
    tag: String,
    /// Literal bytes still to send.
    left: u64,
}

impl fmt::Debug for StreamedAppend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamedAppend")
            .field("tag", &self.tag)
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl StreamedAppend {
    /// Literal bytes still to send.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// Sends the next piece of the literal (never more than announced).
    pub async fn send(&mut self, piece: &[u8]) -> Result<(), ImapError> {
        const LABEL: &str = "APPEND (streamed)";
        if piece.len() as u64 > self.left {
            let why = format!(
                "a piece of {} bytes does not fit the {} bytes left of the announced message",
                piece.len(),
                self.left
            );
            return Err(self.writer.dead(why));
        }
        match self.writer.write(piece, LABEL).await {
            Ok(()) => {
                self.left -= piece.len() as u64;
                Ok(())
            }
            Err(err) => Err(self.writer.dead_with(err)),
        }
    }

    /// Ends the literal and reads the answer: the message's result, and the writer back
    /// when the connection is still usable.
    pub async fn finish(mut self) -> (Option<Writer>, Result<AppendResult, ImapError>) {
        const LABEL: &str = "APPEND (streamed)";
        if self.left > 0 {
            let why = format!("the message ended {} bytes short", self.left);
            let err = self.writer.dead(why);
            return (None, Err(err));
        }
        let result = async {
            self.writer.write(b"\r\n", LABEL).await?;
            self.writer.flush(LABEL).await?;
            match self.writer.next_event(LABEL).await? {
                Event::Continue => Err(self
                    .writer
                    .conn
                    .ep
                    .closed("the server asked for more data after a complete APPEND")),
                Event::Done(done) if done.tag == self.tag => match done.end {
                    CommandEnd::Ok => Ok(Ok(assign_uids(done.uids, 1)[0])),
                    CommandEnd::No(text) => Ok(Err(text)),
                    CommandEnd::Bad(text) => Err(self.writer.conn.ep.protocol(LABEL, text)),
                },
                Event::Done(done) => Err(self.writer.unexpected(&done.tag, LABEL)),
            }
        }
        .await;
        match result {
            Ok(r) => {
                self.writer.conn.busy = false;
                (Some(self.writer), Ok(r))
            }
            Err(err) => {
                let err = self.writer.dead_with(err);
                (None, Err(err))
            }
        }
    }
}

/// What the server said next during an APPEND.
enum Event {
    Continue,
    Done(Done),
}

struct Done {
    tag: String,
    end: CommandEnd,
    /// From `[APPENDUID uidvalidity uid-set]`.
    uids: Option<Vec<u32>>,
}

/// Which literals may be sent without waiting for `+`.
#[derive(Debug, Clone, Copy)]
struct Literals {
    plus: bool,
    minus: bool,
}

impl Literals {
    fn non_sync(self, len: usize) -> bool {
        self.plus || (self.minus && len <= LITERAL_MINUS_MAX)
    }
}

/// An item checked and turned into wire text (everything but the literal).
#[derive(Debug)]
struct Prepared {
    index: usize,
    /// ` (\Seen $Label1)` or empty.
    flags: String,
    /// ` "01-Jan-2001 10:00:00 +0200"` or empty.
    date: String,
}

impl Prepared {
    /// ` (flags) "date" {len+}\r\n`
    fn push_head(&self, out: &mut Vec<u8>, len: usize, sync: bool) {
        out.extend_from_slice(self.flags.as_bytes());
        out.extend_from_slice(self.date.as_bytes());
        let literal = if sync {
            format!(" {{{len}}}\r\n")
        } else {
            format!(" {{{len}+}}\r\n")
        };
        out.extend_from_slice(literal.as_bytes());
    }
}

/// Checks an item; `Err` (in the caller's words) when it cannot be sent at all.
fn prepare(index: usize, item: &AppendItem) -> Result<Prepared, String> {
    let mut kept: Vec<&str> = Vec::with_capacity(item.flags.len());
    for flag in &item.flags {
        if !keep_flag(flag) || flag == "\\*" {
            continue;
        }
        if !is_flag_atom(flag) {
            // Sending it would earn a BAD for the whole command.
            tracing::warn!(flag = %flag, "dropping a flag that is not a valid IMAP atom");
            continue;
        }
        if !kept.iter().any(|k| k.eq_ignore_ascii_case(flag)) {
            kept.push(flag);
        }
    }
    let flags = if kept.is_empty() {
        String::new()
    } else {
        format!(" ({})", kept.join(" "))
    };
    let date = match &item.internal_date {
        None => String::new(),
        Some(d) => match rfc3339_to_internal_date(d) {
            Some(imap) => format!(" \"{imap}\""),
            None => return Err(format!("invalid internal date `{d}` (not RFC 3339)")),
        },
    };
    Ok(Prepared { index, flags, date })
}

/// `flag = "\" atom / atom`; atom-specials are `(){ %*"\]`, controls and non-ASCII.
fn is_flag_atom(flag: &str) -> bool {
    let atom = flag.strip_prefix('\\').unwrap_or(flag);
    !atom.is_empty()
        && atom
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b))
}

/// `2001-01-01T10:00:00+02:00` → `01-Jan-2001 10:00:00 +0200` (the offset is kept).
pub(crate) fn rfc3339_to_internal_date(s: &str) -> Option<String> {
    let d = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    let year = chrono::Datelike::year(&d);
    if !(1..=9999).contains(&year) {
        return None;
    }
    Some(d.format("%d-%b-%Y %H:%M:%S %z").to_string())
}

/// Splits into MULTIAPPEND commands of at most [`MULTIAPPEND_MAX_ITEMS`] messages and
/// about [`MULTIAPPEND_MAX_BYTES`] (a single bigger message is a chunk of its own).
fn multiappend_chunks<'a>(
    items: &[AppendItem<'_>],
    prepared: &'a [Prepared],
) -> Vec<&'a [Prepared]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in prepared.iter().enumerate() {
        let len = items[p.index].body.len();
        if i > start && (i - start == MULTIAPPEND_MAX_ITEMS || bytes + len > MULTIAPPEND_MAX_BYTES)
        {
            chunks.push(&prepared[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < prepared.len() {
        chunks.push(&prepared[start..]);
    }
    chunks
}

/// Uid-set members in order (`5:7,9` → 5, 6, 7, 9).
fn expand_uid_set(set: &[UidSetMember]) -> Vec<u32> {
    let mut out = Vec::new();
    for member in set {
        match member {
            UidSetMember::Uid(u) => out.push(*u),
            UidSetMember::UidRange(r) => out.extend(r.clone()),
        }
    }
    out
}

/// One UID per message when APPENDUID gave exactly that many, else `None` for all (a server
/// without UIDPLUS, or an APPENDUID we cannot pair with the messages).
fn assign_uids(uids: Option<Vec<u32>>, count: usize) -> Vec<Option<u32>> {
    match uids {
        Some(uids) if uids.len() == count => uids.into_iter().map(Some).collect(),
        _ => vec![None; count],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_dates_keep_the_offset() {
        let cases = [
            (
                "2001-01-01T10:00:00+02:00",
                Some("01-Jan-2001 10:00:00 +0200"),
            ),
            (
                "1996-07-07T02:44:25-07:00",
                Some("07-Jul-1996 02:44:25 -0700"),
            ),
            ("2024-12-31T23:59:59Z", Some("31-Dec-2024 23:59:59 +0000")),
            (
                "2024-02-29T00:00:00+05:30",
                Some("29-Feb-2024 00:00:00 +0530"),
            ),
            ("01-Jan-2001 10:00:00 +0200", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(rfc3339_to_internal_date(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn internal_dates_round_trip_through_the_reader_form() {
        for imap in ["01-Jan-2001 10:00:00 +0200", "17-Jul-1996 02:44:25 -0700"] {
            let rfc = super::super::wire::internal_date_to_rfc3339(imap).unwrap();
            assert_eq!(rfc3339_to_internal_date(&rfc).as_deref(), Some(imap));
        }
    }

    #[test]
    fn flags_are_filtered_and_formatted() {
        let item = AppendItem {
            flags: [
                "\\Seen", "\\Recent", "$Label1", "\\*", "bad flag", "a]b", "\\seen",
            ]
            .map(String::from)
            .to_vec(),
            internal_date: Some("2001-01-01T10:00:00+02:00".into()),
            body: b"x".to_vec().into(),
        };
        let p = prepare(3, &item).unwrap();
        assert_eq!(p.index, 3);
        assert_eq!(p.flags, " (\\Seen $Label1)");
        assert_eq!(p.date, " \"01-Jan-2001 10:00:00 +0200\"");
        let mut head = Vec::new();
        p.push_head(&mut head, 12, false);
        assert_eq!(
            head,
            b" (\\Seen $Label1) \"01-Jan-2001 10:00:00 +0200\" {12+}\r\n"
        );
        head.clear();
        p.push_head(&mut head, 5, true);
        assert!(head.ends_with(b" {5}\r\n"));

        let bare = prepare(0, &AppendItem::default()).unwrap();
        let mut head = Vec::new();
        bare.push_head(&mut head, 0, false);
        assert_eq!(head, b" {0+}\r\n");

        let bad_date = AppendItem {
            internal_date: Some("yesterday".into()),
            ..AppendItem::default()
        };
        assert!(prepare(0, &bad_date).unwrap_err().contains("yesterday"));
    }

    #[test]
    fn flag_atoms() {
        for ok in [
            "\\Seen",
            "$Forwarded",
            "Junk",
            "NonJunk",
            "x.y-z_1",
            "\\Answered",
        ] {
            assert!(is_flag_atom(ok), "{ok}");
        }
        for bad in [
            "", "\\", "a b", "a(b", "a\"b", "a%b", "a*", "]", "ü", "a\\b", "{3}",
        ] {
            assert!(!is_flag_atom(bad), "{bad}");
        }
    }

    #[test]
    fn uid_sets_expand_in_order_and_pair_up() {
        let set = vec![
            UidSetMember::UidRange(5..=7),
            UidSetMember::Uid(9),
            UidSetMember::Uid(3),
        ];
        assert_eq!(expand_uid_set(&set), vec![5, 6, 7, 9, 3]);
        assert_eq!(assign_uids(Some(vec![5, 6]), 2), vec![Some(5), Some(6)]);
        assert_eq!(assign_uids(Some(vec![5]), 2), vec![None, None]);
        assert_eq!(assign_uids(None, 1), vec![None]);
    }

    #[test]
    fn literals() {
        let plus = Literals {
            plus: true,
            minus: false,
        };
        let minus = Literals {
            plus: false,
            minus: true,
        };
        let none = Literals {
            plus: false,
            minus: false,
        };
        assert!(plus.non_sync(10 << 20));
        assert!(minus.non_sync(4096) && !minus.non_sync(4097));
        assert!(!none.non_sync(1));
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        let small = AppendItem {
            body: vec![b'x'; 10].into(),
            ..AppendItem::default()
        };
        let items = vec![small; 450];
        let prepared: Vec<Prepared> = (0..items.len())
            .map(|i| prepare(i, &items[i]).unwrap())
            .collect();
        let sizes: Vec<usize> = multiappend_chunks(&items, &prepared)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![200, 200, 50]);

        let big = AppendItem {
            body: vec![b'x'; MULTIAPPEND_MAX_BYTES / 2 + 1].into(),
            ..AppendItem::default()
        };
        let items = vec![big.clone(), big.clone(), big];
        let prepared: Vec<Prepared> = (0..3).map(|i| prepare(i, &items[i]).unwrap()).collect();
        let sizes: Vec<usize> = multiappend_chunks(&items, &prepared)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert!(multiappend_chunks(&items, &[]).is_empty());
    }

    #[test]
    fn debug_never_shows_the_body() {
        let item = AppendItem {
            flags: vec![],
            internal_date: None,
            body: b"secret text".to_vec().into(),
        };
        let shown = format!("{item:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("body_len: 11"), "{shown}");
    }
}
