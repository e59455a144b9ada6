//! A small blocking IMAP client for tests, independent of the crate's IMAP code.
//!
//! It fills servers (APPEND, MULTIAPPEND with LITERAL+ pipelining) and reads them back
//! (EXAMINE + `UID FETCH ... BODY.PEEK[]`, so reading never changes a flag), to check what
//! the code under test did. Every helper panics with the server's answer on NO/BAD.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::BodyDigest;

const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// Messages per MULTIAPPEND command in [`RawImap::append_many`].
const MULTIAPPEND_CHUNK: usize = 500;

/// One logged-in plain-text IMAP connection to 127.0.0.1.
pub(crate) struct RawImap {
    reader: BufReader<TcpStream>,
    next_tag: u32,
}

/// The end of one command: untagged lines (literals inline, final CRLF stripped) and the
/// tagged status.
struct Reply {
    untagged: Vec<Vec<u8>>,
    status: String,
    /// The tagged line after the tag and status, e.g. `[APPENDUID 1 5] Append completed.`
    text: String,
}

/// A message to append: flags, optional INTERNALDATE, raw bytes.
#[derive(Clone, Debug, Default)]
pub(crate) struct NewMessage {
    pub flags: Vec<String>,
    /// IMAP date-time, e.g. `01-Jan-2020 10:00:00 +0000`.
    pub internal_date: Option<String>,
    pub body: Vec<u8>,
}

impl NewMessage {
    pub(crate) fn new(body: impl Into<Vec<u8>>) -> Self {
        NewMessage {
            body: body.into(),
            ..Default::default()
        }
    }

    pub(crate) fn flags(mut self, flags: &[&str]) -> Self {
        self.flags = flags.iter().map(|f| f.to_string()).collect();
        self
    }

    pub(crate) fn internal_date(mut self, date: &str) -> Self {
        self.internal_date = Some(date.to_string());
        self
    }
}

/// One message as read back.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RawMessage {
    pub uid: u32,
    /// Sorted, without `\Recent`.
    pub flags: Vec<String>,
    /// As the server prints it, e.g. `01-Jan-2020 10:00:00 +0000`.
    pub internal_date: String,
    /// `BODY.PEEK[]`, byte for byte.
    pub body: Vec<u8>,
}

impl fmt::Debug for RawMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "uid {} {:?} {:?} {:?}",
            self.uid,
            self.flags,
            self.internal_date,
            BodyDigest(&self.body)
        )
    }
}

/// One selectable folder as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FolderSnapshot {
    pub uidvalidity: u32,
    /// Sorted by UID.
    pub messages: Vec<RawMessage>,
}

/// Every selectable folder of an account (wire names), read without changing anything.
/// Compare with `==`; [`MailboxSnapshot::assert_unchanged`] explains a difference.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct MailboxSnapshot {
    pub folders: BTreeMap<String, FolderSnapshot>,
}

impl MailboxSnapshot {
    pub(crate) fn folder(&self, wire_name: &str) -> Option<&FolderSnapshot> {
        self.folders.get(wire_name)
    }

    pub(crate) fn message_count(&self) -> usize {
        self.folders.values().map(|f| f.messages.len()).sum()
    }

    /// Human-readable differences from `self` to `after` (empty when equal).
    pub(crate) fn diff(&self, after: &MailboxSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        let names: std::collections::BTreeSet<&String> =
            self.folders.keys().chain(after.folders.keys()).collect();
        for name in names {
            let (a, b) = match (self.folders.get(name), after.folders.get(name)) {
                (Some(a), Some(b)) => (a, b),
                (Some(a), None) => {
                    out.push(format!(
                        "folder `{name}` ({} messages) disappeared",
                        a.messages.len()
                    ));
                    continue;
                }
                (None, Some(b)) => {
                    out.push(format!(
                        "folder `{name}` ({} messages) appeared",
                        b.messages.len()
                    ));
                    continue;
                }
                (None, None) => unreachable!(),
            };
            if a.uidvalidity != b.uidvalidity {
                out.push(format!(
                    "folder `{name}`: UIDVALIDITY {} -> {}",
                    a.uidvalidity, b.uidvalidity
                ));
            }
            let am: BTreeMap<u32, &RawMessage> = a.messages.iter().map(|m| (m.uid, m)).collect();
            let bm: BTreeMap<u32, &RawMessage> = b.messages.iter().map(|m| (m.uid, m)).collect();
            for (uid, m) in &am {
                match bm.get(uid) {
                    None => out.push(format!("`{name}` uid {uid}: gone (was {m:?})")),
                    Some(n) => {
                        if m.flags != n.flags {
                            out.push(format!(
                                "`{name}` uid {uid}: flags {:?} -> {:?}",
                                m.flags, n.flags
                            ));
                        }
                        if m.internal_date != n.internal_date {
                            out.push(format!(
                                "`{name}` uid {uid}: INTERNALDATE {:?} -> {:?}",
                                m.internal_date, n.internal_date
                            ));
                        }
                        if m.body != n.body {
                            let at = m
                                .body
                                .iter()
                                .zip(&n.body)
                                .take_while(|(x, y)| x == y)
                                .count();
                            out.push(format!(
                                "`{name}` uid {uid}: body differs from byte {at}: {:?} -> {:?}",
                                BodyDigest(&m.body),
                                BodyDigest(&n.body)
                            ));
                        }
                    }
                }
            }
            for (uid, n) in &bm {
                if !am.contains_key(uid) {
                    out.push(format!("`{name}` uid {uid}: new ({n:?})"));
                }
            }
        }
        out
    }

