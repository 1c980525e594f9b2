//! [`Shipper`]: the durable subscriber that copies sealed segments to `{prefix}/journal/`, keeps
//! `head.json` naming the shipped end, and runs the [`ArtifactQueue`] beside it.
//!
//! A round ([`Shipper::ship_round`]):
//! 1. checks the prefix: one `HeadObject` of `head.json`, whose ETag must be the one this writer
//!    wrote or saw last. Anything else (gone, replaced) and, every [`SURVEY_ROUNDS`] rounds
//!    anyway, it surveys the prefix ([`super::prefix`]): another writer's objects stop it; a
//!    prefix holding less than was shipped (wiped, rewound, a new bucket) is shipped again from
//!    the local sealed segments, saying so loudly (log, `/v1/health`); records S3 holds and the
//!    local journal does not stop it ([`S3Error::Diverged`]);
//! 2. uploads every sealed segment not yet shipped, in offset order, each after proving the
//!    lease ([`LeaseGuard::check`]) and with `If-None-Match: *` and its offsets, count, hashes
//!    and writer as metadata, moving the checkpoint after each. The proof runs while the file
//!    is read and hashed, or alongside the previous PUT (it completes before the write it
//!    covers starts), so it adds a request but no latency;
//! 3. rewrites `head.json` (lease proven, `If-Match` on its last ETag) if it moved; a round
//!    that wrote nothing proves the lease instead.
//!
//! An idle round costs two requests (`HeadObject` of `head.json` and of `writer.json`).
//!
//! [`Shipper::run`] (in `ship/run.rs`) makes a round whenever the journal seals past the shipped
//! end and every `interval`, retries a failed one after a [`Backoff`](crate::backoff::Backoff)
//! while appends go on locally, and runs the artifact queue beside it. A stop ends both within
//! [`STOP_GRACE`].
//!
//! # Invariants
//!
//! - **Fenced.** [`Shipper::open`] refuses a prefix whose lease, head or segments name another
//!   writer before writing anything, then takes the lease; every object written after proves
//!   it; a lost lease stops shipping for good.
//! - **Progress is durable, anchored and never ahead of S3.** The checkpoint
//!   `ship:s3://bucket/prefix` ([`Checkpoints`]) is the next offset *and the chain hash* of the
//!   last shipped record, written only after its segment's upload succeeded. On open it is
//!   checked against the local journal: a journal cut below what it shipped (e.g. by
//!   `logbook repair --cut`) is refused, naming the offsets, before anything is written. S3 is
//!   the truth of what is shipped: lost or behind (a crash between upload and commit), the
//!   checkpoint is caught up from the survey; the conditional put finds an object already
//!   there, its BLAKE3 matches, and it is skipped.
//! - **Contiguous.** A segment is uploaded only if it starts at the shipped end and its chain
//!   continues the shipped chain.
//! - **RPO.** A record reaches S3 at most `segment_age` (the active segment seals by age, 10 s
//!   by default) + the upload's duration after it is committed, while S3 is reachable.

mod run;

pub use run::{RETRY_FIRST, RETRY_MAX};

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_s3::Client;
use tracing::Instrument;

use super::layout::{self, Head, Key, meta};
use super::lease::{self, LeaseGuard};
use super::objects::{Conditional, ETag, Metadata, Objects};
use super::prefix::{self, Survey};
use super::queue::{ArtifactPass, ArtifactQueue};
use super::status::ShipStatus;
use super::stop::Stop;
use super::upload::{ArtifactUploader, UploadConfig};
use super::{S3Error, S3Location};
use crate::journal::segment::decode_footer_from_file_bytes;
use crate::journal::{Anchor, AnchorCheck, SealedSegment};
use crate::projection::Checkpoints;
use crate::recorder::Recorder;

/// A stop ends shipping within this long: in-flight work finishes or is abandoned.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// Rounds between two full surveys of the prefix when `head.json` looks unchanged (catches
/// segment objects deleted behind an intact head).
pub const SURVEY_ROUNDS: u64 = 60;

