//! Table tests for `migration.toml` + CSV loading: every error names file, line and key,
//! and no password ever shows up in an error, a warning or Debug output.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use tempfile::TempDir;

use super::*;
use crate::settings::{shard_of, Selection, Shard};

/// Every password in these tests contains this.
const SECRET: &str = "pw-SECRET";

const BASE: &str = r#"[source]
host = "imap.old.example"

[destination]
host = "imap.new.example"

[accounts]
csv = "accounts.csv"
"#;

const CSV: &str = "source_user,source_password,destination_user,destination_password\n\
                   alice@old.example,pw-SECRET-1,alice@new.example,pw-SECRET-2\n\
                   Bob@old.example, pw-SECRET-3 ,,pw-SECRET-4\n\
                   carol@old.example,pw-SECRET-5,carol@new.example,pw-SECRET-6\n";

/// Writes `sub/migration.toml` and `sub/accounts.csv` (the CSV path is relative to the
/// config's directory, not the working directory).
fn files(config: &str, csv: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("migration.toml"), config).unwrap();
    std::fs::write(sub.join("accounts.csv"), csv).unwrap();
    (dir, sub.join("migration.toml"))
}

/// The error as `message` then `\nhint: ...` when it has one (the message never holds it).
fn try_load(config: &str, csv: &str, selection: &Selection) -> Result<Settings, String> {
    use crate::diagnostics::HasHint as _;
    let (_dir, path) = files(config, csv);
    load(&path, selection).map_err(|e| {
        let message = e.to_string();
        assert!(
            !message.contains("hint"),
            "a hint in the message: {message}"
        );
        match e.hint() {
            Some(h) => format!("{message}\nhint: {h}"),
            None => message,
        }
    })
}

fn load_ok(config: &str, csv: &str) -> Settings {
    try_load(config, csv, &Selection::default()).unwrap()
}

/// `BASE` with `extra` appended to the `[source]` table.
fn with_source(extra: &str) -> String {
    BASE.replace(
        "host = \"imap.old.example\"\n",
        &format!("host = \"imap.old.example\"\n{extra}\n"),
    )
}

fn users(s: &Settings) -> Vec<&str> {
    s.accounts.iter().map(|a| a.source_user.as_str()).collect()
}

#[test]
fn defaults_match_the_design_table() {
    let s = load_ok(BASE, CSV);
    for server in [&s.source, &s.destination] {
        assert_eq!(server.port, 993);
        assert_eq!(server.security, Security::Tls);
        assert_eq!(server.ca_file, None);
        assert_eq!(server.tls_roots, TlsRoots::System);
        assert!(!server.accept_invalid_certs);
        assert!(!server.allow_plaintext_auth);
        assert_eq!(server.auth, AuthMethod::Auto);
        assert_eq!(server.token_command, None);
        assert_eq!(server.max_connections, 10);
        assert!(server.admin.is_none());
    }
    assert_eq!(s.source.host, "imap.old.example");
    assert!(s.folders.exclude.is_empty());
    assert!(s.folders.special_use);
    assert!(!s.folders.include_views);
    assert!(s.folders.rename.is_empty());
    assert_eq!(s.messages.max_size, None);
    assert!(!s.messages.copy_deleted);
    assert_eq!(s.messages.flags_on_existing, FlagsOnExisting::Keep);
    assert!(!s.messages.fix_bare_lf);
    assert_eq!(s.messages.moved_on_destination, MovedOnDestination::Skip);
    assert_eq!(
        s.messages.deleted_on_destination,
        DeletedOnDestination::Skip
    );
    assert!(s.state_dir.ends_with("sub/.mailshift"), "{:?}", s.state_dir);
    assert_eq!(s.limits.parallel_accounts, 4);
    assert_eq!(s.limits.connections_per_account, 2);
    assert_eq!(s.limits.connect_timeout, Duration::from_secs(30));
    assert_eq!(s.limits.idle_timeout, Duration::from_secs(120));
    assert!(s.warnings.is_empty());
    assert!(s.csv_path.ends_with("sub/accounts.csv"));
    assert_eq!(
        users(&s),
        ["alice@old.example", "Bob@old.example", "carol@old.example"]
    );
    assert_eq!(s.accounts[1].destination_user, "Bob@old.example");
    assert_eq!(
        s.accounts[1]
            .source_password
            .as_ref()
            .unwrap()
            .expose_secret(),
        " pw-SECRET-3 "
    );
}

