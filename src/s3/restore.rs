//! Restore: `{prefix}/journal/` → a local data dir, verified end to end; and `--follow`, which
//! keeps applying segments as they are shipped (a read-only replica).
//!
//! Steps: list the segment objects (paginated), check that their offsets are contiguous from 0
//! (a gap is refused naming the objects around it), download them (at most
//! [`RestoreOptions::concurrency`] at once, written in order), verify each (footer, every
//! block's CRC, every record, the chain inside and across objects, its BLAKE3 metadata), write
//! it under `<data>/journal/` with its sealed name, then rebuild `state.sqlite` from it.
//! `--until OFFSET|TIME` stops there: the segment holding the cut is written as an unsealed
//! segment of the records up to it (their frames re-encoded with the same offsets, times and
//! chain hashes). `--with-artifacts` downloads every uploaded, undeleted artifact and checks
//! its SHA-256 against the journal.
//!
//! A follower ([`Follower`]) polls `head.json` (one GET per poll; a LIST, starting after the
//! last key it has, only when the head moved), so an idle journal costs `3600 / poll` GETs per
//! hour: 360 at the default 10 s.
//!
//! # Invariants
//!
//! - Nothing unverified is written under `journal/`, and restore writes nothing there itself:
//!   each object is verified into a [`VerifiedSegment`] and handed to the journal's
//!   [`Importer`], which checks that it continues the chain and writes it (temporary name,
//!   fsync, rename, directory fsync).
//! - The target must hold no journal; the importer holds the directory's writer lock while
//!   restore or follow runs, so no writer can open it meanwhile. A failed restore has the
//!   importer remove what it imported, so the same directory can be restored into again.

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::layout::{self, meta};
use super::{S3Error, S3Location};
use crate::journal::record::Record;
use crate::journal::segment::{Footer, VerifiedSegment, decode_footer_from_file_bytes};
use crate::journal::{Importer, Journal, JournalConfig};
use crate::projection::{Projection, STATE_FILE};
use crate::state::{ArtifactView, Until};

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

/// A segment object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// First offset.
    pub first: u64,
    /// Last offset.
    pub last: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Every segment object under the prefix after `start_after` (a key), in offset order.
pub async fn list_segments(
    client: &Client,
    location: &S3Location,
    start_after: Option<&str>,
) -> Result<Vec<Listed>, S3Error> {
    let prefix = layout::journal_prefix(location);
    let mut pages = client
        .list_objects_v2()
        .bucket(&location.bucket)
        .prefix(&prefix)
        .set_start_after(start_after.map(str::to_string))
        .into_paginator()
        .send();
    let mut listed = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| S3Error::request("ListObjectsV2", &prefix, e))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            match layout::parse_segment_key(location, key) {
                Some((first, last)) => listed.push(Listed {
                    key: key.to_string(),
                    first,
                    last,
                    size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                }),
                None => tracing::warn!(key, "not a segment object; ignored"),
            }
        }
    }
    listed.sort_by_key(|l| l.first);
    Ok(listed)
}

/// Checks that `listed` continues `expected` (the next offset) without gap or overlap; `before`
/// is the key of the object before them (`None`: they start the journal).
fn check_contiguous(
    location: &S3Location,
    listed: &[Listed],
    mut expected: u64,
    before: Option<&str>,
) -> Result<(), S3Error> {
    let mut before = before.map(str::to_string);
    for l in listed {
        if l.first != expected || l.last < l.first {
            let after = before
                .clone()
                .unwrap_or_else(|| format!("the start of {location}"));
            return Err(S3Error::Gap {
                reason: format!(
                    "the journal in S3 is not contiguous: after {after} the next offset is \
                     {expected}, but {} holds {}..={}",
                    l.key, l.first, l.last
                ),
            });
        }
        expected = l.last + 1;
        before = Some(l.key.clone());
    }
    Ok(())
}

/// A downloaded, verified segment.
struct Fetched {
    listed: Listed,
    segment: VerifiedSegment,
    /// Records up to the cut, when the segment holds it.
    cut: Option<Vec<Record>>,
}

async fn fetch(
    client: &Client,
    location: &S3Location,
    listed: Listed,
    until: Until,
) -> Result<Fetched, S3Error> {
    let key = listed.key.clone();
    let object = client
        .get_object()
        .bucket(&location.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| S3Error::request("GetObject", &key, e))?;
    let claimed = object.metadata().and_then(|m| m.get(meta::BLAKE3)).cloned();
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| S3Error::request("GetObject", &key, e))?
        .into_bytes()
        .to_vec();
    tokio::task::spawn_blocking(move || verify_object(listed, bytes, claimed, until))
        .await
        .map_err(|e| S3Error::io(PathBuf::from(&key), std::io::Error::other(e)))?
}