    /// Panic, listing the differences (first 50), unless `after` equals `self`.
    #[track_caller]
    pub(crate) fn assert_unchanged(&self, after: &MailboxSnapshot) {
        let diff = self.diff(after);
        if !diff.is_empty() {
            let shown: Vec<&str> = diff.iter().take(50).map(String::as_str).collect();
            panic!(
                "mailbox snapshots differ ({} differences):\n  {}",
                diff.len(),
                shown.join("\n  ")
            );
        }
    }
}

impl RawImap {
    /// Connect to `127.0.0.1:port` and read the greeting (not logged in).
    pub(crate) fn connect(port: u16) -> RawImap {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        let mut imap = RawImap {
            reader: BufReader::with_capacity(256 * 1024, stream),
            next_tag: 1,
        };
        let greeting = imap.read_line();
        assert!(
            greeting.starts_with(b"* OK"),
            "unexpected greeting from port {port}: {}",
            lossy(&greeting)
        );
        imap
    }

    /// Connect and LOGIN; panics if the login is refused.
    pub(crate) fn login(port: u16, user: &str, password: &str) -> RawImap {
        let mut imap = RawImap::connect(port);
        let cmd = format!("LOGIN {} {}", quote(user), quote(password));
        let reply = imap.exec(cmd.as_bytes());
        assert!(
            reply.status == "OK",
            "LOGIN {user} on port {port} refused: {} {}",
            reply.status,
            reply.text
        );
        imap
    }

    pub(crate) fn create(&mut self, folder: &str) {
        self.run(&format!("CREATE {}", quote(folder)));
    }

    pub(crate) fn subscribe(&mut self, folder: &str) {
        self.run(&format!("SUBSCRIBE {}", quote(folder)));
    }

    /// `LIST "" "*"`: `(attributes, delimiter, wire name)` per folder, in server order.
    pub(crate) fn list(&mut self) -> Vec<(Vec<String>, Option<char>, String)> {
        self.list_with("LIST \"\" \"*\"")
    }

    /// Wire names of subscribed folders (`LIST (SUBSCRIBED) "" "*"`), sorted.
    pub(crate) fn list_subscribed(&mut self) -> Vec<String> {
        let mut names: Vec<String> = self
            .list_with("LIST (SUBSCRIBED) \"\" \"*\"")
            .into_iter()
            .map(|(_, _, n)| n)
            .collect();
        names.sort();
        names
    }

    fn list_with(&mut self, cmd: &str) -> Vec<(Vec<String>, Option<char>, String)> {
        let mut out = Vec::new();
        for line in self.run(cmd) {
            let v = parse_values(&line);
            if !matches!(v.get(1), Some(Value::Atom(a)) if a.eq_ignore_ascii_case(b"LIST")) {
                continue;
            }
            let attrs = match v.get(2) {
                Some(Value::List(items)) => items.iter().map(|i| lossy(i.bytes())).collect(),
                _ => panic!("bad LIST line: {}", lossy(&line)),
            };
            let delim = match v.get(3) {
                Some(Value::Nil) => None,
                Some(d) => lossy(d.bytes()).chars().next(),
                None => panic!("bad LIST line: {}", lossy(&line)),
            };
            let name = lossy(v.get(4).expect("LIST name").bytes());
            out.push((attrs, delim, name));
        }
        out
    }

