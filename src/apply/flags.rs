//! Flags: which flags a destination folder stores, `flags-on-existing = "add"`, and the
//! one warning per keyword the destination refuses.

use std::collections::BTreeSet;

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

    /// System flags (but `\Recent`) and the keywords PERMANENTFLAGS names: what the folder
    /// certainly stores, even when it offers `\*` and still refuses some keyword (Dovecot's
    /// `mail_max_keyword_length`: `NO [CANNOT] Keyword length too long`).
    pub(crate) fn listed(&self, flags: &[String]) -> Vec<String> {
        flags
            .iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent") && self.is_listed(f))
            .cloned()
            .collect()
    }

    /// Whether PERMANENTFLAGS names this flag (or it is a system flag).
    pub(crate) fn is_listed(&self, flag: &str) -> bool {
        flag.starts_with('\\') || self.permanent.iter().any(|p| p.eq_ignore_ascii_case(flag))
    }
}

/// `flags` without the keywords the destination account already refused.
pub(crate) fn without_refused(flags: Vec<String>, refused: &BTreeSet<String>) -> Vec<String> {
    if refused.is_empty() {
        return flags;
    }
    flags.into_iter().filter(|f| !refused.contains(f)).collect()
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
        let refused = self.refused_keywords();
        let mut by_flags: std::collections::BTreeMap<Vec<String>, Vec<u32>> = Default::default();
        for u in &folder.flag_updates {
            let flags = without_refused(allowed.filter(&u.add), &refused);
            if !flags.is_empty() {
                by_flags.entry(flags).or_default().push(u.uid);
            }
        }
        for (flags, uids) in by_flags {
            let mut added = false;
            match self
                .dst
                .add_flags(&uids, &flags)
                .await
                .map_err(ApplyError::dst)?
            {
                Ok(()) => added = true,
                // One flag refused (Dovecot: a keyword longer than `mail_max_keyword_length`,
                // though PERMANENTFLAGS offers `\*`): each flag alone, the refused ones
                // dropped with one warning each.
                Err(_) => {
                    for flag in &flags {
                        match self
                            .dst
                            .add_flags(&uids, std::slice::from_ref(flag))
                            .await
                            .map_err(ApplyError::dst)?
                        {
                            Ok(()) => added = true,
                            Err(words) => self.warn_refused_keyword(flag, &words),
                        }
                    }
                }
            }
            self.dst.backoff.progress();
            if added {
                self.tally.report.flags_updated += uids.len() as u64;
            }
        }
        Ok(())
    }

    /// One warning per flag and account that the destination refused to add.
    fn warn_refused_keyword(&self, flag: &str, words: &str) {
        if self
            .tally
            .warned_keywords
            .lock()
            .expect("not poisoned")
            .insert(flag.to_string())
        {
            tracing::warn!(
                account = %self.tally.report.source_user,
                "the destination refused to add the flag `{flag}` to existing messages ({words}); left out"
            );
        }
    }

    /// The keywords the destination account refused so far (each warned about once): left
    /// out of every later APPEND of the run.
    pub(super) fn refused_keywords(&self) -> BTreeSet<String> {
        self.tally
            .warned_keywords
            .lock()
            .expect("not poisoned")
            .clone()
    }

    /// One warning per keyword and account, for a message copied without it (`sent`: the
    /// flags it was appended with).
    pub(super) fn warn_dropped_keywords(&self, m: &MessageCopy, sent: &[String]) {
        for flag in &m.flags {
            if !flag.eq_ignore_ascii_case("\\Recent")
                && !sent.contains(flag)
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

    #[test]
    fn listed_keeps_only_what_permanentflags_names() {
        // `\*` offered, but only `$Label1` named: a refusal falls back to these.
        let f = FlagFilter::new(&["\\Seen".into(), "$Label1".into(), "\\*".into()], true);
        let flags: Vec<String> = [
            "\\Seen",
            "\\Recent",
            "$Label1",
            "Too-Long-Keyword",
            "\\Flagged",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(f.listed(&flags), vec!["\\Seen", "$Label1", "\\Flagged"]);
        assert!(f.is_listed("$label1") && !f.is_listed("Too-Long-Keyword"));
        let refused: BTreeSet<String> = ["Too-Long-Keyword".to_string()].into();
        assert_eq!(
            without_refused(f.optimistic(&flags), &refused),
            vec!["\\Seen", "$Label1", "\\Flagged"]
        );
    }
}
