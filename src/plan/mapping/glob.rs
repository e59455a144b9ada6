//! `[folders] exclude` globs, matched segment by segment against a decoded source path
//! (`/` separator, prefix stripped). `*` matches within one segment, `?` one character,
//! a trailing `/**` everything strictly below, a `**` elsewhere zero or more segments.
//! Case-sensitive, except a first segment `INBOX` (any case), as IMAP itself does.

use super::names::normalize_inbox;

/// Does `pattern` match the path given by its segments (first `INBOX` already upper-cased)?
pub(crate) fn matches(pattern: &str, path: &[String]) -> bool {
    let mut pattern: Vec<String> = pattern.split('/').map(str::to_string).collect();
    normalize_inbox(&mut pattern);
    let pattern: Vec<&str> = pattern.iter().map(String::as_str).collect();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match_segments(&pattern, &path)
}

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        // `X/**` (or a bare `**`): strictly below, at least one segment.
        Some((&"**", [])) => !path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                match_segment(first, segment) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*` and `?` within one segment (iterative, with one backtrack point: linear-ish and no
/// recursion depth issues on long names).
fn match_segment(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        let mut v: Vec<String> = p.split('/').map(str::to_string).collect();
        normalize_inbox(&mut v);
        v
    }

    #[test]
    fn glob_table() {
        let table = [
            ("Spam", "Spam", true),
            ("Spam", "Spam/x", false),
            ("Spam", "spam", false),
            ("Spam/**", "Spam", false),
            ("Spam/**", "Spam/x", true),
            ("Spam/**", "Spam/x/y", true),
            ("**", "a/b", true),
            ("**/Old", "Old", true),
            ("**/Old", "a/b/Old", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("Arch*", "Archive", true),
            ("Arch*", "Archive/2019", false),
            ("*/2019", "Archive/2019", true),
            ("20??", "2019", true),
            ("20??", "201", false),
            ("*.bak", "x.bak", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("inbox/Spam", "INBOX/Spam", true),
            ("INBOX/spam", "INBOX/Spam", false),
            ("Éléments*", "Éléments envoyés", true),
            ("??", "台北", true),
        ];
        for (pattern, p, expected) in table {
            assert_eq!(matches(pattern, &path(p)), expected, "{pattern} vs {p}");
        }
    }
}
