//! The saved plan (`plan --out`, `show`, `apply PLANFILE`): one serde type for the JSON
//! document, its format version, and the checks that refuse a stale or foreign plan.

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

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serializes")
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
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, self.to_json().as_bytes()).map_err(io)?;
        std::io::Write::write_all(&mut tmp, b"\n").map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Reads a plan and refuses another format version.
    pub(crate) fn load(path: &Path) -> Result<PlanFile, PlanFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PlanFileError::Read {
            path: shown.clone(),
            source,
        })?;
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: Option<u32>,
        }
        let version: VersionOnly =
            serde_json::from_str(&text).map_err(|source| PlanFileError::Parse {
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
        serde_json::from_str(&text).map_err(|source| PlanFileError::Parse {
            path: shown,
            source,
        })
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
