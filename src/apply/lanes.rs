//! Lanes: `connections-per-account` connection pairs of one account, each copying its own
//! share of the folders, biggest folders spread first.

use crate::imap::{DestinationSession, SourceSession};
use crate::plan::FolderPlan;

use super::{ApplyError, Ctx, Tally};

/// One connection pair of an account and the counters it adds to.
pub(super) struct Lane<'r, 't> {
    pub(super) ctx: Ctx<'r>,
    /// The source connection (opened on first use, reopened after a loss).
    pub(super) src: SourceSession,
    /// The destination connection (reopened after a loss, its folder selected again).
    pub(super) dst: DestinationSession,
    pub(super) tally: Tally<'t>,
    pub(super) checks: KeyChecks,
    /// A key stability check due but not sent yet: sent with the lane's next destination
    /// command (pipelined ahead of the next folder's SELECT), and before the lane ends.
    pub(super) pending_check: Option<PendingCheck>,
    /// The lane's next folder, opened while the last batch of the one before was
    /// appended (cross-folder overlap): used by [`Lane::copy_folder`] when it gets there.
    pub(super) ahead: Option<super::folder::Ahead>,
}

impl<'r, 't> Lane<'r, 't> {
    /// A lane on two connected sessions, with nothing checked or read ahead yet.
    pub(super) fn new(
        ctx: Ctx<'r>,
        src: SourceSession,
        dst: DestinationSession,
        tally: Tally<'t>,
    ) -> Self {
        Lane {
            ctx,
            src,
            dst,
            tally,
            checks: KeyChecks::default(),
            pending_check: None,
            ahead: None,
        }
    }
}

/// The messages of a batch whose identity keys are to be read back, in the folder they
/// were appended to (still selected).
#[derive(Debug)]
pub(super) struct PendingCheck {
    pub(super) folder: String,
    pub(super) wire: crate::model::WireName,
    pub(super) appended: Vec<(u32, crate::identity::IdentityKey)>,
}

/// Which appended batches get the key stability check (ARCHITECTURE.md "Key stability
/// check"). Reading the headers back costs a round trip per batch; across the internet
/// that is a large share of a small folder's copy. A destination that rewrites identity
/// headers does it to every message, so the lane's first batch, every
/// [`KeyChecks::EVERY`]th batch after it and the lane's last batch are checked: the first
/// stops the account before more than one batch is stored, and no lane ends without a
/// check of what it appended last.
#[derive(Debug, Default)]
pub(super) struct KeyChecks {
    /// Batches appended by the lane so far.
    appended: u64,
    /// The batch being appended is the lane's last (its last folder, source, batch).
    pub(super) last: bool,
    /// The lane is on its last folder.
    pub(super) last_folder: bool,
}

impl KeyChecks {
    pub(super) const EVERY: u64 = 8;

    /// Whether the batch about to be appended will be checked ([`Self::due`] after it).
    pub(super) fn would_be_due(&self) -> bool {
        self.appended.is_multiple_of(Self::EVERY) || self.last
    }

    /// Whether the batch just appended is checked; counts it.
    pub(super) fn due(&mut self) -> bool {
        let due = self.appended.is_multiple_of(Self::EVERY) || self.last;
        self.appended += 1;
        due
    }
}

impl Lane<'_, '_> {
    /// Copies the lane's folders one after the other over its connection pair, then
    /// counts what retrying cost in the lane's report.
    pub(super) async fn run(&mut self, folders: &[&FolderPlan]) -> Result<(), ApplyError> {
        let mut result = Ok(());
        for (i, folder) in folders.iter().enumerate() {
            if self.ctx.cancelled() {
                break;
            }
            self.checks.last_folder = i + 1 == folders.len();
            result = self.copy_folder(folder, folders.get(i + 1).copied()).await;
            if result.is_err() {
                break;
            }
        }
        // No lane ends with a key stability check still unsent.
        if result.is_ok() {
            result = self.flush_check().await;
        }
        let mut stats = self.src.backoff.stats();
        stats.add(self.dst.backoff.stats());
        let report = &mut *self.tally.report;
        report.retries += stats.retries;
        report.reconnects += stats.reconnects;
        report.retry_wait_seconds += stats.waited.as_secs_f64();
        for wire in self.dst.recreated() {
            let name = folders
                .iter()
                .find(|f| &f.destination_wire == wire)
                .map_or_else(|| wire.as_str().to_string(), |f| f.destination.clone());
            if !report.folders_recreated.contains(&name) {
                report.folders_recreated.push(name);
            }
        }
        result
    }

