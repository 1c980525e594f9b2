//! `logbook record`: NDJSON events on stdin → journal, through the recorder. Each line must be
//! one typed event (DESIGN.md §3) that fits the journal's state; a refused line is reported
//! with its number and reason and nothing of it is written; the others are appended in
//! batches (one group commit per batch read). A line whose `id` was already recorded writes
//! nothing and is reported. Exit 2 if any line was refused.
//!
//! With `--to http://HOST:PORT` the lines are posted to a running `logbook serve` (which owns
//! the journal) in chunks of at most [`REMOTE_CHUNK_LINES`] lines / [`REMOTE_CHUNK_BYTES`]
//! bytes instead; the server runs the same checks, line numbers stay global across chunks, and
//! the summary and exit codes are the same (the server lists only the first refused lines of a
//! request: the rest are counted from its totals). A chunk answered 503 (the server is at a
//! limit; nothing was written) is posted again after its `Retry-After`, at most
//! [`REMOTE_BUSY_ATTEMPTS`] times. Exit 1 if the server cannot be reached or fails.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, TryRecvError};

use logbook::ingest::{IngestReport, ingest_lines};
use logbook::journal::Durability;
use logbook::recorder::Recorder;

use super::{BadInput, Cli};

/// Arguments of `record`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// When an event counts as recorded: sync (fsync before ack), batch[:MILLIS] (fsync at
    /// most every MILLIS ms), none (no fsync until the segment rolls).
    #[arg(long, default_value = "sync")]
    durability: Durability,
    /// Print `{"first":A,"last":B}` on stdout as soon as each batch of lines is acknowledged
    /// under the durability policy (for producers that must know what is safe).
    #[arg(long)]
    acks: bool,
    /// Post the events to a running `logbook serve` at this http:// URL instead of opening the
    /// data directory (the server's durability policy applies).
    #[arg(long, value_name = "http://HOST:PORT")]
    to: Option<String>,
    /// Bearer token for `--to` (when the server requires one; ignored without `--to`).
    #[arg(long, env = "LOGBOOK_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Lines handed from the stdin thread to the appender, at most this many in flight.
const LINE_QUEUE: usize = 8192;
/// Lines appended per group commit at most.
const BATCH_LINES: usize = 4096;

