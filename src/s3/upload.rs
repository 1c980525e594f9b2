//! Artifact files → `{prefix}/artifacts/{session_id}/{collection_id}/{file_name}`.
//!
//! Files up to [`UploadConfig::multipart_threshold`] go in one `PutObject`; larger ones in
//! parts of [`UploadConfig::part_size`], each streamed from the file by the SDK (never held in
//! memory), so memory stays flat whatever the file's size; each part's CRC32, as S3 computed it,
//! must equal the one of the bytes hashed. Every upload:
//! - hashes the bytes it sends (SHA-256, off the async runtime) and refuses to finish if they
//!   are not the bytes the journal recorded (`sha256` and `size_bytes` of `artifact.added`): a
//!   file changed on disk is not uploaded as if it were the recorded one;
//! - proves the prefix's lease first when it ships for a [`super::Shipper`] (before the put, and
//!   before a multipart upload is created and completed);
//! - carries `sha256`, `artifact-id`, `artifact-type`, `tags` and `task-id` as metadata;
//! - is verified afterwards (`HeadObject`: size and `sha256` metadata), then recorded as
//!   `artifact.uploaded` (key, ETag).
//!
//! A failure that retrying may cure (S3, the network) is retried up to
//! [`UploadConfig::attempts`] times with [`Backoff`]; one it cannot (the file is not in the
//! store, or not the recorded one) is not retried. Either is recorded as
//! `artifact.upload_failed` once: not again while the artifact already failed for the same
//! reason (a restart, the next round). A stop abandons the upload cleanly (a multipart upload
//! is aborted, best effort) and records nothing.
//!
//! Invariant: an artifact is `uploaded` in the journal only once its object was verified.

mod multipart;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::layout::{self, Key, meta};
use super::lease::LeaseGuard;
use super::objects::{Metadata, Objects};
use super::stop::Stop;
use super::{S3Error, S3Location};
use crate::artifacts::ArtifactQuery;
use crate::backoff::Backoff;
use crate::event::{ArtifactStatus, ArtifactUploadFailed, ArtifactUploaded, Event};
use crate::recorder::Recorder;
use crate::state::ArtifactView;

/// First delay between two attempts of one upload.
const ATTEMPT_RETRY_FIRST: Duration = Duration::from_millis(200);
/// Longest delay between two attempts of one upload.
const ATTEMPT_RETRY_MAX: Duration = Duration::from_secs(2);
/// Longest error text recorded in `artifact.upload_failed`.
const ERROR_BYTES_MAX: usize = 4096;

/// How artifacts are uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// Files larger than this go up in parts (default 16 MiB).
    pub multipart_threshold: u64,
    /// Part size (default 8 MiB; S3's minimum is 5 MiB).
    pub part_size: usize,
    /// Attempts per upload before it is recorded as failed (default 3).
    pub attempts: u32,
}

impl Default for UploadConfig {
    fn default() -> UploadConfig {
        UploadConfig {
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            attempts: 3,
        }
    }
}

/// Uploads artifacts of the store under `root` (conventionally `<data>/artifacts`).
#[derive(Debug, Clone)]
pub struct ArtifactUploader {
    objects: Objects,
    recorder: Arc<Recorder>,
    root: PathBuf,
    config: UploadConfig,
    lease: Option<Arc<LeaseGuard>>,
}

/// An artifact in S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Its key.
    pub key: String,
    /// Its ETag.
    pub etag: String,
    /// Whether this call uploaded it (`false`: it already was).
    pub uploaded_now: bool,
}

/// The reason recorded for an artifact whose file is not in the store.
pub fn missing_reason(path: &Path) -> String {
    format!(
        "the file is not in the store: {} does not exist (recorded without its file, e.g. on \
         another machine); it is uploaded once the file is there",
        path.display()
    )
}

impl ArtifactUploader {
    /// An uploader to `location` recording through `recorder`.
    pub fn new(
        client: Client,
        location: S3Location,
        recorder: Arc<Recorder>,
        root: impl Into<PathBuf>,
        config: UploadConfig,
    ) -> ArtifactUploader {
        ArtifactUploader::with_objects(Objects::new(client, location), recorder, root, config)
    }

