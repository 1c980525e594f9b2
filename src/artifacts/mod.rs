//! `ArtifactStore`: the embedded API for test artifacts: sessions, collections, files copied
//! into `<data>/artifacts/{session_id}/{collection_id}/{file_name}` (the layout S3 will mirror),
//! search, statistics and retention.
//!
//! | file | role |
//! |---|---|
//! | [`copy`] | streaming copy with SHA-256, source checks (directories, escaping symlinks) |
//! | [`search`] | query filters and statistics |
//! | [`stage`] | a file on its way in: staged beside the store, hashed, size-limited, renamed in |
//!
//! Invariants: every change is a journal event recorded through the [`Recorder`] (validated
//! against the state first); a file is staged (copied or streamed, hashed, fsynced) beside the
//! store and renamed in before its `artifact.added` is recorded, and is removed only after its
//! `artifact.deleted` is. Two live artifacts of a collection never share a file name (their
//! files and S3 keys would be one). A crash between rename and record leaves an orphan file
//! that no artifact names (adding the same file name again replaces it); a crash while staging
//! leaves a file in the staging directory only.

pub mod copy;
pub mod search;
pub mod stage;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::event::{
    ArtifactAdded, ArtifactDeleted, ArtifactType, CollectionCreated, DeleteReason, Event,
    SessionCreated,
};
use crate::recorder::{RecordError, Recorder};
use crate::state::ArtifactView;
use crate::timestamp::parse_rfc3339;

pub use search::{ArtifactQuery, ArtifactStats, TagMatch, Tally};
pub use stage::Staged;

/// Errors of the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The source is not a regular file.
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    /// The source is a symlink pointing outside its own directory tree.
    #[error("{link} is a symlink to {target}, outside its directory: refused")]
    SymlinkEscapes {
        /// The link.
        link: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// The source has no usable file name and none was given.
    #[error("{0} has no file name; give one")]
    NoFileName(PathBuf),
    /// The content is larger than the limit it was staged with.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The event was refused or the journal failed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl ArtifactError {
    /// Whether this is the caller's input's fault (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ArtifactError::Record(e) => e.is_bad_input(),
            ArtifactError::Io { .. } => false,
            _ => true,
        }
    }

    /// Whether the recorder is out of service (the journal or the state failed).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ArtifactError::Record(e) if e.is_unavailable())
    }
}

/// A file to add.
#[derive(Debug, Clone)]
pub struct NewArtifact {
    /// Session.
    pub session_id: String,
    /// Collection in the session.
    pub collection_id: String,
    /// Artifact id (unique across the journal).
    pub artifact_id: String,
    /// The file to copy.
    pub source: PathBuf,
    /// Name in the store; defaults to the source's file name.
    pub file_name: Option<String>,
    /// Type.
    pub artifact_type: ArtifactType,
    /// Tags.
    pub tags: Vec<String>,
    /// Producing task (of the session's upgrade).
    pub task_id: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Expiry (RFC 3339) for retention.
    pub expires_at: Option<String>,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    recorder: Arc<Recorder>,
    root: PathBuf,
    /// How long an artifact added without an `expires_at` is kept (none: forever).
    keep_for: Option<std::time::Duration>,
}

impl ArtifactStore {
    /// A store keeping files under `root` (conventionally `<data>/artifacts`).
    pub fn new(recorder: Arc<Recorder>, root: impl Into<PathBuf>) -> ArtifactStore {
        ArtifactStore {
            recorder,
            root: root.into(),
            keep_for: None,
        }
    }

    /// This store, giving every artifact added without an `expires_at` one `keep_for` after
    /// it is added ([`ArtifactStore::apply_retention`] deletes it then).
    pub fn with_retention(mut self, keep_for: std::time::Duration) -> ArtifactStore {
        self.keep_for = Some(keep_for);
        self
    }

    /// How long an artifact added without an `expires_at` is kept, if not forever.
    pub fn retention(&self) -> Option<std::time::Duration> {
        self.keep_for
    }

    /// Where the store keeps the file of an artifact.
    pub fn path_of(&self, artifact: &ArtifactView) -> PathBuf {
        self.root
            .join(&artifact.session_id)
            .join(&artifact.collection_id)
            .join(&artifact.file_name)
    }

    /// Records `session.created` (the upgrade must exist).
    pub fn create_session(
        &self,
        session_id: &str,
        upgrade_id: &str,
        cluster_name: &str,
    ) -> Result<u64, ArtifactError> {
        let event = session_created(session_id, upgrade_id, cluster_name);
        Ok(self.recorder.record(&event)?.offset())
    }

    /// Records `collection.created` in a session.
    pub fn create_collection(
        &self,
        session_id: &str,
        collection_id: &str,
        name: &str,
        task_id: Option<&str>,
    ) -> Result<u64, ArtifactError> {
        let event = collection_created(session_id, collection_id, name, task_id);
        Ok(self.recorder.record(&event)?.offset())
    }