/// A line of stdin with its 1-based number.
type Numbered = (u64, Vec<u8>);
type Line = std::io::Result<Numbered>;

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(to) = &args.to {
        return run_remote(cli, args, to);
    }
    let config = logbook::journal::JournalConfig {
        durability: args.durability,
        ..cli.journal_config()?
    };
    let max = config.record_bytes_max;
    let recorder = Recorder::open(&cli.data, config)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Line>(LINE_QUEUE);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut number = 0u64;
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    number += 1;
                    if tx.send(Ok((number, line))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
    });
    let mut summary = Summary::default();
    while let Some(lines) = next_batch(&rx)? {
        let numbered = lines.iter().map(|(n, line)| (*n, line.as_slice()));
        let report = ingest_lines(&recorder, numbered, max)?;
        summary.absorb(&report, |n| n, args.acks)?;
    }
    recorder.close()?;
    summary.print(cli.json)?;
    Ok(if summary.refused > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `record` did.
#[derive(Debug, Default)]
struct Summary {
    first: Option<u64>,
    last: Option<u64>,
    count: u64,
    refused: u64,
    already: u64,
}

impl Summary {
    /// Reports each refused or already-recorded line listed (numbered by `line_of`) on stderr,
    /// counts all of them (a server lists only the first ones of a request: the counts come
    /// from its totals), and prints the acknowledged range when `--acks` asks for it.
    fn absorb(
        &mut self,
        report: &IngestReport,
        line_of: impl Fn(u64) -> u64,
        acks: bool,
    ) -> std::io::Result<()> {
        for refused in &report.refused {
            note!(
                "line {}: refused: {}",
                line_of(refused.line),
                refused.reason
            );
        }
        let refused = report.refused_total();
        if let Some(more) = refused
            .checked_sub(report.refused.len() as u64)
            .filter(|n| *n > 0)
        {
            note!(
                "... and {more} more refused lines after line {} (the server lists the first {} \
                 of each request)",
                report.refused.last().map_or(0, |r| line_of(r.line)),
                report.refused.len()
            );
        }
        self.refused += refused;
        for already in &report.already_recorded {
            note!(
                "line {}: already recorded at offset {} (same id); nothing written",
                line_of(already.line),
                already.offset
            );
        }
        let already = report.already_recorded_total();
        if let Some(more) = already
            .checked_sub(report.already_recorded.len() as u64)
            .filter(|n| *n > 0)
        {
            note!(
                "... and {more} more lines already recorded (the server lists the first {} of \
                 each request)",
                report.already_recorded.len()
            );
        }
        self.already += already;
        if let (Some(first), Some(last)) = (report.first, report.last) {
            self.first.get_or_insert(first);
            self.last = Some(last);
            self.count += report.count;
            if acks {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{{\"first\":{first},\"last\":{last}}}")?;
                out.flush()?;
            }
        }
        Ok(())
    }

    fn print(&self, json: bool) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if json {
            let summary = serde_json::json!({"first": self.first, "last": self.last, "count": self.count,
                "refused": self.refused, "already_recorded": self.already});
            return writeln!(out, "{summary}");
        }
        match (self.first, self.last) {
            (Some(a), Some(b)) => {
                writeln!(out, "recorded {} events: offsets {a}..={b}", self.count)?
            }
            _ => writeln!(out, "recorded 0 events")?,
        }
        if self.already > 0 {
            writeln!(
                out,
                "{} lines were already recorded (same id); nothing written for them",
                self.already
            )?;
        }
        if self.refused > 0 {
            writeln!(out, "refused {} lines (see above)", self.refused)?;
        }
        Ok(())
    }
}

/// Blocks for the next line, then takes whatever else is already queued (up to a batch).
fn next_batch(rx: &Receiver<Line>) -> anyhow::Result<Option<Vec<Numbered>>> {
    let Ok(first) = rx.recv() else {
        return Ok(None);
    };
    let mut batch = vec![first?];
    while batch.len() < BATCH_LINES {
        match rx.try_recv() {
            Ok(line) => batch.push(line?),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    Ok(Some(batch))
}

/// Lines posted per request by `--to` at most.
pub const REMOTE_CHUNK_LINES: usize = 4096;
/// Bytes posted per request by `--to` at most (below the server's 16 MiB body limit).
pub const REMOTE_CHUNK_BYTES: usize = 8 << 20;

/// Tries of one chunk that the server answers 503 (busy), at most.
const REMOTE_BUSY_ATTEMPTS: u32 = 10;
/// The longest wait between two tries, whatever `Retry-After` says (seconds).
const REMOTE_RETRY_AFTER_MAX_SECS: u64 = 30;

/// `record --to`: posts stdin in chunks to `POST /v1/events` (see the module docs).
fn run_remote(cli: &Cli, args: &Args, to: &str) -> anyhow::Result<ExitCode> {
    let base = to.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(BadInput(format!(
            "--to {to:?}: expected http://HOST:PORT (no TLS: use a tunnel for remote servers)"
        ))
        .into());
    }
    let url = format!("{base}/v1/events");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut summary = Summary::default();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut number = 0u64;
    let mut done = false;
    while !done {
        // One chunk: its first line's number, and the lines, each ending in a newline.
        let start = number + 1;
        let mut body = Vec::new();
        let mut lines = 0usize;
        while lines < REMOTE_CHUNK_LINES && body.len() < REMOTE_CHUNK_BYTES {
            let mut line = Vec::new();
            if input.read_until(b'\n', &mut line)? == 0 {
                done = true;
                break;
            }
            number += 1;
            lines += 1;
            if line.len() >= REMOTE_CHUNK_BYTES {
                // Too big for any request; keep the line (empty) so numbers stay aligned.
                summary.refused += 1;
                note!(
                    "line {number}: refused: {} bytes exceeds the {REMOTE_CHUNK_BYTES}-byte request limit",
                    line.len()
                );
                line.clear();
            }
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            body.extend_from_slice(&line);
        }
        if body.trim_ascii().is_empty() {
            continue;
        }
        // A busy server (at its connection or ingest limit) answers 503 with Retry-After and
        // writes nothing: the chunk is posted again, a bounded number of times. A 503 without
        // Retry-After is a server out of service (its journal failed): not retried.
        let mut attempt = 1;
        let (status, text) = loop {
            let mut request = agent
                .post(&url)
                .header("Content-Type", "application/x-ndjson");
            if let Some(token) = &args.token {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            let mut response = request
                .send(&body[..])
                .map_err(|e| anyhow::anyhow!("cannot reach logbook serve at {base}: {e}"))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let text = response
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .map_err(|e| anyhow::anyhow!("reading the response of {url}: {e}"))?;
            if status != 503 || retry_after.is_none() || attempt >= REMOTE_BUSY_ATTEMPTS {
                break (status, text);
            }
            let wait = retry_after
                .unwrap_or(1)
                .clamp(1, REMOTE_RETRY_AFTER_MAX_SECS);
            note!(
                "{url}: busy (503), retrying in {wait} s (attempt {attempt} of {REMOTE_BUSY_ATTEMPTS})"
            );
            std::thread::sleep(std::time::Duration::from_secs(wait));
            attempt += 1;
        };
        if status == 401 {
            return Err(BadInput(format!(
                "{url}: 401 unauthorized (give the server's token with --token or LOGBOOK_TOKEN)"
            ))
            .into());
        }
        let report: IngestReport = match status {
            200 | 400 => serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("{url}: HTTP {status} with an unexpected body ({e}): {text}")
            })?,
            _ => anyhow::bail!("{url}: HTTP {status}: {text}"),
        };
        summary.absorb(&report, |local| start + local - 1, args.acks)?;
    }
    summary.print(cli.json)?;
    Ok(if summary.refused > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
