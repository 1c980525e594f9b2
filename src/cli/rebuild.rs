//! `logbook rebuild [--resume] [--batch-size N] [--checkpoints]`: rebuilds `<data>/state.sqlite`
//! from the journal (deleting it first, unless `--resume`), reading the journal read-only so it
//! works beside a live writer. Prints the events applied, the checkpoint and the digest of the
//! projection's content (`--json`: `{"applied":..,"next_offset":..,"digest":..}`).

use std::io::Write;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use logbook::journal::Journal;
use logbook::projection::{DEFAULT_BATCH_SIZE, Projection};

use super::{BadInput, Cli};

/// Arguments of `rebuild`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep state.sqlite and apply only the records after its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Records applied per transaction (each commits with its checkpoint).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Print each committed checkpoint (`checkpoint N`) on stdout as it commits.
    #[arg(long)]
    checkpoints: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if args.batch_size == 0 {
        return Err(BadInput("--batch-size must be at least 1".into()).into());
    }
    let journal = Journal::open_read_only(cli.existing_journal_dir()?, cli.journal_config()?)?;
    if !args.resume {
        Projection::delete(&cli.data)?;
    }
    let mut projection = Projection::open(&cli.data)?;
    projection.set_batch_size(args.batch_size)?;
    let start = projection.checkpoint()?;
    let end = journal.next_offset();
    let bar = if cli.json || args.checkpoints {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(end.saturating_sub(start))
    };
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} records ({per_sec}, eta {eta})",
    )?);
    let done = projection.catch_up_with(&journal, |progress| {
        bar.set_position(progress.next_offset.saturating_sub(start));
        if args.checkpoints {
            // A closed stdout stops the printing, never the rebuild.
            let _ = writeln!(
                std::io::stdout().lock(),
                "checkpoint {}",
                progress.next_offset
            );
        }
    })?;
    bar.finish_and_clear();
    let digest = projection.digest()?;
    if cli.json {
        let out = serde_json::json!({
            "applied": done.applied,
            "next_offset": done.next_offset,
            "digest": digest,
        });
        out!("{out}");
    } else {
        out!(
            "applied {} events ({} records skipped: not typed events); checkpoint {}",
            done.applied,
            done.skipped,
            done.next_offset
        );
        out!("digest {digest}");
    }
    Ok(ExitCode::SUCCESS)
}
