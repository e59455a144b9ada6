//! Table tests and properties for the folder mapping.

use proptest::prelude::*;

use super::*;

/// A folder as LIST would give it: wire name, then decoded name derived from it.
fn folder(wire: &str, attributes: &[&str]) -> Folder {
    let attributes: Vec<String> = attributes.iter().map(|a| a.to_string()).collect();
    Folder {
        wire_name: WireName::new(wire),
        name: mutf7::decode(wire).unwrap_or_else(|_| wire.to_string()),
        special_use: attributes
            .iter()
            .find_map(|a| SpecialUse::from_attribute(a)),
        noselect: attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("\\Noselect")),
        subscribed: false,
        attributes,
        status: None,
        messages: vec![],
        append_limit: None,
    }
}

fn subscribed(mut f: Folder) -> Folder {
    f.subscribed = true;
    f
}

fn rules() -> FolderRules {
    FolderRules {
        exclude: vec![],
        special_use: true,
        include_views: false,
        rename: vec![],
        view_only_messages: Default::default(),
    }
}

fn target<'a>(map: &'a FolderMap, source_wire: &str) -> &'a Target {
    map.target(source_wire)
        .unwrap_or_else(|| panic!("{source_wire} not mapped: {map:#?}"))
}

fn outcome<'a>(map: &'a FolderMap, source_wire: &str) -> &'a Disposition {
    &map.entries
        .iter()
        .find(|e| e.source_wire == source_wire)
        .unwrap()
        .outcome
}

fn created(map: &FolderMap) -> Vec<(&str, CreateReason, bool)> {
    map.to_create
        .iter()
        .map(|f| (f.wire_name.as_str(), f.reason, f.only_if_needed))
        .collect()
}

#[test]
fn classic_to_modern() {
    let src = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Projects", &[]),
        folder("INBOX.Projects.2024", &[]),
        folder("INBOX.Entw&APw-rfe", &[]),
        folder("INBOX.INBOX.old", &[]),
    ]);
    let dst = Inventory::modern(vec![folder("INBOX", &[])]);
    let map = map_folders(&src, &dst, &rules());
    let expect = [
        ("INBOX", "INBOX", "INBOX"),
        ("INBOX.Projects", "Projects", "Projects"),
        ("INBOX.Projects.2024", "Projects/2024", "Projects/2024"),
        // Entwürfe is a well-known Drafts name, but the destination has no Drafts.
        ("INBOX.Entw&APw-rfe", "Entw&APw-rfe", "Entwürfe"),
        ("INBOX.INBOX.old", "INBOX/old", "INBOX/old"),
    ];
    for (source, wire, path) in expect {
        let t = target(&map, source);
        assert_eq!(
            (t.wire_name.as_str(), t.path.as_str()),
            (wire, path),
            "{source}"
        );
    }
    assert_eq!(map.entries[2].source_path, "Projects/2024");
    assert!(target(&map, "INBOX").exists);
    assert_eq!(target(&map, "INBOX").rule, Rule::Default);
    assert_eq!(
        created(&map),
        [
            ("Projects", CreateReason::Missing, false),
            ("Projects/2024", CreateReason::Missing, false),
            ("Entw&APw-rfe", CreateReason::Missing, false),
            ("INBOX/old", CreateReason::Missing, false),
        ]
    );
}

