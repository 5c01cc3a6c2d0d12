//! One process holds a ledger. sled locks its data file too, but its error does not say who holds
//! it; this lock file records the holder (pid, what it runs, since when) so the refusal can.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

pub(crate) const LOCK_FILE: &str = "custos.lock";

pub(crate) struct ProcessLock {
    _file: File,
}

pub(crate) enum LockError {
    Held { holder: String },
    Io(std::io::Error),
}

impl ProcessLock {
    pub(crate) fn acquire(dir: &Path, holder: &str) -> Result<ProcessLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LockError::Io)?;
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text.trim();
                let holder = if holder.is_empty() { "another process (no holder recorded)" } else { holder };
                return Err(LockError::Held { holder: holder.to_string() });
            }
            return Err(LockError::Io(err));
        }
        let me = format!("pid {} ({holder}), since {}", std::process::id(), custos_domain::Timestamp::now());
        file.set_len(0).map_err(LockError::Io)?;
        file.seek(SeekFrom::Start(0)).map_err(LockError::Io)?;
        file.write_all(me.as_bytes()).map_err(LockError::Io)?;
        Ok(ProcessLock { _file: file })
    }
}