#[test]
fn every_key_can_be_set() {
    let config = format!(
        "{}\n{}",
        with_source(
            "port = 1993\nsecurity = \"starttls\"\ntls-roots = \"mozilla\"\n\
             auth = \"xoauth2\"\ntoken-command = \"get-token {user}\"\nmax-connections = 3"
        ),
        r#"[folders]
exclude = ["Spam", "Trash/**"]
special-use = false
include-views = true

[folders.rename]
"Zeta" = "Archive/Zeta"
"Alpha" = "Archive/Alpha"

[messages]
max-size = "1.5GiB"
copy-deleted = true
flags-on-existing = "add"
fix-bare-lf = true
moved-on-destination = "copy"
deleted-on-destination = "restore"

[limits]
parallel-accounts = 8
connections-per-account = 1
connect-timeout = "5s"
idle-timeout = "2m"

[state]
dir = "/var/lib/mailshift"
"#
    );
    let s = load_ok(&config, CSV);
    assert_eq!(s.source.port, 1993);
    assert_eq!(s.source.security, Security::StartTls);
    assert_eq!(s.source.tls_roots, TlsRoots::Mozilla);
    assert_eq!(s.source.auth, AuthMethod::Xoauth2);
    assert_eq!(s.source.token_command.as_deref(), Some("get-token {user}"));
    assert_eq!(s.source.max_connections, 3);
    assert_eq!(s.folders.exclude, ["Spam", "Trash/**"]);
    assert!(!s.folders.special_use && s.folders.include_views);
    // File order, not alphabetical.
    assert_eq!(
        s.folders.rename,
        [
            ("Zeta".to_string(), "Archive/Zeta".to_string()),
            ("Alpha".to_string(), "Archive/Alpha".to_string())
        ]
    );
    assert_eq!(s.messages.max_size, Some(3 << 29));
    assert!(s.messages.copy_deleted && s.messages.fix_bare_lf);
    assert_eq!(s.messages.flags_on_existing, FlagsOnExisting::Add);
    assert_eq!(s.messages.moved_on_destination, MovedOnDestination::Copy);
    assert_eq!(
        s.messages.deleted_on_destination,
        DeletedOnDestination::Restore
    );
    assert_eq!(s.state_dir, PathBuf::from("/var/lib/mailshift"));
    assert_eq!(s.limits.parallel_accounts, 8);
    assert_eq!(s.limits.connections_per_account, 1);
    assert_eq!(s.limits.connect_timeout, Duration::from_secs(5));
    assert_eq!(s.limits.idle_timeout, Duration::from_secs(120));
}

#[test]
fn default_port_follows_security() {
    let table = [
        ("security = \"tls\"", 993),
        ("security = \"starttls\"", 143),
        ("security = \"plain\"\nallow-plaintext-auth = true", 143),
        (
            "security = \"plain\"\nport = 1143\nallow-plaintext-auth = true",
            1143,
        ),
        ("security = \"tls\"\nport = 10993", 10993),
    ];
    for (extra, port) in table {
        let s = load_ok(&with_source(extra), CSV);
        assert_eq!(s.source.port, port, "{extra}");
        assert_eq!(s.destination.port, 993);
    }
}