#[test]
fn modern_to_classic_never_doubles_inbox() {
    let src = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("INBOX/Receipts", &[]),
        folder("Projects/2024", &[]),
        folder("&U,BTFw-/&ZeVnLIqe-", &[]),
    ]);
    let dst = Inventory::classic(vec![folder("INBOX", &[])]);
    let map = map_folders(&src, &dst, &rules());
    assert_eq!(target(&map, "INBOX").wire_name, "INBOX");
    assert_eq!(target(&map, "INBOX/Receipts").wire_name, "INBOX.Receipts");
    assert_eq!(target(&map, "INBOX/Receipts").path, "Receipts");
    assert_eq!(
        target(&map, "Projects/2024").wire_name,
        "INBOX.Projects.2024"
    );
    assert_eq!(
        target(&map, "&U,BTFw-/&ZeVnLIqe-").wire_name,
        "INBOX.&U,BTFw-.&ZeVnLIqe-"
    );
    assert_eq!(target(&map, "&U,BTFw-/&ZeVnLIqe-").path, "台北/日本語");
    // `Projects` is missing: created first, as a parent.
    assert_eq!(
        created(&map),
        [
            ("INBOX.Receipts", CreateReason::Missing, false),
            ("INBOX.Projects", CreateReason::MissingParent, false),
            ("INBOX.Projects.2024", CreateReason::Missing, false),
            ("INBOX.&U,BTFw-", CreateReason::MissingParent, false),
            ("INBOX.&U,BTFw-.&ZeVnLIqe-", CreateReason::Missing, false),
        ]
    );
    assert_eq!(
        map.to_create[2].parent.as_ref().map(WireName::as_str),
        Some("INBOX.Projects")
    );
    assert_eq!(map.to_create[0].parent, None);
}

#[test]
fn special_use_by_attribute_and_subfolders_follow() {
    let src = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Sent Items", &["\\HasChildren", "\\sent"]),
        folder("INBOX.Sent Items.2023", &[]),
        folder("INBOX.Sent Items.2023.Q1", &[]),
        folder("INBOX.Deleted Items", &["\\Trash"]),
    ]);
    let dst = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("Sent", &["\\Sent"]),
        folder("Papierkorb", &["\\Trash"]),
    ]);
    let map = map_folders(&src, &dst, &rules());
    let sent = target(&map, "INBOX.Sent Items");
    assert_eq!(sent.wire_name, "Sent");
    assert!(sent.exists);
    assert_eq!(sent.special_use, Some(SpecialUse::Sent));
    assert_eq!(
        sent.rule,
        Rule::SpecialUse {
            special_use: SpecialUse::Sent,
            source: Evidence::Attribute,
            destination: Evidence::Attribute
        }
    );
    assert_eq!(target(&map, "INBOX.Sent Items.2023").wire_name, "Sent/2023");
    assert_eq!(
        target(&map, "INBOX.Sent Items.2023").rule,
        Rule::FollowsParent {
            parent: "Sent Items".to_string(),
            special_use: SpecialUse::Sent
        }
    );
    assert_eq!(
        target(&map, "INBOX.Sent Items.2023.Q1").wire_name,
        "Sent/2023/Q1"
    );
    assert_eq!(target(&map, "INBOX.Deleted Items").wire_name, "Papierkorb");
    assert_eq!(
        created(&map),
        [
            ("Sent/2023", CreateReason::Missing, false),
            ("Sent/2023/Q1", CreateReason::Missing, false)
        ]
    );
}

#[test]
fn special_use_by_localised_name() {
    // No attributes on the source at all: names stand in.
    let src = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Gesendete Objekte", &[]),
        folder("INBOX.Gesendete Objekte.Alt", &[]),
        folder("INBOX.&AMk-l&AOk-ments supprim&AOk-s", &[]),
        folder("INBOX.Projects.Sent", &[]),
    ]);
    let dst = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("Sent", &["\\Sent"]),
        // No \Trash anywhere on the destination: its well-known name stands in.
        folder("Deleted Items", &[]),
        folder("Trash", &[]),
    ]);
    let map = map_folders(&src, &dst, &rules());
    let sent = target(&map, "INBOX.Gesendete Objekte");
    assert_eq!(sent.wire_name, "Sent");
    assert_eq!(
        sent.rule,
        Rule::SpecialUse {
            special_use: SpecialUse::Sent,
            source: Evidence::WellKnownName,
            destination: Evidence::Attribute
        }
    );
    assert_eq!(
        target(&map, "INBOX.Gesendete Objekte.Alt").wire_name,
        "Sent/Alt"
    );
    let trash = target(&map, "INBOX.&AMk-l&AOk-ments supprim&AOk-s");
    assert_eq!(trash.wire_name, "Deleted Items"); // first in LIST order
    assert_eq!(
        trash.rule,
        Rule::SpecialUse {
            special_use: SpecialUse::Trash,
            source: Evidence::WellKnownName,
            destination: Evidence::WellKnownName
        }
    );
    // Not top level: just a folder called Sent.
    assert_eq!(
        target(&map, "INBOX.Projects.Sent").wire_name,
        "Projects/Sent"
    );
    assert_eq!(target(&map, "INBOX.Projects.Sent").rule, Rule::Default);
}

