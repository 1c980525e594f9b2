//! [`Callbacks`]: application callbacks on events and on task/upgrade status changes, each in
//! its own thread fed by its own [`Subscription`].
//!
//! # Isolation
//!
//! - **Blocking.** A callback runs on its own thread reading the journal at its own pace: while
//!   it blocks, only its own deliveries wait; appends and the other callbacks carry on, and when
//!   it returns it catches up from disk, missing nothing.
//! - **Panics.** Each call runs under `catch_unwind`. A panic is logged with
//!   `tracing::error!` naming the callback, its offset and the panic message, and that callback
//!   is **stopped** (state [`CallbackState::Panicked`]), not restarted: its captured state may be
//!   half-updated, and a restart would most likely hit the same record and panic again. The
//!   other callbacks and the journal are unaffected. (The process's panic hook still prints the
//!   panic as usual.)
//! - **Stopping.** [`Callbacks::stop`] (also on drop) sets a flag that every thread checks
//!   between waits of at most [`POLL`], so an idle or catching-up thread exits within about that
//!   long. A callback stuck inside user code cannot be interrupted: after [`STOP_GRACE`] its
//!   thread is detached (logged) so `stop` stays bounded.
//!
//! Invariants: a callback sees the records of its subscription in offset order, each at most
//! once, with none skipped until it stops; records that are not typed events are not passed to
//! callbacks (they have no [`Event`]).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::event::{Event, ProgressStatus};
use crate::journal::JournalError;

use super::subscription::{Delivery, Subscription};
use super::{Result, SubscribeError};

/// Longest wait between two checks of the stop flag.
pub const POLL: Duration = Duration::from_millis(100);

/// How long [`Callbacks::stop`] waits for all threads before detaching the stuck ones.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// What a status transition is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The upgrade itself (`upgrade.started`, `.completed`, `.failed`).
    Upgrade,
    /// One of its tasks (`task.added`, `.started`, `.paused`, `.resumed`, `.cancelled`,
    /// `.completed`, `.failed`).
    Task,
}

/// A task or upgrade moved to a new status (by event type, see [`Event::progress_status`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// The record's offset.
    pub offset: u64,
    /// The record's timestamp (µs since epoch).
    pub ts_us: i64,
    /// The event type, e.g. `task.failed`.
    pub kind: &'static str,
    /// Upgrade or task.
    pub subject: Subject,
    /// The upgrade.
    pub upgrade_id: String,
    /// The task, for [`Subject::Task`].
    pub task_id: Option<String>,
    /// The new status.
    pub status: ProgressStatus,
}

impl StatusChange {
    /// The status change an event makes, if any.
    pub fn of(event: &Event, offset: u64, ts_us: i64) -> Option<StatusChange> {
        let status = event.progress_status()?;
        let upgrade_id = event.upgrade_id()?.to_string();
        let task_id = event.task_id().map(str::to_string);
        Some(StatusChange {
            offset,
            ts_us,
            kind: event.kind(),
            subject: if task_id.is_some() {
                Subject::Task
            } else {
                Subject::Upgrade
            },
            upgrade_id,
            task_id,
            status,
        })
    }
}

/// Where a callback's thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CallbackState {
    /// Delivering (or waiting for records).
    Running = 0,
    /// It panicked and was stopped.
    Panicked = 1,
    /// Reading the journal failed (logged); stopped.
    Failed = 2,
    /// Stopped by [`Callbacks::stop`] or because the journal closed.
    Stopped = 3,
}

impl CallbackState {
    fn from_u8(v: u8) -> CallbackState {
        match v {
            0 => CallbackState::Running,
            1 => CallbackState::Panicked,
            2 => CallbackState::Failed,
            _ => CallbackState::Stopped,
        }
    }
}

#[derive(Debug)]
struct Worker {
    name: String,
    state: Arc<AtomicU8>,
    position: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
    /// Disconnected when the thread ends (its sender is dropped).
    done: mpsc::Receiver<()>,
}

type Handler = Box<dyn FnMut(&Delivery) + Send>;

/// A registry of running callbacks; see the module docs.
#[derive(Debug, Default)]
pub struct Callbacks {
    stop: Arc<AtomicBool>,
    workers: Vec<Worker>,
}

impl Callbacks {
    /// An empty registry.
    pub fn new() -> Callbacks {
        Callbacks::default()
    }

    /// Runs `f(event, offset)` for every typed event `sub` delivers (its filter applies), on a
    /// thread of its own, starting now.
    pub fn on_event<F>(&mut self, name: &str, sub: Subscription, mut f: F) -> Result<()>
    where
        F: FnMut(&Event, u64) + Send + 'static,
    {
        self.spawn(
            name,
            sub,
            Box::new(move |d: &Delivery| {
                if let Some(event) = &d.event {
                    f(event, d.offset());
                }
            }),
        )
    }