#[test]
fn config_errors_name_file_line_and_key() {
    // (config, CSV, expected line or None, expected fragments)
    let m365 = "EmailAddress,UserName,Password\nnew@b.example,old@a.example,pw-SECRET\n";
    let table: Vec<(String, &str, Option<usize>, Vec<&str>)> = vec![
        (
            BASE.replace("host = \"imap.old.example\"", "hots = \"imap.old.example\""),
            CSV,
            Some(2),
            vec!["unknown field `hots` in `[source]`, expected one of `host`"],
        ),
        (
            BASE.replace("host = \"imap.old.example\"", "port = 993"),
            CSV,
            Some(1),
            vec!["missing field `host` in `[source]`"],
        ),
        (
            BASE.replace("[accounts]\ncsv = \"accounts.csv\"\n", ""),
            CSV,
            None,
            vec!["missing field `accounts` at the top level\nhint: add a `[accounts]` table"],
        ),
        (
            format!("{BASE}\n[sorce]\nhost = \"x\"\n"),
            CSV,
            Some(10),
            vec!["unknown field `sorce` at the top level"],
        ),
        (
            format!("{BASE}\n[source.hots]\nx = 1\n"),
            CSV,
            Some(10),
            vec!["unknown field `hots` in `[source]`"],
        ),
        (
            format!("{BASE}\n[limits]\nconect-timeout = \"5s\"\n"),
            CSV,
            Some(11),
            vec!["unknown field `conect-timeout` in `[limits]`"],
        ),
        (
            with_source("security = \"ssl\""),
            CSV,
            Some(3),
            vec!["`security` in `[source]`", "unknown variant `ssl`"],
        ),
        (
            with_source("port = 0"),
            CSV,
            Some(3),
            vec!["`port` in `[source]`"],
        ),
        (
            with_source("port = \"993\""),
            CSV,
            Some(3),
            vec!["`port` in `[source]`", "invalid type"],
        ),
        (
            with_source("max-connections = 0"),
            CSV,
            Some(3),
            vec!["`max-connections` in `[source]`"],
        ),
        (
            format!("{BASE}\n[limits]\nconnect-timeout = \"5x\"\n"),
            CSV,
            Some(11),
            vec!["`connect-timeout` in `[limits]`", "invalid duration `5x`"],
        ),
        (
            format!("{BASE}\n[limits]\nidle-timeout = \"0s\"\n"),
            CSV,
            Some(11),
            vec!["`idle-timeout` in `[limits]`", "more than zero"],
        ),
        (
            format!("{BASE}\n[limits]\nparallel-accounts = 0\n"),
            CSV,
            Some(11),
            vec!["`parallel-accounts` in `[limits]`"],
        ),
        (
            format!(
                "{BASE}\n[limits]\nparallel-accounts = 2\naccount-bytes-per-day = \"500 MBs\"\n"
            ),
            CSV,
            Some(12),
            vec!["`account-bytes-per-day` in `[limits]`", "unknown unit"],
        ),
        (
            format!("{BASE}\n[limits]\nbytes-per-second = 0\n"),
            CSV,
            Some(11),
            vec!["`bytes-per-second` in `[limits]`", "more than zero"],
        ),
        (
            format!("{BASE}\n[limits]\naccount-messages-per-second = -2\n"),
            CSV,
            Some(11),
            vec![
                "`account-messages-per-second` in `[limits]`",
                "more than zero",
            ],
        ),
        (
            format!("{BASE}\n[limits]\naccount-messages-per-second = \"fast\"\n"),
            CSV,
            Some(11),
            vec![
                "`account-messages-per-second` in `[limits]`",
                "a number more than zero",
            ],
        ),
        (
            format!("{BASE}\n[limits]\naccount-bytes-per-day = \"500MB\"\nbytes-per-secnd = 5\n"),
            CSV,
            Some(12),
            vec!["bytes-per-secnd"],
        ),
        (
            format!("{BASE}\n[messages]\nmax-size = \"50MB\"\n"),
            CSV,
            Some(11),
            vec!["`max-size` in `[messages]`", "binary units"],
        ),
        (
            format!("{BASE}\n[messages]\nflags-on-existing = \"replace\"\n"),
            CSV,
            Some(11),
            vec![
                "`flags-on-existing` in `[messages]`",
                "expected `keep` or `add`",
            ],
        ),
        (
            format!("{BASE}\n[folders]\nexclude = [\n  \"a\",\n  5,\n]\n"),
            CSV,
            Some(13),
            vec!["in `[folders]`", "invalid type"],
        ),
        (
            format!("{BASE}\n[folders]\nexclude = [\"\"]\n"),
            CSV,
            Some(11),
            vec!["`exclude` in `[folders]` contains an empty pattern"],
        ),
        (
            format!("{BASE}\n[folders.rename]\n\"Old\" = \"\"\n"),
            CSV,
            Some(11),
            vec!["`[folders.rename]`", "must not be empty"],
        ),
        (
            format!("{BASE}\n[limits\n"),
            CSV,
            Some(10),
            vec!["invalid TOML"],
        ),
        (
            with_source("port = 993\nport = 994"),
            CSV,
            Some(4),
            vec!["invalid TOML", "duplicate"],
        ),
        (
            with_source("security = \"plain\""),
            CSV,
            Some(3),
            vec![
                "`security = \"plain\"` in `[source]` would send passwords unencrypted to \
                 `imap.old.example`",
                "hint:",
                "allow-plaintext-auth = true",
            ],
        ),
        (
            with_source("auth = \"oauthbearer\""),
            CSV,
            Some(3),
            vec![
                "`auth = \"oauthbearer\"` in `[source]` needs `token-command`",
                "hint:",
            ],
        ),
        (
            with_source("token-command = \" \"\nauth = \"xoauth2\""),
            CSV,
            Some(3),
            vec!["`token-command` in `[source]` is empty"],
        ),
        (
            BASE.replace("\"imap.old.example\"", "\"imaps://imap.old.example\""),
            CSV,
            Some(2),
            vec!["`host` in `[source]` must be a bare server name", "hint:"],
        ),
        (
            BASE.replace("\"imap.old.example\"", "\"imap.old.example:993\""),
            CSV,
            Some(2),
            vec!["`host` in `[source]` must not contain a port"],
        ),
        (
            BASE.replace("\"imap.old.example\"", "\"\""),
            CSV,
            Some(2),
            vec!["`host` in `[source]` is empty"],
        ),
        (
            with_source("ca-file = \"no-such-ca.pem\""),
            CSV,
            Some(3),
            vec!["`ca-file` in `[source]`", "no-such-ca.pem` does not exist"],
        ),
        (
            format!("{BASE}\n[destination.admin]\nuser = \"admin\"\n"),
            CSV,
            Some(10),
            vec![
                "`[destination.admin]` needs one of `password-env`, `password-file`, \
                  `password-command`",
            ],
        ),
        (
            format!(
                "{BASE}\n[destination.admin]\nuser = \"admin\"\npassword-env = \"X\"\n\
                 password-command = \"echo pw-SECRET\"\n"
            ),
            CSV,
            Some(10),
            vec!["has `password-env` and `password-command`: keep exactly one"],
        ),
        (
            format!("{BASE}\n[destination.admin]\npassword-env = \"X\"\n"),
            CSV,
            Some(10),
            vec!["missing field `user` in `[destination.admin]`"],
        ),
        (
            format!(
                "{BASE}\n[source.admin]\nuser = \"admin\"\n\
                 password-env = \"MAILSHIFT_TEST_UNSET_ADMIN_PASSWORD\"\n"
            ),
            CSV,
            Some(10),
            vec![
                "`[source.admin]` `password-env`: the environment variable \
                 `MAILSHIFT_TEST_UNSET_ADMIN_PASSWORD` is not set",
                "hint: export",
            ],
        ),
        (
            format!(
                "{BASE}\n[source.admin]\nuser = \"admin\"\n\
                 password-command = \"echo pw-SECRET; exit 1\"\n"
            ),
            CSV,
            Some(10),
            vec!["`[source.admin]` `password-command` failed"],
        ),
        (
            BASE.replace("\"accounts.csv\"", "\"missing.csv\""),
            CSV,
            Some(8),
            vec!["`csv` in `[accounts]`: cannot read", "missing.csv"],
        ),
    ];
    for (config, csv, line, fragments) in table {
        let e = try_load(&config, csv, &Selection::default())
            .map(|_| ())
            .unwrap_err();
        let prefix = match line {
            Some(l) => format!("migration.toml` line {l}: "),
            None => "migration.toml`: ".to_string(),
        };
        assert!(
            e.contains(&prefix),
            "want {prefix:?}\nconfig:\n{config}\nerror: {e}"
        );
        for f in &fragments {
            assert!(e.contains(f), "want {f:?}\nconfig:\n{config}\nerror: {e}");
        }
        assert!(!e.contains(SECRET), "secret leaked: {e}");
    }
    // The CSV errors come through with the CSV's name.
    let e = try_load(BASE, m365, &Selection::default())
        .map(|_| ())
        .unwrap_err();
    assert!(
        e.contains("accounts.csv` line 1: the Microsoft 365 format"),
        "{e}"
    );
    assert!(e.contains("hint: configure `[destination.admin]`"), "{e}");
    assert!(!e.contains(SECRET), "{e}");
}