#[test]
fn names_do_not_stand_in_when_the_side_has_the_attribute() {
    let src = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("Sent", &["\\Sent"]),
        folder("Sent Items", &[]), // an old client's folder, not the Sent folder
    ]);
    let dst = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Sent Messages", &["\\Sent"]),
        folder("INBOX.Sent", &[]),
    ]);
    let map = map_folders(&src, &dst, &rules());
    assert_eq!(target(&map, "Sent").wire_name, "INBOX.Sent Messages");
    assert_eq!(target(&map, "Sent Items").wire_name, "INBOX.Sent Items");
    assert_eq!(target(&map, "Sent Items").special_use, None);
    // With special-use off, everything is rule 5.
    let map = map_folders(
        &src,
        &dst,
        &FolderRules {
            special_use: false,
            ..rules()
        },
    );
    assert_eq!(target(&map, "Sent").wire_name, "INBOX.Sent");
    assert!(target(&map, "Sent").exists);
}

#[test]
fn special_folder_without_destination_counterpart_uses_rule_5() {
    let src = Inventory::classic(vec![
        folder("INBOX.Sent Items", &["\\Sent"]),
        folder("INBOX.Sent Items.2023", &[]),
    ]);
    let dst = Inventory::modern(vec![folder("INBOX", &[])]);
    let map = map_folders(&src, &dst, &rules());
    let t = target(&map, "INBOX.Sent Items");
    assert_eq!(
        (t.wire_name.as_str(), &t.rule),
        ("Sent Items", &Rule::Default)
    );
    assert_eq!(t.special_use, Some(SpecialUse::Sent));
    assert_eq!(
        target(&map, "INBOX.Sent Items.2023").wire_name,
        "Sent Items/2023"
    );
}

#[test]
fn views_skipped_unless_included() {
    let src = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("[Gmail]", &["\\Noselect", "\\HasChildren"]),
        folder("[Gmail]/All Mail", &["\\All"]),
        folder("[Gmail]/Starred", &["\\Flagged"]),
        folder("[Gmail]/Sent Mail", &["\\Sent"]),
    ]);
    let dst = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Sent", &["\\Sent"]),
    ]);
    let skip = FolderRules {
        view_only_messages: crate::settings::ViewOnlyMessages::Skip,
        ..rules()
    };
    let map = map_folders(&src, &dst, &skip);
    assert_eq!(
        outcome(&map, "[Gmail]/All Mail"),
        &Disposition::View {
            attribute: SpecialUse::All
        }
    );
    assert_eq!(
        outcome(&map, "[Gmail]/Starred"),
        &Disposition::View {
            attribute: SpecialUse::Flagged
        }
    );
    assert_eq!(target(&map, "[Gmail]/Sent Mail").wire_name, "INBOX.Sent");
    // `[Gmail]` is \Noselect and nothing below it needs it: only if needed.
    assert_eq!(
        created(&map),
        [("INBOX.[Gmail]", CreateReason::Missing, true)]
    );
    assert!(map.creations(|_| false).is_empty());

    // By default the \All view feeds `Archive` with what is only there: created only if
    // a message must go in.
    let map = map_folders(&src, &dst, &rules());
    let archive = target(&map, "[Gmail]/All Mail");
    assert_eq!(archive.wire_name, "INBOX.Archive");
    assert_eq!(
        archive.rule,
        Rule::ViewOnly {
            attribute: SpecialUse::All
        }
    );
    assert_eq!(
        created(&map),
        [
            ("INBOX.[Gmail]", CreateReason::Missing, true),
            ("INBOX.Archive", CreateReason::Missing, true)
        ]
    );
    assert!(map.creations(|_| false).is_empty());

    let with_views = FolderRules {
        include_views: true,
        ..rules()
    };
    let map = map_folders(&src, &dst, &with_views);
    assert_eq!(
        target(&map, "[Gmail]/All Mail").wire_name,
        "INBOX.[Gmail].All Mail"
    );
    // Now `[Gmail]` is needed as a parent: unconditional.
    assert_eq!(
        created(&map),
        [
            ("INBOX.[Gmail]", CreateReason::Missing, false),
            ("INBOX.[Gmail].All Mail", CreateReason::Missing, false),
            ("INBOX.[Gmail].Starred", CreateReason::Missing, false),
        ]
    );
}

