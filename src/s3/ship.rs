//! [`Shipper`]: the durable subscriber that copies sealed segments to `{prefix}/journal/` and
//! uploads pending artifacts.
//!
//! A round ([`Shipper::ship_once`]) uploads every sealed segment not yet shipped, in offset
//! order, each with `If-None-Match: *` and its offsets, count and hashes as metadata, then
//! rewrites `head.json` once; then it uploads artifacts still `created` (or `failed`, retried with a
//! per-artifact backoff). [`Shipper::run`] repeats rounds every `interval` and as soon as a
//! segment is sealed; a failed round (S3 down) is retried with capped exponential backoff and
//! jitter while appends go on locally.
//!
//! # Invariants
//!
//! - **Fenced.** [`Shipper::open`] takes the prefix's writer lease ([`super::lease`]) before
//!   anything is written.
//! - **Progress is durable and never ahead of S3.** `ship_state` in `state.sqlite` holds the
//!   first offset not yet shipped, written only after the segment's upload succeeded. Lost
//!   (state.sqlite deleted) it is re-read from `head.json`; behind (a crash between upload and
//!   commit) the conditional put finds the object, its BLAKE3 matches, and it is skipped.
//! - **RPO.** A record reaches S3 at most `segment_age` (the active segment seals by age, 10 s
//!   by default) + one second (the seal poll) + the upload's duration after it is committed, while
//!   S3 is reachable.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use rusqlite::{Connection, OptionalExtension};
use tracing::Instrument;

use super::layout::{self, HEAD, Head, meta};
use super::lease::{self, Lease};
use super::upload::{ArtifactUploader, UploadConfig};
use super::{S3Error, S3Location};
use crate::journal::SealedSegment;
use crate::journal::segment::decode_footer_from_file_bytes;
use crate::projection::STATE_FILE;
use crate::recorder::Recorder;

const DDL: &str = "CREATE TABLE IF NOT EXISTS ship_state (
    location TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
)";

/// How often [`Shipper::run`] looks for a newly sealed segment.
pub const SEAL_POLL: Duration = Duration::from_secs(1);
/// The longest pause between two attempts while S3 fails.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a round shipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShipReport {
    /// Segments uploaded (or found already uploaded).
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
    /// One past the last shipped offset.
    pub next_offset: u64,
    /// Artifacts uploaded.
    pub artifacts: u64,
    /// Artifact uploads that failed (recorded as `artifact.upload_failed`).
    pub artifact_failures: u64,
}

/// What [`Shipper::ship_all`] reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipProgress {
    /// What is about to be shipped.
    Backlog {
        /// Segments.
        segments: u64,
        /// Their bytes.
        bytes: u64,
    },
    /// One segment shipped.
    Segment {
        /// Its first offset.
        first: u64,
        /// Its last offset.
        last: u64,
        /// Its bytes.
        bytes: u64,
    },
}

/// See the module docs.
#[derive(Debug)]
pub struct Shipper {
    client: Client,
    location: S3Location,
    recorder: Arc<Recorder>,
    uploader: ArtifactUploader,
    writer_id: String,
    /// `state.sqlite` (behind a mutex so `&Shipper` is `Sync` across awaits).
    db: Mutex<Connection>,
    next_offset: u64,
    /// The last segment shipped since `head.json` was written: its key and chain end.
    tip: Option<(String, String)>,
    /// Failed artifacts: attempts so far and when to try next.
    retry: HashMap<String, (u32, Instant)>,
    upload_artifacts: bool,
}

