//! The inventory cache: per account and side, every folder's inventory as last read, with
//! the STATUS that was current then (`DIR/inventory/HOST-PORT-USER-HASH.SIDE.cache`). A
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
//!
//! The format (v2) is a line per record, read and written as a stream so that an account
//! of 500,000 messages is never held twice (issue 10): the format line, the tool version,
//! the distinct flag sets, then per folder a `folder` line and one `m` line per message,
//! and last `end` with the SHA-256 of every byte before it, so that a torn or altered file
//! is refused whole. Fields are tab-separated; text fields escape `\\`, tab, CR and LF;
//! a missing value is `-`:
//!
//! ```text
//! mailshift inventory cache v2
//! version\t0.1.0
//! flags\t0\t\\Seen\t$Label1
//! folder\tINBOX\tUIDVALIDITY\tUIDNEXT\tMESSAGES\tHIGHESTMODSEQ\tuidvalidity\tuidnext\texists\tcount
//! m\tUID\tSIZE\tKEY\tFLAGSET\tSECONDS:OFFSET\tDATE\tFROM\tSUBJECT\tCONTENT
//! end\tSHA-256
//! ```

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ledger::account_stem;
use crate::identity::IdentityKey;
use crate::imap::MailboxStatus;
use crate::inventory::{Collected, MessageMeta, Snapshot, Snapshots};
use crate::message::{DisplayBlocks, FlagSet, InternalDate};
use crate::model::{ContentHash, FolderStatus, Side, WireName};
use crate::settings::ServerSettings;

/// The first line of every cache file; another one (such as v1's JSON) is ignored.
const FORMAT: &str = "mailshift inventory cache v2";

/// Where one account's cache for one side lives.
pub(crate) fn path_for(dir: &Path, server: &ServerSettings, user: &str, side: Side) -> PathBuf {
    dir.join("inventory").join(format!(
        "{}.{}.cache",
        account_stem(server, user),
        side_name(side)
    ))
}

/// Where format v1 (JSON) lived: removed when v2 is written.
fn v1_path(dir: &Path, server: &ServerSettings, user: &str, side: Side) -> PathBuf {
    dir.join("inventory").join(format!(
        "{}.{}.json",
        account_stem(server, user),
        side_name(side)
    ))
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Source => "source",
        Side::Destination => "destination",
    }
}

/// The remembered folders, or none when there is no usable cache (never an error: the
/// inventory is then read whole). Another tool version's cache is not used: identity keys
/// or fields may have changed.
pub(crate) fn read(dir: &Path, server: &ServerSettings, user: &str, side: Side) -> Snapshots {
    let path = path_for(dir, server, user, side);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Snapshots::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read the inventory cache ({e}); reading everything from the server");
            return Snapshots::new();
        }
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    match decode(std::io::BufReader::with_capacity(1 << 16, file), size) {
        Ok(Some(snapshots)) => snapshots,
        Ok(None) => {
            tracing::info!(path = %path.display(), "inventory cache of another mailshift version or format; reading everything from the server");
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
    let parent = path.parent().expect("a file under the state dir");
    create_private_dir(parent)?;
    let tmp = tempfile::NamedTempFile::new_in(parent)?;
    {
        let out = std::io::BufWriter::with_capacity(1 << 16, tmp.as_file());
        encode(out, collected)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    // The v1 file of the same account, if any, is of no more use.
    let _ = std::fs::remove_file(v1_path(dir, server, user, side));
    Ok(())
}

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `s` with `\\`, tab, CR and LF escaped.
fn put_text(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    let mut rest = s;
    while let Some(at) = rest.find(['\\', '\t', '\r', '\n']) {
        out.write_all(&rest.as_bytes()[..at])?;
        out.write_all(match rest.as_bytes()[at] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\r' => b"\\r",
            _ => b"\\n",
        })?;
        rest = &rest[at + 1..];
    }
    out.write_all(rest.as_bytes())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn encode(out: impl Write, collected: &Collected) -> std::io::Result<()> {
    let mut out = Hashing {
        inner: out,
        hasher: Sha256::new(),
    };
    writeln!(out, "{FORMAT}")?;
    write!(out, "version\t")?;
    put_text(&mut out, env!("CARGO_PKG_VERSION"))?;
    writeln!(out)?;
    // Folders with a STATUS stamp, by wire name.
    let mut folders: Vec<(&WireName, &MailboxStatus, &FolderStatus, &[MessageMeta])> = collected
        .inventory
        .folders
        .iter()
        .filter_map(|f| {
            let stamp = collected.stamps.get(&f.wire_name)?;
            let status = f.status.as_ref()?;
            Some((&f.wire_name, stamp, status, f.messages.as_slice()))
        })
        .collect();
    folders.sort_by(|a, b| a.0.cmp(b.0));
    // Each distinct flag set once.
    let mut sets: HashMap<&FlagSet, usize> = HashMap::new();
    for m in folders.iter().flat_map(|f| f.3) {
        if !m.flags.is_empty() && !sets.contains_key(&m.flags) {
            write!(out, "flags\t{}", sets.len())?;
            for flag in &m.flags {
                write!(out, "\t")?;
                put_text(&mut out, flag)?;
            }
            writeln!(out)?;
            sets.insert(&m.flags, sets.len());
        }
    }
    for (wire, stamp, status, messages) in &folders {
        write!(out, "folder\t")?;
        put_text(&mut out, wire.as_str())?;
        writeln!(
            out,
            "\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            opt(stamp.uidvalidity),
            opt(stamp.uidnext),
            opt(stamp.messages),
            opt(stamp.highestmodseq),
            status.uidvalidity,
            opt(status.uidnext),
            status.exists,
            messages.len()
        )?;
        for m in *messages {
            let flags = if m.flags.is_empty() {
                "-".to_string()
            } else {
                sets[&m.flags].to_string()
            };
            let date = m.internal_date.map_or_else(
                || "-".to_string(),
                |d| format!("{}:{}", d.seconds(), d.offset_minutes()),
            );
            write!(
                out,
                "m\t{}\t{}\t{}\t{flags}\t{date}\t",
                m.uid,
                m.size,
                m.key.to_hex()
            )?;
            put_text(&mut out, m.display.date())?;
            write!(out, "\t")?;
            put_text(&mut out, m.display.from())?;
            write!(out, "\t")?;
            put_text(&mut out, m.display.subject())?;
            writeln!(
                out,
                "\t{}",
                m.content
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |c| c.to_hex())
            )?;
        }
    }
    let digest = out.hasher.finalize();
    let mut inner = out.inner;
    writeln!(inner, "end\t{}", crate::model::hex(&digest.into()))?;
    inner.flush()
}

fn bad(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
}

/// Undoes [`put_text`].
fn text(field: &str) -> std::io::Result<String> {
    if !field.contains('\\') {
        return Ok(field.to_string());
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('\\') => '\\',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('n') => '\n',
            _ => return Err(bad("bad escape")),
        });
    }
    Ok(out)
}