#[test]
fn csv_without_header_is_not_echoed() {
    let e = try_load(
        BASE,
        "alice@old.example,pw-SECRET,alice@new.example,pw-SECRET\n",
        &Selection::default(),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(e.contains("accounts.csv` line 1: the header row is missing or unknown\nhint: the first line must be `source_user,source_password,destination_user,destination_password`"), "{e}");
    assert!(!e.contains(SECRET) && !e.contains("alice"), "{e}");
}

#[test]
fn plain_is_fine_to_loopback_and_warned_when_allowed() {
    for host in [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "localhost",
        "LocalHost",
    ] {
        let config = BASE.replace(
            "host = \"imap.old.example\"",
            &format!("host = \"{host}\"\nsecurity = \"plain\""),
        );
        let s = load_ok(&config, CSV);
        assert_eq!(s.source.security, Security::Plain, "{host}");
        assert!(s.warnings.is_empty(), "{host}: {:?}", s.warnings);
    }
    for host in ["128.0.0.1", "10.0.0.1", "localhost.example", "::2"] {
        let config = BASE.replace(
            "host = \"imap.old.example\"",
            &format!("host = \"{host}\"\nsecurity = \"plain\""),
        );
        assert!(
            try_load(&config, CSV, &Selection::default()).is_err(),
            "{host}"
        );
    }
    let s = load_ok(
        &with_source("security = \"plain\"\nallow-plaintext-auth = true"),
        CSV,
    );
    assert!(s.source.allow_plaintext_auth);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(
        s.warnings[0].contains("migration.toml` line 3:"),
        "{:?}",
        s.warnings
    );
    assert!(s.warnings[0].contains("unencrypted"), "{:?}", s.warnings);
}

#[test]
fn accept_invalid_certs_is_warned_every_time() {
    let s = load_ok(&with_source("accept-invalid-certs = true"), CSV);
    assert!(s.source.accept_invalid_certs);
    assert_eq!(s.warnings.len(), 1);
    let w = &s.warnings[0];
    assert!(
        w.contains("line 3:") && w.contains("accept-invalid-certs") && w.contains("[source]"),
        "{w}"
    );
    let s = load_ok(&with_source("accept-invalid-certs = false"), CSV);
    assert!(!s.source.accept_invalid_certs && s.warnings.is_empty());
    // A token-command that is never used is worth a warning, not an error.
    let s = load_ok(&with_source("token-command = \"get-token\""), CSV);
    assert!(s.warnings[0].contains("`token-command` in `[source]` is ignored"));
}

#[test]
fn ca_file_is_relative_to_the_config() {
    let (dir, path) = files(&with_source("ca-file = \"ca.pem\""), CSV);
    std::fs::write(
        dir.path().join("sub/ca.pem"),
        "-----BEGIN CERTIFICATE-----\n",
    )
    .unwrap();
    let s = load(&path, &Selection::default()).unwrap();
    assert_eq!(s.source.ca_file, Some(dir.path().join("sub/ca.pem")));
}

#[test]
fn admin_passwords_from_env_file_and_command_never_show() {
    // Unique name: tests run in parallel threads of one process.
    std::env::set_var("MAILSHIFT_TEST_ADMIN_PW_ENV", "pw-SECRET-env");
    let csv = "source_user,source_password,destination_user,destination_password\n\
               a@x,,b@y,\n";
    let config = format!(
        "{BASE}\n[source.admin]\nuser = \" srcadmin \"\n\
         password-env = \"MAILSHIFT_TEST_ADMIN_PW_ENV\"\n\n\
         [destination.admin]\nuser = \"dstadmin\"\npassword-file = \"admin.pw\"\n"
    );
    let (dir, path) = files(&config, csv);
    std::fs::write(dir.path().join("sub/admin.pw"), "pw-SECRET-file\n").unwrap();
    let s = load(&path, &Selection::default()).unwrap();
    let src = s.source.admin.as_ref().unwrap();
    assert_eq!(src.user, "srcadmin");
    assert_eq!(src.password.expose_secret(), "pw-SECRET-env");
    let dst = s.destination.admin.as_ref().unwrap();
    assert_eq!(dst.password.expose_secret(), "pw-SECRET-file");
    assert!(s.accounts[0].source_password.is_none());
    assert!(s.accounts[0].destination_password.is_none());

    let config = format!(
        "{BASE}\n[destination.admin]\nuser = \"dstadmin\"\n\
         password-command = \"printf 'pw-SECRET-cmd\\\\n'\"\n"
    );
    let s = load_ok(&config, CSV);
    let dst = s.destination.admin.as_ref().unwrap();
    assert_eq!(dst.password.expose_secret(), "pw-SECRET-cmd");
    let dbg = format!("{s:?}");
    assert!(dbg.contains("alice@old.example"), "{dbg}");
    assert!(!dbg.contains(SECRET), "Debug leaks a secret: {dbg}");
}

#[test]
fn microsoft_365_csv_with_destination_admin() {
    let config =
        format!("{BASE}\n[destination.admin]\nuser = \"admin\"\npassword-command = \"echo x\"\n");
    let s = load_ok(
        &config,
        "EmailAddress,UserName,Password\nnew@b.example,old@a.example,pw-SECRET\n",
    );
    assert_eq!(s.accounts[0].source_user, "old@a.example");
    assert_eq!(s.accounts[0].destination_user, "new@b.example");
}

#[test]
fn selection_by_account_and_shard() {
    let sel = |accounts: &[&str], shard: Option<&str>| Selection {
        accounts: accounts.iter().map(|s| s.to_string()).collect(),
        shard: shard.map(|s| s.parse::<Shard>().unwrap()),
    };
    // Case-insensitive, CSV order kept whatever the flag order.
    let s = try_load(
        BASE,
        CSV,
        &sel(&["CAROL@old.example", "bob@OLD.example"], None),
    )
    .unwrap();
    assert_eq!(users(&s), ["Bob@old.example", "carol@old.example"]);

    let e = try_load(
        BASE,
        CSV,
        &sel(&["alice@old.example", "zed@x", "yan@x"], None),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        e.contains("`zed@x`, `yan@x`") && e.contains("accounts.csv"),
        "{e}"
    );
    assert!(!e.contains("alice") && !e.contains(SECRET), "{e}");

    // Shards partition the accounts and keep CSV order.
    let mut seen: Vec<String> = Vec::new();
    for k in 0..3 {
        let s = try_load(BASE, CSV, &sel(&[], Some(&format!("{k}/3")))).unwrap();
        for a in &s.accounts {
            assert_eq!(shard_of(&a.source_user, 3), k);
        }
        seen.extend(users(&s).iter().map(|u| u.to_string()));
    }
    seen.sort();
    assert_eq!(
        seen,
        ["Bob@old.example", "alice@old.example", "carol@old.example"]
    );

    // --account then --shard; an empty result is not an error.
    let k = shard_of("alice@old.example", 2);
    let other = format!("{}/2", 1 - k);
    let s = try_load(BASE, CSV, &sel(&["alice@old.example"], Some(&other))).unwrap();
    assert!(s.accounts.is_empty());
}

#[test]
fn digest_covers_config_and_users_not_passwords_or_selection() {
    let digest = |config: &str, csv: &str, selection: &Selection| {
        try_load(config, csv, selection).unwrap().config_digest
    };
    let base = digest(BASE, CSV, &Selection::default());
    assert_eq!(base.len(), 64);
    assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(base, digest(BASE, CSV, &Selection::default()));
    let picked = Selection {
        accounts: vec!["alice@old.example".into()],
        shard: None,
    };
    assert_eq!(
        base,
        digest(BASE, CSV, &picked),
        "selection must not matter"
    );
    assert_eq!(
        base,
        digest(
            BASE,
            &CSV.replace("pw-SECRET-1", "pw-SECRET-changed"),
            &picked
        ),
        "passwords must not matter"
    );
    assert_eq!(
        base,
        digest(&format!("# a comment\n{BASE}\n\n# another\n"), CSV, &picked),
        "comments and blank lines must not matter"
    );
    assert_ne!(
        base,
        digest(
            &format!("{BASE}\n[messages]\ncopy-deleted = true\n"),
            CSV,
            &picked
        ),
        "a setting must matter"
    );
    assert_ne!(
        base,
        digest(
            BASE,
            &CSV.replace("alice@new.example", "alice2@new.example"),
            &picked
        )
    );
}

#[test]
fn the_shipped_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("migration.toml.example");
    let s = load(&path, &Selection::default()).unwrap();
    assert_eq!(s.source.host, "imap.old.example");
    assert_eq!(s.destination.host, "imap.new.example");
    assert_eq!(s.accounts.len(), 2);
    assert_eq!(s.accounts[1].destination_user, s.accounts[1].source_user);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // The example shows the defaults: it must load exactly like a minimal file.
    let minimal = load_ok(BASE, CSV);
    assert_eq!(format!("{:?}", s.limits), format!("{:?}", minimal.limits));
    assert_eq!(format!("{:?}", s.folders), format!("{:?}", minimal.folders));
    assert_eq!(
        format!("{:?}", s.messages),
        format!("{:?}", minimal.messages)
    );
    assert_eq!(s.source.max_connections, minimal.source.max_connections);
    assert_eq!(s.state_dir, path.parent().unwrap().join(".mailshift"));
    assert_eq!(format!("{:?}", s.cutover), format!("{:?}", minimal.cutover));
}

