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
//! background tasks get [`logbook::front::background::STOP_WAIT`] together, then are
//! abandoned. All of it is the embedded [`Logbook`]; this file only maps flags to its builder.

use logbook::eventbridge::EventBridgeConfig;
use logbook::front::{FollowOptions, ServerOptions, ShipOptions};
use logbook::server;
use logbook::type_filter::TypeFilter;
use logbook::{Logbook, LogbookError};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use super::{BadInput, Cli};

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
    /// The largest artifact file `POST /v1/artifacts` accepts, in bytes (larger: 413,
    /// `too_large`, nothing kept).
    #[arg(long, value_name = "BYTES", default_value_t = logbook::server::ARTIFACT_BYTES_MAX)]
    max_artifact_bytes: u64,
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

/// A facade error for the exit code: [`BadInput`] (2) when the input is at fault, else 1.
pub fn bad(error: LogbookError) -> anyhow::Error {
    if error.is_bad_input() {
        BadInput(error.to_string()).into()
    } else {
        error.into()
    }
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let config = cli.journal_config()?;
    let mut builder = Logbook::builder(&cli.data)
        .journal_config(config)
        .server(ServerOptions {
            listen: args.listen,
            token: args.token.clone(),
            limits: server::Limits {
                header_timeout: args.header_timeout,
                idle_timeout: args.idle_timeout,
                connections_max: args.max_connections,
                ingests_max: args.max_ingests,
                ingest_wait: args.ingest_wait,
                stream_readers_max: args.max_stream_readers,
            },
            ws_stall_limit: std::time::Duration::from_secs_f64(args.ws_stall_limit),
            artifact_bytes_max: args.max_artifact_bytes,
        });
    if let Some(location) = &args.s3 {
        builder = builder.ship(ShipOptions {
            location: location.clone(),
            interval: args.ship_interval,
        });
    }
    if let Some(location) = &args.follow {
        builder = builder.follow(FollowOptions {
            location: location.clone(),
            poll_interval: args.poll_interval,
        });
    }
    if let Some(bus) = &args.eventbridge_bus {
        let mut config = EventBridgeConfig::new(bus);
        config.source = args.eventbridge_source.clone();
        config.detail_types = TypeFilter::parse(&args.eventbridge_types).map_err(BadInput)?;
        builder = builder.eventbridge(config);
    }
    let logbook = builder.open().map_err(bad)?;
    if let (Some(report), Some(location)) = (logbook.restored(), &args.follow) {
        note!(
            "restored {} record(s) from {location}; following it every {:?}",
            report.next_offset,
            args.poll_interval
        );
    }
    if let Some(addr) = logbook.local_addr() {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    // Until Ctrl-C/SIGTERM (or the server fails); then the server drains, the background tasks
    // stop within a bound, and the journal is closed with the projection caught up.
    let served = logbook.run_until(shutdown_signal());
    logbook.close().map_err(bad)?;
    served.map_err(bad)?;
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
