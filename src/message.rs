//! Compact per-message values for inventories and plans of huge mailboxes (issue 10: a
//! 500,000-message account within 200 MB): INTERNALDATE as an instant plus the server's
//! offset instead of a string, flag sets held once and shared by every message that has
//! them, and the display fields (Date, From, Subject) in shared blocks of text that a
//! plan's copy points into instead of cloning. A leaf: it imports nothing from the crate.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A message's INTERNALDATE exactly as the server reported it: the instant (seconds since
/// the Unix epoch) and the server's UTC offset in minutes, so that the APPEND sends the
/// same date with the same offset. Serialised as RFC 3339 (`1996-07-17T02:44:25-07:00`),
/// the plan file's form since format 1.
///
/// Packed into one non-zero integer, `seconds × 4096 + offset + 2048`, so that an
/// `Option<InternalDate>` takes 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct InternalDate(std::num::NonZeroI64);

/// Added to the offset in minutes (within ±1439) to keep it positive in the low 12 bits.
const OFFSET_BIAS: i64 = 2048;

impl InternalDate {
    /// From the instant and the offset; `None` outside what IMAP can say (years 0–9999,
    /// offsets within a day).
    pub(crate) fn new(seconds: i64, offset_minutes: i16) -> Option<InternalDate> {
        if !(-1439..=1439).contains(&offset_minutes) {
            return None;
        }
        let packed = seconds
            .checked_mul(4096)?
            .checked_add(i64::from(offset_minutes) + OFFSET_BIAS)?;
        // Never zero: the low 12 bits hold at least 609.
        let d = InternalDate(std::num::NonZeroI64::new(packed)?);
        d.to_chrono().map(|_| d)
    }

    /// Parses RFC 3339 with whole seconds and a whole-minute offset (`Z` is `+00:00`).
    pub(crate) fn from_rfc3339(s: &str) -> Option<InternalDate> {
        let d = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
        if chrono::Timelike::nanosecond(&d) != 0 {
            return None;
        }
        let offset = d.offset().local_minus_utc();
        if offset % 60 != 0 {
            return None;
        }
        InternalDate::new(d.timestamp(), i16::try_from(offset / 60).ok()?)
    }

    /// Parses the IMAP form `17-Jul-1996 02:44:25 -0700` (RFC 9051 `date-time`; the day
    /// may be space-padded, surrounding whitespace is ignored). The wire goes through
    /// `imap::wire` (RFC 3339 in `FetchedMeta` and `AppendItem`); this is for tests.
    #[cfg(test)]
    pub(crate) fn from_imap(s: &str) -> Option<InternalDate> {
        let d = chrono::DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z").ok()?;
        InternalDate::new(
            d.timestamp(),
            i16::try_from(d.offset().local_minus_utc() / 60).ok()?,
        )
    }

    /// RFC 3339 with the server's offset, as chrono writes it (`+00:00`, never `Z`).
    pub(crate) fn to_rfc3339(self) -> String {
        self.to_chrono().expect("checked on creation").to_rfc3339()
    }

    /// The IMAP form with a zero-padded day: `07-Jul-1996 02:44:25 -0700` (for tests, as
    /// [`InternalDate::from_imap`]).
    #[cfg(test)]
    pub(crate) fn to_imap(self) -> String {
        self.to_chrono()
            .expect("checked on creation")
            .format("%d-%b-%Y %H:%M:%S %z")
            .to_string()
    }

    /// Seconds since the Unix epoch (UTC).
    pub(crate) fn seconds(self) -> i64 {
        self.0.get().div_euclid(4096)
    }

    /// The server's offset from UTC in minutes.
    pub(crate) fn offset_minutes(self) -> i16 {
        (self.0.get().rem_euclid(4096) - OFFSET_BIAS) as i16
    }

