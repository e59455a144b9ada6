//! What `cutover` remembers between runs, under `[state] dir` (no secrets, only host and
//! user names, TTLs, UIDs and times):
//! - `cutover.json`: per mail domain, the TTL seen last, when a lower TTL and the switch
//!   were first seen ([`DomainMemory`]). Rewritten whole, atomically.
//! - `final-passes.jsonl`: one line per account each time `apply` finished it
//!   ([`FinalPass`]). Append-only; a torn last line (a crash mid-write) is ignored; the last
//!   line for an account wins.
//!
//! Times are RFC 3339 UTC. A test (or an admin who knows better) may edit them: the next
//! run takes them as they are.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DomainMemory, FinalPass};
use crate::diagnostics::HasHint;

const DOMAINS_FILE: &str = "cutover.json";
const PASSES_FILE: &str = "final-passes.jsonl";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("cannot read `{path}`")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}`")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a cutover state file: {message}")]
    Corrupt { path: String, message: String },
}

impl HasHint for StateError {
    fn hint(&self) -> Option<String> {
        match self {
            StateError::Corrupt { .. } => Some(
                "move the file away: the next `mailshift cutover` starts observing afresh \
                 (switch times are then taken from that run)"
                    .to_string(),
            ),
            StateError::Write { .. } => {
                Some("`[state] dir` in the config must be a writable directory".to_string())
            }
            StateError::Read { .. } => None,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DomainsFile {
    format_version: u32,
    #[serde(default)]
    domains: BTreeMap<String, DomainMemory>,
}

fn domains_path(dir: &Path) -> PathBuf {
    dir.join(DOMAINS_FILE)
}

/// A state file's bytes, or `None` when it does not exist yet (nothing remembered).
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The domains' memory; empty when there is no file yet.
pub(crate) fn load_domains(dir: &Path) -> Result<BTreeMap<String, DomainMemory>, StateError> {
    let path = domains_path(dir);
    let Some(text) = read_if_present(&path)? else {
        return Ok(BTreeMap::new());
    };
    let file: DomainsFile = serde_json::from_slice(&text).map_err(|e| StateError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    if file.format_version != FORMAT_VERSION {
        return Err(StateError::Corrupt {
            path: path.display().to_string(),
            message: format!("unknown format_version `{}`", file.format_version),
        });
    }
    Ok(file.domains)
}

/// Replaces the domains' memory (temp file + rename: never half a file).
pub(crate) fn save_domains(
    dir: &Path,
    domains: &BTreeMap<String, DomainMemory>,
) -> Result<(), StateError> {
    let path = domains_path(dir);
    let io = |source| StateError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = DomainsFile {
        format_version: FORMAT_VERSION,
        domains: domains.clone(),
    };
    let json = serde_json::to_string_pretty(&file).expect("plain data serializes");
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(json.as_bytes()).map_err(io)?;
    tmp.write_all(b"\n").map_err(io)?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Appends one finished pass (one short line, one `write`: lines from parallel shards do
/// not interleave).
pub(crate) fn record_final_pass(dir: &Path, pass: &FinalPass) -> Result<(), StateError> {
    let path = dir.join(PASSES_FILE);
    let io = |source| StateError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut line = serde_json::to_string(pass).expect("plain data serializes");
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    file.write_all(line.as_bytes()).map_err(io)?;
    Ok(())
}

/// The last recorded pass per (source host, source user), both lower-cased.
pub(crate) fn load_final_passes(
    dir: &Path,
) -> Result<BTreeMap<(String, String), FinalPass>, StateError> {
    let path = dir.join(PASSES_FILE);
    let Some(text) = read_if_present(&path)? else {
        return Ok(BTreeMap::new());
    };
    let mut passes = BTreeMap::new();
    for line in text.split(|&b| b == b'\n') {
        // A torn line (crash mid-append) or garbage is skipped, never fatal: a lost
        // record only means `cutover` asks for one more pass.
        let Ok(pass) = serde_json::from_slice::<FinalPass>(line) else {
            continue;
        };
        passes.insert(pass_key(&pass.source_host, &pass.source_user), pass);
    }
    Ok(passes)
}

pub(crate) fn pass_key(host: &str, user: &str) -> (String, String) {
    (host.to_lowercase(), user.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn pass(user: &str, uidnext: u32) -> FinalPass {
        FinalPass {
            source_host: "IMAP.old.example".into(),
            source_user: user.into(),
            started_at: Utc.with_ymd_and_hms(2026, 11, 30, 5, 0, 0).unwrap(),
            inbox_uidvalidity: 7,
            inbox_uidnext: uidnext,
        }
    }

    #[test]
    fn domains_round_trip_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("state");
        assert!(load_domains(&sub).unwrap().is_empty());
        let mut domains = BTreeMap::new();
        domains.insert(
            "new.example".to_string(),
            DomainMemory {
                last_ttl: Some(300),
                ..DomainMemory::default()
            },
        );
        save_domains(&sub, &domains).unwrap();
        assert_eq!(load_domains(&sub).unwrap(), domains);
    }

    #[test]
    fn a_corrupt_domains_file_is_an_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DOMAINS_FILE), "{not json").unwrap();
        let e = load_domains(dir.path()).unwrap_err();
        assert!(e.to_string().contains("cutover.json"), "{e}");
        assert!(e.hint().unwrap().contains("move the file away"));
    }

    #[test]
    fn last_pass_wins_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        record_final_pass(dir.path(), &pass("alice@old.example", 5)).unwrap();
        record_final_pass(dir.path(), &pass("bob@old.example", 9)).unwrap();
        record_final_pass(dir.path(), &pass("Alice@old.example", 8)).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(PASSES_FILE))
            .unwrap();
        f.write_all(b"{\"source_host\":\"imap.old.example\",\"source_u")
            .unwrap();
        let passes = load_final_passes(dir.path()).unwrap();
        assert_eq!(passes.len(), 2);
        let alice = &passes[&pass_key("imap.old.example", "ALICE@old.example")];
        assert_eq!(alice.inbox_uidnext, 8);
    }
}
