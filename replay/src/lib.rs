//! `logbook-replay`: post-mortem analysis of a Logbook journal, straight from a data directory
//! or from the S3 prefix it was shipped to (DESIGN §8).
//!
//! | module | role |
//! |---|---|
//! | [`source`] | where records come from: a data dir (`journal/`) or `s3://bucket/prefix`; chunk selection by footers |
//! | [`scan`] | verified records of a range, decoded on worker threads, handed over in offset order |
//! | [`point`] | `OFFSET\|TIME` points and ranges, checked against the journal's end |
//! | [`decode`] | records as typed events (upcast on the workers) |
//! | [`timeline`] | `timeline`: what happened, relative times, failures marked |
//! | [`asof`] | `state --at`: the views as of a point (the library's own fold) |
//! | [`diff`] | `diff --from A --to B`: what changed between two points |
//! | [`tasks`] | `tasks`: durations, waits, the slowest path, failure chains |
//! | [`export`] | `export --format ndjson\|csv` |
//! | [`render`] | relative times, durations, one-line event descriptions |
//! | [`error`] | [`ReplayError`] and the exit-code contract (0 ok, 1 damage, 2 bad input) |
//!
//! ```no_run
//! use logbook_replay::point::Range;
//! use logbook_replay::scan::{Flow, Scanner};
//! use logbook_replay::source::Source;
//! use logbook_replay::timeline::{Timeline, TimelineOptions};
//!
//! let source = Source::open("./logbook-data")?;
//! let mut timeline = Timeline::new(std::io::stdout().lock(), TimelineOptions::default());
//! Scanner::default().scan(&source, &Range::all(), &logbook_replay::decode::decode, &mut |r| {
//!     timeline.push(&r)?;
//!     Ok(Flow::Continue)
//! })?;
//! timeline.finish()?;
//! # Ok::<(), logbook_replay::ReplayError>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]
#![warn(missing_debug_implementations)]

pub mod asof;
pub mod decode;
pub mod diff;
pub mod error;
pub mod export;
pub mod point;
pub mod render;
pub mod scan;
pub mod source;
pub mod tasks;
pub mod timeline;

pub use error::{ReplayError, Result};
