//! [`Follower`]: keeps a restored data dir up to date with its prefix (`restore --follow`,
//! `serve --follow`): a read-only replica.
//!
//! A poll GETs `head.json` (one request); only when the head moved past the local end does it
//! LIST, starting after the last segment imported, and run the new objects through restore's
//! pipeline ([`super::restore`]: download, verify and import concurrently). An idle journal costs
//! `3600 / poll` GETs per hour: 360 at the default 10 s.
//!
//! Invariants: the follower holds the data dir's writer lock (through its [`Importer`]) while
//! it lives; what it imports continues the local journal exactly (offset and chain) and comes
//! from one writer; where it resumes is the importer's own end (the last local segment), never
//! a remembered label.

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;

use super::layout;
use super::objects::Objects;
use super::restore::{Pipeline, Tip, rebuild_views};
use super::segments::{self, Writers};
use super::{S3Error, S3Location};
use crate::journal::{Importer, JournalConfig};
use crate::state::Until;

/// See the module docs.
#[derive(Debug)]
pub struct Follower {
    objects: Objects,
    data_dir: PathBuf,
    /// `None` only if an import stage died (then every poll fails).
    importer: Option<Importer>,
    concurrency: usize,
    followable: bool,
    writers: Writers,
}

impl Follower {
    /// A follower of `objects`' prefix into `data_dir`, continuing `importer` (whose segments
    /// came from `writers`); `followable` is false after a point-in-time restore.
    pub(super) fn new(
        objects: Objects,
        data_dir: &Path,
        importer: Importer,
        writers: Writers,
        concurrency: usize,
        followable: bool,
    ) -> Follower {
        Follower {
            objects,
            data_dir: data_dir.to_path_buf(),
            importer: Some(importer),
            concurrency,
            followable,
            writers,
        }
    }

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
        Ok(Follower::new(
            Objects::new(client.clone(), location.clone()),
            data_dir,
            importer,
            Writers::default(),
            concurrency,
            true,
        ))
    }

    fn importer(&self) -> Result<&Importer, S3Error> {
        self.importer.as_ref().ok_or_else(|| {
            S3Error::CannotFollow("the follower's import stage failed earlier".into())
        })
    }

    /// One past the last applied offset.
    pub fn next_offset(&self) -> u64 {
        self.importer.as_ref().map_or(0, Importer::next_offset)
    }

    /// Polls `head.json` once; if it moved, applies the new segments and catches the projection
    /// up. The number of records applied.
    pub async fn poll(&mut self) -> Result<u64, S3Error> {
        let applied = self.poll_segments().await?;
        if applied > 0 {
            rebuild_views(&self.data_dir).await?;
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
        let Some((head, _)) = super::prefix::read_head(&self.objects).await? else {
            return Ok(0);
        };
        let importer = self.importer()?;
        let before = importer.next_offset();
        if head.next_offset <= before {
            return Ok(0);
        }
        let location = self.objects.location().clone();
        let after = importer
            .last_segment()
            .map(|(first, last)| layout::segment_key(&location, first, last));
        let listed = segments::list(&self.objects, after.as_ref()).await?;
        segments::check_contiguous(&location, &listed, before, after.as_ref())?;
        let mut tip = Tip {
            last_key: after,
            done: false,
        };
        let importer = self.importer.take().ok_or_else(|| {
            S3Error::CannotFollow("the follower's import stage failed earlier".into())
        })?;
        let pipeline = Pipeline {
            objects: &self.objects,
            until: Until::End,
            concurrency: self.concurrency,
        };
        let (importer, applied) = pipeline
            .apply(importer, listed, &mut tip, &mut self.writers, &mut |_| {})
            .await?;
        let after = importer.next_offset();
        self.importer = Some(importer);
        applied?;
        Ok(after - before)
    }
}
