//! The after-cutover rules: moved and deleted copies, tables and properties.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::identity::IdentityKey;
use crate::inventory::{Folder, Inventory};
use crate::plan::fixtures::{self, key, msg};
use crate::plan::{plan_account, AccountPlan, Deletions, HeldCounts, Rules, SkipReason};
use crate::settings::{DeletedOnDestination, MessageRules, MovedOnDestination};

/// A folder holding one small message per key (subject `m{key}`).
fn folder(wire: &str, attrs: &[&str], keys: &[u8]) -> Folder {
    let messages = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut m = msg(i as u32 + 1, *k, 10, &[]);
            m.display = crate::message::DisplayFields::new("", "", &format!("m{k}"));
            m
        })
        .collect();
    fixtures::folder(wire, attrs, messages)
}

fn message_rules(moved: MovedOnDestination, deleted: DeletedOnDestination) -> MessageRules {
    let (_, mut rules) = fixtures::rules();
    rules.moved_on_destination = moved;
    rules.deleted_on_destination = deleted;
    rules
}

fn plan_with(
    src: &Inventory,
    dst: &Inventory,
    m: &MessageRules,
    ledger: Option<&HeldCounts>,
) -> AccountPlan {
    let (f, _) = fixtures::rules();
    plan_account(
        "a",
        "b",
        src,
        dst,
        Rules {
            folders: &f,
            messages: m,
            ledger,
        },
    )
}

fn skip_skip() -> MessageRules {
    message_rules(MovedOnDestination::Skip, DeletedOnDestination::Skip)
}

/// Copies per destination folder, as sorted key numbers.
fn copies(p: &AccountPlan) -> Vec<(String, Vec<u8>)> {
    p.folders
        .iter()
        .filter(|f| !f.copy.is_empty())
        .map(|f| {
            let mut keys: Vec<u8> = f.copy.iter().map(|c| c.key.0[0]).collect();
            keys.sort();
            (f.destination.clone(), keys)
        })
        .collect()
}

fn ledger(entries: &[(u8, u32)]) -> HeldCounts {
    entries.iter().map(|(k, n)| (key(*k), *n)).collect()
}

#[test]
fn a_copy_filed_into_another_folder_is_moved_not_copied_again() {
    let src = Inventory::modern(vec![folder("INBOX", &[], &[1, 2, 3])]);
    let dst = Inventory::modern(vec![
        folder("INBOX", &[], &[1]),
        folder("Projects", &[], &[2]),
    ]);
    let p = plan_with(&src, &dst, &skip_skip(), None);
    assert_eq!(copies(&p), vec![("INBOX".to_string(), vec![3])]);
    assert_eq!(p.summary.moved_on_destination, 1);
    assert_eq!(p.summary.already_present, 2, "moved counts as present");
    assert_eq!(p.folders[0].moved, 1);
    // `moved-on-destination = "copy"`: the per-folder rule alone.
    let m = message_rules(MovedOnDestination::Copy, DeletedOnDestination::Skip);
    let p = plan_with(&src, &dst, &m, None);
    assert_eq!(copies(&p), vec![("INBOX".to_string(), vec![2, 3])]);
    assert_eq!(p.summary.moved_on_destination, 0);
}

#[test]
fn a_copy_in_a_folder_its_key_maps_to_is_not_a_moved_one() {
    // Key 1 is in INBOX and Work on the source; the destination has only Work's copy.
    let src = Inventory::modern(vec![folder("INBOX", &[], &[1]), folder("Work", &[], &[1])]);
    let dst = Inventory::modern(vec![folder("INBOX", &[], &[]), folder("Work", &[], &[1])]);
    let p = plan_with(&src, &dst, &skip_skip(), None);
    assert_eq!(copies(&p), vec![("INBOX".to_string(), vec![1])]);
    assert_eq!(p.summary.moved_on_destination, 0);
}

#[test]
fn views_on_the_destination_hold_no_moved_copies() {
    let src = Inventory::modern(vec![folder("INBOX", &[], &[1])]);
    let dst = Inventory::modern(vec![
        folder("INBOX", &[], &[]),
        folder("All Mail", &["\\All"], &[1]),
    ]);
    let p = plan_with(&src, &dst, &skip_skip(), None);
    assert_eq!(copies(&p), vec![("INBOX".to_string(), vec![1])]);
    assert!(p.ledger_updates.is_empty(), "a view is not storage");
}

