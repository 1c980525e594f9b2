//! [`Importer`]: the journal's import API, through which restore and follow put segments from
//! elsewhere (S3) into a journal directory, since only the journal writes files there.
//!
//! Each import writes the file under a temporary name, fsyncs it, renames it to its segment
//! name (built by [`super::names`]) and fsyncs the directory, so a crash leaves either the
//! whole segment or a temporary file that the next open deletes.
//!
//! Invariants: the importer holds the directory's writer lock for its whole life (no writer can
//! open the journal meanwhile; replicas read it lock-free); a sealed segment is imported only
//! as a [`VerifiedSegment`] (every block and record checked) that continues the directory's
//! journal exactly (its first offset is the next offset, its chain starts at the last imported
//! chain hash); an unsealed segment without records (what a writer's open creates) is removed
//! under the lock, one with records makes the directory a writer's and is refused; after
//! [`Importer::import_tail`] (the unsealed tail of a point-in-time restore)
//! nothing more can be imported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::catalog::SegmentState;
use super::config::JournalConfig;
use super::error::{JournalError, Result};
use super::names;
use super::record::{Record, encode_frame};
use super::recovery::{Mode, recover};
use super::segment::VerifiedSegment;
use super::storage::{DirGuard, Storage, sync_dir};

/// See the module docs.
#[derive(Debug)]
pub struct Importer {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    _lock: Box<dyn DirGuard>,
    next_offset: u64,
    chain: [u8; 32],
    last_segment: Option<(u64, u64)>,
    sealed_only: bool,
    /// Files this importer wrote, for [`Importer::discard`].
    written: Vec<PathBuf>,
}

impl Importer {
    /// Opens `dir` for importing (creating it if needed): takes its writer lock. The directory
    /// must hold no journal, or only sealed segments (a follower's); otherwise
    /// [`JournalError::Import`].
    pub fn open(dir: impl AsRef<Path>, config: &JournalConfig) -> Result<Importer> {
        let dir = dir.as_ref().to_path_buf();
        let storage = config.storage.clone();
        storage
            .create_dir_all(&dir)
            .map_err(|e| JournalError::io(&dir, e))?;
        let lock = storage.lock(&dir)?;
        let recovered = recover(&dir, config, Mode::ReadOnly)?;
        // An unsealed segment holding no record (the active segment a writer creates on open)
        // holds nothing to lose: it goes, under the lock. One holding records is a writer's.
        let empty_raw: Vec<(u64, std::path::PathBuf)> = recovered
            .catalog
            .segments
            .iter()
            .filter(|s| matches!(s.state, SegmentState::Raw { next, .. } if next == s.first))
            .map(|s| (s.first, s.path.clone()))
            .collect();
        if recovered
            .catalog
            .segments
            .iter()
            .any(|s| matches!(s.state, SegmentState::Raw { next, .. } if next > s.first))
        {
            return Err(JournalError::Import(format!(
                "{} holds unsealed records: it is a writer's journal, not a restored or \
                 followed one; import into a new directory",
                dir.display()
            )));
        }
        for (first, path) in &empty_raw {
            storage
                .remove_file(path)
                .map_err(|e| JournalError::io(path, e))?;
            super::files::CloseMarker::remove(storage.as_ref(), &dir, *first)?;
        }
        if !empty_raw.is_empty() {
            sync_dir(storage.as_ref(), &dir)?;
        }
        let last_segment = recovered
            .catalog
            .segments
            .iter()
            .rev()
            .find_map(|s| match s.state {
                SegmentState::Sealed { last, .. } => Some((s.first, last)),
                SegmentState::Raw { .. } => None,
            });
        Ok(Importer {
            dir,
            storage,
            _lock: lock,
            next_offset: recovered.next_offset,
            chain: recovered.chain,
            last_segment,
            sealed_only: true,
            written: Vec::new(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The offset the next imported record must have.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The chain hash the next imported record must continue.
    pub fn chain(&self) -> [u8; 32] {
        self.chain
    }

    /// `(first, last)` of the last sealed segment in the directory.
    pub fn last_segment(&self) -> Option<(u64, u64)> {
        self.last_segment
    }

    fn check_continues(&self, first: u64, prev_hash: &[u8; 32], what: &str) -> Result<()> {
        if !self.sealed_only {
            return Err(JournalError::Import(
                "the journal ends in an imported unsealed tail; nothing can follow it".into(),
            ));
        }
        if first != self.next_offset {
            return Err(JournalError::Import(format!(
                "{what} starts at offset {first}, but the journal in {} continues at {}",
                self.dir.display(),
                self.next_offset
            )));
        }
        if *prev_hash != self.chain {
            return Err(JournalError::Import(format!(
                "{what} does not continue the chain of the journal in {} at offset {first}",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Imports a verified sealed segment that continues the journal.
    pub fn import_sealed(&mut self, segment: &VerifiedSegment) -> Result<()> {
        let footer = segment.footer();
        let (first, last) = (footer.first_offset, footer.last_offset);
        self.check_continues(
            first,
            &footer.prev_hash,
            &format!("segment {first}..={last}"),
        )?;
        self.write(&names::sealed(first, last), segment.bytes())?;
        self.next_offset = last + 1;
        self.chain = footer.last_hash;
        self.last_segment = Some((first, last));
        Ok(())
    }

    /// Imports verified records (consecutive, continuing the journal) as an unsealed segment:
    /// the tail of a point-in-time restore. Their frames are re-encoded with the same offsets,
    /// times and chain hashes; nothing can be imported after it.
    pub fn import_tail(&mut self, records: &[Record]) -> Result<()> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        self.check_continues(first.offset, &self.chain.clone(), "the tail")?;
        let mut bytes = Vec::new();
        let mut prev = self.chain;
        for (i, r) in records.iter().enumerate() {
            if r.offset != first.offset + i as u64 {
                return Err(JournalError::Import(format!(
                    "the tail's records are not consecutive at offset {}",
                    r.offset
                )));
            }
            prev = encode_frame(
                &mut bytes,
                &prev,
                r.offset,
                r.ts_us,
                r.schema_version,
                &r.payload,
            );
            if prev != r.hash {
                return Err(JournalError::Import(format!(
                    "record {} does not continue the chain",
                    r.offset
                )));
            }
        }
        self.write(&names::raw(first.offset), &bytes)?;
        self.next_offset = first.offset + records.len() as u64;
        self.chain = prev;
        self.sealed_only = false;
        Ok(())
    }

    /// Removes every file this importer wrote (a failed restore undoes itself, so the same
    /// directory can be restored into again), then releases the lock.
    pub fn discard(self) -> Result<()> {
        let storage = self.storage.as_ref();
        for path in self.written.iter().rev() {
            match storage.remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(JournalError::io(path, e)),
            }
        }
        sync_dir(storage, &self.dir)
    }

    /// Writes `bytes` as `name`: temporary file, fsync, rename, directory fsync.
    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let storage = self.storage.as_ref();
        let tmp = self.dir.join(names::temp(name));
        let path = self.dir.join(name);
        let io = |e| JournalError::io(&tmp, e);
        let mut file = storage.create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        storage
            .rename(&tmp, &path)
            .map_err(|e| JournalError::io(&path, e))?;
        self.written.push(path);
        sync_dir(storage, &self.dir)
    }
}