    /// APPEND one message; returns its UID (APPENDUID).
    pub(crate) fn append(
        &mut self,
        folder: &str,
        flags: &[&str],
        internal_date: Option<&str>,
        body: &[u8],
    ) -> u32 {
        let mut cmd = format!("APPEND {}", quote(folder)).into_bytes();
        let msg = NewMessage {
            flags: flags.iter().map(|f| f.to_string()).collect(),
            internal_date: internal_date.map(str::to_string),
            body: body.to_vec(),
        };
        push_append_item(&mut cmd, &msg);
        let reply = self.exec(&cmd);
        check(&reply, &format!("APPEND {folder}"));
        let uids = appenduids(&reply.text);
        assert_eq!(uids.len(), 1, "APPENDUID in `{}`", reply.text);
        uids[0]
    }

    /// Append many messages fast: MULTIAPPEND commands of 500 messages with LITERAL+,
    /// all pipelined (a writer thread sends while this one reads). Returns the UIDs in order.
    pub(crate) fn append_many(&mut self, folder: &str, messages: &[NewMessage]) -> Vec<u32> {
        let chunks: Vec<&[NewMessage]> = messages.chunks(MULTIAPPEND_CHUNK).collect();
        let tags: Vec<String> = chunks.iter().map(|_| self.tag()).collect();
        let stream = self.reader.get_ref().try_clone().expect("clone the stream");
        let quoted = quote(folder);
        let mut uids = Vec::with_capacity(messages.len());
        std::thread::scope(|s| {
            let writer = s.spawn(|| -> std::io::Result<()> {
                let mut w = BufWriter::with_capacity(256 * 1024, stream);
                for (tag, chunk) in tags.iter().zip(&chunks) {
                    let mut head = format!("{tag} APPEND {quoted}").into_bytes();
                    for msg in chunk.iter() {
                        push_append_item(&mut head, msg);
                        w.write_all(&head)?;
                        head.clear();
                    }
                    w.write_all(b"\r\n")?;
                }
                w.flush()
            });
            for (tag, chunk) in tags.iter().zip(&chunks) {
                let reply = self.read_reply(tag);
                check(
                    &reply,
                    &format!("APPEND {folder} ({} messages)", chunk.len()),
                );
                let got = appenduids(&reply.text);
                assert_eq!(got.len(), chunk.len(), "APPENDUID in `{}`", reply.text);
                uids.extend(got);
            }
            writer
                .join()
                .expect("append writer thread")
                .expect("write APPEND commands");
        });
        uids
    }

    /// Every message of `folder` (EXAMINE, so nothing changes), sorted by UID.
    pub(crate) fn fetch_all(&mut self, folder: &str) -> Vec<RawMessage> {
        self.examine_fetch(folder).1
    }

    /// UIDVALIDITY and every message of `folder`, via EXAMINE.
    pub(crate) fn folder_snapshot(&mut self, folder: &str) -> FolderSnapshot {
        let (uidvalidity, messages) = self.examine_fetch(folder);
        FolderSnapshot {
            uidvalidity,
            messages,
        }
    }

    /// Every selectable folder (LIST), each read with [`RawImap::folder_snapshot`].
    pub(crate) fn snapshot(&mut self) -> MailboxSnapshot {
        let names: Vec<String> = self
            .list()
            .into_iter()
            .filter(|(attrs, _, _)| {
                !attrs.iter().any(|a| {
                    a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
                })
            })
            .map(|(_, _, name)| name)
            .collect();
        let folders = names
            .into_iter()
            .map(|name| {
                let snap = self.folder_snapshot(&name);
                (name, snap)
            })
            .collect();
        MailboxSnapshot { folders }
    }

    /// Replace the flags of one message (SELECT, `UID STORE uid FLAGS.SILENT (...)`).
    pub(crate) fn store_flags(&mut self, folder: &str, uid: u32, flags: &[&str]) {
        self.store(folder, uid, "FLAGS.SILENT", flags);
    }

    /// Add flags to one message (`+FLAGS.SILENT`).
    pub(crate) fn add_flags(&mut self, folder: &str, uid: u32, flags: &[&str]) {
        self.store(folder, uid, "+FLAGS.SILENT", flags);
    }

    /// Remove flags from one message (`-FLAGS.SILENT`).
    pub(crate) fn remove_flags(&mut self, folder: &str, uid: u32, flags: &[&str]) {
        self.store(folder, uid, "-FLAGS.SILENT", flags);
    }

