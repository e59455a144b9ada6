//! The shared vocabulary: small types that every layer (settings, imap, inventory, plan,
//! render, apply) names. A leaf: it imports nothing from the rest of the crate, so no layer
//! has to import a higher one to speak about sides, folders or special uses.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which side an inventory is for (in messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// The special-use attributes (RFC 6154) mailshift maps by meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
    /// A view, not storage (Gmail "All Mail").
    All,
    /// A view, not storage (Gmail "Starred").
    Flagged,
}

impl SpecialUse {
    /// Parses an attribute such as `\Sent` (case-insensitively; some servers send `\sent`).
    pub(crate) fn from_attribute(attr: &str) -> Option<SpecialUse> {
        let a = attr.strip_prefix('\\')?;
        Some(match a.to_ascii_lowercase().as_str() {
            "sent" => SpecialUse::Sent,
            "drafts" => SpecialUse::Drafts,
            "trash" => SpecialUse::Trash,
            "junk" => SpecialUse::Junk,
            "archive" => SpecialUse::Archive,
            "all" => SpecialUse::All,
            "flagged" => SpecialUse::Flagged,
            _ => return None,
        })
    }

    /// The attribute as written in plans: `\Sent`.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::All => "\\All",
            SpecialUse::Flagged => "\\Flagged",
        }
    }

    pub(crate) fn is_view(self) -> bool {
        matches!(self, SpecialUse::All | SpecialUse::Flagged)
    }
}

/// A folder's name exactly as the server has it on the wire: modified UTF-7 (RFC 3501
/// 5.1.3), with its namespace prefix and delimiter, LIST quoting removed. This is a folder's
/// identity (ARCHITECTURE.md "Folder mapping"); the decoded UTF-8 name is for display and
/// rules and stays a plain `String`.
///
/// Serialised as the bare string, so plan files are unchanged. The API is deliberately
/// small: no `Deref<Target = str>`, no `Display` and no `From<String>`, so a decoded display
/// name cannot be passed where a wire name is expected, and a wire name (`&AOQ-`) cannot be
/// printed where people expect the decoded one without an explicit [`WireName::as_str`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WireName(String);

impl WireName {
    /// Wraps a name that is already in wire form (as LIST returned it, or produced by the
    /// modified UTF-7 encoder).
    pub fn new(wire: impl Into<String>) -> Self {
        WireName(wire.into())
    }

    /// The wire form, for the IMAP layer (which quotes it) and for messages that show the
    /// server's own spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `INBOX`, the one name every server has.
    pub fn inbox() -> Self {
        WireName("INBOX".to_string())
    }

    /// INBOX, in any case (RFC 3501: `INBOX` is case-insensitive).
    pub(crate) fn is_inbox(&self) -> bool {
        self.0.eq_ignore_ascii_case("INBOX")
    }
}

/// Test-only conveniences: comparing with and building from a literal. Production code
/// goes through [`WireName::new`] and [`WireName::as_str`], so a display name never passes
/// for a wire name unnoticed.
#[cfg(test)]
mod wire_name_in_tests {
    use super::WireName;

    impl PartialEq<str> for WireName {
        fn eq(&self, other: &str) -> bool {
            self.0 == other
        }
    }

    impl PartialEq<&str> for WireName {
        fn eq(&self, other: &&str) -> bool {
            self.0 == *other
        }
    }

    impl From<&str> for WireName {
        fn from(s: &str) -> Self {
            WireName::new(s)
        }
    }
}

/// UIDVALIDITY / UIDNEXT / EXISTS of a folder at inventory time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderStatus {
    pub uidvalidity: u32,
    /// Missing on some servers' EXAMINE; then taken from STATUS; `None` if neither gave it.
    pub uidnext: Option<u32>,
    pub exists: u32,
}

/// SHA-256 of a message body (`BODY[TEXT]`, line endings normalised), used only to tell
/// apart messages that share an identity key. Serialised as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Lowercase hex, 64 characters.
    pub(crate) fn to_hex(self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex digits (either case); anything else is `None`.
    pub(crate) fn from_hex(s: &str) -> Option<Self> {
        parse_hex(s).map(ContentHash)
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ContentHash::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("a content hash must be 64 hex digits"))
    }
}

/// Lowercase hex of a 32-byte digest.
pub(crate) fn hex(bytes: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

/// 64 hex digits (either case) as 32 bytes.
pub(crate) fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_name_serialises_as_the_bare_string() {
        let w = WireName::new("INBOX.Entw&APw-rfe");
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#""INBOX.Entw&APw-rfe""#);
        assert_eq!(serde_json::from_str::<WireName>(&json).unwrap(), w);
        assert!(WireName::new("inbox").is_inbox());
        assert!(!WireName::new("INBOX.Sent").is_inbox());
    }

    #[test]
    fn content_hash_round_trips_as_hex() {
        let h = ContentHash([0xab; 32]);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), h);
        assert!(ContentHash::from_hex("zz").is_none());
    }
}