#[test]
fn exclude_globs() {
    let src = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Spam", &[]),
        folder("INBOX.Spam.old", &[]),
        folder("INBOX.Archive", &[]),
        folder("INBOX.Archive.2019", &[]),
        folder("INBOX.Archive.2020", &[]),
        folder("INBOX.Archive.2020.x", &[]),
    ]);
    let dst = Inventory::modern(vec![folder("INBOX", &[])]);
    let r = FolderRules {
        exclude: vec![
            "Spam".to_string(),
            "Archive/**".to_string(),
            "inbox".to_string(),
        ],
        special_use: false,
        ..rules()
    };
    let map = map_folders(&src, &dst, &r);
    let excluded = |g: &str| Disposition::Excluded {
        glob: g.to_string(),
    };
    assert_eq!(outcome(&map, "INBOX"), &excluded("inbox"));
    assert_eq!(outcome(&map, "INBOX.Spam"), &excluded("Spam"));
    assert_eq!(target(&map, "INBOX.Spam.old").wire_name, "Spam/old");
    assert_eq!(target(&map, "INBOX.Archive").wire_name, "Archive");
    assert_eq!(outcome(&map, "INBOX.Archive.2019"), &excluded("Archive/**"));
    assert_eq!(
        outcome(&map, "INBOX.Archive.2020.x"),
        &excluded("Archive/**")
    );
}

#[test]
fn renames_longest_prefix_wins_and_target_is_final() {
    let src = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("Old Stuff", &[]),
        folder("Old Stuff/2019", &[]),
        folder("Old Stuff/2019/Sent", &[]),
        folder("Old Stuff/Keep", &[]),
        folder("Sent", &["\\Sent"]),
        folder("Old Stuffing", &[]),
    ]);
    let dst = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Sent", &["\\Sent"]),
    ]);
    let r = FolderRules {
        rename: vec![
            ("Old Stuff".to_string(), "Archive/Old Stuff".to_string()),
            ("Old Stuff/Keep".to_string(), "Keep".to_string()),
            ("Sent".to_string(), "INBOX/Sent v1.0".to_string()),
        ],
        ..rules()
    };
    let map = map_folders(&src, &dst, &r);
    assert_eq!(
        target(&map, "Old Stuff").wire_name,
        "INBOX.Archive.Old Stuff"
    );
    assert_eq!(
        target(&map, "Old Stuff/2019/Sent").wire_name,
        "INBOX.Archive.Old Stuff.2019.Sent"
    );
    assert_eq!(
        target(&map, "Old Stuff/2019").rule,
        Rule::Rename {
            from: "Old Stuff".to_string(),
            to: "Archive/Old Stuff".to_string()
        }
    );
    assert_eq!(target(&map, "Old Stuff/Keep").wire_name, "INBOX.Keep");
    // Whole segments only.
    assert_eq!(target(&map, "Old Stuffing").wire_name, "INBOX.Old Stuffing");
    // A rename beats special use, and its target only gets delimiter translation.
    let sent = target(&map, "Sent");
    assert_eq!(sent.wire_name, "INBOX.Sent v1_0");
    assert!(sent.replaced_delimiter);
}

