//! The scanner: every record of a range, verified, mapped and handed over in offset order,
//! decoding on several threads when asked.
//!
//! A *job* is one sealed block (its compressed bytes read, decompressed, every record checked
//! against the chain from the footer's hash before the block) or a batch of up to
//! [`TAIL_BATCH`] records already read from the unsealed tail. The calling thread plans jobs
//! lazily from the source's chunks, `threads` workers decode them and apply `map` (e.g. parse
//! the typed event, or format an export line), and the calling thread hands the results to
//! `consume` strictly in job order (a reorder buffer keyed by job number).
//!
//! Invariants: at most [`Scanner::window`] jobs are in flight (planned but not yet consumed),
//! so memory is bounded by a few blocks whatever the journal's size (streaming commands run in
//! constant memory); records reach `consume` in offset order, each once, only after their block
//! verified; consecutive sealed chunks must chain (`prev_hash` = previous `last_hash`) or the
//! scan fails with damage; the scan stops at the first record past the range's end, and an
//! error (damage, I/O) is returned at its place in the order, never skipped. With
//! `threads <= 1` the same jobs run inline on the calling thread (the single-threaded baseline).

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use logbook::journal::Record;
use logbook::journal::segment::{BlockEntry, decode_block, decompress_block};

use crate::error::{ReplayError, Result};
use crate::point::Range;
use crate::source::{Chunk, SegmentBytes, Source};

/// Records per job read from the unsealed tail.
pub const TAIL_BATCH: usize = 4096;

/// What `consume` wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Stop the scan now.
    Stop,
}

/// How a scan runs.
#[derive(Debug, Clone, Copy)]
pub struct Scanner {
    /// Decoding threads; 0 or 1 decodes on the calling thread.
    pub threads: usize,
}

