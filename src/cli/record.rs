//! `logbook record`: NDJSON events on stdin → journal, through the recorder. Each line must be
//! one typed event (DESIGN.md §3) that fits the journal's state; a refused line is reported
//! with its number and reason and nothing of it is written; the others are appended in
//! batches (one group commit per batch read). A line whose `id` was already recorded writes
//! nothing and is reported. Exit 2 if any line was refused.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, TryRecvError};

use logbook::journal::Durability;
use logbook::recorder::{Recorded, Recorder, parse_event};

use super::Cli;

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
}

/// Lines handed from the stdin thread to the appender, at most this many in flight.
const LINE_QUEUE: usize = 8192;
/// Lines appended per group commit at most.
const BATCH_LINES: usize = 4096;

/// A line of stdin with its 1-based number.
type Numbered = (u64, Vec<u8>);
type Line = std::io::Result<Numbered>;

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = logbook::journal::JournalConfig {
        durability: args.durability,
        ..cli.journal_config()?
    };
    let max = config.max_record_bytes;
    let recorder = Recorder::open(cli.journal_dir(), config)?;
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
        let mut events = Vec::with_capacity(lines.len());
        for (number, line) in lines {
            let text = trim_line(&line);
            if text.is_empty() {
                continue;
            }
            if text.len() > max {
                summary.refused += 1;
                eprintln!(
                    "line {number}: refused: {} bytes exceeds the {max}-byte limit",
                    text.len()
                );
                continue;
            }
            match parse_event(text) {
                Ok(event) => events.push((number, event)),
                Err(reason) => {
                    summary.refused += 1;
                    eprintln!("line {number}: refused: {reason}");
                }
            }
        }
        if events.is_empty() {
            continue;
        }
        let results = recorder.record_all(events.iter().map(|(_, e)| e))?;
        let mut acked: Option<(u64, u64)> = None;
        for ((number, _), result) in events.iter().zip(results) {
            match result {
                Ok(Recorded::Appended(offset)) => {
                    summary.first.get_or_insert(offset);
                    summary.last = Some(offset);
                    summary.count += 1;
                    acked = Some(acked.map_or((offset, offset), |(a, _)| (a, offset)));
                }
                Ok(Recorded::AlreadyRecorded(offset)) => {
                    summary.already += 1;
                    eprintln!(
                        "line {number}: already recorded at offset {offset} (same id); nothing written"
                    );
                }
                Err(reason) => {
                    summary.refused += 1;
                    eprintln!("line {number}: refused: {reason}");
                }
            }
        }
        if let (true, Some((first, last))) = (args.acks, acked) {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{{\"first\":{first},\"last\":{last}}}")?;
            out.flush()?;
        }
    }
    super::sync_projection(cli, recorder.journal())?;
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

fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(end);
    line.get(start..end).unwrap_or(&[])
}
