//! What mailshift remembers between runs, under `[state] dir` (default `.mailshift` beside
//! the config): per destination account, the ledger of the most copies of each identity key
//! it was ever seen to hold (ARCHITECTURE.md "After cutover"). It is what lets a final pass
//! tell "deleted there by a user" from "never copied"; and per account and side, the
//! inventory cache that lets a plan skip folders whose STATUS proves them unchanged
//! (`cache.rs`). No secrets are ever written here.

pub(crate) mod cache;
mod ledger;

pub(crate) use ledger::{Ledger, LedgerWriter, StateError};
