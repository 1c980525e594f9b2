//! `GET /v1/stream`: the journal over a WebSocket, one event (with its envelope) per text frame.
//!
//! # Contract
//!
//! - Query: `from=earliest|latest|N|RFC3339` (default `latest`), `types=GLOB,GLOB`,
//!   `upgrade_id=ID`, `session_id=ID`, and `token=T` (the bearer token, for clients such as
//!   browsers that cannot set `Authorization` on a WebSocket; accepted on this route only, see
//!   [`super::auth`]). Any other parameter, a malformed value, or an offset past the journal's
//!   end is answered `400 {"error": ".."}` before the upgrade; a request that is not a WebSocket
//!   upgrade gets a JSON error too.
//! - Server frames: each text frame is exactly one event, `envelope::to_json_line(record)`
//!   (`{"offset":N,"ts":"..","schema_version":V,...}`), in offset order, matching the filter;
//!   a ping every [`PING_EVERY`]. Client pings are answered (pong).
//! - Client frames: text frames up to [`MAX_CLIENT_TEXT`] bytes are ignored; a longer one is
//!   closed with 1009, a binary frame with 1003.
//! - Close codes sent: 1001 on server shutdown (or journal closed), 1003 binary frame, 1008 the
//!   client stopped reading for the stall limit ([`STALL_LIMIT`] unless
//!   [`Streams::with_stall_limit`]; `serve --ws-stall-limit`) with frames pending, 1009 oversized client
//!   frame, 1011 the journal could not be read. A client resumes with `from=<last offset + 1>`.
//!
//! # Invariants
//!
//! - **Per-connection subscription, at the client's pace.** Each connection owns a
//!   [`Subscription`]; frames are produced only when the socket accepts them, so a slow client
//!   is served from disk. What a connection holds is the subscription's reader buffer and the
//!   WebSocket write buffer ([`WRITE_BUFFER`] plus one frame); nothing grows with its lag.
//! - **Appends never wait.** The writer is never told about a connection; connections only read.
//! - **Bounded stall.** Every write must make progress within the stall limit; a connection
//!   that cannot even take its close frame is dropped [`CLOSE_WAIT`] later (reader aborted).
//! - **Clean stop.** [`Streams::shut_down`] makes every connection send 1001 and end;
//!   [`Streams::wait_closed`] waits (bounded) until they have.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, watch};

use super::AppState;
use super::error::ApiError;
use super::fanout::{Frame, Hub};
use crate::journal::JournalError;
use crate::subscribe::{EventFilter, From, SubscribeError, Subscription};

/// Client text frames longer than this are refused (close 1009).
pub const MAX_CLIENT_TEXT: usize = 4 << 10;
/// Frames beyond this size are not even read into memory (close 1009).
const MAX_CLIENT_MESSAGE: usize = 64 << 10;
/// Keepalive ping period.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// A write that makes no progress for this long closes the connection (1008), by default.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);
/// Frames queued between two flushes.
pub const MAX_BATCH: usize = 1024;
/// The WebSocket write buffer: writes flush once it holds this much.
pub const WRITE_BUFFER: usize = 128 << 10;
/// How long a closing connection waits for the client's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The open streams: how the server tells them to stop and waits until they have.
#[derive(Debug)]
pub struct Streams {
    shutdown: watch::Sender<bool>,
    stall_limit: Duration,
    /// The live fan-out shared by connections at the journal's edge.
    pub hub: Hub,
}

impl Default for Streams {
    fn default() -> Streams {
        Streams {
            shutdown: watch::channel(false).0,
            stall_limit: STALL_LIMIT,
            hub: Hub::default(),
        }
    }
}

impl Streams {
    /// A receiver of the shutdown signal (`true` once [`Streams::shut_down`] was called).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Streams whose clients are closed (1008) after `limit` without reading.
    pub fn with_stall_limit(limit: Duration) -> Streams {
        Streams {
            stall_limit: limit,
            ..Streams::default()
        }
    }

    /// How long a write may make no progress before the client is closed (1008).
    pub fn stall_limit(&self) -> Duration {
        self.stall_limit
    }

