//! Large artifacts in parts: each part streamed from the file by the SDK (never held in
//! memory), after being read once here, off the runtime, for the whole file's SHA-256 and the
//! part's own CRC32, which must equal the CRC32 S3 reports for what it received. So the bytes
//! sent are the bytes hashed, and a file changed meanwhile is refused.
//!
//! Invariants: the lease is proven before the upload is created and before it is completed; a
//! failure or a stop aborts the multipart upload (best effort, within [`ABORT_WAIT`]), so no
//! parts are left behind to be billed.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::ArtifactUploader;
use crate::s3::S3Error;
use crate::s3::layout::{self, Key};
use crate::s3::stop::Stop;
use crate::state::ArtifactView;

/// How long aborting a multipart upload may take when stopping.
const ABORT_WAIT: Duration = Duration::from_secs(1);

impl ArtifactUploader {
    /// Uploads `path` as `key` in parts (see the module docs); the object's ETag.
    pub(super) async fn put_multipart(
        &self,
        artifact: &ArtifactView,
        key: &Key,
        path: &Path,
        stop: &Stop,
    ) -> Result<String, S3Error> {
        self.check_lease().await?;
        let upload_id = self
            .objects
            .create_multipart(key, Self::metadata(artifact))
            .await?;
        let mut watch = stop.clone();
        let sent = tokio::select! {
            () = watch.wait() => Err(S3Error::Stopped),
            sent = self.send_parts(artifact, key, path, &upload_id) => sent,
        };
        if sent.is_err() {
            // Best effort: an abandoned upload only costs storage until a lifecycle rule.
            let _ = tokio::time::timeout(ABORT_WAIT, self.objects.abort_multipart(key, &upload_id))
                .await;
        }
        sent
    }

    /// Sends the file in parts streamed from disk. Each part is first read here (off the
    /// runtime) for the SHA-256 of the whole file and its own CRC32, which must equal the CRC32
    /// S3 computed of what it received: so the bytes sent are the bytes hashed, and a file
    /// changed meanwhile is refused.
    async fn send_parts(
        &self,
        artifact: &ArtifactView,
        key: &Key,
        path: &Path,
        upload_id: &str,
    ) -> Result<String, S3Error> {
        let part_bytes = self.config.part_size.max(1) as u64;
        let mut hasher = Sha256::new();
        let mut parts = Vec::new();
        let (mut offset, mut number) = (0u64, 0i32);
        while offset < artifact.size_bytes {
            let len = part_bytes.min(artifact.size_bytes - offset);
            let owned = path.to_path_buf();
            let (hashed, crc) = tokio::task::spawn_blocking(move || {
                read_range(&owned, offset, len, hasher).map_err(|e| S3Error::io(&owned, e))
            })
            .await
            .map_err(|e| S3Error::io(path, std::io::Error::other(e)))??;
            hasher = hashed;
            number += 1;
            let (part, theirs) = self
                .objects
                .upload_part_from_file(key, upload_id, number, path, offset, len)
                .await?;
            let ours = base64_crc32(crc);
            if theirs.as_deref().is_some_and(|theirs| theirs != ours) {
                return Err(S3Error::Artifact {
                    artifact_id: artifact.artifact_id.clone(),
                    reason: format!(
                        "{} changed while it was uploaded (part {number}: CRC32 {ours} read, \
                         {theirs:?} received by S3)",
                        path.display()
                    ),
                });
            }
            parts.push(part);
            offset += len;
        }
        Self::check_hash(artifact, &layout::hex(&hasher.finalize()))?;
        self.check_lease().await?;
        Ok(self
            .objects
            .complete_multipart(key, upload_id, parts)
            .await?
            .0)
    }
}

/// Reads `len` bytes of `path` from `offset` in 1 MiB steps into `hasher`; it and their CRC32.
fn read_range(
    path: &Path,
    offset: u64,
    len: u64,
    mut hasher: Sha256,
) -> std::io::Result<(Sha256, u32)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        file.read_exact(chunk)?;
        hasher.update(&*chunk);
        crc.update(chunk);
        left -= want as u64;
    }
    Ok((hasher, crc.finalize()))
}

/// A CRC32 as S3 writes it: the 4 big-endian bytes in base64.
fn base64_crc32(crc: u32) -> String {
    const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let [a, b, c, d] = crc.to_be_bytes();
    let digit = |n: u8| char::from(DIGITS.get(usize::from(n & 63)).copied().unwrap_or(b'A'));
    [
        digit(a >> 2),
        digit((a << 4) | (b >> 4)),
        digit((b << 2) | (c >> 6)),
        digit(c),
        digit(d >> 2),
        digit(d << 4),
        '=',
        '=',
    ]
    .iter()
    .collect()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn crc32_reads_as_s3_writes_it() {
        let mut crc = crc32fast::Hasher::new();
        crc.update(b"123456789");
        assert_eq!(base64_crc32(crc.finalize()), "y/Q5Jg==");
        assert_eq!(base64_crc32(0), "AAAAAA==");
        assert_eq!(base64_crc32(u32::MAX), "/////w==");
    }

    #[test]
    fn a_range_is_hashed_and_checksummed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let (hasher, crc) = read_range(&path, 3, 4, Sha256::new()).unwrap();
        assert_eq!(
            hasher.finalize().as_slice(),
            Sha256::digest(b"3456").as_slice()
        );
        let mut want = crc32fast::Hasher::new();
        want.update(b"3456");
        assert_eq!(crc, want.finalize());
        assert!(
            read_range(&path, 8, 4, Sha256::new()).is_err(),
            "beyond the end"
        );
    }
}
