//! Why an account's apply stopped: one error enum for the executor, with hints for people.

use crate::imap::{ImapError, SessionError};
use crate::model::Side;
use crate::state::StateError;

/// Why an account stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error("{side}")]
    Imap {
        side: Side,
        #[source]
        source: ImapError,
    },
    /// Dropped connections, timeouts or temporary refusals went on without any progress
    /// until the retry budget was spent.
    #[error("{side}: gave up after {attempts} attempts in a row without progress")]
    GaveUp {
        side: Side,
        attempts: u32,
        #[source]
        source: ImapError,
    },
    #[error("source folder `{folder}` changed UIDVALIDITY since the plan (was {planned}, now {now}): the saved plan is stale")]
    StaleSource {
        folder: String,
        planned: u32,
        now: u32,
    },
    #[error("the destination rewrites headers; a re-run would duplicate (folder `{folder}`, destination uid {uid}: its identity headers differ from the source message's)")]
    RewritesHeaders { folder: String, uid: u32 },
    #[error("another mailshift apply is running for destination user `{user}` on `{host}`")]
    Locked { host: String, user: String },
    #[error("refusing the lock directory `{path}`: {why}")]
    LockDir { path: String, why: String },
    #[error("cannot create the lock file `{path}`")]
    LockFile {
        path: String,
        source: std::io::Error,
    },
    /// The ledger of what the destination held could not be written.
    #[error(transparent)]
    Ledger(StateError),
    /// The destination refused a message with `[OVERQUOTA]`: every later one would fail
    /// too, so the account stops here.
    #[error("the destination account is over its quota (folder `{folder}`): {words}")]
    OverQuota { folder: String, words: String },
}

impl ApplyError {
    /// A session's error on `side`.
    pub(super) fn session(side: Side, e: SessionError) -> ApplyError {
        match e {
            SessionError::Permanent(source) => ApplyError::Imap { side, source },
            SessionError::GaveUp { attempts, last } => ApplyError::GaveUp {
                side,
                attempts,
                source: last,
            },
            SessionError::UidValidityChanged { folder, was, now } => ApplyError::StaleSource {
                folder,
                planned: was,
                now,
            },
        }
    }

    pub(super) fn src(e: SessionError) -> ApplyError {
        ApplyError::session(Side::Source, e)
    }

    pub(super) fn dst(e: SessionError) -> ApplyError {
        ApplyError::session(Side::Destination, e)
    }
}

impl crate::diagnostics::HasHint for ApplyError {
    fn hint(&self) -> Option<String> {
        match self {
            ApplyError::Imap { .. } | ApplyError::LockFile { .. } => None,
            // Transparent: the chain goes on with the ledger's own cause, so its hint is
            // answered here.
            ApplyError::Ledger(e) => crate::diagnostics::HasHint::hint(e),
            ApplyError::StaleSource { .. } => Some("run mailshift plan again".into()),
            ApplyError::GaveUp { .. } => Some(
                "the server kept failing without letting anything through; run apply again \
                 later (what arrived stays, the rest is copied then)"
                    .into(),
            ),
            ApplyError::RewritesHeaders { .. } => Some(
                "this server changes Message-ID, Date, From, To, Cc or Subject on APPEND; \
                 report it with `-vv` output, and do not re-run apply on this account"
                    .into(),
            ),
            ApplyError::LockDir { .. } => Some(
                "remove it (mailshift makes a private one: owner-only, not a link), or point \
                 `[state] dir` or `XDG_RUNTIME_DIR` elsewhere"
                    .into(),
            ),
            ApplyError::Locked { .. } => {
                Some("wait for it to finish; two applies on one account would race".into())
            }
            ApplyError::OverQuota { .. } => Some(
                "free space in the destination account or raise its quota, then run apply again: what arrived stays, the rest is copied then"
                    .into(),
            ),
        }
    }
}
