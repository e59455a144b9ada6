//! The planner: pure data in, pure data out. No I/O, no async. Given both sides'
//! inventories and the rules, it decides which destination folders to create and which
//! source messages to copy, by a multiset difference of identity keys per destination
//! folder (ARCHITECTURE.md "Matching"). Its action types have no delete variant: a plan can only add.

mod account_wide;
pub(crate) mod mapping;
pub(crate) mod pacing;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::identity::IdentityKey;
use crate::inventory::{Inventory, MessageMeta};
use crate::message::{DisplayFields, FlagSet, InternalDate};
use crate::model::{ContentHash, FolderStatus, SpecialUse, WireName};
use crate::settings::{FlagsOnExisting, FolderRules, MessageRules};
pub(crate) use account_wide::{HeldCounts, LedgerEntry};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// What happens to one destination folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FolderAction {
    /// It exists on the destination already.
    Exists,
    /// It will be created (before any message is appended to it).
    Create,
}

/// A source folder that feeds a destination folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceFolder {
    /// Decoded name as the source lists it (prefix and delimiter included), for display.
    pub name: String,
    /// Wire name (modified UTF-7): the folder's identity on the source.
    pub wire_name: WireName,
    /// `None` for a `\Noselect` source folder.
    pub status: Option<FolderStatus>,
    pub subscribed: bool,
    /// A `\All` view that feeds this folder only with the messages found in no other source
    /// folder (Gmail's archived mail): how many those are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_there: Option<u64>,
}

/// Why a source message is not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SkipReason {
    /// Flagged `\Deleted` on the source (and `copy-deleted` is off).
    Deleted,
    /// Bigger than `max-size`.
    OverMaxSize,
    /// The ledger saw more copies on the destination than it holds now: someone deleted
    /// them there (`deleted-on-destination = "skip"`).
    DeletedOnDestination,
    /// Bigger than the destination's `APPENDLIMIT` (RFC 7889): it would be refused.
    OverAppendLimit,
}

impl SkipReason {
    /// For `--detail`.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            SkipReason::Deleted => "\\Deleted on the source",
            SkipReason::OverMaxSize => "over max-size",
            SkipReason::DeletedOnDestination => "deleted on the destination (ledger)",
            SkipReason::OverAppendLimit => "over the destination's APPENDLIMIT",
        }
    }
}

/// One source message the plan copies. Its flags and display fields are shared with the
/// inventory (and with the other messages that have the same flags), not copied; it is
/// serialised as [`MessageCopyJson`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageCopy {
    /// Index into the folder plan's `sources`.
    pub source: usize,
    pub uid: u32,
    pub size: u64,
    pub flags: FlagSet,
    pub internal_date: Option<InternalDate>,
    pub key: IdentityKey,
    /// Date, From and Subject, for display.
    pub display: DisplayFields,
    /// What the ledger counts for this key before this run's copies: the copies the
    /// destination account held at plan time (every folder) plus those skipped as deleted
    /// there. After the n-th copy of the key delivered in a run, it records `base + n`.
    pub ledger_base: u32,
}

/// A [`MessageCopy`] as plan files have it since format 1.
#[derive(Serialize, Deserialize)]
struct MessageCopyJson<'a> {
    source: usize,
    uid: u32,
    size: u64,
    flags: Cow<'a, [String]>,
    internal_date: Option<InternalDate>,
    key: IdentityKey,
    date: Cow<'a, str>,
    from: Cow<'a, str>,
    subject: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    ledger_base: u32,
}

impl Serialize for MessageCopy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MessageCopyJson {
            source: self.source,
            uid: self.uid,
            size: self.size,
            flags: Cow::Borrowed(self.flags.as_slice()),
            internal_date: self.internal_date,
            key: self.key,
            date: Cow::Borrowed(self.display.date()),
            from: Cow::Borrowed(self.display.from()),
            subject: Cow::Borrowed(self.display.subject()),
            ledger_base: self.ledger_base,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for MessageCopy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = MessageCopyJson::deserialize(d)?;
        Ok(MessageCopy {
            source: j.source,
            uid: j.uid,
            size: j.size,
            flags: FlagSet::shared(j.flags.into_owned()),
            internal_date: j.internal_date,
            key: j.key,
            display: DisplayFields::shared(&j.date, &j.from, &j.subject),
            ledger_base: j.ledger_base,
        })
    }
}

