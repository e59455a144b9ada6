//! Our own parser for the NAMESPACE response (RFC 2342). imap-proto 0.17 cannot parse
//! `* NAMESPACE (("" "/")) NIL NIL` (Dovecot's answer); the parse error closes async-imap's
//! read side and every later command "succeeds" empty. So NAMESPACE is sent raw and its
//! answer read here.

/// The personal namespace: the prefix every folder name starts with (`""` or `INBOX.`),
/// and its hierarchy delimiter (`None` for a flat server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub prefix: String,
    pub delimiter: Option<char>,
}

/// One token tree of an IMAP response.
#[derive(Debug, PartialEq)]
enum Sexp {
    List(Vec<Sexp>),
    Str(Vec<u8>),
    Atom(String),
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn skip_spaces(&mut self) {
        while self.input.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    fn item(&mut self) -> Result<Sexp, String> {
        self.skip_spaces();
        match self.input.get(self.pos) {
            None => Err("unexpected end".into()),
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    match self.input.get(self.pos) {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Sexp::List(items));
                        }
                        None => return Err("unclosed `(`".into()),
                        _ => items.push(self.item()?),
                    }
                }
            }
            Some(b'"') => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.input.get(self.pos) {
                        None => return Err("unclosed quoted string".into()),
                        Some(b'"') => {
                            self.pos += 1;
                            return Ok(Sexp::Str(out));
                        }
                        Some(b'\\') => {
                            let c = *self.input.get(self.pos + 1).ok_or("dangling `\\`")?;
                            out.push(c);
                            self.pos += 2;
                        }
                        Some(&c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            Some(b'{') => {
                let close = self.input[self.pos..]
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or("unclosed literal size")?
                    + self.pos;
                let size: usize = std::str::from_utf8(&self.input[self.pos + 1..close])
                    .ok()
                    .map(|s| s.trim_end_matches('+'))
                    .and_then(|s| s.parse().ok())
                    .ok_or("bad literal size")?;
                let start = close + 1;
                let start = if self.input[start..].starts_with(b"\r\n") {
                    start + 2
                } else {
                    return Err("literal without CRLF".into());
                };
                let data = self
                    .input
                    .get(start..start + size)
                    .ok_or("literal shorter than announced")?;
                self.pos = start + size;
                Ok(Sexp::Str(data.to_vec()))
            }
            Some(_) => {
                let start = self.pos;
                while let Some(&b) = self.input.get(self.pos) {
                    if matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n') {
                        break;
                    }
                    self.pos += 1;
                }
                if start == self.pos {
                    return Err(format!("unexpected byte {:?}", self.input[start] as char));
                }
                Ok(Sexp::Atom(
                    String::from_utf8_lossy(&self.input[start..self.pos]).into_owned(),
                ))
            }
        }
    }
}

/// Parses the data after `* NAMESPACE ` (the three namespace lists, possibly with the
/// trailing CRLF) and returns the first personal namespace. `Ok(None)` when the personal
/// namespace is `NIL`.
pub(crate) fn parse_namespace_data(data: &[u8]) -> Result<Option<Namespace>, String> {
    let mut p = Parser {
        input: data,
        pos: 0,
    };
    // Other users' and shared namespaces are read only to check the syntax.
    let personal = p.item()?;
    p.item()?;
    p.item()?;
    let entries = match personal {
        Sexp::Atom(a) if a.eq_ignore_ascii_case("NIL") => return Ok(None),
        Sexp::List(entries) => entries,
        other => return Err(format!("personal namespace is not a list: {other:?}")),
    };
    let Some(Sexp::List(first)) = entries.into_iter().next() else {
        return Err("empty personal namespace list".into());
    };
    let mut fields = first.into_iter();
    let prefix = match fields.next() {
        Some(Sexp::Str(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Some(Sexp::Atom(a)) if !a.eq_ignore_ascii_case("NIL") => a,
        other => return Err(format!("bad namespace prefix: {other:?}")),
    };
    let delimiter = match fields.next() {
        Some(Sexp::Str(bytes)) => {
            let s = String::from_utf8_lossy(&bytes).into_owned();
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => return Err(format!("bad namespace delimiter `{s}`")),
            }
        }
        Some(Sexp::Atom(a)) if a.eq_ignore_ascii_case("NIL") => None,
        other => return Err(format!("bad namespace delimiter: {other:?}")),
    };
    Ok(Some(Namespace { prefix, delimiter }))
}

/// If `response` (one full untagged response) is `* NAMESPACE ...`, its data part.
pub(crate) fn namespace_data(response: &[u8]) -> Option<&[u8]> {
    let rest = response.strip_prefix(b"* ")?;
    let keyword = rest.get(..10)?;
    if keyword.eq_ignore_ascii_case(b"NAMESPACE ") {
        Some(&rest[10..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(prefix: &str, delimiter: Option<char>) -> Option<Namespace> {
        Some(Namespace {
            prefix: prefix.into(),
            delimiter,
        })
    }

    #[test]
    fn parses_real_server_answers() {
        let cases: &[(&[u8], Option<Namespace>)] = &[
            // Dovecot, modern layout.
            (b"((\"\" \"/\")) NIL NIL\r\n", ns("", Some('/'))),
            // Courier / Cyrus / Dovecot classic layout.
            (b"((\"INBOX.\" \".\")) NIL NIL", ns("INBOX.", Some('.'))),
            // No personal namespace at all.
            (b"NIL NIL NIL", None),
            // Flat server: NIL delimiter.
            (b"((\"\" NIL)) NIL NIL", ns("", None)),
            // Escaped delimiter (backslash), other and shared namespaces present.
            (
                b"((\"\" \"\\\\\")) ((\"~\" \"\\\\\")) ((\"#shared\\\\\" \"\\\\\"))",
                ns("", Some('\\')),
            ),
            // Several personal namespaces: the first one counts; extensions are skipped.
            (
                b"((\"INBOX/\" \"/\" \"X-PARAM\" (\"A\" \"B\")) (\"Mail/\" \"/\")) NIL ((\"Public/\" \"/\"))",
                ns("INBOX/", Some('/')),
            ),
            // Prefix as a literal.
            (b"(({6}\r\nINBOX. \".\")) NIL NIL", ns("INBOX.", Some('.'))),
            // Lower-case nil.
            (b"nil nil nil", None),
        ];
        for (input, want) in cases {
            let got = parse_namespace_data(input);
            assert_eq!(got.as_ref(), Ok(want), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn rejects_broken_answers() {
        for input in [
            &b"((\"\" \"/\")"[..],
            b"((\"\" \"/\")) NIL",
            b"((\"unterminated \"/\")) NIL NIL",
            b"(({10}\r\nshort \"/\")) NIL NIL",
            b"((\"\" \"//\")) NIL NIL",
            b"(()) NIL NIL",
        ] {
            assert!(
                parse_namespace_data(input).is_err(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn recognises_the_namespace_response() {
        assert_eq!(
            namespace_data(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"),
            Some(&b"((\"\" \"/\")) NIL NIL\r\n"[..])
        );
        assert_eq!(
            namespace_data(b"* namespace NIL NIL NIL"),
            Some(&b"NIL NIL NIL"[..])
        );
        assert_eq!(namespace_data(b"* OK still here"), None);
    }
}
