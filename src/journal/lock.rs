//! One writer per journal directory: an exclusive advisory lock on `<journal>/LOCK`.
//!
//! The lock is an `flock` held for the life of the writer (released by the kernel when the
//! process dies, so a crashed writer never leaves a stale lock). The holder writes its pid into
//! the file so a second process can name it in its error.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::error::{JournalError, Result};

/// Name of the lock file inside the journal directory.
pub const LOCK_FILE: &str = "LOCK";

/// A held writer lock; released on drop.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

impl Drop for DirLock {
    /// Unlocks explicitly: a child process forked by another thread may briefly share the
    /// descriptor (until its exec closes it), and the lock belongs to the open file, so merely
    /// closing ours would leave the journal locked in that window.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl DirLock {
    /// Takes the exclusive lock or fails with [`JournalError::Locked`] naming the holder.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.into()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(JournalError::io(&path, e)),
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            write!(file, "{}", std::process::id())?;
            file.sync_data()
        };
        write_pid(&mut file).map_err(|e| JournalError::io(&path, e))?;
        Ok(DirLock { file })
    }
}
