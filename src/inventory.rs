//! What one account looks like on one side: folders (with their wire names, delimiter,
//! special-use attributes and status) and per-folder message metadata. Produced read-only
//! by [`collect`] through `crate::imap::Reader`; consumed by the pure planner.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{parse_headers, IdentityKey};
use crate::imap::{Credentials, FetchItems, ImapError, ListEntry, MailboxStatus, Reader};
use crate::message::{DisplayBlocks, DisplayFields, FlagInterner, FlagSet, InternalDate};
use crate::model::{ContentHash, FolderStatus, Side, SpecialUse, WireName};
use crate::settings::{Limits, ServerSettings};

/// Body hashes per folder wire name and UID (see [`fetch_contents`]).
pub(crate) type ContentHashes = HashMap<WireName, HashMap<u32, ContentHash>>;

/// One message as seen by the inventory: enough to match, copy and describe it, held
/// compactly (issue 10: an account of 500,000 messages is planned within 200 MB): 88
/// bytes here plus, on the source only, the display text in a shared block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageMeta {
    pub key: IdentityKey,
    /// RFC822.SIZE.
    pub size: u64,
    /// Flags and keywords as the server sent them, `\Recent` removed; shared with the
    /// other messages that have the same ones.
    pub flags: FlagSet,
    /// For `--detail`, plan files and failure lists: the Date header (raw, trimmed), From
    /// (first address), Subject (decoded). Kept for the source only: nothing shows a
    /// destination message's.
    pub display: DisplayFields,
    /// INTERNALDATE with the server's offset, when sent.
    pub internal_date: Option<InternalDate>,
    /// SHA-256 of `BODY[TEXT]`, fetched only for messages in an ambiguous group (same
    /// identity key, different counts on the two sides) to match them by content.
    pub content: Option<Box<ContentHash>>,
    pub uid: u32,
}

impl MessageMeta {
    pub(crate) fn is_deleted(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case("\\Deleted"))
    }
}

/// One folder from LIST, with its status and messages when it is selectable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Folder {
    /// The name exactly as on the wire (modified UTF-7, LIST quoting removed): the identity.
    pub wire_name: WireName,
    /// Decoded UTF-8 name (falls back to the wire name if it is not valid mUTF-7).
    pub name: String,
    /// Every LIST attribute, as sent (e.g. `\HasChildren`, `\Sent`).
    pub attributes: Vec<String>,
    pub special_use: Option<SpecialUse>,
    /// `\Noselect` or `\NonExistent`: known, never examined.
    pub noselect: bool,
    pub subscribed: bool,
    pub status: Option<FolderStatus>,
    pub messages: Vec<MessageMeta>,
    /// RFC 7889 `STATUS (APPENDLIMIT)`: this folder's own limit in bytes, read on a
    /// destination that offers `APPENDLIMIT` per folder; `None`: no limit of its own (the
    /// server-wide one in [`StorageLimits`] applies, if any).
    pub append_limit: Option<u64>,
}

/// An account's folder tree on one side.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Inventory {
    /// Personal namespace prefix, e.g. `INBOX.` or empty.
    pub prefix: String,
    /// Hierarchy delimiter; `None` for a flat server.
    pub delimiter: Option<char>,
    pub folders: Vec<Folder>,
    /// What the destination accepts (empty for the source).
    pub limits: StorageLimits,
}

/// What a destination says about how much it accepts, read before copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct StorageLimits {
    /// RFC 7889 `APPENDLIMIT=N` (server-wide), bytes: bigger messages cannot be appended.
    pub append_limit: Option<u64>,
    /// RFC 9208 `GETQUOTAROOT "INBOX"`, the STORAGE resource: (used, limit) in bytes.
    pub storage: Option<(u64, u64)>,
}

impl Inventory {
    pub(crate) fn folder(&self, wire_name: &WireName) -> Option<&Folder> {
        self.folders.iter().find(|f| &f.wire_name == wire_name)
    }