fn num<T: std::str::FromStr>(field: &str) -> std::io::Result<T> {
    field
        .parse()
        .map_err(|_| bad(format!("bad number `{field}`")))
}

fn opt_num<T: std::str::FromStr>(field: &str) -> std::io::Result<Option<T>> {
    if field == "-" {
        Ok(None)
    } else {
        num(field).map(Some)
    }
}

/// The fields of one line (without its line end), which must start with `tag` and have
/// `count` fields after it.
fn fields<'a>(line: &'a str, tag: &str, count: usize) -> std::io::Result<Vec<&'a str>> {
    let mut parts = line.split('\t');
    if parts.next() != Some(tag) {
        return Err(bad(format!("expected `{tag}`")));
    }
    let parts: Vec<&str> = parts.collect();
    if parts.len() != count {
        return Err(bad(format!("`{tag}` with {} fields", parts.len())));
    }
    Ok(parts)
}

/// Lines of a cache file, each added to the running hash once read.
struct Lines<R> {
    reader: R,
    /// The line just read, without its LF.
    line: String,
    hasher: Sha256,
}

impl<R: BufRead> Lines<R> {
    /// Reads the next line into `line`; `false` at the end of the file.
    fn next(&mut self) -> std::io::Result<bool> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Ok(false);
        }
        if self.line.pop() != Some('\n') {
            return Err(bad("torn last line"));
        }
        Ok(true)
    }

    /// Counts the line just read into the checksum.
    fn hash(&mut self) {
        self.hasher.update(self.line.as_bytes());
        self.hasher.update(b"\n");
    }
}