#[test]
fn delimiter_inside_a_name_is_replaced_and_collisions_flagged() {
    // `/` inside a name on a `.` server going to a `/` server.
    let src = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Q1/Q2", &[]),
        folder("INBOX.Q1_Q2", &[]),
        folder("INBOX.Other", &[]),
    ]);
    let dst = Inventory::modern(vec![folder("INBOX", &[])]);
    let map = map_folders(&src, &dst, &rules());
    let a = target(&map, "INBOX.Q1/Q2");
    assert_eq!(a.wire_name, "Q1_Q2");
    assert!(a.replaced_delimiter && a.collision && a.is_merge());
    assert_eq!(a.merged_from, ["INBOX.Q1/Q2", "INBOX.Q1_Q2"]);
    let b = target(&map, "INBOX.Q1_Q2");
    assert!(!b.replaced_delimiter && b.collision && b.is_merge());
    assert!(!target(&map, "INBOX.Other").is_merge());
    assert_eq!(created(&map)[0], ("Q1_Q2", CreateReason::Missing, false));
    assert_eq!(map.to_create[0].sources, ["INBOX.Q1/Q2", "INBOX.Q1_Q2"]);

    // The reverse: `.` inside a name on a `/` server going to a `.` server.
    let src = Inventory::modern(vec![folder("v1.2/notes", &[])]);
    let dst = Inventory::classic(vec![folder("INBOX", &[])]);
    let map = map_folders(&src, &dst, &rules());
    let t = target(&map, "v1.2/notes");
    assert_eq!(
        (t.wire_name.as_str(), t.path.as_str()),
        ("INBOX.v1_2.notes", "v1_2/notes")
    );
    assert!(t.replaced_delimiter && !t.collision);
}

#[test]
fn merges_flagged_without_collision() {
    let src = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("Sent", &[]),
        folder("Sent Items", &[]),
        folder("INBOX/Sent", &[]),
    ]);
    let dst = Inventory::modern(vec![folder("INBOX", &[]), folder("Sent", &["\\Sent"])]);
    let map = map_folders(&src, &dst, &rules());
    // All three are well-known Sent names (top level or directly below INBOX).
    for s in ["Sent", "Sent Items", "INBOX/Sent"] {
        let t = target(&map, s);
        assert_eq!(t.wire_name, "Sent");
        assert_eq!(t.merged_from, ["Sent", "Sent Items", "INBOX/Sent"]);
        assert!(!t.collision);
    }
    assert!(map.to_create.is_empty());
    // INBOX.INBOX on a classic source merges into the INBOX.
    let src = Inventory::classic(vec![folder("INBOX", &[]), folder("INBOX.INBOX", &[])]);
    let map = map_folders(&src, &dst, &rules());
    assert_eq!(target(&map, "INBOX.INBOX").wire_name, "INBOX");
    assert!(target(&map, "INBOX").is_merge());
}

#[test]
fn noselect_folders() {
    let src = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Lists", &["\\Noselect"]),
        folder("INBOX.Lists.rust", &[]),
        folder("INBOX.Empty", &["\\Noselect"]),
        folder("INBOX.Shared", &["\\Noselect"]),
        folder("INBOX.Mixed", &["\\Noselect"]),
        folder("INBOX.Ghost", &[]),
        folder("INBOX.Ghost.Child", &[]),
    ]);
    let dst = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("Shared", &["\\Noselect"]),
        folder("Ghost", &["\\NonExistent", "\\Noselect"]),
    ]);
    let map = map_folders(&src, &dst, &rules());
    assert!(target(&map, "INBOX.Shared").exists && target(&map, "INBOX.Shared").noselect);
    assert_eq!(
        created(&map),
        [
            ("Lists", CreateReason::Missing, false), // needed by Lists/rust
            ("Lists/rust", CreateReason::Missing, false),
            ("Empty", CreateReason::Missing, true),
            ("Mixed", CreateReason::Missing, true),
            ("Ghost", CreateReason::NoselectOnDestination, true),
            ("Ghost/Child", CreateReason::Missing, false),
        ]
    );
    let kept: Vec<&str> = map
        .creations(|w| w == "Ghost")
        .iter()
        .map(|f| f.wire_name.as_str())
        .collect();
    assert_eq!(kept, ["Lists", "Lists/rust", "Ghost", "Ghost/Child"]);
}

