//! The inventory cache (issue 7): a folder's cached inventory is reused only while its
//! STATUS proves it unchanged. The test marks the cached messages (a subject no server
//! holds) and watches whether a plan shows the mark: it must for an unchanged folder
//! (otherwise the test proves nothing), and must not once a message was added, one was
//! expunged, or the UIDVALIDITY changed. Flag changes (HIGHESTMODSEQ moved) refresh the
//! flags but may keep the cached headers. Every change is made, and checked, with the
//! test's own IMAP client.

use std::path::PathBuf;

use crate::scenario::Scenario;
use crate::support::{Layout, MessageBuilder, RawImap};

const MARK: &str = "CACHED-MARKER";

fn cache_file(s: &Scenario) -> PathBuf {
    let dir = s.dir().join(".mailshift").join("inventory");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no inventory cache in {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".source.cache"))
        .collect();
    assert_eq!(files.len(), 1, "one source cache file: {files:?}");
    files.into_iter().next().unwrap()
}

/// The message lines (`m\t...`) of `folder` in a cache file (format v2: a `folder` line
/// with the wire name second, then its messages; `end` with the SHA-256 of what precedes).
fn message_lines(text: &str, folder: &str) -> Vec<usize> {
    let mut current = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[0] {
            "folder" => current = Some(fields[1].to_string()),
            "m" if current.as_deref() == Some(folder) => out.push(i),
            _ => {}
        }
    }
    out
}

/// Sets every cached message's subject of `folder` to the mark (and the checksum to match,
/// as the cache's own writer would).
fn mark(s: &Scenario, folder: &str) {
    use sha2::Digest;
    let path = cache_file(s);
    let text = std::fs::read_to_string(&path).unwrap();
    let marked = message_lines(&text, folder);
    assert!(!marked.is_empty(), "folder `{folder}` not cached");
    let mut body = String::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("end\t") {
            break;
        }
        if marked.contains(&i) {
            let mut fields: Vec<&str> = line.split('\t').collect();
            fields[8] = MARK; // m, uid, size, key, flags, date, Date, From, Subject, content
            body.push_str(&fields.join("\t"));
        } else {
            body.push_str(line);
        }
        body.push('\n');
    }
    let digest: String = sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    body.push_str(&format!("end\t{digest}\n"));
    std::fs::write(&path, body).unwrap();
}