#[test]
fn copies_the_ledger_saw_and_that_are_gone_are_deleted_not_copied() {
    let src = Inventory::modern(vec![folder("INBOX", &[], &[1, 2, 3])]);
    let dst = Inventory::modern(vec![folder("INBOX", &[], &[]), folder("Filed", &[], &[2])]);
    let seen = ledger(&[(1, 1), (2, 1)]);
    let p = plan_with(&src, &dst, &skip_skip(), Some(&seen));
    assert_eq!(copies(&p), vec![("INBOX".to_string(), vec![3])]);
    assert_eq!(p.summary.moved_on_destination, 1);
    assert_eq!(p.summary.deleted_on_destination, 1);
    assert_eq!(p.summary.skipped, 1, "deleted there counts in skipped");
    assert_eq!(p.deletions, Deletions::Known);
    let reasons: Vec<SkipReason> = p.folders[0].skipped.iter().map(|s| s.reason).collect();
    assert_eq!(reasons, vec![SkipReason::DeletedOnDestination]);
    // "restore" copies it again.
    let m = message_rules(MovedOnDestination::Skip, DeletedOnDestination::Restore);
    let p = plan_with(&src, &dst, &m, Some(&seen));
    assert_eq!(copies(&p), vec![("INBOX".to_string(), vec![1, 3])]);
    assert_eq!(p.deletions, Deletions::Restored);
    // No ledger: nothing is known, everything missing is copied.
    let p = plan_with(&src, &dst, &skip_skip(), None);
    assert_eq!(copies(&p), vec![("INBOX".to_string(), vec![1, 3])]);
    assert_eq!(p.deletions, Deletions::Unknown);
    assert_eq!(p.summary.deleted_on_destination, 0);
}

#[test]
fn duplicates_count_per_copy() {
    // Three identical copies on the source, one left on the destination.
    let src = Inventory::modern(vec![folder("INBOX", &[], &[1, 1, 1])]);
    let dst = Inventory::modern(vec![folder("INBOX", &[], &[1])]);
    // The ledger saw three: two were deleted.
    let p = plan_with(&src, &dst, &skip_skip(), Some(&ledger(&[(1, 3)])));
    assert!(copies(&p).is_empty());
    assert_eq!(p.summary.deleted_on_destination, 2);
    // It saw two: one was deleted, one never arrived.
    let p = plan_with(&src, &dst, &skip_skip(), Some(&ledger(&[(1, 2)])));
    assert_eq!(copies(&p), vec![("INBOX".to_string(), vec![1])]);
    assert_eq!(p.summary.deleted_on_destination, 1);
    let copy = &p.folders[0].copy[0];
    assert_eq!(
        copy.ledger_base, 2,
        "one copy held at plan time, one deleted there"
    );
    assert_eq!(copy.uid, 3, "the highest UID is copied");
}

#[test]
fn the_ledger_learns_what_the_account_holds_of_source_keys_only() {
    let src = Inventory::modern(vec![folder("INBOX", &[], &[1, 2])]);
    let dst = Inventory::modern(vec![
        folder("INBOX", &[], &[1, 9]),
        folder("Filed", &[], &[1]),
    ]);
    let p = plan_with(&src, &dst, &skip_skip(), None);
    let updates: Vec<(u8, u32)> = p
        .ledger_updates
        .iter()
        .map(|e| (e.key.0[0], e.count))
        .collect();
    assert_eq!(updates, vec![(1, 2)]);
    // Known already: nothing to learn.
    let p = plan_with(&src, &dst, &skip_skip(), Some(&ledger(&[(1, 2)])));
    assert!(p.ledger_updates.is_empty());
}

#[test]
fn a_moved_copy_is_not_copied_into_a_folder_that_is_created() {
    let src = Inventory::modern(vec![folder("INBOX", &[], &[]), folder("Old", &[], &[1])]);
    let dst = Inventory::modern(vec![folder("INBOX", &[], &[1])]);
    let p = plan_with(&src, &dst, &skip_skip(), None);
    // The (selectable) folder is still created, as every source folder is; nothing goes in.
    assert_eq!(p.summary.messages_to_copy, 0, "{:?}", p.folders);
    assert_eq!(p.summary.moved_on_destination, 1);
}

// ------------------------------------------------------------------------------------
// Properties: a small world of folders and keys, with a random ledger.

const SRC_FOLDERS: [&str; 3] = ["INBOX", "A", "B"];
const DST_FOLDERS: [&str; 4] = ["INBOX", "A", "B", "C"];

