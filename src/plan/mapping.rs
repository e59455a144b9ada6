//! Folder mapping (ARCHITECTURE.md "Folder mapping"): which destination folder each source
//! folder goes to, and which destination folders must be created. Pure: no I/O.
//!
//! Rules, in order: (1) views (`\All`, `\Flagged`) are dropped unless `include-views`;
//! (2) `exclude` globs drop a folder or subtree; (3) `[folders.rename]` prefix rules (the
//! longest matching prefix wins; the target is final apart from delimiter and prefix
//! translation); (4) special use, by attribute or, on a side where no folder carries the
//! attribute, by well-known localised name, with subfolders following their parent;
//! (5) the default: strip the source prefix, split on the source delimiter, join with the
//! destination's, add its prefix, a first segment `INBOX` being the destination's INBOX;
//! (6) a destination delimiter inside a segment becomes `_`, visibly.
//!
//! Rules see decoded paths (prefix stripped, `/` separator); wire names (modified UTF-7)
//! are only produced at the end. Several source folders may land on one destination
//! folder: that is a merge, allowed and flagged (a "collision" when `_` replacement caused
//! it).

mod glob;
mod names;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::inventory::{Folder, Inventory};
use crate::model::{SpecialUse, WireName};
use crate::mutf7;
use crate::settings::{FolderRules, ViewOnlyMessages};
use names::{inbox_key, normalize_inbox, sanitize, well_known, NameStyle, INBOX};

/// The mapping of one account: one entry per source folder, in source LIST order, and the
/// destination folders to create, parents first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FolderMap {
    pub entries: Vec<MappedFolder>,
    /// Destination folders that do not exist (or exist only as `\Noselect`) and that the
    /// mapping needs, parents before children. Filter with [`FolderMap::creations`].
    pub to_create: Vec<FolderToCreate>,
}

/// One source folder and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MappedFolder {
    /// Wire name on the source (modified UTF-7): its identity.
    pub source_wire: WireName,
    /// Decoded path, source prefix stripped, `/` separator (what rules and globs see).
    pub source_path: String,
    /// The source folder is `\Noselect` / `\NonExistent` (holds no messages).
    pub source_noselect: bool,
    pub outcome: Disposition,
}

/// What happens to a source folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub(crate) enum Disposition {
    /// Rule 1: a view (`\All` or `\Flagged`), skipped because `include-views` is off.
    View { attribute: SpecialUse },
    /// Rule 2: dropped by this `exclude` glob (the first that matched).
    Excluded { glob: String },
    /// Never created: the decoded name holds a control character (e.g. `&AAA-`, a NUL),
    /// which no client can show and some servers store truncated.
    UnsafeName { character: char },
    /// Copied into this destination folder.
    Mapped(Target),
}

/// The destination folder a source folder maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Target {
    /// Wire name on the destination: modified UTF-7, with its prefix and delimiter.
    pub wire_name: WireName,
    /// Decoded display path on the destination (prefix stripped, `/` separator).
    pub path: String,
    pub rule: Rule,
    /// The source folder's own special use (by attribute or well-known name), if any,
    /// whatever rule decided; e.g. for `(\Sent)` in the plan.
    pub special_use: Option<SpecialUse>,
    /// Rule 6 replaced a destination delimiter (or an empty segment) by `_` in the path.
    pub replaced_delimiter: bool,
    /// The folder is in the destination's LIST (INBOX always counts as existing).
    pub exists: bool,
    /// It exists on the destination as `\Noselect` / `\NonExistent`.
    pub noselect: bool,
    /// When two or more source folders land here: all of their wire names, in source LIST
    /// order (this one included). Empty otherwise.
    pub merged_from: Vec<WireName>,
    /// The merge happened because of `_` replacement: distinct source names collided.
    pub collision: bool,
    /// The mapped name had no exact match on the destination but one that differs only in
    /// case, which it follows (Exchange and Gmail refuse a second such folder).
    #[serde(default)]
    pub case_match: bool,
}

impl Target {
    pub(crate) fn is_merge(&self) -> bool {
        self.merged_from.len() >= 2
    }
}