/// What a round (or [`Shipper::ship_all`]) shipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShipReport {
    /// Segments uploaded (or found already uploaded).
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
    /// One past the last shipped offset.
    pub next_offset: u64,
    /// The artifact pass, if one ran.
    pub artifacts: ArtifactPass,
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

/// What this shipper knows of `head.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HeadState {
    /// Not known: survey before trusting anything.
    Unknown,
    /// There is none.
    Absent,
    /// The version this writer wrote or saw last.
    Known(ETag),
}

/// See the module docs.
#[derive(Debug)]
pub struct Shipper {
    objects: Objects,
    recorder: Arc<Recorder>,
    lease: Arc<LeaseGuard>,
    /// `state.sqlite`'s checkpoints (behind a mutex so `&Shipper` is `Sync` across awaits).
    checkpoints: Mutex<Checkpoints>,
    checkpoint: String,
    /// S3 holds every record below `shipped.next_offset` (as of the last check).
    shipped: Anchor,
    last_key: Option<Key>,
    head: HeadState,
    /// Whether `head.json` does not name `shipped` yet.
    head_stale: bool,
    /// Whether the lease was proven since the last object write (by a check that ran alongside
    /// that write's PUT): the next write needs no check of its own. Reset each round.
    lease_proven: bool,
    rounds_since_survey: u64,
    status: Arc<ShipStatus>,
    queue: Option<ArtifactQueue>,
}

impl Shipper {
    /// Opens the shipper of the data dir `data_dir` (whose journal `recorder` writes) to
    /// `location`: surveys the prefix, checks it and the checkpoint against the journal, takes
    /// the writer lease (or refuses: see the module docs).
    pub async fn open(
        data_dir: &Path,
        recorder: Arc<Recorder>,
        client: Client,
        location: S3Location,
        upload: UploadConfig,
    ) -> Result<Shipper, S3Error> {
        let objects = Objects::new(client, location);
        let status = Arc::new(ShipStatus::new(
            objects.clone(),
            &lease::writer_id(data_dir)?,
            0,
        ));
        Shipper::open_reporting(data_dir, recorder, objects, upload, status).await
    }

    /// [`Shipper::open`] through `objects`, reporting to `status` (made beforehand, so a
    /// caller that retries opening while S3 is unreachable can show why meanwhile).
    pub async fn open_reporting(
        data_dir: &Path,
        recorder: Arc<Recorder>,
        objects: Objects,
        upload: UploadConfig,
        status: Arc<ShipStatus>,
    ) -> Result<Shipper, S3Error> {
        let writer_id = lease::writer_id(data_dir)?;
        let location = objects.location().clone();
        let survey = prefix::survey(&objects).await?;
        if let Some((other, evidence)) = survey.other_writer(&writer_id) {
            return Err(match lease::read(&objects).await? {
                Some((holder, _)) if holder.writer_id != writer_id => S3Error::Fenced {
                    location,
                    holder: Box::new(holder),
                    ours: writer_id,
                },
                _ => S3Error::ClaimedByOther {
                    location,
                    writer_id: other,
                    evidence,
                    ours: writer_id,
                },
            });
        }
        survey.check_journal(recorder.journal(), &location)?;
        let checkpoints = Checkpoints::open(data_dir)?;
        let checkpoint = format!("ship:{location}");
        let stored = checkpoints.get(&checkpoint)?;
        if let Some(stored) = stored {
            check_checkpoint(&stored, &recorder, &location)?;
        }
        let lease = Arc::new(LeaseGuard::acquire(objects.clone(), &writer_id, data_dir).await?);
        let uploader = ArtifactUploader::with_objects(
            objects.clone(),
            recorder.clone(),
            data_dir.join("artifacts"),
            upload,
        )
        .fenced_by(lease.clone());
        let mut shipper = Shipper {
            objects,
            recorder,
            lease,
            checkpoints: Mutex::new(checkpoints),
            checkpoint,
            shipped: Anchor::GENESIS,
            last_key: None,
            head: HeadState::Unknown,
            head_stale: false,
            lease_proven: false,
            rounds_since_survey: 0,
            queue: Some(ArtifactQueue::new(uploader, Some(status.clone()))),
            status,
        };
        if let Some(stored) = stored {
            shipper.shipped = stored;
        }
        shipper.adopt(survey);
        Ok(shipper)
    }