    /// `INBOX.` prefix with `.` (Courier, Cyrus, many hosters), for tests.
    #[cfg(test)]
    pub(crate) fn classic(folders: Vec<Folder>) -> Inventory {
        Inventory {
            prefix: "INBOX.".to_string(),
            delimiter: Some('.'),
            folders,
            limits: StorageLimits::default(),
        }
    }

    /// No prefix, `/` (Dovecot default, Gmail, Microsoft 365), for tests.
    #[cfg(test)]
    pub(crate) fn modern(folders: Vec<Folder>) -> Inventory {
        Inventory {
            prefix: String::new(),
            delimiter: Some('/'),
            folders,
            limits: StorageLimits::default(),
        }
    }
}

/// Why an inventory failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InventoryError {
    #[error("{side}")]
    Imap {
        side: Side,
        #[source]
        source: ImapError,
    },
    #[error("{side}{}", folder_label(folder, source))]
    Folder {
        side: Side,
        folder: String,
        #[source]
        source: ImapError,
    },
}

/// ` folder `X``, unless the IMAP error names the folder itself.
fn folder_label(folder: &str, source: &ImapError) -> String {
    if source.names_folder() {
        String::new()
    } else {
        format!(" folder `{folder}`")
    }
}

/// Guesses the personal namespace prefix from LIST when NAMESPACE is not offered:
/// `INBOX` + delimiter when every other folder starts with it (Courier, Cyrus).
pub(crate) fn guess_prefix(entries: &[ListEntry]) -> String {
    let Some(delim) = entries.iter().find_map(|e| e.delimiter) else {
        return String::new();
    };
    let prefix = format!("INBOX{delim}");
    let others: Vec<&ListEntry> = entries.iter().filter(|e| !e.wire_name.is_inbox()).collect();
    if !others.is_empty()
        && others
            .iter()
            .all(|e| e.wire_name.as_str().starts_with(&prefix))
    {
        prefix
    } else {
        String::new()
    }
}

/// A folder's inventory as a cache remembers it, with the STATUS that was current when it
/// was read: reused only while STATUS proves it unchanged ([`proves_unchanged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub stamp: MailboxStatus,
    pub status: FolderStatus,
    pub messages: Vec<MessageMeta>,
}

/// Remembered folders of one account and side, by wire name.
pub(crate) type Snapshots = HashMap<WireName, Snapshot>;

/// An inventory and the STATUS of each folder as it was read before the folder was (what
/// a cache must keep beside the messages; see [`Snapshot`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Collected {
    pub inventory: Inventory,
    pub stamps: HashMap<WireName, MailboxStatus>,
    /// Folders whose messages came from the cache (for logs and tests).
    pub reused: usize,
}

/// UIDs are never reused within a UIDVALIDITY, so an unchanged UIDVALIDITY, UIDNEXT and
/// MESSAGES mean the very same set of messages: nothing added (UIDNEXT would move),
/// nothing expunged (MESSAGES would drop, or UIDNEXT move if one was added too). A value
/// missing on either side proves nothing.
pub(crate) fn proves_unchanged(then: &MailboxStatus, now: &MailboxStatus) -> bool {
    fn same(a: Option<u32>, b: Option<u32>) -> bool {
        a.is_some() && a == b
    }
    same(then.uidvalidity, now.uidvalidity)
        && same(then.uidnext, now.uidnext)
        && same(then.messages, now.messages)
}

/// Flags change without UIDNEXT or MESSAGES moving; only an unchanged HIGHESTMODSEQ
/// (CONDSTORE, RFC 7162) proves them unchanged. Without it the flags are read again.
pub(crate) fn flags_unchanged(then: &MailboxStatus, now: &MailboxStatus) -> bool {
    then.highestmodseq.is_some() && then.highestmodseq == now.highestmodseq
}

/// How many messages to fetch before further connections of the account pay for their
/// login round trips.
const PARALLEL_FETCH_MESSAGES: u64 = 2_000;

/// Extra connections [`collect`] may open for one side: up to `connections - 1`, each
/// only while `max-connections` has a free slot.
#[derive(Clone, Copy)]
pub(crate) struct Extra<'a> {
    pub caps: &'a crate::imap::ConnectionCaps,
    pub connections: usize,
}