#[test]
fn conditional_parents_follow_their_children() {
    let src = Inventory::modern(vec![folder("a/b/c", &[])]);
    let dst = Inventory::modern(vec![folder("INBOX", &[]), folder("a/b/c", &["\\Noselect"])]);
    let map = map_folders(&src, &dst, &rules());
    assert_eq!(
        created(&map),
        [
            ("a", CreateReason::MissingParent, true),
            ("a/b", CreateReason::MissingParent, true),
            ("a/b/c", CreateReason::NoselectOnDestination, true),
        ]
    );
    assert!(map.creations(|_| false).is_empty());
    assert_eq!(map.creations(|w| w == "a/b/c").len(), 3);
}

#[test]
fn subscriptions_follow_the_source() {
    let src = Inventory::modern(vec![
        subscribed(folder("Lists/rust", &[])),
        folder("Lists/go", &[]),
        folder("Merged", &[]),
        subscribed(folder("Merged/", &[])),
    ]);
    let dst = Inventory::classic(vec![folder("INBOX", &[])]);
    let map = map_folders(&src, &dst, &rules());
    let subs: Vec<(&str, bool)> = map
        .to_create
        .iter()
        .map(|f| (f.wire_name.as_str(), f.subscribe))
        .collect();
    assert_eq!(
        subs,
        [
            ("INBOX.Lists", false),
            ("INBOX.Lists.rust", true),
            ("INBOX.Lists.go", false),
            ("INBOX.Merged", false),
            ("INBOX.Merged._", true),
        ]
    );
}

#[test]
fn flat_servers_have_one_segment_names() {
    let flat = |folders| Inventory {
        prefix: String::new(),
        delimiter: None,
        folders,
        limits: Default::default(),
    };
    let map = map_folders(
        &flat(vec![folder("INBOX", &[]), folder("a.b/c", &[])]),
        &Inventory::classic(vec![folder("INBOX", &[])]),
        &rules(),
    );
    assert_eq!(target(&map, "a.b/c").wire_name, "INBOX.a_b/c");
    let map = map_folders(
        &Inventory::classic(vec![folder("INBOX.x.y", &[]), folder("INBOX.Drafts", &[])]),
        &flat(vec![folder("INBOX", &[]), folder("Drafts", &[])]),
        &rules(),
    );
    assert_eq!(target(&map, "INBOX.x.y").wire_name, "x/y");
    assert_eq!(target(&map, "INBOX.Drafts").wire_name, "Drafts");
    assert_eq!(created(&map), [("x/y", CreateReason::Missing, false)]);
}

#[test]
fn inbox_is_case_insensitive_on_both_sides() {
    let src = Inventory::modern(vec![folder("Inbox", &[]), folder("inbox/Sub", &[])]);
    let dst = Inventory::classic(vec![folder("INBOX", &[]), folder("INBOX.Sub", &[])]);
    let map = map_folders(&src, &dst, &rules());
    assert_eq!(target(&map, "Inbox").wire_name, "INBOX");
    assert_eq!(map.entries[1].source_path, "INBOX/Sub");
    assert_eq!(target(&map, "inbox/Sub").wire_name, "INBOX.Sub");
    assert!(target(&map, "inbox/Sub").exists);
    assert!(map.to_create.is_empty());
}

#[test]
fn folder_map_serde_roundtrip() {
    let src = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("[Gmail]/All Mail", &["\\All"]),
        folder("Sent", &["\\Sent"]),
        folder("a/b", &[]),
    ]);
    let dst = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Sent", &["\\Sent"]),
    ]);
    let r = FolderRules {
        exclude: vec!["a/**".to_string()],
        ..rules()
    };
    let map = map_folders(&src, &dst, &r);
    let json = serde_json::to_string(&map).unwrap();
    assert!(json.contains(r#""kind":"special-use""#), "{json}");
    assert_eq!(serde_json::from_str::<FolderMap>(&json).unwrap(), map);
}

// ---- properties ----------------------------------------------------------------------

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("INBOX".to_string()),
        Just("inbox".to_string()),
        Just("Sent".to_string()),
        Just("Sent Items".to_string()),
        Just("Entwürfe".to_string()),
        Just("[Gmail]".to_string()),
        "[a-c./_&é台 ]{0,4}",
    ]
}

