//! Which local files may be copied into the store (the copy itself is a [`super::Staged`]
//! file: streamed, hashed, fsynced, renamed in).
//!
//! Source rules: the source must be a readable regular file. A symlink is followed only if its
//! target stays inside the link's own directory tree; one that escapes it (e.g. a link in a
//! test-output folder pointing at `/etc/shadow`) is refused, as are directories and devices.

use std::path::{Path, PathBuf};

use super::ArtifactError;

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
