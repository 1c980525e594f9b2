//! Copying a file into the store: streaming (constant memory, any size), hashing SHA-256 on the
//! way, crash-safe (temp file, fsync, rename, fsync the directory).
//!
//! Source rules: the source must be a readable regular file. A symlink is followed only if its
//! target stays inside the link's own directory tree; one that escapes it (e.g. a link in a
//! test-output folder pointing at `/etc/shadow`) is refused, as are directories and devices.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ArtifactError;

/// Copy buffer: memory use is this, whatever the file's size.
const COPY_BUFFER_BYTES: usize = 256 << 10;

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Bytes copied.
    pub size_bytes: u64,
}

/// Resolves and checks the source file (see the module docs).
pub fn check_source(source: &Path) -> Result<PathBuf, ArtifactError> {
    let io = |e| ArtifactError::Io {
        path: source.to_path_buf(),
        source: e,
    };
    let meta = std::fs::symlink_metadata(source).map_err(io)?;
    let resolved = if meta.file_type().is_symlink() {
        let target = std::fs::canonicalize(source).map_err(io)?;
        let home = source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let home = std::fs::canonicalize(home).map_err(io)?;
        if !target.starts_with(&home) {
            return Err(ArtifactError::SymlinkEscapes {
                link: source.to_path_buf(),
                target,
            });
        }
        target
    } else {
        source.to_path_buf()
    };
    let meta = std::fs::metadata(&resolved).map_err(io)?;
    if !meta.is_file() {
        return Err(ArtifactError::NotAFile(source.to_path_buf()));
    }
    Ok(resolved)
}

/// Copies `source` to `dest` through `dest.tmp`, hashing as it goes.
pub fn copy_hashed(source: &Path, dest: &Path) -> Result<Copied, ArtifactError> {
    let tmp = dest.with_extension(match dest.extension() {
        Some(ext) => format!("{}.tmp", ext.to_string_lossy()),
        None => "tmp".into(),
    });
    let result = copy_to(source, &tmp);
    let copied = match result {
        Ok(copied) => copied,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, dest).map_err(|e| ArtifactError::Io {
        path: dest.to_path_buf(),
        source: e,
    })?;
    if let Some(dir) = dest.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ArtifactError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
    }
    Ok(copied)
}

fn copy_to(source: &Path, tmp: &Path) -> Result<Copied, ArtifactError> {
    let read_err = |e| ArtifactError::Io {
        path: source.to_path_buf(),
        source: e,
    };
    let write_err = |e| ArtifactError::Io {
        path: tmp.to_path_buf(),
        source: e,
    };
    let mut input = File::open(source).map_err(read_err)?;
    let mut output = File::create(tmp).map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(read_err)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        output.write_all(chunk).map_err(write_err)?;
        size += n as u64;
    }
    output.sync_all().map_err(write_err)?;
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Copied {
        sha256,
        size_bytes: size,
    })
}
