//! NDJSON lines in, through the recorder: the one path of `logbook record`, `record --to` and
//! `POST /v1/events`.
//!
//! Each line is trimmed; blank lines are skipped; a line longer than the journal's record
//! limit, one that is not a typed event ([`parse_event`]) or one the state refuses
//! ([`Recorder::record_all`]) is refused by number with its reason, and nothing of it is
//! written. The other lines are appended in order, sharing one group commit. A line whose
//! idempotency key was already recorded writes nothing and is reported with that offset.
//!
//! # What a caller may assume
//!
//! - **A report** (HTTP 200 or 400, `record`'s summary): every line listed as appended is in
//!   the journal, durable under the durability policy; every refused line wrote nothing.
//! - **An error** (HTTP 503, `record` exiting 1): the journal failed during the batch, or had
//!   failed before it. Then *a prefix* of the batch's acceptable lines, in line order, may be in
//!   the journal: none, some or all of them, but never a line without every acceptable line
//!   before it. The recorder refuses everything until it is reopened (a restart of `serve`),
//!   which rebuilds the state from what the journal holds. To finish the batch, resend it
//!   whole once the server is back: give every line an `id` (an idempotency key), and the lines
//!   that made it are answered as already recorded, with their offsets, while the others are
//!   appended. Without ids, read the journal (`GET /v1/stream?from=N`) to see what is there.

use serde::Serialize;

use crate::recorder::{RecordError, Recorded, Recorder, parse_event};

/// A line that was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RefusedLine {
    /// Line number (1-based).
    pub line: u64,
    /// Why, as `record` prints it.
    pub reason: String,
}

/// A line whose idempotency key was already recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AlreadyRecordedLine {
    /// Line number (1-based).
    pub line: u64,
    /// Where the key was recorded.
    pub offset: u64,
}

/// What happened to each line (also the response body of `POST /v1/events`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IngestReport {
    /// Offset of the first appended line.
    pub first: Option<u64>,
    /// Offset of the last appended line.
    pub last: Option<u64>,
    /// Lines appended.
    pub count: u64,
    /// Offsets of the appended lines, in line order.
    pub offsets: Vec<u64>,
    /// Refused lines.
    pub refused: Vec<RefusedLine>,
    /// Lines already recorded (nothing written for them).
    pub already_recorded: Vec<AlreadyRecordedLine>,
}

/// Records the NDJSON `body` through `recorder`, numbering its lines from 1. Blocking: it
/// waits for the group commit.
pub fn ingest(
    recorder: &Recorder,
    body: &[u8],
    max_record_bytes: usize,
) -> Result<IngestReport, RecordError> {
    let lines = body
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(index, line)| (index as u64 + 1, line));
    ingest_lines(recorder, lines, max_record_bytes)
}

/// Records numbered NDJSON lines through `recorder` (see the module docs).
pub fn ingest_lines<'a>(
    recorder: &Recorder,
    lines: impl IntoIterator<Item = (u64, &'a [u8])>,
    max_record_bytes: usize,
) -> Result<IngestReport, RecordError> {
    let mut report = IngestReport::default();
    let mut events = Vec::new();
    for (number, line) in lines {
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if text.len() > max_record_bytes {
            report.refused.push(RefusedLine {
                line: number,
                reason: format!(
                    "{} bytes exceeds the {max_record_bytes}-byte limit",
                    text.len()
                ),
            });
            continue;
        }
        match parse_event(text) {
            Ok(event) => events.push((number, event)),
            Err(reason) => report.refused.push(RefusedLine {
                line: number,
                reason: reason.to_string(),
            }),
        }
    }
    if events.is_empty() {
        return Ok(report);
    }
    let results = recorder.record_all(events.iter().map(|(_, e)| e))?;
    for ((number, _), result) in events.iter().zip(results) {
        match result {
            Ok(Recorded::Appended(offset)) => {
                report.first.get_or_insert(offset);
                report.last = Some(offset);
                report.count += 1;
                report.offsets.push(offset);
            }
            Ok(Recorded::AlreadyRecorded(offset)) => {
                report.already_recorded.push(AlreadyRecordedLine {
                    line: *number,
                    offset,
                })
            }
            Err(reason) => report.refused.push(RefusedLine {
                line: *number,
                reason: reason.to_string(),
            }),
        }
    }
    report.refused.sort_by_key(|r| r.line);
    Ok(report)
}
