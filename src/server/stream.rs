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
//! - **Per-connection position, at the client's pace.** Each connection keeps the next offset
//!   it is owed; frames are produced only when the socket accepts them, so a slow client is
//!   served from disk. Nothing grows with its lag.
//! - **Journal readers in turns.** Behind the live edge a connection reads the journal through
//!   its own [`Subscription`], whose reader holds a decompressed block (about the journal's
//!   block size, 1 MiB by default, decoded). At most
//!   [`Limits::stream_readers_max`](super::Limits::stream_readers_max) connections hold one at
//!   once ([`ReaderSlots`]); the others wait in order (sending pings, watching shutdown and
//!   their client). A connection gives its turn up after each batch of [`MAX_BATCH`] frames,
//!   and while it waits for its client, whenever another connection is waiting; when its turn
//!   comes again it resubscribes from its position. At the live edge it needs no turn.
//! - **Bounded buffers.** Besides a turn's reader, a connection holds its WebSocket buffers:
//!   [`WRITE_BUFFER`] plus one frame for writes (tungstenite keeps that capacity while the
//!   connection lives, hence 32 KiB rather than its default 128 KiB), [`READ_BUFFER`] (growing
//!   up to [`MAX_CLIENT_MESSAGE`]) for reads, and its kernel send buffer
//!   ([`super::SEND_BUFFER_BYTES`]). With the connection cap this bounds all streams together:
//!   measured in tests/server_memory.rs, 300 readers that stopped reading cost +42 MiB.
//! - **No hogging.** A catching-up connection yields to the runtime every so often (tokio's
//!   cooperative budget), so that new connections get their heads read in time.
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
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};

use super::AppState;
use super::error::ApiError;
use super::fanout::{Frame, Hub};
use super::limits::STREAM_READERS_MAX;
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
pub const WRITE_BUFFER: usize = 32 << 10;
/// The WebSocket read buffer's initial size (clients send little: pings, closes, small text).
pub const READ_BUFFER: usize = 8 << 10;
/// How long a closing connection waits for the client's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The open streams: how the server tells them to stop and waits until they have.
#[derive(Debug)]
pub struct Streams {
    shutdown: watch::Sender<bool>,
    stall_limit: Duration,
    /// The live fan-out shared by connections at the journal's edge.
    pub hub: Hub,
    /// The turns at reading the journal.
    pub readers: ReaderSlots,
    /// Connections upgraded and not yet ended.
    connected: Arc<AtomicUsize>,
}

/// Counts one open connection while it lives.
struct Connected(Arc<AtomicUsize>);

