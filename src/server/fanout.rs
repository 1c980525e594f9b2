//! Live fan-out for `/v1/stream`: one task (the hub) reads the journal's live edge once,
//! upcasts and serializes each record once, and broadcasts the frame to every connection at
//! the live edge. A connection behind the edge reads the journal itself (see
//! [`super::stream`]); at the edge it switches to the hub, and back to the journal if the hub
//! outruns it.
//!
//! # Invariants
//!
//! - **Bounded, shared memory.** The broadcast buffer holds at most [`CAPACITY`] frames for all
//!   connections together; a connection that falls further behind is told (`Lagged`) and reads
//!   the journal from its own position instead. Nothing grows with the number of clients or
//!   their lag, and appends never wait for the hub or a connection.
//! - **Frames in offset order**, each exactly once per hub run. A connection ignores frames
//!   below its position and fills a gap above it from the journal, so the hub may start late,
//!   stop when idle and restart at the journal's end without a connection missing a record.
//! - **Idle when unwatched.** With no connection subscribed the hub stops reading and waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, broadcast};

use super::AppState;
use crate::event::Event;
use crate::subscribe::{EventFilter, From, Subscription};

/// Frames the broadcast buffer holds (shared by all connections).
pub const CAPACITY: usize = 4096;

/// One record, serialized once for every connection.
#[derive(Debug)]
pub struct Frame {
    /// Its offset.
    pub offset: u64,
    /// The text frame: [`crate::envelope::to_json_line`] of the record.
    pub text: Utf8Bytes,
    /// Its typed event, for the connections' filters (`None`: not a typed event).
    pub event: Option<Event>,
}

/// The hub's shared side: the broadcast sender and its wake-up.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Frame>>,
    running: AtomicBool,
    wake: Notify,
    /// Frames broadcast so far.
    pub frames: AtomicU64,
    /// Times a connection fell behind the buffer and went back to the journal.
    pub fallbacks: AtomicU64,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            tx: broadcast::channel(CAPACITY).0,
            running: AtomicBool::new(false),
            wake: Notify::new(),
            frames: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }
}

impl Hub {
    /// Subscribes to the live frames, starting the hub task on first use (call from within the
    /// tokio runtime). Frames already sent are not received.
    pub fn subscribe(&self, state: &Arc<AppState>) -> broadcast::Receiver<Arc<Frame>> {
        let rx = self.tx.subscribe();
        if !self.running.swap(true, Ordering::SeqCst) {
            tokio::spawn(run(state.clone()));
        }
        self.wake.notify_one();
        rx
    }
}

/// The hub task; marks the hub stopped when it ends, so the next subscriber restarts it.
async fn run(state: Arc<AppState>) {
    broadcast_live(&state).await;
    state.streams.hub.running.store(false, Ordering::SeqCst);
}

/// While anyone listens, reads the live edge and broadcasts each record.
async fn broadcast_live(state: &Arc<AppState>) {
    let hub = &state.streams.hub;
    let mut shutdown = state.streams.shutdown_signal();
    loop {
        while hub.tx.receiver_count() == 0 {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = hub.wake.notified() => {}
            }
        }
        let journal = state.recorder.journal();
        let mut sub = match Subscription::new(journal, From::Latest, EventFilter::all()) {
            Ok(sub) => sub,
            Err(error) => {
                tracing::error!(%error, "stream hub cannot read the journal");
                return;
            }
        };
        loop {
            let delivery = tokio::select! {
                _ = shutdown.changed() => return,
                delivery = sub.next_async() => delivery,
            };
            let Ok(delivery) = delivery else {
                return; // the journal closed: the server is stopping
            };
            let frame = Frame {
                offset: delivery.offset(),
                text: crate::envelope::to_json_line(&delivery.record).into(),
                event: delivery.event,
            };
            if hub.tx.send(Arc::new(frame)).is_err() {
                break; // nobody listens: go idle (restart at the end when someone does)
            }
            hub.frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}
