//! Flags: which flags a destination folder stores, `flags-on-existing = "add"`, and the
//! one warning per keyword the destination refuses.

use crate::plan::{FolderPlan, MessageCopy};

use super::lanes::Lane;
use super::ApplyError;

/// Which flags the destination folder stores (from SELECT's PERMANENTFLAGS).
pub(crate) struct FlagFilter {
    permanent: Vec<String>,
    new_keywords: bool,
}

impl FlagFilter {
    pub(crate) fn new(permanent: &[String], new_keywords: bool) -> FlagFilter {
        FlagFilter {
            permanent: permanent.to_vec(),
            new_keywords,
        }
    }

    /// System flags always pass (except `\Recent`); keywords only when the folder can
    /// store them.
    pub(crate) fn allows(&self, flag: &str) -> bool {
        if flag.eq_ignore_ascii_case("\\Recent") {
            return false;
        }
        flag.starts_with('\\')
            || self.new_keywords
            || self.permanent.iter().any(|p| p.eq_ignore_ascii_case(flag))
    }

    pub(crate) fn filter(&self, flags: &[String]) -> Vec<String> {
        flags.iter().filter(|f| self.allows(f)).cloned().collect()
    }

    /// Every flag but `\Recent`: what an APPEND tries first (a server may store keywords it
    /// does not announce).
    pub(crate) fn optimistic(&self, flags: &[String]) -> Vec<String> {
        flags
            .iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .cloned()
            .collect()
    }
}

impl Lane<'_, '_> {
    /// `flags-on-existing = "add"`: adds the source's missing flags to existing destination
    /// messages, grouped by flag set. Skipped when the folder's UIDVALIDITY changed since
    /// the plan (the UIDs would name other messages).
    pub(super) async fn add_flags(
        &mut self,
        folder: &FolderPlan,
        sel: &crate::imap::SelectInfo,
        allowed: &FlagFilter,
    ) -> Result<(), ApplyError> {
        if folder.destination_status.map(|s| s.uidvalidity) != Some(sel.status.uidvalidity) {
            tracing::warn!(
                account = %self.tally.report.source_user,
                "`{}` changed UIDVALIDITY since the plan; flags not added (run mailshift plan again)",
                folder.destination
            );
            return Ok(());
        }
        let mut by_flags: std::collections::BTreeMap<Vec<String>, Vec<u32>> = Default::default();
        for u in &folder.flag_updates {
            let flags = allowed.filter(&u.add);
            if !flags.is_empty() {
                by_flags.entry(flags).or_default().push(u.uid);
            }
        }
        for (flags, uids) in by_flags {
            self.dst
                .add_flags(&uids, &flags)
                .await
                .map_err(ApplyError::dst)?;
            self.dst.backoff.progress();
            self.tally.report.flags_updated += uids.len() as u64;
        }
        Ok(())
    }

    /// One warning per keyword and account, for a message copied without it.
    pub(super) fn warn_dropped_keywords(&self, m: &MessageCopy, allowed: &FlagFilter) {
        for flag in &m.flags {
            if !allowed.allows(flag)
                && self
                    .tally
                    .warned_keywords
                    .lock()
                    .expect("not poisoned")
                    .insert(flag.clone())
            {
                tracing::warn!(
                    account = %self.tally.report.source_user,
                    "the destination does not store the keyword `{flag}`; messages are copied without it"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_pass_only_when_storable() {
        let f = FlagFilter::new(&["\\Seen".into(), "$Label1".into()], false);
        let flags: Vec<String> = ["\\Seen", "\\Recent", "$Label1", "custom", "\\Flagged"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(f.filter(&flags), vec!["\\Seen", "$Label1", "\\Flagged"]);
        let open = FlagFilter::new(&[], true);
        assert_eq!(
            open.filter(&flags),
            vec!["\\Seen", "$Label1", "custom", "\\Flagged"]
        );
        // The first APPEND tries every keyword (servers may under-report); only a refusal
        // falls back to `filter`.
        assert_eq!(
            f.optimistic(&flags),
            vec!["\\Seen", "$Label1", "custom", "\\Flagged"]
        );
    }
}