    /// Expunge exactly these UIDs (`\Deleted` + `UID EXPUNGE`).
    pub(crate) fn expunge(&mut self, folder: &str, uids: &[u32]) {
        if uids.is_empty() {
            return;
        }
        let set = uid_set(uids);
        self.run(&format!("SELECT {}", quote(folder)));
        self.run(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"));
        self.run(&format!("UID EXPUNGE {set}"));
        self.run("UNSELECT");
    }

    /// Send `command` (without tag and CRLF); returns every response line as text
    /// (untagged ones, then the tagged one including its tag). Does not check the status.
    pub(crate) fn raw_command(&mut self, command: &str) -> Vec<String> {
        let tag = self.tag();
        self.send(&tag, command.as_bytes());
        let reply = self.read_reply(&tag);
        let mut lines: Vec<String> = reply.untagged.iter().map(|l| lossy(l)).collect();
        lines.push(format!("{tag} {} {}", reply.status, reply.text));
        lines
    }

    /// `LOGOUT` and close.
    pub(crate) fn logout(mut self) {
        let _ = self.raw_command("LOGOUT");
    }

    fn store(&mut self, folder: &str, uid: u32, item: &str, flags: &[&str]) {
        self.run(&format!("SELECT {}", quote(folder)));
        self.run(&format!("UID STORE {uid} {item} ({})", flags.join(" ")));
        self.run("UNSELECT");
    }

    fn examine_fetch(&mut self, folder: &str) -> (u32, Vec<RawMessage>) {
        let lines = self.run(&format!("EXAMINE {}", quote(folder)));
        let mut uidvalidity = None;
        let mut exists = 0u32;
        for line in &lines {
            let text = lossy(line);
            if let Some(rest) = text.strip_prefix("* OK [UIDVALIDITY ") {
                uidvalidity = rest.split(']').next().and_then(|n| n.parse().ok());
            } else if let Some(n) = text
                .strip_prefix("* ")
                .and_then(|t| t.strip_suffix(" EXISTS"))
            {
                exists = n.parse().expect("EXISTS count");
            }
        }
        let uidvalidity = uidvalidity.unwrap_or_else(|| panic!("EXAMINE {folder}: no UIDVALIDITY"));
        let mut messages = Vec::new();
        if exists > 0 {
            for line in self.run("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])") {
                if let Some(m) = parse_fetch(&line) {
                    messages.push(m);
                }
            }
        }
        messages.sort_by_key(|m| m.uid);
        assert_eq!(
            messages.len(),
            exists as usize,
            "EXAMINE {folder} said {exists} EXISTS, FETCH returned {}",
            messages.len()
        );
        self.run("UNSELECT");
        (uidvalidity, messages)
    }

    /// Run a command; panic unless OK. Returns the untagged lines.
    fn run(&mut self, command: &str) -> Vec<Vec<u8>> {
        let reply = self.exec(command.as_bytes());
        check(&reply, command);
        reply.untagged
    }

    fn exec(&mut self, command: &[u8]) -> Reply {
        let tag = self.tag();
        self.send(&tag, command);
        self.read_reply(&tag)
    }

    fn tag(&mut self) -> String {
        let t = format!("t{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    fn send(&mut self, tag: &str, command: &[u8]) {
        let mut buf = Vec::with_capacity(command.len() + tag.len() + 3);
        buf.extend_from_slice(tag.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(command);
        buf.extend_from_slice(b"\r\n");
        self.reader
            .get_mut()
            .write_all(&buf)
            .unwrap_or_else(|e| panic!("send IMAP command: {e}"));
    }

    fn read_reply(&mut self, tag: &str) -> Reply {
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line();
            if let Some(rest) = line
                .strip_prefix(tag.as_bytes())
                .and_then(|r| r.strip_prefix(b" "))
            {
                let rest = lossy(rest);
                let (status, text) = rest.split_once(' ').unwrap_or((&rest, ""));
                return Reply {
                    untagged,
                    status: status.to_ascii_uppercase(),
                    text: text.to_string(),
                };
            }
            untagged.push(line);
        }
    }

    /// One logical response line: literals (`{n}` / `{n+}` then n bytes) are read with it
    /// and kept inline; the final CRLF is stripped.
    fn read_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        loop {
            let start = line.len();
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .unwrap_or_else(|e| panic!("read from IMAP server: {e}"));
            assert!(
                n > 0,
                "IMAP server closed the connection; partial line: {}",
                lossy(&line)
            );
            match literal_len(&line[start..]) {
                Some(len) => {
                    let at = line.len();
                    line.resize(at + len, 0);
                    std::io::Read::read_exact(&mut self.reader, &mut line[at..])
                        .unwrap_or_else(|e| panic!("read an IMAP literal of {len} bytes: {e}"));
                }
                None => {
                    while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                        line.pop();
                    }
                    return line;
                }
            }
        }
    }
}

