//! `logbook-replay`: post-mortem analysis of a Logbook journal, straight from a data directory.
//!
//! This first version offers `verify` (full chain check) and `export` (NDJSON with envelopes);
//! timelines, as-of state, diffs and task analysis build on the typed events to come.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use logbook::envelope::to_json_line;
use logbook::journal::{Journal, JournalConfig, StartAt, verify_dir};

/// Post-mortem analysis of Logbook journals.
#[derive(Debug, Parser)]
#[command(name = "logbook-replay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify frames, blocks, footers and the hash chain of a data directory.
    Verify {
        /// The data directory (holding journal/).
        source: PathBuf,
    },
    /// Export every record as NDJSON with its envelope.
    Export {
        /// The data directory (holding journal/).
        source: PathBuf,
    },
}

fn journal_dir(source: &std::path::Path) -> anyhow::Result<PathBuf> {
    let dir = source.join("journal");
    if !dir.is_dir() {
        anyhow::bail!("no journal at {}", dir.display());
    }
    Ok(dir)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Verify { source } => {
            let dir = journal_dir(&source)?;
            let report = verify_dir(
                &dir,
                logbook::journal::record::PAYLOAD_BYTES_MAX,
                &mut |_| {},
            )?;
            match report.damage {
                None => {
                    println!("ok: {} records", report.records);
                    Ok(ExitCode::SUCCESS)
                }
                Some(damage) => {
                    println!("DAMAGED: {damage}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Export { source } => {
            let journal = Journal::open_read_only(journal_dir(&source)?, JournalConfig::default())?;
            let mut reader = journal.reader(StartAt::Earliest)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            while let Some(record) = reader.next()? {
                writeln!(out, "{}", to_json_line(&record))?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