/// Per source folder of the plan: (subjects, flags) of the messages to copy.
fn planned(s: &Scenario, folder: &str) -> Vec<(String, Vec<String>)> {
    let out = s.run(&["plan", "--format", "json"]);
    assert_eq!(out.status, 0, "{out}");
    let doc = out.json();
    doc["accounts"][0]["folders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["destination"].as_str() == Some(folder))
        .flat_map(|f| f["copy"].as_array().cloned().unwrap_or_default())
        .map(|m| {
            let flags = m["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .collect();
            (m["subject"].as_str().unwrap().to_string(), flags)
        })
        .collect()
}

fn marked(p: &[(String, Vec<String>)]) -> usize {
    p.iter().filter(|(s, _)| s == MARK).count()
}

/// (UIDVALIDITY, UIDNEXT, MESSAGES) by the test's own client.
fn status(imap: &mut RawImap, folder: &str) -> (u32, u32, u32) {
    let lines = imap.raw_command(&format!(
        "STATUS \"{folder}\" (UIDVALIDITY UIDNEXT MESSAGES)"
    ));
    let line = lines
        .iter()
        .find(|l| l.starts_with("* STATUS"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let num = |key: &str| -> u32 {
        let at = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num("UIDVALIDITY"), num("UIDNEXT"), num("MESSAGES"))
}

#[test]
fn the_cache_is_used_only_while_status_proves_a_folder_unchanged() {
    let s = Scenario::new()
        .source(Layout::Modern)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    src.create("Work");
    for i in 0..3 {
        let m = MessageBuilder::new().subject(&format!("inbox {i}")).build();
        src.append("INBOX", &["\\Seen"], None, &m);
    }
    let work: Vec<Vec<u8>> = (0..2)
        .map(|i| MessageBuilder::new().subject(&format!("work {i}")).build())
        .collect();
    for m in &work {
        src.append("Work", &[], None, m);
    }

    // The first plan reads everything and writes the cache.
    let first = planned(&s, "INBOX");
    assert_eq!(first.len(), 3);
    assert_eq!(marked(&first), 0);

    // Unchanged: the cache is used (the mark shows), so the checks below can fail.
    mark(&s, "INBOX");
    mark(&s, "Work");
    assert_eq!(marked(&planned(&s, "INBOX")), 3, "the cache was not used");
    assert_eq!(marked(&planned(&s, "Work")), 2, "the cache was not used");

    // A message added: INBOX is read again; Work is still unchanged.
    let m = MessageBuilder::new().subject("inbox new").build();
    let new_uid = src.append("INBOX", &[], None, &m);
    let p = planned(&s, "INBOX");
    assert_eq!(p.len(), 4, "{p:?}");
    assert_eq!(marked(&p), 0, "stale cache used after an APPEND: {p:?}");
    assert_eq!(marked(&planned(&s, "Work")), 2);

    // One expunged (MESSAGES drops, UIDNEXT stays): read again.
    mark(&s, "INBOX");
    assert_eq!(marked(&planned(&s, "INBOX")), 4);
    src.expunge("INBOX", &[new_uid]);
    let p = planned(&s, "INBOX");
    assert_eq!(p.len(), 3, "{p:?}");
    assert_eq!(marked(&p), 0, "stale cache used after an EXPUNGE: {p:?}");

    // One added and another expunged: MESSAGES is the same, UIDNEXT moved.
    mark(&s, "INBOX");
    assert_eq!(marked(&planned(&s, "INBOX")), 3);
    let (_, next, count) = status(&mut src, "INBOX");
    let m = MessageBuilder::new().subject("inbox newer").build();
    let newer = src.append("INBOX", &[], None, &m);
    let oldest = src.fetch_all("INBOX")[0].uid;
    src.expunge("INBOX", &[oldest]);
    let (_, next2, count2) = status(&mut src, "INBOX");
    assert_eq!(count, count2);
    assert_ne!(next, next2);
    let p = planned(&s, "INBOX");
    assert_eq!(p.len(), 3, "{p:?}");
    assert_eq!(
        marked(&p),
        0,
        "stale cache used after an APPEND + EXPUNGE: {p:?}"
    );
    assert!(
        p.iter().any(|(s, _)| s == "inbox newer"),
        "{p:?} lacks UID {newer}"
    );

    // A flag changed (no message added or removed): with CONDSTORE the flags are read
    // again; the headers may still come from the cache.
    mark(&s, "INBOX");
    let uids: Vec<u32> = src.fetch_all("INBOX").iter().map(|m| m.uid).collect();
    src.add_flags("INBOX", uids[0], &["\\Flagged"]);
    let p = planned(&s, "INBOX");
    assert_eq!(p.len(), 3);
    assert_eq!(
        p.iter()
            .filter(|(_, f)| f.iter().any(|f| f == "\\Flagged"))
            .count(),
        1,
        "stale flags from the cache: {p:?}"
    );

    // UIDVALIDITY changed while UIDNEXT and MESSAGES stay equal: Work deleted and made
    // again with the same two messages.
    let (validity, next, count) = status(&mut src, "Work");
    src.raw_command("DELETE \"Work\"");
    src.create("Work");
    for m in &work {
        src.append("Work", &[], None, m);
    }
    let (validity2, next2, count2) = status(&mut src, "Work");
    assert_ne!(
        validity, validity2,
        "Dovecot gave the new folder the old UIDVALIDITY"
    );
    assert_eq!(
        (next, count),
        (next2, count2),
        "only UIDVALIDITY may differ"
    );
    let before = src.snapshot();
    let p = planned(&s, "Work");
    assert_eq!(p.len(), 2);
    assert_eq!(
        marked(&p),
        0,
        "stale cache used after a UIDVALIDITY change: {p:?}"
    );

    // Plans never touch the source, and nothing was applied.
    before.assert_unchanged(&src.snapshot());
    assert_eq!(s.dst("alice").snapshot().message_count(), 0);
}

#[test]
fn a_damaged_cache_only_costs_a_reread() {
    let s = Scenario::new()
        .source(Layout::Classic)
        .destination(Layout::Modern)
        .account("alice");
    let mut src = s.src("alice");
    for i in 0..4 {
        let m = MessageBuilder::new().subject(&format!("m {i}")).build();
        src.append("INBOX", &[], None, &m);
    }
    assert_eq!(planned(&s, "INBOX").len(), 4);
    let path = cache_file(&s);
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 3]).unwrap();
    let p = planned(&s, "INBOX");
    assert_eq!(p.len(), 4, "{p:?}");
    // The plan wrote a good cache again.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(message_lines(&text, "INBOX").len(), 4, "{text}");
}
