//! Admin (master) login end to end with the Microsoft 365 CSV header
//! (`EmailAddress,UserName,Password`): the destination has no user passwords, so
//! `[destination.admin]` logs in on each user's behalf.

use std::os::unix::fs::PermissionsExt;

use crate::scenario::{run_mailshift, Scenario};
use crate::support::{Dovecot, Layout, MessageBuilder, NewMessage};

#[test]
fn microsoft_365_csv_with_destination_admin_login_copies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let master = dir.path().join("master-passwd");
    std::fs::write(&master, "migrator:{PLAIN}admin-secret-42\n").unwrap();
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o644)).unwrap();
    let destination = Dovecot::builder()
        .layout(Layout::Modern)
        .extra_config(&format!(
            "passdb {{\n  driver = passwd-file\n  master = yes\n  args = scheme=PLAIN {}\n}}",
            master.display()
        ))
        .start();
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination_server(destination)
        .account("alice")
        .config("[destination.admin]\nuser = \"migrator\"\npassword-file = \"admin.pw\"\n");
    let a = s.acct("alice").clone();
    s.src("alice").append_many(
        "INBOX",
        &[NewMessage::new(
            MessageBuilder::new().subject("via admin").build(),
        )],
    );

    s.write_files();
    std::fs::write(s.path("admin.pw"), "admin-secret-42\n").unwrap();
    std::fs::write(
        s.path("accounts.csv"),
        format!(
            "EmailAddress,UserName,Password\n{},{},{}\n",
            a.destination_user, a.source_user, a.source_password
        ),
    )
    .unwrap();

    let check = run_mailshift(s.dir(), &["check"]);
    assert_eq!(check.status, 0, "{check}");
    let apply = run_mailshift(s.dir(), &["apply", "--auto-approve"]);
    assert_eq!(apply.status, 0, "{apply}");
    assert!(!apply.all_output().contains("admin-secret-42"), "{apply}");
    let got = s.dst("alice").fetch_all("INBOX");
    assert_eq!(
        got.len(),
        1,
        "copied into the user's mailbox through the admin login"
    );
    let again = run_mailshift(s.dir(), &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status, 0, "{again}");
}
