//! `logbook rebuild [--resume] [--batch-size N] [--checkpoints]`: rebuilds `<data>/state.sqlite`
//! from the journal (deleting it first, unless `--resume`). Prints the events applied, the
//! checkpoint and the digest of the projection's content (`--json`:
//! `{"applied":..,"next_offset":..,"digest":..,"rebuilt":..}`).
//!
//! It takes the journal's writer lock for its duration (refused while a writer runs: the
//! writer owns `state.sqlite`, keeps it current, and rebuilds it itself when it does not match
//! the journal). `--resume` keeps the file only if its anchored checkpoint matches the journal;
//! one that does not (a repair cut records it reflects, another journal's file) is set aside
//! and rebuilt from the start, and the output says so (`rebuilt` with the reason).

use std::io::Write;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use logbook::journal::Journal;
use logbook::journal::lock::DirLock;
use logbook::projection::{DEFAULT_BATCH_SIZE, Opened, Projection};

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
    let dir = cli.existing_journal_dir()?;
    let _lock = DirLock::acquire(&dir)?;
    let journal = Journal::open_read_only(&dir, cli.journal_config()?)?;
    let mut rebuilt = None;
    let mut projection = if args.resume {
        let (projection, opened) = Projection::open_anchored(&cli.data, &journal)?;
        if let Opened::Rebuilt { reason, set_aside } = opened {
            note!(
                "state.sqlite does not match the journal ({reason}); rebuilding from the start{}",
                set_aside
                    .map(|p| format!(" (the old file is kept as {})", p.display()))
                    .unwrap_or_default()
            );
            rebuilt = Some(reason);
        }
        projection
    } else {
        Projection::delete(&cli.data)?;
        Projection::open(&cli.data)?
    };
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
    let done = projection.catch_up_with(&journal, end, |progress| {
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
            "rebuilt": rebuilt,
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