impl Shipper {
    /// Opens the shipper of the data dir `data_dir` (whose journal `recorder` writes) to
    /// `location`: takes the writer lease (or refuses: [`S3Error::Fenced`]) and loads progress.
    pub async fn open(
        data_dir: &Path,
        recorder: Arc<Recorder>,
        client: Client,
        location: S3Location,
        upload: UploadConfig,
    ) -> Result<Shipper, S3Error> {
        let writer_id = lease::writer_id(data_dir)?;
        lease::acquire(&client, &location, &writer_id, data_dir).await?;
        let db = Connection::open(data_dir.join(STATE_FILE))?;
        db.busy_timeout(Duration::from_secs(30))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL: a commit lost in a power cut leaves the progress behind S3, which the next
        // round repairs (the conditional put finds the same BLAKE3); FULL cost 3 ms a segment.
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute(DDL, [])?;
        let stored: Option<i64> = db
            .query_row(
                "SELECT next_offset FROM ship_state WHERE location = ?1",
                [location.to_string()],
                |row| row.get(0),
            )
            .optional()?;
        let next_offset = match stored {
            Some(n) => u64::try_from(n).unwrap_or(0),
            None => read_head(&client, &location)
                .await?
                .filter(|h| h.writer_id == writer_id)
                .map_or(0, |h| h.next_offset),
        };
        let uploader = ArtifactUploader::new(
            client.clone(),
            location.clone(),
            recorder.clone(),
            data_dir.join("artifacts"),
            upload,
        );
        Ok(Shipper {
            client,
            location,
            recorder,
            uploader,
            writer_id,
            db: Mutex::new(db),
            next_offset,
            tip: None,
            retry: HashMap::new(),
            upload_artifacts: true,
        })
    }

    /// Whether rounds upload pending artifacts too (default `true`).
    pub fn upload_artifacts(mut self, on: bool) -> Shipper {
        self.upload_artifacts = on;
        self
    }

    /// The artifact uploader this shipper uses.
    pub fn uploader(&self) -> &ArtifactUploader {
        &self.uploader
    }

    /// The lease this shipper holds.
    pub async fn lease(&self) -> Result<Lease, S3Error> {
        lease::read(&self.client, &self.location).await
    }

    /// One past the last shipped offset.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Sealed segments not shipped yet, with their sizes in bytes.
    pub fn pending(&self) -> Vec<(SealedSegment, u64)> {
        self.recorder
            .journal()
            .sealed_segments_from(self.next_offset)
            .into_iter()
            .map(|s| {
                let len = std::fs::metadata(&s.path).map_or(0, |m| m.len());
                (s, len)
            })
            .collect()
    }

    /// Uploads one sealed segment (the next one to ship) and commits the progress; its size in
    /// bytes. `head.json` is rewritten by [`Shipper::write_head`] (rounds call it once at their
    /// end).
    pub async fn ship_segment(&mut self, segment: &SealedSegment) -> Result<u64, S3Error> {
        let key = layout::segment_key(&self.location, segment.first, segment.last);
        if segment.first > self.next_offset {
            return Err(S3Error::Gap {
                reason: format!(
                    "local segment {} starts at {}, but offsets from {} are not shipped",
                    segment.path.display(),
                    segment.first,
                    self.next_offset
                ),
            });
        }
        let bytes = tokio::fs::read(&segment.path)
            .await
            .map_err(|e| S3Error::io(&segment.path, e))?;
        let footer = decode_footer_from_file_bytes(&bytes).map_err(|kind| S3Error::Tampered {
            key: segment.path.display().to_string(),
            offset: segment.first,
            reason: format!("local sealed segment is damaged: {kind}"),
        })?;
        let blake3 = blake3::hash(&bytes).to_hex().to_string();
        let size = bytes.len() as u64;
        let span = tracing::info_span!(
            "ship_segment",
            key,
            bytes = size,
            first = footer.first_offset,
            last = footer.last_offset
        );
        async {
            let metadata = HashMap::from([
                (meta::FIRST.to_string(), footer.first_offset.to_string()),
                (meta::LAST.to_string(), footer.last_offset.to_string()),
                (meta::COUNT.to_string(), footer.count.to_string()),
                (meta::BLAKE3.to_string(), blake3.clone()),
                (
                    meta::CHAIN_START.to_string(),
                    layout::hex(&footer.prev_hash),
                ),
                (meta::CHAIN_END.to_string(), layout::hex(&footer.last_hash)),
                (meta::WRITER.to_string(), self.writer_id.clone()),
            ]);
            let put = self
                .client
                .put_object()
                .bucket(&self.location.bucket)
                .key(&key)
                .if_none_match("*")
                .content_type("application/octet-stream")
                .set_metadata(Some(metadata))
                .body(ByteStream::from(bytes))
                .send()
                .await;
            match put {
                Ok(_) => tracing::info!("segment shipped"),
                Err(error) if lease::is_precondition_failed(&error) => {
                    self.check_existing(&key, &blake3).await?;
                    tracing::info!("segment was already shipped (same BLAKE3)");
                }
                Err(error) => return Err(S3Error::request("PutObject", &key, error)),
            }
            self.tip = Some((key.clone(), layout::hex(&footer.last_hash)));
            self.commit(footer.last_offset + 1)?;
            Ok(size)
        }
        .instrument(span)
        .await
    }

