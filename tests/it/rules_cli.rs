//! Config rules end to end: `exclude` globs, `[folders.rename]`, `max-size` and
//! `copy-deleted` decide what `apply` does, exactly as the plan says.

use crate::scenario::Scenario;
use crate::support::{Layout, MessageBuilder, NewMessage};

fn msg(subject: &str) -> NewMessage {
    NewMessage::new(MessageBuilder::new().subject(subject).build())
}

fn names(s: &Scenario) -> Vec<String> {
    let mut v: Vec<String> = s
        .dst("alice")
        .list()
        .into_iter()
        .map(|(_, _, n)| n)
        .collect();
    v.sort();
    v
}

#[test]
fn exclude_and_rename_shape_the_destination() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .config(
            "[folders]\nexclude = [\"Spam\", \"Old/**\"]\n\n[folders.rename]\n\"Old Stuff\" = \"Archive/Old Stuff\"\n",
        );
    let mut src = s.src("alice");
    for f in [
        "INBOX.Spam",
        "INBOX.Old",
        "INBOX.Old.2019",
        "INBOX.Old Stuff",
        "INBOX.Old Stuff.2018",
    ] {
        src.create(f);
    }
    src.append_many("INBOX.Spam", &[msg("spam")]);
    src.append_many("INBOX.Old", &[msg("old itself")]);
    src.append_many("INBOX.Old.2019", &[msg("below old")]);
    src.append_many("INBOX.Old Stuff.2018", &[msg("renamed")]);

    let plan = s.run(&["plan"]);
    assert_eq!(plan.status, 0, "{plan}");
    assert!(plan.stdout.contains("excluded by `Spam`"), "{plan}");
    assert!(plan.stdout.contains("excluded by `Old/**`"), "{plan}");
    let apply = s.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");

    let listed = names(&s);
    assert!(
        !listed.iter().any(|n| n == "Spam" || n == "Old/2019"),
        "{listed:?}"
    );
    // `Old/**` excludes what is below `Old`, not `Old` itself.
    assert_eq!(s.dst("alice").fetch_all("Old").len(), 1, "{listed:?}");
    assert_eq!(
        s.dst("alice").fetch_all("Archive/Old Stuff/2018").len(),
        1,
        "{listed:?}"
    );
    assert!(!listed.iter().any(|n| n == "Old Stuff"), "{listed:?}");
}

#[test]
fn max_size_skips_and_copy_deleted_copies_with_the_flag() {
    let big = MessageBuilder::new().subject("big").pad_to(300_000).build();
    let setup = |extra: &str| {
        let s = Scenario::new()
            .source(Layout::Modern)
            .destination(Layout::Classic)
            .account("alice")
            .config(extra);
        s.src("alice").append_many(
            "INBOX",
            &[
                msg("small"),
                NewMessage::new(big.clone()),
                msg("deleted").flags(&["\\Deleted", "\\Seen"]),
            ],
        );
        s
    };

    let s = setup("[messages]\nmax-size = \"100KiB\"\n");
    let plan = s.run(&["plan", "--format", "json"]);
    assert_eq!(plan.json()["summary"]["messages_to_copy"], 1, "{plan}");
    assert_eq!(plan.json()["summary"]["skipped"], 2, "{plan}");
    let text = s.run(&["plan"]);
    assert!(
        text.stdout.contains("1 \\Deleted, 1 over max-size"),
        "{text}"
    );
    assert_eq!(s.run(&["apply", "--auto-approve"]).status, 0);
    let got = s.dst("alice").fetch_all("INBOX");
    assert_eq!(got.len(), 1, "only the small one");

    let s = setup("[messages]\ncopy-deleted = true\n");
    assert_eq!(s.run(&["apply", "--auto-approve"]).status, 0);
    let got = s.dst("alice").fetch_all("INBOX");
    assert_eq!(got.len(), 3);
    let deleted: Vec<_> = got
        .iter()
        .filter(|m| m.flags.iter().any(|f| f == "\\Deleted"))
        .collect();
    assert_eq!(deleted.len(), 1, "copied with its \\Deleted flag");
    let again = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status, 0, "{again}");
}
