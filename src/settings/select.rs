//! Which accounts of the CSV a run works on: `--account USER` (repeatable) and
//! `--shard K/N`, so that several machines can split a big migration into disjoint parts.
//! The shard of an account depends only on its `source_user`, never on the CSV order, so
//! adding rows never moves an existing account to another shard.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::{Account, SettingsError};

/// The selection flags, as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--account USER` values (matched case-insensitively against `source_user`); empty
    /// means every account.
    pub accounts: Vec<String>,
    /// `--shard K/N`.
    pub shard: Option<Shard>,
}

/// `--shard K/N`: this run takes the accounts whose [`shard_of`] is `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// K, in `0..count`.
    pub index: u64,
    /// N, at least 1.
    pub count: u64,
}

impl Shard {
    /// Whether `source_user` belongs to this shard.
    pub fn contains(&self, source_user: &str) -> bool {
        shard_of(source_user, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Why a `--shard` value was refused (clap prints it after `invalid value ... for '--shard'`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShardParseError(String);

impl FromStr for Shard {
    type Err = ShardParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = || {
            ShardParseError(format!(
                "expected `K/N` with 0 <= K < N, e.g. `0/4`, got `{s}`"
            ))
        };
        let (k, n) = s.split_once('/').ok_or_else(expected)?;
        let index: u64 = k.trim().parse().map_err(|_| expected())?;
        let count: u64 = n.trim().parse().map_err(|_| expected())?;
        if count == 0 {
            return Err(ShardParseError(format!(
                "the shard count in `{s}` must be at least 1"
            )));
        }
        if index >= count {
            return Err(ShardParseError(format!(
                "the shard index in `{s}` must be below the count: shards are numbered 0 to {}",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }
}

/// The shard (in `0..count`) of an account: SHA-256 of the lower-cased `source_user`, first
/// 8 bytes big-endian, modulo `count`. A fixed contract (docs/commands.md, `--shard`): other
/// machines running other shards must agree. A `count` of 0 is treated as 1.
pub fn shard_of(source_user: &str, count: u64) -> u64 {
    let digest = Sha256::digest(source_user.to_lowercase().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % count.max(1)
}

/// Keeps the selected accounts, in CSV order: first `--account` (every value must name an
/// account), then the shard. An empty result after the shard filter is not an error (a small
/// CSV split in many shards leaves some shards empty).
pub(crate) fn select(
    accounts: Vec<Account>,
    selection: &Selection,
    csv_file: &str,
) -> Result<Vec<Account>, SettingsError> {
    let mut selected = accounts;
    if !selection.accounts.is_empty() {
        let wanted: Vec<String> = selection
            .accounts
            .iter()
            .map(|a| a.trim().to_lowercase())
            .collect();
        let mut unknown: Vec<&str> = Vec::new();
        for (given, lower) in selection.accounts.iter().zip(&wanted) {
            let known = selected
                .iter()
                .any(|acc| acc.source_user.to_lowercase() == *lower);
            if !known && !unknown.contains(&given.as_str()) {
                unknown.push(given);
            }
        }
        if !unknown.is_empty() {
            let list = unknown
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SettingsError::Selection(format!(
                "--account {list}: not a `source_user` in `{csv_file}`"
            )));
        }
        selected.retain(|acc| wanted.contains(&acc.source_user.to_lowercase()));
    }
    if let Some(shard) = selection.shard {
        selected.retain(|acc| shard.contains(&acc.source_user));
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parsing() {
        let table: &[(&str, Option<(u64, u64)>)] = &[
            ("0/1", Some((0, 1))),
            ("0/4", Some((0, 4))),
            ("3/4", Some((3, 4))),
            (" 2 / 5 ", Some((2, 5))),
            ("4/4", None),
            ("5/4", None),
            ("0/0", None),
            ("-1/4", None),
            ("1", None),
            ("a/b", None),
            ("1/2/3", None),
            ("", None),
        ];
        for (input, want) in table {
            let got = input.parse::<Shard>().ok().map(|s| (s.index, s.count));
            assert_eq!(got, *want, "input {input:?}");
        }
    }

    #[test]
    fn shard_errors_are_clear() {
        let e = "4/4".parse::<Shard>().unwrap_err().to_string();
        assert!(e.contains("0 to 3"), "{e}");
        let e = "0/0".parse::<Shard>().unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        let e = "x".parse::<Shard>().unwrap_err().to_string();
        assert!(e.contains("K/N"), "{e}");
    }

    #[test]
    fn shard_display_round_trips() {
        let s: Shard = "2/7".parse().unwrap();
        assert_eq!(s.to_string(), "2/7");
    }

    #[test]
    fn shard_of_is_stable() {
        // sha256("alice@example.com") = ff8d9819fc0e12bf...; these values are part of the
        // interface (other machines running other shards must agree): never change them.
        assert_eq!(shard_of("alice@example.com", u64::MAX), 0xff8d9819fc0e12bf);
        assert_eq!(shard_of("Alice@Example.COM", u64::MAX), 0xff8d9819fc0e12bf);
        assert_eq!(shard_of("alice@example.com", 4), 0xff8d9819fc0e12bf % 4);
        assert_eq!(shard_of("alice@example.com", 1), 0);
        assert_eq!(shard_of("alice@example.com", 0), 0);
    }

    #[test]
    fn shards_partition_the_accounts() {
        let users: Vec<String> = (0..200).map(|i| format!("user{i}@example.com")).collect();
        let mut seen = vec![0u32; 5];
        for u in &users {
            let k = shard_of(u, 5);
            assert!(k < 5);
            seen[k as usize] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 0),
            "every shard gets some: {seen:?}"
        );
    }
}
