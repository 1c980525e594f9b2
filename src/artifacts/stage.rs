//! [`Staged`]: an artifact file on its way into the store. Its bytes are written (from a local
//! file or streamed from an HTTP upload) into a staging directory beside the store, hashed
//! with SHA-256 as they come, and counted against a size limit; only a complete, fsynced file
//! is renamed into the store, by [`super::ArtifactStore::commit`].
//!
//! Invariants: the staging directory is `<store root>.staging` (a sibling, so no session id
//! can name it and the rename stays on one file system); a `Staged` that is dropped without
//! being placed removes its file (a refused or interrupted upload leaves nothing behind, and a
//! crash leaves only files in the staging directory, which [`clear_staging`] removes);
//! memory use is one write buffer, whatever the file's size.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::ArtifactError;

/// Read buffer when staging from a local file.
const COPY_BUFFER_BYTES: usize = 256 << 10;

/// Tells staged files of one process apart.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The staging directory of a store rooted at `root`.
pub fn staging_dir(root: &Path) -> PathBuf {
    let mut name = root.as_os_str().to_os_string();
    name.push(".staging");
    PathBuf::from(name)
}

/// Removes what a crash left in the staging directory of `root` (nothing there is recorded).
pub fn clear_staging(root: &Path) {
    let dir = staging_dir(root);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    size: u64,
    limit: u64,
    placed: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Staged {
    /// A new, empty staged file for the store rooted at `root`, refusing more than `limit` bytes.
    pub fn new(root: &Path, limit: u64) -> Result<Staged, ArtifactError> {
        let dir = staging_dir(root);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let name = format!(
            "{}-{}-{}.tmp",
            std::process::id(),
            crate::timestamp::now_us(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = File::create_new(&path).map_err(io(&path))?;
        Ok(Staged {
            path,
            file: Some(file),
            hasher: Sha256::new(),
            size: 0,
            limit,
            placed: false,
        })
    }

    /// Stages a copy of the local file `source` (already checked by `copy::check_source`).
    pub fn copy_of(root: &Path, source: &Path) -> Result<Staged, ArtifactError> {
        let mut staged = Staged::new(root, u64::MAX)?;
        let mut input = File::open(source).map_err(io(source))?;
        let mut buf = vec![0u8; COPY_BUFFER_BYTES];
        loop {
            let n = input.read(&mut buf).map_err(io(source))?;
            match buf.get(..n) {
                Some(chunk) if !chunk.is_empty() => staged.write(chunk)?,
                _ => break,
            }
        }
        Ok(staged)
    }

    /// Appends `chunk`; [`ArtifactError::TooLarge`] past the limit (the file is then dropped).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ArtifactError> {
        let size = self.size.saturating_add(chunk.len() as u64);
        if size > self.limit {
            return Err(ArtifactError::TooLarge { limit: self.limit });
        }
        let file = self.file.as_mut().ok_or_else(|| ArtifactError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("staged file already finished"),
        })?;
        file.write_all(chunk).map_err(io(&self.path))?;
        self.hasher.update(chunk);
        self.size = size;
        Ok(())
    }

    /// Bytes staged so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Makes the content durable; its SHA-256 (lower-case hex) and size.
    pub(super) fn finish(&mut self) -> Result<(String, u64), ArtifactError> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(io(&self.path))?;
        }
        let sha256 = self
            .hasher
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((sha256, self.size))
    }

    /// Renames the finished file to `dest` and makes that durable (the directory fsynced).
    pub(super) fn place(mut self, dest: &Path) -> Result<(), ArtifactError> {
        std::fs::rename(&self.path, dest).map_err(io(dest))?;
        self.placed = true;
        if let Some(dir) = dest.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