    fn to_chrono(self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        let offset = chrono::FixedOffset::east_opt(i32::from(self.offset_minutes()) * 60)?;
        let utc = chrono::DateTime::from_timestamp(self.seconds(), 0)?;
        let local = utc.with_timezone(&offset);
        (0..=9999)
            .contains(&chrono::Datelike::year(&local))
            .then_some(local)
    }
}

impl fmt::Debug for InternalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InternalDate({})", self.to_rfc3339())
    }
}

impl Serialize for InternalDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for InternalDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        InternalDate::from_rfc3339(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid internal date `{s}`: expected RFC 3339 with whole seconds"
            ))
        })
    }
}

/// A message's flags and keywords as the server sent them (`\Recent` removed). A mailbox
/// has few distinct sets, so a [`FlagInterner`] holds each once and every message with it
/// points to it; no flags is no allocation. Compares, hashes and serialises as the list.
#[derive(Clone, Default)]
pub(crate) struct FlagSet(Option<Arc<Vec<String>>>);

impl FlagSet {
    /// A set of its own (not shared); see [`FlagInterner::intern`].
    pub(crate) fn new(flags: Vec<String>) -> FlagSet {
        if flags.is_empty() {
            FlagSet(None)
        } else {
            FlagSet(Some(Arc::new(flags)))
        }
    }

    pub(crate) fn as_slice(&self) -> &[String] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Whether both point to the same shared set (or both are empty).
    pub(crate) fn same_set(&self, other: &FlagSet) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::ops::Deref for FlagSet {
    type Target = [String];

    fn deref(&self) -> &[String] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a FlagSet {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl PartialEq for FlagSet {
    fn eq(&self, other: &FlagSet) -> bool {
        self.same_set(other) || self.as_slice() == other.as_slice()
    }
}

impl Eq for FlagSet {}

impl std::hash::Hash for FlagSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl std::borrow::Borrow<[String]> for FlagSet {
    fn borrow(&self) -> &[String] {
        self.as_slice()
    }
}

impl fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl From<Vec<String>> for FlagSet {
    fn from(flags: Vec<String>) -> FlagSet {
        FlagSet::new(flags)
    }
}

impl Serialize for FlagSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for FlagSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(FlagSet::new)
    }
}

/// Hands out one shared [`FlagSet`] per distinct list of flags (same flags in the same
/// order).
#[derive(Debug, Default)]
pub(crate) struct FlagInterner(std::collections::HashSet<FlagSet>);

impl FlagInterner {
    pub(crate) fn intern(&mut self, flags: Vec<String>) -> FlagSet {
        if flags.is_empty() {
            return FlagSet::default();
        }
        if let Some(set) = self.0.get(flags.as_slice()) {
            return set.clone();
        }
        let set = FlagSet::new(flags);
        self.0.insert(set.clone());
        set
    }
}

/// A message's Date header (raw, trimmed), first From address and decoded Subject, for
/// `--detail`, the plan file and the report's failure list; nothing decides on them.
/// Stored in shared blocks of text ([`DisplayBlocks`]: about 64 KiB holding hundreds of
/// messages' fields, no allocation per message); this is a pointer to the block and the
/// place in it, shared by the inventory and the plan's copy. Nothing when all three are
/// empty. Compares and hashes by the text.
#[derive(Clone, Default)]
pub(crate) struct DisplayFields(Option<(Block, u32)>);

/// A block of display fields: filled by one [`DisplayBlocks`], then set once.
type Block = Arc<std::sync::OnceLock<Box<[u8]>>>;

/// How much text one block holds before the next one is started.
const BLOCK_BYTES: usize = 64 << 10;

/// Appends `n` as LEB128 (one byte for lengths under 128).
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a length written by [`put_len`] at `*at`, moving past it.
fn get_len(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// Writes the display fields of many messages into shared blocks. A block is readable
/// once it is full or the writer is dropped: nothing is read through the handles it gave
/// out before that (the inventory drops it once a connection's folders are read).
#[derive(Default)]
pub(crate) struct DisplayBlocks {
    block: Block,
    text: Vec<u8>,
}

impl DisplayBlocks {
    pub(crate) fn add(&mut self, date: &str, from: &str, subject: &str) -> DisplayFields {
        if date.is_empty() && from.is_empty() && subject.is_empty() {
            return DisplayFields(None);
        }
        // Three lengths (a byte each, mostly), then the text.
        let need = 3 + date.len() + from.len() + subject.len();
        if !self.text.is_empty() && self.text.len() + need > BLOCK_BYTES {
            self.seal();
        }
        let Ok(at) = u32::try_from(self.text.len()) else {
            return DisplayFields(None);
        };
        if self.text.capacity() == 0 {
            self.text.reserve(BLOCK_BYTES.max(need));
        }
        for field in [date, from, subject] {
            put_len(&mut self.text, field.len());
        }
        self.text.extend_from_slice(date.as_bytes());
        self.text.extend_from_slice(from.as_bytes());
        self.text.extend_from_slice(subject.as_bytes());
        DisplayFields(Some((Arc::clone(&self.block), at)))
    }

    /// Makes the current block readable and starts another.
    fn seal(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.text).into_boxed_slice();
        let block = std::mem::take(&mut self.block);
        // Only this writer sets it, once.
        let _ = block.set(text);
    }
}

impl Drop for DisplayBlocks {
    fn drop(&mut self) {
        self.seal();
    }
}

impl DisplayFields {
    /// The fields of one message, in a block of their own, sized to them (plan files,
    /// tests).
    pub(crate) fn new(date: &str, from: &str, subject: &str) -> DisplayFields {
        let mut one = DisplayBlocks {
            block: Block::default(),
            text: Vec::with_capacity(3 + date.len() + from.len() + subject.len()),
        };
        one.add(date, from, subject)
    }