/// Source folders' keys, destination folders' keys, the ledger's count per key (if any).
type World = (Vec<Vec<u8>>, Vec<Vec<u8>>, Option<Vec<u32>>);

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(prop::collection::vec(0u8..4, 0..5), 3),
        prop::collection::vec(prop::collection::vec(0u8..4, 0..5), 4),
        prop::option::of(prop::collection::vec(0u32..4, 4)),
    )
}

fn inventories(src: &[Vec<u8>], dst: &[Vec<u8>]) -> (Inventory, Inventory) {
    (
        Inventory::modern(
            SRC_FOLDERS
                .iter()
                .zip(src)
                .map(|(n, k)| folder(n, &[], k))
                .collect(),
        ),
        Inventory::modern(
            DST_FOLDERS
                .iter()
                .zip(dst)
                .map(|(n, k)| folder(n, &[], k))
                .collect(),
        ),
    )
}

fn count(keys: &[u8], k: u8) -> u64 {
    keys.iter().filter(|x| **x == k).count() as u64
}

fn rules_strategy() -> impl Strategy<Value = MessageRules> {
    (any::<bool>(), any::<bool>()).prop_map(|(moved, deleted)| {
        message_rules(
            if moved {
                MovedOnDestination::Skip
            } else {
                MovedOnDestination::Copy
            },
            if deleted {
                DeletedOnDestination::Skip
            } else {
                DeletedOnDestination::Restore
            },
        )
    })
}

proptest! {
    #[test]
    fn every_missing_copy_is_copied_moved_or_deleted_exactly_once(
        (src, dst, seen) in world(),
        m in rules_strategy(),
    ) {
        let (s, d) = inventories(&src, &dst);
        let seen: Option<HeldCounts> =
            seen.map(|v| v.iter().enumerate().map(|(k, n)| (key(k as u8), *n)).collect());
        let p = plan_with(&s, &d, &m, seen.as_ref());
        for k in 0u8..4 {
            let mut missing = 0;
            let mut copied = 0;
            let mut moved_limit = 0;
            for (i, name) in SRC_FOLDERS.iter().enumerate() {
                let want = count(&src[i], k);
                let have = count(&dst[i], k);
                missing += want.saturating_sub(have);
                let planned = p
                    .folders
                    .iter()
                    .find(|f| f.destination == *name)
                    .map_or(0, |f| f.copy.iter().filter(|c| c.key == key(k)).count() as u64);
                // Never more than the folder lacks: no duplicate.
                prop_assert!(planned <= want.saturating_sub(have));
                copied += planned;
                if want == 0 {
                    moved_limit += have;
                }
            }
            moved_limit += count(&dst[3], k);
            let held: u64 = dst.iter().map(|f| count(f, k)).sum();
            let deleted_k = p
                .folders
                .iter()
                .flat_map(|f| &f.skipped)
                .filter(|s| s.reason == SkipReason::DeletedOnDestination)
                .filter(|s| s.subject == format!("m{k}"))
                .count() as u64;
            let moved_k = missing - copied - deleted_k;
            prop_assert!(copied + deleted_k <= missing);
            prop_assert!(moved_k <= moved_limit, "moved {moved_k} > elsewhere {moved_limit}");
            if m.moved_on_destination == MovedOnDestination::Copy {
                prop_assert_eq!(moved_k, 0);
            }
            let ledger_k = seen.as_ref().and_then(|l| l.get(&key(k))).copied().unwrap_or(0);
            // Never skipped as deleted unless the ledger saw more than there is now.
            prop_assert!(deleted_k <= u64::from(ledger_k).saturating_sub(held));
            if seen.is_none() || m.deleted_on_destination == DeletedOnDestination::Restore {
                prop_assert_eq!(deleted_k, 0);
            }
        }
        prop_assert_eq!(
            p.summary.already_present + p.summary.messages_to_copy + p.summary.skipped,
            src.iter().map(|f| f.len() as u64).sum::<u64>(),
            "every source message is present, copied or skipped"
        );
    }

    #[test]
    fn applying_the_plan_then_planning_again_copies_nothing(
        (src, dst, seen) in world(),
        m in rules_strategy(),
    ) {
        let (s, d) = inventories(&src, &dst);
        let seen: Option<HeldCounts> =
            seen.map(|v| v.iter().enumerate().map(|(k, n)| (key(k as u8), *n)).collect());
        let p = plan_with(&s, &d, &m, seen.as_ref());
        // Apply: append the copies and record what the ledger would.
        let mut after = dst.clone();
        let mut ledger: HashMap<IdentityKey, u32> = seen
            .iter()
            .flat_map(|s| s.iter().map(|(k, n)| (*k, *n)))
            .collect();
        for e in &p.ledger_updates {
            let n = ledger.entry(e.key).or_insert(0);
            *n = (*n).max(e.count);
        }
        let mut delivered: HashMap<IdentityKey, u32> = HashMap::new();
        for f in &p.folders {
            let i = DST_FOLDERS.iter().position(|n| *n == f.destination).unwrap();
            for c in &f.copy {
                after[i].push(c.key.0[0]);
                let d = delivered.entry(c.key).or_insert(0);
                *d += 1;
                let n = ledger.entry(c.key).or_insert(0);
                *n = (*n).max(c.ledger_base + *d);
            }
        }
        let (s2, d2) = inventories(&src, &after);
        let ledger: HeldCounts = ledger.into_iter().collect();
        let again = plan_with(&s2, &d2, &m, Some(&ledger));
        prop_assert!(!again.has_changes(), "{:?}", copies(&again));
        prop_assert!(again.ledger_updates.is_empty());
    }
}

