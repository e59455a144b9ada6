//! The ledger of one destination account: an append-only text file, one record per line,
//! `<key hex> <count> <check>` where `check` is the first 8 hex digits of SHA-256 over
//! `<key hex> <count>`. A key's value is the largest count recorded for it.
//!
//! Crash safety without rewriting anything: a record is appended in one `write` and
//! synced; a crash can only leave a torn *last* record (no newline, or a bad check), which
//! reading drops. Before appending after a torn tail the writer ends it with a newline,
//! so the torn bytes stay a line of their own and never glue onto a good record. A
//! damaged record anywhere is ignored with a warning, never the file: a ledger that knows
//! too little only makes a run copy again what someone deleted; it never loses mail.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::identity::IdentityKey;
use crate::plan::{HeldCounts, LedgerEntry};
use crate::settings::ServerSettings;

/// The first line of every ledger file.
const HEADER: &str = "mailshift ledger v1";

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("cannot read the ledger `{path}`")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the ledger `{path}`")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a mailshift ledger (its first line is not `{HEADER}`)")]
    Foreign { path: String },
}

impl crate::diagnostics::HasHint for StateError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            StateError::Read { .. } | StateError::Write { .. } => {
                "the ledger lives under `[state] dir` (default `.mailshift` beside the config); make it writable, or point `dir` at a volume that is".to_string()
            }
            StateError::Foreign { .. } => {
                "move that file away; mailshift never overwrites a file it did not write".to_string()
            }
        })
    }
}

/// Where one destination account's ledger lives: `DIR/ledger/HOST-PORT-USER-HASH.ledger`
/// (readable, and a hash of the exact host, port and user so that names that sanitize
/// alike never share a file). The port is part of it: two servers on one host are two
/// accounts.
pub(crate) fn path_for(dir: &Path, server: &ServerSettings, user: &str) -> PathBuf {
    dir.join("ledger")
        .join(format!("{}.ledger", account_stem(server, user)))
}

/// `HOST-PORT-USER-HASH`: a readable file name stem for one account on one server, with
/// a hash of the exact host, port and user so that names that sanitize alike never share
/// a file.
pub(crate) fn account_stem(server: &ServerSettings, user: &str) -> String {
    let host = server.host.to_ascii_lowercase();
    let user = user.to_lowercase();
    let digest = Sha256::digest(format!("{host}\0{}\0{user}", server.port));
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let readable: String = format!("{host}-{}-{user}", server.port)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '+' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    format!("{readable}-{hash}")
}

