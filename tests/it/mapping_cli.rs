//! Folder mapping end to end (what-migrators-hit #7–#9): a destination delimiter inside a
//! source name is replaced visibly, subfolders of a special folder follow it, localised
//! special names map by meaning, and `INBOX` is never doubled.

use crate::scenario::Scenario;
use crate::support::{Dovecot, Layout, MessageBuilder, NewMessage};

fn one(subject: &str) -> Vec<NewMessage> {
    vec![NewMessage::new(
        MessageBuilder::new().subject(subject).build(),
    )]
}

fn names(list: Vec<(Vec<String>, Option<char>, String)>) -> Vec<String> {
    let mut names: Vec<String> = list.into_iter().map(|(_, _, n)| n).collect();
    names.sort();
    names
}

#[test]
fn modern_to_classic_replaces_dots_and_keeps_special_subfolders() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Classic)
        .account("alice");
    let mut src = s.src("alice");
    for folder in ["Releases", "Releases/v1.2", "Sent/2023", "INBOX/Receipts"] {
        src.create(folder);
    }
    src.append_many("Releases/v1.2", &one("release notes"));
    src.append_many("Sent/2023", &one("sent last year"));
    src.append_many("INBOX/Receipts", &one("a receipt"));
    let before = src.snapshot();

    let plan = s.run(&["plan"]);
    assert_eq!(plan.status, 0, "{plan}");
    assert!(
        plan.stdout.contains("Releases/v1_2")
            && plan.stdout.contains("delimiter in name replaced by `_`"),
        "{plan}"
    );
    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");

    let mut dst = s.dst("alice");
    let listed = names(dst.list());
    for want in [
        "INBOX.Releases.v1_2",
        "INBOX.Sent Items.2023",
        "INBOX.Receipts",
    ] {
        assert!(
            listed.iter().any(|n| n == want),
            "`{want}` missing in {listed:?}"
        );
    }
    assert!(
        !listed
            .iter()
            .any(|n| n.contains("INBOX.INBOX") || n == "INBOX.Sent.2023"),
        "{listed:?}"
    );
    assert_eq!(dst.fetch_all("INBOX.Releases.v1_2").len(), 1);
    assert_eq!(dst.fetch_all("INBOX.Sent Items.2023").len(), 1);
    assert_eq!(dst.fetch_all("INBOX.Receipts").len(), 1);
    before.assert_unchanged(&src.snapshot());
}

#[test]
fn localised_special_folders_map_by_name_when_no_attribute_says() {
    // A German server without SPECIAL-USE attributes: "Gesendete Objekte" is Sent by name.
    let source = Dovecot::builder()
        .layout(Layout::Classic)
        .special_folders(&[("Gesendete Objekte", None), ("Entwürfe", None)])
        .special_use_attributes(false)
        .start();
    let s = Scenario::new()
        .source_server(source)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    src.append_many("INBOX.Gesendete Objekte", &one("gesendet"));
    src.append_many("INBOX.Entw&APw-rfe", &one("entwurf"));

    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");
    let mut dst = s.dst("alice");
    assert_eq!(dst.fetch_all("Sent").len(), 1, "Gesendete Objekte → Sent");
    assert_eq!(dst.fetch_all("Drafts").len(), 1, "Entwürfe → Drafts");
    let listed = names(dst.list());
    assert!(
        !listed.iter().any(|n| n.starts_with("Gesendete")),
        "{listed:?}"
    );
}

#[test]
fn a_noselect_destination_folder_becomes_selectable_when_mail_must_go_in() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    src.create("INBOX.Clients");
    src.append_many("INBOX.Clients", &one("client mail"));
    // On the destination `Clients` exists only as the implicit parent of `Clients/Acme`.
    let mut dst = s.dst("alice");
    dst.create("Clients/Acme");
    let attrs: Vec<String> = dst
        .list()
        .into_iter()
        .find(|(_, _, n)| n == "Clients")
        .map(|(a, _, _)| a)
        .expect("the implicit parent is listed");
    assert!(
        attrs.iter().any(|a| a.eq_ignore_ascii_case("\\Noselect")),
        "{attrs:?}"
    );

    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");
    assert_eq!(dst.fetch_all("Clients").len(), 1);
    assert_eq!(dst.fetch_all("Clients/Acme").len(), 0);
    let again = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status, 0, "{again}");
}

/// Issue 8 item 7: a source folder that exists only as a `\Noselect` placeholder is
/// created on the destination only as the parent of a folder the plan creates, and counted
/// only then; an existing destination INBOX is subscribed when the source's INBOX is.
#[test]
fn noselect_placeholders_stay_placeholders_and_the_inbox_subscription_follows() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Classic)
        .account("alice")
        .config("[folders]\nexclude = [\"Lists/**\"]\n");
    let mut src = s.src("alice");
    // `Projects` and `Lists` exist only as the implicit parents of their children.
    src.create("Projects/2024");
    src.append_many("Projects/2024", &one("project mail"));
    src.create("Lists/announce");
    src.append_many("Lists/announce", &one("list mail"));
    src.subscribe("INBOX");
    src.subscribe("Projects");
    for placeholder in ["Projects", "Lists"] {
        let attrs: Vec<String> = src
            .list()
            .into_iter()
            .find(|(_, _, n)| n == placeholder)
            .map(|(a, _, _)| a)
            .expect("the implicit parent is listed");
        assert!(
            attrs.iter().any(|a| a.eq_ignore_ascii_case("\\Noselect")),
            "{placeholder}: {attrs:?}"
        );
    }
    let before = src.snapshot();
    let mut dst = s.dst("alice");
    assert!(
        !dst.list_subscribed().iter().any(|n| n == "INBOX"),
        "the destination INBOX starts unsubscribed"
    );

    let plan = s.run(&["plan"]);
    assert_eq!(plan.status, 0, "{plan}");
    // `Projects` is counted: `Projects/2024` receives mail below it. `Lists` is not: its
    // only child is excluded. (`Archive` is the source's special folder, missing on the
    // classic destination.)
    let created: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| l.contains('←'))
        .filter_map(|l| l.trim_start().strip_prefix("+ "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(created, ["Archive", "Projects", "Projects/2024"], "{plan}");
    assert!(
        plan.last_line()
            .starts_with("Plan: 3 folders to create, 1 message"),
        "{plan}"
    );
    assert!(
        plan.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("= INBOX") && l.ends_with("(subscribe)")),
        "{plan}"
    );
    let json = s.run(&["plan", "--format", "json"]).json();
    let inbox = json["accounts"][0]["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["destination"] == "INBOX")
        .expect("INBOX in the plan")
        .clone();
    assert_eq!(inbox["action"], "exists", "{inbox}");
    assert_eq!(inbox["subscribe"], true, "{inbox}");

    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");
    let listed = names(dst.list());
    assert!(listed.iter().any(|n| n == "INBOX.Projects"), "{listed:?}");
    assert!(
        !listed.iter().any(|n| n.starts_with("INBOX.Lists")),
        "{listed:?}"
    );
    assert_eq!(dst.fetch_all("INBOX.Projects.2024").len(), 1);
    let subscribed = dst.list_subscribed();
    assert!(subscribed.iter().any(|n| n == "INBOX"), "{subscribed:?}");
    assert!(
        subscribed.iter().any(|n| n == "INBOX.Projects"),
        "{subscribed:?}"
    );
    assert!(
        !subscribed.iter().any(|n| n == "INBOX.Projects.2024"),
        "{subscribed:?}"
    );
    before.assert_unchanged(&src.snapshot());

    // Subscribed now: nothing left to do.
    let again = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status, 0, "{again}");
}
