//! The inventory cache: per account and side, every folder's inventory as last read, with
//! the STATUS that was current then (`DIR/inventory/HOST-PORT-USER-HASH.SIDE.json`). A
//! later plan reuses a folder only while STATUS proves it unchanged
//! (`inventory::proves_unchanged`), so final passes over mostly unchanged mailboxes cost a
//! few round trips instead of a FETCH of every folder.
//!
//! It is only ever a shortcut: a missing, unreadable, damaged or foreign file is ignored
//! (with a note in the log) and everything is read from the servers again, so losing or
//! corrupting it costs time, never correctness. Written whole and atomically (temp file,
//! sync, rename), owner-only; it holds message metadata (subjects, senders), never a
//! secret. `plan` writes it too (unlike the ledger, which only `apply` writes): it records
//! what the servers hold, not what mailshift did, and the next `plan` is what it speeds up.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ledger::account_stem;
use crate::imap::MailboxStatus;
use crate::inventory::{Collected, MessageMeta, Snapshot, Snapshots};
use crate::model::{FolderStatus, Side, WireName};
use crate::settings::ServerSettings;

/// The `format` of every cache file; another value is ignored.
const FORMAT: &str = "mailshift inventory cache v1";

/// Where one account's cache for one side lives.
pub(crate) fn path_for(dir: &Path, server: &ServerSettings, user: &str, side: Side) -> PathBuf {
    let side = match side {
        Side::Source => "source",
        Side::Destination => "destination",
    };
    dir.join("inventory")
        .join(format!("{}.{side}.json", account_stem(server, user)))
}

#[derive(Deserialize)]
struct FileIn {
    format: String,
    tool_version: String,
    folders: BTreeMap<WireName, Snapshot>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    format: &'static str,
    tool_version: &'static str,
    folders: BTreeMap<&'a WireName, SnapshotOut<'a>>,
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    stamp: &'a MailboxStatus,
    status: &'a FolderStatus,
    messages: &'a [MessageMeta],
}

/// The remembered folders, or none when there is no usable cache (never an error: the
/// inventory is then read whole). Another tool version's cache is not used: identity keys
/// or fields may have changed.
pub(crate) fn read(dir: &Path, server: &ServerSettings, user: &str, side: Side) -> Snapshots {
    let path = path_for(dir, server, user, side);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Snapshots::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read the inventory cache ({e}); reading everything from the server");
            return Snapshots::new();
        }
    };
    match serde_json::from_slice::<FileIn>(&bytes) {
        Ok(file) if file.format == FORMAT && file.tool_version == env!("CARGO_PKG_VERSION") => {
            file.folders.into_iter().collect()
        }
        Ok(_) => {
            tracing::info!(path = %path.display(), "inventory cache of another mailshift version; reading everything from the server");
            Snapshots::new()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), "damaged inventory cache ({e}); reading everything from the server");
            Snapshots::new()
        }
    }
}

/// Remembers every folder of `collected` that has a STATUS stamp. Atomic: a crash leaves
/// the old file or the new one, never half of one.
pub(crate) fn write(
    dir: &Path,
    server: &ServerSettings,
    user: &str,
    side: Side,
    collected: &Collected,
) -> std::io::Result<()> {
    let path = path_for(dir, server, user, side);
    let folders: BTreeMap<&WireName, SnapshotOut<'_>> = collected
        .inventory
        .folders
        .iter()
        .filter_map(|f| {
            let stamp = collected.stamps.get(&f.wire_name)?;
            let status = f.status.as_ref()?;
            Some((
                &f.wire_name,
                SnapshotOut {
                    stamp,
                    status,
                    messages: &f.messages,
                },
            ))
        })
        .collect();
    let file = FileOut {
        format: FORMAT,
        tool_version: env!("CARGO_PKG_VERSION"),
        folders,
    };
    let parent = path.parent().expect("a file under the state dir");
    create_private_dir(parent)?;
    let tmp = tempfile::NamedTempFile::new_in(parent)?;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file());
        serde_json::to_writer(&mut out, &file)?;
        out.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Folder, Inventory};

    fn server() -> ServerSettings {
        ServerSettings::for_tests("mail.example", 993)
    }

    fn collected() -> Collected {
        let messages = vec![crate::plan::fixtures::msg(7, 1, 100, &["\\Seen"])];
        let folder = Folder {
            wire_name: "INBOX".into(),
            name: "INBOX".into(),
            attributes: vec![],
            special_use: None,
            noselect: false,
            subscribed: true,
            status: Some(FolderStatus {
                uidvalidity: 5,
                uidnext: Some(8),
                exists: 1,
            }),
            messages,
            append_limit: None,
        };
        let mut stamps = std::collections::HashMap::new();
        stamps.insert(
            WireName::inbox(),
            MailboxStatus {
                uidvalidity: Some(5),
                uidnext: Some(8),
                messages: Some(1),
                highestmodseq: Some(3),
            },
        );
        Collected {
            inventory: Inventory::modern(vec![folder]),
            stamps,
            reused: 0,
        }
    }

    #[test]
    fn round_trip_and_damage_only_cost_a_reread() {
        let dir = tempfile::tempdir().unwrap();
        let c = collected();
        write(dir.path(), &server(), "u@x", Side::Source, &c).unwrap();
        let back = read(dir.path(), &server(), "u@x", Side::Source);
        let snap = &back[&WireName::inbox()];
        assert_eq!(snap.messages, c.inventory.folders[0].messages);
        assert_eq!(snap.stamp, c.stamps[&WireName::inbox()]);
        // The other side and another user have no cache.
        assert!(read(dir.path(), &server(), "u@x", Side::Destination).is_empty());
        assert!(read(dir.path(), &server(), "v@x", Side::Source).is_empty());
        // A torn or foreign file is ignored, not an error.
        let path = path_for(dir.path(), &server(), "u@x", Side::Source);
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(read(dir.path(), &server(), "u@x", Side::Source).is_empty());
        std::fs::write(
            &path,
            b"{\"format\":\"other\",\"tool_version\":\"0\",\"folders\":{}}",
        )
        .unwrap();
        assert!(read(dir.path(), &server(), "u@x", Side::Source).is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            write(dir.path(), &server(), "u@x", Side::Source, &c).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner-only");
        }
    }
}
