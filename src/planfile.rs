//! The saved plan (`plan --out`, `show`, `apply PLANFILE`): one serde type for the JSON
//! document, its format version, and the checks that refuse a stale or foreign plan.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::plan::{AccountPlan, Summary};

/// Bumped whenever a saved plan could be misread by another version.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The JSON document of `plan --format json`, `plan --out` and `show --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlanFile {
    pub format_version: u32,
    pub tool_version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// When the inventory behind this plan began reading the servers (RFC 3339, UTC):
    /// `cutover` counts mail that reached the source after it as not yet copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_started_at: Option<String>,
    /// Digest of the config file and account list (never of secrets).
    pub config_digest: String,
    pub accounts: Vec<AccountPlan>,
    pub summary: Summary,
}

impl PlanFile {
    pub(crate) fn new(config_digest: String, accounts: Vec<AccountPlan>) -> PlanFile {
        let mut summary = Summary::default();
        for a in accounts.iter().filter(|a| a.error.is_none()) {
            summary.add(&a.summary);
        }
        PlanFile {
            format_version: FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            inventory_started_at: None,
            config_digest,
            accounts,
            summary,
        }
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.accounts.iter().any(|a| a.error.is_some())
    }

    pub(crate) fn has_changes(&self) -> bool {
        self.summary.has_changes()
    }

