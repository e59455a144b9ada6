//! After cutover (ARCHITECTURE.md "After cutover"): people already work in the new mailbox. The per-folder
//! multiset rule alone would undo what they did there: copy a message they filed into
//! another folder back into INBOX, and copy again what they deleted. This pass looks at
//! the whole destination account once the per-folder differences are known: a missing
//! copy found in a folder no source copy of that key maps to was *moved* there (present);
//! a missing copy that the ledger saw and that is gone everywhere was *deleted* there
//! (skipped). Pure, like the rest of the planner.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Deletions, FolderDiff, Rules, SkipReason, SkippedMessage};
use crate::identity::IdentityKey;
use crate::inventory::{Folder, Inventory};
use crate::model::WireName;
use crate::settings::{DeletedOnDestination, MovedOnDestination};

/// Per identity key, the most copies a destination account was ever seen to hold (the
/// ledger, read by the caller from `[state] dir`). Sorted by key: half the memory of a
/// hash map for an account of 500,000 keys (issue 10). Collected from any list of pairs,
/// a key listed twice keeps its highest count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeldCounts(Vec<(IdentityKey, u32)>);

impl HeldCounts {
    pub(crate) fn get(&self, key: &IdentityKey) -> Option<&u32> {
        self.0
            .binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub(crate) fn contains_key(&self, key: &IdentityKey) -> bool {
        self.get(key).is_some()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&IdentityKey, &u32)> {
        self.0.iter().map(|(k, n)| (k, n))
    }
}

impl FromIterator<(IdentityKey, u32)> for HeldCounts {
    fn from_iter<I: IntoIterator<Item = (IdentityKey, u32)>>(iter: I) -> Self {
        let mut v: Vec<(IdentityKey, u32)> = iter.into_iter().collect();
        // Highest count first within a key, then keep the first of each key.
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        v.dedup_by(|later, first| later.0 == first.0);
        v.shrink_to_fit();
        HeldCounts(v)
    }
}

/// One ledger record: the account held `count` copies of `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LedgerEntry {
    pub key: IdentityKey,
    pub count: u32,
}

/// What [`settle`] found for the account as a whole.
pub(super) struct Settled {
    pub deletions: Deletions,
    pub ledger_updates: Vec<LedgerEntry>,
}