/// Reads one account on one side, read-only: LIST, LSUB, NAMESPACE and the STATUS of
/// every folder in one or two pipelined round trips, then EXAMINE + one streamed UID
/// FETCH of the metadata per folder, all pipelined, for the folders that are neither empty
/// (STATUS says 0 messages) nor proven unchanged since `cached` (their messages are taken
/// from the cache; their flags too when HIGHESTMODSEQ proves them unchanged, else the
/// flags alone are fetched again). Big reads are spread over further connections
/// (`extra`).
pub(crate) async fn collect(
    side: Side,
    server: &ServerSettings,
    limits: &Limits,
    credentials: &Credentials,
    mut cached: Snapshots,
    extra: Option<Extra<'_>>,
) -> Result<Collected, InventoryError> {
    let imap = |source| InventoryError::Imap { side, source };
    let mut reader = Reader::connect(server, limits, credentials)
        .await
        .map_err(imap)?;
    let overview = reader
        .overview(side == Side::Destination)
        .await
        .map_err(imap)?;
    let subscribed: HashSet<&WireName> = overview.subscribed.iter().collect();
    let (prefix, ns_delimiter) = match &overview.namespace {
        Some(ns) => (ns.prefix.clone(), ns.delimiter),
        None => (guess_prefix(&overview.entries), None),
    };
    let delimiter = overview
        .entries
        .iter()
        .find_map(|e| e.delimiter)
        .or(ns_delimiter);
    let mut folders = Vec::with_capacity(overview.entries.len());
    let mut stamps = HashMap::new();
    let mut reused = 0;
    // Folders to read: index into `folders`, what to fetch, messages expected.
    let mut reads: Vec<(usize, FetchItems, u64)> = Vec::new();
    for entry in &overview.entries {
        let noselect = entry.is_noselect();
        let special_use = entry
            .attributes
            .iter()
            .find_map(|a| SpecialUse::from_attribute(a));
        let name = crate::mutf7::decode(entry.wire_name.as_str())
            .unwrap_or_else(|_| entry.wire_name.as_str().to_owned());
        let mut folder = Folder {
            subscribed: subscribed.contains(&entry.wire_name),
            wire_name: entry.wire_name.clone(),
            name,
            attributes: entry.attributes.clone(),
            special_use,
            noselect,
            status: None,
            messages: Vec::new(),
            append_limit: None,
        };
        let index = folders.len();
        if !noselect {
            let now = overview.statuses.get(&entry.wire_name).copied();
            let snapshot = cached.remove(&entry.wire_name);
            match (now, snapshot) {
                (Some(now), _) if now.messages == Some(0) && now.uidvalidity.is_some() => {
                    // Empty: no EXAMINE, no FETCH.
                    folder.status = Some(FolderStatus {
                        uidvalidity: now.uidvalidity.unwrap_or_default(),
                        uidnext: now.uidnext,
                        exists: 0,
                    });
                    stamps.insert(entry.wire_name.clone(), now);
                }
                (Some(now), Some(snap))
                    if proves_unchanged(&snap.stamp, &now)
                        && snap.messages.len() as u32 == snap.status.exists
                        && Some(snap.status.exists) == now.messages =>
                {
                    reused += 1;
                    let flags_ok = flags_unchanged(&snap.stamp, &now);
                    folder.status = Some(snap.status);
                    folder.messages = snap.messages;
                    stamps.insert(entry.wire_name.clone(), now);
                    if !flags_ok {
                        reads.push((index, FetchItems::Flags, 0));
                    }
                }
                (now, _) => {
                    if let Some(now) = now {
                        stamps.insert(entry.wire_name.clone(), now);
                    }
                    let expected = now.and_then(|s| s.messages).unwrap_or(0);
                    reads.push((index, FetchItems::Metadata, u64::from(expected)));
                }
            }
        }
        folders.push(folder);
    }
    read_folders(
        side,
        server,
        limits,
        credentials,
        &mut reader,
        &mut folders,
        reads,
        extra,
    )
    .await?;
    // RFC 7889: a destination with limits per folder says each one only when asked.
    if side == Side::Destination && reader.per_folder_append_limits() {
        for folder in folders.iter_mut().filter(|f| !f.noselect) {
            folder.append_limit = reader
                .folder_append_limit(&folder.wire_name)
                .await
                .map_err(|source| InventoryError::Folder {
                    side,
                    folder: folder.name.clone(),
                    source,
                })?;
        }
    }
    // Servers without UIDNEXT in EXAMINE: STATUS said it.
    for folder in &mut folders {
        if let Some(status) = folder.status.as_mut().filter(|s| s.uidnext.is_none()) {
            status.uidnext = overview
                .statuses
                .get(&folder.wire_name)
                .and_then(|s| s.uidnext);
        }
    }
    let limits = match side {
        Side::Destination => StorageLimits {
            append_limit: reader.append_limit(),
            storage: overview.storage,
        },
        Side::Source => StorageLimits::default(),
    };
    // Logging out is a courtesy; the inventory is complete either way.
    reader.close().await;
    Ok(Collected {
        inventory: Inventory {
            prefix,
            delimiter,
            folders,
            limits,
        },
        stamps,
        reused,
    })
}