impl Default for Scanner {
    /// One decoding thread per available core.
    fn default() -> Scanner {
        Scanner {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// A unit of decoding work.
enum Job {
    Block {
        name: Arc<str>,
        bytes: SegmentBytes,
        entry: BlockEntry,
        prev_hash: [u8; 32],
    },
    Records(Vec<Record>),
}

/// A job's output: mapped records, and whether the range's end was reached in it.
struct Done<T> {
    items: Vec<T>,
    reached_end: bool,
}

impl Scanner {
    /// Jobs in flight at most.
    pub fn window(&self) -> usize {
        2 * self.threads.max(1) + 2
    }

    /// Scans `range` of `source` (see the module docs).
    pub fn scan<T: Send>(
        &self,
        source: &Source,
        range: &Range,
        map: &(dyn Fn(Record) -> T + Sync),
        consume: &mut dyn FnMut(T) -> Result<Flow>,
    ) -> Result<()> {
        let mut planner = Planner {
            chunks: source.chunks(range)?,
            current: None,
            last_sealed: None,
            done: false,
        };
        if self.threads <= 1 {
            while let Some(job) = planner.next_job() {
                let done = run(job?, range, map)?;
                if deliver(done, consume)? == Flow::Stop {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let window = self.window();
        std::thread::scope(|scope| {
            let (job_tx, job_rx) = sync_channel::<(u64, Job)>(window);
            let (done_tx, done_rx) = sync_channel::<(u64, Result<Done<T>>)>(window);
            let job_rx = Arc::new(Mutex::new(job_rx));
            for _ in 0..self.threads {
                let job_rx = job_rx.clone();
                let done_tx = done_tx.clone();
                scope.spawn(move || worker(&job_rx, &done_tx, range, map));
            }
            drop(done_tx);
            let result = conduct(&mut planner, window, job_tx, &done_rx, consume);
            // Dropping the receiver releases workers blocked on sending; the job sender was
            // dropped by `conduct`, which ends their loops.
            drop(done_rx);
            result
        })
    }
}

/// The calling thread's loop: plan jobs up to the window, consume results in order.
fn conduct<T>(
    planner: &mut Planner<'_>,
    window: usize,
    job_tx: SyncSender<(u64, Job)>,
    done_rx: &Receiver<(u64, Result<Done<T>>)>,
    consume: &mut dyn FnMut(T) -> Result<Flow>,
) -> Result<()> {
    let mut next_seq = 0u64; // next job to plan
    let mut next_out = 0u64; // next job to consume
    let mut ready: BTreeMap<u64, Result<Done<T>>> = BTreeMap::new();
    let mut planned_all = false;
    let mut job_tx = Some(job_tx);
    loop {
        while !planned_all && next_seq - next_out < window as u64 {
            match planner.next_job() {
                Some(Ok(job)) => {
                    let sent = job_tx
                        .as_ref()
                        .is_some_and(|tx| tx.send((next_seq, job)).is_ok());
                    if !sent {
                        return Err(ReplayError::Worker("decoder threads stopped".into()));
                    }
                    next_seq += 1;
                }
                Some(Err(e)) => {
                    // Reported in order, after everything planned before it.
                    ready.insert(next_seq, Err(e));
                    next_seq += 1;
                    planned_all = true;
                    job_tx = None;
                }
                None => {
                    planned_all = true;
                    job_tx = None; // workers finish what is queued, then stop
                }
            }
        }
        if next_out == next_seq {
            return Ok(());
        }
        while let Some(done) = ready.remove(&next_out) {
            next_out += 1;
            if deliver(done?, consume)? == Flow::Stop {
                return Ok(());
            }
        }
        if next_out == next_seq {
            continue;
        }
        let (seq, done) = done_rx
            .recv()
            .map_err(|_| ReplayError::Worker("decoder threads stopped".into()))?;
        ready.insert(seq, done);
    }
}

fn deliver<T>(done: Done<T>, consume: &mut dyn FnMut(T) -> Result<Flow>) -> Result<Flow> {
    for item in done.items {
        if consume(item)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(match done.reached_end {
        true => Flow::Stop,
        false => Flow::Continue,
    })
}

fn worker<T>(
    jobs: &Mutex<Receiver<(u64, Job)>>,
    done: &SyncSender<(u64, Result<Done<T>>)>,
    range: &Range,
    map: &(dyn Fn(Record) -> T + Sync),
) {
    loop {
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((seq, job)) = next else { return };
        if done.send((seq, run(job, range, map))).is_err() {
            return;
        }
    }
}

/// Decodes one job and maps the records inside the range.
fn run<T>(job: Job, range: &Range, map: &(dyn Fn(Record) -> T + Sync)) -> Result<Done<T>> {
    let records = match job {
        Job::Block {
            name,
            bytes,
            entry,
            prev_hash,
        } => {
            let compressed = bytes.block(&entry, &name)?;
            let raw = decompress_block(&compressed, &entry).map_err(|kind| {
                ReplayError::Damaged(format!(
                    "{name}: block at offset {}: {kind}",
                    entry.first_offset
                ))
            })?;
            decode_block(&raw, &entry, &prev_hash).map_err(|(offset, kind)| {
                ReplayError::Damaged(format!("{name}: offset {offset}: {kind}"))
            })?
        }
        Job::Records(records) => records,
    };
    let mut items = Vec::with_capacity(records.len());
    let mut reached_end = false;
    for record in records {
        if range.before_start(record.offset, record.ts_us) {
            continue;
        }
        if range.past_end(record.offset, record.ts_us) {
            reached_end = true;
            break;
        }
        items.push(map(record));
    }
    Ok(Done { items, reached_end })
}

/// Turns chunks into jobs, lazily.
struct Planner<'a> {
    chunks: Box<dyn Iterator<Item = Result<Chunk>> + 'a>,
    current: Option<Current>,
    /// Last offset and hash of the previous sealed chunk, for the chain check.
    last_sealed: Option<(u64, [u8; 32], Arc<str>)>,
    done: bool,
}

enum Current {
    Sealed {
        chunk: crate::source::SealedChunk,
        next_block: usize,
    },
    Tail(Box<logbook::journal::Reader>),
}

impl Planner<'_> {
    fn next_job(&mut self) -> Option<Result<Job>> {
        // Bounded: each turn either returns a job or consumes a chunk.
        while !self.done {
            match self.current.take() {
                None => match self.chunks.next() {
                    None => self.done = true,
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    Some(Ok(Chunk::Sealed(chunk))) => {
                        if let Err(e) = self.check_chain(&chunk) {
                            self.done = true;
                            return Some(Err(e));
                        }
                        let next_block = chunk.blocks.start;
                        self.current = Some(Current::Sealed { chunk, next_block });
                    }
                    Some(Ok(Chunk::Tail(reader))) => self.current = Some(Current::Tail(reader)),
                },
                Some(Current::Sealed { chunk, next_block }) => {
                    if next_block >= chunk.blocks.end {
                        continue;
                    }
                    let Some(entry) = chunk.footer.blocks.get(next_block).cloned() else {
                        continue;
                    };
                    let job = Job::Block {
                        name: chunk.name.clone(),
                        bytes: chunk.bytes.clone(),
                        prev_hash: chunk.footer.prev_hash_of_block(next_block),
                        entry,
                    };
                    self.current = Some(Current::Sealed {
                        chunk,
                        next_block: next_block + 1,
                    });
                    return Some(Ok(job));
                }
                Some(Current::Tail(mut reader)) => {
                    let mut batch = Vec::with_capacity(TAIL_BATCH);
                    while batch.len() < TAIL_BATCH {
                        match reader.next() {
                            Ok(Some(record)) => batch.push(record),
                            Ok(None) => break,
                            Err(e) => {
                                self.done = true;
                                return Some(Err(e.into()));
                            }
                        }
                    }
                    if batch.len() == TAIL_BATCH {
                        self.current = Some(Current::Tail(reader));
                    }
                    if !batch.is_empty() {
                        return Some(Ok(Job::Records(batch)));
                    }
                }
            }
        }
        None
    }

    fn check_chain(&mut self, chunk: &crate::source::SealedChunk) -> Result<()> {
        let footer = &chunk.footer;
        if let Some((last, hash, name)) = &self.last_sealed
            && footer.first_offset == last + 1
            && footer.prev_hash != *hash
        {
            return Err(ReplayError::Damaged(format!(
                "{}: its chain does not continue from {name} (at offset {})",
                chunk.name, footer.first_offset
            )));
        }
        self.last_sealed = Some((footer.last_offset, footer.last_hash, chunk.name.clone()));
        Ok(())
    }
}
