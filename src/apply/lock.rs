//! The local lock that keeps two applies on one destination account from racing: a
//! `flock` on a file per (destination host, port, user) in a private directory —
//! `$XDG_RUNTIME_DIR/mailshift-locks`, else `locks/` under the state directory. The
//! directory must be a real directory (not a symbolic link) owned by this user with no
//! access for others, so nobody else can plant a file or a link there; the lock file is
//! removed on release.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ApplyError;

/// A held lock on (destination host, port, user); released (and its file removed) on
/// drop. The OS drops the flock on exit, so a `kill -9` leaves no stale lock (only a file,
/// which the next apply reuses).
pub(super) struct DestinationLock {
    file: Option<File>,
    path: PathBuf,
}

impl Drop for DestinationLock {
    fn drop(&mut self) {
        // Removed while still locked: a later apply creates a new file. One that opened
        // this file meanwhile finds it unlinked after locking it and starts over.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// The directory for lock files: `$XDG_RUNTIME_DIR/mailshift-locks` when that variable is
/// set, else `<state dir>/locks`.
pub(super) fn lock_dir(state_dir: &Path) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() && Path::new(&dir).is_absolute() => {
            Path::new(&dir).join("mailshift-locks")
        }
        _ => state_dir.join("locks"),
    }
}

/// The lock file's name for one destination account.
pub(super) fn lock_name(host: &str, port: u16, user: &str) -> String {
    let digest = Sha256::digest(format!(
        "{}\0{port}\0{}",
        host.to_ascii_lowercase(),
        user.to_lowercase()
    ));
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}.lock")
}

/// Makes sure `dir` is a private directory of this user: creates it (mode 0700) or
/// checks the existing one (not a symlink, a directory, our own; group and other access
/// is removed).
fn private_dir(dir: &Path) -> Result<(), ApplyError> {
    let refuse = |why: &str| ApplyError::LockDir {
        path: dir.display().to_string(),
        why: why.to_string(),
    };
    let io = |source| ApplyError::LockFile {
        path: dir.display().to_string(),
        source,
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io)?;
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            if meta.file_type().is_symlink() {
                return Err(refuse("it is a symbolic link"));
            }
            if !meta.is_dir() {
                return Err(refuse("it is not a directory"));
            }
            // Who are we? The owner of a file we make in the parent directory.
            let me = tempfile::tempfile_in(parent)
                .and_then(|f| f.metadata())
                .map_err(io)?
                .uid();
            if meta.uid() != me {
                return Err(refuse("it belongs to another user"));
            }
            if meta.mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .or_else(|e| match e.kind() {
                // Made by a concurrent apply: check it like any existing one.
                std::io::ErrorKind::AlreadyExists => private_dir(dir),
                _ => Err(io(e)),
            }),
        Err(e) => Err(io(e)),
    }
}

impl DestinationLock {
    pub(super) fn acquire(
        state_dir: &Path,
        host: &str,
        port: u16,
        user: &str,
    ) -> Result<DestinationLock, ApplyError> {
        DestinationLock::acquire_in(&lock_dir(state_dir), host, port, user)
    }

    fn acquire_in(
        dir: &Path,
        host: &str,
        port: u16,
        user: &str,
    ) -> Result<DestinationLock, ApplyError> {
        private_dir(dir)?;
        let path = dir.join(lock_name(host, port, user));
        let io = |source| ApplyError::LockFile {
            path: path.display().to_string(),
            source,
        };
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(ApplyError::Locked {
                        host: host.to_string(),
                        user: user.to_string(),
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            // The holder may have removed the file between our open and our lock: then
            // this lock is on a file nobody else will find; start over.
            let held = file.metadata().map_err(io)?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(DestinationLock {
                        file: Some(file),
                        path,
                    })
                }
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn acquire(
        state: &Path,
        host: &str,
        port: u16,
        user: &str,
    ) -> Result<DestinationLock, ApplyError> {
        DestinationLock::acquire_in(&state.join("locks"), host, port, user)
    }

    #[test]
    fn a_lock_is_exclusive_per_destination_account_and_its_file_goes_away() {
        let dir = state();
        let first = acquire(dir.path(), "host.example", 993, "u").unwrap();
        let path = first.path.clone();
        assert!(path.exists());
        let err = acquire(dir.path(), "HOST.example", 993, "U").err().unwrap();
        assert!(
            err.to_string()
                .contains("another mailshift apply is running"),
            "{err}"
        );
        // Another port is another server.
        let other = acquire(dir.path(), "host.example", 143, "u").unwrap();
        drop(other);
        drop(first);
        assert!(!path.exists(), "the lock file is removed on release");
        assert!(acquire(dir.path(), "host.example", 993, "u").is_ok());
    }

    #[test]
    fn the_lock_directory_is_private() {
        let dir = state();
        // Tests in this module must not depend on the caller's XDG_RUNTIME_DIR.
        let locks = dir.path().join("locks");
        private_dir(&locks).unwrap();
        let mode = std::fs::metadata(&locks).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A group-readable one is tightened.
        std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&locks).unwrap();
        assert_eq!(std::fs::metadata(&locks).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_symlinked_lock_directory_is_refused() {
        let dir = state();
        let target = dir.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let locks = dir.path().join("locks");
        std::os::unix::fs::symlink(&target, &locks).unwrap();
        let err = private_dir(&locks).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }
}
