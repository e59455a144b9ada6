//! Planner tables: multiset matching, skips, merges, folder creation, summaries.

use super::fixtures::{folder, msg, rules};
use super::*;
use crate::settings::FlagsOnExisting;

fn plan(src: &Inventory, dst: &Inventory, f: &FolderRules, m: &MessageRules) -> AccountPlan {
    plan_account(
        "a",
        "b",
        src,
        dst,
        Rules {
            folders: f,
            messages: m,
            ledger: None,
        },
    )
}

#[test]
fn multiset_difference_counts_duplicates() {
    let (_, m) = rules();
    // Source: key 1 twice, key 2 once; destination: key 1 once.
    let src = vec![msg(1, 1, 10, &[]), msg(2, 1, 10, &[]), msg(3, 2, 20, &[])];
    let dst = vec![msg(9, 1, 10, &[])];
    let d = diff_folder(&[&src], &dst, &m);
    assert_eq!(d.copy.iter().map(|c| c.uid).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(d.already_present, 1);
    assert_eq!(d.ambiguous, 1);
    // Destination with more copies than the source: nothing to copy, never a delete.
    let d = diff_folder(&[&src[..1]], &[msg(1, 1, 10, &[]), msg(2, 1, 10, &[])], &m);
    assert!(d.copy.is_empty());
    assert_eq!(d.already_present, 1);
}

#[test]
fn deleted_and_oversized_are_skipped_and_listed() {
    let (_, mut m) = rules();
    m.max_size = Some(100);
    let src = vec![
        msg(1, 1, 10, &["\\Deleted"]),
        msg(2, 2, 1000, &[]),
        msg(3, 3, 50, &["\\Seen"]),
    ];
    let d = diff_folder(&[&src], &[], &m);
    assert_eq!(d.copy.len(), 1);
    assert_eq!(d.copy[0].uid, 3);
    let reasons: Vec<SkipReason> = d.skipped.iter().map(|s| s.reason).collect();
    assert_eq!(reasons, vec![SkipReason::Deleted, SkipReason::OverMaxSize]);
    m.copy_deleted = true;
    let d = diff_folder(&[&src], &[], &m);
    assert_eq!(d.copy.iter().map(|c| c.uid).collect::<Vec<_>>(), vec![1, 3]);
}

#[test]
fn merged_sources_are_matched_together() {
    let (_, m) = rules();
    let a = vec![msg(1, 1, 10, &[])];
    let b = vec![msg(1, 1, 10, &[]), msg(2, 2, 10, &[])];
    let dst = vec![msg(5, 1, 10, &[])];
    let d = diff_folder(&[&a, &b], &dst, &m);
    // Key 1: 2 on the sources, 1 on the destination → one more copy.
    assert_eq!(d.copy.len(), 2);
    assert_eq!(d.already_present, 1);
}

#[test]
fn classic_to_modern_plan() {
    let (f, m) = rules();
    let src = Inventory::classic(vec![
        folder(
            "INBOX",
            &[],
            vec![msg(1, 1, 100, &["\\Seen"]), msg(2, 2, 200, &[])],
        ),
        folder(
            "INBOX.Sent Items",
            &["\\Sent"],
            vec![msg(1, 3, 300, &["\\Seen"])],
        ),
        folder("INBOX.Projects", &["\\Noselect"], vec![]),
        folder("INBOX.Projects.2024", &[], vec![msg(1, 4, 400, &[])]),
        folder("INBOX.All", &["\\All"], vec![msg(1, 1, 100, &[])]),
    ]);
    let dst = Inventory::modern(vec![
        folder("INBOX", &[], vec![msg(1, 1, 100, &["\\Seen"])]),
        folder("Sent", &["\\Sent"], vec![]),
    ]);
    let p = plan(&src, &dst, &f, &m);
    assert_eq!(
        p.summary,
        Summary {
            folders_to_create: 2,
            messages_to_copy: 3,
            bytes_to_copy: 900,
            already_present: 1,
            skipped: 0,
            flags_to_add: 0,
            ..Summary::default()
        }
    );
    let paths: Vec<(&str, FolderAction)> = p
        .folders
        .iter()
        .map(|f| (f.destination.as_str(), f.action))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("INBOX", FolderAction::Exists),
            ("Projects", FolderAction::Create),
            ("Projects/2024", FolderAction::Create),
            ("Sent", FolderAction::Exists),
        ]
    );
    let sent = p.folders.iter().find(|f| f.destination == "Sent").unwrap();
    assert_eq!(sent.sources[0].wire_name, "INBOX.Sent Items");
    assert_eq!(sent.copy.len(), 1);
    // The \\All view holds nothing that is not elsewhere: no archive folder, nothing listed.
    assert!(p.ignored_folders.is_empty(), "{:?}", p.ignored_folders);
    assert!(p.folders.iter().all(|f| f.destination != "Archive"));
    let mut skip = f.clone();
    skip.view_only_messages = crate::settings::ViewOnlyMessages::Skip;
    let p = plan(&src, &dst, &skip, &m);
    assert_eq!(p.ignored_folders.len(), 1);
    assert!(
        p.ignored_folders[0].reason.contains("\\All"),
        "{}",
        p.ignored_folders[0].reason
    );
    assert_eq!(
        p.tree_after,
        vec!["INBOX", "Projects", "Projects/2024", "Sent"]
    );
}

