//! Global options, the subcommand list, and how errors map to exit codes.
//!
//! Output: commands write stdout through [`out!`] (a closed stdout ends the command quietly:
//! the `BrokenPipe` error reaches `main`, which exits 0 as other Unix tools do) and notes for
//! the operator through [`note!`] (a stderr that cannot be written, a full disk or a closed
//! pipe, is ignored: printing never panics and never fails a command that did its work).

/// `writeln!` to stdout, returning its error (`?`): see the module docs.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

/// `writeln!` to stderr, ignoring its error: see the module docs.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod artifacts;
mod aws;
mod demo;
mod events;
mod rebuild;
mod record;
mod repair;
mod restore;
mod serve;
mod ship;
mod show;
mod tail;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use logbook::journal::{JournalConfig, JournalError};

/// Logbook: an audit-grade, hash-chained event journal for long-running operations.
#[derive(Debug, Parser)]
#[command(name = "logbook", version, about)]
pub struct Cli {
    /// Data directory (the journal lives in DIR/journal).
    #[arg(
        long,
        global = true,
        default_value = "./logbook-data",
        env = "LOGBOOK_DATA"
    )]
    pub data: PathBuf,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Roll the active segment into a sealed one once it holds this many bytes.
    #[arg(long, global = true, default_value_t = 32 << 20, value_name = "N")]
    pub segment_bytes: u64,
    /// Roll the active segment once it is this many seconds old (and holds a record).
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECONDS")]
    pub segment_age: f64,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate an EKS blue/green upgrade through the journal (the main job; no AWS needed).
    Demo(demo::Args),
    /// Append NDJSON events from stdin (one JSON object per line) to the journal.
    Record(record::Args),
    /// Print events with their envelope (offset, ts, schema_version) as NDJSON.
    Events(events::Args),
    /// The artifact store: add, search, stats, retention.
    Artifacts(artifacts::Args),
    /// Show an upgrade or a session: now, or as of an offset or time.
    Show(show::Args),
    /// Check every frame, block, footer and the hash chain; name the first bad offset.
    Verify,
    /// Find the first damage and repair it: cut it (kept in quarantine, and recorded), or
    /// replace a damaged sealed segment with its copy in S3.
    Repair(repair::Args),
    /// Rebuild state.sqlite (the SQLite projections) from the journal, or resume it.
    Rebuild(rebuild::Args),
    /// Serve HTTP ingest (`POST /v1/events`) and JSON views; owns the journal while it runs.
    Serve(serve::Args),
    /// Follow a `logbook serve` over its WebSocket (`/v1/stream`), reconnecting and resuming.
    Tail(tail::Args),
    /// Ship sealed segments and pending artifact uploads to S3 (fenced: one writer per prefix).
    Ship(ship::Args),
    /// Rebuild a data dir from S3, verified end to end; `--follow` keeps it up to date.
    Restore(restore::Args),
}

/// Errors that mean "bad usage or input" (exit 2) rather than "failure found" (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

impl Cli {
    /// The journal directory.
    pub fn journal_dir(&self) -> PathBuf {
        self.data.join("journal")
    }

    /// Journal configuration from the global flags.
    pub fn journal_config(&self) -> anyhow::Result<JournalConfig> {
        if !(self.segment_age.is_finite() && self.segment_age > 0.0) {
            return Err(BadInput(format!(
                "--segment-age must be positive, got {}",
                self.segment_age
            ))
            .into());
        }
        let config = JournalConfig {
            segment_bytes: self.segment_bytes,
            segment_age: Duration::from_secs_f64(self.segment_age),
            ..JournalConfig::default()
        };
        config.validate().map_err(|e| BadInput(e.to_string()))?;
        Ok(config)
    }

    /// Fails with a usage error if there is no journal to read.
    pub fn existing_journal_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.journal_dir();
        if !dir.is_dir() {
            return Err(BadInput(format!(
                "no journal at {} (use --data DIR to point at a data directory)",
                dir.display()
            ))
            .into());
        }
        Ok(dir)
    }
}

/// The current state for a read-only command (beside a live writer, or without one): the
/// projection plus what it lacks, or the journal folded when the projection cannot be used
/// (said on stderr). Also returns the journal, opened read-only.
pub fn read_live(cli: &Cli) -> anyhow::Result<(logbook::live::Live, logbook::journal::Journal)> {
    let journal = logbook::journal::Journal::open_read_only(
        cli.existing_journal_dir()?,
        cli.journal_config()?,
    )?;
    let (live, folded) = logbook::live::Live::open_read(&cli.data, &journal)?;
    if let Some(why) = folded {
        note!(
            "note: state.sqlite cannot be used ({why}); folded the journal instead (the next \
             writer command, or `logbook rebuild`, rebuilds it)"
        );
    }
    Ok((live, journal))
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo(args) => demo::run(&cli, args),
        Command::Record(args) => record::run(&cli, args),
        Command::Events(args) => events::run(&cli, args),
        Command::Show(args) => show::run(&cli, args),
        Command::Artifacts(args) => artifacts::run(&cli, args),
        Command::Verify => verify::run(&cli),
        Command::Repair(args) => repair::run(&cli, args),
        Command::Rebuild(args) => rebuild::run(&cli, args),
        Command::Serve(args) => serve::run(&cli, args),
        Command::Tail(args) => tail::run(&cli, args),
        Command::Ship(args) => ship::run(&cli, args),
        Command::Restore(args) => restore::run(&cli, args),
    }
}

/// The exit code for an error that ended a command.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<BadInput>().is_some() {
        return 2;
    }
    match error.downcast_ref::<JournalError>() {
        Some(JournalError::OffsetBeyondEnd { .. } | JournalError::Config(_)) => 2,
        _ => 1,
    }
}
