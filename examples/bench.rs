//! The performance benchmark of DESIGN.md §7 (`./scripts/bench`): two private Dovecots with
//! their mail on tmpfs (`mail_fsync = never`), a classic `INBOX.`-prefixed source and a
//! modern destination, 5 accounts × 2,017 messages (~295 MB, realistic size mix, several
//! folders, flags and keywords). It runs the RELEASE binary as a child process, exactly as
//! an admin would, and measures per run:
//!
//! 1. a full `apply --auto-approve` (then checks every message arrived),
//! 2. a no-op `plan` right after (must print `No changes.`),
//! 3. a delta pass: +100 messages per account on the source, then `apply --auto-approve`.
//!
//! Wall time is measured here; the tool's own CPU (user+sys) and peak RSS come from GNU
//! `/usr/bin/time` around the child, so the Dovecots' CPU is never counted as the tool's.
//! The Dovecots' CPU is reported separately (from `/proc`), to show where the time goes.
//! Each run starts fresh servers and regenerates the same (seeded) data set.
//!
//! ```text
//! bench --bin target/release/mailshift [--runs N] [--quick] [--accounts N] [--messages N]
//!       [--parallel-accounts N]                           # written to migration.toml
//!       [--csv-rows N]        # instead: a CSV of N rows, `check`/`plan --account` of one
//!       [--huge N]            # instead: one account of N messages written into the maildir
//!       [--big-message MB]    # instead: peak RSS of copying one MB-megabyte message
//!       [--wrap 'perf record -g -o /tmp/full.data --' [--wrap-step full|noop|delta]]
//! ```
//!
//! `--wrap` prefixes one step's tool command (the full copy by default) with a profiler;
//! that step's CPU and RSS then include the wrapper. With `--huge`, `full` is the first
//! plan, `delta` the apply and `noop` the no-op plan.
//!
//! ```text
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Dovecot, Layout, NewMessage, RawImap};

/// Messages appended per account to the source before the delta pass.
const DELTA_PER_ACCOUNT: usize = 100;
/// DESIGN.md §7 targets.
const TARGET_MSGS_PER_S: f64 = 3000.0;
const TARGET_CPU_S: f64 = 1.5;
const TARGET_RSS_MB: f64 = 64.0;
const TARGET_NOOP_S: f64 = 0.5;
const TARGET_DELTA_S: f64 = 0.6;
const GNU_TIME: &str = "/usr/bin/time";
const MBSYNC: &str = "/usr/bin/mbsync";

struct Options {
    bin: PathBuf,
    runs: usize,
    accounts: usize,
    messages: usize,
    wrap: Vec<String>,
    wrap_step: Step,
    parallel_accounts: Option<usize>,
    /// `--csv-rows N`: measure how long loading a big accounts CSV takes instead.
    csv_rows: Option<usize>,
    /// `--huge N`: one account of N messages instead (plan, apply, no-op plan).
    huge: Option<usize>,
    /// `--big-message MB`: the peak RSS of copying one message of MB megabytes instead.
    big_message: Option<usize>,
    /// `--rtt-ms N`: a delaying proxy (N/2 ms each way) in front of both Dovecots.
    rtt_ms: u64,
    /// `--folders N` (≥ 7): INBOX's share spread over N - 6 more folders.
    folders: usize,
    /// `--mbsync`: the same steps with mbsync (isync) through the same proxy.
    mbsync: bool,
}

/// The three measured steps of a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Full,
    Noop,
    Delta,
    /// Not wrappable: the second no-op plan.
    Other,
}

fn parse_args() -> Options {
    let mut o = Options {
        bin: PathBuf::from("target/release/mailshift"),
        runs: 5,
        accounts: 5,
        messages: 2017,
        wrap: Vec::new(),
        wrap_step: Step::Full,
        parallel_accounts: None,
        csv_rows: None,
        huge: None,
        big_message: None,
        rtt_ms: 0,
        folders: FOLDERS.len(),
        mbsync: false,
    };
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: bench [--bin PATH] [--runs N] [--quick] [--accounts N] [--messages N]\n             [--parallel-accounts N] [--wrap CMD [--wrap-step full|noop|delta]]\n             [--csv-rows N] [--huge N] [--big-message MB]\n             [--rtt-ms N] [--folders N] [--mbsync]";
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value\n{usage}")))
        };
        let number = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| die(&format!("`{v}` is not a positive number")))
        };
        match a.as_str() {
            "--bin" => o.bin = PathBuf::from(value("--bin")),
            "--runs" => o.runs = number(value("--runs")),
            "--accounts" => o.accounts = number(value("--accounts")),
            "--messages" => o.messages = number(value("--messages")),
            "--quick" => {
                o.runs = 1;
                o.accounts = 1;
                o.messages = 500;
            }
            "--wrap" => {
                o.wrap = value("--wrap")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            }
            "--wrap-step" => {
                o.wrap_step = match value("--wrap-step").as_str() {
                    "full" => Step::Full,
                    "noop" => Step::Noop,
                    "delta" => Step::Delta,
                    other => die(&format!("unknown step `{other}`\n{usage}")),
                }
            }
            "--parallel-accounts" => {
                o.parallel_accounts = Some(number(value("--parallel-accounts")))
            }
            "--csv-rows" => o.csv_rows = Some(number(value("--csv-rows"))),
            "--huge" => o.huge = Some(number(value("--huge"))),
            "--big-message" => o.big_message = Some(number(value("--big-message"))),
            "--rtt-ms" => {
                let v = value("--rtt-ms");
                o.rtt_ms = v
                    .parse()
                    .unwrap_or_else(|_| die(&format!("`{v}` is not a number of milliseconds")))
            }
            "--folders" => {
                o.folders = number(value("--folders"));
                if o.folders < FOLDERS.len() {
                    die(&format!("--folders must be at least {}", FOLDERS.len()));
                }
            }
            "--mbsync" => o.mbsync = true,
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => die(&format!("unknown argument `{other}`\n{usage}")),
        }
    }
    if !o.bin.is_file() {
        die(&format!(
            "no mailshift binary at `{}`\nhint: cargo build --release, or pass --bin",
            o.bin.display()
        ));
    }
    if o.mbsync && !Path::new(MBSYNC).is_file() {
        die("--mbsync needs mbsync (isync 1.4)\nhint: apt-get install -y isync");
    }
    if !Path::new(GNU_TIME).is_file() {
        die("GNU time is needed to measure the tool's CPU and peak RSS\nhint: apt-get install -y time");
    }
    o
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(1)
}

// ---------------------------------------------------------------------------------------
// The data set

/// splitmix64: a seeded generator, so every run (and every machine) gets the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Source folders (wire names on the classic layout) and their share of an account's mail
/// in percent; `INBOX.Sent Items` carries `\Sent` and maps to the destination's `Sent`.
const FOLDERS: &[(&str, u64)] = &[
    ("INBOX", 55),
    ("INBOX.Sent Items", 20),
    ("INBOX.Archive", 10),
    ("INBOX.Projects", 4),
    ("INBOX.Projects.2024", 6),
    ("INBOX.Drafts", 2),
    ("INBOX.Deleted Items", 3),
];

