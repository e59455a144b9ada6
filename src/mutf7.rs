//! Modified UTF-7 (RFC 3501 §5.1.3) folder-name codec.
//!
//! IMAP folder names travel as modified UTF-7: printable ASCII stands for itself (`&` is
//! written `&-`), everything else is UTF-16 in a base64 variant (`,` instead of `/`, no
//! padding) between `&` and `-`. We write our own codec because the `utf7-imap` crate panics
//! on bad input, and because the decoder must be *strict*: the raw wire name is a folder's
//! identity, so [`decode`] accepts only the one canonical spelling [`encode`] produces.
//! Anything else (a non-canonical or broken name from some old server) is an error and the
//! caller keeps the raw wire name for display.

use thiserror::Error;

/// Why a wire name is not canonical modified UTF-7. Every variant names the whole input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum Mutf7Error {
    #[error("invalid modified UTF-7 name `{name}`: `&` sequence is not terminated by `-`")]
    Unterminated { name: String },
    #[error("invalid modified UTF-7 name `{name}`: `{found}` is not a modified base64 character")]
    BadBase64 { name: String, found: char },
    #[error("invalid modified UTF-7 name `{name}`: encoded run has a bad length or non-zero padding bits")]
    BadPadding { name: String },
    #[error("invalid modified UTF-7 name `{name}`: encoded run is not valid UTF-16 (odd length or unpaired surrogate)")]
    BadUtf16 { name: String },
    #[error("invalid modified UTF-7 name `{name}`: encoded run holds printable ASCII, which must be written as itself")]
    EncodedAscii { name: String },
    #[error("invalid modified UTF-7 name `{name}`: two adjacent encoded runs must be one run")]
    AdjacentRuns { name: String },
    #[error("invalid modified UTF-7 name `{name}`: `{found:?}` must be encoded, not sent raw")]
    RawCharacter { name: String, found: char },
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Characters that represent themselves (RFC 3501: 0x20..=0x7e; `&` is escaped as `&-`).
fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

fn base64_value(c: char) -> Option<u32> {
    Some(match c {
        'A'..='Z' => c as u32 - 'A' as u32,
        'a'..='z' => c as u32 - 'a' as u32 + 26,
        '0'..='9' => c as u32 - '0' as u32 + 52,
        '+' => 62,
        ',' => 63,
        _ => return None,
    })
}

/// Encodes a UTF-8 folder name as modified UTF-7. Total: every string has one encoding.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush_run(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_run(&mut run, &mut out);
    out
}

/// Writes `&<modified base64 of the UTF-16 units>-` and empties the run.
fn flush_run(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for unit in run.drain(..) {
        bits = (bits << 16) | u32::from(unit);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 0x3f) as usize] as char);
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 0x3f) as usize] as char);
    }
    out.push('-');
}