/// Which rule chose a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub(crate) enum Rule {
    /// Rule 3: the `[folders.rename]` entry `from = to` (longest matching prefix).
    Rename { from: String, to: String },
    /// Rule 4: the source folder's special use found a destination folder.
    SpecialUse {
        special_use: SpecialUse,
        /// How the source folder was recognised.
        source: Evidence,
        /// How the destination folder was found.
        destination: Evidence,
    },
    /// Rule 4: below a special folder, following it (`Sent Items/2023` → `Sent/2023`).
    FollowsParent {
        /// Source path of the special ancestor.
        parent: String,
        special_use: SpecialUse,
    },
    /// Rule 5 (and 6).
    Default,
    /// "After cutover": a `\All` view that is not copied whole; the messages found only
    /// in it (Gmail's archived mail) go to the destination's archive folder
    /// (`view-only-messages = "archive"`).
    ViewOnly { attribute: SpecialUse },
}

/// How a special folder was recognised on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Evidence {
    /// It carries the special-use attribute.
    Attribute,
    /// No folder on that side carries the attribute; its name is a well-known one.
    WellKnownName,
}

/// A destination folder the plan may create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FolderToCreate {
    /// Wire name on the destination (modified UTF-7, prefix and delimiter included).
    pub wire_name: WireName,
    /// Decoded display path (prefix stripped, `/` separator).
    pub path: String,
    pub reason: CreateReason,
    /// Subscribe after creating: at least one of its source folders is subscribed.
    pub subscribe: bool,
    /// Create it only when a message must go into it (or a created folder needs it as a
    /// parent): its sources are all `\Noselect`, or it already exists as `\Noselect`.
    pub only_if_needed: bool,
    /// Source wire names that map here (empty for a missing parent).
    pub sources: Vec<WireName>,
    /// The wire name of its parent when that parent is also in `to_create` (earlier).
    pub parent: Option<WireName>,
}

/// Why a destination folder is in `to_create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CreateReason {
    /// Source folders map to it and it does not exist.
    Missing,
    /// A folder to create lies below it and it does not exist.
    MissingParent,
    /// It exists only as `\Noselect`; selectable source folders map to it.
    NoselectOnDestination,
}

impl FolderMap {
    /// The mapping of the source folder with this wire name, if it is mapped.
    #[cfg(test)]
    pub(crate) fn target(&self, source_wire: &str) -> Option<&Target> {
        self.entries
            .iter()
            .find(|e| e.source_wire.as_str() == source_wire)
            .and_then(|e| match &e.outcome {
                Disposition::Mapped(t) => Some(t),
                _ => None,
            })
    }

    /// The folders to actually create, parents first: every unconditional entry, every
    /// `only_if_needed` entry for which `receives_messages(wire_name)` is true, and every
    /// parent of a kept entry.
    pub(crate) fn creations(
        &self,
        receives_messages: impl Fn(&WireName) -> bool,
    ) -> Vec<&FolderToCreate> {
        let mut needed: HashSet<&WireName> = HashSet::new();
        let mut kept: Vec<&FolderToCreate> = Vec::new();
        for f in self.to_create.iter().rev() {
            let keep = !f.only_if_needed
                || needed.contains(&f.wire_name)
                || receives_messages(&f.wire_name);
            if keep {
                if let Some(p) = &f.parent {
                    needed.insert(p);
                }
                kept.push(f);
            }
        }
        kept.reverse();
        kept
    }
}