    /// An uploader writing through `objects`.
    pub fn with_objects(
        objects: Objects,
        recorder: Arc<Recorder>,
        root: impl Into<PathBuf>,
        config: UploadConfig,
    ) -> ArtifactUploader {
        ArtifactUploader {
            objects,
            recorder,
            root: root.into(),
            config,
            lease: None,
        }
    }

    /// This uploader, proving `lease` before every object it writes.
    pub fn fenced_by(mut self, lease: Arc<LeaseGuard>) -> ArtifactUploader {
        self.lease = Some(lease);
        self
    }

    async fn check_lease(&self) -> Result<(), S3Error> {
        match &self.lease {
            Some(lease) => lease.check().await,
            None => Ok(()),
        }
    }

    fn artifact(&self, artifact_id: &str) -> Result<ArtifactView, S3Error> {
        self.recorder
            .live()?
            .artifact(artifact_id)?
            .ok_or_else(|| S3Error::Artifact {
                artifact_id: artifact_id.to_string(),
                reason: "no such artifact".into(),
            })
    }

    /// Artifacts waiting for an upload: `created`, or `failed` (a retry).
    pub fn pending(&self) -> Result<Vec<ArtifactView>, S3Error> {
        let live = self.recorder.live()?;
        let mut pending = Vec::new();
        for status in [ArtifactStatus::Created, ArtifactStatus::Failed] {
            pending.extend(live.search(&ArtifactQuery {
                status: Some(status),
                ..ArtifactQuery::default()
            })?);
        }
        pending.sort_by(|a, b| a.artifact_id.cmp(&b.artifact_id));
        Ok(pending)
    }

    /// Where the store keeps `artifact`'s file.
    pub fn path_of(&self, artifact: &ArtifactView) -> PathBuf {
        self.root
            .join(&artifact.session_id)
            .join(&artifact.collection_id)
            .join(&artifact.file_name)
    }

    /// Uploads `artifact_id` (unless it already is), verifies it and records the outcome.
    pub async fn upload(&self, artifact_id: &str) -> Result<Uploaded, S3Error> {
        let artifact = self.artifact(artifact_id)?;
        self.upload_view(&artifact, &Stop::never()).await
    }