impl MessageCopy {
    /// The copy of `m` from source folder `source`.
    pub(crate) fn of(source: usize, m: &MessageMeta) -> MessageCopy {
        MessageCopy {
            source,
            uid: m.uid,
            size: m.size,
            flags: m.flags.clone(),
            internal_date: m.internal_date,
            key: m.key,
            display: m.display.clone(),
            ledger_base: 0,
        }
    }
}

/// Flags the source has and the destination's copy lacks (`flags-on-existing = "add"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FlagUpdate {
    /// The destination message's UID.
    pub uid: u32,
    /// Flags to add; nothing is ever removed.
    pub add: Vec<String>,
}

/// One source message left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SkippedMessage {
    pub source: usize,
    pub uid: u32,
    pub size: u64,
    pub reason: SkipReason,
    pub subject: String,
}

/// Everything the plan decides for one destination folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FolderPlan {
    /// Display path on the destination (decoded, `/`-separated, prefix stripped).
    pub destination: String,
    /// Wire name (modified UTF-7, with prefix and delimiter) on the destination.
    pub destination_wire: WireName,
    pub action: FolderAction,
    /// Status of the destination folder at plan time (`None` when it does not exist or is
    /// `\Noselect`).
    pub destination_status: Option<FolderStatus>,
    pub sources: Vec<SourceFolder>,
    /// The mapping rule that chose this destination, for the table.
    pub rule: RuleKind,
    pub special_use: Option<SpecialUse>,
    /// Two or more source folders land here.
    pub merged: bool,
    /// A destination delimiter inside a source name was replaced by `_`.
    pub renamed_delimiter: bool,
    /// Subscribe it: after creating, when its source is subscribed; or, for the existing
    /// INBOX, when the source's INBOX is subscribed and the destination's is not (clients
    /// hide unsubscribed folders). Existing subscriptions are otherwise never changed.
    pub subscribe: bool,
    /// The mapped name matched this existing folder only case-insensitively.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub case_match: bool,
    pub copy: Vec<MessageCopy>,
    pub already_present: u64,
    /// Of `already_present`: missing here, but found in another destination folder (moved
    /// there by someone).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moved: u64,
    pub skipped: Vec<SkippedMessage>,
    /// Identity keys shared by several messages whose match could not be decided by the
    /// headers alone; the counts are still exact.
    pub ambiguous: u64,
    /// Those keys (the planner asks for the bodies of these groups and plans again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ambiguous_keys: Vec<IdentityKey>,
    /// Existing destination messages that get the source's missing flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flag_updates: Vec<FlagUpdate>,
}

impl FolderPlan {
    /// Nothing to create, subscribe or copy.
    pub(crate) fn is_noop(&self) -> bool {
        self.action == FolderAction::Exists
            && !self.subscribe
            && self.copy.is_empty()
            && self.flag_updates.is_empty()
    }

    /// An existing folder (only ever the INBOX) that apply subscribes.
    pub(crate) fn subscribes_existing(&self) -> bool {
        self.action == FolderAction::Exists && self.subscribe
    }

    pub(crate) fn bytes_to_copy(&self) -> u64 {
        self.copy.iter().map(|m| m.size).sum()
    }
}

/// A source folder that is not migrated, and why (listed, not counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IgnoredFolder {
    pub source: String,
    pub source_wire: WireName,
    /// e.g. `view (\All)` or ``excluded by `Spam/**` ``.
    pub reason: String,
    pub messages: u64,
}