/// Maps every source folder to its destination (ARCHITECTURE.md "Folder mapping", rules
/// 1–6) and lists the destination folders to create. Deterministic; no I/O.
pub(crate) fn map_folders(
    source: &Inventory,
    destination: &Inventory,
    rules: &FolderRules,
) -> FolderMap {
    let src = NameStyle::new(source);
    let dst = NameStyle::new(destination);
    // Destination folders by name (INBOX case-insensitive); the first listed wins.
    let mut existing: HashMap<String, &Folder> = HashMap::new();
    // The same, by lower-cased name: "After cutover", case.
    let mut folded: HashMap<String, &Folder> = HashMap::new();
    for f in &destination.folders {
        let key = inbox_key(&f.name, dst.delimiter);
        folded.entry(key.to_lowercase()).or_insert(f);
        existing.entry(key).or_insert(f);
    }
    let specials = if rules.special_use {
        Specials::resolve(source, &src, destination, &dst)
    } else {
        Specials::default()
    };
    let renames: Vec<(Vec<String>, &str, &str)> = rules
        .rename
        .iter()
        .map(|(from, to)| (split_rule_path(from), from.as_str(), to.as_str()))
        .collect();

    let mut entries = Vec::with_capacity(source.folders.len());
    for folder in &source.folders {
        let segments = src.segments(&folder.name);
        let source_path = segments.join("/");
        // Rules match the display path: a `/` inside a source name reads as a separator.
        let rule_segments = split_rule_path(&source_path);
        let view = view_attribute(folder).filter(|_| !rules.include_views);
        let excluded_by = rules
            .exclude
            .iter()
            .find(|g| glob::matches(g, &rule_segments));
        let control = folder.name.chars().find(|c| c.is_control());
        let outcome = if let Some(character) = control {
            Disposition::UnsafeName { character }
        } else if let Some(attribute) = view {
            match excluded_by {
                None if attribute == SpecialUse::All
                    && rules.view_only_messages == ViewOnlyMessages::Archive =>
                {
                    Disposition::Mapped(archive_target(destination, &dst, &existing, attribute))
                }
                _ => Disposition::View { attribute },
            }
        } else if let Some(glob) = rules
            .exclude
            .iter()
            .find(|g| glob::matches(g, &rule_segments))
        {
            Disposition::Excluded { glob: glob.clone() }
        } else {
            let (decoded, rule, replaced) =
                choose_destination(&segments, &rule_segments, &renames, &specials, &dst);
            let (decoded, case_match) = follow_case(&decoded, &dst, &existing, &folded);
            let found = existing.get(&inbox_key(&decoded, dst.delimiter));
            let is_inbox = decoded == INBOX;
            Disposition::Mapped(Target {
                // The INBOX is `INBOX` on the wire whatever case a server lists it in.
                wire_name: match found {
                    Some(f) if !is_inbox => f.wire_name.clone(),
                    _ => WireName::new(mutf7::encode(&decoded)),
                },
                path: dst.display(&decoded),
                rule,
                special_use: specials.own.get(&segments).map(|(u, _)| *u),
                replaced_delimiter: replaced,
                exists: found.is_some() || is_inbox,
                noselect: found.is_some_and(|f| f.noselect) && !is_inbox,
                merged_from: Vec::new(),
                collision: false,
                case_match,
            })
        };
        entries.push(MappedFolder {
            source_wire: folder.wire_name.clone(),
            source_path,
            source_noselect: folder.noselect,
            outcome,
        });
    }
    flag_merges(&mut entries);
    let to_create = folders_to_create(source, &entries, &existing, &dst);
    FolderMap { entries, to_create }
}

/// A rule or display path split on `/`, first `INBOX` upper-cased.
fn split_rule_path(path: &str) -> Vec<String> {
    let mut segments: Vec<String> = path.split('/').map(str::to_string).collect();
    normalize_inbox(&mut segments);
    segments
}

/// Where the messages found only in a `\All` view go: the destination folder carrying
/// `\Archive`, else one with a well-known archive name, else `Archive` (created when a
/// message must go in).
fn archive_target(
    destination: &Inventory,
    dst: &NameStyle,
    existing: &HashMap<String, &Folder>,
    attribute: SpecialUse,
) -> Target {
    let by_attribute = pick(destination, dst, "Archive", |f, _| {
        storage_attribute(f) == Some(SpecialUse::Archive)
    });
    let chosen = by_attribute.or_else(|| {
        pick(destination, dst, "Archive", |_, segments| {
            well_known(segments) == Some(SpecialUse::Archive)
        })
    });
    let decoded = match chosen {
        Some(f) => f.name.clone(),
        None => dst.build(&["Archive".to_string()]),
    };
    let found = existing.get(&inbox_key(&decoded, dst.delimiter));
    Target {
        wire_name: match found {
            Some(f) => f.wire_name.clone(),
            None => WireName::new(mutf7::encode(&decoded)),
        },
        path: dst.display(&decoded),
        rule: Rule::ViewOnly { attribute },
        special_use: None,
        replaced_delimiter: false,
        exists: found.is_some(),
        noselect: found.is_some_and(|f| f.noselect),
        merged_from: Vec::new(),
        collision: false,
        case_match: false,
    }
}

