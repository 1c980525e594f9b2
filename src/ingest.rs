//! NDJSON lines in, through the recorder: the one path of `logbook record`, `record --to` and
//! `POST /v1/events`.
//!
//! Each line is trimmed; blank lines are skipped; a line longer than the journal's record
//! limit, one that is not a typed event ([`parse_event`]) or one the state refuses
//! ([`Recorder::record_all`]) is refused by number with its reason, and nothing of it is
//! written. The other lines are appended in order, sharing one group commit. A line whose
//! idempotency key was already recorded writes nothing and is reported with that offset.
//!
//! Listing bound: [`ingest`] (the HTTP path) lists at most `listed_max` refused lines and
//! `listed_max` already-recorded lines, the first by line number ([`LISTED_LINES_MAX`] for
//! `POST /v1/events`), and always counts all of them (`refused_count`, `refused_truncated`,
//! and the same for `already_recorded`), so a 16 MiB body of bad lines gets a report of a few
//! KB, not one as large as the body. [`ingest_lines`] (`logbook record`, which prints each
//! line's reason) lists everything. The body is borrowed, never copied: each line is a slice of
//! it until it is parsed into an event.
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

/// The lines of each kind `POST /v1/events` lists in its report at most (all are counted).
pub const LISTED_LINES_MAX: usize = 100;

/// A line that was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RefusedLine {
    /// Line number (1-based).
    pub line: u64,
    /// Why, as `record` prints it.
    pub reason: String,
    /// The machine-readable code (`invalid`, `out_of_range`, `unknown_task`, `duplicate_id`,
    /// `terminal_status`...; see `RecordError::code`). Absent from older servers' reports.
    #[serde(default)]
    pub code: String,
}

/// A line whose idempotency key was already recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AlreadyRecordedLine {
    /// Line number (1-based).
    pub line: u64,
    /// Where the key was recorded.
    pub offset: u64,
}

/// What happened to each line (also the response body of `POST /v1/events`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct IngestReport {
    /// Offset of the first appended line.
    pub first: Option<u64>,
    /// Offset of the last appended line.
    pub last: Option<u64>,
    /// Lines appended.
    pub count: u64,
    /// Offsets of the appended lines, in line order.
    pub offsets: Vec<u64>,
    /// Refused lines, by line number: all of them, or the first ones if `refused_truncated`.
    pub refused: Vec<RefusedLine>,
    /// How many lines were refused in all (absent from older servers' reports: then
    /// `refused.len()`; see [`IngestReport::refused_total`]).
    #[serde(default)]
    pub refused_count: u64,
    /// Whether `refused` lists fewer lines than `refused_count`.
    #[serde(default)]
    pub refused_truncated: bool,
    /// Lines already recorded (nothing written for them), by line number: all of them, or the
    /// first ones if `already_recorded_truncated`.
    pub already_recorded: Vec<AlreadyRecordedLine>,
    /// How many lines were already recorded in all (see `refused_count`).
    #[serde(default)]
    pub already_recorded_count: u64,
    /// Whether `already_recorded` lists fewer lines than `already_recorded_count`.
    #[serde(default)]
    pub already_recorded_truncated: bool,
}

impl IngestReport {
    /// Refused lines in all, also from a report without `refused_count`.
    pub fn refused_total(&self) -> u64 {
        self.refused_count.max(self.refused.len() as u64)
    }

    /// Already-recorded lines in all, also from a report without `already_recorded_count`.
    pub fn already_recorded_total(&self) -> u64 {
        self.already_recorded_count
            .max(self.already_recorded.len() as u64)
    }

    fn refuse(
        &mut self,
        listed_max: usize,
        line: u64,
        code: &str,
        reason: impl FnOnce() -> String,
    ) {
        self.refused_count += 1;
        if self.refused.len() < listed_max {
            self.refused.push(RefusedLine {
                line,
                reason: reason(),
                code: code.to_string(),
            });
        } else {
            self.refused_truncated = true;
        }
    }

    fn already(&mut self, listed_max: usize, line: u64, offset: u64) {
        self.already_recorded_count += 1;
        if self.already_recorded.len() < listed_max {
            self.already_recorded
                .push(AlreadyRecordedLine { line, offset });
        } else {
            self.already_recorded_truncated = true;
        }
    }
}

/// The code of a line's refusal (a failure never reaches a line: it fails the whole call).
fn code_of(error: &RecordError) -> &'static str {
    error.code().unwrap_or("invalid")
}

/// Records the NDJSON `body` through `recorder`, numbering its lines from 1, listing at most
/// `listed_max` lines of each kind (see the module docs). Blocking: it waits for the group
/// commit.
pub fn ingest(
    recorder: &Recorder,
    body: &[u8],
    max_record_bytes: usize,
    listed_max: usize,
) -> Result<IngestReport, RecordError> {
    let lines = body
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(index, line)| (index as u64 + 1, line));
    ingest_listing(recorder, lines, max_record_bytes, listed_max)
}

/// Records numbered NDJSON lines through `recorder`, listing every refused or
/// already-recorded line (see the module docs).
pub fn ingest_lines<'a>(
    recorder: &Recorder,
    lines: impl IntoIterator<Item = (u64, &'a [u8])>,
    max_record_bytes: usize,
) -> Result<IngestReport, RecordError> {
    ingest_listing(recorder, lines, max_record_bytes, usize::MAX)
}