fn check_of(body: &str) -> String {
    Sha256::digest(body.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn record(key: &IdentityKey, count: u32) -> String {
    let body = format!("{} {count}", key.to_hex());
    let check = check_of(&body);
    format!("{body} {check}\n")
}

fn parse_record(line: &str) -> Option<(IdentityKey, u32)> {
    let (body, check) = line.rsplit_once(' ')?;
    if check_of(body) != check {
        return None;
    }
    let (key, count) = body.split_once(' ')?;
    Some((IdentityKey::from_hex(key)?, count.parse().ok()?))
}

/// A ledger's contents.
#[derive(Debug, Default)]
struct Parsed {
    counts: HeldCounts,
    /// Records that failed their check (a torn tail included).
    damaged: usize,
    /// The file does not end with a newline (a torn last record).
    torn_tail: bool,
    has_header: bool,
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, StateError> {
    let mut parsed = Parsed {
        torn_tail: !bytes.is_empty() && !bytes.ends_with(b"\n"),
        ..Parsed::default()
    };
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split_terminator('\n');
    match lines.next() {
        None => return Ok(parsed),
        Some(first) if first.starts_with(HEADER) => parsed.has_header = true,
        // A header torn by a crash while creating the file.
        Some(first) if parsed.torn_tail && HEADER.starts_with(first) => return Ok(parsed),
        Some(_) => {
            return Err(StateError::Foreign {
                path: path.display().to_string(),
            })
        }
    }
    let mut records = Vec::new();
    for line in lines {
        match parse_record(line) {
            Some(record) => records.push(record),
            None => parsed.damaged += 1,
        }
    }
    // The highest count of each key.
    parsed.counts = records.into_iter().collect();
    Ok(parsed)
}

/// Reading a ledger (what `plan` does; it never writes one).
pub(crate) struct Ledger;

impl Ledger {
    /// The destination account's ledger, or `None` when it has none yet (first run, or
    /// the state directory was lost: nothing is known about deletions).
    pub(crate) fn read(
        dir: &Path,
        server: &ServerSettings,
        user: &str,
    ) -> Result<Option<HeldCounts>, StateError> {
        let path = path_for(dir, server, user);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let parsed = parse(&path, &bytes)?;
        warn_damaged(&path, &parsed);
        Ok(parsed.has_header.then_some(parsed.counts))
    }
}

fn warn_damaged(path: &Path, parsed: &Parsed) {
    if parsed.damaged > 0 {
        tracing::warn!(
            "ledger `{}`: {} damaged record(s) ignored (a run interrupted while writing leaves one); copies they counted may be copied again",
            path.display(),
            parsed.damaged
        );
    }
}

/// Appends to one destination account's ledger during `apply`. Records only what raises a
/// key's value, so the file grows with what the account gained, not with each run.
#[derive(Debug)]
pub(crate) struct LedgerWriter {
    path: PathBuf,
    file: File,
    /// Per key: the value recorded, and the copies delivered by this run so far. One map,
    /// not two: an account of 500,000 messages has as many keys (issue 10).
    known: HashMap<IdentityKey, Counts>,
    pending: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    recorded: u32,
    delivered: u32,
}

impl LedgerWriter {
    /// Opens (creating the directory and file when needed) the account's ledger.
    pub(crate) fn open(
        dir: &Path,
        server: &ServerSettings,
        user: &str,
    ) -> Result<LedgerWriter, StateError> {
        let path = path_for(dir, server, user);
        let write_err = |source| StateError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(write_err)?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|source| StateError::Read {
                path: path.display().to_string(),
                source,
            })?;
        let parsed = parse(&path, &bytes)?;
        warn_damaged(&path, &parsed);
        let mut pending = String::new();
        if parsed.torn_tail {
            // Keep the torn bytes on a line of their own.
            pending.push('\n');
        }
        if !parsed.has_header {
            pending.push_str(HEADER);
            pending.push_str(" (one line per identity key: copies the destination account held, deleted ones included; append-only, no secrets)\n");
        }
        let mut writer = LedgerWriter {
            path,
            file,
            known: parsed
                .counts
                .iter()
                .map(|(k, n)| {
                    let c = Counts {
                        recorded: *n,
                        delivered: 0,
                    };
                    (*k, c)
                })
                .collect(),
            pending,
        };
        writer.flush()?;
        Ok(writer)
    }

    /// Records what the account holds now (the plan's `ledger_updates`), synced.
    pub(crate) fn record_present(&mut self, entries: &[LedgerEntry]) -> Result<(), StateError> {
        for e in entries {
            self.raise(e.key, e.count);
        }
        self.flush()
    }

    /// One more copy of `key` arrived; `base` is the plan's count for the key before this
    /// run's copies (see `MessageCopy::ledger_base`). Buffered until
    /// [`LedgerWriter::flush`].
    pub(crate) fn delivered(&mut self, key: IdentityKey, base: u32) {
        let c = self.known.entry(key).or_default();
        c.delivered += 1;
        let count = base.saturating_add(c.delivered);
        self.raise(key, count);
    }

    /// Room for `keys` more keys at once, instead of growing by doubling mid-run (the
    /// executor knows how many copies it delivers).
    pub(crate) fn reserve(&mut self, keys: usize) {
        self.known.reserve(keys);
    }

    fn raise(&mut self, key: IdentityKey, count: u32) {
        let c = self.known.entry(key).or_default();
        if count > c.recorded {
            c.recorded = count;
            self.pending.push_str(&record(&key, count));
        }
    }

    /// Appends the buffered records in one write and syncs them.
    pub(crate) fn flush(&mut self) -> Result<(), StateError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self
            .file
            .write_all(self.pending.as_bytes())
            .and_then(|()| self.file.sync_data());
        self.pending.clear();
        result.map_err(|source| StateError::Write {
            path: self.path.display().to_string(),
            source,
        })
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::HasHint;

    fn server(port: u16) -> ServerSettings {
        ServerSettings::for_tests("Mail.Example", port)
    }

    fn key(n: u8) -> IdentityKey {
        IdentityKey([n; 32])
    }

    #[test]
    fn no_file_means_nothing_known_and_reading_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Ledger::read(dir.path(), &server(993), "u")
            .unwrap()
            .is_none());
        assert!(!dir.path().join("ledger").exists());
    }

    #[test]
    fn records_the_most_copies_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = server(993);
        let mut w = LedgerWriter::open(dir.path(), &s, "User@x").unwrap();
        w.record_present(&[LedgerEntry {
            key: key(1),
            count: 2,
        }])
        .unwrap();
        w.delivered(key(2), 0);
        w.delivered(key(2), 0);
        // Held 2 at plan time: the first delivered copy makes 3.
        w.delivered(key(1), 2);
        w.flush().unwrap();
        drop(w);
        let counts = Ledger::read(dir.path(), &s, "user@X").unwrap().unwrap();
        assert_eq!(counts.get(&key(1)), Some(&3));
        assert_eq!(counts.get(&key(2)), Some(&2));
        // A lower value never lowers it, and nothing is written for it.
        let mut w = LedgerWriter::open(dir.path(), &s, "user@x").unwrap();
        let len = std::fs::metadata(w.path()).unwrap().len();
        w.record_present(&[LedgerEntry {
            key: key(1),
            count: 1,
        }])
        .unwrap();
        assert_eq!(std::fs::metadata(w.path()).unwrap().len(), len);
        // Another port is another account.
        assert!(Ledger::read(dir.path(), &server(143), "user@x")
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_torn_last_record_is_dropped_never_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = server(993);
        let mut w = LedgerWriter::open(dir.path(), &s, "u").unwrap();
        w.delivered(key(1), 0);
        w.delivered(key(2), 0);
        w.flush().unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        // A crash in the middle of appending key 3's record.
        let torn = record(&key(3), 1);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&torn.as_bytes()[..40]).unwrap();
        drop(f);
        let counts = Ledger::read(dir.path(), &s, "u").unwrap().unwrap();
        assert_eq!(counts.len(), 2);
        // Appending after the torn tail keeps every good record readable.
        let mut w = LedgerWriter::open(dir.path(), &s, "u").unwrap();
        w.delivered(key(4), 0);
        w.flush().unwrap();
        let counts = Ledger::read(dir.path(), &s, "u").unwrap().unwrap();
        let mut keys: Vec<_> = counts.iter().map(|(k, _)| *k).collect();
        keys.sort();
        assert_eq!(keys, vec![key(1), key(2), key(4)]);
        // Garbage (a block of zeros after a power loss) is a damaged record, not a lost file.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        drop(f);
        assert_eq!(Ledger::read(dir.path(), &s, "u").unwrap().unwrap().len(), 3);
    }

    #[test]
    fn a_foreign_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = server(993);
        let path = path_for(dir.path(), &s, "u");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "something else\n").unwrap();
        let e = Ledger::read(dir.path(), &s, "u").unwrap_err();
        assert!(matches!(e, StateError::Foreign { .. }));
        assert!(e.hint().is_some());
        assert!(LedgerWriter::open(dir.path(), &s, "u").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"something else\n");
    }

    #[test]
    fn file_names_are_readable_and_distinct() {
        let a = path_for(Path::new("st"), &server(993), "a/b c@x");
        let b = path_for(Path::new("st"), &server(993), "a_b c@x");
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("mail.example-993-a_b_c@x-"), "{name}");
    }
}