#[test]
fn identical_sides_have_no_changes() {
    let (f, m) = rules();
    let src = Inventory::classic(vec![folder("INBOX", &[], vec![msg(1, 1, 100, &[])])]);
    let dst = Inventory::modern(vec![folder("INBOX", &[], vec![msg(3, 1, 100, &[])])]);
    let p = plan(&src, &dst, &f, &m);
    assert!(!p.has_changes());
    assert_eq!(p.summary.already_present, 1);
}

#[test]
fn an_empty_noselect_source_creates_nothing() {
    let (f, m) = rules();
    let src = Inventory::classic(vec![
        folder("INBOX", &[], vec![]),
        folder("INBOX.Old", &["\\Noselect"], vec![]),
    ]);
    let dst = Inventory::modern(vec![folder("INBOX", &[], vec![])]);
    let p = plan(&src, &dst, &f, &m);
    assert_eq!(p.summary.folders_to_create, 0, "{:?}", p.folders);
}

#[test]
fn content_decides_which_but_headers_decide_how_many() {
    let (_, m) = rules();
    let with = |mut x: MessageMeta, c: u8| {
        x.content = Some(Box::new(crate::model::ContentHash([c; 32])));
        x
    };
    // Same headers, two different bodies on the source; the destination has body 20.
    let src = vec![with(msg(1, 1, 10, &[]), 20), with(msg(2, 1, 10, &[]), 21)];
    let dst = vec![with(msg(7, 1, 10, &[]), 20)];
    let d = diff_folder(&[&src], &dst, &m);
    assert_eq!(d.copy.iter().map(|c| c.uid).collect::<Vec<_>>(), vec![2]);
    assert_eq!(d.ambiguous, 0);
    // Destination has body 21: the other one is copied.
    let dst = vec![with(msg(7, 1, 10, &[]), 21)];
    let d = diff_folder(&[&src], &dst, &m);
    assert_eq!(d.copy.iter().map(|c| c.uid).collect::<Vec<_>>(), vec![1]);
    // The destination rewrote the body (no content matches): still only one copy.
    let dst = vec![with(msg(7, 1, 10, &[]), 99)];
    let d = diff_folder(&[&src], &dst, &m);
    assert_eq!(d.copy.len(), 1);
    // Without contents the group is ambiguous, and the count is still exact.
    let src = vec![msg(1, 1, 10, &[]), msg(2, 1, 10, &[])];
    let dst = vec![msg(7, 1, 10, &[])];
    let d = diff_folder(&[&src], &dst, &m);
    assert_eq!((d.copy.len(), d.ambiguous), (1, 1));
}

