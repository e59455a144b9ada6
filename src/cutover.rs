//! `mailshift cutover`: is it safe to switch MX, has the switch propagated, and is mail
//! still arriving at the old server? This module holds the decisions, as pure functions
//! over what DNS says now, what earlier runs saw (kept under `[state] dir`, see [`state`]),
//! and what the source INBOX holds; [`dns`] asks DNS, the command wires them together.
//!
//! The rules:
//! - A domain whose MX records are not (all) the `[cutover] new-mx` hosts is not switched.
//!   Its TTL is *too high* above [`MAX_TTL`]; when a lower TTL than the one seen by an
//!   earlier run appears, resolvers may still cache the old records with the old TTL, so it
//!   is *too high* until the old TTL has elapsed since the lower one was first seen. Then
//!   it is *ready to switch*.
//! - A domain whose MX records are all new-mx hosts is *switched, propagating* until the
//!   TTL the old records had (or a pending older one) has elapsed since the switch was
//!   first seen; then *switched*.
//! - An account's *final pass* is the last `apply` that finished the account (status
//!   done); it is recorded with the source INBOX's UIDVALIDITY and UIDNEXT at inventory
//!   time. Mail that reached the source after it is exactly the INBOX messages with a UID at
//!   or above that UIDNEXT: no clocks are compared. The account is *drained* when a final
//!   pass started after its domain's switch was first seen and nothing arrived since.
//! - `cutover` exits 0 when every domain is switched and every account is drained.

pub(crate) mod dns;
pub(crate) mod state;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The highest MX TTL (seconds) at which a switch is considered quick enough: 15 minutes,
/// the usual advice before an MX change.
pub(crate) const MAX_TTL: u32 = 900;

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MxHost {
    pub preference: u16,
    /// Lower case, no trailing dot.
    pub exchange: String,
}

/// What DNS says about a domain now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MxObservation {
    pub hosts: Vec<MxHost>,
    /// The TTL of the MX record set, seconds (the highest when records differ).
    pub ttl: u32,
}

/// What earlier `cutover` runs saw of a domain (kept in the state directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DomainMemory {
    /// The TTL of the old (not yet switched) MX records at the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ttl: Option<u32>,
    /// When a TTL lower than `previous_ttl` was first seen: caches may hold the old
    /// records until `lowered_at + previous_ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowered_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_ttl: Option<u32>,
    /// When the MX records were first seen to point at the new hosts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<DateTime<Utc>>,
    /// When no resolver can still hold the old records (switch + old TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagated_at: Option<DateTime<Utc>>,
    /// The old TTL was not known when the switch was first seen (the first run came after
    /// it): the new records' TTL stands in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub old_ttl_unknown: bool,
}

/// Where a domain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DomainState {
    /// The TTL is above [`MAX_TTL`]; if lowered now, the lower one is in effect everywhere
    /// at `lowered_in_effect_at` (now + this TTL).
    TtlTooHigh {
        ttl: u32,
        lowered_in_effect_at: DateTime<Utc>,
    },
    /// The TTL was lowered, but resolvers may still cache the old one until `in_effect_at`.
    TtlLowering {
        ttl: u32,
        previous_ttl: u32,
        in_effect_at: DateTime<Utc>,
    },
    ReadyToSwitch {
        ttl: u32,
    },
    /// Some resolvers may still send mail to the old MX until `until`.
    Propagating {
        switched_at: DateTime<Utc>,
        until: DateTime<Utc>,
        old_ttl_unknown: bool,
    },
    Switched {
        switched_at: DateTime<Utc>,
        propagated_at: DateTime<Utc>,
    },
}

impl DomainState {
    /// The words the text output and JSON use (`TTL too high`, `ready to switch`, ...).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            DomainState::TtlTooHigh { .. } | DomainState::TtlLowering { .. } => "TTL too high",
            DomainState::ReadyToSwitch { .. } => "ready to switch",
            DomainState::Propagating { .. } => "switched, propagating",
            DomainState::Switched { .. } => "switched",
        }
    }

    /// The machine-readable name for JSON.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            DomainState::TtlTooHigh { .. } | DomainState::TtlLowering { .. } => "ttl-too-high",
            DomainState::ReadyToSwitch { .. } => "ready-to-switch",
            DomainState::Propagating { .. } => "switched-propagating",
            DomainState::Switched { .. } => "switched",
        }
    }

    /// When mail for this domain can no longer reach the old server through DNS.
    pub(crate) fn switched_at(&self) -> Option<DateTime<Utc>> {
        match self {
            DomainState::Propagating { switched_at, .. }
            | DomainState::Switched { switched_at, .. } => Some(*switched_at),
            _ => None,
        }
    }
}

/// Whether every MX host is one of the new provider's (and there is at least one).
pub(crate) fn points_to_new(hosts: &[MxHost], new_mx: &[String]) -> bool {
    !hosts.is_empty() && hosts.iter().all(|h| new_mx.contains(&h.exchange))
}

fn secs(ttl: u32) -> Duration {
    Duration::seconds(i64::from(ttl))
}

