//! `logbook restore --from s3://bucket/prefix [--until OFFSET|TIME] [--with-artifacts]
//! [--follow]`: rebuilds `--data DIR` from S3 (src/s3/restore.rs): downloads and verifies every
//! segment, writes the journal, rebuilds `state.sqlite`. `--follow` then keeps applying new
//! segments (polling `head.json` every `--poll-interval`) until Ctrl-C: a read-only replica.
//! A tampered object or a gap fails with exit code 1, naming the object and offset.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use logbook::s3::{RestoreOptions, S3Location};
use logbook::state::Until;

use super::aws::{parse_duration, parse_location, sdk_config};
use super::{BadInput, Cli};

/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the journal was shipped: s3://bucket/prefix.
    #[arg(long, value_name = "URL", value_parser = parse_location)]
    from: S3Location,
    /// Restore only up to this offset (inclusive) or RFC 3339 time: point-in-time restore.
    #[arg(long, value_name = "OFFSET|TIME", conflicts_with = "follow")]
    until: Option<String>,
    /// Also download the uploaded artifact files (SHA-256 checked).
    #[arg(long)]
    with_artifacts: bool,
    /// Keep applying newly shipped segments until Ctrl-C (a read-only replica).
    #[arg(long)]
    follow: bool,
    /// With --follow: how often to poll the head object.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Segment downloads in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    concurrency: usize,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let until = match &args.until {
        None => Until::End,
        Some(text) => text
            .parse::<Until>()
            .map_err(|e| BadInput(format!("--until: {e}")))?,
    };
    if args.concurrency == 0 {
        return Err(BadInput("--concurrency must be at least 1".into()).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sdk = sdk_config(&runtime, "restore")?;
    let client = logbook::s3::client(&sdk);
    let options = RestoreOptions {
        until,
        with_artifacts: args.with_artifacts,
        concurrency: args.concurrency,
    };
    runtime.block_on(async {
        let bar = if cli.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )?);
        let restored = logbook::s3::restore(
            &client,
            &args.from,
            &cli.data,
            &options,
            &mut |total| bar.set_length(total),
            &mut |bytes| bar.inc(bytes),
        )
        .await;
        bar.finish_and_clear();
        let (report, mut follower) = restored.map_err(super::aws::s3_error)?;
        if cli.json {
            out!(
                "{}",
                serde_json::json!({
                    "from": args.from.to_string(),
                    "data": cli.data.display().to_string(),
                    "segments": report.segments,
                    "bytes": report.bytes,
                    "next_offset": report.next_offset,
                    "artifacts": report.artifacts,
                    "last_key": report.last_key,
                })
            );
        } else {
            out!(
                "restored {} record(s) from {} segment(s) ({} bytes) of {} into {}; chain verified, \
                 views rebuilt{}",
                report.next_offset,
                report.segments,
                report.bytes,
                args.from,
                cli.data.display(),
                if args.with_artifacts {
                    format!("; {} artifact file(s) downloaded and checked", report.artifacts)
                } else {
                    String::new()
                }
            );
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        note!(
            "following {} (polling its head every {:?}; Ctrl-C to stop)",
            args.from, args.poll_interval
        );
        let stop = super::serve::shutdown_signal();
        tokio::pin!(stop);
        loop {
            match follower.poll().await {
                Ok(0) => {}
                Ok(n) => {
                    if cli.json {
                        out!(
                            "{}",
                            serde_json::json!({"applied": n, "next_offset": follower.next_offset()})
                        );
                    } else {
                        out!("applied {n} record(s); next offset {}", follower.next_offset());
                    }
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "follow: poll failed; will retry");
                }
                Err(error) => return Err(error.into()),
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(args.poll_interval) => {}
            }
        }
        note!("stopped following at offset {}", follower.next_offset());
        Ok(ExitCode::SUCCESS)
    })
}