    /// Copies the file into the store (streaming, hashing SHA-256) and records `artifact.added`
    /// with its hash and size. The event is checked before the copy, so a refused artifact
    /// copies nothing.
    pub fn add_artifact(&self, new: &NewArtifact) -> Result<ArtifactView, ArtifactError> {
        let source = copy::check_source(&new.source)?;
        let file_name = match &new.file_name {
            Some(name) => name.clone(),
            None => new
                .source
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .ok_or_else(|| ArtifactError::NoFileName(new.source.clone()))?,
        };
        // Check everything but the content first (placeholder hash and size).
        self.check(&self.added(new, &file_name, "0".repeat(64), 0))?;
        let mut staged = Staged::copy_of(&self.root, &source)?;
        let (sha256, size) = staged.finish()?;
        self.commit(self.added(new, &file_name, sha256, size), staged)
    }

    /// Checks `new` (with `new.file_name`) as [`ArtifactStore::add_artifact`] will, before any
    /// content is staged: a refusal here costs no copy.
    pub fn preflight(&self, new: &NewArtifact) -> Result<(), ArtifactError> {
        let file_name = new
            .file_name
            .clone()
            .ok_or_else(|| ArtifactError::NoFileName(new.source.clone()))?;
        self.check(&self.added(new, &file_name, "0".repeat(64), 0))
    }

    /// A new staged file for this store (for content that arrives in pieces, such as an HTTP
    /// upload), refusing more than `limit` bytes; add it with [`ArtifactStore::add_staged`].
    pub fn stage(&self, limit: u64) -> Result<Staged, ArtifactError> {
        Staged::new(&self.root, limit)
    }

    /// Records `artifact.added` for a staged file (named `new.file_name`; `new.source` is
    /// ignored) and moves it into the store. A refusal leaves nothing behind.
    pub fn add_staged(
        &self,
        new: &NewArtifact,
        mut staged: Staged,
    ) -> Result<ArtifactView, ArtifactError> {
        let file_name = new
            .file_name
            .clone()
            .ok_or_else(|| ArtifactError::NoFileName(new.source.clone()))?;
        let (sha256, size) = staged.finish()?;
        self.commit(self.added(new, &file_name, sha256, size), staged)
    }

    /// The `artifact.added` event of `new` with this content.
    fn added(
        &self,
        new: &NewArtifact,
        file_name: &str,
        sha256: String,
        size: u64,
    ) -> ArtifactAdded {
        ArtifactAdded {
            id: None,
            session_id: new.session_id.clone(),
            collection_id: new.collection_id.clone(),
            artifact_id: new.artifact_id.clone(),
            file_name: file_name.to_string(),
            artifact_type: new.artifact_type,
            sha256,
            size_bytes: size,
            tags: new.tags.clone(),
            task_id: new.task_id.clone(),
            description: new.description.clone(),
            expires_at: new.expires_at.clone().or_else(|| self.default_expiry()),
        }
    }

    /// Checks `added` against the contract and the state, and that no live artifact of its
    /// collection already has its file name (their files, and S3 keys, would be one).
    fn check(&self, added: &ArtifactAdded) -> Result<(), ArtifactError> {
        let event = Event::ArtifactAdded(added.clone());
        event.validate().map_err(RecordError::from)?;
        // The store's events carry no idempotency key, so the verdict is always Fresh.
        self.recorder.check(&event)?;
        let same_session = self.search(&ArtifactQuery {
            session_id: Some(added.session_id.clone()),
            ..ArtifactQuery::default()
        })?;
        let taken = same_session.iter().any(|a| {
            a.collection_id == added.collection_id
                && a.file_name == added.file_name
                && a.status != crate::event::ArtifactStatus::Deleted
        });
        if taken {
            return Err(RecordError::Refused(crate::state::Refusal::Duplicate {
                what: "file name",
                id: format!(
                    "{}/{}/{}",
                    added.session_id, added.collection_id, added.file_name
                ),
            })
            .into());
        }
        Ok(())
    }

