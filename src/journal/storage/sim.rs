//! [`SimStorage`]: an in-memory file system for fault tests, in the manner of the simulators of
//! TigerBeetle and FoundationDB. It models what a power loss may leave on a real disk:
//!
//! - each file has its current bytes (what reads see) and its durable bytes (as of its last
//!   `sync_data`/`sync_all`);
//! - each directory has its current names and its durable names (as of its last `sync_dir`);
//! - [`SimStorage::power_loss_image`] builds the disk a reboot would find: the durable names,
//!   each file's durable bytes plus a seeded prefix of the bytes appended since (none, all, or
//!   a torn part: the last write cut short), and nothing else;
//! - [`SimStorage::process_crash_image`] builds what a killed process leaves (everything
//!   written is in the page cache and survives).
//!
//! Faults: a [`Plan`] makes the N-th fault point (every create, write, fsync, rename, removal,
//! directory fsync and truncation counts as one) fail once with `ENOSPC` or `EIO`, or lose power
//! there (that operation and every later one fail with `EIO`, as on a dead machine). Directories
//! are durable as soon as they are created (a simplification: the journal creates its
//! directories once, before anything in them matters).
//!
//! Determinism: the image depends only on the operations applied and the seed. Which operation
//! is the N-th depends on how the journal's threads interleave, so a seed replays the same
//! workload and fault point, not always the same thread schedule.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{DirGuard, Storage, StorageFile};
use crate::journal::error::{JournalError, Result};

/// `ENOSPC` on Linux.
const ENOSPC: i32 = 28;
/// `EIO` on Linux.
const EIO: i32 = 5;

/// A kind of fault point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A file created.
    Create,
    /// Bytes appended.
    Write,
    /// A file fsynced.
    Sync,
    /// A rename.
    Rename,
    /// A removal.
    Remove,
    /// A directory fsynced.
    SyncDir,
    /// A truncation.
    Truncate,
}

/// An injected error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `ENOSPC`: the disk is full.
    NoSpace,
    /// `EIO`: the device failed.
    Io,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::NoSpace => io::Error::from_raw_os_error(ENOSPC),
            Fault::Io => io::Error::from_raw_os_error(EIO),
        }
    }
}

/// What the simulator does at fault points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Plan {
    /// Nothing.
    #[default]
    None,
    /// The fault point numbered `at` (from 1) fails once with `fault`.
    FailAt {
        /// Its number.
        at: u64,
        /// The error.
        fault: Fault,
    },
    /// Power is lost at the fault point numbered `at`: it and every later one fail with `EIO`.
    PowerLossAt {
        /// Its number.
        at: u64,
    },
}

/// A fault that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The fault point's number.
    pub at: u64,
    /// Its kind.
    pub op: Op,
    /// The file or directory.
    pub path: PathBuf,
    /// What happened (`None`: power loss).
    pub fault: Option<Fault>,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct SimState {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    ops: u64,
    plan: Plan,
    dead: bool,
    fired: Vec<Fired>,
}

impl SimState {
    /// Counts a fault point and applies the plan to it.
    fn point(&mut self, op: Op, path: &Path) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.ops += 1;
        let fired = |fault| Fired {
            at: self.ops,
            op,
            path: path.to_path_buf(),
            fault,
        };
        match self.plan {
            Plan::FailAt { at, fault } if at == self.ops => {
                self.fired.push(fired(Some(fault)));
                self.plan = Plan::None;
                Err(fault.error())
            }
            Plan::PowerLossAt { at } if at == self.ops => {
                self.fired.push(fired(None));
                self.dead = true;
                Err(io::Error::from_raw_os_error(EIO))
            }
            _ => Ok(()),
        }
    }

    fn inode(&self, path: &Path) -> io::Result<usize> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn check_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if self.dirs.contains(dir) => Ok(()),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn new_inode(&mut self) -> usize {
        self.inodes.push(Inode::default());
        self.inodes.len() - 1
    }
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<SimState>>,
}

/// SplitMix64: a tiny, well-known generator for seeded choices (no dependency needed).
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

