//! Message identity keys (ARCHITECTURE.md "Message identity"): a SHA-256 over the identity header fields,
//! normalised by meaning so that servers that refold, re-encode or re-case headers agree.
//!
//! Input is the block returned by `BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE FROM TO CC
//! SUBJECT)]`. A small hand-written splitter finds the first occurrence of each field
//! (no allocation), one scratch buffer holds the unfolded values, and mail-parser's field
//! parsers (addresses, RFC 2047 words, dates) run on those slices only.
//!
//! Raw non-ASCII bytes are turned into `X` *before* parsing as well as after: some servers
//! store 8-bit header bytes as `X`, one per byte; mail-parser would turn invalid UTF-8
//! (e.g. raw Latin-1) into U+FFFD, three bytes, which would then not match.

use std::borrow::Cow;
use std::fmt;

use mail_parser::parsers::MessageStream;
use mail_parser::{Addr, Address, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// SHA-256 over the normalised identity fields of one message.
///
/// Serialised as a 64-character lowercase hex string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct IdentityKey(pub [u8; 32]);

impl IdentityKey {
    /// Lowercase hex, 64 characters.
    pub(crate) fn to_hex(self) -> String {
        crate::model::hex(&self.0)
    }

    /// Parses 64 hex digits (either case); anything else is `None`.
    pub(crate) fn from_hex(s: &str) -> Option<Self> {
        crate::model::parse_hex(s).map(IdentityKey)
    }
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for IdentityKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for IdentityKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(deserializer)?;
        IdentityKey::from_hex(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid identity key `{s}`: expected 64 hex digits"
            ))
        })
    }
}

/// The identity key plus short, human-readable fields for plans and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedHeaders {
    pub key: IdentityKey,
    /// The raw Date value, unfolded and trimmed.
    pub date: String,
    /// The first From address, as `Name <addr>` or `addr`.
    pub from: String,
    /// The decoded Subject.
    pub subject: String,
}

/// Display fields are cut to this many characters.
const DISPLAY_CAP: usize = 200;

/// Field tags in the hash, so that fields cannot bleed into each other.
mod tag {
    pub(super) const MESSAGE_ID: u8 = b'M';
    /// Date parsed to a UTC instant (8 bytes, big-endian unix seconds).
    pub(super) const DATE_INSTANT: u8 = b'D';
    /// Date that did not parse: whitespace-collapsed raw value.
    pub(super) const DATE_RAW: u8 = b'd';
    pub(super) const FROM: u8 = b'F';
    pub(super) const TO: u8 = b'T';
    pub(super) const CC: u8 = b'C';
    pub(super) const SUBJECT: u8 = b'S';
}

#[derive(Clone, Copy)]
enum Field {
    MessageId = 0,
    Date = 1,
    From = 2,
    To = 3,
    Cc = 4,
    Subject = 5,
}

const FIELD_COUNT: usize = 6;

impl Field {
    fn from_name(name: &[u8]) -> Option<Field> {
        // Header names are case-insensitive.
        let eq = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        Some(match name.len() {
            10 if eq("message-id") => Field::MessageId,
            4 if eq("date") => Field::Date,
            4 if eq("from") => Field::From,
            2 if eq("to") => Field::To,
            2 if eq("cc") => Field::Cc,
            7 if eq("subject") => Field::Subject,
            _ => return None,
        })
    }
}

/// Raw (still folded) value of the first occurrence of each identity field.
fn split_fields(raw: &[u8]) -> [Option<&[u8]>; FIELD_COUNT] {
    let mut fields: [Option<(usize, usize)>; FIELD_COUNT] = [None; FIELD_COUNT];
    // The field whose continuation lines we are collecting, if any.
    let mut current: Option<usize> = None;
    let mut pos = 0;
    while pos < raw.len() {
        let line_end = memchr_lf(&raw[pos..]).map_or(raw.len(), |i| pos + i);
        let mut content_end = line_end;
        if content_end > pos && raw[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        let line = &raw[pos..content_end];
        if line.is_empty() {
            // The blank line that ends the block (or a stray one): no field continues.
            current = None;
        } else if line[0] == b' ' || line[0] == b'\t' {
            if let Some(i) = current {
                if let Some((_, end)) = fields[i].as_mut() {
                    *end = content_end;
                }
            }
        } else {
            current = None;
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                // Obsolete syntax allows whitespace before the colon.
                let name = trim_ascii_ws(&line[..colon]);
                if let Some(field) = Field::from_name(name) {
                    let i = field as usize;
                    // First occurrence wins.
                    if fields[i].is_none() {
                        fields[i] = Some((pos + colon + 1, content_end));
                        current = Some(i);
                    }
                }
            }
        }
        pos = line_end + 1;
    }
    fields.map(|f| f.map(|(s, e)| &raw[s..e]))
}

