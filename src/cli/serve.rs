//! `logbook serve [--listen 127.0.0.1:8765] [--token T]`: owns the journal (one writer per data
//! dir) and serves HTTP ingest and JSON views (src/server/), within the limits of its flags
//! (`--header-timeout`, `--idle-timeout`, `--max-connections`, `--max-ingests`, `--ingest-wait`,
//! `--max-stream-readers`; see src/server/limits.rs for what happens at each). Prints `listening on http://ADDR`
//! with the real port (so `--listen 127.0.0.1:0` works). Refuses a non-loopback address without
//! a token (exit 2). Ctrl-C or SIGTERM stops accepting, finishes in-flight requests, catches up
//! the projection and closes the recorder (journal flushed and fsynced). With
//! `--eventbridge-bus NAME` it also runs the EventBridge consumer (src/eventbridge/) as a task,
//! stopped after the server on shutdown. With `--s3 s3://bucket/prefix` it ships sealed segments
//! and artifacts (src/s3/ship.rs) the same way, its state under `shipping` in `/v1/health`.
//! Whatever S3 or EventBridge are doing, SIGTERM ends the process within a few seconds: the
//! background tasks get [`background::STOP_WAIT`] together, then are abandoned.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use logbook::recorder::Recorder;
use logbook::server::{self, AppState, ServeError};