    /// Tells every open stream to close with 1001 (new ones close at once).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits up to `limit` for every stream to end; whether they all did.
    pub async fn wait_closed(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.shutdown.closed())
            .await
            .is_ok()
    }
}

/// The query parameters of `GET /v1/stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    from: Option<String>,
    types: Option<String>,
    upgrade_id: Option<String>,
    session_id: Option<String>,
    /// Checked by the auth middleware; accepted here so it is not an unknown parameter.
    #[allow(dead_code)]
    token: Option<String>,
}

/// `GET /v1/stream`: validates the query, subscribes, then upgrades (see the module docs).
pub async fn stream(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let query = match Query::<StreamQuery>::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(rejection) => return ApiError::bad_request(rejection.body_text()).into_response(),
    };
    let from = match query.from.as_deref().map(str::trim) {
        None | Some("") => From::Latest,
        Some(text) => match text.parse::<From>() {
            Ok(from) => from,
            Err(e) => return ApiError::bad_request(format!("from: {e}")).into_response(),
        },
    };
    let filter = match EventFilter::parse(
        query.types.as_deref(),
        query.upgrade_id.as_deref(),
        query.session_id.as_deref(),
    ) {
        Ok(filter) => filter,
        Err(e) => return ApiError::bad_request(e.to_string()).into_response(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(
                rejection.status(),
                format!("{} (this route is a WebSocket)", rejection.body_text()),
            )
            .into_response();
        }
    };
    let subscription = match Subscription::new(state.recorder.journal(), from, filter) {
        Ok(s) => s,
        Err(SubscribeError::Journal(e @ JournalError::OffsetBeyondEnd { .. })) => {
            return ApiError::bad_request(format!("from: {e}")).into_response();
        }
        Err(e) => return ApiError::internal(e.to_string()).into_response(),
    };
    let shutdown = state.streams.shutdown.subscribe();
    let stall_limit = state.streams.stall_limit;
    let app = state.clone();
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| run(socket, app, subscription, shutdown, stall_limit))
}

/// How a connection ends.
#[derive(Debug)]
enum End {
    /// Send this close frame.
    Close(u16, String),
    /// The client closed or the socket failed: nothing more to send.
    Gone,
}

fn close(code: u16, reason: impl Into<String>) -> End {
    let mut reason = reason.into();
    // A close reason is at most 123 bytes.
    while reason.len() > 123 {
        reason.pop();
    }
    End::Close(code, reason)
}

type Sink = SplitSink<WebSocket, Message>;

async fn run(
    socket: WebSocket,
    app: Arc<AppState>,
    sub: Subscription,
    mut shutdown: watch::Receiver<bool>,
    stall_limit: Duration,
) {
    let (mut sink, incoming) = socket.split();
    let (ctrl_tx, mut ctrl_rx) = mpsc::channel(1);
    let reader = tokio::spawn(read_client(incoming, ctrl_tx));
    let mut link = Link {
        shutdown: &mut shutdown,
        ctrl: &mut ctrl_rx,
        stall_limit,
    };
    let end = serve_frames(&mut sink, &app, sub, &mut link).await;
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, sink.send(Message::Close(Some(frame)))).await;
    } else {
        // Sends tungstenite's queued reply to the client's close, if any.
        let _ = tokio::time::timeout(CLOSE_WAIT, sink.flush()).await;
    }
    // Give the client a moment to answer the close, then drop the socket: the reader task holds
    // its other half, so it is aborted (a stalled client that never reads again would otherwise
    // keep the connection, and its buffers, forever).
    let mut reader = reader;
    if tokio::time::timeout(CLOSE_WAIT, &mut reader).await.is_err() {
        reader.abort();
    }
    drop(sink);
}