    /// Runs `f(delivery)` for every record `sub` delivers (the record as stored, with its
    /// typed event), on a thread of its own, starting now.
    pub fn on_record<F>(&mut self, name: &str, sub: Subscription, f: F) -> Result<()>
    where
        F: FnMut(&Delivery) + Send + 'static,
    {
        self.spawn(name, sub, Box::new(f))
    }

    /// Runs `f(change)` for every task/upgrade status transition among the events `sub`
    /// delivers (e.g. a filter `task.completed,task.failed,upgrade.*` narrows it further).
    pub fn on_status<F>(&mut self, name: &str, sub: Subscription, mut f: F) -> Result<()>
    where
        F: FnMut(StatusChange) + Send + 'static,
    {
        self.spawn(
            name,
            sub,
            Box::new(move |d: &Delivery| {
                if let Some(change) = d
                    .event
                    .as_ref()
                    .and_then(|e| StatusChange::of(e, d.offset(), d.ts_us()))
                {
                    f(change);
                }
            }),
        )
    }

    /// The state of the callback `name`.
    pub fn state(&self, name: &str) -> Option<CallbackState> {
        self.worker(name)
            .map(|w| CallbackState::from_u8(w.state.load(Ordering::Acquire)))
    }

    /// The next offset the callback `name` will examine (how far it has read).
    pub fn position(&self, name: &str) -> Option<u64> {
        self.worker(name)
            .map(|w| w.position.load(Ordering::Acquire))
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.workers.iter().map(|w| w.name.as_str()).collect()
    }

    /// Stops every callback and waits for the threads (at most about [`STOP_GRACE`]; a thread
    /// stuck in its callback is detached). Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + STOP_GRACE;
        for worker in &mut self.workers {
            let Some(handle) = worker.handle.take() else {
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match worker.done.recv_timeout(left) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!(callback = %worker.name, "callback still busy at stop; thread detached");
                }
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if handle.join().is_err() {
                        tracing::error!(callback = %worker.name, "callback thread panicked");
                    }
                }
            }
        }
    }

    fn worker(&self, name: &str) -> Option<&Worker> {
        self.workers.iter().find(|w| w.name == name)
    }

    fn spawn(&mut self, name: &str, sub: Subscription, handler: Handler) -> Result<()> {
        let names: HashSet<&str> = self.workers.iter().map(|w| w.name.as_str()).collect();
        if name.is_empty() || names.contains(name) {
            return Err(SubscribeError::Invalid(format!(
                "callback name {name:?} is empty or already registered"
            )));
        }
        if self.stop.load(Ordering::Acquire) {
            return Err(SubscribeError::Invalid("callbacks were stopped".into()));
        }
        let state = Arc::new(AtomicU8::new(0));
        let position = Arc::new(AtomicU64::new(sub.position()));
        let (done_tx, done) = mpsc::channel();
        let run = Run {
            name: name.to_string(),
            sub,
            handler,
            stop: self.stop.clone(),
            state: state.clone(),
            position: position.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("logbook-cb-{name}"))
            .spawn(move || {
                let _done = done_tx;
                run.run();
            })
            .map_err(|source| SubscribeError::Io {
                path: std::path::PathBuf::from(format!("(thread for callback {name})")),
                source,
            })?;
        self.workers.push(Worker {
            name: name.to_string(),
            state,
            position,
            handle: Some(handle),
            done,
        });
        Ok(())
    }
}

impl Drop for Callbacks {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One callback's thread.
struct Run {
    name: String,
    sub: Subscription,
    handler: Handler,
    stop: Arc<AtomicBool>,
    state: Arc<AtomicU8>,
    position: Arc<AtomicU64>,
}

impl Run {
    fn run(mut self) {
        let end = loop {
            if self.stop.load(Ordering::Acquire) {
                break CallbackState::Stopped;
            }
            let next = self.sub.next_blocking(Some(Instant::now() + POLL));
            self.position.store(self.sub.position(), Ordering::Release);
            match next {
                Ok(None) => {}
                Ok(Some(delivery)) => {
                    let handler = &mut self.handler;
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handler(&delivery))) {
                        tracing::error!(
                            callback = %self.name,
                            offset = delivery.offset(),
                            panic = %crate::journal::panic_message(panic.as_ref()),
                            "callback panicked; it is stopped, the others keep running"
                        );
                        break CallbackState::Panicked;
                    }
                }
                Err(SubscribeError::Journal(JournalError::Closed)) => {
                    tracing::debug!(callback = %self.name, "journal closed; callback stops");
                    break CallbackState::Stopped;
                }
                Err(e) => {
                    tracing::error!(callback = %self.name, error = %e, "callback stopped: reading the journal failed");
                    break CallbackState::Failed;
                }
            }
        };
        self.state.store(end as u8, Ordering::Release);
    }
}
