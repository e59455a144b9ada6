//! What one account looks like on one side: folders (with their wire names, delimiter,
//! special-use attributes and status) and per-folder message metadata. Produced read-only
//! by [`collect`] through `crate::imap::Reader`; consumed by the pure planner.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{parse_headers, IdentityKey};
use crate::imap::{Credentials, ImapError, ListEntry, Reader};
use crate::model::{ContentHash, FolderStatus, Side, SpecialUse, WireName};
use crate::settings::{Limits, ServerSettings};

/// Body hashes per folder wire name and UID (see [`fetch_contents`]).
pub(crate) type ContentHashes = HashMap<WireName, HashMap<u32, ContentHash>>;

/// One message as seen by the inventory: enough to match, copy and describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessageMeta {
    pub uid: u32,
    /// Flags and keywords as the server sent them, `\Recent` removed.
    pub flags: Vec<String>,
    /// INTERNALDATE as an RFC 3339 string with the server's offset, when sent.
    pub internal_date: Option<String>,
    /// RFC822.SIZE.
    pub size: u64,
    pub key: IdentityKey,
    /// For `--detail` only: the Date header (raw, trimmed), From (first address), Subject (decoded).
    pub date: String,
    pub from: String,
    pub subject: String,
    /// SHA-256 of `BODY[TEXT]`, fetched only for messages in an ambiguous group (same
    /// identity key, different counts on the two sides) to match them by content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentHash>,
}

impl MessageMeta {
    pub(crate) fn is_deleted(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case("\\Deleted"))
    }
}

/// One folder from LIST, with its status and messages when it is selectable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_limit: Option<u64>,
}

/// An account's folder tree on one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct Inventory {
    /// Personal namespace prefix, e.g. `INBOX.` or empty.
    pub prefix: String,
    /// Hierarchy delimiter; `None` for a flat server.
    pub delimiter: Option<char>,
    pub folders: Vec<Folder>,
    /// What the destination accepts (empty for the source).
    #[serde(default)]
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

/// Reads one account on one side: LIST, LSUB, NAMESPACE, then per selectable folder
/// EXAMINE and one streamed UID FETCH of the metadata. Never writes.
pub(crate) async fn collect(
    side: Side,
    server: &ServerSettings,
    limits: &Limits,
    credentials: &Credentials,
) -> Result<Inventory, InventoryError> {
    let imap = |source| InventoryError::Imap { side, source };
    let mut reader = Reader::connect(server, limits, credentials)
        .await
        .map_err(imap)?;
    let entries = reader.list_all().await.map_err(imap)?;
    let subscribed: HashSet<WireName> = reader
        .subscribed()
        .await
        .map_err(imap)?
        .into_iter()
        .collect();
    let namespace = reader.namespace().await.map_err(imap)?;
    let (prefix, ns_delimiter) = match namespace {
        Some(ns) => (ns.prefix, ns.delimiter),
        None => (guess_prefix(&entries), None),
    };
    let delimiter = entries.iter().find_map(|e| e.delimiter).or(ns_delimiter);
    let mut folders = Vec::with_capacity(entries.len());
    for entry in entries {
        let noselect = entry.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        });
        let special_use = entry
            .attributes
            .iter()
            .find_map(|a| SpecialUse::from_attribute(a));
        let name = crate::mutf7::decode(entry.wire_name.as_str())
            .unwrap_or_else(|_| entry.wire_name.as_str().to_owned());
        let mut folder = Folder {
            subscribed: subscribed.contains(&entry.wire_name),
            wire_name: entry.wire_name,
            name,
            attributes: entry.attributes,
            special_use,
            noselect,
            status: None,
            messages: Vec::new(),
            append_limit: None,
        };
        if !noselect {
            let folder_err = |source| InventoryError::Folder {
                side,
                folder: folder.name.clone(),
                source,
            };
            let status = reader
                .examine(&folder.wire_name)
                .await
                .map_err(folder_err)?;
            let mut messages = Vec::with_capacity(status.exists as usize);
            reader
                .fetch_metadata(status.exists, |m| {
                    let parsed = parse_headers(&m.header);
                    messages.push(MessageMeta {
                        uid: m.uid,
                        flags: m.flags,
                        internal_date: m.internal_date,
                        size: m.size,
                        key: parsed.key,
                        date: parsed.date,
                        from: parsed.from,
                        subject: parsed.subject,
                        content: None,
                    });
                })
                .await
                .map_err(folder_err)?;
            folder.status = Some(status);
            folder.messages = messages;
            if side == Side::Destination && reader.per_folder_append_limits() {
                folder.append_limit = reader
                    .folder_append_limit(&folder.wire_name)
                    .await
                    .map_err(folder_err)?;
            }
        }
        folders.push(folder);
    }
    let limits = match side {
        Side::Destination => StorageLimits {
            append_limit: reader.append_limit(),
            storage: reader
                .storage_quota(&WireName::inbox())
                .await
                .map_err(imap)?,
        },
        Side::Source => StorageLimits::default(),
    };
    // Logging out is a courtesy; the inventory is complete either way.
    let _ = reader.logout().await;
    Ok(Inventory {
        prefix,
        delimiter,
        folders,
        limits,
    })
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
    fn content_hash_ignores_line_ending_style_only() {
        assert_eq!(content_hash(b"a\r\nb\r\n"), content_hash(b"a\nb\n"));
        assert_eq!(content_hash(b"a\nb"), content_hash(b"a\nb\n\n  "));
        assert_ne!(content_hash(b"a\nb"), content_hash(b"a\nc"));
    }
}