/// Reads client frames: answers nothing itself (tungstenite replies to pings and closes),
/// reports the first violation, then keeps reading until the client closes.
async fn read_client(mut incoming: SplitStream<WebSocket>, ctrl: mpsc::Sender<End>) {
    let mut reported = false;
    while let Some(message) = incoming.next().await {
        let end = match message {
            Ok(Message::Text(text)) if text.len() > MAX_CLIENT_TEXT => close(
                1009,
                format!("client text frames are limited to {MAX_CLIENT_TEXT} bytes"),
            ),
            Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Binary(_)) => close(1003, "binary frames are not accepted"),
            Ok(Message::Close(_)) => break,
            Err(error) => {
                let too_big = error
                    .into_inner()
                    .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
                    .is_some_and(|e| {
                        matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_))
                    });
                if too_big && !reported {
                    let _ = ctrl.try_send(close(
                        1009,
                        format!("client frames are limited to {MAX_CLIENT_TEXT} bytes"),
                    ));
                }
                return;
            }
        };
        if !reported {
            reported = true;
            let _ = ctrl.try_send(end);
        }
    }
    if !reported {
        let _ = ctrl.try_send(End::Gone);
    }
}

/// What can interrupt a write: shutdown, the client's end, the stall limit.
struct Link<'a> {
    shutdown: &'a mut watch::Receiver<bool>,
    ctrl: &'a mut mpsc::Receiver<End>,
    stall_limit: Duration,
}

/// Runs `op` unless the server shuts down or the client ends first; `op` must make progress
/// within the stall limit.
async fn guarded(
    op: impl Future<Output = Result<(), axum::Error>>,
    link: &mut Link<'_>,
) -> Result<(), End> {
    tokio::select! {
        biased;
        _ = link.shutdown.changed() => Err(close(1001, "server shutting down")),
        end = link.ctrl.recv() => Err(end.unwrap_or(End::Gone)),
        done = tokio::time::timeout(link.stall_limit, op) => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(close(
                1008,
                format!(
                    "client stopped reading for {:.1} s",
                    link.stall_limit.as_secs_f64()
                ),
            )),
        },
    }
}

fn read_failed(error: SubscribeError) -> End {
    match error {
        SubscribeError::Journal(JournalError::Closed) => close(1001, "journal closed"),
        error => close(1011, format!("cannot read the journal: {error}")),
    }
}

/// Where a connection takes its frames from.
enum Source {
    /// Its own subscription: catching up, or after falling behind the hub.
    Journal(Box<Subscription>),
    /// The hub's broadcast, at the live edge.
    Live(broadcast::Receiver<Arc<Frame>>),
}

/// Sends frames until the connection ends: from the journal while behind, from the hub at the
/// live edge (see [`super::fanout`]); `next` is the next offset the client is owed.
async fn serve_frames(
    sink: &mut Sink,
    app: &Arc<AppState>,
    sub: Subscription,
    link: &mut Link<'_>,
) -> End {
    if *link.shutdown.borrow_and_update() {
        return close(1001, "server shutting down");
    }
    let filter = sub.filter().clone();
    let mut next = sub.position();
    let mut source = Source::Journal(Box::new(sub));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = match &mut source {
            Source::Journal(sub) => from_journal(sink, app, sub, &mut next, link, &mut ping).await,
            Source::Live(rx) => from_hub(sink, app, rx, &filter, &mut next, link, &mut ping).await,
        };
        source = match step {
            Ok(None) => continue,
            Ok(Some(source)) => source,
            Err(end) => return end,
        };
    }
}

/// Waits for a ping tick, the end of the connection, or `event`; sends the ping itself.
macro_rules! next_or_ping {
    ($sink:expr, $link:expr, $ping:expr, $event:expr) => {
        tokio::select! {
            biased;
            _ = $link.shutdown.changed() => return Err(close(1001, "server shutting down")),
            end = $link.ctrl.recv() => return Err(end.unwrap_or(End::Gone)),
            _ = $ping.tick() => {
                guarded($sink.send(Message::Ping(Default::default())), $link).await?;
                return Ok(None);
            }
            event = $event => event,
        }
    };
}