fn ingest_listing<'a>(
    recorder: &Recorder,
    lines: impl IntoIterator<Item = (u64, &'a [u8])>,
    max_record_bytes: usize,
    listed_max: usize,
) -> Result<IngestReport, RecordError> {
    let mut report = IngestReport::default();
    let mut events = Vec::new();
    for (number, line) in lines {
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if text.len() > max_record_bytes {
            report.refuse(listed_max, number, "invalid", || {
                format!(
                    "{} bytes exceeds the {max_record_bytes}-byte limit",
                    text.len()
                )
            });
            continue;
        }
        match parse_event(text) {
            Ok(event) => events.push((number, event)),
            Err(reason) => {
                report.refuse(listed_max, number, code_of(&reason), || reason.to_string())
            }
        }
    }
    if events.is_empty() {
        return Ok(report);
    }
    // Lines are refused in two passes (parsing, then the state), each in line order and each
    // listing at most `listed_max`; the first `listed_max` of both together are among those.
    let parse_refused = std::mem::take(&mut report.refused);
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
                report.already(listed_max, *number, offset);
            }
            Err(reason) => {
                report.refuse(listed_max, *number, code_of(&reason), || reason.to_string())
            }
        }
    }
    report.refused.extend(parse_refused);
    report.refused.sort_by_key(|r| r.line);
    if report.refused.len() > listed_max {
        report.refused.truncate(listed_max);
        report.refused_truncated = true;
    }
    debug_assert!(report.refused.len() as u64 <= report.refused_count);
    debug_assert!(report.already_recorded.len() as u64 <= report.already_recorded_count);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Durability, JournalConfig};

    fn recorder(dir: &std::path::Path) -> Recorder {
        let config = JournalConfig {
            durability: Durability::None,
            ..JournalConfig::default()
        };
        Recorder::open(dir.join("journal"), config).unwrap()
    }

    const START: &str = r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p","cluster_name":"c","phase":"x"}"#;
    /// Parses, but the state refuses it (unknown task).
    const UNKNOWN_TASK: &str =
        r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"nope","percentage":1.0}"#;

    /// 300 lines: valid first, then alternately unparsable and refused by the state.
    fn body() -> Vec<u8> {
        let mut lines = vec![START.to_string()];
        for i in 0..299 {
            lines.push(if i % 2 == 0 {
                "not json".to_string()
            } else {
                UNKNOWN_TASK.to_string()
            });
        }
        (lines.join("\n") + "\n").into_bytes()
    }

    #[test]
    fn the_listing_is_capped_and_the_counts_are_complete() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = recorder(dir.path());
        let report = ingest(&recorder, &body(), 1 << 20, 100).unwrap();
        assert_eq!(report.count, 1);
        assert_eq!(report.refused_count, 299);
        assert!(report.refused_truncated);
        assert_eq!(report.refused_total(), 299);
        // The first 100 refused lines by number, from both passes (lines 2..=101).
        let lines: Vec<u64> = report.refused.iter().map(|r| r.line).collect();
        assert_eq!(lines, (2..=101).collect::<Vec<u64>>());
        assert!(
            report.refused[0].reason.contains("expected"),
            "{:?}",
            report.refused[0]
        );
        assert!(
            report.refused[1].reason.contains("nope"),
            "{:?}",
            report.refused[1]
        );
        recorder.close().unwrap();
    }

    #[test]
    fn uncapped_ingest_lists_every_line_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = recorder(dir.path());
        let body = body();
        let lines = body
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l));
        let report = ingest_lines(&recorder, lines, 1 << 20).unwrap();
        assert_eq!(report.refused.len(), 299);
        assert_eq!(report.refused_count, 299);
        assert!(!report.refused_truncated);
        recorder.close().unwrap();
    }

    #[test]
    fn already_recorded_lines_are_capped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = recorder(dir.path());
        let with_id = r#"{"id":"k-1","type":"upgrade.started","upgrade_id":"u-1","plan_id":"p","cluster_name":"c","phase":"x"}"#;
        let first = ingest(&recorder, format!("{with_id}\n").as_bytes(), 1 << 20, 2).unwrap();
        assert_eq!(first.count, 1);
        let again = format!("{with_id}\n{with_id}\n{with_id}\n");
        let report = ingest(&recorder, again.as_bytes(), 1 << 20, 2).unwrap();
        assert_eq!(report.count, 0);
        assert_eq!(report.already_recorded.len(), 2);
        assert_eq!(report.already_recorded_count, 3);
        assert!(report.already_recorded_truncated);
        assert_eq!(report.already_recorded_total(), 3);
        recorder.close().unwrap();
    }

    #[test]
    fn a_report_without_counts_still_totals() {
        let old = r#"{"first":null,"last":null,"count":0,"offsets":[],
                      "refused":[{"line":1,"reason":"bad"}],"already_recorded":[]}"#;
        let report: IngestReport = serde_json::from_str(old).unwrap();
        assert_eq!(report.refused_total(), 1);
        assert_eq!(report.already_recorded_total(), 0);
    }
}