/// A mapped destination name with each level that has no exact match, but an existing
/// folder differing only in case, replaced by that folder's name (outermost first, so a
/// child follows its parent's case too). Returns whether anything was replaced.
fn follow_case(
    decoded: &str,
    dst: &NameStyle,
    existing: &HashMap<String, &Folder>,
    folded: &HashMap<String, &Folder>,
) -> (String, bool) {
    let joiner = dst.joiner();
    let mut name = String::new();
    let mut changed = false;
    for (i, segment) in decoded.split(joiner).enumerate() {
        let candidate = if i == 0 {
            segment.to_string()
        } else {
            format!("{name}{joiner}{segment}")
        };
        let key = inbox_key(&candidate, dst.delimiter);
        name = match folded.get(&key.to_lowercase()) {
            Some(f) if !existing.contains_key(&key) => {
                changed = true;
                f.name.clone()
            }
            _ => candidate,
        };
    }
    (name, changed)
}

/// Whether this entry feeds its destination only with view-only messages.
fn is_view_only(entry: &MappedFolder) -> bool {
    matches!(&entry.outcome, Disposition::Mapped(t) if matches!(t.rule, Rule::ViewOnly { .. }))
}

/// The view attribute (`\All`, `\Flagged`) a folder carries, if any.
pub(crate) fn view_attribute(folder: &Folder) -> Option<SpecialUse> {
    folder
        .special_use
        .into_iter()
        .chain(
            folder
                .attributes
                .iter()
                .filter_map(|a| SpecialUse::from_attribute(a)),
        )
        .find(|u| u.is_view())
}

/// The storage special use (not a view) a folder carries as an attribute, if any.
fn storage_attribute(folder: &Folder) -> Option<SpecialUse> {
    folder
        .special_use
        .into_iter()
        .chain(
            folder
                .attributes
                .iter()
                .filter_map(|a| SpecialUse::from_attribute(a)),
        )
        .find(|u| !u.is_view())
}

/// Rules 3–6 for one folder: the decoded destination name, the rule, and whether rule 6
/// replaced anything.
fn choose_destination(
    segments: &[String],
    rule_segments: &[String],
    renames: &[(Vec<String>, &str, &str)],
    specials: &Specials,
    dst: &NameStyle,
) -> (String, Rule, bool) {
    // Rule 3: the longest matching prefix; on a tie the first in file order.
    let mut best: Option<&(Vec<String>, &str, &str)> = None;
    for r in renames {
        if rule_segments.starts_with(&r.0) && best.is_none_or(|b| r.0.len() > b.0.len()) {
            best = Some(r);
        }
    }
    if let Some((from_segments, from, to)) = best {
        let mut target = split_rule_path(to);
        target.extend_from_slice(&rule_segments[from_segments.len()..]);
        let replaced = sanitize(&mut target, dst.delimiter);
        let rule = Rule::Rename {
            from: from.to_string(),
            to: to.to_string(),
        };
        return (dst.build(&target), rule, replaced);
    }
    // Rule 4: the folder's own special use, else its nearest special ancestor.
    if let Some((use_, source_evidence)) = specials.own.get(segments) {
        if let Some((decoded, destination_evidence)) = specials.destination.get(use_) {
            let rule = Rule::SpecialUse {
                special_use: *use_,
                source: *source_evidence,
                destination: *destination_evidence,
            };
            return (decoded.clone(), rule, false);
        }
    }
    for depth in (1..segments.len()).rev() {
        let parent = &segments[..depth];
        let Some((use_, _)) = specials.own.get(parent) else {
            continue;
        };
        let Some((parent_decoded, _)) = specials.destination.get(use_) else {
            // The special parent had no destination folder: rule 5 names it, and the
            // child's rule-5 name is already below that.
            break;
        };
        let mut rest = segments[depth..].to_vec();
        let replaced = sanitize(&mut rest, dst.delimiter);
        let mut decoded = parent_decoded.clone();
        for s in &rest {
            decoded.push(dst.joiner());
            decoded.push_str(s);
        }
        let rule = Rule::FollowsParent {
            parent: parent.join("/"),
            special_use: *use_,
        };
        return (decoded, rule, replaced);
    }
    // Rules 5 and 6.
    let mut target = segments.to_vec();
    let replaced = sanitize(&mut target, dst.delimiter);
    (dst.build(&target), Rule::Default, replaced)
}