/// One batch from the connection's own subscription; at the live edge, switches to the hub
/// (`Ok(Some(Live))`) once the journal holds nothing more for it.
async fn from_journal(
    sink: &mut Sink,
    app: &Arc<AppState>,
    sub: &mut Subscription,
    next: &mut u64,
    link: &mut Link<'_>,
    ping: &mut tokio::time::Interval,
) -> Result<Option<Source>, End> {
    let delivery = next_or_ping!(sink, link, ping, sub.next_async());
    let mut delivery = Some(delivery.map_err(read_failed)?);
    // Queue what is already committed (up to a batch), then flush once.
    let mut queued = 0;
    let mut caught_up = false;
    while let Some(d) = delivery.take() {
        let text = crate::envelope::to_json_line(&d.record);
        guarded(sink.feed(Message::Text(text.into())), link).await?;
        queued += 1;
        if queued < MAX_BATCH {
            delivery = sub.try_next().map_err(read_failed)?;
            caught_up = delivery.is_none();
        }
    }
    *next = sub.position();
    if caught_up {
        // At the edge: listen to the hub first, then drain what the journal committed
        // meanwhile, so the hub's first frame is at or before `next` (a gap is filled anyway).
        let rx = app.streams.hub.subscribe(app);
        while let Some(d) = sub.try_next().map_err(read_failed)? {
            let text = crate::envelope::to_json_line(&d.record);
            guarded(sink.feed(Message::Text(text.into())), link).await?;
        }
        *next = sub.position();
        guarded(sink.flush(), link).await?;
        return Ok(Some(Source::Live(rx)));
    }
    guarded(sink.flush(), link).await?;
    Ok(None)
}

/// One batch of hub frames; back to the journal (`Ok(Some(Journal))`) if the hub outran the
/// connection.
async fn from_hub(
    sink: &mut Sink,
    app: &Arc<AppState>,
    rx: &mut broadcast::Receiver<Arc<Frame>>,
    filter: &EventFilter,
    next: &mut u64,
    link: &mut Link<'_>,
    ping: &mut tokio::time::Interval,
) -> Result<Option<Source>, End> {
    let mut received = next_or_ping!(sink, link, ping, rx.recv());
    let mut queued = 0;
    loop {
        match received {
            Ok(frame) => {
                queued += send_frame(sink, app, &frame, filter, next, link).await?;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                app.streams
                    .hub
                    .fallbacks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                guarded(sink.flush(), link).await?;
                let sub = resubscribe(app, filter, *next)?;
                return Ok(Some(Source::Journal(Box::new(sub))));
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Err(close(1001, "server shutting down"));
            }
        }
        if queued >= MAX_BATCH {
            break;
        }
        received = match rx.try_recv() {
            Ok(frame) => Ok(frame),
            Err(broadcast::error::TryRecvError::Empty) => break,
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                Err(broadcast::error::RecvError::Lagged(n))
            }
            Err(broadcast::error::TryRecvError::Closed) => Err(broadcast::error::RecvError::Closed),
        };
    }
    guarded(sink.flush(), link).await?;
    Ok(None)
}

/// A subscription from `next` with the connection's filter.
fn resubscribe(app: &AppState, filter: &EventFilter, next: u64) -> Result<Subscription, End> {
    Subscription::new(app.recorder.journal(), From::Offset(next), filter.clone())
        .map_err(read_failed)
}

/// Queues `frame` if the client is owed it (filling a gap before it from the journal); the
/// number of frames queued.
async fn send_frame(
    sink: &mut Sink,
    app: &Arc<AppState>,
    frame: &Frame,
    filter: &EventFilter,
    next: &mut u64,
    link: &mut Link<'_>,
) -> Result<usize, End> {
    if frame.offset < *next {
        return Ok(0); // already sent from the journal
    }
    let mut queued = 0;
    if frame.offset > *next {
        // The hub (re)started past the client's position: the records between are committed.
        let mut gap = resubscribe(app, filter, *next)?;
        while let Some(d) = gap.try_next().map_err(read_failed)? {
            if d.offset() >= frame.offset {
                break;
            }
            let text = crate::envelope::to_json_line(&d.record);
            guarded(sink.feed(Message::Text(text.into())), link).await?;
            queued += 1;
        }
    }
    if filter.matches_decoded(frame.event.as_ref()) {
        guarded(sink.feed(Message::Text(frame.text.clone())), link).await?;
        queued += 1;
    }
    *next = frame.offset + 1;
    Ok(queued)
}