#[test]
fn flags_on_existing_add_pairs_and_never_removes() {
    let (_, mut m) = rules();
    let src = vec![msg(1, 1, 10, &["\\Seen", "$Label1"]), msg(2, 2, 10, &[])];
    let dst = vec![
        msg(8, 1, 10, &["\\Flagged", "\\seen"]),
        msg(9, 2, 10, &["\\Seen"]),
    ];
    let d = diff_folder(&[&src], &dst, &m);
    assert!(d.flag_updates.is_empty(), "keep is the default");
    m.flags_on_existing = FlagsOnExisting::Add;
    let d = diff_folder(&[&src], &dst, &m);
    assert_eq!(
        d.flag_updates,
        vec![FlagUpdate {
            uid: 8,
            add: vec!["$Label1".to_string()]
        }]
    );
    assert!(d.copy.is_empty());
}

#[test]
fn appendlimit_skips_and_quota_flags_before_copying() {
    let (f, m) = rules();
    let src = Inventory::modern(vec![folder(
        "INBOX",
        &[],
        vec![
            msg(1, 1, 100, &[]),
            msg(2, 2, 5000, &[]),
            msg(3, 3, 300, &[]),
        ],
    )]);
    let mut dst = Inventory::modern(vec![folder("INBOX", &[], vec![])]);
    dst.limits.append_limit = Some(1000);
    dst.limits.storage = Some((700, 1024));
    let p = plan(&src, &dst, &f, &m);
    assert_eq!(p.summary.messages_to_copy, 2);
    assert_eq!(p.summary.skipped, 1);
    assert_eq!(p.folders[0].skipped[0].reason, SkipReason::OverAppendLimit);
    let q = p.quota.unwrap();
    assert_eq!(q.free(), 324);
    assert!(q.over_quota, "400 bytes to copy, 324 free");
    dst.limits.storage = Some((0, 1024));
    assert!(!plan(&src, &dst, &f, &m).quota.unwrap().over_quota);
    dst.limits = Default::default();
    let p = plan(&src, &dst, &f, &m);
    assert_eq!((p.summary.messages_to_copy, p.quota), (3, None));
}

#[test]
fn the_existing_inbox_is_subscribed_only_when_the_sources_is_and_it_is_not() {
    let (f, m) = rules();
    let unsubscribed = |mut x: crate::inventory::Folder| {
        x.subscribed = false;
        x
    };
    let src = Inventory::modern(vec![folder("INBOX", &[], vec![msg(1, 1, 10, &[])])]);
    let dst = Inventory::modern(vec![unsubscribed(folder(
        "INBOX",
        &[],
        vec![msg(1, 1, 10, &[])],
    ))]);
    let p = plan(&src, &dst, &f, &m);
    let inbox = &p.folders[0];
    assert_eq!(
        (inbox.action, inbox.subscribe),
        (FolderAction::Exists, true)
    );
    assert_eq!(p.summary.folders_to_subscribe, 1);
    assert!(p.has_changes(), "a subscription to add is a change");
    assert_eq!(p.summary.folders_to_create + p.summary.messages_to_copy, 0);

    // Already subscribed there, or not subscribed on the source: nothing to do.
    let subscribed_dst = Inventory::modern(vec![folder("INBOX", &[], vec![msg(1, 1, 10, &[])])]);
    let p = plan(&src, &subscribed_dst, &f, &m);
    assert!(
        !p.folders[0].subscribe && !p.has_changes(),
        "{:?}",
        p.folders
    );
    let src = Inventory::modern(vec![unsubscribed(folder(
        "INBOX",
        &[],
        vec![msg(1, 1, 10, &[])],
    ))]);
    let p = plan(&src, &dst, &f, &m);
    assert!(
        !p.folders[0].subscribe && !p.has_changes(),
        "{:?}",
        p.folders
    );
    // Any other existing folder's subscription state is never a change.
    let src = Inventory::modern(vec![
        folder("INBOX", &[], vec![]),
        folder("Work", &[], vec![]),
    ]);
    let dst = Inventory::modern(vec![
        folder("INBOX", &[], vec![]),
        unsubscribed(folder("Work", &[], vec![])),
    ]);
    let p = plan(&src, &dst, &f, &m);
    assert!(!p.has_changes(), "{:?}", p.folders);
}

