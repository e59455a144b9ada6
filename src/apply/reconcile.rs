//! Reconciling with the destination: what arrived there since the plan or since a dropped
//! connection is not sent again, and what was appended is read back (the key stability
//! check).

use std::collections::{BTreeSet, HashMap};

use crate::identity::{parse_headers, IdentityKey};
use crate::imap::{DestinationSession, SelectInfo, SessionError};
use crate::model::WireName;
use crate::plan::MessageCopy;

use super::batch::Ready;
use super::lanes::{Lane, PendingCheck};
use super::ApplyError;

impl Lane<'_, '_> {
    /// An APPEND was cut: the batch may have (partly) arrived before the connection
    /// dropped. Reads what the destination has from UID `from` on (on a new connection),
    /// counts those as copied, and removes them from `batch`: only the rest is sent again.
    pub(super) async fn drop_arrived(
        &mut self,
        wire: &WireName,
        batch: &mut Vec<Ready<'_>>,
        from: u32,
    ) -> Result<u64, ApplyError> {
        let found = read_keys_since(&mut self.dst, wire, from)
            .await
            .map_err(ApplyError::dst)?;
        let mut copies: Vec<&MessageCopy> = batch.iter().map(|r| r.copy).collect();
        let before = copies.len();
        if subtract_present(&mut copies, found) == 0 {
            return Ok(0);
        }
        let keep: BTreeSet<(usize, u32)> = copies.iter().map(|m| (m.source, m.uid)).collect();
        let arrived = (before - keep.len()) as u64;
        tracing::info!(
            account = %self.ctx.account.source_user,
            "{arrived} of {before} messages of the interrupted batch had arrived; not sending them again",
        );
        let tally = &mut self.tally;
        let mut arrived_copies = Vec::new();
        batch.retain(|r| {
            let arrived = !keep.contains(&(r.copy.source, r.copy.uid));
            if arrived {
                tally.report.copied += 1;
                tally.report.bytes += r.body.len() as u64;
                tally.progress.advance(1, r.body.len() as u64);
                arrived_copies.push(r.copy);
            }
            !arrived
        });
        tally.record_delivered(arrived_copies)?;
        Ok(arrived)
    }

    /// The key stability check (ARCHITECTURE.md "Matching"): reads the identity headers of
    /// the messages just appended back from the destination. A server that rewrites them
    /// would make every later pass copy them again, so the account stops here.
    pub(super) async fn verify_keys(
        &mut self,
        folder: &str,
        wire: &WireName,
        appended: &[(u32, IdentityKey)],
    ) -> Result<(), ApplyError> {
        let Some(first) = appended.iter().map(|(uid, _)| *uid).min() else {
            return Ok(());
        };
        select_if_other(&mut self.dst, wire).await?;
        let mut stored: HashMap<u32, IdentityKey> = HashMap::with_capacity(appended.len());
        self.dst
            .fetch_metadata_since(first, |m| {
                stored.insert(m.uid, parse_headers(&m.header).key);
            })
            .await
            .map_err(ApplyError::dst)?;
        compare_keys(folder, appended, &stored)
    }

    /// Sends a key stability check that is due and not sent yet (on its own).
    pub(super) async fn flush_check(&mut self) -> Result<(), ApplyError> {
        match self.pending_check.take() {
            Some(check) => {
                self.verify_keys(&check.folder, &check.wire, &check.appended)
                    .await
            }
            None => Ok(()),
        }
    }
}

/// SELECT of `wire` on the lane's destination connection; a key stability check still
/// pending for the folder selected before goes in the same round trip, ahead of it.
pub(super) async fn select_checked(
    dst: &mut DestinationSession,
    pending: Option<PendingCheck>,
    wire: &WireName,
) -> Result<SelectInfo, ApplyError> {
    let Some((check, first)) =
        pending.and_then(|c| c.appended.iter().map(|(uid, _)| *uid).min().map(|f| (c, f)))
    else {
        return dst.select(wire).await.map_err(ApplyError::dst);
    };
    // The check reads the folder it was appended to.
    select_if_other(dst, &check.wire).await?;
    let mut stored: HashMap<u32, IdentityKey> = HashMap::with_capacity(check.appended.len());
    let sel = dst
        .fetch_since_then_select(first, wire, |m| {
            stored.insert(m.uid, parse_headers(&m.header).key);
        })
        .await
        .map_err(ApplyError::dst)?;
    compare_keys(&check.folder, &check.appended, &stored)?;
    Ok(sel)
}

/// Every appended message whose key was read back must have the key it was sent with.
fn compare_keys(
    folder: &str,
    appended: &[(u32, IdentityKey)],
    stored: &HashMap<u32, IdentityKey>,
) -> Result<(), ApplyError> {
    for (uid, key) in appended {
        match stored.get(uid) {
            Some(k) if k == key => {}
            // Expunged right away by someone else: nothing to compare.
            None => {}
            Some(_) => {
                return Err(ApplyError::RewritesHeaders {
                    folder: folder.to_string(),
                    uid: *uid,
                })
            }
        }
    }
    Ok(())
}

/// Selects `wire` unless the session has it selected already: a step that reads a
/// folder never reads another one (the next folder may be selected ahead).
async fn select_if_other(dst: &mut DestinationSession, wire: &WireName) -> Result<(), ApplyError> {
    if dst.folder() != Some(wire) {
        dst.select(wire).await.map_err(ApplyError::dst)?;
    }
    Ok(())
}

/// Identity keys of the destination folder `wire`'s messages with UID ≥ `from`.
pub(super) async fn read_keys_since(
    dst: &mut DestinationSession,
    wire: &WireName,
    from: u32,
) -> Result<Vec<IdentityKey>, SessionError> {
    if dst.folder() != Some(wire) {
        dst.select(wire).await?;
    }
    let mut keys = Vec::new();
    dst.fetch_metadata_since(from, |m| keys.push(parse_headers(&m.header).key))
        .await?;
    Ok(keys)
}

/// Removes from `copies` one planned message per key found on the destination (lowest
/// UIDs first: an interrupted run copied in ascending order). Returns how many.
pub(super) fn subtract_present(copies: &mut Vec<&MessageCopy>, found: Vec<IdentityKey>) -> u64 {
    let mut counts: HashMap<IdentityKey, u64> = HashMap::new();
    for k in found {
        *counts.entry(k).or_insert(0) += 1;
    }
    let before = copies.len();
    copies.retain(|m| match counts.get_mut(&m.key) {
        Some(n) if *n > 0 => {
            *n -= 1;
            false
        }
        _ => true,
    });
    (before - copies.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::batch::tests::copy;

    #[test]
    fn subtract_removes_one_per_found_key_lowest_uid_first() {
        let a = [copy(1, 1, 10), copy(2, 1, 10), copy(3, 2, 10)];
        let mut v: Vec<&MessageCopy> = a.iter().collect();
        let removed = subtract_present(&mut v, vec![IdentityKey([1; 32]), IdentityKey([9; 32])]);
        assert_eq!(removed, 1);
        assert_eq!(v.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![2, 3]);
    }
}
