//! One process holds a ledger. sled locks its data file too, but its error does not say who holds
//! it; this lock file records the holder (pid, what it runs, since when) so the refusal can.
//!
//! `flock` belongs to an open file description, and a child process this one starts shares its
//! descriptions from `fork` until its `exec` closes them (close-on-exec). So a lock this process
//! has just let go of can still be held for a moment by a child being started on another thread
//! (seen in CI: the model test restarted its ledger while another test started `psql`, and the
//! reopen was refused as held by its own pid). A lock that names this process while no handle of
//! this process holds that folder is such a leftover, and is waited for; one that a live handle
//! holds is refused at once.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) const LOCK_FILE: &str = "custos.lock";

/// How long an open waits for a lock this process let go of to be released everywhere.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// The lock files this process holds through a live `ProcessLock`.
static HELD_HERE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

pub(crate) struct ProcessLock {
    path: PathBuf,
    _file: File,
}

#[derive(Debug)]
pub(crate) enum LockError {
    Held { holder: String },
    Io(std::io::Error),
}

impl ProcessLock {
    pub(crate) fn acquire(dir: &Path, holder: &str) -> Result<ProcessLock, LockError> {
        let path = dir.canonicalize().map_err(LockError::Io)?.join(LOCK_FILE);
        let started = Instant::now();
        loop {
            match try_lock(&path) {
                Ok(mut file) => {
                    let me =
                        format!("pid {} ({holder}), since {}", std::process::id(), custos_domain::Timestamp::now());
                    file.set_len(0).map_err(LockError::Io)?;
                    file.seek(SeekFrom::Start(0)).map_err(LockError::Io)?;
                    file.write_all(me.as_bytes()).map_err(LockError::Io)?;
                    held_here(|held| held.insert(path.clone()));
                    return Ok(ProcessLock { path, _file: file });
                }
                Err(LockError::Held { holder })
                    if names_this_process(&holder)
                        && !held_here(|held| held.contains(&path))
                        && started.elapsed() < RELEASE_WAIT =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        held_here(|held| held.remove(&self.path));
    }
}

fn held_here<R>(f: impl FnOnce(&mut HashSet<PathBuf>) -> R) -> R {
    let mut slot = HELD_HERE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(slot.get_or_insert_with(HashSet::new))
}

fn names_this_process(holder: &str) -> bool {
    holder.strip_prefix(&format!("pid {} ", std::process::id())).is_some()
}

/// The lock file, locked; or who holds it.
fn try_lock(path: &Path) -> Result<File, LockError> {
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(LockError::Io)?;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(file);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(LockError::Io(err));
    }
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let holder = text.trim();
    let holder = if holder.is_empty() { "another process (no holder recorded)" } else { holder };
    Err(LockError::Held { holder: holder.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock this process let go of, still held through another description of the file (as a
    /// child between fork and exec holds it), is waited for, not refused.
    #[test]
    fn a_lock_released_here_but_held_a_moment_longer_elsewhere_is_waited_for() {
        let tmp = tempfile::tempdir().unwrap();
        let first = ProcessLock::acquire(tmp.path(), "first").unwrap();
        // A second description of the same file, locked as the first is dropped: what a child
        // started between the two holds.
        let lingering = File::open(tmp.path().join(LOCK_FILE)).unwrap();
        drop(first);
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(lingering.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(lingering);
        });
        let again = ProcessLock::acquire(tmp.path(), "again");
        assert!(again.is_ok(), "refused: {:?}", again.err());
        t.join().unwrap();
    }

    /// A lock held by a live handle of this process is refused at once.
    #[test]
    fn a_lock_held_by_a_live_handle_here_is_refused_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = ProcessLock::acquire(tmp.path(), "first").unwrap();
        let started = Instant::now();
        let second = ProcessLock::acquire(tmp.path(), "second");
        assert!(matches!(second, Err(LockError::Held { ref holder }) if holder.contains("(first)")));
        assert!(started.elapsed() < RELEASE_WAIT / 2);
    }
}
