//! Small pure helpers for the IMAP wire format: quoting names into commands, undoing the
//! quoting imap-proto leaves in LIST names, UID sets, and INTERNALDATE → RFC 3339.

/// Quotes `s` as an IMAP quoted string. `None` if it cannot be one (CR, LF or NUL).
pub(crate) fn quote(s: &str) -> Option<String> {
    if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

/// imap-proto 0.17 hands back quoted strings with their escapes (`\"`, `\\`) still in
/// place (verified with Dovecot 2.3 on names containing `"` and `\`). Undo them so the name
/// can be quoted again.
pub(crate) fn unescape_quoted(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Compresses UIDs (any order, duplicates allowed) into an IMAP sequence set such as
/// `1:3,7,9:10`, split so that no set is longer than `max_len` characters.
pub(crate) fn uid_sets(uids: &[u32], max_len: usize) -> Vec<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut sets = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        i += 1;
        let item = if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        };
        if !current.is_empty() && current.len() + 1 + item.len() > max_len {
            sets.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&item);
    }
    if !current.is_empty() {
        sets.push(current);
    }
    sets
}

/// `17-Jul-1996 02:44:25 -0700` (day possibly space-padded) → `1996-07-17T02:44:25-07:00`.
pub(crate) fn internal_date_to_rfc3339(s: &str) -> Option<String> {
    let s = s.trim();
    chrono::DateTime::parse_from_str(s, "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.to_rfc3339())
}

/// Flags as kept by the inventory: `\Recent` (session state, not storable) removed.
pub(crate) fn keep_flag(flag: &str) -> bool {
    !flag.eq_ignore_ascii_case("\\Recent")
}

/// The UID and the whole body (`BODY[]` or `RFC822`) of one FETCH answer, when it has both.
pub(crate) fn uid_and_body<'a>(
    attrs: &'a [imap_proto::AttributeValue<'_>],
) -> Option<(u32, &'a [u8])> {
    let (mut uid, mut body) = (None, None);
    for attr in attrs {
        match attr {
            imap_proto::AttributeValue::Uid(u) => uid = Some(*u),
            imap_proto::AttributeValue::BodySection {
                section: None,
                data: Some(d),
                ..
            }
            | imap_proto::AttributeValue::Rfc822(Some(d)) => body = Some(d.as_ref()),
            _ => {}
        }
    }
    Some((uid?, body?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quote_escapes_quotes_and_backslashes() {
        assert_eq!(quote("Sent").unwrap(), r#""Sent""#);
        assert_eq!(quote(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert_eq!(quote(""), Some("\"\"".to_string()));
        assert_eq!(quote("a\r\nb"), None);
    }

    #[test]
    fn unescape_undoes_quote() {
        assert_eq!(unescape_quoted(r#"a\"b\\c"#), r#"a"b\c"#);
        assert_eq!(unescape_quoted("plain"), "plain");
    }

    proptest! {
        #[test]
        fn quote_then_unescape_round_trips(s in "[ -~]{0,20}") {
            let q = quote(&s).unwrap();
            prop_assert_eq!(unescape_quoted(&q[1..q.len() - 1]), s);
        }

        #[test]
        fn uid_sets_cover_exactly_the_input(uids in proptest::collection::vec(1u32..200, 0..80)) {
            let sets = uid_sets(&uids, 30);
            let mut got = Vec::new();
            for set in &sets {
                prop_assert!(set.len() <= 30);
                for item in set.split(',') {
                    match item.split_once(':') {
                        Some((a, b)) => got.extend(a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()),
                        None => got.push(item.parse::<u32>().unwrap()),
                    }
                }
            }
            let mut want = uids.clone();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_sets(&[3, 1, 2, 7, 9, 10, 10], 100), vec!["1:3,7,9:10"]);
        assert_eq!(uid_sets(&[1, 3, 5], 3), vec!["1,3", "5"]);
        assert!(uid_sets(&[], 10).is_empty());
    }

    #[test]
    fn internal_dates() {
        let cases = [
            (
                "17-Jul-1996 02:44:25 -0700",
                Some("1996-07-17T02:44:25-07:00"),
            ),
            (
                " 7-Jul-1996 02:44:25 +0000",
                Some("1996-07-07T02:44:25+00:00"),
            ),
            (
                "07-Jan-2024 23:59:59 +0530",
                Some("2024-01-07T23:59:59+05:30"),
            ),
            ("garbage", None),
        ];
        for (input, want) in cases {
            assert_eq!(internal_date_to_rfc3339(input).as_deref(), want, "{input}");
        }
    }

    proptest! {
        /// Issue 10: the inventory keeps INTERNALDATE as an instant and an offset
        /// (`message::InternalDate`). Every date-time the reader accepts goes through it
        /// and reaches the APPEND as the same text (day zero-padded) with the same offset.
        #[test]
        fn internal_dates_survive_the_compact_form(
            day in 1u32..=28, month in 0usize..12, year in 1i32..=9999,
            h in 0u32..24, m in 0u32..60, s in 0u32..60,
            sign in prop::bool::ANY, oh in 0u32..24, om in 0u32..60,
            space_padded in prop::bool::ANY,
        ) {
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let zone = format!("{}{oh:02}{om:02}", if sign { '-' } else { '+' });
            let rest = format!("-{}-{year:04} {h:02}:{m:02}:{s:02} {zone}", MONTHS[month]);
            let input = if space_padded && day < 10 { format!(" {day}{rest}") } else { format!("{day:02}{rest}") };
            // `-0000` (RFC 5322: zone unknown) is read as UTC and sent as `+0000`, as
            // before the compact form.
            let rest = rest.replace("-0000", "+0000");
            let rfc = internal_date_to_rfc3339(&input).expect("the reader accepts it");
            let compact = crate::message::InternalDate::from_rfc3339(&rfc).expect("compact");
            prop_assert_eq!(compact.to_rfc3339(), rfc.clone());
            prop_assert_eq!(
                crate::imap::writer::rfc3339_to_internal_date(&compact.to_rfc3339()),
                Some(format!("{day:02}{rest}"))
            );
        }
    }

    #[test]
    fn recent_is_dropped_keywords_kept() {
        let flags = ["\\Seen", "\\Recent", "\\recent", "$Forwarded", "Custom"];
        let kept: Vec<_> = flags.into_iter().filter(|f| keep_flag(f)).collect();
        assert_eq!(kept, ["\\Seen", "$Forwarded", "Custom"]);
    }
}
