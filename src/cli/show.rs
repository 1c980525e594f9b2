//! `logbook show upgrade ID | show session ID [--at OFFSET|TIME]`: the current view, read from
//! the projection (plus what it lacks, applied in memory), or the view as of a point in the
//! journal, folded from the journal; read-only, beside a live writer.

use std::process::ExitCode;

use logbook::journal::Journal;
use logbook::live::Live;
use logbook::state::{Until, UpgradeView, state_at};
use logbook::timestamp::{format_us, parse_rfc3339};

use super::{BadInput, Cli};

/// Arguments of `show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    /// Show the view as of this offset (inclusive) or RFC 3339 time instead of now.
    #[arg(long, global = true, value_name = "OFFSET|TIME")]
    at: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// An upgrade: phase, status, overall percentage, the task tree.
    Upgrade {
        /// The upgrade id.
        id: String,
    },
    /// An artifact session: its collections and artifacts.
    Session {
        /// The session id.
        id: String,
    },
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let until = match args.at.as_deref() {
        None => Until::End,
        Some(text) => match text.parse::<u64>() {
            Ok(offset) => Until::Offset(offset),
            Err(_) => Until::Time(parse_rfc3339(text).map_err(|e| {
                BadInput(format!("--at: expected an offset or an RFC 3339 time: {e}"))
            })?),
        },
    };
    let mut live = match until {
        Until::End => super::read_live(cli)?.0,
        until => {
            let journal =
                Journal::open_read_only(cli.existing_journal_dir()?, cli.journal_config()?)?;
            Live::folded(state_at(&journal, until)?)
        }
    };
    match &args.what {
        What::Upgrade { id } => {
            let view = live.upgrade_view(id)?.ok_or_else(|| {
                BadInput(format!("unknown upgrade {id:?}{}", at_suffix(&args.at)))
            })?;
            if cli.json {
                out!("{}", serde_json::to_string(&view)?);
            } else {
                print_upgrade(&view)?;
            }
        }
        What::Session { id } => {
            let session = live.session_view(id)?.ok_or_else(|| {
                BadInput(format!("unknown session {id:?}{}", at_suffix(&args.at)))
            })?;
            let mut artifacts = Vec::new();
            for a in session
                .collections
                .iter()
                .flat_map(|c| c.artifact_ids.iter())
            {
                artifacts.extend(live.artifact(a)?);
            }
            if cli.json {
                let out = serde_json::json!({"session": session, "artifacts": artifacts});
                out!("{out}");
            } else {
                out!(
                    "session {} (upgrade {}, cluster {})",
                    session.session_id,
                    session.upgrade_id,
                    session.cluster_name
                );
                for c in &session.collections {
                    out!("  collection {} \"{}\"", c.collection_id, c.name);
                    for a in artifacts
                        .iter()
                        .filter(|a| a.collection_id == c.collection_id)
                    {
                        out!(
                            "    {} {} [{}] {} bytes, {}",
                            a.artifact_id,
                            a.file_name,
                            a.artifact_type.as_str(),
                            a.size_bytes,
                            a.status.as_str()
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn at_suffix(at: &Option<String>) -> String {
    at.as_ref()
        .map(|a| format!(" as of {a}"))
        .unwrap_or_default()
}

fn print_upgrade(view: &UpgradeView) -> std::io::Result<()> {
    out!(
        "upgrade {} ({}, plan {}): {} — phase {}, {:.1}% overall, started {}",
        view.upgrade_id,
        view.cluster_name,
        view.plan_id,
        view.status.as_str(),
        view.phase,
        view.percentage,
        format_us(view.started_at_us)
    );
    if let Some(error) = &view.error {
        out!("  error: {error}");
    }
    // Parents are listed before their children; print depth-first from each root.
    fn walk(view: &UpgradeView, parent: Option<&str>, depth: usize) -> std::io::Result<()> {
        if depth > 64 {
            return Ok(()); // parents always exist before children, so no cycle; bound it anyway
        }
        for task in view
            .tasks
            .iter()
            .filter(|t| t.parent_id.as_deref() == parent)
        {
            let filled = (task.effective_percentage / 5.0).round() as usize;
            out!(
                "  {}{:<32} [{:<20}] {:>5.1}% {}{}",
                "  ".repeat(depth),
                task.name,
                "#".repeat(filled.min(20)),
                task.effective_percentage,
                task.status.as_str(),
                task.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            walk(view, Some(&task.task_id), depth + 1)?;
        }
        Ok(())
    }
    walk(view, None, 0)
}
