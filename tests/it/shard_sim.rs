//! The shard simulation of issue 10: a migration of 40 accounts run the way a Kubernetes
//! Indexed Job runs it (deploy/kubernetes/): N = 8 shard processes, at most 3 at a time,
//! each started with `JOB_COMPLETION_INDEX` set and the Job's own arguments (read from
//! deploy/kubernetes/) expanded from their `$(JOB_COMPLETION_INDEX)` templates, all sharing one config dir and state dir (the
//! volume). Proves, with the test's own IMAP client and its own shard hash, that every
//! account was migrated exactly once (by the shard it belongs to) and every message arrived
//! exactly once; then `mailshift report` over the 8 report files shows 40 accounts done
//! with the right totals, and a retried shard copies nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::scenario::Scenario;
use crate::support::{Layout, MessageBuilder, NewMessage};

const ACCOUNTS: usize = 40;
const SHARDS: u64 = 8;
const PARALLELISM: usize = 3;

/// The container arguments of the Indexed Job (deploy/kubernetes/apply/job-apply.yaml, as
/// rendered), for this test's smaller job: N = 8 instead of the Job's count, the reports in
/// the test's dir instead of the volume's `/reports/`, and the test's config.
fn job_args() -> Vec<String> {
    let (args, n) = crate::deploy_kubernetes::apply_job_args();
    let mut out = Vec::new();
    let mut iter = args.into_iter();
    while let Some(a) = iter.next() {
        if a == "--config" {
            iter.next();
            continue;
        }
        out.push(
            a.replace(
                &format!("$(JOB_COMPLETION_INDEX)/{n}"),
                &format!("$(JOB_COMPLETION_INDEX)/{SHARDS}"),
            )
            .replace("/reports/", ""),
        );
    }
    assert!(
        out.contains(&format!("$(JOB_COMPLETION_INDEX)/{SHARDS}")),
        "the Job's --shard argument: {out:?}"
    );
    out
}

/// What the kubelet does to `args`: `$(VAR)` becomes the variable's value.
fn expand(args: &[String], index: u64) -> Vec<String> {
    args.iter()
        .map(|a| a.replace("$(JOB_COMPLETION_INDEX)", &index.to_string()))
        .collect()
}

/// docs/commands.md (`--shard`), computed here independently of the product: sha256 of the lower-cased
/// source user, first 8 bytes big-endian, mod N.
fn shard_of(user: &str, n: u64) -> u64 {
    let d = Sha256::digest(user.to_lowercase().as_bytes());
    u64::from_be_bytes(d[..8].try_into().unwrap()) % n
}

fn start(s: &Scenario, args: &[String], index: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mailshift"))
        .args(expand(args, index))
        .current_dir(s.dir())
        .env("JOB_COMPLETION_INDEX", index.to_string())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(fs::File::create(s.path(&format!("out-{index}"))).unwrap())
        .stderr(fs::File::create(s.path(&format!("err-{index}"))).unwrap())
        .spawn()
        .expect("start a shard")
}

fn output(s: &Scenario, index: u64) -> String {
    format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        fs::read_to_string(s.path(&format!("out-{index}"))).unwrap_or_default(),
        fs::read_to_string(s.path(&format!("err-{index}"))).unwrap_or_default()
    )
}

