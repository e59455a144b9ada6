//! Snapshot tests (insta) of the fixed output formats: the text plan (with the per-account
//! table), `--detail`, the JSON plan, the apply report (text and JSON) and the `check`
//! table. A change to any of them shows up as a reviewed diff of a `.snap` file in
//! `src/render/snapshots/`; times and versions are redacted.
//!
//! To accept an intended change: `INSTA_UPDATE=always cargo test --lib snapshots`, then
//! review the `.snap` diff before committing.

use crate::inventory::{Inventory, MessageMeta};
use crate::plan::fixtures::{folder, msg, rules};
use crate::plan::{plan_account, AccountPlan, Rules};
use crate::planfile::PlanFile;
use crate::render::check::{render as render_check, AccountCheck, CheckReport, SideResult};
use crate::render::report::report as render_report;
use crate::render::text::{render_plan, TextOptions};
use crate::report::{AccountReport, FailedMessage, Report};

/// A message with the fields `--detail` shows.
fn message(uid: u32, key: u8, size: u64, flags: &[&str], subject: &str) -> MessageMeta {
    let mut m = msg(uid, key, size, flags);
    m.internal_date = crate::message::InternalDate::from_rfc3339("2024-03-01T10:00:00+00:00");
    m.display = crate::message::DisplayFields::new(
        "Fri, 01 Mar 2024 10:00:00 +0000",
        "robot@old.example",
        subject,
    );
    m
}

/// A classic `INBOX.` source and a modern destination that already holds some mail: new
/// folders, a special-use mapping, a merge, a skipped `\Deleted` and an oversized message,
/// and a wide-character folder name.
fn sample_account() -> AccountPlan {
    let source = Inventory::classic(vec![
        folder(
            "INBOX",
            &[],
            vec![
                message(1, 1, 2_000, &["\\Seen"], "Welcome"),
                message(2, 2, 3_500, &[], "Invoice 2024-03"),
                message(3, 3, 1_000, &["\\Deleted"], "Old news"),
            ],
        ),
        folder(
            "INBOX.Sent Items",
            &[],
            vec![message(1, 4, 4_096, &["\\Seen"], "Re: Invoice")],
        ),
        folder(
            "INBOX.Projects.2024",
            &[],
            vec![message(1, 5, 90 * 1024 * 1024, &[], "Scans")],
        ),
        folder(
            "INBOX.&ZeVnLIqe-",
            &[],
            vec![message(1, 6, 700, &[], "日本語の件名")],
        ),
        folder("INBOX.Archive", &[], vec![message(1, 7, 800, &[], "2019")]),
        folder(
            "INBOX.Old Archive",
            &[],
            vec![message(1, 8, 900, &[], "2018")],
        ),
    ]);
    let destination = Inventory::modern(vec![
        folder(
            "INBOX",
            &[],
            vec![message(1, 1, 2_000, &["\\Seen"], "Welcome")],
        ),
        folder("Sent", &["\\Sent"], vec![]),
    ]);
    let (mut folders, mut messages) = rules();
    folders.rename = vec![("Old Archive".to_string(), "Archive".to_string())];
    messages.max_size = Some(50 * 1024 * 1024);
    plan_account(
        "alice@old.example",
        "alice@new.example",
        &source,
        &destination,
        Rules {
            folders: &folders,
            messages: &messages,
            ledger: None,
        },
    )
}

fn sample_plan() -> PlanFile {
    let failed = AccountPlan::failed(
        "bob@old.example",
        "bob@new.example",
        "destination: login as `bob@new.example` on `imap.new.example:993` failed: [AUTHENTICATIONFAILED] Authentication failed.".to_string(),
        Some("check the destination user and password in `accounts.csv` line 3".to_string()),
    );
    PlanFile::new("0123abcd".to_string(), vec![sample_account(), failed])
}

