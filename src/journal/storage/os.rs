//! [`OsStorage`]: the journal's files on the operating system's file system (`std::fs`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{DirGuard, Storage, StorageFile};
use crate::journal::error::Result;
use crate::journal::lock::DirLock;

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsStorage;

#[derive(Debug)]
struct OsFile(File);

impl StorageFile for OsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, pos)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl DirGuard for DirLock {}

fn boxed(file: File) -> Box<dyn StorageFile> {
    Box::new(OsFile(file))
}

impl Storage for OsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(path)
            .map(boxed)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(path)
            .map(boxed)
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        OpenOptions::new()
            .append(true)
            .read(true)
            .open(path)
            .map(boxed)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        File::open(path).map(boxed)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn lock(&self, dir: &Path) -> Result<Box<dyn DirGuard>> {
        Ok(Box::new(DirLock::acquire(dir)?))
    }
}
