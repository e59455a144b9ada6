//! The README's "try it for real" command (`./scripts/demo`): starts two private Dovecot
//! servers on 127.0.0.1 — an old `INBOX.`-prefixed one (Courier/Cyrus style) with sample
//! mail and a modern one that already holds part of it — writes a `migration.toml` and an
//! accounts CSV, and runs mailshift against them, printing each command first.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;

use support::{
    Direction, DnsServer, Dovecot, Fault, FaultProxy, Layout, MessageBuilder, NewMessage, RawImap,
};

fn message(i: usize, folder: &str, seen: bool) -> NewMessage {
    let body = MessageBuilder::new()
        .from(&format!("sender{i}@old.example"))
        .to("alice@old.example")
        .subject(&format!("{folder} message {i}"))
        .date(&format!(
            "Mon, {} Mar 2021 10:{:02}:00 +0100",
            1 + i % 28,
            i % 60
        ))
        .message_id(Some(&format!("<demo-{folder}-{i}@old.example>")))
        .body(format!("Hello from message {i} in {folder}.\r\n").repeat(1 + i % 20))
        .build();
    let mut m =
        NewMessage::new(body).internal_date(&format!("{:02}-Mar-2021 10:00:00 +0100", 1 + i % 28));
    if seen {
        m = m.flags(&["\\Seen"]);
    }
    m
}

fn fill(source: &Dovecot, destination: &Dovecot, user: &str, password: &str, messages: usize) {
    let mut src = RawImap::login(source.port(), user, password);
    let mut dst = RawImap::login(destination.port(), user, password);
    for folder in [
        "INBOX.Projects",
        "INBOX.Projects.2024",
        "INBOX.Entw&APw-rfe",
    ] {
        src.create(folder);
        src.subscribe(folder);
    }
    let inbox: Vec<NewMessage> = (0..messages)
        .map(|i| message(i, "INBOX", i % 3 != 0))
        .collect();
    src.append_many("INBOX", &inbox);
    // The destination already has the first half of the inbox (an earlier copy).
    dst.append_many("INBOX", &inbox[..messages / 2]);
    let sent: Vec<NewMessage> = (0..messages / 4)
        .map(|i| message(i, "Sent", true))
        .collect();
    src.append_many("INBOX.Sent Items", &sent);
    let projects: Vec<NewMessage> = (0..messages / 5)
        .map(|i| message(i, "Projects", false))
        .collect();
    src.append_many("INBOX.Projects.2024", &projects);
    src.append_many("INBOX.Entw&APw-rfe", &[message(1, "Drafts", false)]);
}

fn run(dir: &Path, args: &[&str]) -> u8 {
    println!("\n$ mailshift {}", args.join(" "));
    let mut argv = vec!["mailshift", "-c"];
    let config = dir.join("migration.toml");
    let config = config.to_str().expect("utf-8 temp path");
    argv.push(config);
    argv.extend_from_slice(args);
    let code = mailshift::run(argv);
    // ExitCode has no accessor; report it the way a shell would.
    let status = if code == std::process::ExitCode::SUCCESS {
        0
    } else if code == std::process::ExitCode::from(2) {
        2
    } else {
        1
    };
    println!(
        "(exit status {})",
        if status != 1 {
            status.to_string()
        } else {
            format!("{code:?}")
        }
    );
    status
}