/// The per-account table's status column: `changes`, `over quota`, `up to date`, `error`.
#[test]
fn account_table_statuses() {
    let changes = sample_account();
    let mut over = sample_account();
    over.source_user = "carol@old.example".to_string();
    over.quota = Some(crate::plan::QuotaCheck {
        used: 900 * 1024,
        limit: 1024 * 1024,
        over_quota: true,
    });
    let mut fits = sample_account();
    fits.source_user = "erin@old.example".to_string();
    fits.quota = Some(crate::plan::QuotaCheck {
        used: 0,
        limit: 1024 * 1024 * 1024,
        over_quota: false,
    });
    let mut done = sample_account();
    done.source_user = "dave@old.example".to_string();
    done.summary = crate::plan::Summary {
        already_present: 8,
        ..Default::default()
    };
    let failed = sample_plan().accounts.pop().expect("the failed account");
    insta::assert_snapshot!(crate::render::text::account_table(&[
        changes, over, fits, done, failed
    ]));
}

#[test]
fn text_plan() {
    insta::assert_snapshot!(render_plan(&sample_plan(), TextOptions::default()));
}

#[test]
fn text_plan_with_detail() {
    insta::assert_snapshot!(render_plan(
        &PlanFile::new("0123abcd".to_string(), vec![sample_account()]),
        TextOptions { detail: true }
    ));
}

#[test]
fn json_plan() {
    let value: serde_json::Value = serde_json::from_str(&sample_plan().to_json()).unwrap();
    insta::assert_json_snapshot!(value, {
        ".created_at" => "[created_at]",
        ".tool_version" => "[tool_version]",
    });
}

fn sample_report() -> Report {
    let mut done = AccountReport::new("alice@old.example", "alice@new.example");
    done.folders_created = 3;
    done.copied = 6;
    done.bytes = 12_345;
    done.already_present = 1;
    done.skipped = 2;
    done.seconds = 1.5;
    done.settle();
    let mut partial = AccountReport::new("carol@old.example", "carol@new.example");
    partial.copied = 10;
    partial.bytes = 40_960;
    partial.failed.push(FailedMessage {
        folder: "INBOX".to_string(),
        uid: 7,
        reason: "[LIMIT] Message too large".to_string(),
        date: "Fri, 01 Mar 2024 10:00:00 +0000".to_string(),
        from: "robot@old.example".to_string(),
        subject: "Quarterly report".to_string(),
        size: 52_428_800,
        hint: None,
    });
    partial.seconds = 0.25;
    partial.settle();
    let mut failed = AccountReport::new("bob@old.example", "bob@new.example");
    failed.error = Some("destination: connection lost".to_string());
    failed.pending = 42;
    failed.settle();
    Report::new(vec![done, partial, failed], false)
}

#[test]
fn report_text() {
    insta::assert_snapshot!(render_report(&sample_report()));
}

#[test]
fn report_json() {
    let value: serde_json::Value = serde_json::from_str(&sample_report().to_json()).unwrap();
    insta::assert_json_snapshot!(value, {
        ".tool_version" => "[tool_version]",
        ".created_at" => "[time]",
        ".**.finished_at" => "[time]",
        ".**.started_at" => "[time]",
    });
}

#[test]
fn check_table() {
    let ok = || SideResult {
        ok: true,
        error: None,
        hint: None,
    };
    let report = CheckReport {
        accounts: vec![
            AccountCheck {
                source_user: "alice@old.example".to_string(),
                destination_user: "alice@new.example".to_string(),
                source: ok(),
                destination: ok(),
            },
            AccountCheck {
                source_user: "bob@old.example".to_string(),
                destination_user: "bob@new.example".to_string(),
                source: ok(),
                destination: SideResult {
                    ok: false,
                    error: Some(
                        "login as `bob@new.example` on `imap.new.example:993` failed: [AUTHENTICATIONFAILED] Authentication failed.".to_string(),
                    ),
                    hint: Some(
                        "check the destination user and password in `accounts.csv` line 3"
                            .to_string(),
                    ),
                },
            },
        ],
        ok: false,
        capabilities: crate::render::check::capability_rows(
            Some(&["IMAP4REV1", "UIDPLUS", "NAMESPACE"].map(String::from)),
            Some(
                &[
                    "UIDPLUS",
                    "MULTIAPPEND",
                    "LITERAL+",
                    "APPENDLIMIT=35651584",
                    "SPECIAL-USE",
                    "NAMESPACE",
                ]
                .map(String::from),
            ),
        ),
    };
    insta::assert_snapshot!(render_check(&report));
}

