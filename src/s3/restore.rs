//! Restore: `{prefix}/journal/` → a local data dir, verified end to end, then the views rebuilt.
//!
//! Steps: list the segment objects (paginated), check that their offsets are contiguous from 0
//! (a gap is refused naming the objects around it), then a pipeline of three stages that run
//! at once:
//! 1. downloads, [`RestoreOptions::concurrency`] objects in flight (each its own task, so they
//!    progress while the stages behind them work);
//! 2. verification of each object on the blocking pool as it arrives ([`segments::fetch`]:
//!    BLAKE3, footer, every block and record, the chain inside it), in parallel across objects;
//! 3. in offset order: the chain across objects and the single writer id are checked, and the
//!    segment is handed to the journal's [`Importer`] on its own blocking thread (temporary
//!    file, fsync, rename, directory fsync), through a queue of [`IMPORT_QUEUE`] segments.
//!
//! So the restore takes about as long as its slowest stage instead of their sum, and memory is
//! bounded by `concurrency + IMPORT_QUEUE + 1` segments. `--until OFFSET|TIME` stops there: the
//! segment holding the cut is imported as an unsealed segment of the records up to it.
//! `--with-artifacts` downloads every uploaded, undeleted artifact and checks its SHA-256
//! against the journal.
//!
//! # Invariants
//!
//! - Nothing unverified is written under `journal/`, and restore writes nothing there itself:
//!   only [`VerifiedSegment`]s reach the [`Importer`], which checks that each continues the
//!   chain and writes it.
//! - One writer: a prefix whose segment objects (or head) carry two writer ids is refused,
//!   naming both ([`S3Error::MixedWriters`]).
//! - The target must hold no journal; the importer holds the directory's writer lock while
//!   restore or follow runs, so no writer can open it meanwhile. A failed restore has the
//!   importer remove what it imported, so the same directory can be restored into again.
//!
//! [`VerifiedSegment`]: crate::journal::segment::VerifiedSegment

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::follow::Follower;
use super::layout::{self, Key};
use super::objects::Objects;
use super::segments::{self, Fetched, Listed, Writers};
use super::{S3Error, S3Location};
use crate::journal::{Importer, Journal, JournalConfig};
use crate::projection::{Projection, STATE_FILE};
use crate::state::{ArtifactView, Until};

/// Verified segments waiting for the importer, at most.
pub const IMPORT_QUEUE: usize = 2;

/// What to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Restore up to here (point in time); [`Until::End`] for everything shipped.
    pub until: Until,
    /// Download artifact files too (SHA-256 checked).
    pub with_artifacts: bool,
    /// Segment downloads in flight at once (default 4).
    pub concurrency: usize,
}

impl Default for RestoreOptions {
    fn default() -> RestoreOptions {
        RestoreOptions {
            until: Until::End,
            with_artifacts: false,
            concurrency: 4,
        }
    }
}

/// What a restore did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// Segment objects downloaded and verified.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Records in the restored journal (its next offset).
    pub next_offset: u64,
    /// Artifact files downloaded.
    pub artifacts: u64,
    /// The last segment object applied.
    pub last_key: Option<String>,
}

/// How far a pipeline got: the last object applied, and whether a point-in-time restore
/// reached its end.
#[derive(Debug, Clone, Default)]
pub(super) struct Tip {
    pub(super) last_key: Option<Key>,
    pub(super) done: bool,
}

/// What the import stage is given.
enum Job {
    /// A whole verified segment.
    Sealed(Box<Fetched>),
    /// The records of a point-in-time restore's last segment, up to the cut.
    Tail(Box<Fetched>),
}

/// A download task, aborted if dropped before it finished (a failure or a cut ends the
/// pipeline early: the objects beyond are not wanted).
struct Download(tokio::task::JoinHandle<Result<Fetched, S3Error>>);

impl std::future::Future for Download {
    type Output = Result<Result<Fetched, S3Error>, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a pipeline reads from and how: the objects, the point-in-time end, the downloads in
/// flight.
pub(super) struct Pipeline<'a> {
    pub(super) objects: &'a Objects,
    pub(super) until: Until,
    pub(super) concurrency: usize,
}