const WORDS: &[&str] = &[
    "meeting",
    "invoice",
    "project",
    "schedule",
    "report",
    "update",
    "please",
    "review",
    "attached",
    "thanks",
    "regards",
    "budget",
    "quarter",
    "deadline",
    "customer",
    "server",
    "migration",
    "mailbox",
    "tomorrow",
    "agenda",
    "draft",
    "contract",
    "offer",
    "delivery",
    "the",
    "and",
    "for",
    "with",
    "about",
    "next",
    "week",
    "we",
    "you",
    "will",
    "have",
    "is",
];

/// Message size in bytes: mostly 2–20 KB, some 20–100 KB, a few 100 KB–1 MB (average
/// ~29 KB, like the 295 MB / 10,085 messages of DESIGN.md §7).
fn message_size(rng: &mut Rng) -> usize {
    let r = rng.below(1000);
    let size = if r < 25 {
        rng.range(100_000, 1_000_000)
    } else if r < 125 {
        rng.range(20_000, 100_000)
    } else {
        rng.range(2_000, 20_000)
    };
    // Brings the seeded default set (5 × 2,017) to DESIGN.md's 295 MB.
    size * 1013 / 1000
}

fn words(rng: &mut Rng, n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s
}

/// One RFC 5322 message of about `size` bytes (CRLF): plain text, or multipart with a
/// base64 "attachment" when big.
fn build_message(rng: &mut Rng, account: usize, n: usize, size: usize) -> Vec<u8> {
    // Same for every run: each run has fresh servers, so IDs need only differ within one.
    let nonce = "msbench";
    let day = 1 + rng.below(28);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
    ][rng.below(11) as usize];
    let mut m = String::with_capacity(size + 1024);
    let sender = rng.below(200);
    let _ = write!(
        m,
        "Return-Path: <person{sender}@corp{}.example>\r\n\
         Received: from mx{}.old.example (mx.old.example [192.0.2.{}])\r\n\tby imap.old.example with ESMTPS id {nonce}{n:x}\r\n\tfor <user{account}@old.example>; {day:02} {month} 2023 {:02}:{:02}:{:02} +0100\r\n\
         From: \"Person {sender}\" <person{sender}@corp{}.example>\r\n\
         To: user{account} <user{account}@old.example>\r\n",
        sender % 17,
        rng.below(9),
        rng.below(250),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        sender % 17,
    );
    if rng.chance(30) {
        let _ = write!(
            m,
            "Cc: team{}@old.example, boss@old.example\r\n",
            rng.below(5)
        );
    }
    let subject = if rng.chance(10) {
        // An RFC 2047 encoded word ("Grüße ..."), decoded for the identity key.
        format!(
            "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_{}?=",
            words(rng, 3).replace(' ', "_")
        )
    } else {
        let n = 2 + rng.below(6) as usize;
        words(rng, n)
    };
    let _ = write!(
        m,
        "Subject: {}{subject}\r\nDate: {} {day:02} {month} 2023 {:02}:{:02}:{:02} +0100\r\n\
         Message-ID: <{nonce}.{account}.{n}@mail.old.example>\r\nMIME-Version: 1.0\r\n",
        if rng.chance(20) { "Re: " } else { "" },
        ["Mon", "Tue", "Wed", "Thu", "Fri"][rng.below(5) as usize],
        rng.below(24),
        rng.below(60),
        rng.below(60),
    );
    let text_lines = |m: &mut String, rng: &mut Rng, until: usize| {
        while m.len() + 2 < until {
            let n = 6 + rng.below(8) as usize;
            let line = words(rng, n);
            m.push_str(&line);
            m.push_str("\r\n");
        }
    };
    if size > 40_000 {
        let boundary = format!("----=_Part_{nonce}_{n}");
        let _ = write!(
            m,
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        let until = m.len() + 1500;
        text_lines(&mut m, rng, until);
        let _ = write!(
            m,
            "--{boundary}\r\nContent-Type: application/pdf; name=\"doc{n}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"doc{n}.pdf\"\r\n\r\n"
        );
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let end = size.saturating_sub(boundary.len() + 8);
        while m.len() + 78 < end {
            let mut line = [0u8; 76];
            let mut bits = rng.next();
            for (i, b) in line.iter_mut().enumerate() {
                if i % 10 == 0 {
                    bits = rng.next();
                }
                *b = B64[(bits & 63) as usize];
                bits >>= 6;
            }
            m.push_str(std::str::from_utf8(&line).expect("ascii"));
            m.push_str("\r\n");
        }
        let _ = write!(m, "--{boundary}--\r\n");
    } else {
        m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        text_lines(&mut m, rng, size);
    }
    m.into_bytes()
}

fn flags_for(rng: &mut Rng, folder: &str) -> Vec<&'static str> {
    let mut f = Vec::new();
    if folder.contains("Sent") || rng.chance(80) {
        f.push("\\Seen");
    }
    if rng.chance(15) {
        f.push("\\Answered");
    }
    if rng.chance(5) {
        f.push("\\Flagged");
    }
    if folder.ends_with("Drafts") {
        f.push("\\Draft");
    }
    if rng.chance(8) {
        f.push("$Forwarded");
    }
    if rng.chance(6) {
        f.push("$Label1");
    }
    if rng.chance(3) {
        f.push("Project-X");
    }
    f
}

/// One account's messages, grouped by source folder.
struct AccountData {
    folders: Vec<(String, Vec<NewMessage>)>,
}

/// The source folders of an account: the seven of [`FOLDERS`], then `INBOX.Folder NN` up
/// to `n`.
fn folder_names(n: usize) -> Vec<String> {
    let mut names: Vec<String> = FOLDERS.iter().map(|(f, _)| f.to_string()).collect();
    for k in FOLDERS.len()..n {
        names.push(format!("INBOX.Folder {:02}", k - FOLDERS.len() + 1));
    }
    names
}

impl AccountData {
    fn bytes(&self) -> u64 {
        self.folders
            .iter()
            .flat_map(|(_, m)| m.iter())
            .map(|m| m.body.len() as u64)
            .sum()
    }
}