/// `{n}\r\n` or `{n+}\r\n` at the end of a line segment.
fn literal_len(segment: &[u8]) -> Option<usize> {
    let s = segment
        .strip_suffix(b"\r\n")
        .or_else(|| segment.strip_suffix(b"\n"))?;
    let s = s.strip_suffix(b"}")?;
    let s = s.strip_suffix(b"+").unwrap_or(s);
    let open = s.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&s[open + 1..]).ok()?.parse().ok()
}

fn check(reply: &Reply, what: &str) {
    let what = if what.to_ascii_uppercase().starts_with("LOGIN") {
        "LOGIN ***"
    } else {
        what
    };
    assert!(
        reply.status == "OK",
        "IMAP `{what}` failed: {} {}",
        reply.status,
        reply.text
    );
}

/// ` (flags) "date" {n+}\r\n<body>` for APPEND / MULTIAPPEND.
fn push_append_item(out: &mut Vec<u8>, msg: &NewMessage) {
    if !msg.flags.is_empty() {
        out.extend_from_slice(format!(" ({})", msg.flags.join(" ")).as_bytes());
    }
    if let Some(d) = &msg.internal_date {
        out.extend_from_slice(format!(" \"{d}\"").as_bytes());
    }
    out.extend_from_slice(format!(" {{{}+}}\r\n", msg.body.len()).as_bytes());
    out.extend_from_slice(&msg.body);
}

/// UIDs from `[APPENDUID validity set] ...`.
fn appenduids(text: &str) -> Vec<u32> {
    let code = text
        .strip_prefix("[APPENDUID ")
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("no APPENDUID in `{text}`"));
    let set = code.split(' ').nth(1).expect("APPENDUID uid set");
    let mut uids = Vec::new();
    for part in set.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                uids.extend(a.min(b)..=a.max(b));
            }
            None => uids.push(part.parse().unwrap()),
        }
    }
    uids
}