/// Runs the shards like the Job controller: at most `PARALLELISM` pods at once, the next
/// index starting as soon as one ends. Returns the most that ran at once.
fn run_indexed_job(s: &Scenario, args: &[String]) -> usize {
    let mut queue: Vec<u64> = (0..SHARDS).rev().collect();
    let mut running: Vec<(u64, Child)> = Vec::new();
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < PARALLELISM {
            let Some(index) = queue.pop() else { break };
            running.push((index, start(s, args, index)));
        }
        most = most.max(running.len());
        let mut still = Vec::new();
        for (index, mut child) in running {
            match child.try_wait().expect("wait for a shard") {
                Some(status) => assert!(
                    status.success(),
                    "shard {index} failed: {status}\n{}",
                    output(s, index)
                ),
                None => still.push((index, child)),
            }
        }
        running = still;
        assert!(
            Instant::now() < deadline,
            "the shards did not finish in time"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    most
}

#[test]
fn eight_shards_three_at_a_time_migrate_forty_accounts_exactly_once() {
    let mut s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern);
    for i in 0..ACCOUNTS {
        s = s.account(&format!("fleet{i:02}"));
    }
    // Small, distinct messages: 2 in INBOX and, for every other account, 1 in a folder the
    // destination does not have yet.
    let work = Layout::Classic.wire("Work");
    let mut sent: BTreeMap<String, (Vec<NewMessage>, Vec<NewMessage>)> = BTreeMap::new();
    let mut total_bytes = 0u64;
    let mut total_messages = 0u64;
    for (i, acc) in s.accounts().iter().enumerate() {
        let msg = |n: usize| {
            NewMessage::new(
                MessageBuilder::new()
                    .subject(&format!("account {i} message {n}"))
                    .build(),
            )
        };
        let inbox = vec![msg(1), msg(2)];
        let folder = if i % 2 == 0 { vec![msg(3)] } else { vec![] };
        let mut src = s.src(&acc.name);
        src.append_many("INBOX", &inbox);
        if !folder.is_empty() {
            src.create(&work);
            src.append_many(&work, &folder);
        }
        for m in inbox.iter().chain(&folder) {
            total_bytes += m.body.len() as u64;
            total_messages += 1;
        }
        sent.insert(acc.name.clone(), (inbox, folder));
    }
    let before: Vec<_> = s
        .accounts()
        .iter()
        .map(|a| s.src(&a.name).snapshot())
        .collect();
    s.write_files();

    let job = job_args();
    let most = run_indexed_job(&s, &job);
    assert_eq!(most, PARALLELISM, "3 pods at a time");

    // Each report holds exactly the accounts of its shard (by our own hash), each once.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut copied = 0u64;
    for index in 0..SHARDS {
        let file = s.path(&format!("shard-{index}.json"));
        let text = fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("no report from shard {index}: {e}\n{}", output(&s, index)));
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        for acc in report["accounts"].as_array().unwrap() {
            let user = acc["source_user"].as_str().unwrap().to_string();
            assert_eq!(
                shard_of(&user, SHARDS),
                index,
                "`{user}` ran in shard {index}"
            );
            assert_eq!(acc["status"], "done", "{acc:#}");
            copied += acc["copied"].as_u64().unwrap();
            assert!(
                seen.insert(user.clone(), index).is_none(),
                "`{user}` was migrated by two shards"
            );
        }
    }
    let all: BTreeSet<String> = s.accounts().iter().map(|a| a.source_user.clone()).collect();
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "every account exactly once"
    );
    assert_eq!(copied, total_messages);
    let shards_used: BTreeSet<u64> = seen.values().copied().collect();
    assert!(
        shards_used.len() > 4,
        "the accounts spread over the shards: {shards_used:?}"
    );

    // Every message exactly once, read back with the test's own client.
    let check_destination = |when: &str| {
        for acc in s.accounts() {
            let (inbox, folder) = &sent[&acc.name];
            let mut dst = s.dst(&acc.name);
            let bodies = |folder: &str, dst: &mut crate::support::RawImap| {
                let mut b: Vec<Vec<u8>> =
                    dst.fetch_all(folder).into_iter().map(|m| m.body).collect();
                b.sort();
                b
            };
            let mut want: Vec<Vec<u8>> = inbox.iter().map(|m| m.body.clone()).collect();
            want.sort();
            assert_eq!(
                bodies("INBOX", &mut dst),
                want,
                "{when}: INBOX of {}",
                acc.name
            );
            if !folder.is_empty() {
                assert_eq!(
                    bodies("Work", &mut dst),
                    vec![folder[0].body.clone()],
                    "{when}: Work of {}",
                    acc.name
                );
            }
        }
    };
    check_destination("after the job");

    // The fleet view of the 8 files.
    let mut args = vec!["report".to_string(), "--format".into(), "json".into()];
    args.extend((0..SHARDS).map(|i| format!("shard-{i}.json")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = s.run(&args);
    assert_eq!(r.status, 0, "{r}");
    let fleet = r.json();
    let sum = &fleet["summary"];
    assert_eq!(sum["accounts"], ACCOUNTS, "{fleet:#}");
    assert_eq!(sum["accounts_done"], ACCOUNTS, "{fleet:#}");
    assert_eq!(sum["copied"], total_messages, "{fleet:#}");
    assert_eq!(sum["bytes"], total_bytes, "{fleet:#}");
    assert_eq!(sum["failed"], 0, "{fleet:#}");
    assert_eq!(sum["pending"], 0, "{fleet:#}");
    let mut text_args = args.clone();
    text_args.drain(1..3);
    let r = s.run(&text_args);
    assert_eq!(
        r.last_line(),
        format!(
            "Fleet: 40 accounts in 8 reports: 40 done, 0 partial, 0 failed; {total_messages} messages ({}) copied, 0 failed, 0 pending.",
            crate::scenario::human_bytes(total_bytes)
        ),
        "{r}"
    );

    // A retried index (backoffLimitPerIndex) copies nothing: every message stays once.
    let mut retry = start(&s, &job, 5);
    assert!(retry.wait().unwrap().success(), "{}", output(&s, 5));
    let text = fs::read_to_string(s.path("shard-5.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["summary"]["copied"], 0, "{report:#}");
    check_destination("after a retried shard");

    for (acc, snap) in s.accounts().iter().zip(before) {
        snap.assert_unchanged(&s.src(&acc.name).snapshot());
    }
}