/// Totals, per account and for the whole plan. Field names are a fixed contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub folders_to_create: u64,
    pub messages_to_copy: u64,
    pub bytes_to_copy: u64,
    pub already_present: u64,
    pub skipped: u64,
    /// Existing destination messages that get missing flags (`flags-on-existing = "add"`).
    #[serde(default)]
    pub flags_to_add: u64,
    /// Of `already_present`: copies found in another destination folder than their own.
    #[serde(default)]
    pub moved_on_destination: u64,
    /// Of `skipped`: copies the ledger saw on the destination that are gone now.
    #[serde(default)]
    pub deleted_on_destination: u64,
    /// Existing folders to subscribe: the destination INBOX when the source's INBOX is
    /// subscribed and it is not. A change, but not part of the `Plan:` line.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub folders_to_subscribe: u64,
}

impl Summary {
    pub(crate) fn add(&mut self, other: &Summary) {
        self.folders_to_create += other.folders_to_create;
        self.messages_to_copy += other.messages_to_copy;
        self.bytes_to_copy += other.bytes_to_copy;
        self.already_present += other.already_present;
        self.skipped += other.skipped;
        self.flags_to_add += other.flags_to_add;
        self.moved_on_destination += other.moved_on_destination;
        self.deleted_on_destination += other.deleted_on_destination;
        self.folders_to_subscribe += other.folders_to_subscribe;
    }

    pub(crate) fn has_changes(&self) -> bool {
        self.folders_to_create > 0
            || self.messages_to_copy > 0
            || self.flags_to_add > 0
            || self.folders_to_subscribe > 0
    }
}

/// The plan of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccountPlan {
    pub source_user: String,
    pub destination_user: String,
    /// Set when the account could not be planned; then everything else is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about `error`, when that is knowable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub folders: Vec<FolderPlan>,
    #[serde(default)]
    pub ignored_folders: Vec<IgnoredFolder>,
    /// Destination folder tree (display paths) before and after the plan.
    #[serde(default)]
    pub tree_before: Vec<String>,
    #[serde(default)]
    pub tree_after: Vec<String>,
    /// Whether deletions on the destination are known (from the ledger).
    #[serde(default)]
    pub deletions: Deletions,
    /// What the destination holds now that its ledger does not know yet (keys also on the
    /// source): `apply` appends these before copying. `plan` never writes the ledger.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ledger_updates: Vec<LedgerEntry>,
    /// The destination's storage quota (RFC 9208, the INBOX's root), when it offers QUOTA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaCheck>,
    /// With pacing caps (`[limits]`): the least time the copy can take under them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing: Option<pacing::TimeFloor>,
    pub summary: Summary,
}

/// Whether the copy fits in the destination's storage quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QuotaCheck {
    /// Bytes in use (the server counts KiB).
    pub used: u64,
    /// Bytes allowed.
    pub limit: u64,
    /// The bytes to copy exceed what is left: `apply` will stop at the quota.
    pub over_quota: bool,
}

impl QuotaCheck {
    pub(crate) fn free(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// How deletions on the destination were decided (ARCHITECTURE.md "After cutover").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Deletions {
    /// The account's ledger was read: copies deleted there are not copied again.
    Known,
    /// No ledger (first run, or the state directory was lost): every missing copy is
    /// copied, including any that someone deleted there.
    #[default]
    Unknown,
    /// `deleted-on-destination = "restore"`: missing copies are copied whatever the ledger
    /// says.
    Restored,
}

impl AccountPlan {
    pub(crate) fn failed(
        source_user: &str,
        destination_user: &str,
        error: String,
        hint: Option<String>,
    ) -> AccountPlan {
        AccountPlan {
            source_user: source_user.to_string(),
            destination_user: destination_user.to_string(),
            error: Some(error),
            hint,
            folders: Vec::new(),
            ignored_folders: Vec::new(),
            tree_before: Vec::new(),
            tree_after: Vec::new(),
            deletions: Deletions::default(),
            ledger_updates: Vec::new(),
            quota: None,
            pacing: None,
            summary: Summary::default(),
        }
    }

    pub(crate) fn has_changes(&self) -> bool {
        self.summary.has_changes()
    }
}

/// The rules the planner needs from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    pub folders: &'a FolderRules,
    pub messages: &'a MessageRules,
    /// The destination account's ledger: the most copies of each key it was ever seen to
    /// hold. `None` when there is none (nothing is known about deletions).
    pub ledger: Option<&'a HeldCounts>,
}

