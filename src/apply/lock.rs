//! The local lock that keeps two applies on one destination account from racing.

use std::fs::File;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::ApplyError;

/// A held lock on (destination host, user); released on drop (the OS drops flock on exit,
/// so a `kill -9` leaves no stale lock).
pub(super) struct DestinationLock {
    _file: File,
}

impl DestinationLock {
    pub(super) fn acquire(host: &str, user: &str) -> Result<DestinationLock, ApplyError> {
        let dir = std::env::temp_dir().join("mailshift-locks");
        let digest = Sha256::digest(format!(
            "{}\0{}",
            host.to_ascii_lowercase(),
            user.to_lowercase()
        ));
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let path: PathBuf = dir.join(format!("{name}.lock"));
        let io = |source| ApplyError::LockFile {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(DestinationLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(ApplyError::Locked {
                host: host.to_string(),
                user: user.to_string(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_per_destination_account() {
        let user = format!("lock-test-{}", std::process::id());
        let first = DestinationLock::acquire("host.example", &user).unwrap();
        let err = DestinationLock::acquire("host.example", &user)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("another mailshift apply is running"),
            "{err}"
        );
        drop(first);
        assert!(DestinationLock::acquire("host.example", &user).is_ok());
    }
}