/// Rule 4's lookups for one account.
#[derive(Debug, Default)]
struct Specials {
    /// Source folder path → its special use and how it was recognised.
    own: HashMap<Vec<String>, (SpecialUse, Evidence)>,
    /// Special use → the decoded name of the destination folder standing for it.
    destination: HashMap<SpecialUse, (String, Evidence)>,
}

impl Specials {
    fn resolve(
        source: &Inventory,
        src: &NameStyle,
        destination: &Inventory,
        dst: &NameStyle,
    ) -> Specials {
        let src_carried: HashSet<SpecialUse> = source
            .folders
            .iter()
            .filter_map(storage_attribute)
            .collect();
        let dst_carried: HashSet<SpecialUse> = destination
            .folders
            .iter()
            .filter_map(storage_attribute)
            .collect();
        let mut own = HashMap::new();
        let mut wanted: Vec<(SpecialUse, String)> = Vec::new();
        for f in &source.folders {
            let segments = src.segments(&f.name);
            if segments == [INBOX] {
                continue; // the INBOX always maps to the INBOX
            }
            let found = match storage_attribute(f) {
                Some(u) => Some((u, Evidence::Attribute)),
                None => well_known(&segments)
                    .filter(|u| !src_carried.contains(u))
                    .map(|u| (u, Evidence::WellKnownName)),
            };
            if let Some((u, evidence)) = found {
                wanted.push((u, segments.last().cloned().unwrap_or_default()));
                own.insert(segments, (u, evidence));
            }
        }
        let mut destination_map = HashMap::new();
        for (u, source_name) in wanted {
            if destination_map.contains_key(&u) {
                continue;
            }
            let found = if dst_carried.contains(&u) {
                pick(destination, dst, &source_name, |f, _| {
                    storage_attribute(f) == Some(u)
                })
                .map(|f| (f, Evidence::Attribute))
            } else {
                pick(destination, dst, &source_name, |_, segments| {
                    well_known(segments) == Some(u)
                })
                .map(|f| (f, Evidence::WellKnownName))
            };
            if let Some((f, evidence)) = found {
                destination_map.insert(u, (f.name.clone(), evidence));
            }
        }
        Specials {
            own,
            destination: destination_map,
        }
    }
}

/// The destination folder for a special use among those passing `accept`: prefer a
/// selectable one, then one whose last segment equals the source folder's
/// (case-insensitively), then LIST order. Never the INBOX.
fn pick<'a>(
    destination: &'a Inventory,
    dst: &NameStyle,
    source_name: &str,
    accept: impl Fn(&Folder, &[String]) -> bool,
) -> Option<&'a Folder> {
    let source_lower = source_name.to_lowercase();
    destination
        .folders
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let segments = dst.segments(&f.name);
            if segments == [INBOX] || !accept(f, &segments) {
                return None;
            }
            let same_name = segments.last().map(|s| s.to_lowercase()) == Some(source_lower.clone());
            Some(((f.noselect, !same_name, i), f))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, f)| f)
}