/// The multiset difference for one destination folder: which source messages to copy,
/// how many are already present, which are skipped. Pure.
///
/// For each key, `sum(count_src) - count_dst` messages are copied when positive. When a key
/// has fewer copies than needed, the highest UIDs are chosen: an interrupted earlier apply
/// copied in ascending UID order, so the low ones are the ones already there.
pub(crate) fn diff_folder(
    sources: &[&[MessageMeta]],
    destination: &[MessageMeta],
    rules: &MessageRules,
) -> FolderDiff {
    // Sorted vectors of references rather than maps of vectors: a folder of 500,000
    // messages would otherwise cost a map entry and a vector per key (issue 10).
    let mut dst: Vec<&MessageMeta> = destination.iter().collect();
    dst.sort_unstable_by_key(|m| (m.key, m.uid));
    let dst_of = |key: &IdentityKey| -> &[&MessageMeta] {
        let start = dst.partition_point(|m| m.key < *key);
        let end = start + dst[start..].partition_point(|m| m.key == *key);
        &dst[start..end]
    };
    let mut flag_updates = Vec::new();
    let mut skipped = Vec::new();
    // Eligible source messages, grouped by key (then source folder and UID).
    let mut eligible: Vec<(usize, &MessageMeta)> =
        Vec::with_capacity(sources.iter().map(|m| m.len()).sum());
    for (index, messages) in sources.iter().enumerate() {
        for m in messages.iter() {
            let reason = if m.is_deleted() && !rules.copy_deleted {
                Some(SkipReason::Deleted)
            } else if rules.max_size.is_some_and(|max| m.size > max) {
                Some(SkipReason::OverMaxSize)
            } else {
                None
            };
            match reason {
                Some(reason) => skipped.push(SkippedMessage {
                    source: index,
                    uid: m.uid,
                    size: m.size,
                    reason,
                    subject: m.display.subject().to_string(),
                }),
                None => eligible.push((index, m)),
            }
        }
    }
    eligible.sort_unstable_by_key(|(index, m)| (m.key, *index, m.uid));
    let mut chosen: Vec<(usize, &MessageMeta)> = Vec::new();
    let mut already_present = 0;
    let mut ambiguous_keys = Vec::new();
    for group in eligible.chunk_by(|a, b| a.1.key == b.1.key) {
        let key = group[0].1.key;
        let present = dst_of(&key);
        let have = present.len() as u64;
        let want = group.len() as u64;
        already_present += have.min(want);
        if rules.flags_on_existing == FlagsOnExisting::Add {
            // Pair the lowest source UIDs with the destination copies, in UID order.
            for ((_, src), dst) in group.iter().zip(present.iter()) {
                let add: Vec<String> = src
                    .flags
                    .iter()
                    .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                    .filter(|f| !dst.flags.iter().any(|d| d.eq_ignore_ascii_case(f)))
                    .cloned()
                    .collect();
                if !add.is_empty() {
                    flag_updates.push(FlagUpdate { uid: dst.uid, add });
                }
            }
        }
        if have >= want {
            continue;
        }
        // The header count decides how many; content, when compared, decides which.
        let need = (want - have) as usize;
        let mut candidates: Cow<'_, [(usize, &MessageMeta)]> = Cow::Borrowed(group);
        if have > 0 {
            let compared = group.iter().all(|(_, m)| m.content.is_some())
                && present.iter().all(|m| m.content.is_some());
            if compared {
                let mut left: HashMap<ContentHash, usize> = HashMap::new();
                for c in present.iter().filter_map(|m| m.content.as_deref()) {
                    *left.entry(*c).or_insert(0) += 1;
                }
                candidates.to_mut().retain(|(_, m)| {
                    match m.content.as_deref().and_then(|c| left.get_mut(c)) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            false
                        }
                        _ => true,
                    }
                });
            } else if want >= 2 {
                ambiguous_keys.push(key);
            }
        }
        // Highest UIDs first: an interrupted earlier apply copied in ascending order.
        let start = candidates.len().saturating_sub(need);
        chosen.extend_from_slice(&candidates[start..]);
    }
    drop(eligible);
    chosen.sort_unstable_by_key(|(index, m)| (*index, m.uid));
    let copy = chosen
        .into_iter()
        .map(|(index, m)| MessageCopy::of(index, m))
        .collect();
    skipped.sort_by_key(|s| (s.source, s.uid));
    FolderDiff {
        copy,
        already_present,
        moved: 0,
        skipped,
        ambiguous: ambiguous_keys.len() as u64,
        ambiguous_keys,
        flag_updates,
    }
}