    /// Says goodbye on both connections (errors do not matter any more).
    pub(super) async fn logout(self) {
        self.src.logout().await;
        self.dst.logout().await;
    }
}

/// What a folder's own round trips weigh when folders are spread over lanes, in bytes.
const FOLDER_WEIGHT: u64 = 256 * 1024;

/// Spreads folders over `lanes` lanes, biggest first onto the least loaded lane, each lane
/// keeping plan order. Lane 0 always exists.
pub(super) fn split_into_lanes<'p>(
    folders: &[&'p FolderPlan],
    lanes: usize,
) -> Vec<Vec<&'p FolderPlan>> {
    let lanes = lanes.max(1);
    // Bytes, plus a cost per message and per folder: across the internet a folder costs
    // a few round trips whatever its size (SELECT, EXAMINE + first FETCH, APPEND), worth
    // about FOLDER_WEIGHT bytes of transfer.
    let weight = |f: &FolderPlan| {
        f.bytes_to_copy() + 4096 * (f.copy.len() + f.flag_updates.len()) as u64 + FOLDER_WEIGHT
    };
    let mut order: Vec<usize> = (0..folders.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight(folders[i])));
    let mut load = vec![0u64; lanes];
    let mut assigned: Vec<Vec<usize>> = vec![Vec::new(); lanes];
    for i in order {
        let lane = (0..lanes)
            .min_by_key(|&l| load[l])
            .expect("at least one lane");
        load[lane] += weight(folders[i]);
        assigned[lane].push(i);
    }
    let mut result: Vec<Vec<&'p FolderPlan>> = assigned
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(|mut a| {
            a.sort_unstable();
            a.into_iter().map(|i| folders[i]).collect()
        })
        .collect();
    if result.is_empty() {
        result.push(Vec::new());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::KeyChecks;

    #[test]
    fn key_checks_cover_the_first_every_eighth_and_the_last_batch() {
        let mut c = KeyChecks::default();
        let due: Vec<bool> = (0..17).map(|_| c.due()).collect();
        let checked: Vec<usize> = (0..17).filter(|i| due[*i]).collect();
        assert_eq!(checked, [0, 8, 16]);
        c.last = true;
        assert!(c.due(), "the lane's last batch is always checked");
    }

    use super::*;
    use crate::apply::batch::tests::copy;
    use crate::plan::FolderAction;

    fn folder(name: &str, copies: Vec<crate::plan::MessageCopy>) -> FolderPlan {
        FolderPlan {
            destination: name.into(),
            destination_wire: name.into(),
            action: FolderAction::Exists,
            destination_status: None,
            sources: vec![],
            rule: crate::plan::RuleKind::Default,
            special_use: None,
            merged: false,
            renamed_delimiter: false,
            subscribe: false,
            case_match: false,
            copy: copies,
            already_present: 0,
            moved: 0,
            skipped: vec![],
            ambiguous: 0,
            ambiguous_keys: vec![],
            flag_updates: vec![],
        }
    }

    #[test]
    fn lanes_balance_by_size_and_keep_plan_order() {
        let big = folder("big", (0..10).map(|i| copy(i, 0, 1_000_000)).collect());
        let a = folder("a", (0..3).map(|i| copy(i, 0, 1_000_000)).collect());
        let b = folder("b", (0..4).map(|i| copy(i, 0, 1_000_000)).collect());
        let c = folder("c", (0..2).map(|i| copy(i, 0, 1_000_000)).collect());
        let all = [&a, &big, &b, &c];
        let lanes = split_into_lanes(&all, 2);
        let names: Vec<Vec<&str>> = lanes
            .iter()
            .map(|l| l.iter().map(|f| f.destination.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["big"], vec!["a", "b", "c"]]);
        assert_eq!(split_into_lanes(&all, 1)[0].len(), 4);
        assert_eq!(split_into_lanes(&[], 3), vec![Vec::<&FolderPlan>::new()]);
    }
}
