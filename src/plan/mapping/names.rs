//! Folder-name helpers shared by the mapping rules: one side's view of its names
//! (prefix, delimiter, decoded paths, building wire names), `INBOX` case rules, and the
//! well-known localised special-folder names (ARCHITECTURE.md "Folder mapping", rule 4).

use crate::inventory::Inventory;
use crate::model::SpecialUse;
use crate::mutf7;

pub(crate) const INBOX: &str = "INBOX";

/// Upper-cases a first segment equal to `INBOX` in any case (RFC 3501: INBOX is
/// case-insensitive; every other name is case-sensitive).
pub(crate) fn normalize_inbox(segments: &mut [String]) {
    if let Some(first) = segments.first_mut() {
        if first.eq_ignore_ascii_case(INBOX) && first != INBOX {
            *first = INBOX.to_string();
        }
    }
}

/// `name` with a leading `INBOX` (any case, followed by `delimiter` or the end) written
/// upper-case: the key under which folders of one side are looked up.
pub(crate) fn inbox_key(name: &str, delimiter: Option<char>) -> String {
    let Some(head) = name.get(..INBOX.len()) else {
        return name.to_string();
    };
    let rest = &name[INBOX.len()..];
    let at_boundary = rest.is_empty() || delimiter.is_some_and(|d| rest.starts_with(d));
    if head.eq_ignore_ascii_case(INBOX) && at_boundary {
        format!("{INBOX}{rest}")
    } else {
        name.to_string()
    }
}

/// One side's naming conventions.
#[derive(Debug, Clone)]
pub(crate) struct NameStyle {
    /// Namespace prefix, decoded (e.g. `INBOX.`), `INBOX` upper-cased.
    pub prefix: String,
    pub delimiter: Option<char>,
}

impl NameStyle {
    pub(super) fn new(inventory: &Inventory) -> NameStyle {
        let prefix = mutf7::decode(&inventory.prefix).unwrap_or_else(|_| inventory.prefix.clone());
        NameStyle {
            prefix: inbox_key(&prefix, inventory.delimiter),
            delimiter: inventory.delimiter,
        }
    }

    /// The character joining segments in names we build: the delimiter, or `/` on a flat
    /// server (no hierarchy: the whole joined path becomes one name there).
    pub(super) fn joiner(&self) -> char {
        self.delimiter.unwrap_or('/')
    }

    /// A decoded folder name's path: prefix stripped (unless that leaves nothing), split on
    /// the delimiter (a flat server's name is one segment), first `INBOX` upper-cased.
    pub(super) fn segments(&self, decoded_name: &str) -> Vec<String> {
        let key = inbox_key(decoded_name, self.delimiter);
        let rest = match key.strip_prefix(self.prefix.as_str()) {
            Some(rest) if !rest.is_empty() => rest,
            _ => key.as_str(),
        };
        let mut segments: Vec<String> = match self.delimiter {
            Some(d) => rest.split(d).map(str::to_string).collect(),
            None => vec![rest.to_string()],
        };
        normalize_inbox(&mut segments);
        segments
    }

    /// The decoded full name for a path below this side's prefix. A first segment `INBOX`
    /// is this side's INBOX, and its children go below it (never `INBOX.INBOX.x`: repeated
    /// leading `INBOX` segments collapse). Segments must already be sanitised.
    pub(super) fn build(&self, segments: &[String]) -> String {
        let d = self.joiner().to_string();
        let mut segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        if segments
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case(INBOX))
        {
            while segments.len() >= 2 && segments[1].eq_ignore_ascii_case(INBOX) {
                segments.remove(1);
            }
            let mut name = INBOX.to_string();
            for s in &segments[1..] {
                name.push_str(&d);
                name.push_str(s);
            }
            return name;
        }
        format!("{}{}", self.prefix, segments.join(&d))
    }

    /// Display path: decoded, prefix stripped, `/` separator.
    pub(super) fn display(&self, decoded_name: &str) -> String {
        self.segments(decoded_name).join("/")
    }

    /// Proper ancestors of a decoded name that a CREATE could need, outermost first: never
    /// the namespace root (the prefix itself) nor anything shorter.
    pub(super) fn ancestors(&self, decoded_name: &str) -> Vec<String> {
        let Some(d) = self.delimiter else {
            return Vec::new();
        };
        let root = if inbox_key(decoded_name, self.delimiter).starts_with(self.prefix.as_str()) {
            self.prefix.len()
        } else {
            0
        };
        decoded_name
            .char_indices()
            .filter(|&(i, c)| c == d && i > 0 && i >= root)
            .map(|(i, _)| decoded_name[..i].to_string())
            .collect()
    }
}

/// Rule 6: a segment that contains `delimiter` gets it replaced by `_` (an empty segment
/// becomes `_` too, so every name we build is valid). Returns whether anything changed.
pub(crate) fn sanitize(segments: &mut [String], delimiter: Option<char>) -> bool {
    let mut changed = false;
    for s in segments.iter_mut() {
        if s.is_empty() {
            *s = "_".to_string();
            changed = true;
        } else if let Some(d) = delimiter.filter(|&d| s.contains(d)) {
            *s = s.replace(d, "_");
            changed = true;
        }
    }
    changed
}