/// Messages `first..first+count` of one account; the folder of message `n` depends on `n`
/// only through the seeded generator, so every run builds the same set.
fn generate(
    account: usize,
    first: usize,
    count: usize,
    delta: bool,
    folder_count: usize,
) -> AccountData {
    let seed = 0x6d61_696c_7368_6966 ^ ((account as u64) << 32);
    let mut rng = Rng(seed ^ first as u64);
    let mut folders: Vec<(String, Vec<NewMessage>)> = folder_names(folder_count)
        .into_iter()
        .map(|f| (f, Vec::new()))
        .collect();
    let extra = folder_count - FOLDERS.len();
    for n in first..first + count {
        let idx = if delta {
            // New mail arrives in INBOX, plus what the user sent meanwhile.
            usize::from(rng.chance(20))
        } else {
            let mut r = rng.below(100);
            let mut i = 0;
            while r >= FOLDERS[i].1 {
                r -= FOLDERS[i].1;
                i += 1;
            }
            // With extra folders, INBOX's share is spread over INBOX and them.
            match n % (extra + 1) {
                k if i == 0 && k > 0 => FOLDERS.len() + k - 1,
                _ => i,
            }
        };
        let size = message_size(&mut rng);
        // The text comes from its own generator, so that how many draws a body takes
        // never shifts the sizes, folders and flags of the messages after it.
        let body = build_message(&mut Rng(!seed ^ n as u64), account, n, size);
        let flags = flags_for(&mut rng, &folders[idx].0);
        let date = format!(
            "{:02}-{}-2023 {:02}:{:02}:{:02} +0100",
            1 + rng.below(28),
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun"][rng.below(6) as usize],
            rng.below(24),
            rng.below(60),
            rng.below(60)
        );
        folders[idx]
            .1
            .push(NewMessage::new(body).flags(&flags).internal_date(&date));
    }
    AccountData { folders }
}

// ---------------------------------------------------------------------------------------
// Servers and accounts

struct Account {
    user: String,
    password: String,
}

struct Setup {
    source: Dovecot,
    destination: Dovecot,
    accounts: Vec<Account>,
    dir: tempfile::TempDir,
    /// Messages and bytes on the source.
    messages: usize,
    bytes: u64,
    /// Kept alive for the run.
    _proxies: (Option<DelayProxy>, Option<DelayProxy>),
}

impl Setup {
    fn start(o: &Options) -> Setup {
        let source = Dovecot::builder()
            .layout(Layout::Classic)
            .mail_on_tmpfs(true)
            .start();
        let destination = Dovecot::builder()
            .layout(Layout::Modern)
            .mail_on_tmpfs(true)
            .start();
        let mut accounts = Vec::new();
        let mut csv =
            String::from("source_user,source_password,destination_user,destination_password\n");
        let mut bytes = 0;
        for a in 0..o.accounts {
            let (user, password) = source.fresh_user(&format!("bench{a}"));
            destination.add_user(&user, &password);
            let mut imap = RawImap::login(source.port(), &user, &password);
            for folder in folder_names(o.folders) {
                let folder = folder.as_str();
                if !matches!(
                    folder,
                    "INBOX" | "INBOX.Sent Items" | "INBOX.Drafts" | "INBOX.Deleted Items"
                ) {
                    imap.create(folder);
                    imap.subscribe(folder);
                }
            }
            let data = generate(a, 0, o.messages, false, o.folders);
            bytes += data.bytes();
            for (folder, msgs) in &data.folders {
                if !msgs.is_empty() {
                    imap.append_many(folder, msgs);
                }
            }
            imap.logout();
            csv.push_str(&format!("{user},{password},{user},{password}\n"));
            if o.mbsync {
                destination.add_user(&mbsync_user(&user), &password);
            }
            accounts.push(Account { user, password });
        }
        let dir = tempfile::Builder::new()
            .prefix("mailshift-bench-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("accounts.csv"), csv).expect("write accounts.csv");
        // Both servers behind a delaying proxy when a round trip time is asked for.
        let (source_proxy, destination_proxy) = if o.rtt_ms > 0 {
            let one_way = Duration::from_micros(o.rtt_ms * 500);
            (
                Some(DelayProxy::start(source.port(), one_way, "src")),
                Some(DelayProxy::start(destination.port(), one_way, "dst")),
            )
        } else {
            (None, None)
        };
        let source_port = source_proxy.as_ref().map_or(source.port(), |p| p.port);
        let destination_port = destination_proxy
            .as_ref()
            .map_or(destination.port(), |p| p.port);
        if o.mbsync {
            write_mbsync_config(dir.path(), &accounts, source_port, destination_port);
        }
        let mut config = format!(
            "# mailshift benchmark (DESIGN.md §7): classic source -> modern destination\n\
             [source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\n\
             [accounts]\ncsv = \"accounts.csv\"\n",
            source_port, destination_port
        );
        if let Some(n) = o.parallel_accounts {
            config.push_str(&format!("\n[limits]\nparallel-accounts = {n}\n"));
        }
        std::fs::write(dir.path().join("migration.toml"), config).expect("write migration.toml");
        Setup {
            source,
            destination,
            accounts,
            dir,
            messages: o.accounts * o.messages,
            bytes,
            _proxies: (source_proxy, destination_proxy),
        }
    }

    fn add_delta(&mut self, o: &Options) -> (usize, u64) {
        let mut bytes = 0;
        for (a, acc) in self.accounts.iter().enumerate() {
            let data = generate(a, o.messages, DELTA_PER_ACCOUNT, true, o.folders);
            bytes += data.bytes();
            let mut imap = RawImap::login(self.source.port(), &acc.user, &acc.password);
            for (folder, msgs) in &data.folders {
                if !msgs.is_empty() {
                    imap.append_many(folder, msgs);
                }
            }
            imap.logout();
        }
        let n = self.accounts.len() * DELTA_PER_ACCOUNT;
        self.messages += n;
        self.bytes += bytes;
        (n, bytes)
    }

    /// Fails the benchmark unless every mbsync destination account holds exactly as many
    /// messages as its source account.
    fn verify_mbsync(&self, what: &str) {
        for acc in &self.accounts {
            let src = count_messages(self.source.port(), acc);
            let mb = Account {
                user: mbsync_user(&acc.user),
                password: acc.password.clone(),
            };
            let dst = count_messages(self.destination.port(), &mb);
            if src != dst {
                die(&format!(
                    "{what}: `{}` has {src} messages on the source but {dst} in mbsync's copy",
                    acc.user
                ));
            }
        }
    }

    /// Fails the benchmark unless every destination account holds exactly as many messages
    /// as its source account (counted with STATUS over every selectable folder).
    fn verify(&self, what: &str) {
        for acc in &self.accounts {
            let src = count_messages(self.source.port(), acc);
            let dst = count_messages(self.destination.port(), acc);
            if src != dst {
                die(&format!(
                    "{what}: `{}` has {src} messages on the source but {dst} on the destination",
                    acc.user
                ));
            }
        }
    }
}

/// Fails the benchmark unless the apply report says exactly `expected` messages were copied
/// (none failed, none pending).
fn check_report(setup: &Setup, expected: usize, what: &str) {
    let path = setup.dir.path().join("report.json");
    let text = std::fs::read_to_string(&path).expect("read the apply report");
    let report: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let sum = |field: &str| -> u64 {
        report["accounts"]
            .as_array()
            .map(|a| a.iter().filter_map(|acc| acc[field].as_u64()).sum())
            .unwrap_or(0)
    };
    let copied = sum("copied");
    let pending = sum("pending");
    if copied != expected as u64 || pending != 0 {
        die(&format!(
            "{what}: the report says {copied} copied and {pending} pending, expected {expected} copied\n{text}"
        ));
    }
}

fn count_messages(port: u16, acc: &Account) -> usize {
    let mut imap = RawImap::login(port, &acc.user, &acc.password);
    let mut total = 0;
    for (attrs, _, name) in imap.list() {
        if attrs.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        }) {
            continue;
        }
        let lines = imap.raw_command(&format!("STATUS {} (MESSAGES)", support::quote(&name)));
        let status = lines
            .iter()
            .find(|l| l.starts_with("* STATUS"))
            .unwrap_or_else(|| die(&format!("no STATUS for `{name}`: {lines:?}")));
        let n = status
            .rsplit_once("MESSAGES ")
            .and_then(|(_, rest)| rest.trim_end_matches(')').trim().parse::<usize>().ok())
            .unwrap_or_else(|| die(&format!("cannot read `{status}`")));
        total += n;
    }
    imap.logout();
    total
}

