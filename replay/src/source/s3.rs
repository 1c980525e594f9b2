//! The S3 backend: `s3://bucket/prefix` as the shipper writes it (`{prefix}/journal/` holds one
//! immutable object per sealed segment), read without restoring anything to disk.
//!
//! Opening lists the segment objects and checks they are contiguous from offset 0 (a gap is
//! damage, exit 1). A scan downloads only the objects whose offsets (from their names) overlap
//! the range, [`PREFETCH`] ahead of the decoder on a small tokio runtime, so at most that many
//! objects (plus the one being decoded) are in memory. Time-bounded ranges cannot be resolved
//! from names: objects are then fetched in order and skipped by their footers' times, and the
//! scan stops at the first object that starts after the range. Each object is verified on its
//! own by `logbook::s3::segments::download` (BLAKE3 metadata, footer against its key, every
//! block and record) before its blocks reach the scanner. Every request goes through
//! `logbook::s3::Objects`, the library's one object client (its timeouts included). AWS settings
//! come from the standard chain (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials).

use std::collections::VecDeque;
use std::sync::Arc;

use logbook::journal::record::GENESIS_HASH;
use logbook::journal::segment::Footer;
use logbook::s3::segments::{self, Listed};
use logbook::s3::{Objects, S3Error, S3Location};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::{
    Chunk, SealedChunk, SegmentBytes, VerifyOutcome, after_range, before_range, select_blocks,
};
use crate::error::{ReplayError, Result};
use crate::point::{Point, Range};

/// A download in flight.
type Download = JoinHandle<Result<(Footer, Vec<u8>), S3Error>>;

/// Objects downloaded ahead of the one being decoded.
pub const PREFETCH: usize = 2;

/// An S3 prefix's journal.
#[derive(Debug)]
pub struct S3Source {
    rt: Runtime,
    objects: Objects,
    listed: Vec<Listed>,
}

impl S3Source {
    /// Lists `s3://bucket/prefix/journal/` and checks the objects are contiguous from 0.
    pub fn open(url: &str) -> Result<S3Source> {
        let location: S3Location = url.parse().map_err(ReplayError::from)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ReplayError::Worker(format!("starting the S3 runtime: {e}")))?;
        let sdk = rt.block_on(logbook::aws::load_sdk_config());
        let objects = Objects::new(logbook::s3::client(&sdk), location.clone());
        let listed = rt.block_on(segments::list(&objects, None))?;
        if listed.is_empty() {
            return Err(ReplayError::BadInput(format!(
                "no journal segments under {location}/journal/"
            )));
        }
        segments::check_contiguous(&location, &listed, 0, None)?;
        Ok(S3Source {
            rt,
            objects,
            listed,
        })
    }

    /// The location read.
    pub fn location(&self) -> &S3Location {
        self.objects.location()
    }

    pub(super) fn end(&self) -> u64 {
        self.listed.last().map_or(0, |l| l.last + 1)
    }

    fn spawn(&self, listed: Listed) -> Download {
        let objects = self.objects.clone();
        self.rt
            .spawn(async move { segments::download(&objects, &listed).await })
    }

    fn wait(&self, handle: Download) -> Result<(Footer, Vec<u8>)> {
        match self.rt.block_on(handle) {
            Ok(result) => result.map_err(ReplayError::from),
            Err(e) => Err(ReplayError::Worker(e.to_string())),
        }
    }

    pub(super) fn chunks<'a>(
        &'a self,
        range: &Range,
    ) -> Result<Box<dyn Iterator<Item = Result<Chunk>> + 'a>> {
        let first = range.first_offset();
        let queue: VecDeque<Listed> = self
            .listed
            .iter()
            .filter(|l| l.last >= first)
            .take_while(|l| match range.until {
                Some(Point::Offset(o)) => l.first <= o,
                _ => true,
            })
            .cloned()
            .collect();
        Ok(Box::new(S3Chunks {
            source: self,
            range: *range,
            queue,
            pending: VecDeque::new(),
            done: false,
        }))
    }

    pub(super) fn verify(&self) -> Result<VerifyOutcome> {
        let mut outcome = VerifyOutcome {
            records: 0,
            head_hash: GENESIS_HASH,
            damage: None,
        };
        let mut queue: VecDeque<Listed> = self.listed.iter().cloned().collect();
        let mut pending = VecDeque::new();
        let mut before = "the start".to_string();
        loop {
            while pending.len() <= PREFETCH
                && let Some(next) = queue.pop_front()
            {
                pending.push_back((next.clone(), self.spawn(next)));
            }
            let Some((listed, handle)) = pending.pop_front() else {
                return Ok(outcome);
            };
            let footer = match self.wait(handle) {
                Ok((footer, _)) => footer,
                Err(ReplayError::Damaged(why)) => {
                    outcome.damage = Some(why);
                    return Ok(outcome);
                }
                Err(other) => return Err(other),
            };
            if footer.prev_hash != outcome.head_hash {
                outcome.damage = Some(format!(
                    "{}: its chain does not continue from {before} (at offset {})",
                    listed.key, listed.first
                ));
                return Ok(outcome);
            }
            outcome.records += footer.count;
            outcome.head_hash = footer.last_hash;
            before = listed.key.to_string();
        }
    }
}

/// The chunk iterator of an S3 scan (see the module docs).
struct S3Chunks<'a> {
    source: &'a S3Source,
    range: Range,
    queue: VecDeque<Listed>,
    pending: VecDeque<(Listed, Download)>,
    done: bool,
}

impl Iterator for S3Chunks<'_> {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        // Bounded: each turn consumes one listed object.
        while !self.done {
            while self.pending.len() <= PREFETCH
                && let Some(next) = self.queue.pop_front()
            {
                let handle = self.source.spawn(next.clone());
                self.pending.push_back((next, handle));
            }
            let (listed, handle) = self.pending.pop_front()?;
            let (footer, bytes) = match self.source.wait(handle) {
                Ok(fetched) => fetched,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if after_range(&footer, &self.range) {
                self.done = true;
                break;
            }
            if before_range(&footer, &self.range) {
                continue;
            }
            let blocks = select_blocks(&footer, &self.range);
            return Some(Ok(Chunk::Sealed(SealedChunk {
                name: Arc::from(listed.key.as_str()),
                footer: Arc::new(footer),
                bytes: SegmentBytes::Memory(Arc::new(bytes)),
                blocks,
            })));
        }
        for (_, handle) in self.pending.drain(..) {
            handle.abort();
        }
        None
    }
}