    /// The three fields; empty before the block is sealed.
    fn fields(&self) -> [&str; 3] {
        let Some((block, at)) = &self.0 else {
            return ["", "", ""];
        };
        let Some(bytes) = block.get() else {
            return ["", "", ""];
        };
        let mut at = *at as usize;
        let mut lens = [0usize; 3];
        for len in &mut lens {
            *len = get_len(bytes, &mut at).unwrap_or(0);
        }
        let mut out = [""; 3];
        for (field, len) in out.iter_mut().zip(lens) {
            // Made from `&str`s, so each range is UTF-8.
            *field = bytes
                .get(at..at + len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default();
            at += len;
        }
        out
    }

    pub(crate) fn date(&self) -> &str {
        self.fields()[0]
    }

    pub(crate) fn from(&self) -> &str {
        self.fields()[1]
    }

    pub(crate) fn subject(&self) -> &str {
        self.fields()[2]
    }
}

impl PartialEq for DisplayFields {
    fn eq(&self, other: &DisplayFields) -> bool {
        self.fields() == other.fields()
    }
}

impl Eq for DisplayFields {}

impl std::hash::Hash for DisplayFields {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.fields().hash(state);
    }
}

impl fmt::Debug for DisplayFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DisplayFields")
            .field("date", &self.date())
            .field("from", &self.from())
            .field("subject", &self.subject())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn internal_dates_in_both_forms() {
        let cases = [
            (
                "17-Jul-1996 02:44:25 -0700",
                "17-Jul-1996 02:44:25 -0700",
                "1996-07-17T02:44:25-07:00",
            ),
            (
                " 7-Jul-1996 02:44:25 +0000",
                "07-Jul-1996 02:44:25 +0000",
                "1996-07-07T02:44:25+00:00",
            ),
            (
                "07-Jan-2024 23:59:59 +0530",
                "07-Jan-2024 23:59:59 +0530",
                "2024-01-07T23:59:59+05:30",
            ),
            (
                "29-Feb-2024 00:00:00 -1200",
                "29-Feb-2024 00:00:00 -1200",
                "2024-02-29T00:00:00-12:00",
            ),
            (
                "01-jan-1970 00:00:00 +0000",
                "01-Jan-1970 00:00:00 +0000",
                "1970-01-01T00:00:00+00:00",
            ),
            (
                "01-Jan-2001 00:00:00 -0000",
                "01-Jan-2001 00:00:00 +0000",
                "2001-01-01T00:00:00+00:00",
            ),
            (
                "31-Dec-1969 23:59:59 -0001",
                "31-Dec-1969 23:59:59 -0001",
                "1969-12-31T23:59:59-00:01",
            ),
        ];
        for (input, imap, rfc) in cases {
            let d = InternalDate::from_imap(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(d.to_imap(), imap, "{input}");
            assert_eq!(d.to_rfc3339(), rfc, "{input}");
            assert_eq!(InternalDate::from_rfc3339(rfc), Some(d), "{rfc}");
            assert_eq!(InternalDate::from_imap(imap), Some(d), "{imap}");
        }
        let d = InternalDate::from_imap("17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!((d.seconds(), d.offset_minutes()), (837_596_665, -420));
        // Same instant, another offset: another date to send.
        let utc = InternalDate::from_rfc3339("1996-07-17T09:44:25Z").unwrap();
        assert_eq!(utc.seconds(), d.seconds());
        assert_ne!(utc, d);
        assert_eq!(utc.to_rfc3339(), "1996-07-17T09:44:25+00:00");
        for bad in [
            "garbage",
            "",
            "17-Jul-1996 02:44:25",
            "2024-01-01T00:00:00.5+00:00",
            "2024-01-01T00:00:00+00:00:30",
        ] {
            assert_eq!(InternalDate::from_imap(bad), None, "{bad}");
            assert_eq!(InternalDate::from_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(InternalDate::new(i64::MAX, 0), None);
        assert_eq!(InternalDate::new(0, 24 * 60), None);
        assert_eq!(InternalDate::new(0, -24 * 60), None);
        for (s, o) in [
            (0, 0),
            (-1, -1439),
            (1, 1439),
            (-62_167_219_200, 0),
            (253_402_300_799, 0),
        ] {
            let d = InternalDate::new(s, o).unwrap();
            assert_eq!((d.seconds(), d.offset_minutes()), (s, o));
        }
        // Compact: an optional date is one word.
        assert_eq!(std::mem::size_of::<Option<InternalDate>>(), 8);
    }

    #[test]
    fn internal_date_serialises_as_rfc3339() {
        let d = InternalDate::from_imap("01-Jan-2001 10:00:00 +0200").unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, "\"2001-01-01T10:00:00+02:00\"");
        assert_eq!(serde_json::from_str::<InternalDate>(&json).unwrap(), d);
        assert!(serde_json::from_str::<InternalDate>("\"yesterday\"").is_err());
    }

    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];

    proptest! {
        /// Every date-time the IMAP parser accepts renders back to the same text (the day
        /// zero-padded), in both forms, with the same offset.
        #[test]
        fn imap_dates_round_trip(
            day in 1u32..=28, month in 0usize..12, year in 0i32..=9999,
            h in 0u32..24, m in 0u32..60, s in 0u32..60,
            sign in prop::bool::ANY, oh in 0u32..24, om in 0u32..60,
            pad_with_space in prop::bool::ANY,
        ) {
            let day_text = if pad_with_space && day < 10 { format!(" {day}") } else { format!("{day:02}") };
            let zone = format!("{}{oh:02}{om:02}", if sign { '-' } else { '+' });
            let input = format!("{day_text}-{}-{year:04} {h:02}:{m:02}:{s:02} {zone}", MONTHS[month]);
            // An offset of zero has one spelling: `-0000` comes back as `+0000`.
            let zone_out = if oh == 0 && om == 0 { "+0000".to_string() } else { zone.clone() };
            let canonical = format!("{day:02}-{}-{year:04} {h:02}:{m:02}:{s:02} {zone_out}", MONTHS[month]);
            let d = InternalDate::from_imap(&input).expect("valid");
            prop_assert_eq!(d.to_imap(), canonical);
            prop_assert_eq!(InternalDate::from_rfc3339(&d.to_rfc3339()), Some(d));
            prop_assert_eq!(InternalDate::from_imap(&d.to_imap()), Some(d));
        }

        #[test]
        fn display_fields_keep_each_field(date in ".{0,20}", from in ".{0,20}", subject in ".{0,20}") {
            let f = DisplayFields::new(&date, &from, &subject);
            prop_assert_eq!(f.date(), date.as_str());
            prop_assert_eq!(f.from(), from.as_str());
            prop_assert_eq!(f.subject(), subject.as_str());
        }
    }

    #[test]
    fn flag_sets_are_shared_and_compare_by_content() {
        let mut interner = FlagInterner::default();
        let a = interner.intern(vec!["\\Seen".into(), "$Label1".into()]);
        let b = interner.intern(vec!["\\Seen".into(), "$Label1".into()]);
        assert!(a.same_set(&b));
        let own = FlagSet::new(vec!["\\Seen".into(), "$Label1".into()]);
        assert!(!own.same_set(&a));
        assert_eq!(own, a);
        assert_eq!(interner.intern(vec![]), FlagSet::default());
        assert!(FlagSet::default().is_empty());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"["\\Seen","$Label1"]"#
        );
        assert_eq!(
            serde_json::from_str::<FlagSet>(r#"["\\Seen","$Label1"]"#).unwrap(),
            a
        );
        assert_eq!(format!("{a:?}"), r#"["\\Seen", "$Label1"]"#);
    }

    #[test]
    fn display_blocks_are_shared_and_readable_once_sealed() {
        let mut blocks = DisplayBlocks::default();
        let long = "x".repeat(300);
        let all: Vec<(String, DisplayFields)> = (0..3000)
            .map(|i| {
                let subject = if i % 97 == 0 {
                    format!("subject {i} {long}")
                } else {
                    format!("subject {i}")
                };
                let f = blocks.add("Mon, 1 Jan 2024", "a@b", &subject);
                (subject, f)
            })
            .collect();
        let huge = "y".repeat(BLOCK_BYTES * 2);
        let big = blocks.add("", &huge, "");
        let last = blocks.add("d", "", "");
        assert_eq!(last.date(), "", "not readable before its block is sealed");
        drop(blocks);
        for (subject, f) in &all {
            assert_eq!(
                (f.date(), f.from(), f.subject()),
                ("Mon, 1 Jan 2024", "a@b", subject.as_str())
            );
        }
        assert_eq!(big.from(), huge);
        assert_eq!(last.date(), "d");
        // Many messages per block, and more than one block.
        let used: std::collections::HashSet<*const std::sync::OnceLock<Box<[u8]>>> = all
            .iter()
            .map(|(_, f)| Arc::as_ptr(&f.0.as_ref().unwrap().0))
            .collect();
        assert!(used.len() > 1 && used.len() < 10, "{}", used.len());
        assert_eq!(
            all[1].1,
            DisplayFields::new("Mon, 1 Jan 2024", "a@b", "subject 1")
        );
        assert_eq!(std::mem::size_of::<DisplayFields>(), 16);
        // One message alone takes only its own bytes.
        let alone = DisplayFields::new("d", "f", "s");
        let (block, _) = alone.0.as_ref().unwrap();
        assert_eq!(block.get().unwrap().len(), 6);
    }

    #[test]
    fn empty_display_fields_hold_nothing() {
        assert_eq!(DisplayFields::new("", "", ""), DisplayFields::default());
        let f = DisplayFields::new("", "", "Grüße");
        assert_eq!((f.date(), f.from(), f.subject()), ("", "", "Grüße"));
    }
}