/// The well-known localised names of each special folder (compared case-insensitively).
const WELL_KNOWN: &[(SpecialUse, &[&str])] = &[
    (
        SpecialUse::Sent,
        &[
            "Sent",
            "Sent Items",
            "Sent Messages",
            "Sent Mail",
            "Gesendete Elemente",
            "Gesendete Objekte",
            "Éléments envoyés",
            "Elementos enviados",
            "Posta inviata",
            "Verzonden items",
            "Отправленные",
        ],
    ),
    (
        SpecialUse::Drafts,
        &[
            "Drafts",
            "Entwürfe",
            "Brouillons",
            "Borradores",
            "Bozze",
            "Concepten",
            "Черновики",
        ],
    ),
    (
        SpecialUse::Trash,
        &[
            "Trash",
            "Deleted Items",
            "Deleted Messages",
            "Papierkorb",
            "Gelöschte Elemente",
            "Corbeille",
            "Éléments supprimés",
            "Papelera",
            "Cestino",
            "Prullenbak",
            "Удаленные",
        ],
    ),
    (
        SpecialUse::Junk,
        &[
            "Junk",
            "Junk E-mail",
            "Junk Email",
            "Spam",
            "Bulk Mail",
            "Courrier indésirable",
        ],
    ),
    (SpecialUse::Archive, &["Archive", "Archives", "Archiv"]),
];

/// The special use a path stands for by its name: a well-known name at the top level or
/// directly below INBOX.
pub(crate) fn well_known(segments: &[String]) -> Option<SpecialUse> {
    let name = match segments {
        [name] => name,
        [inbox, name] if inbox == INBOX => name,
        _ => return None,
    };
    let lower = name.to_lowercase();
    WELL_KNOWN
        .iter()
        .find(|(_, names)| names.iter().any(|n| n.to_lowercase() == lower))
        .map(|(use_, _)| *use_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(prefix: &str, delimiter: Option<char>) -> NameStyle {
        NameStyle::new(&Inventory {
            prefix: prefix.to_string(),
            delimiter,
            folders: Vec::new(),
            limits: Default::default(),
        })
    }

    fn segs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn segments_strip_prefix_and_split() {
        let classic = side("INBOX.", Some('.'));
        assert_eq!(
            classic.segments("INBOX.Projects.2024"),
            segs(&["Projects", "2024"])
        );
        assert_eq!(classic.segments("INBOX"), segs(&["INBOX"]));
        assert_eq!(classic.segments("inbox.Sent"), segs(&["Sent"]));
        assert_eq!(classic.segments("INBOX.INBOX.x"), segs(&["INBOX", "x"]));
        let modern = side("", Some('/'));
        assert_eq!(modern.segments("INBOX/x"), segs(&["INBOX", "x"]));
        assert_eq!(modern.segments("Inbox"), segs(&["INBOX"]));
        assert_eq!(modern.segments("Inboxes/x"), segs(&["Inboxes", "x"]));
        let flat = side("", None);
        assert_eq!(flat.segments("a.b/c"), segs(&["a.b/c"]));
    }

    #[test]
    fn build_places_inbox_children_below_inbox() {
        let classic = side("INBOX.", Some('.'));
        assert_eq!(classic.build(&segs(&["INBOX"])), "INBOX");
        assert_eq!(classic.build(&segs(&["INBOX", "x"])), "INBOX.x");
        assert_eq!(classic.build(&segs(&["inbox", "INBOX", "x"])), "INBOX.x");
        assert_eq!(classic.build(&segs(&["Sent"])), "INBOX.Sent");
        let modern = side("", Some('/'));
        assert_eq!(modern.build(&segs(&["INBOX", "x"])), "INBOX/x");
        assert_eq!(modern.build(&segs(&["a", "b"])), "a/b");
        let flat = side("", None);
        assert_eq!(flat.build(&segs(&["a", "b"])), "a/b");
    }

    #[test]
    fn ancestors_stop_at_the_namespace_root() {
        let classic = side("INBOX.", Some('.'));
        assert_eq!(
            classic.ancestors("INBOX.a.b.c"),
            segs(&["INBOX.a", "INBOX.a.b"])
        );
        assert!(classic.ancestors("INBOX.a").is_empty());
        let modern = side("", Some('/'));
        assert_eq!(modern.ancestors("a/b/c"), segs(&["a", "a/b"]));
        assert_eq!(modern.ancestors("INBOX/a/b"), segs(&["INBOX", "INBOX/a"]));
        assert!(side("", None).ancestors("a/b").is_empty());
    }

    #[test]
    fn sanitize_replaces_the_delimiter_visibly() {
        let mut s = segs(&["a/b", "c", ""]);
        assert!(sanitize(&mut s, Some('/')));
        assert_eq!(s, segs(&["a_b", "c", "_"]));
        let mut s = segs(&["a.b"]);
        assert!(!sanitize(&mut s, Some('/')));
        assert!(!sanitize(&mut s, None));
    }

    #[test]
    fn well_known_names_top_level_or_below_inbox() {
        assert_eq!(well_known(&segs(&["sent items"])), Some(SpecialUse::Sent));
        assert_eq!(
            well_known(&segs(&["INBOX", "Gesendete Objekte"])),
            Some(SpecialUse::Sent)
        );
        assert_eq!(
            well_known(&segs(&["ÉLÉMENTS ENVOYÉS"])),
            Some(SpecialUse::Sent)
        );
        assert_eq!(well_known(&segs(&["Entwürfe"])), Some(SpecialUse::Drafts));
        assert_eq!(well_known(&segs(&["Удаленные"])), Some(SpecialUse::Trash));
        assert_eq!(well_known(&segs(&["Spam"])), Some(SpecialUse::Junk));
        assert_eq!(well_known(&segs(&["archiv"])), Some(SpecialUse::Archive));
        assert_eq!(well_known(&segs(&["Projects", "Sent"])), None);
        assert_eq!(well_known(&segs(&["INBOX"])), None);
        assert_eq!(well_known(&segs(&["Sentinel"])), None);
    }
}
