//! `mailshift check` end to end: every account logs in on both sides, read-only; a server
//! that refuses the connection gives one clear line naming the account and the server.

use crate::scenario::{closed_port, Scenario, Side};
use crate::support::Layout;

#[test]
fn check_good_accounts_prints_ok_and_changes_nothing() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice")
        .account("bob");
    let mut src = s.src("alice");
    src.append(
        "INBOX",
        &[],
        None,
        &crate::support::MessageBuilder::new().build(),
    );
    let before = src.snapshot();

    let r = s.run(&["check"]);
    assert_eq!(r.status, 0, "{r}");
    for a in s.accounts() {
        let row = r
            .stdout
            .lines()
            .find(|l| l.contains(&a.source_user))
            .unwrap_or_else(|| panic!("no row for `{}`:\n{r}", a.source_user));
        assert!(row.contains(&a.destination_user), "{row}");
        assert_eq!(
            row.matches(" ok").count(),
            2,
            "ok on both sides: `{row}`\n{r}"
        );
    }
    assert!(!r.stdout.contains("FAILED"), "{r}");
    assert!(!r.all_output().to_lowercase().contains("error"), "{r}");

    let j = s.run(&["check", "--format", "json"]);
    assert_eq!(j.status, 0, "{j}");
    let doc = j.json();
    let accounts = doc["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 2);
    for a in accounts {
        assert_eq!(a["source"]["ok"], true, "{j}");
        assert_eq!(a["destination"]["ok"], true, "{j}");
    }
    before.assert_unchanged(&src.snapshot());
}

#[test]
fn check_refused_port_names_the_account_and_the_server() {
    let mut s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice")
        .account("bob");
    let port = closed_port();
    s.set_port(Side::Destination, port);
    let r = s.run(&["check"]);
    assert_eq!(r.status, 1, "{r}");
    let server = format!("127.0.0.1:{port}");
    for a in s.accounts() {
        let lines: Vec<&str> = r
            .stdout
            .lines()
            .filter(|l| l.contains(&a.source_user) && l.contains(&server))
            .collect();
        assert_eq!(lines.len(), 1, "one line for `{}`:\n{r}", a.source_user);
        assert!(lines[0].contains("destination"), "{}", lines[0]);
        assert!(lines[0].contains("refused"), "{}", lines[0]);
    }
    // The source side of each account is fine.
    let j = s.run(&["check", "--format", "json"]);
    assert_eq!(j.status, 1, "{j}");
    for a in j.json()["accounts"].as_array().unwrap() {
        assert_eq!(a["source"]["ok"], true, "{j}");
        assert_eq!(a["destination"]["ok"], false, "{j}");
    }
}

/// The capabilities a logged-in session of `name` announces, read by the test's own client.
fn announced(s: &Scenario, side: Side, name: &str) -> Vec<String> {
    let mut imap = s.imap(side, name);
    let lines = imap.raw_command("CAPABILITY");
    let line = lines
        .iter()
        .find(|l| l.to_ascii_uppercase().starts_with("* CAPABILITY "))
        .expect("a CAPABILITY answer");
    line["* CAPABILITY ".len()..]
        .split_whitespace()
        .map(|a| a.to_ascii_uppercase())
        .collect()
}

#[test]
fn check_shows_the_capabilities_that_matter_per_side() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let r = s.run(&["check"]);
    assert_eq!(r.status, 0, "{r}");
    let source = announced(&s, Side::Source, "alice");
    let destination = announced(&s, Side::Destination, "alice");
    let offers = |atoms: &[String], name: &str| {
        atoms
            .iter()
            .any(|a| a == name || a.starts_with(&format!("{name}=")))
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    for name in [
        "UIDPLUS",
        "MULTIAPPEND",
        "LITERAL+",
        "CONDSTORE",
        "QUOTA",
        "APPENDLIMIT",
        "SPECIAL-USE",
        "NAMESPACE",
        "COMPRESS",
    ] {
        let row = r
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no `{name}` row:\n{r}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            (cells[1], cells[2]),
            (
                yes_no(offers(&source, name)),
                yes_no(offers(&destination, name))
            ),
            "{row}"
        );
    }
    // Dovecot 2.3 as the tests run it has no QUOTA: the table says what that means.
    assert!(!offers(&destination, "QUOTA"));
    assert!(
        r.stdout
            .contains("destination: the plan cannot tell whether the copy fits"),
        "{r}"
    );
    let doc = s.run(&["check", "--format", "json"]).json();
    let rows = doc["capabilities"].as_array().expect("capabilities");
    assert_eq!(rows.len(), 9);
    let uidplus = rows.iter().find(|c| c["name"] == "UIDPLUS").unwrap();
    assert_eq!(uidplus["destination"], offers(&destination, "UIDPLUS"));
}