    /// Whether rounds upload pending artifacts too (default `true`).
    pub fn upload_artifacts(mut self, on: bool) -> Shipper {
        if !on {
            self.queue = None;
        }
        self
    }

    /// What shipping is doing (shared with `/v1/health`).
    pub fn status(&self) -> Arc<ShipStatus> {
        self.status.clone()
    }

    /// The prefix's lease as it stands in S3 (`None`: there is none).
    pub async fn lease(&self) -> Result<Option<super::Lease>, S3Error> {
        Ok(lease::read(&self.objects).await?.map(|(lease, _)| lease))
    }

    /// One past the last shipped offset.
    pub fn next_offset(&self) -> u64 {
        self.shipped.next_offset
    }

    /// The location shipped to.
    pub fn location(&self) -> &S3Location {
        self.objects.location()
    }

    /// This data dir's writer id.
    pub fn writer_id(&self) -> &str {
        self.lease.writer_id()
    }

    /// Takes what a survey found as the shipped end (S3 is the truth of what is shipped),
    /// saying so loudly when S3 holds less than this shipper shipped.
    fn adopt(&mut self, survey: Survey) {
        let found = survey.end;
        if found.next_offset < self.shipped.next_offset {
            let warning = format!(
                "{} holds offsets below {} only, but offsets below {} were shipped there: the \
                 prefix was wiped or rewound; shipping the missing segments again from the local \
                 journal (and taking the lease again)",
                self.location(),
                found.next_offset,
                self.shipped.next_offset
            );
            crate::journal::quietly(|| tracing::error!("{warning}"));
            self.status.warn(&warning);
        }
        self.shipped = found;
        self.last_key = survey.last_key;
        self.head_stale = match &survey.head {
            Some((head, _)) => head.next_offset != found.next_offset,
            None => found.next_offset > 0,
        };
        self.head = survey
            .head
            .map_or(HeadState::Absent, |(_, etag)| HeadState::Known(etag));
        self.rounds_since_survey = 0;
        self.status.shipped(found.next_offset);
    }

    /// Step 1 of a round (see the module docs).
    async fn check_prefix(&mut self) -> Result<(), S3Error> {
        self.rounds_since_survey += 1;
        self.lease_proven = false;
        let found = self
            .objects
            .head(&layout::head_key(self.location()))
            .await?
            .map(|h| h.etag);
        let unchanged = match (&self.head, &found) {
            (HeadState::Absent, None) => true,
            (HeadState::Known(ours), Some(theirs)) => ours == theirs,
            _ => false,
        };
        if unchanged && self.rounds_since_survey < SURVEY_ROUNDS {
            return Ok(());
        }
        let survey = prefix::survey(&self.objects).await?;
        if let Some((other, evidence)) = survey.other_writer(self.writer_id()) {
            // The lease tells whether it was taken (then the holder is named).
            self.lease.check().await?;
            return Err(S3Error::Diverged {
                location: self.location().clone(),
                reason: format!(
                    "{evidence} names writer {other}, although this writer holds the lease: \
                     another writer wrote there"
                ),
            });
        }
        survey.check_journal(self.recorder.journal(), self.location())?;
        self.adopt(survey);
        Ok(())
    }