    /// The JSON document as a string (tests; commands stream it with
    /// [`PlanFile::write_json`]).
    #[cfg(test)]
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serializes")
    }

    /// The same bytes as [`PlanFile::to_json`] and a line feed, written as they are made:
    /// a plan of 500,000 copies is never held a second time as text (issue 10).
    pub(crate) fn write_json(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut out, self)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Writes the plan atomically (temp file + rename), so a crash never leaves half a plan.
    pub(crate) fn save(&self, path: &Path) -> Result<(), PlanFileError> {
        let io = |source| PlanFileError::Write {
            path: path.display().to_string(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        self.write_json(std::io::BufWriter::with_capacity(1 << 16, tmp.as_file()))
            .map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Reads a plan and refuses another format version.
    pub(crate) fn load(path: &Path) -> Result<PlanFile, PlanFileError> {
        let shown = path.display().to_string();
        // Read as a stream, twice (the version first), rather than held whole as text
        // beside the plan: a plan of 500,000 copies is a few hundred MB of JSON.
        let open = || {
            std::fs::File::open(path)
                .map(|f| std::io::BufReader::with_capacity(1 << 16, f))
                .map_err(|source| PlanFileError::Read {
                    path: shown.clone(),
                    source,
                })
        };
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: Option<u32>,
        }
        let version: VersionOnly =
            serde_json::from_reader(open()?).map_err(|source| PlanFileError::Parse {
                path: shown.clone(),
                source,
            })?;
        match version.format_version {
            Some(FORMAT_VERSION) => {}
            found => {
                return Err(PlanFileError::Version {
                    path: shown,
                    found: found.map_or("none".to_string(), |v| v.to_string()),
                })
            }
        }
        // Flag sets and display fields shared across the copies, as when it was made.
        let reader = open()?;
        let plan: PlanFile =
            crate::message::sharing(|| serde_json::from_reader(reader)).map_err(|source| {
                PlanFileError::Parse {
                    path: shown.clone(),
                    source,
                }
            })?;
        plan.validate().map_err(|problem| PlanFileError::Invalid {
            path: shown,
            problem,
        })?;
        Ok(plan)
    }

    /// The structure a hand-edited or damaged file may have lost: every index in range,
    /// no account, destination folder or copy listed twice (the executor trusts these: an
    /// index out of range would panic, a copy listed twice would be copied twice).
    fn validate(&self) -> Result<(), String> {
        let mut accounts = HashSet::new();
        for account in &self.accounts {
            let who = format!("account `{}`", account.source_user);
            if !accounts.insert(account.source_user.to_lowercase()) {
                return Err(format!("{who} is listed twice"));
            }
            let mut destinations = HashSet::new();
            let mut copies = HashSet::new();
            for folder in &account.folders {
                let at = format!("{who}, folder `{}`", folder.destination);
                if !destinations.insert(folder.destination_wire.as_str()) {
                    return Err(format!("{at} is listed twice"));
                }
                let in_range = |index: usize, what: &str, uid: u32| {
                    if index < folder.sources.len() {
                        Ok(())
                    } else {
                        Err(format!(
                            "{at}: the {what} of UID {uid} names source folder {index}, but the \
                             folder has {}",
                            match folder.sources.len() {
                                0 => "no source folders".to_string(),
                                1 => "1 source folder".to_string(),
                                n => format!("{n} source folders"),
                            }
                        ))
                    }
                };
                for m in &folder.copy {
                    in_range(m.source, "copy", m.uid)?;
                    let source = &folder.sources[m.source];
                    if !copies.insert((source.wire_name.as_str(), m.uid)) {
                        return Err(format!(
                            "{at}: UID {} of source folder `{}` is listed twice",
                            m.uid, source.name
                        ));
                    }
                }
                for m in &folder.skipped {
                    in_range(m.source, "skipped message", m.uid)?;
                }
            }
        }
        Ok(())
    }

    /// Refuses a plan made with another config or account list.
    pub(crate) fn check_digest(&self, path: &Path, current: &str) -> Result<(), PlanFileError> {
        if self.config_digest != current {
            return Err(PlanFileError::Stale {
                path: path.display().to_string(),
                reason: "the config file or the account list changed since it was made".to_string(),
            });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanFileError {
    #[error("cannot read the plan file `{path}`")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the plan file `{path}`")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("`{path}` is not a mailshift plan")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("the plan file `{path}` has format version {found}, this mailshift reads version {FORMAT_VERSION}")]
    Version { path: String, found: String },
    /// A file that parses but cannot be a plan mailshift wrote (edited or damaged).
    #[error("the plan file `{path}` is damaged: {problem}")]
    Invalid { path: String, problem: String },
    #[error("saved plan `{path}` is stale: {reason}")]
    Stale { path: String, reason: String },
}

impl crate::diagnostics::HasHint for PlanFileError {
    fn hint(&self) -> Option<String> {
        match self {
            PlanFileError::Read { .. } | PlanFileError::Write { .. } => None,
            PlanFileError::Parse { path, .. } => {
                Some(format!("make one with `mailshift plan --out {path}`"))
            }
            PlanFileError::Invalid { .. } => Some(
                "make a new plan with `mailshift plan --out FILE`; a plan file is not meant to \
                 be edited"
                    .into(),
            ),
            PlanFileError::Version { .. } | PlanFileError::Stale { .. } => {
                Some("run mailshift plan again".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::HasHint;

    /// Saved and printed plans are streamed; the bytes are the document's, and a plan
    /// with copies (shared flags, packed dates, display fields) loads back equal.
    #[test]
    fn streamed_json_is_the_document_and_loads_back() {
        use crate::inventory::Inventory;
        use crate::plan::fixtures::{folder, msg, planned};
        let mut m = msg(7, 1, 100, &["\\Seen", "$Label1"]);
        m.internal_date = crate::message::InternalDate::from_rfc3339("2024-03-01T10:00:00+05:30");
        m.display = crate::message::DisplayFields::new("Fri, 1 Mar 2024", "a@b", "Grüße\t\"x\"");
        let source = Inventory::modern(vec![folder("INBOX", &[], vec![m, msg(8, 2, 50, &[])])]);
        let destination = Inventory::modern(vec![folder("INBOX", &[], vec![])]);
        let account = planned("a", "b", &source, &destination);
        assert_eq!(account.summary.messages_to_copy, 2);
        let plan = PlanFile::new("abc".into(), vec![account]);
        let mut streamed = Vec::new();
        plan.write_json(&mut streamed).unwrap();
        assert_eq!(streamed, format!("{}\n", plan.to_json()).into_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        plan.save(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), streamed);
        let back = PlanFile::load(&path).unwrap();
        assert_eq!(back, plan);
        let copy = &back.accounts[0].folders[0].copy[0];
        assert_eq!(copy.display.subject(), "Grüße\t\"x\"");
        assert_eq!(
            copy.internal_date.unwrap().to_rfc3339(),
            "2024-03-01T10:00:00+05:30"
        );
        assert_eq!(copy.flags.as_slice(), ["\\Seen", "$Label1"]);
    }

    #[test]
    fn round_trip_and_version_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let plan = PlanFile::new("abc".into(), vec![]);
        plan.save(&path).unwrap();
        assert_eq!(PlanFile::load(&path).unwrap(), plan);

        let mut v: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
        v["format_version"] = 99.into();
        std::fs::write(&path, v.to_string()).unwrap();
        let err = PlanFile::load(&path).unwrap_err();
        assert!(err.to_string().contains("format version 99"), "{err}");
        assert!(!err.to_string().contains("hint"), "{err}");
        assert_eq!(err.hint().as_deref(), Some("run mailshift plan again"));
    }

    #[test]
    fn digest_mismatch_is_stale() {
        let plan = PlanFile::new("abc".into(), vec![]);
        assert!(plan.check_digest(Path::new("p.json"), "abc").is_ok());
        let err = plan.check_digest(Path::new("p.json"), "xyz").unwrap_err();
        assert!(
            err.to_string().starts_with("saved plan `p.json` is stale"),
            "{err}"
        );
        assert_eq!(err.hint().as_deref(), Some("run mailshift plan again"));
    }

    /// A saved plan (as JSON) of one account: INBOX and `Work` created, 2 + 1 copies.
    fn sample_plan() -> serde_json::Value {
        use crate::inventory::Inventory;
        use crate::plan::fixtures::{folder, msg, planned};
        let source = Inventory::classic(vec![
            folder("INBOX", &[], vec![msg(1, 1, 10, &[]), msg(2, 2, 10, &[])]),
            folder("INBOX.Work", &[], vec![msg(1, 3, 10, &[])]),
        ]);
        let destination = Inventory::modern(vec![folder("INBOX", &[], vec![])]);
        let account = planned("alice", "alice", &source, &destination);
        let plan = PlanFile::new("abc".into(), vec![account]);
        serde_json::from_str(&plan.to_json()).unwrap()
    }

    /// Saves `plan` and loads it: the error's text and hint.
    fn load_error(plan: &serde_json::Value) -> (String, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, plan.to_string()).unwrap();
        let err = PlanFile::load(&path).unwrap_err();
        (err.to_string(), err.hint())
    }

    #[test]
    fn a_damaged_plan_is_refused_on_load_saying_where() {
        let good = sample_plan();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, good.to_string()).unwrap();
        let plan = PlanFile::load(&path).expect("the planner's own plan loads");
        assert_eq!(plan.accounts[0].folders[1].destination, "Work");
        assert_eq!(plan.accounts[0].folders[0].copy.len(), 2);

        // A folder whose source folders were removed by hand.
        let mut p = good.clone();
        p["accounts"][0]["folders"][0]["sources"] = serde_json::json!([]);
        let (text, hint) = load_error(&p);
        assert!(
            text.ends_with(
                "is damaged: account `alice`, folder `INBOX`: the copy of UID 1 names source \
                 folder 0, but the folder has no source folders"
            ),
            "{text}"
        );
        assert!(hint.unwrap().contains("mailshift plan --out"));

        // A copy entry pointing past the folder's sources.
        let mut p = good.clone();
        p["accounts"][0]["folders"][1]["copy"][0]["source"] = 3.into();
        let (text, _) = load_error(&p);
        assert!(
            text.ends_with(
                "account `alice`, folder `Work`: the copy of UID 1 names source folder 3, but \
                 the folder has 1 source folder"
            ),
            "{text}"
        );

        // The same copy listed twice would be copied twice.
        let mut p = good.clone();
        let first = p["accounts"][0]["folders"][0]["copy"][0].clone();
        p["accounts"][0]["folders"][0]["copy"]
            .as_array_mut()
            .unwrap()
            .push(first);
        let (text, _) = load_error(&p);
        assert!(
            text.ends_with(
                "account `alice`, folder `INBOX`: UID 1 of source folder `INBOX` is listed twice"
            ),
            "{text}"
        );

        // The same account twice (it would be applied twice, at once).
        let mut p = good.clone();
        let account = p["accounts"][0].clone();
        p["accounts"].as_array_mut().unwrap().push(account);
        let (text, _) = load_error(&p);
        assert!(text.ends_with("account `alice` is listed twice"), "{text}");

        // A destination folder listed twice.
        let mut p = good.clone();
        p["accounts"][0]["folders"][1]["destination_wire"] = "INBOX".into();
        let (text, _) = load_error(&p);
        assert!(
            text.ends_with("account `alice`, folder `Work` is listed twice"),
            "{text}"
        );

        // A skipped message pointing past the sources.
        let mut p = good;
        p["accounts"][0]["folders"][1]["skipped"] = serde_json::json!([
            {"source": 1, "uid": 9, "size": 1, "reason": "deleted", "subject": ""}
        ]);
        let (text, _) = load_error(&p);
        assert!(
            text.contains("the skipped message of UID 9 names source folder 1"),
            "{text}"
        );
    }

    #[test]
    fn garbage_is_not_a_plan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, "hello").unwrap();
        let err = PlanFile::load(&path).unwrap_err();
        assert!(err.to_string().contains("is not a mailshift plan"), "{err}");
        // The JSON parser's words come once, as the cause.
        let d = crate::diagnostics::Diagnostic::of(&err, |e| {
            e.downcast_ref::<PlanFileError>().and_then(HasHint::hint)
        });
        assert_eq!(d.causes.len(), 1, "{d:?}");
        assert!(!d.message.contains(&d.causes[0]), "{d:?}");
    }
}