#[test]
fn line_and_context_helpers() {
    let text = "a = 1\n[source]\nhost = \"x\"\n\n[source.admin]\nuser = \"u\"\n";
    assert_eq!(line_of(text, 0), 1);
    assert_eq!(line_of(text, 6), 2);
    assert_eq!(line_of(text, usize::MAX), 7);
    assert_eq!(table_context(text, 1), None);
    assert_eq!(table_context(text, 2), None);
    assert_eq!(table_context(text, 3).as_deref(), Some("source"));
    assert_eq!(table_context(text, 5).as_deref(), Some("source"));
    assert_eq!(table_context(text, 6).as_deref(), Some("source.admin"));
    assert_eq!(key_on_line(text, 3).as_deref(), Some("host"));
    assert_eq!(key_on_line(text, 2), None);
}

#[test]
fn state_and_cutover_keys() {
    let s = load_ok(BASE, CSV);
    assert!(s.state_dir.ends_with("sub/.mailshift"), "{:?}", s.state_dir);
    assert!(s.cutover.new_mx.is_empty() && s.cutover.nameservers.is_empty());

    let config = format!(
        "{BASE}\n[state]\ndir = \"../state\"\n\n[cutover]\nnew-mx = [\"MX1.New.Example.\", \
         \"mx2.new.example\", \"mx1.new.example\"]\nnameservers = [\"127.0.0.1:5353\", \
         \"192.0.2.53\", \"[::1]:53\"]\n"
    );
    let s = load_ok(&config, CSV);
    assert!(s.state_dir.ends_with("sub/../state"), "{:?}", s.state_dir);
    assert_eq!(s.cutover.new_mx, ["mx1.new.example", "mx2.new.example"]);
    let ns: Vec<String> = s
        .cutover
        .nameservers
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(ns, ["127.0.0.1:5353", "192.0.2.53:53", "[::1]:53"]);
}

