//! `logbook serve`'s HTTP side: ingest over HTTP and JSON views of the journal's state.
//!
//! | file | role |
//! |---|---|
//! | `mod.rs` | [`AppState`], [`router`], [`check_listen`], [`serve`] |
//! | [`auth`] | bearer token on every route, constant-time comparison; which tokens may be set |
//! | [`limits`] | [`Limits`]: timeouts and caps (connections, ingests, journal readers) |
//! | [`conn`] | one connection: hyper HTTP/1, header and idle timeouts, the 503 beyond the cap |
//! | [`ingest`] | `POST /v1/events`: NDJSON through the same path as `logbook record` |
//! | [`fanout`] | the live edge of `/v1/stream`: each record serialized once, broadcast |
//! | [`stream`] | `GET /v1/stream`: the journal over a WebSocket, one event per text frame |
//! | [`dashboard`] | `GET /`: the dashboard page (embedded); artifact downloads |
//! | [`views`] | `GET /v1/health`, `/v1/upgrades[/{id}]`, `/v1/sessions/{id}`, `/v1/artifacts` |
//! | [`error`] | [`ServeError`], and [`ApiError`]: every error is `{"error": ".."}` JSON |
//!
//! # Invariants
//!
//! - **One writer.** The server owns the journal through one [`Recorder`] (whose journal holds
//!   the data dir's writer lock), so other processes record by posting to it.
//! - **Not exposed by accident.** [`check_listen`] refuses a non-loopback address unless a token
//!   is configured, and a blank token or one with control characters anywhere; with a token
//!   every route, the 404 fallback included, requires it ([`auth`]).
//! - **Bounded requests.** Bodies are limited to [`ingest::MAX_BODY_BYTES`] (413 beyond).
//! - **Bounded connections.** At most [`Limits::connections_max`] connections are open
//!   (WebSocket streams included; the next one gets a JSON 503 and is closed); each must send
//!   its request head within the header timeout and is closed after the idle timeout between
//!   requests ([`conn`]); at most [`Limits::ingests_max`] ingests and
//!   [`Limits::stream_readers_max`] journal readers of streams run at once (see [`limits`] for
//!   what waits and what is refused).
//! - **Appends keep a core.** The server's runtime has one worker fewer than the machine has
//!   cores ([`runtime`]), so stream delivery cannot starve the journal's threads.
//! - **Blocking work off the runtime.** Group-commit waits, projection catch-up and as-of
//!   replays run on blocking threads; the state lock is held only to copy a view.
//! - **Clean stop.** [`serve`] returns once the shutdown future fires and in-flight requests
//!   finished (at most [`DRAIN_WAIT`]; then they are dropped); WebSocket streams are told to
//!   close with 1001. The caller then closes the recorder (flush and fsync).

pub mod artifacts;
pub mod auth;
pub mod conn;
pub mod dashboard;
pub mod error;
pub mod fanout;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod stream;
pub mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use error::{ApiError, ServeError};
pub use limits::Limits;

use crate::recorder::Recorder;

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The one path into the journal (and the current state).
    pub recorder: Arc<Recorder>,
    /// The bearer token every request must carry, if any.
    pub token: Option<String>,
    /// The journal's record size limit (lines beyond it are refused).
    pub max_record_bytes: usize,
    /// The data directory (artifact files for downloads).
    pub data_dir: PathBuf,
    /// The open `/v1/stream` connections (told to close with 1001 on shutdown).
    pub streams: stream::Streams,
    /// What shipping to S3 is doing, when `serve --s3` ships (shown by `/v1/health`).
    pub shipping: Option<Arc<crate::s3::ShipStatus>>,
    /// The artifact store (uploads, sessions, statistics, retention).
    pub artifacts: crate::artifacts::ArtifactStore,
    /// The S3 location and AWS configuration for artifact uploads and pre-signed URLs.
    pub s3: Option<(crate::s3::S3Location, aws_config::SdkConfig)>,
    /// The largest artifact `POST /v1/artifacts` accepts, in bytes.
    pub artifact_bytes_max: u64,
    /// The EventBridge consumer's counters, when one runs (for `/metrics`).
    pub eventbridge: Option<Arc<crate::eventbridge::Metrics>>,
    /// Requests answered (for `/metrics`).
    pub metrics: metrics::ServerMetrics,
    /// The resource limits (resolved: see [`Limits::resolve`]).
    limits: Limits,
    /// One permit per open connection ([`Limits::connections_max`]).
    connections: Arc<Semaphore>,
    /// One permit per ingest being read or processed ([`Limits::ingests_max`]).
    ingests: Arc<Semaphore>,
}

