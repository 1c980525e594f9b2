//! Artifact files → `{prefix}/artifacts/{session_id}/{collection_id}/{file_name}`.
//!
//! Files up to [`UploadConfig::multipart_threshold`] go in one `PutObject`; larger ones in
//! parts of [`UploadConfig::part_size`], read one part at a time, so memory stays flat whatever
//! the file's size. Every upload:
//! - hashes the bytes it sends (SHA-256) and refuses to finish if they are not the bytes the
//!   journal recorded (`sha256` and `size_bytes` of `artifact.added`): a file changed on disk
//!   is not uploaded as if it were the recorded one;
//! - carries `sha256`, `artifact-id`, `artifact-type`, `tags` and `task-id` as metadata;
//! - is verified afterwards (`HeadObject`: size and `sha256` metadata), then recorded as
//!   `artifact.uploaded` (key, ETag); after [`UploadConfig::attempts`] failed attempts it is
//!   recorded as `artifact.upload_failed` (error).
//!
//! Invariant: an artifact is `uploaded` in the journal only once its object was verified.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tracing::Instrument;

use super::layout::{self, meta};
use super::{S3Error, S3Location};
use crate::artifacts::ArtifactQuery;
use crate::event::{ArtifactStatus, ArtifactUploadFailed, ArtifactUploaded, Event};
use crate::recorder::Recorder;
use crate::state::ArtifactView;

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
    client: Client,
    location: S3Location,
    recorder: Arc<Recorder>,
    root: PathBuf,
    config: UploadConfig,
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

