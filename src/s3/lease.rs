//! Fencing: one writer per prefix, proven before every object write.
//!
//! The first data dir to ship to a prefix creates `{prefix}/writer.json` naming its writer id,
//! with `If-None-Match: *` ([`LeaseGuard::acquire`]); any other data dir finds the lease held by
//! someone else and refuses with [`S3Error::Fenced`] before writing anything. A running writer
//! then proves it still holds the lease before each object it writes ([`LeaseGuard::check`]: a
//! `HeadObject` of `writer.json`, whose ETag must be the one it created or last confirmed):
//! - same ETag: still held;
//! - no `writer.json` (deleted, the prefix wiped): taken again with `If-None-Match: *`, so of
//!   two writers racing for it exactly one wins;
//! - another ETag: read; still this writer id (the same writer re-created it) is adopted,
//!   another writer id means the lease is lost ([`S3Error::LeaseLost`], naming the holder). A
//!   lost lease is final: every later check fails at once, without a request, so the writer
//!   never writes another object.
//!
//! The writer id is random, made once per data dir and kept in `<data>/writer-id` (outside
//! `state.sqlite`, which may be deleted and rebuilt at any time). A restored copy of a journal
//! is a different data dir and so a different writer: it cannot ship into its origin's prefix.
//!
//! Invariant: Logbook never overwrites or deletes another writer's lease.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::layout::{self, Key};
use super::objects::{Conditional, ETag, Metadata, Objects};
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

/// Reads the prefix's lease; `None` if there is none.
pub async fn read(objects: &Objects) -> Result<Option<(Lease, ETag)>, S3Error> {
    let key = layout::writer_key(objects.location());
    objects.get_json(&key, "writer lease").await
}

/// Where the lease stands.
#[derive(Debug, Clone)]
enum Held {
    /// Held: the ETag of `writer.json` as this writer last created or confirmed it.
    Yes(ETag),
    /// Lost to another writer (final).
    Lost(Box<Lease>),
}

/// The lease this writer holds on a prefix (see the module docs). Shared by the tasks that
/// write objects there (segments, artifacts).
#[derive(Debug)]
pub struct LeaseGuard {
    objects: Objects,
    key: Key,
    mine: Lease,
    held: Mutex<Held>,
}

impl LeaseGuard {
    /// Takes the prefix's lease for `writer_id`, or confirms it already holds it; refuses with
    /// [`S3Error::Fenced`] if another writer holds it.
    pub async fn acquire(
        objects: Objects,
        writer_id: &str,
        data_dir: &Path,
    ) -> Result<LeaseGuard, S3Error> {
        let mine = Lease {
            writer_id: writer_id.to_string(),
            host: host(),
            data_dir: data_dir.display().to_string(),
            acquired: crate::timestamp::format_us(crate::timestamp::now_us()),
        };
        let key = layout::writer_key(objects.location());
        let guard = LeaseGuard {
            objects,
            key,
            mine,
            held: Mutex::new(Held::Yes(ETag(String::new()))),
        };
        let etag = guard.take().await.map_err(|e| match e {
            S3Error::LeaseLost {
                location,
                holder,
                ours,
            } => S3Error::Fenced {
                location,
                holder,
                ours,
            },
            e => e,
        })?;
        guard.set(Held::Yes(etag));
        Ok(guard)
    }

    /// The writer id this guard holds the lease for.
    pub fn writer_id(&self) -> &str {
        &self.mine.writer_id
    }

    fn location(&self) -> &S3Location {
        self.objects.location()
    }

    fn get(&self) -> Held {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, held: Held) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = held;
    }

    fn lost(&self, holder: Lease) -> S3Error {
        let error = S3Error::LeaseLost {
            location: self.location().clone(),
            holder: Box::new(holder.clone()),
            ours: self.mine.writer_id.clone(),
        };
        self.set(Held::Lost(Box::new(holder)));
        error
    }

    /// Creates `writer.json` if absent; the ETag of the lease this writer holds, or
    /// [`S3Error::LeaseLost`] if another writer holds it.
    async fn take(&self) -> Result<ETag, S3Error> {
        let body = serde_json::to_vec_pretty(&self.mine).unwrap_or_default();
        match self
            .objects
            .put_if_absent(&self.key, body, Metadata::new())
            .await?
        {
            Conditional::Written(etag) => {
                crate::journal::quietly(|| {
                    tracing::info!(location = %self.location(), writer_id = self.mine.writer_id, "took the writer lease");
                });
                Ok(etag)
            }
            Conditional::Failed => self.adopt().await,
        }
    }

    /// Reads `writer.json` (which exists, or existed a moment ago): this writer's lease (its
    /// ETag), or lost.
    async fn adopt(&self) -> Result<ETag, S3Error> {
        match read(&self.objects).await? {
            Some((lease, etag)) if lease.writer_id == self.mine.writer_id => Ok(etag),
            Some((lease, _)) => Err(self.lost(lease)),
            // Deleted between the put and the read: try again at the next check.
            None => Err(S3Error::Request {
                operation: "GetObject",
                key: self.key.to_string(),
                message: "the writer lease vanished while it was being taken; will retry".into(),
            }),
        }
    }

    /// Proves the lease is still held before an object write (see the module docs): one
    /// `HeadObject` while it is.
    pub async fn check(&self) -> Result<(), S3Error> {
        let known = match self.get() {
            Held::Lost(holder) => {
                return Err(S3Error::LeaseLost {
                    location: self.location().clone(),
                    holder,
                    ours: self.mine.writer_id.clone(),
                });
            }
            Held::Yes(etag) => etag,
        };
        let etag = match self.objects.head(&self.key).await? {
            Some(head) if head.etag == known => return Ok(()),
            Some(_) => self.adopt().await?,
            None => {
                crate::journal::quietly(|| {
                    tracing::warn!(location = %self.location(), "the writer lease (writer.json) is gone; taking it again");
                });
                self.take().await?
            }
        };
        self.set(Held::Yes(etag));
        Ok(())
    }

    /// Whether the lease was lost (then every write is refused).
    pub fn is_lost(&self) -> bool {
        matches!(self.get(), Held::Lost(_))
    }
}