impl AppState {
    /// Shared state for the handlers.
    pub fn new(
        recorder: Arc<Recorder>,
        token: Option<String>,
        max_record_bytes: usize,
        data_dir: PathBuf,
    ) -> AppState {
        let limits = Limits::default().resolve();
        AppState {
            artifacts: crate::artifacts::ArtifactStore::new(
                recorder.clone(),
                data_dir.join("artifacts"),
            ),
            s3: None,
            artifact_bytes_max: ARTIFACT_BYTES_MAX,
            eventbridge: None,
            metrics: metrics::ServerMetrics::default(),
            recorder,
            token,
            max_record_bytes,
            data_dir,
            streams: stream::Streams::default(),
            shipping: None,
            limits,
            connections: Arc::new(Semaphore::new(limits.connections_max)),
            ingests: Arc::new(Semaphore::new(limits.ingests_max)),
        }
    }

    /// This state with other resource limits (resolved first, see [`Limits::resolve`]).
    pub fn with_limits(mut self, limits: Limits) -> AppState {
        let limits = limits.resolve();
        self.limits = limits;
        self.connections = Arc::new(Semaphore::new(limits.connections_max));
        self.ingests = Arc::new(Semaphore::new(limits.ingests_max));
        self.streams.set_readers_max(limits.stream_readers_max);
        self
    }

    /// The resource limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Connections open now (WebSocket streams included).
    pub fn connections_open(&self) -> usize {
        self.limits
            .connections_max
            .saturating_sub(self.connections.available_permits())
    }

    /// Ingest requests holding a turn now ([`Limits::ingests_max`]).
    pub fn ingests_active(&self) -> usize {
        self.limits
            .ingests_max
            .saturating_sub(self.ingests.available_permits())
    }

    /// Waits up to the ingest wait for a turn to ingest ([`Limits::ingests_max`]); `None` if
    /// none came (answer 503).
    pub async fn ingest_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let turn = self.ingests.clone().acquire_owned();
        match tokio::time::timeout(self.limits.ingest_wait, turn).await {
            Ok(Ok(permit)) => Some(permit),
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

/// Tokio workers for the server's runtime: one fewer than the machine's cores, at least one.
/// Delivering streams to many clients can use every worker it has; this leaves a core to the
/// journal's flusher and sealer and to blocking ingest, so clients cannot slow appends down
/// (measured in benches/RESULTS.md: with 100 clients on 2 cores, appends went from 0.53x to
/// 1.14x of their rate without clients, and the delivery p99 stayed at 6 ms).
pub fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

/// The multi-threaded runtime `serve` and `demo` run on ([`worker_threads`] workers).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
}

/// Refuses a non-loopback `addr` without a token, and a token [`auth::check_token`] refuses
/// (empty or whitespace-only, control characters, ...), wherever it listens.
pub fn check_listen(addr: SocketAddr, token: Option<&str>) -> Result<(), ServeError> {
    match token {
        Some(token) => auth::check_token(token),
        None if !addr.ip().is_loopback() => Err(ServeError::NonLoopbackWithoutToken(addr)),
        None => Ok(()),
    }
}

/// The default largest artifact `POST /v1/artifacts` accepts (5 GiB, S3's single-PUT limit).
pub const ARTIFACT_BYTES_MAX: u64 = 5 << 30;

/// The routes, with the body limit and (if configured) the token check on all of them.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/health", get(views::health))
        .route("/v1/events", post(ingest::post_events))
        .route("/v1/upgrades", get(views::upgrades))
        .route("/v1/upgrades/{id}", get(views::upgrade))
        .route("/v1/sessions/{id}", get(views::session))
        .route("/", get(root))
        .route("/v1/artifacts/{id}/download", get(dashboard::download))
        .route("/v1/stream", get(stream::stream))
        .route("/v1/sessions", post(artifacts::create_session))
        .route(
            "/v1/sessions/{id}/collections",
            post(artifacts::create_collection),
        )
        .route(
            "/v1/artifacts",
            get(views::artifacts).merge(
                post(artifacts::upload).layer(DefaultBodyLimit::max(
                    usize::try_from(state.artifact_bytes_max.saturating_add(1 << 20))
                        .unwrap_or(usize::MAX),
                )),
            ),
        )
        .route("/v1/artifacts/{id}", get(artifacts::artifact))
        .route("/v1/artifacts/{id}/upload", post(artifacts::upload_to_s3))
        .route("/v1/artifacts/{id}/url", get(artifacts::presigned_url))
        .route("/v1/statistics", get(artifacts::statistics))
        .route("/v1/retention", post(artifacts::retention))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/openapi.json", get(openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(ingest::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
}