/// `1:3,7` from sorted or unsorted UIDs.
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}:{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// An IMAP quoted string (names here are ASCII: wire names are mUTF-7).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A parsed piece of a response line.
#[derive(Debug, PartialEq)]
enum Value {
    Atom(Vec<u8>),
    /// Quoted string or literal, unescaped.
    Str(Vec<u8>),
    List(Vec<Value>),
    Nil,
}

impl Value {
    fn bytes(&self) -> &[u8] {
        match self {
            Value::Atom(b) | Value::Str(b) => b,
            Value::Nil => b"NIL",
            Value::List(_) => panic!("expected a string, got a list"),
        }
    }
}

/// Parse a whole response line (as returned by `read_line`, literals inline).
fn parse_values(line: &[u8]) -> Vec<Value> {
    let mut pos = 0;
    let mut out = Vec::new();
    while let Some(v) = parse_value(line, &mut pos) {
        out.push(v);
    }
    out
}

fn parse_value(s: &[u8], pos: &mut usize) -> Option<Value> {
    while *pos < s.len() && s[*pos] == b' ' {
        *pos += 1;
    }
    let c = *s.get(*pos)?;
    match c {
        b')' => None,
        b'(' => {
            *pos += 1;
            let mut items = Vec::new();
            while let Some(v) = parse_value(s, pos) {
                items.push(v);
            }
            assert_eq!(s.get(*pos), Some(&b')'), "unbalanced list in {}", lossy(s));
            *pos += 1;
            Some(Value::List(items))
        }
        b'"' => {
            *pos += 1;
            let mut out = Vec::new();
            while s[*pos] != b'"' {
                if s[*pos] == b'\\' {
                    *pos += 1;
                }
                out.push(s[*pos]);
                *pos += 1;
            }
            *pos += 1;
            Some(Value::Str(out))
        }
        b'{' => {
            let close = *pos
                + s[*pos..]
                    .iter()
                    .position(|&b| b == b'}')
                    .expect("literal }");
            let digits = std::str::from_utf8(&s[*pos + 1..close]).unwrap();
            let len: usize = digits
                .trim_end_matches('+')
                .parse()
                .expect("literal length");
            let start = close + 3; // "}\r\n"
            *pos = start + len;
            Some(Value::Str(s[start..start + len].to_vec()))
        }
        _ => {
            // Atoms may carry a bracketed section with spaces: BODY[HEADER.FIELDS (A B)].
            let start = *pos;
            let mut depth = 0;
            while *pos < s.len() {
                match s[*pos] {
                    b'[' => depth += 1,
                    b']' => depth -= 1,
                    b' ' | b'(' | b')' if depth == 0 => break,
                    _ => {}
                }
                *pos += 1;
            }
            let atom = s[start..*pos].to_vec();
            Some(if atom.eq_ignore_ascii_case(b"NIL") {
                Value::Nil
            } else {
                Value::Atom(atom)
            })
        }
    }
}

/// `* n FETCH (UID .. FLAGS (..) INTERNALDATE ".." BODY[] {n}...)` -> RawMessage.
fn parse_fetch(line: &[u8]) -> Option<RawMessage> {
    let v = parse_values(line);
    if !matches!(v.get(2), Some(Value::Atom(a)) if a.eq_ignore_ascii_case(b"FETCH")) {
        return None;
    }
    let Some(Value::List(items)) = v.get(3) else {
        panic!("bad FETCH line: {}", lossy(line));
    };
    let (mut uid, mut flags, mut date, mut body) = (None, None, None, None);
    for pair in items.chunks(2) {
        let key = lossy(pair[0].bytes()).to_ascii_uppercase();
        match (key.as_str(), &pair[1]) {
            ("UID", v) => uid = Some(lossy(v.bytes()).parse::<u32>().expect("UID")),
            ("FLAGS", Value::List(fs)) => {
                let mut f: Vec<String> = fs
                    .iter()
                    .map(|x| lossy(x.bytes()))
                    .filter(|x| !x.eq_ignore_ascii_case("\\Recent"))
                    .collect();
                f.sort();
                flags = Some(f);
            }
            ("INTERNALDATE", v) => date = Some(lossy(v.bytes())),
            ("BODY[]", Value::Nil) => body = Some(Vec::new()),
            ("BODY[]", v) => body = Some(v.bytes().to_vec()),
            _ => {}
        }
    }
    Some(RawMessage {
        uid: uid.expect("FETCH without UID"),
        flags: flags.expect("FETCH without FLAGS"),
        internal_date: date.expect("FETCH without INTERNALDATE"),
        body: body.expect("FETCH without BODY[]"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_len_reads_sync_and_nonsync_literals() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_len(b"a APPEND x {3+}\r\n"), Some(3));
        assert_eq!(literal_len(b"* OK done\r\n"), None);
        assert_eq!(literal_len(b"* OK {x}\r\n"), None);
    }

    #[test]
    fn fetch_line_with_literal_containing_parens_and_crlf() {
        let body = b"Subject: (x) \"q\"\r\n\r\n)\xff{5}\r\n";
        let mut line = b"* 3 FETCH (UID 9 FLAGS (\\Seen \\Recent $Label1) INTERNALDATE \"01-Jan-2020 10:00:00 +0000\" BODY[] {".to_vec();
        line.extend_from_slice(format!("{}}}\r\n", body.len()).as_bytes());
        line.extend_from_slice(body);
        line.extend_from_slice(b")");
        let m = parse_fetch(&line).unwrap();
        assert_eq!(m.uid, 9);
        assert_eq!(m.flags, vec!["$Label1", "\\Seen"]);
        assert_eq!(m.internal_date, "01-Jan-2020 10:00:00 +0000");
        assert_eq!(m.body, body.to_vec());
    }

    #[test]
    fn list_values_unescape_quoted_names() {
        let v = parse_values(b"* LIST (\\HasNoChildren \\Sent) \".\" \"INBOX.a \\\"b\\\"\"");
        assert_eq!(v[3], Value::Str(b".".to_vec()));
        assert_eq!(v[4], Value::Str(b"INBOX.a \"b\"".to_vec()));
    }

    #[test]
    fn uid_sets_round_trip() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9]), "1:3,5,9");
        assert_eq!(appenduids("[APPENDUID 7 1:3,5] ok"), vec![1, 2, 3, 5]);
    }
}