use super::{BadInput, Cli, background};

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; a non-loopback address requires a token.
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer TOKEN` on every request (the scheme in any case). A
    /// blank token, or one with control characters, non-ASCII characters or surrounding
    /// whitespace, is refused (exit 2).
    #[arg(long, env = "LOGBOOK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Send lifecycle events to this EventBridge bus (durable consumer `eventbridge`; AWS
    /// settings from the standard chain: AWS_REGION, AWS_ENDPOINT_URL, credentials).
    #[arg(long, value_name = "NAME")]
    eventbridge_bus: Option<String>,
    /// The EventBridge entries' Source.
    #[arg(
        long,
        value_name = "S",
        default_value = "logbook",
        requires = "eventbridge_bus"
    )]
    eventbridge_source: String,
    /// Event types sent to EventBridge (comma-separated globs).
    #[arg(long, value_name = "GLOBS", default_value = logbook::eventbridge::consumer::DEFAULT_TYPES, requires = "eventbridge_bus")]
    eventbridge_types: String,
    /// Ship sealed segments and artifacts to s3://bucket/prefix while serving (fenced: one
    /// writer per prefix). AWS settings from the standard chain.
    #[arg(long, value_name = "URL", env = "LOGBOOK_S3", value_parser = super::aws::parse_location)]
    s3: Option<logbook::s3::S3Location>,
    /// How often to ship (besides right after each seal), e.g. 10s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::aws::parse_duration, requires = "s3")]
    ship_interval: std::time::Duration,
    /// Serve a read-only replica of s3://bucket/prefix: restore into --data (or resume a
    /// follower's data dir), then keep applying newly shipped segments. Ingest is refused (409).
    #[arg(long, value_name = "URL", value_parser = super::aws::parse_location, conflicts_with_all = ["s3", "eventbridge_bus"])]
    follow: Option<logbook::s3::S3Location>,
    /// With --follow: how often to poll the prefix's head object.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::aws::parse_duration, requires = "follow")]
    poll_interval: std::time::Duration,
    /// Close a WebSocket client (1008) that stops reading for this many seconds while events
    /// are pending for it.
    #[arg(long, value_name = "SECONDS", default_value_t = logbook::server::stream::STALL_LIMIT.as_secs_f64(), value_parser = parse_seconds)]
    ws_stall_limit: f64,
    /// Close a connection that has not sent a complete request head this long after it opened
    /// (or after the first byte of its next request), e.g. 10s; also the longest silence
    /// allowed inside a POST /v1/events body (408).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::aws::parse_duration)]
    header_timeout: std::time::Duration,
    /// Close a keep-alive connection that sends no new request for this long after a
    /// response, e.g. 60s.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = super::aws::parse_duration)]
    idle_timeout: std::time::Duration,
    /// Open connections at most, WebSocket streams included; beyond, a connection gets a JSON
    /// 503 and is closed. Lowered (with a warning) to fit the open-file limit (ulimit -n).
    #[arg(long, value_name = "N", default_value_t = logbook::server::limits::CONNECTIONS_MAX, value_parser = parse_count)]
    max_connections: usize,
    /// POST /v1/events requests read and processed at once, at most (each holds its body, up to
    /// 16 MiB, in memory); others wait --ingest-wait for a turn, then get 503 + Retry-After.
    #[arg(long, value_name = "N", default_value_t = logbook::server::limits::INGESTS_MAX, value_parser = parse_count)]
    max_ingests: usize,
    /// How long a POST /v1/events waits for a turn before it gets 503, e.g. 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::aws::parse_duration)]
    ingest_wait: std::time::Duration,
    /// /v1/stream connections reading the journal at once, at most (each holds a decompressed
    /// block, ~1 MiB); others wait their turn. Connections at the live edge need none.
    #[arg(long, value_name = "N", default_value_t = logbook::server::limits::STREAM_READERS_MAX, value_parser = parse_count)]
    max_stream_readers: usize,
}

fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a count in 1..=1000000")),
    }
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds in (0, 86400]")),
    }
}

fn bad(error: ServeError) -> anyhow::Error {
    if error.is_bad_input() {
        BadInput(error.to_string()).into()
    } else {
        error.into()
    }
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    // Refuse before opening (and locking) anything.
    server::check_listen(args.listen, args.token.as_deref()).map_err(bad)?;
    let config = cli.journal_config()?;
    let max_record_bytes = config.record_bytes_max;
    let runtime = server::runtime()?;
    let follower = match &args.follow {
        Some(location) => Some(start_following(cli, args, &runtime, location)?),
        None => None,
    };
    let recorder = Arc::new(match follower {
        Some(_) => Recorder::open_replica(&cli.data, config)?,
        None => Recorder::open(&cli.data, config)?,
    });
    let shipper = match &args.s3 {
        Some(location) => Some(background::start_shipper(
            &runtime,
            &cli.data,
            &recorder,
            location,
            args.ship_interval,
        )?),
        None => None,
    };
    let mut state = AppState::new(
        recorder.clone(),
        args.token.clone(),
        max_record_bytes,
        cli.data.clone(),
    );
    state.shipping = shipper.as_ref().map(|(_, status)| status.clone());
    state.streams = server::stream::Streams::with_stall_limit(std::time::Duration::from_secs_f64(
        args.ws_stall_limit,
    ));
    let state = Arc::new(state.with_limits(server::Limits {
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        connections_max: args.max_connections,
        ingests_max: args.max_ingests,
        ingest_wait: args.ingest_wait,
        stream_readers_max: args.max_stream_readers,
    }));
    let following = follower.map(|follower| {
        let (state, interval) = (state.clone(), args.poll_interval);
        background::Task::spawn(&runtime, "follower", move |stopped| {
            follow(follower, state, interval, stopped)
        })
    });
    let eventbridge = match &args.eventbridge_bus {
        Some(bus) => {
            let eb = background::EventBridgeArgs {
                bus,
                source: &args.eventbridge_source,
                types: &args.eventbridge_types,
            };
            Some(background::start_eventbridge(&runtime, &cli.data, &recorder, &eb)?.0)
        }
        None => None,
    };
    let served = runtime.block_on(async {
        let listener = server::bind(args.listen, args.token.as_deref())
            .await
            .map_err(bad)?;
        let addr = listener.local_addr()?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{addr}")?;
            out.flush()?;
        }
        server::serve(listener, state.clone(), shutdown_signal())
            .await
            .map_err(bad)
    });
    // Stop the background tasks, together and within a bound (the EventBridge checkpoint stays
    // at the last accepted entry; the shipper's at the last segment uploaded).
    let tasks = [eventbridge, following, shipper.map(|(task, _)| task)];
    background::stop_all(&runtime, tasks.into_iter().flatten().collect());
    // Whatever happened, close the journal cleanly and let the projection catch up with it (the
    // runtime is gone first: no request can still be recording; a blocking call an abandoned
    // task started is not waited for long).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(state);
    match Arc::try_unwrap(recorder) {
        Ok(recorder) => recorder.close()?,
        Err(_) => tracing::warn!("recorder still shared at shutdown; closing it on drop"),
    }
    served?;
    note!("stopped; journal closed");
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Restores `location` into an empty data dir, or resumes a follower's data dir.
fn start_following(
    cli: &Cli,
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    location: &logbook::s3::S3Location,
) -> anyhow::Result<logbook::s3::Follower> {
    let sdk = super::aws::sdk_config(runtime, "--follow")?;
    let client = logbook::s3::client(&sdk);
    let has_journal = std::fs::read_dir(cli.journal_dir()).is_ok_and(|mut d| d.next().is_some());
    let follower = if has_journal {
        logbook::s3::Follower::resume(&client, location, &cli.data, 4)
            .map_err(super::aws::s3_error)?
    } else {
        let (report, follower) = runtime.block_on(logbook::s3::restore(
            &client,
            location,
            &cli.data,
            &logbook::s3::RestoreOptions::default(),
            &mut |_| {},
            &mut |_| {},
        ))?;
        note!(
            "restored {} record(s) from {location}; following it every {:?}",
            report.next_offset,
            args.poll_interval
        );
        follower
    };
    Ok(follower)
}

/// Polls the prefix and makes what the follower applied visible to the server (views,
/// streams, projection) until `stop`.
async fn follow(
    mut follower: logbook::s3::Follower,
    state: Arc<AppState>,
    interval: std::time::Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), logbook::s3::S3Error> {
    loop {
        match follower.poll_segments().await {
            Ok(0) => {}
            Ok(applied) => {
                let state = state.clone();
                let refreshed = tokio::task::spawn_blocking(move || state.recorder.refresh()).await;
                match refreshed {
                    Ok(Ok(end)) => tracing::info!(applied, next_offset = end, "follow: applied"),
                    Ok(Err(error)) => tracing::error!(%error, "follow: refresh failed"),
                    Err(error) => tracing::error!(%error, "follow: refresh task failed"),
                }
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "follow: poll failed; will retry");
            }
            Err(error) => return Err(error),
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