/// Both logins failed: no table of unknowns, a line saying why nothing is known.
#[test]
fn check_table_when_no_login_succeeds() {
    let failed = |side: &str| {
        SideResult {
        ok: false,
        error: Some(format!(
            "login as `carol` on `imap.{side}.example:993` failed: [AUTHENTICATIONFAILED] Authentication failed."
        )),
        hint: Some(format!("check the {side} user and password in `accounts.csv` line 2")),
    }
    };
    let report = CheckReport {
        accounts: vec![AccountCheck {
            source_user: "carol@old.example".to_string(),
            destination_user: "carol@new.example".to_string(),
            source: failed("source"),
            destination: failed("destination"),
        }],
        ok: false,
        capabilities: crate::render::check::capability_rows(None, None),
    };
    insta::assert_snapshot!(render_check(&report));
    // One side known: the table, and a line for the side nothing is known of.
    let report = CheckReport {
        capabilities: crate::render::check::capability_rows(
            None,
            Some(&["UIDPLUS"].map(String::from)),
        ),
        ..report
    };
    let text = render_check(&report);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["UIDPLUS", "unknown", "yes"])),
        "{text}"
    );
    assert!(
        text.contains("\nsource capabilities: unknown, no login succeeded there\n"),
        "{text}"
    );
    assert!(!text.contains('?'), "{text}");
}

/// Into a Cyrus/Courier-style destination (`INBOX.` prefix, `.` separator) the plan shows
/// each folder's real path on the server next to its display name.
#[test]
fn text_plan_into_a_classic_destination() {
    let source = Inventory::modern(vec![
        folder("INBOX", &[], vec![message(1, 1, 100, &[], "a")]),
        folder("Archive/2019", &[], vec![message(1, 2, 200, &[], "b")]),
    ]);
    let destination = Inventory::classic(vec![folder("INBOX", &[], vec![])]);
    let (folders, messages) = rules();
    let account = plan_account(
        "dave@old.example",
        "dave@new.example",
        &source,
        &destination,
        Rules {
            folders: &folders,
            messages: &messages,
            ledger: None,
        },
    );
    let text = render_plan(
        &PlanFile::new("0123abcd".to_string(), vec![account]),
        TextOptions::default(),
    );
    assert!(
        text.contains("`INBOX.Archive.2019` on the server"),
        "{text}"
    );
    insta::assert_snapshot!(text);
}

/// With pacing caps, the account block says how long the copy takes at least (DESIGN §2
/// "Text plan"), and the JSON plan carries it as `pacing`.
#[test]
fn pacing_floor_in_the_account_block_and_the_json() {
    let mut account = sample_account();
    account.pacing = crate::plan::pacing::time_floor(
        &crate::plan::Summary {
            messages_to_copy: 1_000,
            bytes_to_copy: 5_000_000_000,
            ..Default::default()
        },
        &crate::settings::PacingLimits {
            account_bytes_per_day: Some(500_000_000),
            ..Default::default()
        },
    );
    let plan = PlanFile::new("0123abcd".to_string(), vec![account]);
    let text = render_plan(&plan, TextOptions::default());
    assert!(
        text.lines()
            .any(|l| l == "  at least 10 days at 500 MB/day"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
    assert_eq!(
        json["accounts"][0]["pacing"],
        serde_json::json!({"seconds": 897_808, "cap": "500 MB/day"})
    );
    // Without caps: no line, no field.
    let plain = PlanFile::new("0123abcd".to_string(), vec![sample_account()]);
    assert!(!render_plan(&plain, TextOptions::default()).contains("at least"));
    assert!(!plain.to_json().contains("\"pacing\""));
}