    /// [`ArtifactUploader::upload`] of a view already read, abandoned ([`S3Error::Stopped`]) if
    /// `stop` is signalled.
    pub(crate) async fn upload_view(
        &self,
        artifact: &ArtifactView,
        stop: &Stop,
    ) -> Result<Uploaded, S3Error> {
        let artifact_id = artifact.artifact_id.as_str();
        match artifact.status {
            ArtifactStatus::Uploaded => {
                if let (Some(key), Some(etag)) = (&artifact.s3_key, &artifact.etag) {
                    return Ok(Uploaded {
                        key: key.clone(),
                        etag: etag.clone(),
                        uploaded_now: false,
                    });
                }
            }
            ArtifactStatus::Deleted => {
                return Err(S3Error::Artifact {
                    artifact_id: artifact_id.to_string(),
                    reason: "it was deleted".into(),
                });
            }
            _ => {}
        }
        let key = layout::artifact_key(
            self.objects.location(),
            &artifact.session_id,
            &artifact.collection_id,
            &artifact.file_name,
        );
        let span = tracing::info_span!(
            "upload_artifact",
            artifact_id,
            key = %key,
            bytes = artifact.size_bytes
        );
        let mut backoff = Backoff::new(ATTEMPT_RETRY_FIRST, ATTEMPT_RETRY_MAX);
        let outcome = loop {
            match self
                .put_verified(artifact, &key, stop)
                .instrument(span.clone())
                .await
            {
                Ok(etag) => break Ok(etag),
                Err(error)
                    if backoff.attempts() + 1 < self.config.attempts && error.is_transient() =>
                {
                    let delay = backoff.next_delay();
                    crate::journal::quietly(|| {
                        tracing::warn!(parent: &span, %error, attempt = backoff.attempts(), "artifact upload failed, retrying");
                    });
                    let mut stop = stop.clone();
                    tokio::select! {
                        () = stop.wait() => break Err(S3Error::Stopped),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => break Err(error),
            }
        };
        match outcome {
            Ok(etag) => {
                let event = Event::ArtifactUploaded(ArtifactUploaded {
                    id: None,
                    artifact_id: artifact_id.to_string(),
                    s3_key: key.to_string(),
                    etag: etag.clone(),
                });
                self.recorder.record_async(&event).await?;
                crate::journal::quietly(|| {
                    tracing::info!(parent: &span, "artifact uploaded and verified");
                });
                Ok(Uploaded {
                    key: key.to_string(),
                    etag,
                    uploaded_now: true,
                })
            }
            Err(error)
                if matches!(error, S3Error::Stopped | S3Error::Record(_)) || error.is_fencing() =>
            {
                Err(error)
            }
            Err(error) => {
                self.record_failure(artifact, &error).await?;
                crate::journal::quietly(|| {
                    tracing::error!(parent: &span, %error, "artifact upload failed");
                });
                Err(error)
            }
        }
    }

    /// Records `artifact.upload_failed`, unless the artifact already failed for this reason.
    async fn record_failure(
        &self,
        artifact: &ArtifactView,
        error: &S3Error,
    ) -> Result<(), S3Error> {
        let mut text = error.to_string();
        truncate(&mut text, ERROR_BYTES_MAX);
        if artifact.status == ArtifactStatus::Failed && artifact.error.as_deref() == Some(&text) {
            return Ok(());
        }
        let event = Event::ArtifactUploadFailed(ArtifactUploadFailed {
            id: None,
            artifact_id: artifact.artifact_id.clone(),
            error: text,
        });
        self.recorder.record_async(&event).await?;
        Ok(())
    }

    /// One attempt: upload, then verify; the ETag.
    async fn put_verified(
        &self,
        artifact: &ArtifactView,
        key: &Key,
        stop: &Stop,
    ) -> Result<String, S3Error> {
        let path = self.path_of(artifact);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(S3Error::Artifact {
                    artifact_id: artifact.artifact_id.clone(),
                    reason: missing_reason(&path),
                });
            }
            Err(e) => return Err(S3Error::io(&path, e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(|e| S3Error::io(&path, e))?
            .len();
        if size != artifact.size_bytes {
            return Err(S3Error::Artifact {
                artifact_id: artifact.artifact_id.clone(),
                reason: format!(
                    "{} is {size} bytes, the journal recorded {}",
                    path.display(),
                    artifact.size_bytes
                ),
            });
        }
        drop(file);
        let etag = if size > self.config.multipart_threshold {
            self.put_multipart(artifact, key, &path, stop).await?
        } else {
            self.put_single(artifact, key, &path, stop).await?
        };
        self.verify(artifact, key).await?;
        Ok(etag)
    }

    fn metadata(artifact: &ArtifactView) -> Metadata {
        let mut m = Metadata::new();
        m.insert(meta::SHA256.to_string(), artifact.sha256.clone());
        m.insert(meta::ARTIFACT_ID.to_string(), artifact.artifact_id.clone());
        m.insert(
            meta::ARTIFACT_TYPE.to_string(),
            artifact.artifact_type.as_str().to_string(),
        );
        m.insert(meta::TAGS.to_string(), artifact.tags.join(","));
        if let Some(task) = &artifact.task_id {
            m.insert(meta::TASK_ID.to_string(), task.clone());
        }
        m
    }

    fn check_hash(artifact: &ArtifactView, sent: &str) -> Result<(), S3Error> {
        if sent == artifact.sha256 {
            Ok(())
        } else {
            Err(S3Error::Artifact {
                artifact_id: artifact.artifact_id.clone(),
                reason: format!(
                    "the file's SHA-256 is {sent}, the journal recorded {}: the local copy changed",
                    artifact.sha256
                ),
            })
        }
    }

    async fn put_single(
        &self,
        artifact: &ArtifactView,
        key: &Key,
        path: &Path,
        stop: &Stop,
    ) -> Result<String, S3Error> {
        let owned = path.to_path_buf();
        let (bytes, sha) = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&owned).map_err(|e| S3Error::io(&owned, e))?;
            let sha = layout::hex(&Sha256::digest(&bytes));
            Ok::<_, S3Error>((bytes, sha))
        })
        .await
        .map_err(|e| S3Error::io(path, std::io::Error::other(e)))??;
        Self::check_hash(artifact, &sha)?;
        self.check_lease().await?;
        let mut stop = stop.clone();
        tokio::select! {
            () = stop.wait() => Err(S3Error::Stopped),
            put = self.objects.put(key, bytes, Self::metadata(artifact)) => Ok(put?.0),
        }
    }