fn main() {
    println!("Starting two private Dovecot servers on 127.0.0.1 ...");
    let source = Dovecot::builder().layout(Layout::Classic).start();
    let destination = Dovecot::builder().layout(Layout::Modern).start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut csv =
        String::from("source_user,source_password,destination_user,destination_password\n");
    let mut logins = Vec::new();
    for (name, count) in [("alice", 400), ("bob", 120)] {
        // E-mail addresses as user names: `cutover` checks the MX records of their domain.
        let user = format!("{}@new.example", support::unique_user(name));
        let password = format!("{name}-demo-pw");
        source.add_user(&user, &password);
        destination.add_user(&user, &password);
        fill(&source, &destination, &user, &password, count);
        csv.push_str(&format!("{user},{password},{user},{password}\n"));
        logins.push((user, password));
    }
    std::fs::write(dir.path().join("accounts.csv"), csv).expect("write csv");
    // A local DNS server for `cutover`: new.example's MX still points at the old provider,
    // with a TTL of 5 seconds (a real one would be lowered to 15 minutes or less).
    let dns = DnsServer::start();
    dns.set_mx("new.example", &[(10, "mx.old.example")], 5);
    // The old provider is overloaded: during the first copy its connections are cut after
    // 16–64 KiB, the way a flaky link or a busy old server drops them (at most 8 cuts).
    // mailshift reconnects and goes on; nothing is lost or doubled.
    let flaky = FaultProxy::to(source.port())
        .fault(Fault::cut_randomly(Direction::ServerToClient, 16 << 10, 64 << 10, 7).times(8))
        .start();
    flaky.set_armed(false);
    let config = format!(
        r#"# Demo: an old INBOX.-prefixed server to a modern one, both on loopback.
# The source port is a proxy that cuts the first connections (a flaky old provider).
[source]
host = "127.0.0.1"
port = {}
security = "plain"

[destination]
host = "127.0.0.1"
port = {}
security = "plain"

[accounts]
csv = "accounts.csv"

[cutover]
new-mx = ["mx1.new.example"]
# The demo's own DNS server; leave this out to use the system's.
nameservers = ["{}"]
"#,
        flaky.port(),
        destination.port(),
        dns.address()
    );
    std::fs::write(dir.path().join("migration.toml"), &config).expect("write config");
    println!("\nmigration.toml:\n{config}");
    let mut failed = run(dir.path(), &["check"]) != 0;
    failed |= run(dir.path(), &["plan"]) != 0;
    // Reports go next to the config (a real run would keep them with the state directory).
    let first_pass = dir.path().join("first-pass.json");
    let first_pass = first_pass.to_str().expect("utf-8 temp path");
    let final_pass = dir.path().join("final-pass.json");
    let final_pass = final_pass.to_str().expect("utf-8 temp path");
    println!("\nThe link to the old server turns flaky: connections are cut after 16–64 KiB ...");
    flaky.set_armed(true);
    failed |= run(
        dir.path(),
        &["apply", "--auto-approve", "--report", first_pass],
    ) != 0;
    flaky.set_armed(false);
    println!(
        "(the proxy cut {} source connections during that apply)",
        flaky.fired()
    );
    // Everything is there now: the next plan has nothing to do.
    failed |= run(dir.path(), &["plan", "--detailed-exitcode"]) != 0;

    // The TTL is low: ready to switch (exit 2: waiting for the switch).
    failed |= run(dir.path(), &["cutover"]) != 2;
    println!("\nSwitching the MX of new.example to mx1.new.example (TTL 5 s) ...");
    dns.set_mx("new.example", &[(10, "mx1.new.example")], 5);
    failed |= run(dir.path(), &["cutover"]) != 2;

    // After the MX switch: alice works in the new mailbox (files 5 messages into a folder
    // of her own, deletes 3), and 10 more arrive at the old server before DNS settles.
    let (user, password) = &logins[0];
    println!(
        "\nMeanwhile, on the new server, {user} files 5 INBOX messages into `Filed` and deletes 3;\n10 new messages reach the old server."
    );
    let mut dst = RawImap::login(destination.port(), user, password);
    dst.create("Filed");
    dst.raw_command("SELECT INBOX");
    dst.raw_command("UID MOVE 1:5 Filed");
    dst.raw_command("UID STORE 6:8 +FLAGS.SILENT (\\Deleted)");
    dst.raw_command("UID EXPUNGE 6:8");
    let mut src = RawImap::login(source.port(), user, password);
    let late: Vec<NewMessage> = (1000..1010).map(|i| message(i, "INBOX", false)).collect();
    src.append_many("INBOX", &late);
    // cutover sees them arrive at the old server; the old 5 s TTL runs out meanwhile.
    std::thread::sleep(std::time::Duration::from_secs(6));
    failed |= run(dir.path(), &["cutover"]) != 2;
    // The final pass copies the 10, and leaves what alice did alone.
    failed |= run(dir.path(), &["plan"]) != 0;
    failed |= run(
        dir.path(),
        &["apply", "--auto-approve", "--report", final_pass],
    ) != 0;
    failed |= run(dir.path(), &["plan", "--detailed-exitcode"]) != 0;
    // One fleet view of both passes for the helpdesk: the latest run of each account wins.
    failed |= run(dir.path(), &["report", first_pass, final_pass]) != 0;
    // Switched, propagated, and nothing reached the old server since the final pass.
    failed |= run(dir.path(), &["cutover"]) != 0;
    if failed {
        std::process::exit(1);
    }
}