/// The result of [`diff_folder`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FolderDiff {
    pub copy: Vec<MessageCopy>,
    pub already_present: u64,
    /// Of `already_present`: satisfied by a copy in another destination folder.
    pub moved: u64,
    pub skipped: Vec<SkippedMessage>,
    pub ambiguous: u64,
    /// The identity keys of the ambiguous groups.
    pub ambiguous_keys: Vec<IdentityKey>,
    pub flag_updates: Vec<FlagUpdate>,
}

/// Sums an account's folder plans into its summary.
pub(crate) fn summarize(folders: &[FolderPlan]) -> Summary {
    let mut s = Summary::default();
    for f in folders {
        if f.action == FolderAction::Create {
            s.folders_to_create += 1;
        }
        if f.subscribes_existing() {
            s.folders_to_subscribe += 1;
        }
        s.messages_to_copy += f.copy.len() as u64;
        s.bytes_to_copy += f.bytes_to_copy();
        s.already_present += f.already_present;
        s.skipped += f.skipped.len() as u64;
        s.flags_to_add += f.flag_updates.len() as u64;
        s.moved_on_destination += f.moved;
        s.deleted_on_destination += f
            .skipped
            .iter()
            .filter(|m| m.reason == SkipReason::DeletedOnDestination)
            .count() as u64;
    }
    s
}

/// Messages whose bodies must be compared to resolve ambiguous groups: per side, the
/// folder wire name and the UIDs. Empty when the plan has no ambiguous group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContentRequests {
    pub source: BTreeMap<WireName, Vec<u32>>,
    pub destination: BTreeMap<WireName, Vec<u32>>,
}

impl ContentRequests {
    pub(crate) fn is_empty(&self) -> bool {
        self.source.is_empty() && self.destination.is_empty()
    }
}

/// Which bodies to fetch so that a second planning pass can match the ambiguous groups
/// of `plan` by content (ARCHITECTURE.md "Matching", ambiguous groups).
pub(crate) fn content_requests(
    plan: &AccountPlan,
    source: &Inventory,
    destination: &Inventory,
) -> ContentRequests {
    let mut requests = ContentRequests::default();
    for f in plan.folders.iter().filter(|f| !f.ambiguous_keys.is_empty()) {
        let keys: std::collections::HashSet<&IdentityKey> = f.ambiguous_keys.iter().collect();
        let request =
            |inventory: &Inventory, wire: &WireName, into: &mut BTreeMap<WireName, Vec<u32>>| {
                let Some(folder) = inventory.folder(wire) else {
                    return;
                };
                let uids = folder
                    .messages
                    .iter()
                    .filter(|m| keys.contains(&m.key))
                    .map(|m| m.uid);
                into.entry(wire.clone()).or_default().extend(uids);
            };
        for s in &f.sources {
            request(source, &s.wire_name, &mut requests.source);
        }
        request(destination, &f.destination_wire, &mut requests.destination);
    }
    requests.source.retain(|_, uids| !uids.is_empty());
    requests.destination.retain(|_, uids| !uids.is_empty());
    requests
}

/// Records content hashes fetched for [`content_requests`] in an inventory.
pub(crate) fn set_contents(inventory: &mut Inventory, hashes: &crate::inventory::ContentHashes) {
    for folder in &mut inventory.folders {
        let Some(by_uid) = hashes.get(&folder.wire_name) else {
            continue;
        };
        for m in &mut folder.messages {
            if let Some(h) = by_uid.get(&m.uid) {
                m.content = Some(Box::new(*h));
            }
        }
    }
}