/// Decides a domain's state from what DNS says `now` and what earlier runs saw; returns
/// the state and the memory to keep for the next run.
pub(crate) fn decide_domain(
    now: DateTime<Utc>,
    observed: &MxObservation,
    new_mx: &[String],
    memory: &DomainMemory,
) -> (DomainState, DomainMemory) {
    let mut mem = memory.clone();
    let t = observed.ttl;
    // A lowering still pending at `now` (old records may be cached until this instant).
    let pending = |m: &DomainMemory| match (m.lowered_at, m.previous_ttl) {
        (Some(at), Some(prev)) if at + secs(prev) > now => Some((prev, at + secs(prev))),
        _ => None,
    };
    if points_to_new(&observed.hosts, new_mx) {
        let (switched_at, propagated_at) = match (mem.switched_at, mem.propagated_at) {
            (Some(s), Some(p)) => (s, p),
            _ => {
                // First seen now. Resolvers may hold the old records for the old TTL from
                // the last time they asked, i.e. at most the old TTL from now, or longer
                // while an earlier, higher TTL is still pending.
                let old_ttl = mem.last_ttl;
                mem.old_ttl_unknown = old_ttl.is_none();
                let mut until = now + secs(old_ttl.unwrap_or(t));
                if let Some((_, pending_until)) = pending(&mem) {
                    until = until.max(pending_until);
                }
                (now, until)
            }
        };
        mem.switched_at = Some(switched_at);
        mem.propagated_at = Some(propagated_at);
        let state = if now < propagated_at {
            DomainState::Propagating {
                switched_at,
                until: propagated_at,
                old_ttl_unknown: mem.old_ttl_unknown,
            }
        } else {
            DomainState::Switched {
                switched_at,
                propagated_at,
            }
        };
        return (state, mem);
    }

    // Not switched (or switched back): forget any switch, follow the TTL.
    mem.switched_at = None;
    mem.propagated_at = None;
    mem.old_ttl_unknown = false;
    match mem.last_ttl {
        Some(last) if t < last => {
            // Lowered since the last run: caches may hold the last TTL from now on,
            // unless an older lowering keeps them longer.
            let older_lasts_longer =
                pending(&mem).is_some_and(|(_, until)| until > now + secs(last));
            if !older_lasts_longer {
                mem.lowered_at = Some(now);
                mem.previous_ttl = Some(last);
            }
        }
        Some(last) if t > last => {
            // Raised: a higher TTL replaces whatever lowering was pending.
            mem.lowered_at = None;
            mem.previous_ttl = None;
        }
        _ => {}
    }
    mem.last_ttl = Some(t);
    let state = if t > MAX_TTL {
        DomainState::TtlTooHigh {
            ttl: t,
            lowered_in_effect_at: now + secs(t),
        }
    } else if let Some((previous_ttl, in_effect_at)) = pending(&mem) {
        DomainState::TtlLowering {
            ttl: t,
            previous_ttl,
            in_effect_at,
        }
    } else {
        DomainState::ReadyToSwitch { ttl: t }
    };
    (state, mem)
}

/// The last `apply` that finished an account, as recorded in the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FinalPass {
    /// `[source] host` and user: the INBOX this pass read.
    pub source_host: String,
    pub source_user: String,
    /// When that pass began reading the servers.
    pub started_at: DateTime<Utc>,
    /// The source INBOX at that pass's inventory: everything below `inbox_uidnext` was
    /// there (and so was copied).
    pub inbox_uidvalidity: u32,
    pub inbox_uidnext: u32,
}

/// What the source INBOX holds now, as far as `cutover` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InboxNow {
    pub uidvalidity: u32,
    /// INTERNALDATE of every message received after the switch, with its UID.
    pub arrived_after_switch: Vec<(u32, DateTime<Utc>)>,
    /// UIDs at or above the last final pass's UIDNEXT (same UIDVALIDITY), when there is one.
    pub since_final_pass: Option<u32>,
}

/// Where an account stands after the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccountState {
    /// Its domain is not switched yet: mail still goes to the old server by design.
    NotSwitched,
    /// No `apply` finished the account since the switch was first seen.
    NeedsFinalPass,
    /// Mail reached the source after the last final pass: another pass is needed.
    NewMail { count: u32 },
    /// The last final pass came after the switch and nothing arrived since.
    Drained,
}

impl AccountState {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            AccountState::NotSwitched => "not-switched",
            AccountState::NeedsFinalPass => "needs-final-pass",
            AccountState::NewMail { .. } => "new-mail",
            AccountState::Drained => "drained",
        }
    }
}

/// Decides an account's state from its domain's switch time, its last final pass and the
/// source INBOX now.
pub(crate) fn decide_account(
    switched_at: Option<DateTime<Utc>>,
    last_pass: Option<&FinalPass>,
    inbox: &InboxNow,
) -> AccountState {
    let Some(switched_at) = switched_at else {
        return AccountState::NotSwitched;
    };
    let Some(pass) = last_pass else {
        return AccountState::NeedsFinalPass;
    };
    if pass.started_at <= switched_at || pass.inbox_uidvalidity != inbox.uidvalidity {
        // A pass before the switch (or in the same second: times are whole seconds), or
        // the INBOX was recreated since (its UIDs mean something else now): the pass
        // proves nothing about today's INBOX.
        return AccountState::NeedsFinalPass;
    }
    match inbox.since_final_pass.unwrap_or(0) {
        0 => AccountState::Drained,
        count => AccountState::NewMail { count },
    }
}