impl Pipeline<'_> {
    /// Downloads, verifies and imports `listed` (contiguous, continuing `importer`) in order,
    /// concurrently (see the module docs). Gives the importer back with the outcome; an outer
    /// error means the import stage died and the importer with it.
    pub(super) async fn apply(
        &self,
        importer: Importer,
        listed: Vec<Listed>,
        tip: &mut Tip,
        writers: &mut Writers,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(Importer, Result<(u64, u64), S3Error>), S3Error> {
        let (objects, until) = (self.objects, self.until);
        let dir = importer.dir().to_path_buf();
        let mut chain = importer.chain();
        let (jobs, mut queued) = tokio::sync::mpsc::channel::<Job>(IMPORT_QUEUE);
        let (imported_tx, mut imported) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let import = tokio::task::spawn_blocking(move || {
            let mut importer = importer;
            let mut outcome = Ok(());
            while let Some(job) = queued.blocking_recv() {
                let (done, size) = match &job {
                    Job::Sealed(f) => (importer.import_sealed(&f.segment), f.listed.size),
                    Job::Tail(f) => (
                        importer.import_tail(f.cut.as_deref().unwrap_or_default()),
                        f.listed.size,
                    ),
                };
                if let Err(error) = done {
                    outcome = Err(S3Error::from(error));
                    break;
                }
                let _ = imported_tx.send(size);
            }
            (importer, outcome)
        });
        let mut downloads = futures_util::stream::iter(listed)
            .map(|l| {
                let objects = objects.clone();
                Download(tokio::spawn(async move {
                    segments::fetch(&objects, l, until).await
                }))
            })
            .buffered(self.concurrency.max(1));
        let (mut segments, mut bytes) = (0, 0);
        let mut sent = Ok(());
        while let Some(fetched) = downloads.next().await {
            let fetched = match fetched {
                Ok(Ok(fetched)) => fetched,
                Ok(Err(error)) => {
                    sent = Err(error);
                    break;
                }
                Err(join) => {
                    sent = Err(S3Error::io(&dir, std::io::Error::other(join)));
                    break;
                }
            };
            if let Err(error) = writers.note(fetched.writer_id.as_deref(), &fetched.listed.key) {
                sent = Err(error);
                break;
            }
            let footer = fetched.segment.footer();
            if footer.prev_hash != chain {
                let after = tip.last_key.as_ref().map_or_else(
                    || format!("the start of {}", objects.location()),
                    Key::to_string,
                );
                sent = Err(S3Error::Tampered {
                    key: fetched.listed.key.to_string(),
                    offset: fetched.listed.first,
                    reason: format!("its chain does not continue from {after}"),
                });
                break;
            }
            if let Until::Time(t) = until
                && footer.first_ts > t
            {
                tip.done = true;
                break;
            }
            chain = footer.last_hash;
            let key = fetched.listed.key.clone();
            let size = fetched.listed.size;
            let cut = fetched.cut.is_some();
            let job = if cut {
                Job::Tail(Box::new(fetched))
            } else {
                Job::Sealed(Box::new(fetched))
            };
            if jobs.send(job).await.is_err() {
                break; // the import stage failed: its error is collected below
            }
            tip.last_key = Some(key);
            segments += 1;
            bytes += size;
            while let Ok(size) = imported.try_recv() {
                progress(size);
            }
            if cut {
                tip.done = true;
                break;
            }
        }
        drop(downloads); // aborts downloads beyond a failure or a cut
        drop(jobs);
        while let Some(size) = imported.recv().await {
            progress(size);
        }
        let (importer, imported) = import
            .await
            .map_err(|e| S3Error::io(&dir, std::io::Error::other(e)))?;
        Ok((importer, imported.and(sent).map(|()| (segments, bytes))))
    }
}

fn rebuild(data_dir: &Path, journal_dir: &Path) -> Result<Journal, S3Error> {
    let journal = Journal::open_read_only(journal_dir, JournalConfig::default())?;
    let mut projection = Projection::open(data_dir)?;
    projection.catch_up(&journal)?;
    Ok(journal)
}