/// A destination folder's display path: prefix stripped, `/` separator, decoded.
pub(crate) fn display_path(inventory: &Inventory, decoded_name: &str) -> String {
    let rest = if decoded_name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_string();
    } else {
        decoded_name
            .strip_prefix(inventory.prefix.as_str())
            .unwrap_or(decoded_name)
    };
    match inventory.delimiter {
        Some(d) if d != '/' => rest.split(d).collect::<Vec<_>>().join("/"),
        _ => rest.to_string(),
    }
}

/// Sort key that puts INBOX first and parents before their children.
fn tree_order(path: &str) -> (bool, Vec<String>) {
    let segments: Vec<String> = path.split('/').map(str::to_string).collect();
    let inbox_first = !segments
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case("INBOX"));
    (inbox_first, segments)
}

/// Which mapping rule chose a destination folder; in JSON the names used since format 1
/// (`"default"`, `"special-use"`, `"well-known name"`, `"rename"`, `"follows parent"`,
/// `"parent"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RuleKind {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "special-use")]
    SpecialUse,
    #[serde(rename = "well-known name")]
    WellKnownName,
    #[serde(rename = "rename")]
    Rename,
    #[serde(rename = "follows parent")]
    FollowsParent,
    /// A missing parent created for a folder below it.
    #[serde(rename = "parent")]
    Parent,
    /// The archive folder fed with the messages found only in a `\All` view.
    #[serde(rename = "view-only")]
    ViewOnly,
}

impl RuleKind {
    fn of(rule: &mapping::Rule) -> RuleKind {
        match rule {
            mapping::Rule::Rename { .. } => RuleKind::Rename,
            mapping::Rule::SpecialUse {
                source: mapping::Evidence::WellKnownName,
                ..
            }
            | mapping::Rule::SpecialUse {
                destination: mapping::Evidence::WellKnownName,
                ..
            } => RuleKind::WellKnownName,
            mapping::Rule::SpecialUse { .. } => RuleKind::SpecialUse,
            mapping::Rule::FollowsParent { .. } => RuleKind::FollowsParent,
            mapping::Rule::Default => RuleKind::Default,
            mapping::Rule::ViewOnly { .. } => RuleKind::ViewOnly,
        }
    }
}

/// Per source `\All` folder (wire name): a copy holding only its messages whose key is in
/// no other source folder that is not a view (Gmail's archived mail).
fn view_only_folders(source: &Inventory) -> HashMap<&WireName, crate::inventory::Folder> {
    let is_view = |f: &crate::inventory::Folder| mapping::view_attribute(f).is_some();
    let all_views: Vec<&crate::inventory::Folder> = source
        .folders
        .iter()
        .filter(|f| mapping::view_attribute(f) == Some(SpecialUse::All))
        .collect();
    if all_views.is_empty() {
        return HashMap::new();
    }
    // Sorted, not hashed: half the memory for an account of 500,000 messages.
    let mut elsewhere: Vec<IdentityKey> = source
        .folders
        .iter()
        .filter(|f| !is_view(f))
        .flat_map(|f| f.messages.iter().map(|m| m.key))
        .collect();
    elsewhere.sort_unstable();
    elsewhere.dedup();
    all_views
        .into_iter()
        .map(|f| {
            let only = crate::inventory::Folder {
                wire_name: f.wire_name.clone(),
                name: f.name.clone(),
                attributes: f.attributes.clone(),
                special_use: f.special_use,
                noselect: f.noselect,
                subscribed: f.subscribed,
                status: f.status,
                append_limit: f.append_limit,
                messages: f
                    .messages
                    .iter()
                    .filter(|m| elsewhere.binary_search(&m.key).is_err())
                    .cloned()
                    .collect(),
            };
            (&f.wire_name, only)
        })
        .collect()
}