    /// Sealed segments not shipped yet, with their sizes in bytes.
    pub fn pending(&self) -> Vec<(SealedSegment, u64)> {
        self.recorder
            .journal()
            .sealed_segments_from(self.shipped.next_offset)
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
        let location = self.location().clone();
        if segment.first != self.shipped.next_offset {
            return Err(S3Error::Diverged {
                location,
                reason: format!(
                    "the local sealed segment {} holds {}..={}, but the copy continues at offset \
                     {}: the copy cannot be made whole from this journal's segments",
                    segment.path.display(),
                    segment.first,
                    segment.last,
                    self.shipped.next_offset
                ),
            });
        }
        let key = layout::segment_key(&location, segment.first, segment.last);
        let path = segment.path.clone();
        let read = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path).map_err(|e| S3Error::io(&path, e))?;
            let footer =
                decode_footer_from_file_bytes(&bytes).map_err(|kind| S3Error::Tampered {
                    key: path.display().to_string(),
                    offset: 0,
                    reason: format!("local sealed segment is damaged: {kind}"),
                })?;
            let blake3 = blake3::hash(&bytes).to_hex().to_string();
            Ok::<_, S3Error>((bytes, footer, blake3))
        });
        // The lease is proven while the file is read and hashed, unless the previous upload
        // proved it already (alongside its PUT): either way the check costs no time.
        let proven = std::mem::take(&mut self.lease_proven);
        let (read, held) = tokio::join!(read, self.prove_lease(proven));
        held?;
        let (bytes, footer, blake3) =
            read.map_err(|e| S3Error::io(&segment.path, std::io::Error::other(e)))??;
        if footer.prev_hash != self.shipped.chain {
            return Err(S3Error::Diverged {
                location,
                reason: format!(
                    "the local sealed segment {} does not continue the chain the copy ends with \
                     at offset {}",
                    segment.path.display(),
                    segment.first
                ),
            });
        }
        let size = bytes.len() as u64;
        let span = tracing::info_span!(
            "ship_segment",
            key = %key,
            bytes = size,
            first = footer.first_offset,
            last = footer.last_offset
        );
        async {
            let metadata = Metadata::from([
                (meta::FIRST.to_string(), footer.first_offset.to_string()),
                (meta::LAST.to_string(), footer.last_offset.to_string()),
                (meta::COUNT.to_string(), footer.count.to_string()),
                (meta::BLAKE3.to_string(), blake3.clone()),
                (
                    meta::CHAIN_START.to_string(),
                    layout::hex(&footer.prev_hash),
                ),
                (meta::CHAIN_END.to_string(), layout::hex(&footer.last_hash)),
                (meta::WRITER.to_string(), self.writer_id().to_string()),
            ]);
            // The next write's proof of the lease runs alongside this PUT (it still completes
            // before that write starts).
            let (put, next) = tokio::join!(
                self.objects.put_if_absent(&key, bytes, metadata),
                self.lease.check()
            );
            match put? {
                Conditional::Written(_) => {
                    crate::journal::quietly(|| tracing::info!("segment shipped"));
                }
                Conditional::Failed => {
                    self.check_existing(&key, &blake3).await?;
                    crate::journal::quietly(|| {
                        tracing::info!("segment was already shipped (same BLAKE3)");
                    });
                }
            }
            let shipped = Anchor {
                next_offset: footer.last_offset + 1,
                chain: footer.last_hash,
            };
            self.checkpoints
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(&self.checkpoint, &shipped)?;
            debug_assert!(shipped.next_offset > self.shipped.next_offset);
            self.shipped = shipped;
            self.last_key = Some(key.clone());
            self.head_stale = true;
            self.status.shipped(shipped.next_offset);
            next?;
            self.lease_proven = true;
            Ok(size)
        }
        .instrument(span)
        .await
    }

    /// Proves the lease before an object write, unless `proven` (a check ran since the last
    /// write, in this round).
    async fn prove_lease(&self, proven: bool) -> Result<(), S3Error> {
        if proven {
            Ok(())
        } else {
            self.lease.check().await
        }
    }

    /// An object already at `key`: accepted if it is this segment (same BLAKE3).
    async fn check_existing(&self, key: &Key, blake3: &str) -> Result<(), S3Error> {
        let found = self.objects.head(key).await?;
        let theirs = found.and_then(|h| h.metadata.get(meta::BLAKE3).cloned());
        if theirs.as_deref() == Some(blake3) {
            Ok(())
        } else {
            Err(S3Error::Conflict {
                key: key.to_string(),
                reason: format!("its BLAKE3 is {theirs:?}, the local segment's is {blake3}"),
            })
        }
    }

    /// Rewrites `head.json` to name the shipped end, if it does not yet (lease proven,
    /// `If-Match` on the version last written or seen).
    pub async fn write_head(&mut self) -> Result<(), S3Error> {
        let Some(last_key) = self.last_key.clone() else {
            return Ok(());
        };
        if !self.head_stale {
            return Ok(());
        }
        let head = Head {
            format: 1,
            writer_id: self.writer_id().to_string(),
            next_offset: self.shipped.next_offset,
            last_key: last_key.to_string(),
            chain_end: self.shipped.chain_hex(),
            updated: crate::timestamp::format_us(crate::timestamp::now_us()),
        };
        let key = layout::head_key(self.location());
        let body = serde_json::to_vec_pretty(&head).unwrap_or_default();
        let proven = std::mem::take(&mut self.lease_proven);
        self.prove_lease(proven).await?;
        let written = match &self.head {
            HeadState::Known(etag) => {
                self.objects
                    .put_if_match(&key, etag, body, Metadata::new())
                    .await?
            }
            HeadState::Absent => {
                self.objects
                    .put_if_absent(&key, body, Metadata::new())
                    .await?
            }
            HeadState::Unknown => Conditional::Failed,
        };
        match written {
            Conditional::Written(etag) => {
                self.head = HeadState::Known(etag);
                self.head_stale = false;
                Ok(())
            }
            Conditional::Failed => {
                self.head = HeadState::Unknown;
                Err(S3Error::Request {
                    operation: "PutObject",
                    key: key.to_string(),
                    message: "head.json changed under this writer (its ETag is not the one \
                              written last); checking the prefix again"
                        .into(),
                })
            }
        }
    }

    /// Ships every pending segment (steps 1 to 3 of the module docs), stopping early if `stop`
    /// is signalled.
    pub async fn ship_round(&mut self, stop: &Stop) -> Result<ShipReport, S3Error> {
        self.check_prefix().await?;
        let mut report = ShipReport::default();
        for (segment, _) in self.pending() {
            if stop.is_set() {
                break;
            }
            match self.ship_segment(&segment).await {
                Ok(bytes) => report.bytes += bytes,
                Err(error) => {
                    // Name what was shipped before failing (best effort), then report.
                    if !error.is_fencing() {
                        let _ = self.write_head().await;
                    }
                    return Err(error);
                }
            }
            report.segments += 1;
        }
        if self.head_stale {
            self.write_head().await?;
        } else if report.segments == 0 {
            self.lease.check().await?;
        }
        report.next_offset = self.shipped.next_offset;
        Ok(report)
    }
}

/// Refuses to ship from a journal that no longer holds what its checkpoint says was shipped.
fn check_checkpoint(
    stored: &Anchor,
    recorder: &Recorder,
    location: &S3Location,
) -> Result<(), S3Error> {
    let shipped_last = stored.next_offset.saturating_sub(1);
    let reason = match recorder.journal().check_anchor(stored)? {
        AnchorCheck::Matches => return Ok(()),
        AnchorCheck::BeyondEnd { journal_next } => format!(
            "this data dir shipped offsets 0..={shipped_last} there (its checkpoint), but its \
             journal holds offsets below {journal_next} only (cut by `logbook repair --cut`?): \
             S3 holds records {journal_next}..={shipped_last} that this journal no longer has"
        ),
        AnchorCheck::Diverged { journal_chain } => format!(
            "this data dir shipped offsets 0..={shipped_last} there (its checkpoint), but its \
             record at offset {shipped_last} is no longer the one shipped (chain hash {} then, \
             {} now)",
            stored.chain_hex(),
            layout::hex(&journal_chain)
        ),
    };
    Err(S3Error::Diverged {
        location: location.clone(),
        reason,
    })
}