#[derive(Debug, Clone)]
struct SideSpec {
    prefix: &'static str,
    delimiter: Option<char>,
}

fn side_spec() -> impl Strategy<Value = SideSpec> {
    prop_oneof![
        Just(SideSpec {
            prefix: "INBOX.",
            delimiter: Some('.')
        }),
        Just(SideSpec {
            prefix: "",
            delimiter: Some('/')
        }),
        Just(SideSpec {
            prefix: "",
            delimiter: Some('.')
        }),
        Just(SideSpec {
            prefix: "",
            delimiter: None
        }),
    ]
}

const ATTRIBUTES: &[&[&str]] = &[
    &[],
    &[],
    &[],
    &["\\Noselect"],
    &["\\Sent"],
    &["\\Trash"],
    &["\\All"],
];

fn inventory(spec: SideSpec) -> impl Strategy<Value = Inventory> {
    prop::collection::vec(
        (
            prop::collection::vec(segment(), 1..4),
            0..ATTRIBUTES.len(),
            any::<bool>(),
        ),
        0..8,
    )
    .prop_map(move |raw| {
        let mut folders = vec![folder("INBOX", &[])];
        for (segments, attrs, subscribed) in raw {
            let joined = match spec.delimiter {
                Some(d) => segments.join(&d.to_string()),
                None => segments.concat(),
            };
            let name = format!("{}{}", spec.prefix, joined);
            let wire = mutf7::encode(&name);
            if folders.iter().any(|f| f.wire_name.as_str() == wire) {
                continue;
            }
            let mut f = folder(&wire, ATTRIBUTES[attrs]);
            f.subscribed = subscribed;
            folders.push(f);
        }
        Inventory {
            prefix: spec.prefix.to_string(),
            delimiter: spec.delimiter,
            folders,
            limits: Default::default(),
        }
    })
}