/// Opens the journal just written and rebuilds `state.sqlite` from it, off the runtime.
pub(super) async fn rebuild_views(data_dir: &Path) -> Result<Journal, S3Error> {
    let (dd, jd) = (data_dir.to_path_buf(), data_dir.join("journal"));
    tokio::task::spawn_blocking(move || rebuild(&dd, &jd))
        .await
        .map_err(|e| S3Error::io(data_dir, std::io::Error::other(e)))?
}

/// Restores `location` into `data_dir` (see the module docs). `progress` gets the bytes of each
/// segment written; `total` (the bytes to download) is known after listing: `on_listed`.
pub async fn restore(
    client: &Client,
    location: &S3Location,
    data_dir: &Path,
    options: &RestoreOptions,
    on_listed: &mut (dyn FnMut(u64) + Send),
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<(RestoreReport, Follower), S3Error> {
    let journal_dir = data_dir.join("journal");
    // The lock file alone (left by an earlier failed restore) does not make it occupied.
    let occupied = std::fs::read_dir(&journal_dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name() != crate::journal::lock::LOCK_FILE)
    }) || data_dir.join(STATE_FILE).exists();
    if occupied {
        return Err(S3Error::NotEmpty(data_dir.to_path_buf()));
    }
    let had_artifacts = data_dir.join("artifacts").exists();
    let objects = Objects::new(client.clone(), location.clone());
    let importer = Importer::open(&journal_dir, &JournalConfig::default())?;
    let (importer, restored) =
        restore_into(&objects, data_dir, options, on_listed, progress, importer).await?;
    match restored {
        Ok((report, writers)) => Ok((
            report,
            Follower::new(
                objects,
                data_dir,
                importer,
                writers,
                options.concurrency,
                options.until == Until::End,
            ),
        )),
        Err(error) => {
            if let Err(undo) = importer.discard() {
                crate::journal::quietly(|| {
                    tracing::error!(%undo, "could not remove what the failed restore wrote");
                });
            }
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(data_dir.join(format!("{STATE_FILE}{suffix}")));
            }
            if !had_artifacts {
                let _ = std::fs::remove_dir_all(data_dir.join("artifacts"));
            }
            Err(error)
        }
    }
}

/// [`restore`] once the target is checked and the importer holds it.
async fn restore_into(
    objects: &Objects,
    data_dir: &Path,
    options: &RestoreOptions,
    on_listed: &mut (dyn FnMut(u64) + Send),
    progress: &mut (dyn FnMut(u64) + Send),
    importer: Importer,
) -> Result<(Importer, Result<(RestoreReport, Writers), S3Error>), S3Error> {
    let location = objects.location();
    let mut listed = match segments::list(objects, None).await {
        Ok(listed) => listed,
        Err(error) => return Ok((importer, Err(error))),
    };
    let checked = if listed.is_empty() {
        Err(S3Error::Gap {
            reason: format!("{location} holds no journal segments (nothing shipped yet?)"),
        })
    } else {
        segments::check_contiguous(location, &listed, 0, None)
    };
    if let Err(error) = checked {
        return Ok((importer, Err(error)));
    }
    if let Until::Offset(o) = options.until {
        let end = listed.last().map_or(0, |l| l.last);
        if o > end {
            let reason = format!("--until {o} is beyond the last shipped offset {end}");
            return Ok((importer, Err(S3Error::Gap { reason })));
        }
        listed.retain(|l| l.first <= o);
    }
    on_listed(listed.iter().map(|l| l.size).sum());
    let mut tip = Tip::default();
    let mut writers = Writers::default();
    let pipeline = Pipeline {
        objects,
        until: options.until,
        concurrency: options.concurrency,
    };
    let (importer, applied) = pipeline
        .apply(importer, listed, &mut tip, &mut writers, progress)
        .await?;
    let next_offset = importer.next_offset();
    let chain = importer.chain();
    let finished = async {
        let (segments, bytes) = applied?;
        if options.until == Until::End
            && let Some(head) = super::prefix::read_head(objects).await?.map(|(h, _)| h)
        {
            if let Some(writer) = writers.writer_id()
                && head.writer_id != writer
            {
                return Err(S3Error::MixedWriters {
                    first: writer.to_string(),
                    first_key: tip
                        .last_key
                        .as_ref()
                        .map_or_else(String::new, Key::to_string),
                    other: head.writer_id,
                    other_key: layout::head_key(location).to_string(),
                });
            }
            if head.next_offset == next_offset && head.chain_end != layout::hex(&chain) {
                return Err(S3Error::Tampered {
                    key: layout::head_key(location).to_string(),
                    offset: next_offset.saturating_sub(1),
                    reason: "its chain end differs from the last segment's".into(),
                });
            }
        }
        let journal = rebuild_views(data_dir).await?;
        let mut report = RestoreReport {
            segments,
            bytes,
            next_offset: journal.next_offset(),
            artifacts: 0,
            last_key: tip.last_key.as_ref().map(Key::to_string),
        };
        if options.with_artifacts {
            let state = crate::state::state_at(&journal, Until::End)?;
            let wanted: Vec<ArtifactView> = state
                .artifacts()
                .filter(|a| a.s3_key.is_some() && a.status != crate::event::ArtifactStatus::Deleted)
                .cloned()
                .collect();
            for artifact in wanted {
                download_artifact(objects, data_dir, &artifact).await?;
                report.artifacts += 1;
            }
        }
        Ok(report)
    }
    .await;
    Ok((importer, finished.map(|report| (report, writers))))
}

