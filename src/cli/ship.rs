//! `logbook ship --s3 s3://bucket/prefix [--once [--strict]] [--ship-interval 10s]`: ships sealed
//! segments and pending artifact uploads (src/s3/ship.rs). `--once` uploads pending artifacts,
//! seals the active segment (unless `--no-seal`), ships the backlog (progress bar) and exits:
//! 0 once the journal is shipped, whatever happened to artifacts (their problems are printed as
//! warnings with counts; `--strict` makes them exit 1), 1 if segments could not be shipped.
//! Otherwise it keeps shipping until Ctrl-C or SIGTERM. Records the artifact outcomes, so it
//! opens the journal as its writer (run it when no `serve` owns the data dir; `serve --s3`
//! ships by itself).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use logbook::recorder::Recorder;
use logbook::s3::{S3Location, ShipProgress, Shipper, UploadConfig};

use super::Cli;
use super::aws::{parse_duration, parse_location, sdk_config};

/// Arguments of `ship`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to ship: s3://bucket/prefix (AWS settings from the standard chain:
    /// AWS_REGION, AWS_ENDPOINT_URL, credentials).
    #[arg(long, value_name = "URL", env = "LOGBOOK_S3", value_parser = parse_location)]
    s3: S3Location,
    /// Ship what is sealed now, upload pending artifacts, and exit.
    #[arg(long)]
    once: bool,
    /// How often to ship (besides right after each seal), e.g. 10s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    ship_interval: Duration,
    /// Do not upload artifact files (segments only).
    #[arg(long)]
    no_artifacts: bool,
    /// With --once: leave the active segment alone (by default it is sealed first, so every
    /// record written so far is shipped).
    #[arg(long, requires = "once")]
    no_seal: bool,
    /// With --once: exit 1 when an artifact could not be uploaded (failed, or its file is not
    /// in the store), not only when segments could not be shipped.
    #[arg(long, requires = "once")]
    strict: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    cli.existing_journal_dir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sdk = sdk_config(&runtime, "ship")?;
    let recorder = Arc::new(Recorder::open(&cli.data, cli.journal_config()?)?);
    let result = runtime.block_on(ship(cli, args, &sdk, recorder.clone()));
    drop(runtime);
    match Arc::try_unwrap(recorder) {
        Ok(recorder) => recorder.close()?,
        Err(_) => tracing::warn!("recorder still shared at exit; closing it on drop"),
    }
    result
}

async fn ship(
    cli: &Cli,
    args: &Args,
    sdk: &aws_config::SdkConfig,
    recorder: Arc<Recorder>,
) -> anyhow::Result<ExitCode> {
    let client = logbook::s3::client(sdk);
    let shipper = Shipper::open(
        &cli.data,
        recorder.clone(),
        client,
        args.s3.clone(),
        UploadConfig::default(),
    )
    .await
    .map_err(super::aws::s3_error)?
    .upload_artifacts(!args.no_artifacts);
    if !args.once {
        note!(
            "shipping {} to {} every {:?} and after each seal (Ctrl-C to stop)",
            cli.data.display(),
            args.s3,
            args.ship_interval
        );
        shipper
            .run(args.ship_interval, super::serve::shutdown_signal())
            .await?;
        note!("stopped");
        return Ok(ExitCode::SUCCESS);
    }
    once(cli, args, shipper, &recorder).await
}

async fn once(
    cli: &Cli,
    args: &Args,
    mut shipper: Shipper,
    recorder: &Arc<Recorder>,
) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::hidden();
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
    )?);
    let seal = if args.no_seal {
        Duration::ZERO
    } else {
        Duration::from_secs(120)
    };
    let report = shipper
        .ship_all(seal, &mut |progress| match progress {
            ShipProgress::Backlog { segments, bytes } => {
                if !cli.json && segments > 1 {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                bar.set_length(bytes);
            }
            ShipProgress::Segment { first, last, bytes } => {
                bar.set_message(format!("{first}..={last}"));
                bar.inc(bytes);
            }
        })
        .await?;
    bar.finish_and_clear();
    let (segments, bytes) = (report.segments, report.bytes);
    let next = recorder.journal().next_offset();
    let unshipped = next.saturating_sub(shipper.next_offset());
    let artifacts = &report.artifacts;
    if cli.json {
        out!(
            "{}",
            serde_json::json!({
                "location": args.s3.to_string(),
                "segments": segments,
                "bytes": bytes,
                "shipped_next_offset": shipper.next_offset(),
                "journal_next_offset": next,
                "artifacts_uploaded": artifacts.uploaded,
                "artifact_failures": artifacts.failed.len(),
                "artifacts_missing": artifacts.missing.len(),
            })
        );
    } else {
        out!(
            "shipped {segments} segment(s), {bytes} bytes, to {}; offsets below {} are in S3",
            args.s3,
            shipper.next_offset()
        );
        if unshipped > 0 {
            out!(
                "{unshipped} newer record(s) are in the active segment; they ship once it is \
                 sealed (at most --segment-age after they were written, while a shipper runs)"
            );
        }
        out!(
            "artifacts: {} uploaded, {} failed, {} without their file",
            artifacts.uploaded,
            artifacts.failed.len(),
            artifacts.missing.len()
        );
    }
    if !artifacts.missing.is_empty() {
        note!(
            "warning: {}",
            logbook::s3::queue::missing_warning(&artifacts.missing)
        );
    }
    if let Some((first, why)) = artifacts.failed.first() {
        note!(
            "warning: {} artifact upload(s) failed (recorded as artifact.upload_failed; retried \
             by the next shipper); first: {first}: {why}",
            artifacts.failed.len()
        );
    }
    let problems = !artifacts.missing.is_empty() || !artifacts.failed.is_empty();
    Ok(if args.strict && problems {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