    /// Rewrites `head.json` to name the last segment shipped by this shipper, if it shipped one
    /// since the last call.
    pub async fn write_head(&mut self) -> Result<(), S3Error> {
        let Some((last_key, chain_end)) = self.tip.take() else {
            return Ok(());
        };
        let head = Head {
            format: 1,
            writer_id: self.writer_id.clone(),
            next_offset: self.next_offset,
            last_key: last_key.clone(),
            chain_end: chain_end.clone(),
            updated: crate::timestamp::format_us(crate::timestamp::now_us()),
        };
        let head_key = self.location.key(HEAD);
        let put = self
            .client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&head_key)
            .content_type("application/json")
            .body(ByteStream::from(
                serde_json::to_vec_pretty(&head).unwrap_or_default(),
            ))
            .send()
            .await;
        if let Err(error) = put {
            self.tip = Some((last_key, chain_end)); // retried with the next round
            return Err(S3Error::request("PutObject", &head_key, error));
        }
        Ok(())
    }

    /// An object already at `key`: accepted if it is this segment (same BLAKE3).
    async fn check_existing(&self, key: &str, blake3: &str) -> Result<(), S3Error> {
        let head = self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| S3Error::request("HeadObject", key, e))?;
        let theirs = head.metadata().and_then(|m| m.get(meta::BLAKE3)).cloned();
        if theirs.as_deref() == Some(blake3) {
            Ok(())
        } else {
            Err(S3Error::Conflict {
                key: key.to_string(),
                reason: format!("its BLAKE3 is {theirs:?}, the local segment's is {blake3}"),
            })
        }
    }

    fn commit(&mut self, next_offset: u64) -> Result<(), S3Error> {
        let n = i64::try_from(next_offset).unwrap_or(i64::MAX);
        let db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        db.execute(
            "INSERT INTO ship_state (location, next_offset) VALUES (?1, ?2)
             ON CONFLICT(location) DO UPDATE SET next_offset = excluded.next_offset",
            rusqlite::params![self.location.to_string(), n],
        )?;
        self.next_offset = next_offset;
        Ok(())
    }

    /// Ships every pending segment, then uploads pending artifacts (see the module docs).
    pub async fn ship_once(&mut self) -> Result<ShipReport, S3Error> {
        let mut report = ShipReport::default();
        for (segment, _) in self.pending() {
            match self.ship_segment(&segment).await {
                Ok(bytes) => report.bytes += bytes,
                Err(error) => {
                    // Name what was shipped before failing (best effort), then report.
                    let _ = self.write_head().await;
                    return Err(error);
                }
            }
            report.segments += 1;
        }
        self.write_head().await?;
        report.next_offset = self.next_offset;
        if self.upload_artifacts {
            self.upload_pending(&mut report).await?;
        }
        Ok(report)
    }

    /// Ships everything recorded so far: uploads the pending artifacts first (so the events
    /// recording their uploads are shipped too), seals the active segment (waiting up to
    /// `seal_timeout`), then ships every sealed segment. `progress` hears the backlog once, then
    /// each segment shipped. `logbook ship --once` and `demo --s3` end with this.
    pub async fn ship_all(
        &mut self,
        seal_timeout: Duration,
        progress: &mut (dyn FnMut(ShipProgress) + Send),
    ) -> Result<ShipReport, S3Error> {
        let mut report = ShipReport::default();
        if self.upload_artifacts {
            self.upload_pending(&mut report).await?;
        }
        if !seal_timeout.is_zero() {
            let recorder = self.recorder.clone();
            let sealed =
                tokio::task::spawn_blocking(move || recorder.journal().seal_now(seal_timeout))
                    .await
                    .map_err(|e| {
                        S3Error::io(self.recorder.journal().dir(), std::io::Error::other(e))
                    })??;
            if !sealed {
                tracing::warn!(
                    ?seal_timeout,
                    "the active segment did not seal in time; shipping what is sealed"
                );
            }
        }
        let pending = self.pending();
        progress(ShipProgress::Backlog {
            segments: pending.len() as u64,
            bytes: pending.iter().map(|(_, len)| len).sum(),
        });
        for (segment, _) in pending {
            let bytes = match self.ship_segment(&segment).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    let _ = self.write_head().await;
                    return Err(error);
                }
            };
            report.segments += 1;
            report.bytes += bytes;
            progress(ShipProgress::Segment {
                first: segment.first,
                last: segment.last,
                bytes,
            });
        }
        self.write_head().await?;
        report.next_offset = self.next_offset;
        Ok(report)
    }

    /// Uploads the pending artifacts (those whose retry backoff has passed); counted in
    /// `report`.
    pub async fn upload_pending(&mut self, report: &mut ShipReport) -> Result<(), S3Error> {
        let now = Instant::now();
        for artifact in self.uploader.pending()? {
            let id = artifact.artifact_id.clone();
            if self.retry.get(&id).is_some_and(|(_, at)| *at > now) {
                continue;
            }
            match self.uploader.upload(&id).await {
                Ok(_) => {
                    self.retry.remove(&id);
                    report.artifacts += 1;
                }
                Err(S3Error::Record(e)) => return Err(S3Error::Record(e)),
                Err(error) => {
                    report.artifact_failures += 1;
                    let attempts = self.retry.get(&id).map_or(0, |(n, _)| *n) + 1;
                    let wait = Duration::from_secs(60u64 << attempts.min(6))
                        .min(Duration::from_secs(3600));
                    tracing::warn!(artifact_id = id, %error, retry_in_s = wait.as_secs(), "artifact upload failed");
                    self.retry.insert(id, (attempts, now + wait));
                }
            }
        }
        Ok(())
    }

    /// Ships until `stop` completes: a round every `interval` and whenever a segment is sealed;
    /// failed rounds are retried with backoff. Returns an error only for refusals that waiting
    /// cannot fix (fenced, conflict, a damaged local segment, the journal failing).
    pub async fn run(
        mut self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), S3Error> {
        tokio::pin!(stop);
        let mut backoff = Duration::ZERO;
        let mut last_round = None::<Instant>;
        loop {
            let sealed_end = self.recorder.journal().sealed_end();
            let due =
                last_round.is_none_or(|t| t.elapsed() >= interval) || sealed_end > self.next_offset;
            let wait = if due {
                match self.ship_once().await {
                    Ok(report) => {
                        if report.segments > 0 || report.artifacts > 0 {
                            tracing::info!(
                                segments = report.segments,
                                bytes = report.bytes,
                                next_offset = report.next_offset,
                                artifacts = report.artifacts,
                                "shipped"
                            );
                        }
                        backoff = Duration::ZERO;
                        last_round = Some(Instant::now());
                        SEAL_POLL
                    }
                    Err(error) if error.is_transient() => {
                        backoff = (backoff * 2).clamp(Duration::from_millis(500), MAX_BACKOFF);
                        let jittered =
                            backoff.mul_f64(0.5 + crate::backoff::jitter_unit() / 2.0);
                        tracing::warn!(%error, retry_in_ms = jittered.as_millis() as u64, "shipping failed; will retry");
                        jittered
                    }
                    Err(error) => return Err(error),
                }
            } else {
                SEAL_POLL
            };
            tokio::select! {
                biased;
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The location shipped to.
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// This data dir's writer id.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }
}

/// Reads `head.json`, `None` if there is none yet.
pub async fn read_head(client: &Client, location: &S3Location) -> Result<Option<Head>, S3Error> {
    let key = location.key(HEAD);
    match client
        .get_object()
        .bucket(&location.bucket)
        .key(&key)
        .send()
        .await
    {
        Ok(object) => {
            let data = object
                .body
                .collect()
                .await
                .map_err(|e| S3Error::request("GetObject", &key, e))?;
            serde_json::from_slice(&data.into_bytes())
                .map(Some)
                .map_err(|e| S3Error::Conflict {
                    key,
                    reason: format!("not a head document: {e}"),
                })
        }
        Err(error)
            if error
                .raw_response()
                .is_some_and(|r| r.status().as_u16() == 404) =>
        {
            Ok(None)
        }
        Err(error) => Err(S3Error::request("GetObject", &key, error)),
    }
}
