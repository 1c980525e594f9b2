//! `logbook-replay COMMAND SOURCE [options]`: post-mortem analysis of a Logbook journal, from a
//! data directory or straight from `s3://bucket/prefix`. Thin: parses the command line, opens
//! the source and calls the library (one module per command); exit codes 0 ok, 1 damage found,
//! 2 bad usage or input (a one-line error on stderr).

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use logbook_replay::asof::{fold, write_state};
use logbook_replay::decode::decode;
use logbook_replay::diff::{diff, write_diff};
use logbook_replay::export::{CSV_HEADER, Format, line};
use logbook_replay::point::{Point, Range};
use logbook_replay::scan::{Flow, Scanner};
use logbook_replay::source::{Source, hex};
use logbook_replay::tasks::{TaskAnalysis, write_tasks};
use logbook_replay::timeline::{Timeline, TimelineOptions, prepare};
use logbook_replay::{ReplayError, Result};

/// Post-mortem analysis of Logbook journals. SOURCE is a data directory (holding journal/) or
/// s3://bucket/prefix (read directly; AWS settings from the standard chain, incl.
/// AWS_ENDPOINT_URL). Points (OFFSET|TIME) are an offset or an RFC 3339 time, inclusive.
#[derive(Debug, Parser)]
#[command(name = "logbook-replay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Decoding threads (default: one per core; 1 decodes on the main thread).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What happened, in order: times relative to the first event, phases, task starts and
    /// ends, failures marked `!!`.
    Timeline {
        /// Data directory or s3://bucket/prefix.
        source: String,
        /// Start here (inclusive).
        #[arg(long, value_name = "OFFSET|TIME")]
        from: Option<String>,
        /// End here (inclusive).
        #[arg(long, value_name = "OFFSET|TIME")]
        until: Option<String>,
        /// Include task.progress events.
        #[arg(long)]
        progress: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// The views as of a point: every upgrade, or one.
    State {
        /// Data directory or s3://bucket/prefix.
        source: String,
        /// As of this point (inclusive); default: the end.
        #[arg(long, value_name = "OFFSET|TIME")]
        at: Option<String>,
        /// Only this upgrade.
        #[arg(long, value_name = "ID")]
        upgrade: Option<String>,
        /// One view (JSON object) per line.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two points: upgrades, tasks, sessions, artifacts.
    Diff {
        /// Data directory or s3://bucket/prefix.
        source: String,
        /// From the views as of this point; default: before the first record.
        #[arg(long, value_name = "OFFSET|TIME")]
        from: Option<String>,
        /// To the views as of this point; default: the end.
        #[arg(long, value_name = "OFFSET|TIME")]
        to: Option<String>,
        /// One change (JSON object) per line.
        #[arg(long)]
        json: bool,
    },
    /// Per task: wait, duration; per upgrade: the slowest path and the failure chain.
    Tasks {
        /// Data directory or s3://bucket/prefix.
        source: String,
        /// Analyse up to this point (inclusive); default: the end.
        #[arg(long, value_name = "OFFSET|TIME")]
        until: Option<String>,
        /// Only this upgrade.
        #[arg(long, value_name = "ID")]
        upgrade: Option<String>,
        /// Events of context shown before each failure (at most 1000).
        #[arg(long, value_name = "N", default_value_t = 5)]
        context: usize,
        /// One JSON object per upgrade.
        #[arg(long)]
        json: bool,
    },
    /// Every record of a range as NDJSON (with its envelope) or CSV.
    Export {
        /// Data directory or s3://bucket/prefix.
        source: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Ndjson)]
        format: Format,
        /// Start here (inclusive).
        #[arg(long, value_name = "OFFSET|TIME")]
        from: Option<String>,
        /// End here (inclusive).
        #[arg(long, value_name = "OFFSET|TIME")]
        until: Option<String>,
    },
    /// Verify frames, blocks, footers and the hash chain end to end (exit 1 on damage).
    Verify {
        /// Data directory or s3://bucket/prefix.
        source: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn point(flag: &str, text: Option<&str>) -> Result<Option<Point>> {
    text.map(|t| Point::parse(flag, t)).transpose()
}

fn run(cli: Cli) -> Result<ExitCode> {
    let scanner = match cli.threads {
        Some(0) => return Err(ReplayError::BadInput("--threads must be at least 1".into())),
        Some(threads) => Scanner { threads },
        None => Scanner::default(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    match cli.command {
        Command::Timeline {
            source,
            from,
            until,
            progress,
            json,
        } => {
            let range = Range {
                from: point("--from", from.as_deref())?,
                until: point("--until", until.as_deref())?,
            };
            let source = Source::open(&source)?;
            range.check("--from", "--until", source.end())?;
            let options = TimelineOptions { progress, json };
            let mut timeline = Timeline::new(&mut out, options);
            scanner.scan(&source, &range, &prepare(options), &mut |item| {
                timeline.push_item(&item)?;
                Ok(Flow::Continue)
            })?;
            timeline.finish()?;
        }
        Command::State {
            source,
            at,
            upgrade,
            json,
        } => {
            let at = point("--at", at.as_deref())?;
            let source = Source::open(&source)?;
            let mut folded = fold(&source, &scanner, at)?;
            write_state(&mut out, &mut folded, upgrade.as_deref(), json)?;
        }
        Command::Diff {
            source,
            from,
            to,
            json,
        } => {
            let from = point("--from", from.as_deref())?;
            let to = point("--to", to.as_deref())?;
            let source = Source::open(&source)?;
            let mut diff = diff(&source, &scanner, from, to)?;
            write_diff(&mut out, &mut diff, json)?;
        }
        Command::Tasks {
            source,
            until,
            upgrade,
            context,
            json,
        } => {
            let until = point("--until", until.as_deref())?;
            if context > logbook_replay::tasks::CONTEXT_MAX {
                return Err(ReplayError::BadInput(format!(
                    "--context {context} is above the limit of {}",
                    logbook_replay::tasks::CONTEXT_MAX
                )));
            }
            let source = Source::open(&source)?;
            let range = Range { from: None, until };
            range.check("--until", "--until", source.end())?;
            let mut analysis = TaskAnalysis::new(context);
            scanner.scan(&source, &range, &decode, &mut |record| {
                analysis.push(&record);
                Ok(Flow::Continue)
            })?;
            if let Some(id) = &upgrade
                && !analysis.upgrades().contains_key(id)
            {
                return Err(ReplayError::BadInput(format!("unknown upgrade {id:?}")));
            }
            write_tasks(&mut out, &analysis, upgrade.as_deref(), json)?;
        }
        Command::Export {
            source,
            format,
            from,
            until,
        } => {
            let range = Range {
                from: point("--from", from.as_deref())?,
                until: point("--until", until.as_deref())?,
            };
            let source = Source::open(&source)?;
            range.check("--from", "--until", source.end())?;
            if format == Format::Csv {
                writeln!(out, "{CSV_HEADER}")?;
            }
            let map = move |record: logbook::journal::Record| line(format, &record);
            scanner.scan(&source, &range, &map, &mut |text| {
                out.write_all(text.as_bytes())?;
                out.write_all(b"\n")?;
                Ok(Flow::Continue)
            })?;
        }
        Command::Verify { source, json } => {
            let source = Source::open(&source)?;
            let outcome = source.verify()?;
            if json {
                let report = serde_json::json!({
                    "ok": outcome.damage.is_none(),
                    "records": outcome.records,
                    "head_hash": hex(&outcome.head_hash),
                    "damage": outcome.damage,
                });
                writeln!(out, "{report}")?;
            } else {
                match &outcome.damage {
                    None => writeln!(
                        out,
                        "ok: {} records, chain head {}",
                        outcome.records,
                        hex(&outcome.head_hash)
                    )?,
                    Some(damage) => writeln!(
                        out,
                        "DAMAGED: {damage} ({} good records before it)",
                        outcome.records
                    )?,
                }
            }
            out.flush()?;
            if outcome.damage.is_some() {
                return Ok(ExitCode::from(1));
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