/// Runs the pipelined EXAMINE + FETCH of `reads` and fills `folders`: over `reader`
/// alone, or spread over further connections when there is much to read. Cached folders
/// whose flags were read again and whose UIDs do not match the cache are read again whole.
#[allow(clippy::too_many_arguments)]
async fn read_folders(
    side: Side,
    server: &ServerSettings,
    limits: &Limits,
    credentials: &Credentials,
    reader: &mut Reader,
    folders: &mut [Folder],
    reads: Vec<(usize, FetchItems, u64)>,
    extra: Option<Extra<'_>>,
) -> Result<(), InventoryError> {
    if reads.is_empty() {
        return Ok(());
    }
    let total: u64 = reads.iter().map(|r| r.2).sum();
    // Further connections, only for a big read and only within `max-connections`.
    let mut permits = Vec::new();
    if let Some(x) = extra.filter(|_| total >= PARALLEL_FETCH_MESSAGES) {
        let wanted = x.connections.max(1).min(reads.len()) - 1;
        for _ in 0..wanted {
            match x.caps.of(side).try_acquire() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
    }
    let mut others = Vec::new();
    if !permits.is_empty() {
        let opened = futures::future::join_all(
            permits
                .iter()
                .map(|_| Reader::connect(server, limits, credentials)),
        )
        .await;
        for r in opened {
            match r {
                Ok(r) => others.push(r),
                // One connection more or less: the first one reads what is left.
                Err(e) => tracing::debug!(%side, "no further connection for the inventory: {e}"),
            }
        }
    }
    // Largest first onto the least loaded connection.
    let mut lanes: Vec<(u64, Vec<LaneRead>)> = vec![(0, Vec::new()); others.len() + 1];
    let mut sorted = reads;
    sorted.sort_by_key(|r| std::cmp::Reverse(r.2));
    for (index, items, expected) in sorted {
        let lane = lanes
            .iter_mut()
            .min_by_key(|l| l.0)
            .expect("at least one lane");
        lane.0 += expected.max(1);
        lane.1.push((index, items, expected));
    }
    for lane in &mut lanes {
        lane.1.sort_by_key(|(i, _, _)| *i);
    }
    tracing::debug!(
        %side,
        folders = lanes.iter().map(|l| l.1.len()).sum::<usize>(),
        connections = lanes.len(),
        "reading folders over {} connection(s)",
        lanes.len()
    );
    let mut readers: Vec<&mut Reader> = vec![reader];
    readers.extend(others.iter_mut());
    let results = futures::future::join_all(
        readers
            .into_iter()
            .zip(&lanes)
            .map(|(r, lane)| read_lane(side, r, folders, &lane.1)),
    )
    .await;
    for other in others {
        other.close().await;
    }
    let mut again = Vec::new();
    for result in results {
        for (index, outcome) in result? {
            match outcome {
                LaneOutcome::Read { status, messages } => {
                    folders[index].status = Some(status);
                    folders[index].messages = messages;
                }
                LaneOutcome::Flags(flags) => {
                    let folder = &mut folders[index];
                    let uid_flags = |uid: u32| {
                        flags
                            .binary_search_by_key(&uid, |(u, _)| *u)
                            .ok()
                            .map(|i| &flags[i].1)
                    };
                    let same = flags.len() == folder.messages.len()
                        && folder.messages.iter().all(|m| uid_flags(m.uid).is_some());
                    if same {
                        for m in &mut folder.messages {
                            if let Some(f) = uid_flags(m.uid) {
                                m.flags = f.clone();
                            }
                        }
                    } else {
                        again.push((index, FetchItems::Metadata, folder.messages.len() as u64));
                    }
                }
            }
        }
    }
    if !again.is_empty() {
        for (index, outcome) in read_lane(side, reader, folders, &again).await? {
            if let LaneOutcome::Read { status, messages } = outcome {
                folders[index].status = Some(status);
                folders[index].messages = messages;
            }
        }
    }
    Ok(())
}

enum LaneOutcome {
    Read {
        status: FolderStatus,
        messages: Vec<MessageMeta>,
    },
    /// UID and flags, sorted by UID.
    Flags(Vec<(u32, FlagSet)>),
}

/// A folder to read on one connection: its index, what to fetch, messages expected.
type LaneRead = (usize, FetchItems, u64);

/// Most messages a folder's list is sized for up front (STATUS is the server's word).
const MAX_PRESIZE: u64 = 1 << 20;

/// One connection's share of the folders, pipelined.
async fn read_lane(
    side: Side,
    reader: &mut Reader,
    folders: &[Folder],
    lane: &[LaneRead],
) -> Result<Vec<(usize, LaneOutcome)>, InventoryError> {
    if lane.is_empty() {
        return Ok(Vec::new());
    }
    let requests: Vec<(WireName, FetchItems)> = lane
        .iter()
        .map(|(i, items, _)| (folders[*i].wire_name.clone(), *items))
        .collect();
    // Sized from STATUS MESSAGES up front: a folder of 500,000 messages grown by doubling
    // holds up to twice its size, and three times while it moves (issue 10 item 6).
    let mut messages: Vec<Vec<MessageMeta>> = lane
        .iter()
        .map(|(_, items, expected)| match items {
            FetchItems::Metadata => Vec::with_capacity((*expected).min(MAX_PRESIZE) as usize),
            FetchItems::Flags => Vec::new(),
        })
        .collect();
    let mut flags: Vec<Vec<(u32, FlagSet)>> = vec![Vec::new(); lane.len()];
    // A mailbox has few distinct flag sets: each is held once. The display fields go
    // into shared blocks, readable once `display` is dropped at the end of this function.
    let mut interner = FlagInterner::default();
    let mut display = DisplayBlocks::default();
    let results = reader
        .examine_fetch_all(&requests, |at, m| match lane[at].1 {
            FetchItems::Metadata => {
                let parsed = parse_headers(&m.header);
                messages[at].push(MessageMeta {
                    key: parsed.key,
                    size: m.size,
                    flags: interner.intern(m.flags),
                    // Nothing shows a destination message's display fields.
                    display: match side {
                        Side::Source => display.add(&parsed.date, &parsed.from, &parsed.subject),
                        Side::Destination => DisplayFields::default(),
                    },
                    internal_date: m
                        .internal_date
                        .as_deref()
                        .and_then(InternalDate::from_rfc3339),
                    content: None,
                    uid: m.uid,
                });
            }
            FetchItems::Flags => {
                flags[at].push((m.uid, interner.intern(m.flags)));
            }
        })
        .await
        .map_err(|source| InventoryError::Imap { side, source })?;
    let mut out = Vec::with_capacity(lane.len());
    for (at, result) in results.into_iter().enumerate() {
        let (index, items, _) = lane[at];
        let examined = result.map_err(|source| InventoryError::Folder {
            side,
            folder: folders[index].name.clone(),
            source,
        })?;
        out.push((
            index,
            match items {
                FetchItems::Metadata => LaneOutcome::Read {
                    status: examined.status,
                    messages: std::mem::take(&mut messages[at]),
                },
                FetchItems::Flags => {
                    let mut flags = std::mem::take(&mut flags[at]);
                    flags.sort_unstable_by_key(|(uid, _)| *uid);
                    LaneOutcome::Flags(flags)
                }
            },
        ));
    }
    Ok(out)
}

/// Hashes of `BODY[TEXT]` for the given UIDs per folder, for resolving ambiguous groups.
pub(crate) async fn fetch_contents(
    side: Side,
    server: &ServerSettings,
    limits: &Limits,
    credentials: &Credentials,
    requests: &BTreeMap<WireName, Vec<u32>>,
) -> Result<ContentHashes, InventoryError> {
    let imap = |source| InventoryError::Imap { side, source };
    let mut out = ContentHashes::new();
    if requests.is_empty() {
        return Ok(out);
    }
    let mut reader = Reader::connect(server, limits, credentials)
        .await
        .map_err(imap)?;
    for (wire_name, uids) in requests {
        let folder_err = |source| InventoryError::Folder {
            side,
            folder: wire_name.as_str().to_owned(),
            source,
        };
        reader.examine(wire_name).await.map_err(folder_err)?;
        let mut hashes = HashMap::with_capacity(uids.len());
        reader
            .fetch_texts(uids, |uid, text| {
                hashes.insert(uid, content_hash(text));
            })
            .await
            .map_err(folder_err)?;
        out.insert(wire_name.clone(), hashes);
    }
    let _ = reader.logout().await;
    Ok(out)
}

/// SHA-256 of a message body with CRs and trailing whitespace removed: servers rewrite
/// bare LF to CRLF, and that must not make two copies of one message look different.
fn content_hash(text: &[u8]) -> ContentHash {
    let end = text
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let mut hasher = Sha256::new();
    for chunk in text[..end].split(|b| *b == b'\r') {
        hasher.update(chunk);
    }
    ContentHash(hasher.finalize().into())
}

impl crate::diagnostics::HasHint for InventoryError {
    fn hint(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unchanged_status_proves_a_folder_unchanged() {
        let then = MailboxStatus {
            uidvalidity: Some(7),
            uidnext: Some(10),
            messages: Some(5),
            highestmodseq: Some(40),
        };
        assert!(proves_unchanged(&then, &then));
        assert!(flags_unchanged(&then, &then));
        let changed = [
            MailboxStatus {
                uidvalidity: Some(8),
                ..then
            },
            MailboxStatus {
                uidnext: Some(11),
                ..then
            },
            MailboxStatus {
                messages: Some(4),
                ..then
            },
            MailboxStatus {
                uidnext: None,
                ..then
            },
        ];
        for now in changed {
            assert!(!proves_unchanged(&then, &now), "{now:?}");
            assert!(!proves_unchanged(&now, &then), "{now:?}");
        }
        // Flags: only an equal HIGHESTMODSEQ proves them; none (no CONDSTORE) never does.
        let moved = MailboxStatus {
            highestmodseq: Some(41),
            ..then
        };
        assert!(proves_unchanged(&then, &moved) && !flags_unchanged(&then, &moved));
        let none = MailboxStatus {
            highestmodseq: None,
            ..then
        };
        assert!(!flags_unchanged(&none, &none));
    }

    /// Issue 10: 500,000 of these plan within 200 MB only while they stay this small.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_message_record_stays_compact() {
        assert!(std::mem::size_of::<MessageMeta>() <= 88);
    }

    #[test]
    fn content_hash_ignores_line_ending_style_only() {
        assert_eq!(content_hash(b"a\r\nb\r\n"), content_hash(b"a\nb\n"));
        assert_eq!(content_hash(b"a\nb"), content_hash(b"a\nb\n\n  "));
        assert_ne!(content_hash(b"a\nb"), content_hash(b"a\nc"));
    }
}