impl SimStorage {
    /// An empty file system.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets what happens at the coming fault points (numbering continues).
    pub fn set_plan(&self, plan: Plan) {
        self.state().plan = plan;
    }

    /// Fault points passed so far.
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// The faults that fired.
    pub fn fired(&self) -> Vec<Fired> {
        self.state().fired.clone()
    }

    /// Loses power now: every later fault point fails with `EIO`.
    pub fn power_loss(&self) {
        self.state().dead = true;
    }

    /// Whether power was lost.
    pub fn is_dead(&self) -> bool {
        self.state().dead
    }

    /// The disk a reboot finds after a power loss now (see the module docs); torn tails are
    /// chosen by `seed`. Also returns the unsynced bytes that were lost.
    pub fn power_loss_image(&self, seed: u64) -> (SimStorage, u64) {
        let state = self.state();
        let mut rng = SimRng::new(seed);
        let mut dropped = 0u64;
        let mut files = Vec::new();
        for (path, ino) in &state.durable_names {
            let Some(inode) = state.inodes.get(*ino) else {
                continue;
            };
            let mut data = inode.durable.clone();
            if let Some(extra) = inode.data.strip_prefix(inode.durable.as_slice()) {
                let keep = match rng.below(4) {
                    0 => 0,
                    1 => extra.len() as u64,
                    _ => rng.below(extra.len() as u64 + 1),
                };
                let keep = usize::try_from(keep).unwrap_or(0).min(extra.len());
                data.extend_from_slice(extra.get(..keep).unwrap_or(&[]));
                dropped += (extra.len() - keep) as u64;
            }
            files.push((path.clone(), data));
        }
        (SimStorage::image(&state.dirs, files), dropped)
    }

    /// What a killed process leaves: every name and byte as they are now.
    pub fn process_crash_image(&self) -> SimStorage {
        let state = self.state();
        let files = state
            .names
            .iter()
            .filter_map(|(path, ino)| Some((path.clone(), state.inodes.get(*ino)?.data.clone())))
            .collect();
        SimStorage::image(&state.dirs, files)
    }

    /// A fresh, durable file system holding `dirs` and `files`.
    fn image(dirs: &BTreeSet<PathBuf>, files: Vec<(PathBuf, Vec<u8>)>) -> SimStorage {
        let mut image = SimState {
            dirs: dirs.clone(),
            ..SimState::default()
        };
        for (path, data) in files {
            let id = image.inodes.len();
            image.inodes.push(Inode {
                durable: data.clone(),
                data,
            });
            image.names.insert(path.clone(), id);
            image.durable_names.insert(path, id);
        }
        SimStorage {
            state: Arc::new(Mutex::new(image)),
        }
    }

    /// The current bytes of the file at `path` (for tests that damage or inspect files).
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        let ino = state.names.get(path)?;
        state.inodes.get(*ino).map(|i| i.data.clone())
    }

    /// Replaces the bytes of the file at `path`, durably (for tests that damage files).
    pub fn overwrite(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let mut state = self.state();
        let ino = state.inode(path)?;
        if let Some(inode) = state.inodes.get_mut(ino) {
            inode.durable = bytes.clone();
            inode.data = bytes;
        }
        Ok(())
    }

    fn open(&self, path: &Path, create: Option<bool>) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.state();
        let inode = match create {
            None => state.inode(path)?,
            Some(exclusive) => {
                state.check_dir(path)?;
                if exclusive && state.names.contains_key(path) {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
                state.point(Op::Create, path)?;
                let ino = state.new_inode();
                state.names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            inode,
            path: path.to_path_buf(),
        }))
    }
}

/// An open file of a [`SimStorage`].
#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<SimState>>,
    inode: usize,
    path: PathBuf,
}

impl SimFile {
    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StorageFile for SimFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        state.point(Op::Write, &self.path)?;
        if let Some(inode) = state.inodes.get_mut(self.inode) {
            inode.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut state = self.state();
        state.point(Op::Sync, &self.path)?;
        if let Some(inode) = state.inodes.get_mut(self.inode) {
            inode.durable = inode.data.clone();
        }
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let state = self.state();
        let data = state
            .inodes
            .get(self.inode)
            .map_or(&[][..], |i| i.data.as_slice());
        let start = usize::try_from(pos).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let state = self.state();
        Ok(state
            .inodes
            .get(self.inode)
            .map_or(0, |i| i.data.len() as u64))
    }
}

