//! The experiment behind the proposal in benches/RESULTS.md: what the fan-out costs if every
//! record is read, upcast and serialized once for all connections instead of once per
//! connection, and frames are written without a timer per frame. Not Logbook's server: a
//! minimal `/v1/stream?from=latest` (axum, same WebSocket stack) fed by one pump task through a
//! `tokio::sync::broadcast` of shared `Utf8Bytes` frames. No filters, no resume, a lagging
//! client is cut off (the real design would fall back to its own reader instead).
//!
//! Also [`per_record_costs`]: the per-record work the real server repeats for every connection
//! (`Subscription` = journal read + upcast, then `envelope::to_json_line`), timed alone.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::SinkExt;
use logbook::envelope::to_json_line;
use logbook::event::upcast;
use logbook::journal::{Journal, StartAt};
use logbook::subscribe::{EventFilter, From, Subscription};
use tokio::sync::broadcast;

/// Frames kept for slow connections before they are cut off.
const CAPACITY: usize = 1 << 19;
/// Frames queued between two flushes (as the real server).
const MAX_BATCH: usize = 1024;

/// Starts the prototype on 127.0.0.1:0 on the current runtime; its address. It stops when the
/// journal closes or the runtime is dropped.
pub async fn start(journal: &Journal) -> anyhow::Result<std::net::SocketAddr> {
    let (tx, _) = broadcast::channel::<Utf8Bytes>(CAPACITY);
    let mut sub = Subscription::new(journal, From::Latest, EventFilter::default())?;
    let pump_tx = tx.clone();
    tokio::spawn(async move {
        while let Ok(delivery) = sub.next_async().await {
            // No receiver yet is fine: the frame is simply not needed.
            let _ = pump_tx.send(to_json_line(&delivery.record).into());
            while let Ok(Some(delivery)) = sub.try_next() {
                let _ = pump_tx.send(to_json_line(&delivery.record).into());
            }
        }
    });
    let app = axum::Router::new()
        .route("/v1/stream", get(upgrade))
        .with_state(Arc::new(tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // TCP_NODELAY, as Logbook's server sets it.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn upgrade(
    State(tx): State<Arc<broadcast::Sender<Utf8Bytes>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let rx = tx.subscribe();
    ws.on_upgrade(move |socket| connection(socket, rx))
}

async fn connection(mut socket: WebSocket, mut rx: broadcast::Receiver<Utf8Bytes>) {
    loop {
        let first = tokio::select! {
            frame = rx.recv() => match frame {
                Ok(frame) => frame,
                Err(_) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        };
        if socket.feed(Message::Text(first)).await.is_err() {
            return;
        }
        let mut queued = 1;
        while queued < MAX_BATCH {
            match rx.try_recv() {
                Ok(frame) => {
                    if socket.feed(Message::Text(frame)).await.is_err() {
                        return;
                    }
                    queued += 1;
                }
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(_) => return,
            }
        }
        if socket.flush().await.is_err() {
            return;
        }
    }
}

/// µs per record of: journal read alone; read + upcast (what `Subscription` does); read +
/// upcast + `to_json_line` (what each connection does before framing). Over the first `limit`
/// records of `journal`.
pub fn per_record_costs(journal: &Journal, limit: u64) -> anyhow::Result<(u64, [f64; 3])> {
    let mut out = [0.0; 3];
    let mut n = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        let mut reader = journal.reader(StartAt::Earliest)?;
        let start = Instant::now();
        n = 0;
        while n < limit {
            let Some(record) = reader.next()? else { break };
            if i >= 1 {
                std::hint::black_box(upcast(record.schema_version, &record.payload).ok());
            }
            if i == 2 {
                std::hint::black_box(to_json_line(&record));
            }
            n += 1;
        }
        *slot = start.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
    }
    Ok((n, out))
}
