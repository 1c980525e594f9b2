//! [`ArtifactQueue`]: the artifacts waiting for an upload (`created`, or `failed` and due for a
//! retry), uploaded one at a time beside segment shipping, in its own loop, so no artifact can
//! delay a segment: a slow upload, a stalled S3 or a thousand files missing cost segments
//! nothing.
//!
//! Policy per artifact:
//! - its file is not in the store (a metadata-only record, from another machine): a permanent
//!   condition. The upload records `artifact.upload_failed` once (the reason names the missing
//!   file); after that the artifact is skipped, without a request or a record, until its file
//!   appears (a `stat` per pass), also across restarts (its status says it failed already);
//! - a failed upload (after the uploader's own attempts) waits [`Backoff`] from
//!   [`RETRY_FIRST`] to [`RETRY_MAX`] before its next try (kept in memory: a restart retries
//!   at once);
//! - a stop abandons the artifact in flight (see [`super::upload`]) and ends the pass.
//!
//! The loop ([`ArtifactQueue::run`]) makes a pass when a segment is sealed (new events, maybe
//! new artifacts) and every interval; it never polls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::S3Error;
use super::status::{ArtifactCounts, ShipStatus};
use super::stop::Stop;
use super::upload::ArtifactUploader;
use crate::backoff::Backoff;
use crate::event::ArtifactStatus;

/// First wait before retrying a failed artifact upload.
pub const RETRY_FIRST: Duration = Duration::from_secs(30);
/// Longest wait before retrying a failed artifact upload.
pub const RETRY_MAX: Duration = Duration::from_secs(3600);

/// What one pass over the pending artifacts did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArtifactPass {
    /// Uploaded (and recorded as `artifact.uploaded`).
    pub uploaded: u64,
    /// Uploads that failed: artifact id and why.
    pub failed: Vec<(String, String)>,
    /// Artifacts whose file is not in the store.
    pub missing: Vec<String>,
    /// Failed before and not due for a retry yet.
    pub waiting: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct ArtifactQueue {
    uploader: ArtifactUploader,
    status: Option<Arc<ShipStatus>>,
    /// Failed uploads: their backoff and when to try next.
    retry: HashMap<String, (Backoff, Instant)>,
    uploaded: u64,
}

impl ArtifactQueue {
    /// The queue of `uploader`'s store, reporting to `status` if given.
    pub fn new(uploader: ArtifactUploader, status: Option<Arc<ShipStatus>>) -> ArtifactQueue {
        ArtifactQueue {
            uploader,
            status,
            retry: HashMap::new(),
            uploaded: 0,
        }
    }

    /// The uploader.
    pub fn uploader(&self) -> &ArtifactUploader {
        &self.uploader
    }

    /// One pass over the pending artifacts (see the module docs). Fails only when uploading
    /// cannot go on: recording failed, the lease was lost.
    pub async fn pass(&mut self, stop: &Stop) -> Result<ArtifactPass, S3Error> {
        let mut pass = ArtifactPass::default();
        let now = Instant::now();
        for artifact in self.uploader.pending()? {
            if stop.is_set() {
                break;
            }
            let id = artifact.artifact_id.clone();
            let path = self.uploader.path_of(&artifact);
            if artifact.status == ArtifactStatus::Failed
                && !tokio::fs::try_exists(&path).await.unwrap_or(true)
            {
                pass.missing.push(id);
                continue;
            }
            if self.retry.get(&id).is_some_and(|(_, at)| *at > now) {
                pass.waiting += 1;
                continue;
            }
            match self.uploader.upload_view(&artifact, stop).await {
                Ok(_) => {
                    self.retry.remove(&id);
                    pass.uploaded += 1;
                }
                Err(S3Error::Stopped) => break,
                Err(error) if matches!(error, S3Error::Record(_)) || error.is_fencing() => {
                    return Err(error);
                }
                Err(error) => {
                    if tokio::fs::try_exists(&path).await.unwrap_or(true) {
                        let (backoff, at) = self
                            .retry
                            .entry(id.clone())
                            .or_insert_with(|| (Backoff::new(RETRY_FIRST, RETRY_MAX), now));
                        *at = now + backoff.next_delay();
                        pass.failed.push((id, error.to_string()));
                    } else {
                        pass.missing.push(id);
                    }
                }
            }
        }
        self.uploaded += pass.uploaded;
        if let Some(status) = &self.status {
            status.artifacts(ArtifactCounts {
                uploaded: self.uploaded,
                failed: pass.failed.len() as u64 + pass.waiting,
                missing: pass.missing.len() as u64,
            });
            if !pass.missing.is_empty() {
                status.warn(&missing_warning(&pass.missing));
            }
        }
        Ok(pass)
    }

    /// Makes a pass whenever the journal seals a segment and every `interval`, until `stop`.
    pub async fn run(
        mut self,
        recorder: Arc<crate::recorder::Recorder>,
        interval: Duration,
        mut stop: Stop,
    ) -> Result<(), S3Error> {
        let mut journal_open = true;
        let mut reported_missing = 0;
        loop {
            let seen = recorder.journal().sealed_end();
            let pass = self.pass(&stop).await?;
            if pass.uploaded > 0 || !pass.failed.is_empty() {
                crate::journal::quietly(|| {
                    tracing::info!(
                        uploaded = pass.uploaded,
                        failed = pass.failed.len(),
                        "artifact uploads"
                    );
                });
            }
            if pass.missing.len() != reported_missing {
                reported_missing = pass.missing.len();
                crate::journal::quietly(|| {
                    tracing::warn!("{}", missing_warning(&pass.missing));
                });
            }
            tokio::select! {
                () = stop.wait() => return Ok(()),
                () = tokio::time::sleep(interval) => {}
                sealed = recorder.journal().wait_sealed_beyond(seen), if journal_open => {
                    journal_open = sealed;
                }
            }
        }
    }
}

/// What is said about artifacts without their file.
pub fn missing_warning(missing: &[String]) -> String {
    let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
    format!(
        "{} artifact(s) are recorded without their file in the store (first: {}{}): not \
         uploaded until the file is there; recorded once as artifact.upload_failed",
        missing.len(),
        shown.join(", "),
        if missing.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    )
}