// ---------------------------------------------------------------------------------------
// Latency: a delaying proxy, and mbsync as the reference

/// A TCP proxy that delays every byte by `one_way` in each direction without limiting
/// throughput (a delay line: each chunk is due `one_way` after it was read), so a round
/// trip through it costs `2 × one_way` more, like a long network path.
struct DelayProxy {
    port: u16,
}

impl DelayProxy {
    fn start(upstream: u16, one_way: Duration, side: &'static str) -> DelayProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the delay proxy");
        let port = listener.local_addr().expect("local address").port();
        std::thread::spawn(move || {
            let mut conn = 0u32;
            for client in listener.incoming() {
                conn += 1;
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let id = format!("{side}{conn}");
                delay_line(client, server, one_way, format!("{id} >"));
                delay_line(s2, c2, one_way, format!("{id} <"));
            }
        });
        DelayProxy { port }
    }
}

/// Where `BENCH_WIRE_TRACE=FILE` has the proxies log every chunk (time since the first
/// chunk, connection, direction, size, first bytes): a round-trip breakdown of a run.
fn wire_trace() -> Option<&'static std::sync::Mutex<(Instant, std::fs::File)>> {
    static TRACE: std::sync::OnceLock<Option<std::sync::Mutex<(Instant, std::fs::File)>>> =
        std::sync::OnceLock::new();
    TRACE
        .get_or_init(|| {
            let path = std::env::var_os("BENCH_WIRE_TRACE")?;
            let file = std::fs::File::create(path).expect("create BENCH_WIRE_TRACE");
            Some(std::sync::Mutex::new((Instant::now(), file)))
        })
        .as_ref()
}

/// A line in the wire trace (when on) saying which step starts.
fn trace_mark(what: &str) {
    use std::io::Write;
    if let Some(trace) = wire_trace() {
        let mut t = trace.lock().unwrap_or_else(|e| e.into_inner());
        let ms = t.0.elapsed().as_secs_f64() * 1000.0;
        let _ = writeln!(t.1, "{ms:9.1} === {what}");
    }
}

/// Copies `from` → `to`, each chunk written `delay` after it was read.
fn delay_line(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    delay: Duration,
    label: String,
) {
    use std::io::{Read, Write};
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(trace) = wire_trace() {
                        let mut t = trace.lock().unwrap_or_else(|e| e.into_inner());
                        let ms = t.0.elapsed().as_secs_f64() * 1000.0;
                        let head: String = String::from_utf8_lossy(&buf[..n.min(60)])
                            .chars()
                            .map(|c| if c.is_control() { '|' } else { c })
                            .collect();
                        let _ = writeln!(t.1, "{ms:9.1} {label} {n:7} {head}");
                    }
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // Dropping `tx` ends the writer once everything due has been written.
    });
    std::thread::spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// The destination account mbsync copies into (beside mailshift's).
fn mbsync_user(user: &str) -> String {
    format!("mb-{user}")
}

/// `mbsyncrc`: per account a channel from the classic source (namespace `INBOX.`) into its
/// own destination account, `Sync Pull` and `Create Near` (mbsync's fastest one-way copy;
/// `Sent` and `Trash` exist only on the destination and would make it fail),
/// state under the bench's temp dir.
fn write_mbsync_config(dir: &Path, accounts: &[Account], source_port: u16, dest_port: u16) {
    let state = dir.join("mbsync-state");
    std::fs::create_dir_all(&state).expect("mbsync state dir");
    let mut rc = String::new();
    for (i, acc) in accounts.iter().enumerate() {
        let _ = write!(
            rc,
            "IMAPAccount src{i}\nHost 127.0.0.1\nPort {source_port}\nUser {}\nPass {}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore src{i}\nAccount src{i}\nPath INBOX.\n\n\
             IMAPAccount dst{i}\nHost 127.0.0.1\nPort {dest_port}\nUser {}\nPass {}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore dst{i}\nAccount dst{i}\n\n\
             Channel ch{i}\nFar :src{i}:\nNear :dst{i}:\nPatterns * !Sent !Trash\nSync Pull\nCreate Near\nSyncState {}/\n\n",
            acc.user,
            acc.password,
            mbsync_user(&acc.user),
            acc.password,
            state.join(format!("ch{i}")).display()
        );
        std::fs::create_dir_all(state.join(format!("ch{i}"))).expect("mbsync state dir");
    }
    std::fs::write(dir.join("mbsyncrc"), rc).expect("write mbsyncrc");
}

// ---------------------------------------------------------------------------------------
// Measuring

/// One run of the tool.
#[derive(Clone, Copy, Default)]
struct Sample {
    wall: f64,
    cpu: f64,
    rss_mb: f64,
    /// CPU used meanwhile by the source and the destination Dovecot (all their processes).
    source_cpu: f64,
    destination_cpu: f64,
    load: f64,
}

struct Outcome {
    sample: Sample,
    stdout: String,
}