/// Plans one account from both sides' inventories. Pure.
pub(crate) fn plan_account(
    source_user: &str,
    destination_user: &str,
    source: &Inventory,
    destination: &Inventory,
    rules: Rules<'_>,
) -> AccountPlan {
    let map = mapping::map_folders(source, destination, rules.folders);
    let view_only = view_only_folders(source);
    let mut ignored_folders = Vec::new();
    // Destination wire name -> (target, source folders), in order of first appearance.
    let mut groups: Vec<(&mapping::Target, Vec<&crate::inventory::Folder>)> = Vec::new();
    for (entry, folder) in map.entries.iter().zip(source.folders.iter()) {
        let reason = match &entry.outcome {
            mapping::Disposition::View { attribute } => {
                let only_there = view_only
                    .get(&folder.wire_name)
                    .map_or(0, |f| f.messages.len() as u64);
                if *attribute == SpecialUse::All && only_there > 0 {
                    format!(
                        "a view ({}), not storage; {only_there} message{} found only there not copied; set `include-views` to copy it whole",
                        attribute.attribute(),
                        if only_there == 1 { "" } else { "s" },
                    )
                } else {
                    format!(
                        "a view ({}), not storage; set `include-views` to copy it",
                        attribute.attribute()
                    )
                }
            }
            mapping::Disposition::Excluded { glob } => format!("excluded by `{glob}`"),
            mapping::Disposition::UnsafeName { character } => format!(
                "its name holds the control character `U+{:04X}`; rename it on the source to copy it",
                *character as u32
            ),
            mapping::Disposition::Mapped(target) => {
                // A view feeds its destination only with what is found nowhere else.
                let folder = match target.rule {
                    mapping::Rule::ViewOnly { .. } => view_only
                        .get(&folder.wire_name)
                        .expect("every \\All folder has its view-only part"),
                    _ => folder,
                };
                match groups
                    .iter_mut()
                    .find(|(t, _)| t.wire_name == target.wire_name)
                {
                    Some((_, folders)) => folders.push(folder),
                    None => groups.push((target, vec![folder])),
                }
                continue;
            }
        };
        ignored_folders.push(IgnoredFolder {
            source: folder.name.clone(),
            source_wire: folder.wire_name.clone(),
            reason,
            messages: folder.messages.len() as u64,
        });
    }

    let mut diffs: HashMap<&WireName, FolderDiff> = HashMap::new();
    for (target, folders) in &groups {
        let dst_messages: &[MessageMeta] = match destination.folder(&target.wire_name) {
            Some(f) if !f.noselect => &f.messages,
            _ => &[],
        };
        let src_messages: Vec<&[MessageMeta]> =
            folders.iter().map(|f| f.messages.as_slice()).collect();
        diffs.insert(
            &target.wire_name,
            diff_folder(&src_messages, dst_messages, rules.messages),
        );
    }
    // Messages the destination would refuse for their size are skipped, with the reason:
    // the folder's own APPENDLIMIT where the server gives one, else the server-wide one.
    for (wire, diff) in diffs.iter_mut() {
        let own = destination.folder(wire).and_then(|f| f.append_limit);
        if let Some(limit) = own.or(destination.limits.append_limit) {
            let (too_big, fit): (Vec<MessageCopy>, Vec<MessageCopy>) =
                std::mem::take(&mut diff.copy)
                    .into_iter()
                    .partition(|c| c.size > limit);
            diff.copy = fit;
            diff.skipped
                .extend(too_big.into_iter().map(|c| SkippedMessage {
                    source: c.source,
                    uid: c.uid,
                    size: c.size,
                    reason: SkipReason::OverAppendLimit,
                    subject: c.display.subject().to_string(),
                }));
            diff.skipped.sort_by_key(|s| (s.source, s.uid));
        }
    }
    // After cutover: copies moved or deleted by someone on the destination.
    let order: Vec<&WireName> = groups.iter().map(|(t, _)| &t.wire_name).collect();
    let settled = account_wide::settle(&groups, &order, &mut diffs, source, destination, rules);
    let creations = map.creations(|wire| diffs.get(wire).is_some_and(|d| !d.copy.is_empty()));

    let mut folders = Vec::new();
    for (target, sources) in &groups {
        let created = creations.iter().find(|c| c.wire_name == target.wire_name);
        let dst = destination.folder(&target.wire_name);
        let action = if created.is_some() {
            FolderAction::Create
        } else if target.exists {
            FolderAction::Exists
        } else {
            // Only \Noselect sources map here and nothing must go into it: nothing to do.
            continue;
        };
        let diff = diffs.remove(&target.wire_name).unwrap_or_default();
        // Existing subscription state is never a change, with one exception (issue 8):
        // the destination INBOX is subscribed when the source's is, because clients hide
        // an unsubscribed INBOX.
        let subscribe_inbox = action == FolderAction::Exists
            && target.wire_name.is_inbox()
            && sources
                .iter()
                .any(|f| f.wire_name.is_inbox() && f.subscribed)
            && !destination
                .folders
                .iter()
                .any(|f| f.wire_name.is_inbox() && f.subscribed);
        folders.push(FolderPlan {
            destination: target.path.clone(),
            destination_wire: target.wire_name.clone(),
            action,
            destination_status: dst.filter(|f| !f.noselect).and_then(|f| f.status),
            sources: sources
                .iter()
                .map(|f| SourceFolder {
                    name: f.name.clone(),
                    wire_name: f.wire_name.clone(),
                    status: f.status,
                    subscribed: f.subscribed,
                    only_there: view_only
                        .get(&f.wire_name)
                        .filter(|v| std::ptr::eq(*v, *f))
                        .map(|v| v.messages.len() as u64),
                })
                .collect(),
            rule: RuleKind::of(&target.rule),
            special_use: target.special_use,
            merged: target.is_merge(),
            renamed_delimiter: target.replaced_delimiter,
            subscribe: created.is_some_and(|c| c.subscribe) || subscribe_inbox,
            case_match: target.case_match,
            copy: diff.copy,
            already_present: diff.already_present,
            moved: diff.moved,
            skipped: diff.skipped,
            ambiguous: diff.ambiguous,
            ambiguous_keys: diff.ambiguous_keys,
            flag_updates: diff.flag_updates,
        });
    }
    // Missing parents that no source folder maps to directly.
    for c in &creations {
        if !folders.iter().any(|f| f.destination_wire == c.wire_name) {
            folders.push(FolderPlan {
                destination: c.path.clone(),
                destination_wire: c.wire_name.clone(),
                action: FolderAction::Create,
                destination_status: None,
                sources: Vec::new(),
                rule: RuleKind::Parent,
                special_use: None,
                merged: false,
                renamed_delimiter: false,
                subscribe: c.subscribe,
                case_match: false,
                copy: Vec::new(),
                already_present: 0,
                moved: 0,
                skipped: Vec::new(),
                ambiguous: 0,
                ambiguous_keys: Vec::new(),
                flag_updates: Vec::new(),
            });
        }
    }
    folders.sort_by_cached_key(|f| tree_order(&f.destination));

    let mut tree_before: Vec<String> = destination
        .folders
        .iter()
        .map(|f| display_path(destination, &f.name))
        .collect();
    if !tree_before.iter().any(|p| p == "INBOX") {
        tree_before.push("INBOX".to_string());
    }
    tree_before.sort_by_cached_key(|p| tree_order(p));
    tree_before.dedup();
    let mut tree_after = tree_before.clone();
    for f in folders.iter().filter(|f| f.action == FolderAction::Create) {
        if !tree_after.contains(&f.destination) {
            tree_after.push(f.destination.clone());
        }
    }
    tree_after.sort_by_cached_key(|p| tree_order(p));

    let summary = summarize(&folders);
    let quota = destination.limits.storage.map(|(used, limit)| QuotaCheck {
        used,
        limit,
        over_quota: summary.bytes_to_copy > limit.saturating_sub(used),
    });
    AccountPlan {
        source_user: source_user.to_string(),
        destination_user: destination_user.to_string(),
        error: None,
        hint: None,
        folders,
        ignored_folders,
        tree_before,
        tree_after,
        deletions: settled.deletions,
        ledger_updates: settled.ledger_updates,
        quota,
        pacing: None,
        summary,
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