/// `GET /`: the dashboard page, or, for a WebSocket upgrade, the live stream exactly as
/// `/v1/stream` (same query; from `latest` by default), so a plain WebSocket client of the
/// original system connecting to `ws://HOST:PORT/` gets the live events.
async fn root(
    state: axum::extract::State<Arc<AppState>>,
    uri: Uri,
    upgrade: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> axum::response::Response {
    match upgrade {
        Ok(upgrade) => stream::stream(state, uri, Ok(upgrade)).await,
        Err(_) => dashboard::page().await,
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed on {}", uri.path()),
    )
}

/// The kernel send buffer of each connection (`SO_SNDBUF`, set on the listener and inherited
/// by every accepted socket; Linux doubles it for its bookkeeping). Without it the kernel
/// grows a socket's buffer up to `net.ipv4.tcp_wmem`'s maximum (4 MiB by default) while a
/// client does not read: measured, 300 stalled `/v1/stream` readers held 650 MB of kernel
/// memory. Fixed, it also stops autotuning: one connection's throughput is at most about this
/// much per round trip (256 MB/s at 1 ms, 5 MB/s at 50 ms).
pub const SEND_BUFFER_BYTES: u32 = 256 << 10;
/// Connections the kernel queues for `accept` at most.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` (after [`check_listen`]), with [`SEND_BUFFER_BYTES`] for every connection.
pub async fn bind(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<tokio::net::TcpListener, ServeError> {
    check_listen(addr, token)?;
    let listen = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std's TcpListener::bind: a restarted server can bind while old connections linger.
        socket.set_reuseaddr(true)?;
        socket.set_send_buffer_size(SEND_BUFFER_BYTES)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| ServeError::Bind { addr, source })
}

/// How long [`serve`] waits for WebSocket streams to close after the shutdown signal.
const STREAMS_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long [`serve`] waits for in-flight requests after the shutdown signal before dropping
/// their connections.
pub const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `state` on `listener` until `shutdown` completes and in-flight requests finished.
///
/// Each accepted connection is served by its own task ([`conn::serve`]) if a connection slot
/// is free, and answered 503 ([`conn::refuse`]) otherwise (see [`limits`]). On shutdown the
/// listener is closed, every connection finishes its current request and closes (at most
/// [`DRAIN_WAIT`]), and WebSocket streams are told to close with 1001.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let limits = state.limits;
    let app = router(state.clone());
    let (stopping, stop) = watch::channel(false);
    let refusing = Arc::new(Semaphore::new(limits::REFUSING_MAX));
    // Connection tasks (at most connections_max + REFUSING_MAX running; finished ones are
    // reaped at every accept).
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while tasks.try_join_next().is_some() {}
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(error) if conn::is_connection_error(&error) => continue,
            Err(error) => {
                // E.g. out of file descriptors: pause rather than spin (the header and idle
                // timeouts free descriptors meanwhile).
                tracing::warn!(%error, "accept failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(conn::ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        // TCP_NODELAY: stream frames are batched before each flush, so Nagle's algorithm only
        // delays them (by the peer's delayed ACK, up to 40 ms) without saving packets.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        match state.connections.clone().try_acquire_owned() {
            Ok(slot) => {
                tasks.spawn(conn::serve(tcp, slot, app.clone(), limits, stop.clone()));
            }
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    tasks.spawn(conn::refuse(tcp, limits.connections_max, permit));
                }
                Err(_) => drop(tcp), // too many being refused already: close unanswered
            },
        }
    }
    drop(listener);
    stopping.send_replace(true);
    // Upgraded connections are not the HTTP server's: tell them to close (1001).
    state.streams.shut_down();
    let drained = tokio::time::timeout(DRAIN_WAIT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "some requests did not finish in time; dropping their connections"
        );
        tasks.shutdown().await;
    }
    if !state.streams.wait_closed(STREAMS_CLOSE_WAIT).await {
        tracing::warn!("some /v1/stream connections did not close in time");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_listen_refuses_exposure_and_unusable_tokens() {
        let loopback: SocketAddr = "127.0.0.1:8765".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8765".parse().unwrap();
        assert!(check_listen(loopback, None).is_ok());
        assert!(check_listen(loopback, Some("s3cret")).is_ok());
        assert!(check_listen(any, Some("s3cret")).is_ok());
        assert!(matches!(
            check_listen(any, None),
            Err(ServeError::NonLoopbackWithoutToken(_))
        ));
        for addr in [loopback, any] {
            for blank in ["", " ", "   ", "\t", " \t\n"] {
                let refused = check_listen(addr, Some(blank)).expect_err(blank);
                assert!(matches!(refused, ServeError::EmptyToken), "{blank:?}");
                assert!(refused.is_bad_input());
            }
            for bad in ["a\u{0}b", "a\u{1b}[0m", "tok\r\nX-Injected: 1"] {
                let refused = check_listen(addr, Some(bad)).expect_err(bad);
                assert!(matches!(refused, ServeError::BadToken(_)), "{bad:?}");
                assert!(refused.is_bad_input());
            }
        }
    }
}