fn memchr_lf(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_ascii_ws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Non-ASCII bytes become `X`, as some servers store them.
fn x_ascii(b: u8) -> u8 {
    if b.is_ascii() {
        b
    } else {
        b'X'
    }
}

/// Appends `value` unfolded (CR and LF dropped) to `buf`, optionally with non-ASCII bytes
/// as `X`, plus one `\n` (mail-parser's field parsers only finish a value at a line end);
/// returns the range it occupies.
fn push_unfolded(buf: &mut Vec<u8>, value: &[u8], x_non_ascii: bool) -> (usize, usize) {
    let start = buf.len();
    buf.extend(
        value
            .iter()
            .filter(|&&b| b != b'\r' && b != b'\n')
            .map(|&b| if x_non_ascii { x_ascii(b) } else { b }),
    );
    buf.push(b'\n');
    (start, buf.len())
}

/// Hashes a field as tag, length (u32 BE), bytes; `bytes` is walked twice (length first),
/// through a stack buffer, so nothing is allocated.
fn hash_field<I>(h: &mut Sha256, tag: u8, bytes: I)
where
    I: Iterator<Item = u8> + Clone,
{
    let len = bytes.clone().count() as u32;
    h.update([tag]);
    h.update(len.to_be_bytes());
    hash_bytes(h, bytes);
}

fn hash_bytes<I: Iterator<Item = u8>>(h: &mut Sha256, bytes: I) {
    let mut chunk = [0u8; 64];
    let mut n = 0;
    for b in bytes {
        chunk[n] = b;
        n += 1;
        if n == chunk.len() {
            h.update(chunk);
            n = 0;
        }
    }
    h.update(&chunk[..n]);
}

/// Bytes with ASCII whitespace removed and non-ASCII as `X`.
fn squeezed(s: &[u8]) -> impl Iterator<Item = u8> + Clone + '_ {
    s.iter().copied().filter(|&b| !is_ws(b)).map(x_ascii)
}

/// Whitespace runs collapsed to one space, trimmed, non-ASCII as `X`.
fn collapsed(s: &[u8]) -> impl Iterator<Item = u8> + Clone + '_ {
    let s = trim_ascii_ws(s);
    s.iter().enumerate().filter_map(move |(i, &b)| {
        if is_ws(b) {
            // Keep only the first byte of a run, as a space.
            (i == 0 || !is_ws(s[i - 1])).then_some(b' ')
        } else {
            Some(x_ascii(b))
        }
    })
}

/// Message-ID: the text inside `<>` without whitespace; without `<`, the collapsed value.
fn hash_message_id(h: &mut Sha256, value: &[u8]) {
    match value.iter().position(|&b| b == b'<') {
        Some(open) => {
            let inner = &value[open + 1..];
            let inner = &inner[..inner.iter().position(|&b| b == b'>').unwrap_or(inner.len())];
            hash_field(h, tag::MESSAGE_ID, squeezed(inner));
        }
        None => hash_field(h, tag::MESSAGE_ID, collapsed(value)),
    }
}

/// Date: the UTC instant when it parses to a plausible date, else the collapsed value.
fn hash_date(h: &mut Sha256, value: &[u8]) {
    if let HeaderValue::DateTime(dt) = MessageStream::new(value).parse_date() {
        if dt.is_valid() {
            h.update([tag::DATE_INSTANT]);
            h.update(8u32.to_be_bytes());
            h.update(dt.to_timestamp().to_be_bytes());
            return;
        }
    }
    hash_field(h, tag::DATE_RAW, collapsed(value));
}

/// Key form of one address: the bare address (or, lacking one, the name) without
/// whitespace, ASCII-lower-cased, non-ASCII as `X`.
fn addr_key<'a>(a: &'a Addr<'_>) -> impl Iterator<Item = u8> + Clone + 'a {
    let s = a.address().or_else(|| a.name()).unwrap_or("");
    squeezed(s.as_bytes()).map(|b| b.to_ascii_lowercase())
}