#[test]
fn bad_cutover_and_state_keys_name_the_line_and_key() {
    let cases = [
        (
            "[cutover]\nnameservers = [\"dns.example\"]\n",
            "line 11: `nameservers` in `[cutover]`: `dns.example` is not an IP address with an optional port",
        ),
        (
            "[cutover]\nnew-mx = [\"smtp://mx.example\"]\n",
            "line 11: `new-mx` in `[cutover]`: `smtp://mx.example` is not a host name",
        ),
        (
            "[cutover]\nnew-mx = [\"\"]\n",
            "line 11: `new-mx` in `[cutover]`: `` is not a host name",
        ),
        (
            "[cutover]\nnew_mx = [\"mx.example\"]\n",
            "line 11: unknown field `new_mx` in `[cutover]`",
        ),
        (
            "[state]\ndir = \"\"\n",
            "line 11: `dir` in `[state]` is empty",
        ),
        (
            "[state]\npath = \"x\"\n",
            "line 11: unknown field `path` in `[state]`",
        ),
    ];
    for (extra, want) in cases {
        let e = try_load(&format!("{BASE}\n{extra}"), CSV, &Selection::default()).unwrap_err();
        assert!(e.contains(want), "{extra:?}:\n{e}");
    }
}

#[test]
fn the_oauth_examples_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/oauth");
    for (file, host, needle) in [
        (
            "microsoft365.toml",
            "outlook.office365.com",
            "scope=https://outlook.office365.com/.default",
        ),
        ("google-workspace.toml", "imap.gmail.com", "{user}"),
    ] {
        let s = load(&dir.join(file), &Selection::default())
            .unwrap_or_else(|e| panic!("examples/oauth/{file}: {e}"));
        assert_eq!(s.destination.host, host, "{file}");
        assert_eq!(s.destination.port, 993, "{file}");
        assert_eq!(s.destination.auth, AuthMethod::Xoauth2, "{file}");
        let command = s.destination.token_command.as_deref().unwrap();
        assert!(command.contains(needle), "{file}: {command}");
        if host == "imap.gmail.com" {
            assert_eq!(s.limits.pacing.account_bytes_per_day, Some(500_000_000));
        }
        assert!(s.warnings.is_empty(), "{file}: {:?}", s.warnings);
        // The token replaces the destination passwords: the CSV has none.
        assert_eq!(s.accounts.len(), 2, "{file}");
        assert!(
            s.accounts
                .iter()
                .all(|a| a.destination_password.is_none() && a.source_password.is_some()),
            "{file}"
        );
    }
}