/// Decodes a wire name, accepting only the canonical form: whenever this succeeds,
/// `encode(&decode(w)?) == w`.
pub(crate) fn decode(wire: &str) -> Result<String, Mutf7Error> {
    let name = || wire.to_string();
    let mut out = String::with_capacity(wire.len());
    let mut chars = wire.chars().peekable();
    // True right after an encoded run: another `&` run there should have been one run.
    let mut after_run = false;
    while let Some(c) = chars.next() {
        if c != '&' {
            if !is_direct(c) {
                return Err(Mutf7Error::RawCharacter {
                    name: name(),
                    found: c,
                });
            }
            out.push(c);
            after_run = false;
            continue;
        }
        if chars.peek() == Some(&'-') {
            chars.next();
            out.push('&');
            after_run = false;
            continue;
        }
        if after_run {
            return Err(Mutf7Error::AdjacentRuns { name: name() });
        }
        let mut units: Vec<u16> = Vec::new();
        let mut bits: u32 = 0;
        let mut nbits = 0;
        let mut terminated = false;
        for c in chars.by_ref() {
            if c == '-' {
                terminated = true;
                break;
            }
            let Some(v) = base64_value(c) else {
                return Err(Mutf7Error::BadBase64 {
                    name: name(),
                    found: c,
                });
            };
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push((bits >> nbits) as u16);
                bits &= (1 << nbits) - 1;
            }
        }
        if !terminated {
            return Err(Mutf7Error::Unterminated { name: name() });
        }
        // Canonical runs end with fewer than 6 leftover bits, all zero (a whole leftover
        // character would be superfluous).
        if nbits >= 6 || bits != 0 {
            return Err(Mutf7Error::BadPadding { name: name() });
        }
        // Unreachable after the checks above (`&-` is the only empty run), kept as a guard.
        if units.is_empty() {
            return Err(Mutf7Error::BadPadding { name: name() });
        }
        for decoded in char::decode_utf16(units.iter().copied()) {
            let c = decoded.map_err(|_| Mutf7Error::BadUtf16 { name: name() })?;
            if is_direct(c) {
                return Err(Mutf7Error::EncodedAscii { name: name() });
            }
            out.push(c);
        }
        after_run = true;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_and_common_examples_roundtrip() {
        let table = [
            ("INBOX", "INBOX"),
            ("&-", "&"),
            ("Tom &- Jerry", "Tom & Jerry"),
            ("Entw&APw-rfe", "Entwürfe"),
            ("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),
            ("&AMk-l&AOk-ments envoy&AOk-s", "Éléments envoyés"),
            ("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "Отправленные"),
            ("&2D3eAA-", "😀"),
            ("&AOkA6QDp-", "ééé"),
            ("a&AAk-b", "a\tb"),
            ("", ""),
        ];
        for (wire, utf8) in table {
            assert_eq!(decode(wire).as_deref(), Ok(utf8), "decode {wire}");
            assert_eq!(encode(utf8), wire, "encode {utf8}");
        }
    }

    /// Recognises the expected error variant.
    type Expect = fn(&Mutf7Error) -> bool;

    #[test]
    fn rejects_malformed_and_non_canonical() {
        let table: &[(&str, Expect)] = &[
            ("&AOk", |e| matches!(e, Mutf7Error::Unterminated { .. })),
            ("a&", |e| matches!(e, Mutf7Error::Unterminated { .. })),
            ("&AO.k-", |e| {
                matches!(e, Mutf7Error::BadBase64 { found: '.', .. })
            }),
            ("&AO/-", |e| {
                matches!(e, Mutf7Error::BadBase64 { found: '/', .. })
            }),
            ("&AOl-", |e| matches!(e, Mutf7Error::BadPadding { .. })), // low bits set
            ("&AOkA-", |e| matches!(e, Mutf7Error::BadPadding { .. })), // superfluous char
            ("&A-", |e| matches!(e, Mutf7Error::BadPadding { .. })),
            ("&AOkA6QA-", |e| matches!(e, Mutf7Error::BadPadding { .. })), // 42 bits
            ("&2D0-", |e| matches!(e, Mutf7Error::BadUtf16 { .. })),       // lone high surrogate
            ("&3gA-", |e| matches!(e, Mutf7Error::BadUtf16 { .. })),       // lone low surrogate
            ("&AGE-", |e| matches!(e, Mutf7Error::EncodedAscii { .. })),   // "a"
            ("&AOkAYQ-", |e| matches!(e, Mutf7Error::EncodedAscii { .. })), // "éa"
            ("&ACY-", |e| matches!(e, Mutf7Error::EncodedAscii { .. })),   // "&" encoded
            ("&AOk-&AOk-", |e| {
                matches!(e, Mutf7Error::AdjacentRuns { .. })
            }),
            ("Entwürfe", |e| {
                matches!(e, Mutf7Error::RawCharacter { found: 'ü', .. })
            }),
            ("a\tb", |e| matches!(e, Mutf7Error::RawCharacter { .. })),
        ];
        for (wire, expected) in table {
            let err = decode(wire).expect_err(wire);
            assert!(expected(&err), "{wire}: unexpected {err:?}");
            assert!(err.to_string().contains(&format!("`{wire}`")), "{err}");
        }
        // `&-` between two runs keeps them apart legitimately.
        assert_eq!(decode("&AOk-&-&AOk-").as_deref(), Ok("é&é"));
    }

    proptest! {
        #[test]
        fn roundtrip_any_string(s in any::<String>()) {
            let wire = encode(&s);
            prop_assert!(wire.chars().all(is_direct), "{wire:?}");
            prop_assert_eq!(decode(&wire), Ok(s));
        }

        #[test]
        fn roundtrip_mostly_ascii(s in "[a-z&. /]{0,6}[éü台😀\t]{0,3}[a-z&-]{0,4}[é\u{0}]{0,2}") {
            prop_assert_eq!(decode(&encode(&s)), Ok(s));
        }

        #[test]
        fn decode_accepts_only_canonical(w in "[A-Za-z0-9+,&\\-./é]{0,16}") {
            if let Ok(s) = decode(&w) {
                prop_assert_eq!(encode(&s), w);
            }
        }

        #[test]
        fn decode_never_panics(w in any::<String>()) {
            if let Ok(s) = decode(&w) {
                prop_assert_eq!(encode(&s), w);
            }
        }
    }
}