fn case() -> impl Strategy<Value = (Inventory, Inventory, FolderRules)> {
    (side_spec(), side_spec())
        .prop_flat_map(|(s, d)| (inventory(s), inventory(d)))
        .prop_flat_map(|(s, d)| {
            let rules = (
                prop::collection::vec("[a-cS*?/]{1,5}", 0..2),
                any::<bool>(),
                any::<bool>(),
                prop::collection::vec(("[a-cS]{1,3}", "[a-c./]{1,5}"), 0..2),
            )
                .prop_map(|(exclude, special_use, include_views, rename)| {
                    FolderRules {
                        exclude,
                        special_use,
                        include_views,
                        rename,
                        view_only_messages: Default::default(),
                    }
                });
            (Just(s), Just(d), rules)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn mapping_invariants((src, dst, rules) in case()) {
        let map = map_folders(&src, &dst, &rules);
        prop_assert_eq!(&map, &map_folders(&src, &dst, &rules), "deterministic");
        prop_assert_eq!(map.entries.len(), src.folders.len());
        let side = NameStyle::new(&dst);
        let existing: HashSet<String> =
            dst.folders.iter().map(|f| inbox_key(&f.name, dst.delimiter)).collect();
        for e in &map.entries {
            let Disposition::Mapped(t) = &e.outcome else { continue };
            let decoded = mutf7::decode(t.wire_name.as_str());
            prop_assert!(decoded.is_ok(), "wire {:?} not canonical", t.wire_name);
            let decoded = decoded.unwrap();
            let upper = decoded.to_uppercase();
            let built = matches!(t.rule, Rule::Default | Rule::Rename { .. });
            if let Some(d) = dst.delimiter.filter(|_| built) {
                prop_assert!(
                    !upper.starts_with(&format!("INBOX{d}INBOX{d}")) && upper != format!("INBOX{d}INBOX"),
                    "doubled INBOX in {:?}", decoded
                );
                // Every segment below the prefix / INBOX is non-empty and delimiter-free
                // (split on the delimiter gives back non-empty pieces).
                let below = decoded.strip_prefix(side.prefix.as_str()).unwrap_or(&decoded);
                prop_assert!(below.split(d).all(|s| !s.is_empty()), "empty segment in {:?}", decoded);
            }
            prop_assert_eq!(t.exists, existing.contains(&inbox_key(&decoded, dst.delimiter)) || decoded == "INBOX");
            if e.source_path == "INBOX" && matches!(t.rule, Rule::Default) {
                prop_assert_eq!(&t.wire_name, "INBOX");
            }
        }
        // Parents first: every to-create folder's parent exists or was created earlier.
        let mut available = existing.clone();
        available.insert("INBOX".to_string());
        for f in &map.to_create {
            let decoded = mutf7::decode(f.wire_name.as_str()).unwrap();
            prop_assert!(!available.contains(&inbox_key(&decoded, dst.delimiter)) || f.reason == CreateReason::NoselectOnDestination,
                "{:?} exists already", f.wire_name);
            if let Some(parent) = side.ancestors(&decoded).last() {
                prop_assert!(available.contains(&inbox_key(parent, dst.delimiter)),
                    "parent of {:?} missing", f.wire_name);
            }
            available.insert(inbox_key(&decoded, dst.delimiter));
        }
        // The filtered list keeps parents before children too.
        let kept = map.creations(|w| w.as_str().len() % 2 == 0);
        let mut available = existing;
        available.insert("INBOX".to_string());
        for f in kept {
            let decoded = mutf7::decode(f.wire_name.as_str()).unwrap();
            if let Some(parent) = side.ancestors(&decoded).last() {
                prop_assert!(available.contains(&inbox_key(parent, dst.delimiter)),
                    "filtered: parent of {:?} missing", f.wire_name);
            }
            available.insert(inbox_key(&decoded, dst.delimiter));
        }
    }
}

#[test]
fn a_control_character_in_a_name_is_never_created() {
    // `&AAA-` is modified UTF-7 for U+0000; `&ABs-` for ESC.
    let src = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("bad&AAA-name", &[]),
        folder("bad&AAA-name/child", &[]),
        folder("esc&ABs-", &[]),
        folder("fine", &[]),
    ]);
    let dst = Inventory::modern(vec![folder("INBOX", &[])]);
    let map = map_folders(&src, &dst, &rules());
    assert_eq!(
        outcome(&map, "bad&AAA-name"),
        &Disposition::UnsafeName { character: '\0' }
    );
    assert_eq!(
        outcome(&map, "bad&AAA-name/child"),
        &Disposition::UnsafeName { character: '\0' }
    );
    assert_eq!(
        outcome(&map, "esc&ABs-"),
        &Disposition::UnsafeName {
            character: '\u{1b}'
        }
    );
    let wires: Vec<&str> = created(&map).iter().map(|c| c.0).collect();
    assert_eq!(wires, vec!["fine"]);
}

#[test]
fn a_name_differing_only_in_case_follows_the_existing_folder() {
    let src = Inventory::classic(vec![
        folder("INBOX", &[]),
        folder("INBOX.Projects", &[]),
        folder("INBOX.Projects.2024", &[]),
        folder("INBOX.Misc", &[]),
    ]);
    let dst = Inventory::modern(vec![
        folder("INBOX", &[]),
        folder("projects", &[]),
        folder("Misc", &[]),
        folder("misc", &[]),
    ]);
    let map = map_folders(&src, &dst, &rules());
    let projects = target(&map, "INBOX.Projects");
    assert_eq!(projects.wire_name, "projects");
    assert!(projects.exists && projects.case_match);
    // A child follows its parent's case: never a second `Projects` above it.
    let child = target(&map, "INBOX.Projects.2024");
    assert_eq!(child.wire_name, "projects/2024");
    assert!(!child.exists && child.case_match);
    assert_eq!(
        created(&map),
        [("projects/2024", CreateReason::Missing, false)]
    );
    // An exact match wins over one differing in case.
    let misc = target(&map, "INBOX.Misc");
    assert_eq!(misc.wire_name, "Misc");
    assert!(!misc.case_match);
}