    /// Checks the object's size and `sha256` metadata against the journal.
    async fn verify(&self, artifact: &ArtifactView, key: &Key) -> Result<(), S3Error> {
        let head = self.objects.head(key).await?;
        let (size, sha) = head.map_or((None, None), |h| {
            (Some(h.size), h.metadata.get(meta::SHA256).cloned())
        });
        if size != Some(artifact.size_bytes) || sha.as_deref() != Some(artifact.sha256.as_str()) {
            return Err(S3Error::Request {
                operation: "HeadObject",
                key: key.to_string(),
                message: format!(
                    "uploaded object does not match: {size:?} bytes, sha256 {sha:?}; expected {} \
                     bytes, sha256 {}",
                    artifact.size_bytes, artifact.sha256
                ),
            });
        }
        Ok(())
    }

    /// A pre-signed GET URL for an uploaded artifact, valid for `expires_in`.
    pub async fn presigned_url(
        &self,
        artifact_id: &str,
        expires_in: Duration,
    ) -> Result<String, S3Error> {
        let artifact = self.artifact(artifact_id)?;
        presign(&self.objects, &artifact, expires_in).await
    }

    /// Deletes the S3 objects of deleted artifacts (after retention recorded
    /// `artifact.deleted`) that were uploaded under this prefix; the keys deleted.
    pub async fn delete_deleted(&self) -> Result<Vec<String>, S3Error> {
        let gone: Vec<ArtifactView> = self.recorder.live()?.search(&ArtifactQuery {
            status: Some(ArtifactStatus::Deleted),
            ..ArtifactQuery::default()
        })?;
        let mut deleted = Vec::new();
        for artifact in gone {
            let Some(recorded) = &artifact.s3_key else {
                continue;
            };
            let Some(key) = layout::recorded_artifact_key(self.objects.location(), recorded) else {
                crate::journal::quietly(|| {
                    tracing::warn!(
                        artifact_id = artifact.artifact_id,
                        key = recorded,
                        "recorded for another prefix; not deleted from this one"
                    );
                });
                continue;
            };
            self.objects.delete(&key).await?;
            deleted.push(key.to_string());
        }
        Ok(deleted)
    }
}

/// A pre-signed GET URL for `artifact` (which must be uploaded under `location`), valid for
/// `expires_in` (at most 7 days, S3's limit).
pub async fn presigned_get(
    client: &Client,
    location: &S3Location,
    artifact: &ArtifactView,
    expires_in: Duration,
) -> Result<String, S3Error> {
    presign(
        &Objects::new(client.clone(), location.clone()),
        artifact,
        expires_in,
    )
    .await
}

async fn presign(
    objects: &Objects,
    artifact: &ArtifactView,
    expires_in: Duration,
) -> Result<String, S3Error> {
    let refuse = |reason: String| S3Error::Artifact {
        artifact_id: artifact.artifact_id.clone(),
        reason,
    };
    let recorded = match (&artifact.status, &artifact.s3_key) {
        (ArtifactStatus::Deleted, _) => return Err(refuse("it was deleted".into())),
        (_, Some(key)) => key,
        (_, None) => return Err(refuse("it is not uploaded to S3 yet".into())),
    };
    let key = layout::recorded_artifact_key(objects.location(), recorded).ok_or_else(|| {
        refuse(format!(
            "it was uploaded as {recorded}, not under {}",
            objects.location()
        ))
    })?;
    objects
        .presign_get(&key, expires_in)
        .await
        .map_err(|e| match e {
            S3Error::Request { message, .. } if message.starts_with("expiry") => refuse(message),
            e => e,
        })
}

fn truncate(text: &mut String, max: usize) {
    while text.len() > max {
        text.pop();
    }
}