fn verify_object(
    listed: Listed,
    bytes: Vec<u8>,
    claimed: Option<String>,
    until: Until,
) -> Result<Fetched, S3Error> {
    let tampered = |offset: u64, reason: String| S3Error::Tampered {
        key: listed.key.clone(),
        offset,
        reason,
    };
    let actual = blake3::hash(&bytes).to_hex().to_string();
    if let Some(claimed) = &claimed
        && *claimed != actual
    {
        return Err(tampered(
            listed.first,
            format!("its BLAKE3 is {actual}, its metadata says {claimed}: the object was changed"),
        ));
    }
    let footer = decode_footer_from_file_bytes(&bytes)
        .map_err(|kind| tampered(listed.first, format!("bad footer: {kind}")))?;
    if footer.first_offset != listed.first || footer.last_offset != listed.last {
        return Err(tampered(
            listed.first,
            format!(
                "its footer holds {}..={}, its name says {}..={}",
                footer.first_offset, footer.last_offset, listed.first, listed.last
            ),
        ));
    }
    let cuts = match until {
        Until::End => false,
        Until::Offset(o) => o < footer.last_offset,
        Until::Time(t) => t < footer.last_ts,
    };
    let mut kept = Vec::new();
    let segment = VerifiedSegment::verify(bytes, |record| {
        let keep = match until {
            Until::End => false,
            Until::Offset(o) => record.offset <= o,
            Until::Time(t) => record.ts_us <= t,
        };
        if cuts && keep {
            kept.push(record.clone());
        }
    })
    .map_err(|(offset, kind)| tampered(offset, kind.to_string()))?;
    Ok(Fetched {
        listed,
        segment,
        cut: cuts.then_some(kept),
    })
}

/// Downloads one segment object and verifies it on its own (BLAKE3 metadata, footer against
/// its key, every block and record): its footer and bytes, ready for
/// [`crate::journal::segment::decode_segment`]. The caller checks that consecutive objects chain
/// (`footer.prev_hash` equals the previous `footer.last_hash`). For readers that stream a
/// prefix without restoring it (`logbook-replay ... s3://...`).
pub async fn download_segment(
    client: &Client,
    location: &S3Location,
    listed: &Listed,
) -> Result<(Footer, Vec<u8>), S3Error> {
    let fetched = fetch(client, location, listed.clone(), Until::End).await?;
    let footer = fetched.segment.footer().clone();
    Ok((footer, fetched.segment.bytes().to_vec()))
}

/// Downloads the segment object holding `first..=last` and verifies it on its own: what
/// `logbook repair --from s3://...` puts in place of a damaged local segment.
pub async fn download_verified(
    client: &Client,
    location: &S3Location,
    first: u64,
    last: u64,
) -> Result<VerifiedSegment, S3Error> {
    let listed = Listed {
        key: layout::segment_key(location, first, last),
        first,
        last,
        size: 0,
    };
    Ok(fetch(client, location, listed, Until::End).await?.segment)
}

/// Where the applied part of the journal ends: the importer knows the offset and the chain;
/// this is the last object applied (`None`: none yet) and whether a point-in-time restore
/// reached its end.
#[derive(Debug, Clone, Default)]
struct Tip {
    last_key: Option<String>,
    done: bool,
}

/// Where segments come from.
struct Source<'a> {
    client: &'a Client,
    location: &'a S3Location,
    concurrency: usize,
}