impl ArtifactUploader {
    /// An uploader recording through `recorder`.
    pub fn new(
        client: Client,
        location: S3Location,
        recorder: Arc<Recorder>,
        root: impl Into<PathBuf>,
        config: UploadConfig,
    ) -> ArtifactUploader {
        ArtifactUploader {
            client,
            location,
            recorder,
            root: root.into(),
            config,
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

    /// Uploads `artifact_id` (unless it already is), verifies it and records the outcome.
    pub async fn upload(&self, artifact_id: &str) -> Result<Uploaded, S3Error> {
        let artifact = self.artifact(artifact_id)?;
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
            &self.location,
            &artifact.session_id,
            &artifact.collection_id,
            &artifact.file_name,
        );
        let span = tracing::info_span!(
            "upload_artifact",
            artifact_id,
            key,
            bytes = artifact.size_bytes
        );
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self
                .put_verified(&artifact, &key)
                .instrument(span.clone())
                .await
            {
                Ok(etag) => break Ok(etag),
                Err(error) if attempt < self.config.attempts && error.is_transient() => {
                    let delay = Duration::from_millis(200 << attempt.min(6));
                    tracing::warn!(parent: &span, %error, attempt, "artifact upload failed, retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => break Err(error),
            }
        };
        match outcome {
            Ok(etag) => {
                let event = Event::ArtifactUploaded(ArtifactUploaded {
                    id: None,
                    artifact_id: artifact_id.to_string(),
                    s3_key: key.clone(),
                    etag: etag.clone(),
                });
                self.recorder.record_async(&event).await?;
                tracing::info!(parent: &span, "artifact uploaded and verified");
                Ok(Uploaded {
                    key,
                    etag,
                    uploaded_now: true,
                })
            }
            Err(error) => {
                let mut text = error.to_string();
                truncate(&mut text, 4096);
                let event = Event::ArtifactUploadFailed(ArtifactUploadFailed {
                    id: None,
                    artifact_id: artifact_id.to_string(),
                    error: text,
                });
                self.recorder.record_async(&event).await?;
                tracing::error!(parent: &span, %error, "artifact upload failed");
                Err(error)
            }
        }
    }

    /// One attempt: upload, then verify; the ETag.
    async fn put_verified(&self, artifact: &ArtifactView, key: &str) -> Result<String, S3Error> {
        let path = self
            .root
            .join(&artifact.session_id)
            .join(&artifact.collection_id)
            .join(&artifact.file_name);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| S3Error::io(&path, e))?;
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
        let etag = if size > self.config.multipart_threshold {
            self.put_multipart(artifact, key, file, &path).await?
        } else {
            self.put_single(artifact, key, file, &path).await?
        };
        self.verify(artifact, key).await?;
        Ok(etag)
    }

    fn metadata(artifact: &ArtifactView) -> std::collections::HashMap<String, String> {
        let mut m = std::collections::HashMap::new();
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

    fn check_hash(artifact: &ArtifactView, hasher: Sha256) -> Result<(), S3Error> {
        let sent = layout::hex(&hasher.finalize());
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
        key: &str,
        mut file: tokio::fs::File,
        path: &std::path::Path,
    ) -> Result<String, S3Error> {
        let mut bytes = Vec::with_capacity(usize::try_from(artifact.size_bytes).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .await
            .map_err(|e| S3Error::io(path, e))?;
        Self::check_hash(artifact, Sha256::new_with_prefix(&bytes))?;
        let out = self
            .client
            .put_object()
            .bucket(&self.location.bucket)
            .key(key)
            .set_metadata(Some(Self::metadata(artifact)))
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| S3Error::request("PutObject", key, e))?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    async fn put_multipart(
        &self,
        artifact: &ArtifactView,
        key: &str,
        mut file: tokio::fs::File,
        path: &std::path::Path,
    ) -> Result<String, S3Error> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.location.bucket)
            .key(key)
            .set_metadata(Some(Self::metadata(artifact)))
            .send()
            .await
            .map_err(|e| S3Error::request("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self
            .send_parts(artifact, key, &mut file, path, &upload_id)
            .await;
        if result.is_err() {
            // Best effort: an abandoned upload only costs storage until a lifecycle rule.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.location.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn send_parts(
        &self,
        artifact: &ArtifactView,
        key: &str,
        file: &mut tokio::fs::File,
        path: &std::path::Path,
        upload_id: &str,
    ) -> Result<String, S3Error> {
        let mut hasher = Sha256::new();
        let mut parts = Vec::new();
        let mut number = 0;
        loop {
            let mut part = Vec::with_capacity(self.config.part_size);
            let read = (&mut *file)
                .take(self.config.part_size as u64)
                .read_to_end(&mut part)
                .await
                .map_err(|e| S3Error::io(path, e))?;
            if read == 0 {
                break;
            }
            hasher.update(&part);
            number += 1;
            let out = self
                .client
                .upload_part()
                .bucket(&self.location.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(part))
                .send()
                .await
                .map_err(|e| S3Error::request("UploadPart", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
        }
        Self::check_hash(artifact, hasher)?;
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.location.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| S3Error::request("CompleteMultipartUpload", key, e))?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    /// Checks the object's size and `sha256` metadata against the journal.
    async fn verify(&self, artifact: &ArtifactView, key: &str) -> Result<(), S3Error> {
        let head = self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| S3Error::request("HeadObject", key, e))?;
        let size = head.content_length().unwrap_or(-1);
        let sha = head.metadata().and_then(|m| m.get(meta::SHA256)).cloned();
        if u64::try_from(size).ok() != Some(artifact.size_bytes)
            || sha.as_deref() != Some(artifact.sha256.as_str())
        {
            return Err(S3Error::Request {
                operation: "HeadObject",
                key: key.to_string(),
                message: format!(
                    "uploaded object does not match: {size} bytes, sha256 {sha:?}; expected {} \
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
        presigned_get(&self.client, &self.location, &artifact, expires_in).await
    }

    /// Deletes the S3 objects of deleted artifacts (after retention recorded
    /// `artifact.deleted`); the keys deleted.
    pub async fn delete_deleted(&self) -> Result<Vec<String>, S3Error> {
        let gone: Vec<ArtifactView> = self
            .recorder
            .live()?
            .search(&ArtifactQuery {
                status: Some(ArtifactStatus::Deleted),
                ..ArtifactQuery::default()
            })?
            .into_iter()
            .filter(|a| a.s3_key.is_some())
            .collect();
        let mut deleted = Vec::new();
        for artifact in gone {
            let Some(key) = artifact.s3_key else { continue };
            self.client
                .delete_object()
                .bucket(&self.location.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| S3Error::request("DeleteObject", &key, e))?;
            deleted.push(key);
        }
        Ok(deleted)
    }
}

/// A pre-signed GET URL for `artifact` (which must be uploaded), valid for `expires_in`
/// (at most 7 days, S3's limit).
pub async fn presigned_get(
    client: &Client,
    location: &S3Location,
    artifact: &ArtifactView,
    expires_in: Duration,
) -> Result<String, S3Error> {
    let refuse = |reason: String| S3Error::Artifact {
        artifact_id: artifact.artifact_id.clone(),
        reason,
    };
    let key = match (&artifact.status, &artifact.s3_key) {
        (ArtifactStatus::Deleted, _) => return Err(refuse("it was deleted".into())),
        (_, Some(key)) => key.clone(),
        (_, None) => return Err(refuse("it is not uploaded to S3 yet".into())),
    };
    let config = PresigningConfig::expires_in(expires_in)
        .map_err(|e| refuse(format!("expiry {expires_in:?}: {e}")))?;
    let request = client
        .get_object()
        .bucket(&location.bucket)
        .key(&key)
        .presigned(config)
        .await
        .map_err(|e| S3Error::request("GetObject (presign)", &key, e))?;
    Ok(request.uri().to_string())
}

fn truncate(text: &mut String, max: usize) {
    while text.len() > max {
        text.pop();
    }
}