fn run_tool(o: &Options, setup: &Setup, args: &[&str], step: Step) -> Outcome {
    let config = setup.dir.path().join("migration.toml");
    let time_file = setup.dir.path().join("time.out");
    let mut cmd = Command::new(GNU_TIME);
    // elapsed, user, sys (seconds), max RSS (KiB)
    cmd.args(["-f", "%e %U %S %M", "-o"]).arg(&time_file);
    if o.wrap_step == step {
        cmd.args(&o.wrap);
    }
    cmd.arg(&o.bin)
        .arg("-c")
        .arg(&config)
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let load = loadavg();
    let src_before = dovecot_cpu(&setup.source);
    let dst_before = dovecot_cpu(&setup.destination);
    trace_mark(&format!("mailshift {}", args.join(" ")));
    let started = Instant::now();
    let out = cmd.output().expect("run mailshift under /usr/bin/time");
    let wall = started.elapsed().as_secs_f64();
    // Dovecot's imap processes exit (and are counted by their master) just after LOGOUT.
    std::thread::sleep(Duration::from_millis(150));
    let source_cpu = dovecot_cpu(&setup.source) - src_before;
    let destination_cpu = dovecot_cpu(&setup.destination) - dst_before;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        die(&format!(
            "`mailshift {}` failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n\
             --- source dovecot.log ---\n{}\n--- destination dovecot.log ---\n{}",
            args.join(" "),
            out.status,
            setup.source.log_tail(),
            setup.destination.log_tail()
        ));
    }
    let times = std::fs::read_to_string(&time_file).expect("read /usr/bin/time output");
    // GNU time may print "Command exited with non-zero status" first; the numbers are last.
    let nums: Vec<f64> = times
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if nums.len() != 4 {
        die(&format!("cannot read /usr/bin/time output: {times:?}"));
    }
    Outcome {
        sample: Sample {
            wall,
            cpu: nums[1] + nums[2],
            rss_mb: nums[3] / 1024.0,
            source_cpu,
            destination_cpu,
            load,
        },
        stdout,
    }
}