/// Downloads, verifies and imports `listed` (contiguous, continuing the importer), in order.
async fn apply(
    source: &Source<'_>,
    importer: &mut Importer,
    listed: Vec<Listed>,
    until: Until,
    tip: &mut Tip,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<(u64, u64), S3Error> {
    let (mut segments, mut bytes) = (0, 0);
    let mut stream = futures_util::stream::iter(listed)
        .map(|l| fetch(source.client, source.location, l, until))
        .buffered(source.concurrency.max(1));
    while let Some(fetched) = stream.next().await {
        let fetched = fetched?;
        let footer = fetched.segment.footer();
        if footer.prev_hash != importer.chain() {
            let after = tip
                .last_key
                .clone()
                .unwrap_or_else(|| format!("the start of {}", source.location));
            return Err(S3Error::Tampered {
                key: fetched.listed.key.clone(),
                offset: fetched.listed.first,
                reason: format!("its chain does not continue from {after}"),
            });
        }
        if let Until::Time(t) = until
            && footer.first_ts > t
        {
            tip.done = true;
            break;
        }
        match &fetched.cut {
            None => importer.import_sealed(&fetched.segment)?,
            Some(records) => {
                importer.import_tail(records)?;
                tip.done = true;
            }
        }
        tip.last_key = Some(fetched.listed.key.clone());
        segments += 1;
        bytes += fetched.listed.size;
        progress(fetched.listed.size);
        if tip.done {
            break;
        }
    }
    Ok((segments, bytes))
}

fn rebuild(data_dir: &Path, journal_dir: &Path) -> Result<Journal, S3Error> {
    let journal = Journal::open_read_only(journal_dir, JournalConfig::default())?;
    let mut projection = Projection::open(data_dir)?;
    projection.catch_up(&journal)?;
    Ok(journal)
}

/// Restores `location` into `data_dir` (see the module docs). `progress` gets the bytes of each
/// segment applied; `total` (the bytes to download) is known after listing: `on_listed`.
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
    let mut importer = Importer::open(&journal_dir, &JournalConfig::default())?;
    match restore_into(
        client,
        location,
        data_dir,
        options,
        on_listed,
        progress,
        &mut importer,
    )
    .await
    {
        Ok((report, tip)) => Ok((
            report,
            Follower {
                client: client.clone(),
                location: location.clone(),
                data_dir: data_dir.to_path_buf(),
                tip,
                concurrency: options.concurrency,
                followable: options.until == Until::End,
                importer,
            },
        )),
        Err(error) => {
            if let Err(undo) = importer.discard() {
                tracing::error!(%undo, "could not remove what the failed restore wrote");
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
    client: &Client,
    location: &S3Location,
    data_dir: &Path,
    options: &RestoreOptions,
    on_listed: &mut (dyn FnMut(u64) + Send),
    progress: &mut (dyn FnMut(u64) + Send),
    importer: &mut Importer,
) -> Result<(RestoreReport, Tip), S3Error> {
    let journal_dir = data_dir.join("journal");
    let mut listed = list_segments(client, location, None).await?;
    if listed.is_empty() {
        return Err(S3Error::Gap {
            reason: format!("{location} holds no journal segments (nothing shipped yet?)"),
        });
    }
    check_contiguous(location, &listed, 0, None)?;
    if let Until::Offset(o) = options.until {
        let end = listed.last().map_or(0, |l| l.last);
        if o > end {
            return Err(S3Error::Gap {
                reason: format!("--until {o} is beyond the last shipped offset {end}"),
            });
        }
        listed.retain(|l| l.first <= o);
    }
    on_listed(listed.iter().map(|l| l.size).sum());
    let mut tip = Tip::default();
    let source = Source {
        client,
        location,
        concurrency: options.concurrency,
    };
    let (segments, bytes) =
        apply(&source, importer, listed, options.until, &mut tip, progress).await?;
    if options.until == Until::End
        && let Some(head) = super::ship::read_head(client, location).await?
        && head.next_offset == importer.next_offset()
        && head.chain_end != layout::hex(&importer.chain())
    {
        return Err(S3Error::Tampered {
            key: location.key(layout::HEAD),
            offset: importer.next_offset().saturating_sub(1),
            reason: "its chain end differs from the last segment's".into(),
        });
    }
    let (dd, jd) = (data_dir.to_path_buf(), journal_dir.clone());
    let journal = tokio::task::spawn_blocking(move || rebuild(&dd, &jd))
        .await
        .map_err(|e| S3Error::io(data_dir, std::io::Error::other(e)))??;
    let mut report = RestoreReport {
        segments,
        bytes,
        next_offset: journal.next_offset(),
        artifacts: 0,
        last_key: tip.last_key.clone(),
    };
    if options.with_artifacts {
        let state = crate::state::state_at(&journal, Until::End)?;
        let wanted: Vec<ArtifactView> = state
            .artifacts()
            .filter(|a| a.s3_key.is_some() && a.status != crate::event::ArtifactStatus::Deleted)
            .cloned()
            .collect();
        for artifact in wanted {
            download_artifact(client, location, data_dir, &artifact).await?;
            report.artifacts += 1;
        }
    }
    drop(journal);
    Ok((report, tip))
}

/// Downloads an artifact to `<data>/artifacts/...`, streaming, and checks its SHA-256.
async fn download_artifact(
    client: &Client,
    location: &S3Location,
    data_dir: &Path,
    artifact: &ArtifactView,
) -> Result<(), S3Error> {
    let Some(key) = &artifact.s3_key else {
        return Ok(());
    };
    let dir = data_dir
        .join("artifacts")
        .join(&artifact.session_id)
        .join(&artifact.collection_id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| S3Error::io(&dir, e))?;
    let path = dir.join(&artifact.file_name);
    let tmp = dir.join(format!("{}.restore-tmp", artifact.file_name));
    let object = client
        .get_object()
        .bucket(&location.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| S3Error::request("GetObject", key, e))?;
    let mut body = object.body;
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| S3Error::io(&tmp, e))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| S3Error::request("GetObject", key, e))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| S3Error::io(&tmp, e))?;
    }
    file.sync_all().await.map_err(|e| S3Error::io(&tmp, e))?;
    let got = layout::hex(&hasher.finalize());
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