#[test]
fn a_noselect_placeholder_is_created_and_counted_only_as_a_needed_parent() {
    let (mut f, m) = rules();
    f.exclude = vec!["Lists/**".to_string()];
    let src = Inventory::modern(vec![
        folder("INBOX", &[], vec![]),
        folder("Projects", &["\\Noselect"], vec![]),
        folder("Projects/2024", &[], vec![msg(1, 1, 10, &[])]),
        folder("Lists", &["\\Noselect"], vec![]),
        folder("Lists/announce", &[], vec![msg(1, 2, 10, &[])]),
    ]);
    let dst = Inventory::classic(vec![folder("INBOX", &[], vec![])]);
    let p = plan(&src, &dst, &f, &m);
    let created: Vec<&str> = p
        .folders
        .iter()
        .filter(|f| f.action == FolderAction::Create)
        .map(|f| f.destination.as_str())
        .collect();
    assert_eq!(created, ["Projects", "Projects/2024"]);
    assert_eq!(p.summary.folders_to_create, 2);
    // Without the folder below it that receives mail, the placeholder is not created.
    f.exclude.push("Projects/**".to_string());
    let p = plan(&src, &dst, &f, &m);
    assert_eq!(p.summary.folders_to_create, 0, "{:?}", p.folders);
}

#[test]
fn a_folders_own_appendlimit_beats_the_server_wide_one() {
    let (f, m) = rules();
    let src = Inventory::modern(vec![
        folder("INBOX", &[], vec![msg(1, 1, 500, &[]), msg(2, 2, 50, &[])]),
        folder("Small", &[], vec![msg(1, 3, 500, &[]), msg(2, 4, 50, &[])]),
        folder("Roomy", &[], vec![msg(1, 5, 5_000, &[])]),
        folder("New", &[], vec![msg(1, 6, 5_000, &[])]),
    ]);
    let limited = |mut x: crate::inventory::Folder, limit: u64| {
        x.append_limit = Some(limit);
        x
    };
    let mut dst = Inventory::modern(vec![
        folder("INBOX", &[], vec![]),
        limited(folder("Small", &[], vec![]), 100),
        limited(folder("Roomy", &[], vec![]), 10_000),
    ]);
    let skipped = |p: &AccountPlan| -> Vec<(String, u32)> {
        p.folders
            .iter()
            .flat_map(|f| {
                f.skipped.iter().map(|s| {
                    assert_eq!(s.reason, SkipReason::OverAppendLimit);
                    (f.destination.clone(), s.uid)
                })
            })
            .collect()
    };
    // Per folder only: INBOX and the new folder have no limit.
    let p = plan(&src, &dst, &f, &m);
    assert_eq!(skipped(&p), [("Small".to_string(), 1)]);
    assert_eq!(p.summary.messages_to_copy, 5);
    // With a server-wide limit too: it applies where a folder has none of its own.
    dst.limits.append_limit = Some(1_000);
    let p = plan(&src, &dst, &f, &m);
    assert_eq!(
        skipped(&p),
        [("New".to_string(), 1), ("Small".to_string(), 1)]
    );
}

/// Issue 10: a plan of 500,000 copies fits within 200 MB only while a copy stays this small.
#[test]
#[cfg(target_pointer_width = "64")]
fn a_copy_stays_compact() {
    assert!(std::mem::size_of::<MessageCopy>() <= 88);
}