impl Connected {
    fn new(count: &Arc<AtomicUsize>) -> Connected {
        count.fetch_add(1, Ordering::SeqCst);
        Connected(count.clone())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for Streams {
    fn default() -> Streams {
        Streams {
            connected: Arc::new(AtomicUsize::new(0)),
            shutdown: watch::channel(false).0,
            stall_limit: STALL_LIMIT,
            hub: Hub::default(),
            readers: ReaderSlots::new(STREAM_READERS_MAX),
        }
    }
}

/// Turns at reading the journal: at most `max` connections hold a reader at once, the others
/// wait in order (see the module docs).
#[derive(Debug)]
pub struct ReaderSlots {
    slots: Arc<Semaphore>,
    max: usize,
    waiting: AtomicUsize,
    /// Woken when a connection starts waiting (readers holding a turn while they wait for
    /// their client give it up).
    wanted: Notify,
}

impl ReaderSlots {
    /// `max` turns (at least one).
    pub fn new(max: usize) -> ReaderSlots {
        let max = max.max(1);
        ReaderSlots {
            slots: Arc::new(Semaphore::new(max)),
            max,
            waiting: AtomicUsize::new(0),
            wanted: Notify::new(),
        }
    }

    /// Connections holding a reader now.
    pub fn reading(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    /// Connections waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Waits for a turn, in order; `None` if the slots were closed.
    async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        let _waiting = Waiting::new(&self.waiting);
        self.wanted.notify_waiters();
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Completes once a connection waits for a turn.
    async fn wanted(&self) {
        loop {
            let notified = self.wanted.notified();
            if self.waiting() > 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts a waiting connection while it exists (also when its wait is cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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

    /// Allows `max` connections to read the journal at once ([`Limits::stream_readers_max`](super::Limits::stream_readers_max)).
    pub fn set_readers_max(&mut self, max: usize) {
        self.readers = ReaderSlots::new(max);
    }

    /// The open stream connections.
    pub fn open(&self) -> usize {
        self.connected.load(Ordering::SeqCst)
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
#[utoipa::path(get, path = "/v1/stream", tag = "stream",
    params(("from" = Option<String>, Query, description = "earliest, latest (default), an offset or an RFC 3339 time"),
           ("types" = Option<String>, Query, description = "Type globs, comma-separated (`task.*,upgrade.failed`)"),
           ("upgrade_id" = Option<String>, Query, description = "Only this upgrade's events"),
           ("session_id" = Option<String>, Query, description = "Only this session's events"),
           ("token" = Option<String>, Query, description = "The bearer token, for browsers")),
    responses((status = 101, description = "A WebSocket: one text frame per event with its envelope"),
              (status = 400, description = "Bad parameter, or not a WebSocket request", body = crate::server::openapi::ErrorBody),
              (status = 405, description = "Not a GET", body = crate::server::openapi::ErrorBody),
              (status = 426, description = "Upgrade required", body = crate::server::openapi::ErrorBody)))]
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
    // Resolves and checks the start point; the connection reads from there in its turns.
    let start = match Subscription::new(state.recorder.journal(), from, filter.clone()) {
        Ok(s) => s.position(),
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
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let connected = Connected::new(&app.streams.connected);
            async move {
                run(socket, app, start, filter, shutdown, stall_limit).await;
                drop(connected);
            }
        })
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
    start: u64,
    filter: EventFilter,
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
    let end = serve_frames(&mut sink, &app, start, filter, &mut link).await;
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

/// A connection's turn at the journal: its reader, and the slot that allows it one.
struct Reading {
    sub: Subscription,
    _slot: OwnedSemaphorePermit,
}

/// Where a connection takes its frames from.
enum Source {
    /// The journal: catching up, or after falling behind the hub. `None` while it waits for a
    /// turn (or gave its turn up).
    Journal(Option<Box<Reading>>),
    /// The hub's broadcast, at the live edge.
    Live(broadcast::Receiver<Arc<Frame>>),
}

/// Sends frames until the connection ends: from the journal while behind, from the hub at the
/// live edge (see [`super::fanout`]); `next` is the next offset the client is owed.
async fn serve_frames(
    sink: &mut Sink,
    app: &Arc<AppState>,
    start: u64,
    filter: EventFilter,
    link: &mut Link<'_>,
) -> End {
    if *link.shutdown.borrow_and_update() {
        return close(1001, "server shutting down");
    }
    let mut next = start;
    let mut source = Source::Journal(None);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = match &mut source {
            Source::Journal(reading) => {
                from_journal(sink, app, reading, &filter, &mut next, link, &mut ping).await
            }
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

/// Waits (in order) for a turn at the journal, pinging the client meanwhile.
async fn wait_for_turn(
    sink: &mut Sink,
    app: &AppState,
    link: &mut Link<'_>,
    ping: &mut tokio::time::Interval,
) -> Result<OwnedSemaphorePermit, End> {
    // One acquire for the whole wait, so that pings do not cost the connection its place.
    let mut acquire = std::pin::pin!(app.streams.readers.acquire());
    loop {
        tokio::select! {
            biased;
            _ = link.shutdown.changed() => return Err(close(1001, "server shutting down")),
            end = link.ctrl.recv() => return Err(end.unwrap_or(End::Gone)),
            slot = &mut acquire => {
                return slot.ok_or_else(|| close(1001, "server shutting down"));
            }
            _ = ping.tick() => {
                guarded(sink.send(Message::Ping(Default::default())), link).await?;
            }
        }
    }
}

/// Runs a write (`guarded`); if it must wait for the client while another connection waits
/// for a turn at the journal, gives this connection's turn up first.
async fn write_in_turn(
    op: impl Future<Output = Result<(), axum::Error>>,
    reading: &mut Option<Box<Reading>>,
    readers: &ReaderSlots,
    link: &mut Link<'_>,
) -> Result<(), End> {
    let mut op = std::pin::pin!(guarded(op, link));
    if reading.is_some() {
        tokio::select! {
            biased;
            done = &mut op => return done,
            () = readers.wanted() => *reading = None,
        }
    }
    op.await
}

/// One batch from the journal, in the connection's turn (waiting for one first); at the live
/// edge, switches to the hub (`Ok(Some(Live))`) once the journal holds nothing more for it.
async fn from_journal(
    sink: &mut Sink,
    app: &Arc<AppState>,
    reading: &mut Option<Box<Reading>>,
    filter: &EventFilter,
    next: &mut u64,
    link: &mut Link<'_>,
    ping: &mut tokio::time::Interval,
) -> Result<Option<Source>, End> {
    if reading.is_none() {
        let slot = wait_for_turn(sink, app, link, ping).await?;
        let sub = resubscribe(app, filter, *next)?;
        *reading = Some(Box::new(Reading { sub, _slot: slot }));
    }
    let readers = &app.streams.readers;
    // Queue what is already committed (up to a batch), then flush once.
    let mut queued = 0;
    while queued < MAX_BATCH {
        let Some(current) = reading.as_mut() else {
            break; // the turn was given up while waiting for the client
        };
        let delivery = current.sub.try_next().map_err(read_failed)?;
        // Also past records the filter skipped, so that the hub's frames line up.
        *next = current.sub.position();
        let Some(delivery) = delivery else {
            return to_live(sink, app, reading, next, link).await;
        };
        let text = crate::envelope::to_json_line(&delivery.record);
        drop(delivery);
        write_in_turn(
            sink.feed(Message::Text(text.into())),
            reading,
            readers,
            link,
        )
        .await?;
        queued += 1;
        // Catching up can find every write ready and never wait: yield now and then so that
        // one connection cannot hold a runtime worker (and new connections' heads) for long.
        tokio::task::coop::consume_budget().await;
    }
    if readers.waiting() > 0 {
        *reading = None; // others wait: take turns
    }
    write_in_turn(sink.flush(), reading, readers, link).await?;
    Ok(None)
}

/// At the live edge: listens to the hub first, then drains what the journal committed
/// meanwhile, so the hub's first frame is at or before `next` (a gap sends the connection back
/// to the journal anyway), and gives the journal turn up.
async fn to_live(
    sink: &mut Sink,
    app: &Arc<AppState>,
    reading: &mut Option<Box<Reading>>,
    next: &mut u64,
    link: &mut Link<'_>,
) -> Result<Option<Source>, End> {
    let rx = app.streams.hub.subscribe(app);
    let readers = &app.streams.readers;
    while let Some(current) = reading.as_mut() {
        let delivery = current.sub.try_next().map_err(read_failed)?;
        *next = current.sub.position();
        let Some(delivery) = delivery else {
            break;
        };
        let text = crate::envelope::to_json_line(&delivery.record);
        drop(delivery);
        write_in_turn(
            sink.feed(Message::Text(text.into())),
            reading,
            readers,
            link,
        )
        .await?;
    }
    *reading = None;
    guarded(sink.flush(), link).await?;
    Ok(Some(Source::Live(rx)))
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
            Ok(frame) => match send_frame(sink, &frame, filter, next, link).await? {
                Some(sent) => queued += sent,
                None => {
                    // The hub (re)started past the client's position: the records between
                    // are committed, so the journal has them.
                    guarded(sink.flush(), link).await?;
                    return Ok(Some(Source::Journal(None)));
                }
            },
            Err(broadcast::error::RecvError::Lagged(_)) => {
                app.streams
                    .hub
                    .fallbacks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                guarded(sink.flush(), link).await?;
                return Ok(Some(Source::Journal(None)));
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

/// Queues `frame` if the client is owed it; the number of frames queued, or `None` if the
/// client is owed records before it (they are then read from the journal).
async fn send_frame(
    sink: &mut Sink,
    frame: &Frame,
    filter: &EventFilter,
    next: &mut u64,
    link: &mut Link<'_>,
) -> Result<Option<usize>, End> {
    if frame.offset < *next {
        return Ok(Some(0)); // already sent from the journal
    }
    if frame.offset > *next {
        return Ok(None);
    }
    let mut queued = 0;
    if filter.matches_decoded(frame.event.as_ref()) {
        guarded(sink.feed(Message::Text(frame.text.clone())), link).await?;
        queued += 1;
    }
    *next = frame.offset + 1;
    Ok(Some(queued))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reader_turns_are_bounded_and_waiters_counted() {
        let slots = ReaderSlots::new(2);
        let a = slots.acquire().await.expect("a turn");
        let b = slots.acquire().await.expect("a turn");
        assert_eq!((slots.reading(), slots.waiting()), (2, 0));
        // Nobody waits: holders keep their turn.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slots.wanted())
                .await
                .is_err()
        );
        let mut third = Box::pin(slots.acquire());
        assert!(futures_util::FutureExt::now_or_never(third.as_mut()).is_none());
        assert_eq!(slots.waiting(), 1);
        // A holder waiting for its client sees that someone waits, and gives its turn up.
        tokio::time::timeout(Duration::from_secs(5), slots.wanted())
            .await
            .expect("a waiter is seen");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the waiter gets the turn")
            .expect("a turn");
        assert_eq!((slots.reading(), slots.waiting()), (2, 0));
        // A cancelled wait is no longer counted.
        let mut fourth = Box::pin(slots.acquire());
        assert!(futures_util::FutureExt::now_or_never(fourth.as_mut()).is_none());
        assert_eq!(slots.waiting(), 1);
        drop(fourth);
        assert_eq!(slots.waiting(), 0);
        drop((b, c));
        assert_eq!(slots.reading(), 0);
    }

    #[test]
    fn at_least_one_turn() {
        assert_eq!(ReaderSlots::new(0).max, 1);
    }
}