/// Keeps a restored data dir up to date with its prefix (see the module docs). Holds the
/// data dir's writer lock (through its importer) while it lives.
#[derive(Debug)]
pub struct Follower {
    client: Client,
    location: S3Location,
    data_dir: PathBuf,
    tip: Tip,
    concurrency: usize,
    followable: bool,
    importer: Importer,
}

impl Follower {
    /// Resumes following `location` into `data_dir`, a data dir an earlier restore or follower
    /// wrote (sealed segments only, or none): it continues after the last local segment.
    pub fn resume(
        client: &Client,
        location: &S3Location,
        data_dir: &Path,
        concurrency: usize,
    ) -> Result<Follower, S3Error> {
        let journal_dir = data_dir.join("journal");
        let importer =
            Importer::open(&journal_dir, &JournalConfig::default()).map_err(|e| match e {
                crate::journal::JournalError::Import(_) => S3Error::CannotFollow(format!(
                    "{} is not a follower's data dir (it has unsealed records); follow into a \
                     new directory",
                    data_dir.display()
                )),
                e => S3Error::Journal(e),
            })?;
        let tip = Tip {
            last_key: importer
                .last_segment()
                .map(|(first, last)| layout::segment_key(location, first, last)),
            done: false,
        };
        Ok(Follower {
            client: client.clone(),
            location: location.clone(),
            data_dir: data_dir.to_path_buf(),
            tip,
            concurrency,
            followable: true,
            importer,
        })
    }

    /// One past the last applied offset.
    pub fn next_offset(&self) -> u64 {
        self.importer.next_offset()
    }

    /// Polls `head.json` once; if it moved, applies the new segments and catches the projection
    /// up. The number of records applied.
    pub async fn poll(&mut self) -> Result<u64, S3Error> {
        let applied = self.poll_segments().await?;
        if applied > 0 {
            let (dd, jd) = (self.data_dir.clone(), self.data_dir.join("journal"));
            tokio::task::spawn_blocking(move || rebuild(&dd, &jd).map(drop))
                .await
                .map_err(|e| S3Error::io(&self.data_dir, std::io::Error::other(e)))??;
        }
        Ok(applied)
    }

    /// Like [`Follower::poll`], but leaves `state.sqlite` to the caller: for a process that
    /// serves the replica and catches its own projection up (`serve --follow`).
    pub async fn poll_segments(&mut self) -> Result<u64, S3Error> {
        if !self.followable {
            return Err(S3Error::CannotFollow(
                "a point-in-time restore (--until) cannot follow".into(),
            ));
        }
        let Some(head) = super::ship::read_head(&self.client, &self.location).await? else {
            return Ok(0);
        };
        let before = self.importer.next_offset();
        if head.next_offset <= before {
            return Ok(0);
        }
        let listed =
            list_segments(&self.client, &self.location, self.tip.last_key.as_deref()).await?;
        check_contiguous(
            &self.location,
            &listed,
            before,
            self.tip.last_key.as_deref(),
        )?;
        let source = Source {
            client: &self.client,
            location: &self.location,
            concurrency: self.concurrency,
        };
        apply(
            &source,
            &mut self.importer,
            listed,
            Until::End,
            &mut self.tip,
            &mut |_| {},
        )
        .await?;
        Ok(self.importer.next_offset() - before)
    }
}
