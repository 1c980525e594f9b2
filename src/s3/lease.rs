//! Fencing: one writer per prefix. The first data dir to ship to a prefix creates
//! `{prefix}/writer.json` naming its writer id, with `If-None-Match: *`; any other data dir
//! finds the lease held by someone else and refuses with [`S3Error::Fenced`] before writing
//! anything.
//!
//! The writer id is random, made once per data dir and kept in `<data>/writer-id` (outside
//! `state.sqlite`, which may be deleted and rebuilt at any time). A restored copy of a journal
//! is a different data dir and so a different writer: it cannot ship into its origin's prefix.
//!
//! Invariant: the lease object is never overwritten or deleted by Logbook.

use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use super::layout::{self, WRITER};
use super::{S3Error, S3Location};

/// The file in the data dir holding its writer id.
pub const WRITER_ID_FILE: &str = "writer-id";

/// The content of `writer.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The writer (data dir) allowed to ship to the prefix.
    pub writer_id: String,
    /// The host it ran on when it took the lease.
    pub host: String,
    /// Its data dir on that host.
    pub data_dir: String,
    /// When it took the lease (RFC 3339).
    pub acquired: String,
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (data dir {} on host {}, since {})",
            self.writer_id, self.data_dir, self.host, self.acquired
        )
    }
}

/// The data dir's writer id, created on first use.
pub fn writer_id(data_dir: &Path) -> Result<String, S3Error> {
    let path = data_dir.join(WRITER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(S3Error::io(path, e)),
    }
    let mut seed = blake3::Hasher::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    seed.update(&now.as_nanos().to_le_bytes());
    seed.update(&std::process::id().to_le_bytes());
    seed.update(data_dir.as_os_str().as_encoded_bytes());
    seed.update(host().as_bytes());
    let id = layout::hex(seed.finalize().as_bytes().get(..16).unwrap_or_default());
    std::fs::create_dir_all(data_dir).map_err(|e| S3Error::io(data_dir, e))?;
    let tmp = data_dir.join(format!("{WRITER_ID_FILE}.tmp"));
    std::fs::write(&tmp, format!("{id}\n")).map_err(|e| S3Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| S3Error::io(&path, e))?;
    Ok(id)
}

/// This machine's host name (best effort).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether `error` is S3's answer to a failed `If-None-Match: *` (the object exists).
pub fn is_precondition_failed<E>(
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    error
        .raw_response()
        .is_some_and(|r| r.status().as_u16() == 412)
}

/// Takes the prefix's lease for `writer_id`, or confirms it already holds it; refuses with
/// [`S3Error::Fenced`] if another writer holds it.
pub async fn acquire(
    client: &Client,
    location: &S3Location,
    writer_id: &str,
    data_dir: &Path,
) -> Result<Lease, S3Error> {
    let key = location.key(WRITER);
    let mine = Lease {
        writer_id: writer_id.to_string(),
        host: host(),
        data_dir: data_dir.display().to_string(),
        acquired: crate::timestamp::format_us(crate::timestamp::now_us()),
    };
    let body = serde_json::to_vec_pretty(&mine).unwrap_or_default();
    let put = client
        .put_object()
        .bucket(&location.bucket)
        .key(&key)
        .if_none_match("*")
        .content_type("application/json")
        .body(ByteStream::from(body))
        .send()
        .await;
    match put {
        Ok(_) => {
            tracing::info!(%location, writer_id, "took the writer lease");
            Ok(mine)
        }
        Err(error) if is_precondition_failed(&error) => {
            let holder = read(client, location).await?;
            if holder.writer_id == writer_id {
                Ok(holder)
            } else {
                Err(S3Error::Fenced {
                    location: location.clone(),
                    holder: Box::new(holder),
                    ours: writer_id.to_string(),
                })
            }
        }
        Err(error) => Err(S3Error::request("PutObject", &key, error)),
    }
}

/// Reads the prefix's lease.
pub async fn read(client: &Client, location: &S3Location) -> Result<Lease, S3Error> {
    let key = location.key(WRITER);
    let bytes = get_bytes(client, location, &key).await?;
    serde_json::from_slice(&bytes).map_err(|e| S3Error::Conflict {
        key,
        reason: format!("not a writer lease: {e}"),
    })
}

/// The whole body of a (small) object.
pub async fn get_bytes(
    client: &Client,
    location: &S3Location,
    key: &str,
) -> Result<Vec<u8>, S3Error> {
    let object = client
        .get_object()
        .bucket(&location.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| S3Error::request("GetObject", key, e))?;
    let data = object
        .body
        .collect()
        .await
        .map_err(|e| S3Error::request("GetObject", key, e))?;
    Ok(data.into_bytes().to_vec())
}