/// Takes one from a per-key budget, if any is left.
fn take(budget: &mut HashMap<IdentityKey, u64>, key: &IdentityKey) -> bool {
    match budget.get_mut(key) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// Applies the moved and deleted rules to the per-folder `diffs` (keyed by destination
/// wire name, visited in `order`), and says what the ledger should learn.
///
/// `groups` are the destination folders with the source folders mapped to them.
pub(super) fn settle<'w>(
    groups: &[(&super::mapping::Target, Vec<&Folder>)],
    order: &[&'w WireName],
    diffs: &mut HashMap<&'w WireName, FolderDiff>,
    source: &Inventory,
    destination: &Inventory,
    rules: Rules<'_>,
) -> Settled {
    // Sorted vectors rather than sets of every key: an account of 500,000 messages would
    // otherwise hold several hash sets of them at once (issue 10).
    let holding = |f: &&Folder| !f.noselect && !f.special_use.is_some_and(|s| s.is_view());
    // What the account holds now (every selectable folder except views), per key, and
    // whether the key is on the source at all (only those count).
    let mut held: Vec<(&IdentityKey, u32, bool)> = {
        let mut keys: Vec<&IdentityKey> = destination
            .folders
            .iter()
            .filter(holding)
            .flat_map(|f| f.messages.iter().map(|m| &m.key))
            .collect();
        keys.sort_unstable();
        let mut runs: Vec<(&IdentityKey, u32, bool)> = Vec::new();
        for k in keys {
            match runs.last_mut() {
                Some((last, n, _)) if *last == k => *n += 1,
                _ => runs.push((k, 1, false)),
            }
        }
        runs
    };
    let find = |held: &[(&IdentityKey, u32, bool)], k: &IdentityKey| {
        held.binary_search_by(|(h, _, _)| (*h).cmp(k)).ok()
    };
    if !held.is_empty() {
        for m in source.folders.iter().flat_map(|f| &f.messages) {
            if let Some(i) = find(&held, &m.key) {
                held[i].2 = true;
            }
        }
        held.retain(|(_, _, on_source)| *on_source);
    }
    let held_now = |k: &IdentityKey| find(&held, k).map_or(0, |i| held[i].1);
    // Keys with a missing copy that the destination holds somewhere or the ledger knows:
    // only these can be moved or deleted.
    let mut missing: Vec<IdentityKey> = diffs
        .values()
        .flat_map(|d| d.copy.iter().map(|c| c.key))
        .filter(|k| held_now(k) > 0 || rules.ledger.is_some_and(|l| l.contains_key(k)))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let is_missing = |k: &IdentityKey| missing.binary_search(k).is_ok();
    // (destination folder, key) pairs that some source copy maps to.
    let mut mapped: HashSet<(&WireName, IdentityKey)> = HashSet::new();
    if !missing.is_empty() {
        for (target, folders) in groups {
            for f in folders {
                for m in f.messages.iter().filter(|m| is_missing(&m.key)) {
                    mapped.insert((&target.wire_name, m.key));
                }
            }
        }
    }
    // Of the held copies of missing keys, those in a folder that no source copy of their
    // key maps to.
    let mut elsewhere: HashMap<IdentityKey, u64> = HashMap::new();
    if !missing.is_empty() {
        for f in destination.folders.iter().filter(holding) {
            for m in f.messages.iter().filter(|m| is_missing(&m.key)) {
                if !mapped.contains(&(&f.wire_name, m.key)) {
                    *elsewhere.entry(m.key).or_insert(0) += 1;
                }
            }
        }
    }
    let mut moved = match rules.messages.moved_on_destination {
        MovedOnDestination::Skip => elsewhere,
        MovedOnDestination::Copy => HashMap::new(),
    };
    let (deletions, mut deleted) = match (rules.messages.deleted_on_destination, rules.ledger) {
        (DeletedOnDestination::Restore, _) => (Deletions::Restored, HashMap::new()),
        (DeletedOnDestination::Skip, None) => (Deletions::Unknown, HashMap::new()),
        (DeletedOnDestination::Skip, Some(ledger)) => {
            let gone = missing
                .iter()
                .filter_map(|k| {
                    let was = u64::from(*ledger.get(k)?);
                    let now = u64::from(held_now(k));
                    (was > now).then(|| (*k, was - now))
                })
                .collect();
            (Deletions::Known, gone)
        }
    };
    let mut skipped_as_deleted: HashMap<IdentityKey, u32> = HashMap::new();
    for wire in order {
        let Some(diff) = diffs.get_mut(wire) else {
            continue;
        };
        if moved.is_empty() && deleted.is_empty() {
            continue;
        }
        // Lowest source UIDs first: the highest are the likeliest never to have arrived.
        // In place: a second list of 500,000 copies would double the plan (issue 10).
        let FolderDiff {
            copy,
            skipped,
            moved: moved_here,
            already_present,
            ..
        } = diff;
        copy.retain(|c| {
            if take(&mut moved, &c.key) {
                *moved_here += 1;
                *already_present += 1;
                false
            } else if take(&mut deleted, &c.key) {
                *skipped_as_deleted.entry(c.key).or_insert(0) += 1;
                skipped.push(SkippedMessage {
                    source: c.source,
                    uid: c.uid,
                    size: c.size,
                    reason: SkipReason::DeletedOnDestination,
                    subject: c.display.subject().to_string(),
                });
                false
            } else {
                true
            }
        });
        skipped.sort_by_key(|s| (s.source, s.uid));
    }
    // The ledger's count after the n-th delivered copy is `held + deleted + n`: copies a
    // user deleted stay counted, or delivering other copies of the key would use up the
    // evidence of the deletion and the next run would copy the deleted one again.
    for diff in diffs.values_mut() {
        for c in &mut diff.copy {
            c.ledger_base = held_now(&c.key) + skipped_as_deleted.get(&c.key).copied().unwrap_or(0);
        }
    }
    // Sorted by key already.
    let ledger_updates = held
        .iter()
        .filter(|(k, n, _)| rules.ledger.and_then(|l| l.get(k)).copied().unwrap_or(0) < *n)
        .map(|(k, n, _)| LedgerEntry {
            key: **k,
            count: *n,
        })
        .collect();
    Settled {
        deletions,
        ledger_updates,
    }
}

#[cfg(test)]
mod tests;