    /// Moves `staged` into the store as `added`'s file and records `added`; one at a time per
    /// process, so two adds cannot both pass the file-name check.
    fn commit(&self, added: ArtifactAdded, staged: Staged) -> Result<ArtifactView, ArtifactError> {
        static PLACING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _placing = PLACING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.check(&added)?;
        let dir = self.root.join(&added.session_id).join(&added.collection_id);
        std::fs::create_dir_all(&dir).map_err(|e| ArtifactError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let dest = dir.join(&added.file_name);
        staged.place(&dest)?;
        let artifact_id = added.artifact_id.clone();
        if let Err(e) = self.recorder.record(&Event::ArtifactAdded(added)) {
            // Refused or failed after all: the file is not kept.
            let _ = std::fs::remove_file(&dest);
            return Err(e.into());
        }
        self.recorder
            .live()?
            .artifact(&artifact_id)
            .map_err(RecordError::from)?
            .ok_or_else(|| {
                ArtifactError::Record(RecordError::Refused(
                    crate::state::Refusal::UnknownArtifact(artifact_id.clone()),
                ))
            })
    }

    /// Async form of [`ArtifactStore::add_artifact`]: the copy runs on tokio's blocking pool.
    pub async fn add_artifact_async(
        &self,
        new: NewArtifact,
    ) -> Result<ArtifactView, ArtifactError> {
        let store = self.clone();
        let source = new.source.clone();
        tokio::task::spawn_blocking(move || store.add_artifact(&new))
            .await
            .map_err(|e| ArtifactError::Io {
                path: source,
                source: std::io::Error::other(e),
            })?
    }

    /// Async form of [`ArtifactStore::create_session`].
    pub async fn create_session_async(
        &self,
        session_id: &str,
        upgrade_id: &str,
        cluster_name: &str,
    ) -> Result<u64, ArtifactError> {
        let event = session_created(session_id, upgrade_id, cluster_name);
        Ok(self.recorder.record_async(&event).await?.offset())
    }

    /// Async form of [`ArtifactStore::create_collection`].
    pub async fn create_collection_async(
        &self,
        session_id: &str,
        collection_id: &str,
        name: &str,
        task_id: Option<&str>,
    ) -> Result<u64, ArtifactError> {
        let event = collection_created(session_id, collection_id, name, task_id);
        Ok(self.recorder.record_async(&event).await?.offset())
    }

    /// Async form of [`ArtifactStore::apply_retention`] (file removal on the blocking pool).
    pub async fn apply_retention_async(&self, now_us: i64) -> Result<Vec<String>, ArtifactError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.apply_retention(now_us))
            .await
            .map_err(|e| ArtifactError::Io {
                path: store_root_hint(),
                source: std::io::Error::other(e),
            })?
    }

    /// Artifacts matching `query`, by id.
    pub fn search(&self, query: &ArtifactQuery) -> Result<Vec<ArtifactView>, ArtifactError> {
        let live = self.recorder.live()?;
        Ok(live.search(query).map_err(RecordError::from)?)
    }

    /// Counts and bytes by type and by status.
    pub fn statistics(&self) -> Result<ArtifactStats, ArtifactError> {
        let live = self.recorder.live()?;
        Ok(live
            .stats(&ArtifactQuery::default())
            .map_err(RecordError::from)?)
    }

    /// Deletes artifacts whose `expires_at` is at or before `now_us`: records
    /// `artifact.deleted` (reason `expired`), then removes the file. Also removes files left
    /// behind by a crash after an earlier deletion was recorded. Returns the deleted ids.
    pub fn apply_retention(&self, now_us: i64) -> Result<Vec<String>, ArtifactError> {
        let candidates = self.search(&ArtifactQuery::default())?;
        let mut deleted = Vec::new();
        for artifact in candidates {
            use crate::event::ArtifactStatus::Deleted;
            let expired = artifact
                .expires_at
                .as_deref()
                .and_then(|t| parse_rfc3339(t).ok())
                .is_some_and(|t| t <= now_us);
            if artifact.status != Deleted && expired {
                let event = Event::ArtifactDeleted(ArtifactDeleted {
                    id: None,
                    artifact_id: artifact.artifact_id.clone(),
                    reason: DeleteReason::Expired,
                });
                self.recorder.record(&event)?;
                deleted.push(artifact.artifact_id.clone());
            } else if artifact.status != Deleted {
                continue;
            }
            remove_if_present(&self.path_of(&artifact))?;
        }
        Ok(deleted)
    }
}

impl ArtifactStore {
    /// Now plus the store's retention, as RFC 3339, if it has one.
    fn default_expiry(&self) -> Option<String> {
        let keep_for = i64::try_from(self.keep_for?.as_micros()).unwrap_or(i64::MAX);
        // At most the last second of year 9999 (RFC 3339's four-digit years).
        let at = crate::timestamp::now_us()
            .saturating_add(keep_for)
            .min(253_402_300_799_000_000);
        Some(crate::timestamp::format_us(at))
    }
}

fn session_created(session_id: &str, upgrade_id: &str, cluster_name: &str) -> Event {
    Event::SessionCreated(SessionCreated {
        id: None,
        session_id: session_id.into(),
        upgrade_id: upgrade_id.into(),
        cluster_name: cluster_name.into(),
    })
}

fn collection_created(
    session_id: &str,
    collection_id: &str,
    name: &str,
    task_id: Option<&str>,
) -> Event {
    Event::CollectionCreated(CollectionCreated {
        id: None,
        session_id: session_id.into(),
        collection_id: collection_id.into(),
        name: name.into(),
        task_id: task_id.map(str::to_string),
    })
}

fn store_root_hint() -> PathBuf {
    PathBuf::from("(artifact store task)")
}

fn remove_if_present(path: &Path) -> Result<(), ArtifactError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ArtifactError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}