/// From/To/Cc: tag, count, then each address (sorted) as length + bytes.
fn hash_addresses(h: &mut Sha256, tag: u8, parsed: Option<&Address<'_>>) {
    let mut addrs: Vec<&Addr<'_>> = match parsed {
        Some(a) => a.iter().collect(),
        None => Vec::new(),
    };
    addrs.sort_unstable_by(|a, b| addr_key(a).cmp(addr_key(b)));
    h.update([tag]);
    h.update((addrs.len() as u32).to_be_bytes());
    for a in addrs {
        let k = addr_key(a);
        h.update((k.clone().count() as u32).to_be_bytes());
        hash_bytes(h, k);
    }
}

fn parse_address(value: &[u8]) -> Option<Address<'_>> {
    MessageStream::new(value).parse_address().into_address()
}

fn parse_text(value: &[u8]) -> Option<Cow<'_, str>> {
    MessageStream::new(value).parse_unstructured().into_text()
}

/// Whitespace collapsed and trimmed, cut to [`DISPLAY_CAP`] characters (`…` marks a cut).
fn display(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(DISPLAY_CAP * 2));
    let mut chars = 0;
    for word in s.split_ascii_whitespace() {
        for c in (!out.is_empty())
            .then_some(' ')
            .into_iter()
            .chain(word.chars())
        {
            if chars == DISPLAY_CAP - 1 {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

fn display_addr(a: &Addr<'_>) -> String {
    match (a.name(), a.address()) {
        (Some(n), Some(ad)) if !n.trim().is_empty() => display(&format!("{n} <{ad}>")),
        (_, Some(ad)) => display(ad),
        (Some(n), None) => display(n),
        (None, None) => String::new(),
    }
}

/// Computes the identity key and display fields of one message's identity header block.
/// Never panics, whatever the bytes.
pub(crate) fn parse_headers(raw: &[u8]) -> ParsedHeaders {
    let fields = split_fields(raw);
    let get = |f: Field| fields[f as usize].unwrap_or(b"");

    // Unfolded values with non-ASCII bytes as `X`, for the key (and for display when they
    // were ASCII anyway).
    let mut buf = Vec::with_capacity(raw.len());
    let ranges = fields.map(|v| push_unfolded(&mut buf, v.unwrap_or(b""), true));
    let val = |f: Field| &buf[ranges[f as usize].0..ranges[f as usize].1];

    let mut h = Sha256::new();
    hash_message_id(&mut h, val(Field::MessageId));
    hash_date(&mut h, val(Field::Date));
    let from = parse_address(val(Field::From));
    hash_addresses(&mut h, tag::FROM, from.as_ref());
    hash_addresses(&mut h, tag::TO, parse_address(val(Field::To)).as_ref());
    hash_addresses(&mut h, tag::CC, parse_address(val(Field::Cc)).as_ref());
    let subject = parse_text(val(Field::Subject));
    let subject_bytes = subject.as_deref().unwrap_or("").as_bytes();
    hash_field(&mut h, tag::SUBJECT, squeezed(subject_bytes));
    let key = IdentityKey(h.finalize().into());

    // Display: re-parse from the original bytes only when they held 8-bit data.
    let from = if get(Field::From).is_ascii() {
        from.as_ref()
            .and_then(|a| a.first())
            .map(display_addr)
            .unwrap_or_default()
    } else {
        let mut orig = Vec::new();
        push_unfolded(&mut orig, get(Field::From), false);
        parse_address(&orig)
            .as_ref()
            .and_then(|a| a.first())
            .map(display_addr)
            .unwrap_or_default()
    };
    let subject = if get(Field::Subject).is_ascii() {
        display(subject.as_deref().unwrap_or(""))
    } else {
        let mut orig = Vec::new();
        push_unfolded(&mut orig, get(Field::Subject), false);
        display(parse_text(&orig).as_deref().unwrap_or(""))
    };
    let date = display(&String::from_utf8_lossy(get(Field::Date)));

    ParsedHeaders {
        key,
        date,
        from,
        subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(raw: &str) -> IdentityKey {
        parse_headers(raw.as_bytes()).key
    }

    const BASE: &str = "Message-ID: <abc@x>\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
        From: Ann <ann@example.org>\r\nTo: bob@example.org, Carl <carl@example.org>\r\n\
        Cc: dee@example.org\r\nSubject: Hello there\r\n\r\n";

    #[test]
    fn equal_keys() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "refolded headers",
                BASE,
                "Message-ID:\r\n <abc@x>\r\nDate: Tue, 1 Jul 2003\r\n\t10:52:37 +0200\r\n\
                 From: Ann\r\n <ann@example.org>\r\nTo: bob@example.org,\r\n Carl <carl@example.org>\r\n\
                 Cc: dee@example.org\r\nSubject: Hello\r\n there\r\n\r\n",
            ),
            (
                "LF line endings",
                BASE,
                "Message-ID: <abc@x>\nDate: Tue, 1 Jul 2003 10:52:37 +0200\n\
                 From: Ann <ann@example.org>\nTo: bob@example.org, Carl <carl@example.org>\n\
                 Cc: dee@example.org\nSubject: Hello there\n\n",
            ),
            (
                "re-cased, re-ordered addresses, other display names, header order",
                BASE,
                "subject: Hello there\r\nCC: DEE@example.org\r\n\
                 TO: \"Carl C.\" <Carl@Example.ORG>, Bob <BOB@example.org>\r\n\
                 FROM: ann@EXAMPLE.org\r\nDATE: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
                 MESSAGE-ID: <abc@x>\r\n",
            ),
            (
                "date in another zone",
                "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n",
                "Date: Tue, 01 Jul 2003 08:52:37 +0000\r\n",
            ),
            (
                "obsolete zone name",
                "Date: Tue, 1 Jul 2003 10:52:37 -0400\r\n",
                "Date: Tue, 1 Jul 2003 10:52:37 EDT\r\n",
            ),
            (
                "two-digit year, comment",
                "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n",
                "Date: 1 Jul 03 10:52:37 +0200 (CEST)\r\n",
            ),
            (
                "message-id whitespace",
                "Message-ID: < abc@x >\r\n",
                "Message-ID: <abc@x>\r\n",
            ),
            (
                "header name case",
                "message-id: <abc@x>\r\n",
                "Message-ID: <abc@x>\r\n",
            ),
            (
                "encoded subject vs raw UTF-8",
                "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n",
                "Subject: Grüße\r\n",
            ),
            (
                "encoded subject vs server-X'd bytes",
                "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n",
                "Subject: GrXXXXe\r\n",
            ),
            (
                "encoded Latin-1 subject vs raw UTF-8",
                "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?=\r\n",
                "Subject: Grüße\r\n",
            ),
            (
                "split encoded words vs plain",
                "Subject: =?UTF-8?B?SGVsbG8=?=\r\n =?UTF-8?Q?_there?=\r\n",
                "Subject: Hello there\r\n",
            ),
            (
                "no identity headers",
                "X-Foo: bar\r\n\r\n",
                "",
            ),
            (
                "first occurrence wins",
                "Subject: one\r\nSubject: two\r\n",
                "Subject: one\r\n",
            ),
            (
                "groups are flattened",
                "To: friends: a@x, b@x;\r\n",
                "To: b@x, A@x\r\n",
            ),
        ];
        for (name, a, b) in cases {
            assert_eq!(key(a), key(b), "{name}");
        }
    }

    #[test]
    fn raw_latin1_matches_server_x() {
        // A raw Latin-1 byte is one `X`, as a server that X's 8-bit bytes stores it.
        let a = parse_headers(b"Subject: Gr\xfc\xdfe\r\n").key;
        assert_eq!(a, key("Subject: GrXXe\r\n"));
    }

    #[test]
    fn different_keys() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "message-ids",
                "Message-ID: <a@x>\r\n",
                "Message-ID: <b@x>\r\n",
            ),
            (
                "garbage dates",
                "Date: not a date\r\n",
                "Date: another bad one\r\n",
            ),
            (
                "dates",
                "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n",
                "Date: Tue, 1 Jul 2003 10:52:38 +0200\r\n",
            ),
            ("subjects", "Subject: a\r\n", "Subject: b\r\n"),
            ("from vs to", "From: a@x\r\n", "To: a@x\r\n"),
            (
                "fields do not bleed",
                "Message-ID: <ab>\r\nSubject: c\r\n",
                "Message-ID: <a>\r\nSubject: bc\r\n",
            ),
            (
                "address lists do not bleed",
                "To: ab@x, c@x\r\n",
                "To: a@x, bc@x\r\n",
            ),
            (
                "duplicate recipient counts",
                "To: a@x, a@x\r\n",
                "To: a@x\r\n",
            ),
            ("empty vs some", "", "Subject: x\r\n"),
        ];
        for (name, a, b) in cases {
            assert_ne!(key(a), key(b), "{name}");
        }
    }

    #[test]
    fn garbage_date_is_stable() {
        let a = key("Date: not a date\r\n");
        assert_eq!(a, key("Date:   not   a\r\n date  \r\n"));
    }

    #[test]
    fn empty_field_key_is_fixed() {
        // Pinned so an accidental change of the hash layout (which would make every
        // existing destination look empty) is noticed.
        let empty = "255555103a13e8dbab4092b07c84cc8a4314ba7ae4273f51b4b2e965e61b31eb";
        assert_eq!(key("").to_hex(), empty);
        assert_eq!(key("Received: x\r\n\r\n").to_hex(), empty);
        assert_eq!(key(""), key("\r\n"));
    }

    #[test]
    fn display_fields() {
        let p = parse_headers(
            b"Date:  Tue, 1 Jul 2003\r\n 10:52:37 +0200 \r\nFrom: =?UTF-8?Q?J=C3=B6rg?= <j@x>, b@x\r\n\
              Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n  aus Bern\r\n",
        );
        assert_eq!(p.date, "Tue, 1 Jul 2003 10:52:37 +0200");
        assert_eq!(p.from, "Jörg <j@x>");
        assert_eq!(p.subject, "Grüße aus Bern");

        let p = parse_headers("From: Jörg <j@x>\r\nSubject: Grüße\r\n".as_bytes());
        assert_eq!(p.from, "Jörg <j@x>");
        assert_eq!(p.subject, "Grüße");

        let long = format!("Subject: {}\r\n", "é".repeat(300));
        let p = parse_headers(long.as_bytes());
        assert_eq!(p.subject.chars().count(), DISPLAY_CAP);
        assert!(p.subject.ends_with('…'));
    }

    #[test]
    fn hex_roundtrip_and_serde() {
        let k = key(BASE);
        let hex = k.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, hex.to_lowercase());
        assert_eq!(IdentityKey::from_hex(&hex), Some(k));
        assert_eq!(IdentityKey::from_hex(&hex.to_uppercase()), Some(k));
        assert_eq!(IdentityKey::from_hex(&hex[1..]), None);
        assert_eq!(IdentityKey::from_hex(&format!("g{}", &hex[1..])), None);
        assert_eq!(IdentityKey::from_hex("é"), None);

        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<IdentityKey>(&json).unwrap(), k);
        assert!(serde_json::from_str::<IdentityKey>("\"abc\"").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
            let p = parse_headers(&raw);
            prop_assert!(p.subject.chars().count() <= DISPLAY_CAP);
            prop_assert!(p.from.chars().count() <= DISPLAY_CAP);
            prop_assert!(p.date.chars().count() <= DISPLAY_CAP);
        }

        #[test]
        fn never_panics_on_header_like_input(
            lines in proptest::collection::vec(
                (prop_oneof![
                    Just("Message-ID"), Just("Date"), Just("From"), Just("to"),
                    Just("CC"), Just("Subject"), Just(" "), Just("")
                ], "[ -~\\t\\r\\n\u{80}-\u{10ffff}<>=?@,;:\"()\\\\]{0,40}"),
                0..8,
            )
        ) {
            let raw: String = lines.iter().map(|(n, v)| format!("{n}:{v}\r\n")).collect();
            let _ = parse_headers(raw.as_bytes());
        }

        #[test]
        fn crlf_and_lf_agree(
            lines in proptest::collection::vec(
                (prop_oneof![
                    Just("Message-ID"), Just("Date"), Just("From"), Just("To"),
                    Just("Cc"), Just("Subject")
                ], "[ -~]{0,30}"),
                0..6,
            )
        ) {
            let crlf: String = lines.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
            let lf: String = lines.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
            prop_assert_eq!(key(&crlf), key(&lf));
        }
    }
}