// ------------------------------------------------------------------------------------
// Only in a view (Gmail's archived mail).

fn gmail_source() -> Inventory {
    Inventory::modern(vec![
        folder("INBOX", &[], &[1, 2]),
        folder("Work", &[], &[3]),
        folder("[Gmail]/All Mail", &["\\All"], &[1, 2, 3, 4, 5, 5]),
        folder("[Gmail]/Starred", &["\\Flagged"], &[4]),
    ])
}

#[test]
fn mail_only_in_all_mail_goes_to_the_archive_by_attribute() {
    let dst = Inventory::modern(vec![
        folder("INBOX", &[], &[1, 2]),
        folder("Work", &[], &[3]),
        folder("Old", &["\\Archive"], &[]),
    ]);
    let p = plan_with(&gmail_source(), &dst, &skip_skip(), None);
    // Keys 4 and 5 (twice) are nowhere else; Starred is a view too.
    assert_eq!(copies(&p), vec![("Old".to_string(), vec![4, 5, 5])]);
    let archive = p.folders.iter().find(|f| f.destination == "Old").unwrap();
    assert_eq!(archive.sources[0].only_there, Some(3));
    assert_eq!(archive.rule, crate::plan::RuleKind::ViewOnly);
}

#[test]
fn without_an_archive_folder_one_named_archive_is_created_only_when_needed() {
    let dst = Inventory::classic(vec![folder("INBOX", &[], &[])]);
    let p = plan_with(&gmail_source(), &dst, &skip_skip(), None);
    let archive = p
        .folders
        .iter()
        .find(|f| f.destination == "Archive")
        .unwrap();
    assert_eq!(archive.destination_wire, "INBOX.Archive");
    assert_eq!(archive.action, crate::plan::FolderAction::Create);
    assert_eq!(archive.copy.len(), 3);
    // Nothing only there: no folder.
    let src = Inventory::modern(vec![
        folder("INBOX", &[], &[1]),
        folder("[Gmail]/All Mail", &["\\All"], &[1]),
    ]);
    let p = plan_with(&src, &dst, &skip_skip(), None);
    assert!(
        p.folders.iter().all(|f| f.destination != "Archive"),
        "{:?}",
        p.folders
    );
    // "skip": listed with the count, not copied.
    let (mut f, _) = fixtures::rules();
    f.view_only_messages = crate::settings::ViewOnlyMessages::Skip;
    let m = skip_skip();
    let p = plan_account(
        "a",
        "b",
        &gmail_source(),
        &dst,
        Rules {
            folders: &f,
            messages: &m,
            ledger: None,
        },
    );
    assert!(p.folders.iter().all(|f| f.destination != "Archive"));
    let ignored = &p.ignored_folders[0];
    assert!(
        ignored.reason.contains("3 messages found only there"),
        "{}",
        ignored.reason
    );
}

#[test]
fn held_counts_keep_the_highest_count_of_each_key() {
    let counts: HeldCounts = [(key(3), 1), (key(1), 2), (key(3), 5), (key(3), 4)]
        .into_iter()
        .collect();
    assert_eq!(counts.len(), 2);
    assert_eq!(counts.get(&key(3)), Some(&5));
    assert_eq!(counts.get(&key(1)), Some(&2));
    assert!(!counts.contains_key(&key(2)));
    let keys: Vec<IdentityKey> = counts.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, vec![key(1), key(3)]);
}