/// Downloads an artifact to `<data>/artifacts/...`, streaming, and checks its SHA-256.
async fn download_artifact(
    objects: &Objects,
    data_dir: &Path,
    artifact: &ArtifactView,
) -> Result<(), S3Error> {
    let Some(recorded) = &artifact.s3_key else {
        return Ok(());
    };
    let key = layout::recorded_artifact_key(objects.location(), recorded).ok_or_else(|| {
        S3Error::Artifact {
            artifact_id: artifact.artifact_id.clone(),
            reason: format!(
                "it was uploaded as {recorded}, not under {}",
                objects.location()
            ),
        }
    })?;
    let dir = data_dir
        .join("artifacts")
        .join(&artifact.session_id)
        .join(&artifact.collection_id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| S3Error::io(&dir, e))?;
    let path = dir.join(&artifact.file_name);
    let tmp: PathBuf = dir.join(format!("{}.restore-tmp", artifact.file_name));
    let object = objects.get_stream(&key).await?;
    let limit = objects.body_limit(object.size);
    let written = tokio::time::timeout(limit, async {
        let mut body = object.body;
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| S3Error::io(&tmp, e))?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| S3Error::request("GetObject", key.as_str(), e))?
        {
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| S3Error::io(&tmp, e))?;
        }
        file.sync_all().await.map_err(|e| S3Error::io(&tmp, e))?;
        Ok::<_, S3Error>(layout::hex(&hasher.finalize()))
    })
    .await
    .unwrap_or_else(|_| {
        Err(S3Error::Request {
            operation: "GetObject",
            key: key.to_string(),
            message: format!("the body did not arrive within {limit:?}"),
        })
    });
    let got = match written {
        Ok(got) => got,
        Err(error) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(error);
        }
    };
    if got != artifact.sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(S3Error::Artifact {
            artifact_id: artifact.artifact_id.clone(),
            reason: format!(
                "{key} has SHA-256 {got}, the journal recorded {}",
                artifact.sha256
            ),
        });
    }
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| S3Error::io(&path, e))?;
    Ok(())
}

/// Downloads the segment object holding `first..=last` of `location` and verifies it on its
/// own: what `logbook repair --from s3://...` puts in place of a damaged local segment.
pub async fn download_verified(
    client: &Client,
    location: &S3Location,
    first: u64,
    last: u64,
) -> Result<crate::journal::segment::VerifiedSegment, S3Error> {
    segments::download_verified(&Objects::new(client.clone(), location.clone()), first, last).await
}