/// A lock on a directory of a [`SimStorage`].
#[derive(Debug)]
struct SimGuard {
    state: Arc<Mutex<SimState>>,
    dir: PathBuf,
}

impl DirGuard for SimGuard {}

impl Drop for SimGuard {
    fn drop(&mut self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .locks
            .remove(&self.dir);
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        if !state.dirs.contains(dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(state
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.open(path, Some(true))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.open(path, Some(false))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.open(path, None)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.open(path, None)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state();
        let ino = state.inode(path)?;
        Ok(state
            .inodes
            .get(ino)
            .map(|i| i.data.clone())
            .unwrap_or_default())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        let ino = state.inode(from)?;
        state.check_dir(to)?;
        state.point(Op::Rename, to)?;
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.inode(path)?;
        state.point(Op::Remove, path)?;
        state.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        if !state.dirs.contains(dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        state.point(Op::SyncDir, dir)?;
        state.durable_names.retain(|p, _| p.parent() != Some(dir));
        let current: Vec<(PathBuf, usize)> = state
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        state.durable_names.extend(current);
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state();
        let ino = state.inode(path)?;
        state.point(Op::Truncate, path)?;
        if let Some(inode) = state.inodes.get_mut(ino) {
            inode
                .data
                .truncate(usize::try_from(len).unwrap_or(usize::MAX));
            inode.durable = inode.data.clone();
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state();
        state.names.contains_key(path) || state.dirs.contains(path)
    }

    fn lock(&self, dir: &Path) -> Result<Box<dyn DirGuard>> {
        let mut state = self.state();
        if !state.locks.insert(dir.to_path_buf()) {
            return Err(JournalError::Locked {
                dir: dir.to_path_buf(),
                holder: "this process (simulated storage)".into(),
            });
        }
        Ok(Box::new(SimGuard {
            state: self.state.clone(),
            dir: dir.to_path_buf(),
        }))
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn unsynced_bytes_and_names_can_be_lost() {
        let sim = SimStorage::new();
        let dir = Path::new("/j");
        sim.create_dir_all(dir).unwrap();
        let mut a = sim.create_new(&dir.join("a")).unwrap();
        a.write_all(b"durable").unwrap();
        a.sync_data().unwrap();
        sim.sync_dir(dir).unwrap();
        a.write_all(b"-maybe").unwrap();
        let mut b = sim.create_new(&dir.join("b")).unwrap();
        b.write_all(b"never named durably").unwrap();
        b.sync_data().unwrap();
        let mut seen = BTreeSet::new();
        for seed in 0..64 {
            let (image, _) = sim.power_loss_image(seed);
            assert!(!image.exists(&dir.join("b")), "b's name was never synced");
            let a = image.read(&dir.join("a")).unwrap();
            assert!(a.starts_with(b"durable") && b"durable-maybe".starts_with(&a));
            seen.insert(a.len());
        }
        assert!(seen.len() > 2, "torn lengths vary with the seed: {seen:?}");
        assert_eq!(
            sim.process_crash_image().read(&dir.join("b")).unwrap(),
            b"never named durably"
        );
    }

    #[test]
    fn faults_fire_once_at_their_point_and_power_loss_is_final() {
        let sim = SimStorage::new();
        let dir = Path::new("/j");
        sim.create_dir_all(dir).unwrap();
        let mut a = sim.create_new(&dir.join("a")).unwrap();
        sim.set_plan(Plan::FailAt {
            at: sim.ops() + 2,
            fault: Fault::NoSpace,
        });
        a.write_all(b"1").unwrap();
        let error = a.sync_data().unwrap_err();
        assert_eq!(error.raw_os_error(), Some(ENOSPC));
        a.sync_data().unwrap();
        sim.set_plan(Plan::PowerLossAt { at: sim.ops() + 1 });
        assert!(a.write_all(b"2").is_err());
        assert!(sim.sync_dir(dir).is_err());
        assert_eq!(sim.fired().len(), 2);
    }
}