/// Fills `merged_from` and `collision` for destinations fed by two or more sources.
fn flag_merges(entries: &mut [MappedFolder]) {
    let mut groups: HashMap<WireName, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Disposition::Mapped(t) = &e.outcome {
            groups.entry(t.wire_name.clone()).or_default().push(i);
        }
    }
    for members in groups.values().filter(|m| m.len() >= 2) {
        let sources: Vec<WireName> = members
            .iter()
            .map(|&i| entries[i].source_wire.clone())
            .collect();
        let collision = members.iter().any(
            |&i| matches!(&entries[i].outcome, Disposition::Mapped(t) if t.replaced_delimiter),
        );
        for &i in members {
            if let Disposition::Mapped(t) = &mut entries[i].outcome {
                t.merged_from = sources.clone();
                t.collision = collision;
            }
        }
    }
}

/// The destination folders to create, parents first, in order of first use.
fn folders_to_create(
    source: &Inventory,
    entries: &[MappedFolder],
    existing: &HashMap<String, &Folder>,
    dst: &NameStyle,
) -> Vec<FolderToCreate> {
    let mut list: Vec<FolderToCreate> = Vec::new();
    let mut index: HashMap<WireName, usize> = HashMap::new();
    // Destination wire name → the (entry, source folder) pairs mapped there, in LIST order.
    let mut groups: HashMap<&WireName, Vec<(&MappedFolder, &Folder)>> = HashMap::new();
    let mut order: Vec<&Target> = Vec::new();
    for (e, f) in entries.iter().zip(&source.folders) {
        if let Disposition::Mapped(t) = &e.outcome {
            let group = groups.entry(&t.wire_name).or_default();
            if group.is_empty() {
                order.push(t);
            }
            group.push((e, f));
        }
    }
    for t in order {
        if t.exists && !t.noselect {
            continue;
        }
        let sources = &groups[&t.wire_name];
        // A view's only-there messages need the folder only when there are some.
        let any_selectable = sources
            .iter()
            .any(|(e, _)| !e.source_noselect && !is_view_only(e));
        if t.exists && !any_selectable {
            continue; // an existing \Noselect satisfies \Noselect sources
        }
        let (reason, only_if_needed) = if t.exists {
            (CreateReason::NoselectOnDestination, true)
        } else {
            (CreateReason::Missing, !any_selectable)
        };
        let subscribe = sources.iter().any(|(_, f)| f.subscribed);
        let decoded =
            mutf7::decode(t.wire_name.as_str()).unwrap_or_else(|_| t.wire_name.as_str().to_owned());
        // Missing ancestors first (the ones a CREATE needs), then the folder itself.
        let mut parent: Option<WireName> = None;
        for ancestor in dst.ancestors(&decoded) {
            let key = inbox_key(&ancestor, dst.delimiter);
            if key == INBOX || existing.contains_key(&key) {
                parent = None;
                continue;
            }
            let wire = WireName::new(mutf7::encode(&ancestor));
            match index.get(&wire) {
                Some(&i) => {
                    list[i].only_if_needed &= only_if_needed;
                }
                None => {
                    index.insert(wire.clone(), list.len());
                    list.push(FolderToCreate {
                        wire_name: wire.clone(),
                        path: dst.display(&ancestor),
                        reason: CreateReason::MissingParent,
                        subscribe: false,
                        only_if_needed,
                        sources: Vec::new(),
                        parent: parent.clone(),
                    });
                }
            }
            parent = Some(wire);
        }
        let sources: Vec<WireName> = sources.iter().map(|(e, _)| e.source_wire.clone()).collect();
        match index.get(&t.wire_name) {
            // Already listed as a missing parent of an earlier folder: it is a real target.
            Some(&i) => {
                let f = &mut list[i];
                f.reason = reason;
                f.subscribe = subscribe;
                f.only_if_needed &= only_if_needed;
                f.sources = sources;
            }
            None => {
                index.insert(t.wire_name.clone(), list.len());
                list.push(FolderToCreate {
                    wire_name: t.wire_name.clone(),
                    path: t.path.clone(),
                    reason,
                    subscribe,
                    only_if_needed,
                    sources,
                    parent,
                });
            }
        }
    }
    // An unconditional folder makes its parents unconditional (children come later).
    for i in (0..list.len()).rev() {
        if !list[i].only_if_needed {
            if let Some(p) = list[i].parent.clone() {
                if let Some(&pi) = index.get(&p) {
                    list[pi].only_if_needed = false;
                }
            }
        }
    }
    list
}
