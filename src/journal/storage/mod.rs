//! The journal's file I/O, behind a small trait: [`Storage`] (directory and whole-file
//! operations) and [`StorageFile`] (one open file).
//!
//! Why a trait: every byte the journal writes, every fsync and every rename goes through here,
//! so a test can substitute [`sim::SimStorage`], which keeps written-but-not-synced bytes apart
//! and, at a seeded "power loss", drops them or keeps a seeded prefix of them (a torn last
//! write), or fails a chosen operation with `ENOSPC` / `EIO`. Production uses [`OsStorage`], a
//! thin layer over `std::fs` (one virtual call per batch write or fsync: nothing measurable
//! beside the system calls themselves; see benches/RESULTS.md).
//!
//! Invariants an implementation keeps (the journal relies on them):
//! - `StorageFile::write_all` appends; the bytes are readable at once through any handle on
//!   the same file, but durable only after `sync_data`/`sync_all` on it returns.
//! - A name created, renamed or removed in a directory is durable only after `sync_dir` of that
//!   directory returns.
//! - An open handle keeps reading its file after the name is removed or renamed (POSIX).
//! - After an error from `sync_data`, nothing about the file's durability is known: the journal
//!   never retries an fsync (it fails instead), as PostgreSQL learned it must.

pub mod os;
pub mod sim;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use os::OsStorage;

use super::error::{JournalError, Result};

/// An open file of the journal.
pub trait StorageFile: Send + Sync + Debug {
    /// Appends `buf` (whole, or an error).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes the file's data and metadata durable (fsync).
    fn sync_all(&mut self) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `pos`.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A held directory lock (released on drop).
pub trait DirGuard: Send + Sync + Debug {}

/// Where a journal directory's files live; see the module docs.
pub trait Storage: Send + Sync + Debug {
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir` (not sorted).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates a new, empty file at `path` (fails if it exists), open for append and read.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Creates or truncates the file at `path`, open for append and read.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for append and read.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Renames `from` to `to` (replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Cuts the file at `path` to `len` bytes and makes that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Whether a file exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Takes the exclusive writer lock of `dir`, or fails with `JournalError::Locked`.
    fn lock(&self, dir: &Path) -> Result<Box<dyn DirGuard>>;
}

/// The storage journals use unless configured otherwise.
pub fn os() -> Arc<dyn Storage> {
    Arc::new(OsStorage)
}

/// [`std::io::Write`] over a [`StorageFile`] (for buffered writers of whole files).
#[derive(Debug)]
pub struct FileWriter<'a>(pub &'a mut dyn StorageFile);

impl io::Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// fsyncs a directory so file creations, renames and removals in it are durable.
pub(crate) fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    storage.sync_dir(dir).map_err(|e| JournalError::io(dir, e))
}