/// How a whole `cutover` run ends (docs/exit-status.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 0: every domain switched and propagated, every account drained.
    Done,
    /// 2: waiting for the TTL, the switch, propagation or a final pass.
    Waiting,
    /// 1: a lookup or an account check failed.
    Failed,
}

pub(crate) fn verdict<'a>(
    domains: impl IntoIterator<Item = Option<&'a DomainState>>,
    accounts: impl IntoIterator<Item = Option<&'a AccountState>>,
) -> Verdict {
    let mut waiting = false;
    for d in domains {
        match d {
            None => return Verdict::Failed,
            Some(DomainState::Switched { .. }) => {}
            Some(_) => waiting = true,
        }
    }
    for a in accounts {
        match a {
            None => return Verdict::Failed,
            Some(AccountState::Drained) => {}
            Some(_) => waiting = true,
        }
    }
    if waiting {
        Verdict::Waiting
    } else {
        Verdict::Done
    }
}

impl Verdict {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Verdict::Done => "done",
            Verdict::Waiting => "waiting",
            Verdict::Failed => "failed",
        }
    }
}

/// The `cutover --format json` document, also what the text renderer reads.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CutoverReport {
    pub checked_at: DateTime<Utc>,
    pub new_mx: Vec<String>,
    /// [`MAX_TTL`].
    pub max_ttl: u32,
    pub domains: Vec<CutoverDomain>,
    pub accounts: Vec<CutoverAccount>,
    /// `done` (exit 0), `waiting` (2), `failed` (1).
    pub status: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CutoverDomain {
    pub domain: String,
    /// `ttl-too-high`, `ready-to-switch`, `switched-propagating`, `switched`; absent on error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// The same in words (`TTL too high`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<&'static str>,
    pub mx: Vec<MxHost>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// `authoritative`, `configured-nameservers` or `cache` (may be lower than the real TTL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_source: Option<&'static str>,
    /// TTL too high: a lowered TTL made now is in effect everywhere at this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lowered_in_effect_at: Option<DateTime<Utc>>,
    /// TTL lowered: the previous TTL, cached until `ttl_in_effect_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_ttl: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_in_effect_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<DateTime<Utc>>,
    /// Switched: when no resolver can still hold the old records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagated_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub old_ttl_unknown: bool,
    /// MX hosts that are not among `new-mx` (a partly switched domain lists them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub old_mx: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl CutoverDomain {
    /// The report line of a decided domain.
    pub(crate) fn of(
        domain: &str,
        observed: &MxObservation,
        new_mx: &[String],
        state: &DomainState,
    ) -> CutoverDomain {
        let mut r = CutoverDomain {
            domain: domain.to_string(),
            state: Some(state.code()),
            label: Some(state.label()),
            mx: observed.hosts.clone(),
            ttl: Some(observed.ttl),
            old_mx: observed
                .hosts
                .iter()
                .filter(|h| !new_mx.contains(&h.exchange))
                .map(|h| h.exchange.clone())
                .collect(),
            ..CutoverDomain::default()
        };
        match *state {
            DomainState::TtlTooHigh {
                lowered_in_effect_at,
                ..
            } => r.lowered_in_effect_at = Some(lowered_in_effect_at),
            DomainState::TtlLowering {
                previous_ttl,
                in_effect_at,
                ..
            } => {
                r.previous_ttl = Some(previous_ttl);
                r.ttl_in_effect_at = Some(in_effect_at);
            }
            DomainState::ReadyToSwitch { .. } => {}
            DomainState::Propagating {
                switched_at,
                until,
                old_ttl_unknown,
            } => {
                r.switched_at = Some(switched_at);
                r.propagated_at = Some(until);
                r.old_ttl_unknown = old_ttl_unknown;
            }
            DomainState::Switched {
                switched_at,
                propagated_at,
            } => {
                r.switched_at = Some(switched_at);
                r.propagated_at = Some(propagated_at);
            }
        }
        r
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CutoverAccount {
    pub source_user: String,
    pub destination_user: String,
    pub domains: Vec<String>,
    /// `not-switched`, `needs-final-pass`, `new-mail`, `drained`; absent on error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// When the last of the account's domains was first seen switched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<DateTime<Utc>>,
    /// Messages in the source INBOX received after `switched_at`.
    pub arrived_after_switch: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_arrival: Option<DateTime<Utc>>,
    /// When the last `apply` that finished this account began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_final_pass: Option<DateTime<Utc>>,
    /// Messages that reached the source INBOX after that pass read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_last_final_pass: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The mail domain of a user name (`alice@Example.COM` → `example.com`), if it has one.
pub(crate) fn domain_of(user: &str) -> Option<String> {
    let (_, domain) = user.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

#[cfg(test)]
mod tests;