/// Reads a cache file. `Ok(None)`: another format or tool version.
fn decode(reader: impl BufRead, size: u64) -> std::io::Result<Option<Snapshots>> {
    let mut lines = Lines {
        reader,
        line: String::new(),
        hasher: Sha256::new(),
    };
    // A file of another format may not be text at all.
    if !matches!(lines.next(), Ok(true)) || lines.line != FORMAT {
        return Ok(None);
    }
    lines.hash();
    if !lines.next()? {
        return Err(bad("no version"));
    }
    if text(fields(&lines.line, "version", 1)?[0])? != env!("CARGO_PKG_VERSION") {
        return Ok(None);
    }
    lines.hash();
    let mut sets: Vec<FlagSet> = Vec::new();
    // Readable once dropped, at the end of this function.
    let mut display = DisplayBlocks::default();
    let mut snapshots = Snapshots::new();
    // The folder being read: its wire name, snapshot and messages still to come.
    let mut current: Option<(WireName, Snapshot, usize)> = None;
    let finish = |current: &mut Option<(WireName, Snapshot, usize)>, snapshots: &mut Snapshots| {
        match current.take() {
            Some((_, _, left)) if left > 0 => Err(bad("a folder ends early")),
            Some((wire, snap, _)) => {
                snapshots.insert(wire, snap);
                Ok(())
            }
            None => Ok(()),
        }
    };
    loop {
        if !lines.next()? {
            return Err(bad("no end line"));
        }
        let line = lines.line.as_str();
        let tag = line.split('\t').next().unwrap_or("");
        match tag {
            "m" => {
                let f = fields(line, "m", 9)?;
                let Some((_, snap, left)) = current.as_mut().filter(|c| c.2 > 0) else {
                    return Err(bad("a message outside its folder"));
                };
                let flags = match f[3] {
                    "-" => FlagSet::default(),
                    i => sets
                        .get(num::<usize>(i)?)
                        .cloned()
                        .ok_or_else(|| bad("unknown flag set"))?,
                };
                let internal_date = match f[4] {
                    "-" => None,
                    d => {
                        let (s, o) = d.split_once(':').ok_or_else(|| bad("bad date"))?;
                        Some(InternalDate::new(num(s)?, num(o)?).ok_or_else(|| bad("bad date"))?)
                    }
                };
                let content = match f[8] {
                    "-" => None,
                    c => Some(Box::new(
                        ContentHash::from_hex(c).ok_or_else(|| bad("bad content hash"))?,
                    )),
                };
                snap.messages.push(MessageMeta {
                    key: IdentityKey::from_hex(f[2]).ok_or_else(|| bad("bad key"))?,
                    size: num(f[1])?,
                    flags,
                    display: display.add(&text(f[5])?, &text(f[6])?, &text(f[7])?),
                    internal_date,
                    content,
                    uid: num(f[0])?,
                });
                *left -= 1;
            }
            "folder" => {
                finish(&mut current, &mut snapshots)?;
                let f = fields(line, "folder", 9)?;
                let count: usize = num(f[8])?;
                // Sized up front, but never beyond what the file can hold (a message
                // line has at least 80 bytes).
                let capacity = count.min(usize::try_from(size / 80).unwrap_or(usize::MAX));
                current = Some((
                    WireName::new(text(f[0])?),
                    Snapshot {
                        stamp: MailboxStatus {
                            uidvalidity: opt_num(f[1])?,
                            uidnext: opt_num(f[2])?,
                            messages: opt_num(f[3])?,
                            highestmodseq: opt_num(f[4])?,
                        },
                        status: FolderStatus {
                            uidvalidity: num(f[5])?,
                            uidnext: opt_num(f[6])?,
                            exists: num(f[7])?,
                        },
                        messages: Vec::with_capacity(capacity),
                    },
                    count,
                ));
            }
            "flags" => {
                if current.is_some() {
                    return Err(bad("flags after the first folder"));
                }
                let mut parts = line.split('\t').skip(1);
                if parts.next().map(num::<usize>).transpose()? != Some(sets.len()) {
                    return Err(bad("flag sets out of order"));
                }
                let flags = parts.map(text).collect::<std::io::Result<Vec<String>>>()?;
                sets.push(FlagSet::new(flags));
            }
            "end" => {
                let f = fields(line, "end", 1)?;
                let want = crate::model::hex(&std::mem::take(&mut lines.hasher).finalize().into());
                if f[0] != want {
                    return Err(bad("checksum mismatch"));
                }
                finish(&mut current, &mut snapshots)?;
                if lines.next()? {
                    return Err(bad("data after the end line"));
                }
                return Ok(Some(snapshots));
            }
            other => return Err(bad(format!("unknown line `{other}`"))),
        }
        lines.hash();
    }
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
    use crate::message::DisplayFields;

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

    /// Every byte counts: one changed character anywhere (a key, a UID, a count) and the
    /// file is refused whole, so a damaged cache can never make the plan copy twice.
    #[test]
    fn any_changed_byte_is_refused() {
        let mut c = collected();
        c.inventory.folders[0].messages[0].display =
            DisplayFields::new("Mon, 1 Jan 2024", "a@b", "hello");
        let mut bytes = Vec::new();
        encode(&mut bytes, &c).unwrap();
        let good = decode(bytes.as_slice(), bytes.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!(good[&WireName::inbox()].messages.len(), 1);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
            let got = decode(bad.as_slice(), bad.len() as u64);
            assert!(
                !matches!(got, Ok(Some(_))),
                "byte {at} changed and still read: {:?}",
                String::from_utf8_lossy(&bad)
            );
        }
        // Trailing data after the end line, or no end line at all.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"m\t1\n");
        assert!(decode(longer.as_slice(), 0).is_err());
        let cut = bytes.len() - 10;
        assert!(decode(&bytes[..cut], 0).is_err());
    }

    /// Format v1 (JSON, `.json` beside it) is not read: the inventory is read again, and
    /// the next write removes the old file.
    #[test]
    fn a_v1_cache_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = v1_path(dir.path(), &server(), "u@x", Side::Source);
        std::fs::create_dir_all(v1.parent().unwrap()).unwrap();
        let json = br#"{"format":"mailshift inventory cache v1","tool_version":"0.1.0","folders":{"INBOX":{"stamp":{"uidvalidity":5,"uidnext":8,"messages":1},"status":{"uidvalidity":5,"uidnext":8,"exists":1},"messages":[]}}}"#;
        std::fs::write(&v1, json).unwrap();
        assert!(read(dir.path(), &server(), "u@x", Side::Source).is_empty());
        // Even under the new name.
        let path = path_for(dir.path(), &server(), "u@x", Side::Source);
        std::fs::write(&path, json).unwrap();
        assert!(read(dir.path(), &server(), "u@x", Side::Source).is_empty());
        write(dir.path(), &server(), "u@x", Side::Source, &collected()).unwrap();
        assert!(!v1.exists(), "the v1 file is removed");
        assert_eq!(read(dir.path(), &server(), "u@x", Side::Source).len(), 1);
        // Another tool version's v2 file is ignored too.
        let text = std::fs::read_to_string(&path).unwrap();
        let other = text.replacen(
            &format!("version\t{}", env!("CARGO_PKG_VERSION")),
            "version\t0.0.0-other",
            1,
        );
        assert_ne!(other, text);
        std::fs::write(&path, other).unwrap();
        assert!(read(dir.path(), &server(), "u@x", Side::Source).is_empty());
    }

    use proptest::prelude::*;

    fn any_message() -> impl Strategy<Value = MessageMeta> {
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            prop::collection::vec("[ -~\t\\\\]{1,8}", 0..3),
            ".{0,12}",
            "[^\t]{0,12}",
            ".{0,12}",
            prop::option::of((-62_135_596_800i64..253_402_300_799, -1439i16..=1439)),
            prop::option::of(any::<[u8; 32]>()),
            any::<u32>(),
        )
            .prop_map(
                |(key, size, flags, date, from, subject, when, content, uid)| MessageMeta {
                    key: IdentityKey(key),
                    size,
                    flags: FlagSet::new(flags),
                    display: DisplayFields::new(&date, &from, &subject),
                    internal_date: when.and_then(|(s, o)| InternalDate::new(s, o)),
                    content: content.map(|c| Box::new(ContentHash(c))),
                    uid,
                },
            )
    }

    proptest! {
        #[test]
        fn the_format_round_trips(
            folders in prop::collection::vec(
                ("[ -~\t\n\\\\]{1,10}", prop::collection::vec(any_message(), 0..6),
                 prop::option::of(any::<u64>())),
                0..4,
            )
        ) {
            let mut c = Collected::default();
            for (name, messages, modseq) in &folders {
                let wire = WireName::new(name.clone());
                if c.stamps.contains_key(&wire) {
                    continue;
                }
                c.stamps.insert(wire.clone(), MailboxStatus {
                    uidvalidity: Some(1),
                    uidnext: None,
                    messages: Some(messages.len() as u32),
                    highestmodseq: *modseq,
                });
                c.inventory.folders.push(Folder {
                    wire_name: wire,
                    name: name.clone(),
                    attributes: vec![],
                    special_use: None,
                    noselect: false,
                    subscribed: false,
                    status: Some(FolderStatus { uidvalidity: 1, uidnext: Some(9), exists: messages.len() as u32 }),
                    messages: messages.clone(),
                    append_limit: None,
                });
            }
            let mut bytes = Vec::new();
            encode(&mut bytes, &c).unwrap();
            let back = decode(bytes.as_slice(), bytes.len() as u64).unwrap().unwrap();
            prop_assert_eq!(back.len(), c.inventory.folders.len());
            for f in &c.inventory.folders {
                let snap = &back[&f.wire_name];
                prop_assert_eq!(&snap.messages, &f.messages);
                prop_assert_eq!(snap.stamp, c.stamps[&f.wire_name]);
                prop_assert_eq!(Some(snap.status), f.status);
            }
        }
    }
}