/// One mbsync run of every channel (`mbsync -a`), timed like [`run_tool`].
fn run_mbsync(setup: &Setup) -> Sample {
    let time_file = setup.dir.path().join("time.out");
    let load = loadavg();
    let src_before = dovecot_cpu(&setup.source);
    let dst_before = dovecot_cpu(&setup.destination);
    trace_mark("mbsync");
    let started = Instant::now();
    let out = Command::new(GNU_TIME)
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&time_file)
        .arg(MBSYNC)
        .arg("-c")
        .arg(setup.dir.path().join("mbsyncrc"))
        .args(["-a", "-q"])
        .stdin(Stdio::null())
        .output()
        .expect("run mbsync under /usr/bin/time");
    let wall = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(150));
    if !out.status.success() {
        die(&format!(
            "mbsync failed ({})\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let times = std::fs::read_to_string(&time_file).expect("read /usr/bin/time output");
    let nums: Vec<f64> = times
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if nums.len() != 4 {
        die(&format!("cannot read /usr/bin/time output: {times:?}"));
    }
    Sample {
        wall,
        cpu: nums[1] + nums[2],
        rss_mb: nums[3] / 1024.0,
        source_cpu: dovecot_cpu(&setup.source) - src_before,
        destination_cpu: dovecot_cpu(&setup.destination) - dst_before,
        load,
    }
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// CPU seconds used so far by one Dovecot instance: its master (`dovecot -F -c CONF`, with
/// the exited children it reaped) plus its live children (auth, imap-login, imap, ...).
fn dovecot_cpu(dc: &Dovecot) -> f64 {
    // Linux reports /proc times in USER_HZ, 100 on every mainstream architecture.
    const HZ: f64 = 100.0;
    let conf = dc.config_path().to_string_lossy().into_owned();
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state ppid ... utime(14) stime(15) cutime(16) cstime(17).
        let num = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_master =
            String::from_utf8_lossy(&cmdline).contains(&conf) && f.first() != Some(&"Z");
        procs.push((
            pid,
            num(4) as u32,
            is_master,
            num(14) + num(15),
            num(16) + num(17),
        ));
    }
    let Some(master) = procs.iter().find(|p| p.2).map(|p| p.0) else {
        return 0.0;
    };
    procs
        .iter()
        .filter(|p| p.0 == master || p.1 == master)
        .map(|p| p.3 + if p.0 == master { p.4 } else { 0.0 })
        .sum::<f64>()
        / HZ
}

// ---------------------------------------------------------------------------------------
// Reporting

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(v: impl Iterator<Item = f64>) -> Stats {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

fn cell(s: &Stats, decimals: usize) -> String {
    if (s.max - s.min).abs() < f64::EPSILON {
        format!("{:.*}", decimals, s.median)
    } else {
        format!(
            "{:.*} ({:.*}–{:.*})",
            decimals, s.median, decimals, s.min, decimals, s.max
        )
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// `--csv-rows N`: one real account (20 messages) in an accounts CSV of N rows, the real one
/// last; `check --account` and `plan --account` of that account. Loading the CSV used to
/// take time quadratic in its rows (20.8 s of CPU at 40,000): the whole command must now
/// take well under a second (issue 10).
fn csv_bench(o: &Options, rows: usize) {
    let setup = Setup::start(&Options {
        bin: o.bin.clone(),
        runs: o.runs,
        accounts: 1,
        messages: 20,
        wrap: Vec::new(),
        wrap_step: Step::Other,
        parallel_accounts: o.parallel_accounts,
        csv_rows: None,
        huge: None,
        big_message: None,
        rtt_ms: 0,
        folders: FOLDERS.len(),
        mbsync: false,
    });
    let user = &setup.accounts[0].user;
    let password = &setup.accounts[0].password;
    let mut csv = String::with_capacity(rows * 80);
    csv.push_str("source_user,source_password,destination_user,destination_password\n");
    for i in 1..rows {
        let _ = writeln!(
            csv,
            "user{i}@old.example,pw-{i}-secret,user{i}@new.example,\"pw,{i}\""
        );
    }
    let _ = writeln!(csv, "{user},{password},{user},{password}");
    std::fs::write(setup.dir.path().join("accounts.csv"), &csv).expect("write accounts.csv");
    println!(
        "accounts CSV: {rows} rows, {:.1} MB; the selected account is the last row",
        csv.len() as f64 / 1e6
    );
    println!("| command | wall | tool CPU | peak RSS | target | |");
    println!("|---|---|---|---|---|---|");
    for args in [["check", "--account", user], ["plan", "--account", user]] {
        let mut samples = Vec::new();
        for _ in 0..o.runs {
            samples.push(run_tool(o, &setup, &args, Step::Other).sample);
        }
        let w = stats(samples.iter().map(|s| s.wall));
        let c = stats(samples.iter().map(|s| s.cpu));
        let r = stats(samples.iter().map(|s| s.rss_mb));
        println!(
            "| `{} --account` | {} s | {} s | {} MB | < 1 s | {} |",
            args[0],
            cell(&w, 2),
            cell(&c, 2),
            cell(&r, 1),
            verdict(w.median < 1.0)
        );
    }
}

/// A modern-layout Dovecot with mail on tmpfs and room for huge work: Dovecot's own default
/// (256 MB per imap process) is too small for the maildir index of 500,000 messages (it dies
/// with `Out of memory` while syncing the uidlist) and for a 150 MB literal.
fn roomy_dovecot() -> Dovecot {
    Dovecot::builder()
        .layout(Layout::Modern)
        .mail_on_tmpfs(true)
        .extra_config("service imap {\n  vsz_limit = 2G\n}")
        .start()
}

/// `--huge N`: one account of N small messages (Microsoft 365's cap is 500,000), written
/// straight into the source Dovecot's maildir (not by APPEND, which would take long), then
/// `plan`, `plan --out FILE`, `apply FILE --auto-approve` (the saved plan loaded, as a
/// plan-only Job followed by an apply would) and a no-op `plan` of it, each with its wall
/// time, CPU and peak RSS. Issue 10's targets: plan ≤ 200 MB and ≤ 60 s, no-op plan ≤ 30 s.
fn huge_bench(o: &Options, n: usize) {
    use std::os::unix::fs::MetadataExt;
    let t = Instant::now();
    let source = roomy_dovecot();
    let destination = roomy_dovecot();
    let (user, password) = source.fresh_user("huge");
    destination.add_user(&user, &password);
    let message = |i: usize| -> Vec<u8> {
        format!(
            "From: Sender {s} <sender{s}@old.example>\r\nTo: {user}\r\n\
             Subject: bulk message {i}\r\nDate: Mon, 1 Jan 2024 {h:02}:{m:02}:{sec:02} +0000\r\n\
             Message-ID: <{i}.huge@bench.example>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain\r\n\r\nBody of message {i}.\r\n",
            s = i % 997,
            h = (i / 3600) % 24,
            m = (i / 60) % 60,
            sec = i % 60
        )
        .into_bytes()
    };
    // One message by APPEND creates the mailbox and shows where INBOX's files live.
    let mut imap = RawImap::login(source.port(), &user, &password);
    imap.append_many("INBOX", &[NewMessage::new(message(0))]);
    imap.logout();
    fn find_file(dir: &Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if let Some(f) = find_file(&path) {
                    return Some(f);
                }
            } else if path
                .parent()
                .is_some_and(|p| p.ends_with("cur") || p.ends_with("new"))
            {
                return Some(path);
            }
        }
        None
    }
    let first = find_file(&source.mail_root().join(&user))
        .unwrap_or_else(|| die("cannot find the appended message in the source maildir"));
    // Seen messages go into `cur` (an APPEND without flags lands in `new`).
    let cur = first.parent().unwrap().with_file_name("cur");
    let meta = std::fs::metadata(&first).expect("stat the first message");
    let mut bytes = meta.len();
    for i in 1..n {
        let body = message(i);
        bytes += body.len() as u64;
        let path = cur.join(format!(
            "1700000000.M{i}P1.bench,S={},W={}:2,S",
            body.len(),
            body.len()
        ));
        std::fs::write(&path, &body).expect("write a message file");
        std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).expect("chown");
    }
    println!(
        "huge: {n} messages ({:.1} MB) in the source INBOX after {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::Builder::new()
        .prefix("mailshift-bench-huge-")
        .tempdir()
        .expect("temp dir");
    std::fs::write(
        dir.path().join("accounts.csv"),
        format!("source_user,source_password,destination_user,destination_password\n{user},{password},{user},{password}\n"),
    )
    .expect("write accounts.csv");
    std::fs::write(
        dir.path().join("migration.toml"),
        format!(
            "[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\n\
             [accounts]\ncsv = \"accounts.csv\"\n",
            source.port(),
            destination.port()
        ),
    )
    .expect("write migration.toml");
    let setup = Setup {
        source,
        destination,
        accounts: vec![Account { user, password }],
        dir,
        messages: n,
        bytes,
        _proxies: (None, None),
    };
    let report = setup.dir.path().join("report.json");
    let report = report.to_str().expect("utf-8 temp path");
    println!("| step | wall | tool CPU | peak RSS | Dovecot CPU src / dst | target |");
    println!("|---|---|---|---|---|---|");
    // `--wrap-step full` wraps the first plan, `delta` the apply, `noop` the no-op plan.
    let planfile = setup.dir.path().join("plan.json");
    let planfile = planfile.to_str().expect("utf-8 temp path");
    let steps: [(&str, &[&str], &str, Step); 4] = [
        (
            "plan (first, cold server index)",
            &["plan"],
            "≤ 200 MB, ≤ 60 s",
            Step::Full,
        ),
        (
            "plan --out FILE",
            &["plan", "--out", planfile],
            "",
            Step::Other,
        ),
        (
            "apply FILE --auto-approve",
            &["apply", planfile, "--auto-approve", "--report", report],
            "",
            Step::Delta,
        ),
        ("no-op plan", &["plan"], "≤ 30 s", Step::Noop),
    ];
    for (label, args, target, step) in steps {
        let out = run_tool(o, &setup, args, step);
        let s = out.sample;
        println!(
            "| {label} | {:.1} s | {:.1} s | {:.1} MB | {:.1} s / {:.1} s | {target} |",
            s.wall, s.cpu, s.rss_mb, s.source_cpu, s.destination_cpu
        );
        if args[0] == "apply" {
            setup.verify("huge apply");
            check_report(&setup, n, "huge apply");
        }
        if label.starts_with("no-op") {
            let last = out.stdout.lines().last().unwrap_or("");
            if !last.starts_with("No changes.") {
                die(&format!("the no-op plan is not empty: `{last}`"));
            }
        }
    }
}

/// `--big-message MB`: the peak RSS of copying one message of MB megabytes (Exchange
/// Online's largest is 150 MB), above the baseline of the same account without it. Three
/// accounts with the same 100 small messages in INBOX: `base` (only those), `big` (plus the
/// big message, copied with the default `stream-above`: read and appended in pieces) and
/// `whole` (the same, with `stream-above` above its size: held whole, as before issue 10
/// item 6, for comparison). Each is applied alone (`--account`), then the big message is
/// read back from the destination and compared byte for byte. Target: ≤ 64 MB above the
/// baseline.
fn big_message_bench(o: &Options, mb: usize) {
    let t = Instant::now();
    let source = roomy_dovecot();
    let destination = roomy_dovecot();
    // Numbered lines: a piece lost, doubled or out of order shows in the comparison.
    let size = mb * 1_000_000;
    let mut big = String::with_capacity(size + 1024);
    big.push_str(
        "From: Big Sender <big@old.example>\r\nTo: someone@old.example\r\n\
         Subject: a big attachment\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         Message-ID: <big-message@bench.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain\r\n\r\n",
    );
    let mut i = 0u64;
    while big.len() + 80 < size {
        let _ = write!(
            big,
            "line {i:010} {:016x} the quick brown fox jumps over the dog\r\n",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        i += 1;
    }
    let big = NewMessage::new(big.into_bytes())
        .flags(&["\\Seen"])
        .internal_date("01-Jan-2024 10:00:00 +0000");
    let mut rng = Rng(0x6269_6721);
    let smalls: Vec<NewMessage> = (0..100)
        .map(|n| {
            let size = message_size(&mut rng);
            NewMessage::new(build_message(&mut rng, 0, n, size))
        })
        .collect();
    let mut accounts = Vec::new();
    let mut csv =
        String::from("source_user,source_password,destination_user,destination_password\n");
    let mut bytes = 0;
    for (name, with_big) in [("base", false), ("big", true), ("whole", true)] {
        let (user, password) = source.fresh_user(name);
        destination.add_user(&user, &password);
        let mut imap = RawImap::login(source.port(), &user, &password);
        imap.append_many("INBOX", &smalls);
        bytes += smalls.iter().map(|m| m.body.len() as u64).sum::<u64>();
        if with_big {
            imap.append_many("INBOX", std::slice::from_ref(&big));
            bytes += big.body.len() as u64;
        }
        imap.logout();
        csv.push_str(&format!("{user},{password},{user},{password}\n"));
        accounts.push(Account { user, password });
    }
    println!(
        "big message: {:.1} MB, plus 100 small messages per account, ready after {:.1} s",
        big.body.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::Builder::new()
        .prefix("mailshift-bench-big-")
        .tempdir()
        .expect("temp dir");
    std::fs::write(dir.path().join("accounts.csv"), csv).expect("write accounts.csv");
    let (src_port, dst_port) = (source.port(), destination.port());
    let config = |extra: &str| {
        format!(
            "[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\n\
             [accounts]\ncsv = \"accounts.csv\"\n{extra}",
            src_port, dst_port
        )
    };
    let setup = Setup {
        source,
        destination,
        accounts,
        dir,
        messages: 0,
        bytes,
        _proxies: (None, None),
    };
    let report = setup.dir.path().join("report.json");
    let report = report.to_str().expect("utf-8 temp path").to_string();
    println!("| step | wall | tool CPU | peak RSS | above the baseline | target |");
    println!("|---|---|---|---|---|---|");
    let mut baseline = 0.0;
    let steps = [
        ("baseline: 100 small messages", 0, "", 100),
        ("streamed (default `stream-above`)", 1, "", 101),
        (
            "held whole (`stream-above` above its size)",
            2,
            "\n[limits]\nstream-above = \"2GiB\"\n",
            101,
        ),
    ];
    for (label, index, extra, expected) in steps {
        std::fs::write(setup.dir.path().join("migration.toml"), config(extra))
            .expect("write migration.toml");
        let user = setup.accounts[index].user.clone();
        let args = [
            "apply",
            "--auto-approve",
            "--account",
            &user,
            "--report",
            &report,
        ];
        let s = run_tool(o, &setup, &args, Step::Other).sample;
        check_report(&setup, expected, label);
        if index == 0 {
            baseline = s.rss_mb;
        }
        let target = if index == 1 { "≤ 64 MB above" } else { "" };
        println!(
            "| {label} | {:.1} s | {:.1} s | {:.1} MB | {:+.1} MB | {target} |",
            s.wall,
            s.cpu,
            s.rss_mb,
            s.rss_mb - baseline,
        );
        if index > 0 {
            // Byte for byte, read back with the bench's own client.
            let acc = &setup.accounts[index];
            let mut imap = RawImap::login(setup.destination.port(), &acc.user, &acc.password);
            let found = imap
                .fetch_all("INBOX")
                .into_iter()
                .filter(|m| m.body == big.body)
                .count();
            imap.logout();
            if found != 1 {
                die(&format!(
                    "{label}: the destination holds {found} exact copies of the big message"
                ));
            }
        }
    }
    setup.verify("big message apply");
    println!("load average: {:.2}", loadavg());
}

fn main() {
    let o = parse_args();
    if let Some(n) = o.huge {
        huge_bench(&o, n);
        return;
    }
    if let Some(mb) = o.big_message {
        big_message_bench(&o, mb);
        return;
    }
    if let Some(rows) = o.csv_rows {
        csv_bench(&o, rows);
        return;
    }
    println!(
        "mailshift bench: {} account(s) × {} messages in {} folders, {} run(s), round trip +{} ms, binary `{}`",
        o.accounts,
        o.messages,
        o.folders,
        o.runs,
        o.rtt_ms,
        o.bin.display()
    );
    let (mut mb_full, mut mb_noop, mut mb_delta) = (Vec::new(), Vec::new(), Vec::new());
    let mut full = Vec::new();
    let mut noop = Vec::new();
    let mut noop_warm = Vec::new();
    let mut delta = Vec::new();
    let (mut data_msgs, mut data_bytes, mut delta_msgs) = (0, 0u64, 0);
    for run in 1..=o.runs {
        let t = Instant::now();
        let mut setup = Setup::start(&o);
        (data_msgs, data_bytes) = (setup.messages, setup.bytes);
        println!(
            "run {run}/{}: filled the source with {} messages ({:.1} MB) in {:.1} s",
            o.runs,
            setup.messages,
            setup.bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );

        let report = setup.dir.path().join("report.json");
        let report = report.to_str().expect("utf-8 temp path");
        let apply = ["apply", "--auto-approve", "--report", report];
        let f = run_tool(&o, &setup, &apply, Step::Full);
        setup.verify("full copy");
        check_report(&setup, setup.messages, "full copy");
        let s = f.sample;
        println!(
            "  full apply : {:6.2} s wall, {:7.0} msg/s, {:6.1} MB/s, tool CPU {:.2} s, RSS {:.1} MB, Dovecot CPU src {:.2} s dst {:.2} s, load {:.2}",
            s.wall,
            setup.messages as f64 / s.wall,
            setup.bytes as f64 / 1e6 / s.wall,
            s.cpu,
            s.rss_mb,
            s.source_cpu,
            s.destination_cpu,
            s.load
        );
        full.push(s);

        for (label, samples) in [("no-op plan ", &mut noop), ("again, warm", &mut noop_warm)] {
            // The second plan shows what the destination's freshly written index costs.
            let step = if samples.is_empty() && label.starts_with("no-op") {
                Step::Noop
            } else {
                Step::Other
            };
            let n = run_tool(&o, &setup, &["plan"], step);
            let last = n.stdout.lines().last().unwrap_or("");
            if !last.starts_with("No changes.") {
                die(&format!(
                    "the plan after a full copy is not empty: `{last}`\n{}",
                    n.stdout
                ));
            }
            let s = n.sample;
            println!(
                "  {label}: {:6.2} s wall, tool CPU {:.2} s, RSS {:.1} MB, Dovecot CPU src {:.2} s dst {:.2} s",
                s.wall, s.cpu, s.rss_mb, s.source_cpu, s.destination_cpu
            );
            samples.push(s);
        }

        if o.mbsync {
            let s = run_mbsync(&setup);
            setup.verify_mbsync("mbsync full copy");
            println!(
                "  mbsync full: {:6.2} s wall, {:7.0} msg/s, tool CPU {:.2} s, RSS {:.1} MB, load {:.2}",
                s.wall,
                setup.messages as f64 / s.wall,
                s.cpu,
                s.rss_mb,
                s.load
            );
            mb_full.push(s);
            let s = run_mbsync(&setup);
            println!(
                "  mbsync noop: {:6.2} s wall, tool CPU {:.2} s",
                s.wall, s.cpu
            );
            mb_noop.push(s);
        }

        let (added, added_bytes) = setup.add_delta(&o);
        delta_msgs = added;
        let d = run_tool(&o, &setup, &apply, Step::Delta);
        setup.verify("delta pass");
        check_report(&setup, added, "delta pass");
        let s = d.sample;
        println!(
            "  delta apply: {:6.2} s wall (+{added} messages, {:.1} MB), tool CPU {:.2} s, RSS {:.1} MB, Dovecot CPU src {:.2} s dst {:.2} s",
            s.wall,
            added_bytes as f64 / 1e6,
            s.cpu,
            s.rss_mb,
            s.source_cpu,
            s.destination_cpu
        );
        delta.push(s);
        if o.mbsync {
            let s = run_mbsync(&setup);
            setup.verify_mbsync("mbsync delta");
            println!(
                "  mbsync delta: {:6.2} s wall, tool CPU {:.2} s",
                s.wall, s.cpu
            );
            mb_delta.push(s);
        }
    }

    let mps = stats(full.iter().map(|s| data_msgs as f64 / s.wall));
    let mbs = stats(full.iter().map(|s| data_bytes as f64 / 1e6 / s.wall));
    let fw = stats(full.iter().map(|s| s.wall));
    let fc = stats(full.iter().map(|s| s.cpu));
    let fr = stats(full.iter().map(|s| s.rss_mb));
    let fsrc = stats(full.iter().map(|s| s.source_cpu));
    let fdst = stats(full.iter().map(|s| s.destination_cpu));
    let nw = stats(noop.iter().map(|s| s.wall));
    let nc = stats(noop.iter().map(|s| s.cpu));
    let nr = stats(noop.iter().map(|s| s.rss_mb));
    let nsrc = stats(noop.iter().map(|s| s.source_cpu));
    let ndst = stats(noop.iter().map(|s| s.destination_cpu));
    let ww = stats(noop_warm.iter().map(|s| s.wall));
    let wc = stats(noop_warm.iter().map(|s| s.cpu));
    let wsrc = stats(noop_warm.iter().map(|s| s.source_cpu));
    let wdst = stats(noop_warm.iter().map(|s| s.destination_cpu));
    let dsrc = stats(delta.iter().map(|s| s.source_cpu));
    let ddst = stats(delta.iter().map(|s| s.destination_cpu));
    let dw = stats(delta.iter().map(|s| s.wall));
    let dc = stats(delta.iter().map(|s| s.cpu));
    let dr = stats(delta.iter().map(|s| s.rss_mb));
    let load = stats(full.iter().map(|s| s.load));

    println!(
        "\nData set: {} account(s), {} messages, {:.1} MB ({:.1} KB average); delta +{} messages.",
        o.accounts,
        data_msgs,
        data_bytes as f64 / 1e6,
        data_bytes as f64 / 1e3 / data_msgs as f64,
        delta_msgs
    );
    println!(
        "{} run(s); median (min–max). 1-min load average before the full copies: {}.\n",
        o.runs,
        cell(&load, 2)
    );
    println!("| measurement | result | target | |");
    println!("|---|---|---|---|");
    println!(
        "| full copy: throughput | {} messages/s | ≥ 3,000 messages/s | {} |",
        cell(&mps, 0),
        verdict(mps.median >= TARGET_MSGS_PER_S)
    );
    println!("| full copy: wall time | {} s | | |", cell(&fw, 2));
    println!("| full copy: data rate | {} MB/s | | |", cell(&mbs, 1));
    println!(
        "| full copy: tool CPU (user+sys) | {} s | ≤ 1.5 s | {} |",
        cell(&fc, 2),
        verdict(fc.median <= TARGET_CPU_S)
    );
    println!(
        "| full copy: tool peak RSS | {} MB | ≤ 64 MB | {} |",
        cell(&fr, 1),
        verdict(fr.median <= TARGET_RSS_MB)
    );
    println!(
        "| full copy: Dovecot CPU source / destination | {} s / {} s | | |",
        cell(&fsrc, 2),
        cell(&fdst, 2)
    );
    println!(
        "| no-op plan: wall time | {} s | ≤ 0.5 s | {} |",
        cell(&nw, 2),
        verdict(nw.median <= TARGET_NOOP_S)
    );
    println!(
        "| no-op plan: tool CPU / peak RSS | {} s / {} MB | | |",
        cell(&nc, 2),
        cell(&nr, 1)
    );
    println!(
        "| no-op plan: Dovecot CPU source / destination | {} s / {} s | | |",
        cell(&nsrc, 2),
        cell(&ndst, 2)
    );
    println!(
        "| no-op plan again (warm server caches): wall / tool CPU | {} s / {} s | | |",
        cell(&ww, 2),
        cell(&wc, 2)
    );
    println!(
        "| no-op plan again: Dovecot CPU source / destination | {} s / {} s | | |",
        cell(&wsrc, 2),
        cell(&wdst, 2)
    );
    println!(
        "| delta pass (+{delta_msgs}): wall time | {} s | ≤ 0.6 s | {} |",
        cell(&dw, 2),
        verdict(dw.median <= TARGET_DELTA_S)
    );
    println!(
        "| delta pass: tool CPU / peak RSS | {} s / {} MB | | |",
        cell(&dc, 2),
        cell(&dr, 1)
    );
    println!(
        "| delta pass: Dovecot CPU source / destination | {} s / {} s | | |",
        cell(&dsrc, 2),
        cell(&ddst, 2)
    );
    if o.mbsync {
        let mw = stats(mb_full.iter().map(|s| s.wall));
        let mm = stats(mb_full.iter().map(|s| data_msgs_full(&o) as f64 / s.wall));
        let mn = stats(mb_noop.iter().map(|s| s.wall));
        let md = stats(mb_delta.iter().map(|s| s.wall));
        let ratio = stats(full.iter().zip(&mb_full).map(|(a, b)| b.wall / a.wall));
        println!(
            "| mbsync full copy (same data, same proxy) | {} s, {} messages/s | | |",
            cell(&mw, 2),
            cell(&mm, 0)
        );
        println!(
            "| mailshift full copy ÷ mbsync (messages/s, same run) | {}× | ≥ 4× at 50 ms | {} |",
            cell(&ratio, 1),
            verdict(ratio.median >= 4.0)
        );
        println!("| mbsync no-op run | {} s | | |", cell(&mn, 2));
        println!("| mbsync delta pass | {} s | | |", cell(&md, 2));
    }
}

/// Messages of the full copy (before the delta).
fn data_msgs_full(o: &Options) -> usize {
    o.accounts * o.messages
}