#[test]
fn a_token_side_needs_no_passwords_in_the_csv_a_password_side_does() {
    let config = BASE.replace(
        "host = \"imap.new.example\"",
        "host = \"imap.new.example\"\nauth = \"oauthbearer\"\ntoken-command = \"get-token {user}\"",
    );
    let csv = "source_user,source_password,destination_user,destination_password\n\
               alice@old.example,pw-SECRET-1,alice@new.example,\n";
    let s = load_ok(&config, csv);
    assert!(s.accounts[0].destination_password.is_none());
    let csv = "source_user,source_password,destination_user,destination_password\n\
               alice@old.example,,alice@new.example,\n";
    let e = try_load(&config, csv, &Selection::default()).unwrap_err();
    assert!(e.contains("`source_password` is empty"), "{e}");
}

#[test]
fn pacing_caps() {
    let s = load_ok(BASE, CSV);
    assert_eq!(s.limits.pacing, PacingLimits::default());
    let config = format!(
        "{BASE}\n[limits]\naccount-bytes-per-day = \"500MB\"\naccount-messages-per-second = 2.5\n\
         bytes-per-second = \"10MiB\"\n"
    );
    let s = load_ok(&config, CSV);
    assert_eq!(
        s.limits.pacing,
        PacingLimits {
            account_bytes_per_day: Some(500_000_000),
            account_messages_per_second: Some(2.5),
            bytes_per_second: Some(10 << 20),
        }
    );
    let s = load_ok(
        &format!("{BASE}\n[limits]\naccount-messages-per-second = 3\n"),
        CSV,
    );
    assert_eq!(s.limits.pacing.account_messages_per_second, Some(3.0));
}
