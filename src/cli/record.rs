//! `logbook record`: NDJSON on stdin → journal. Each line is checked on its own; a refused line
//! is reported with its number and reason and nothing of it is written; the others are
//! appended in batches (one group commit per batch read). Exit 2 if any line was refused.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, TryRecvError};

use logbook::envelope::check_payload;
use logbook::journal::{Durability, Journal};

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
    let journal = Journal::open(cli.journal_dir(), config)?;
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
    let (mut first, mut last, mut count, mut refused) = (None, None, 0u64, 0u64);
    while let Some(lines) = next_batch(&rx)? {
        let mut payloads = Vec::with_capacity(lines.len());
        for (number, line) in lines {
            let text = trim_line(&line);
            if text.is_empty() {
                continue;
            }
            if text.len() > max {
                refused += 1;
                eprintln!(
                    "line {number}: refused: {} bytes exceeds the {max}-byte limit",
                    text.len()
                );
                continue;
            }
            match check_payload(text) {
                Ok(payload) => payloads.push(payload),
                Err(reason) => {
                    refused += 1;
                    eprintln!("line {number}: refused: {reason}");
                }
            }
        }
        if payloads.is_empty() {
            continue;
        }
        let range = journal.append_batch(&payloads)?;
        if args.acks {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{{\"first\":{},\"last\":{}}}",
                range.start,
                range.end - 1
            )?;
            out.flush()?;
        }
        first.get_or_insert(range.start);
        last = Some(range.end - 1);
        count += range.end - range.start;
    }
    journal.close()?;
    let mut out = std::io::stdout().lock();
    if cli.json {
        let summary =
            serde_json::json!({"first": first, "last": last, "count": count, "refused": refused});
        writeln!(out, "{summary}")?;
    } else {
        match (first, last) {
            (Some(a), Some(b)) => writeln!(out, "recorded {count} events: offsets {a}..={b}")?,
            _ => writeln!(out, "recorded 0 events")?,
        }
        if refused > 0 {
            writeln!(out, "refused {refused} lines (see above)")?;
        }
    }
    Ok(if refused > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
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
