//! [`Logbook`]: the one embedded front door. Opened from a [`Builder`] (data dir, durability,
//! and optionally the HTTP/WebSocket server, S3 shipping, an S3 replica to follow, EventBridge
//! and artifact retention), it owns the [`Recorder`], the [`ArtifactStore`] and every background
//! task, hands out [`ProgressTracker`]s, subscriptions and callbacks, and stops everything on
//! [`Logbook::close`] (or on drop). `logbook demo` and `logbook serve` are thin shells over it.
//!
//! | file | role |
//! |---|---|
//! | [`builder`] | [`Builder`]: what to run beside the journal |
//! | [`background`] | the shipper, EventBridge, follower and retention tasks, bounded stops |
//!
//! Invariants:
//! - **One writer per data dir**: opening takes the journal's lock (a second `Logbook` on the
//!   same dir, in this process or another, gets [`crate::journal::JournalError::Locked`] naming
//!   the holder).
//! - **Closing is bounded and complete**: the server stops accepting and drains, callbacks and
//!   background tasks are stopped together within [`background::STOP_WAIT`], then the journal
//!   is flushed, fsynced and closed and the projection caught up. Whatever S3 or EventBridge
//!   are doing, `close` returns within a few seconds; drop does the same and never hangs.
//!   Trackers and stores handed out before keep working until then and fail cleanly after.
//! - **Nothing it runs can take the writer down**: background tasks log their failures (through
//!   [`crate::journal::quietly`]) and report them in their status; only the journal's own
//!   failure poisons the recorder.

pub mod background;
pub mod builder;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use builder::{Builder, FollowOptions, ServerOptions, ShipOptions};

use crate::artifacts::{ArtifactError, ArtifactStore};
use crate::eventbridge::{EventBridgeError, Metrics};
use crate::journal::Journal;
use crate::recorder::{RecordError, Recorder};
use crate::s3::{S3Error, ShipStatus};
use crate::server::{AppState, ServeError};
use crate::subscribe::{Callbacks, EventFilter, From, StatusChange, SubscribeError, Subscription};
use crate::tracker::ProgressTracker;

/// Why opening, running or closing a [`Logbook`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LogbookError {
    /// The journal or the state failed, or an event was refused.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The artifact store failed.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The HTTP server could not start or failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// S3 (shipping, restore, follow) refused or failed.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// The EventBridge consumer could not start.
    #[error(transparent)]
    EventBridge(#[from] EventBridgeError),
    /// A subscription or callback could not start.
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// A setting that cannot work (e.g. AWS without a region).
    #[error("{0}")]
    Config(String),
    /// The runtime for the background tasks could not start.
    #[error("cannot start the background runtime: {0}")]
    Runtime(std::io::Error),
}

impl LogbookError {
    /// Whether the caller's input or settings are at fault (exit code 2) rather than a failure.
    pub fn is_bad_input(&self) -> bool {
        match self {
            LogbookError::Record(e) => e.is_bad_input(),
            LogbookError::Artifact(e) => e.is_bad_input(),
            LogbookError::Serve(e) => e.is_bad_input(),
            LogbookError::S3(e) => e.is_bad_input(),
            LogbookError::Config(_) => true,
            LogbookError::EventBridge(_)
            | LogbookError::Subscribe(_)
            | LogbookError::Runtime(_) => false,
        }
    }
}

/// Where the background tasks run: a runtime of the Logbook's own, or the caller's.
#[derive(Debug)]
enum Rt {
    Own(Runtime),
    Caller(Handle),
}

impl Rt {
    fn handle(&self) -> Handle {
        match self {
            Rt::Own(runtime) => runtime.handle().clone(),
            Rt::Caller(handle) => handle.clone(),
        }
    }
}

/// The running HTTP/WebSocket server.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: oneshot::Sender<()>,
    served: JoinHandle<Result<(), ServeError>>,
    /// Becomes true when the server task ends (on its own or after `stop`).
    ended: tokio::sync::watch::Receiver<bool>,
}

/// What `close` stops, taken out once.
#[derive(Debug)]
struct Running {
    server: Option<Server>,
    tasks: Vec<background::Task>,
    callbacks: Callbacks,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Logbook {
    recorder: Arc<Recorder>,
    artifacts: ArtifactStore,
    shipping: Option<Arc<ShipStatus>>,
    /// Where shipping goes, and the AWS configuration it uses (for [`Logbook::ship_all`]).
    ship_to: Option<(crate::s3::S3Location, aws_config::SdkConfig)>,
    eventbridge: Option<Arc<Metrics>>,
    restored: Option<crate::s3::RestoreReport>,
    running: Mutex<Option<Running>>,
    /// Set by the first close (explicit or on drop).
    closed: bool,
    /// Last, so it is dropped after everything that runs on it.
    rt: Option<Rt>,
}

impl Logbook {
    /// A builder for a Logbook keeping its data in `data_dir` (the journal in
    /// `data_dir/journal`, the state in `data_dir/state.sqlite`, artifact files in
    /// `data_dir/artifacts`).
    pub fn builder(data_dir: impl AsRef<Path>) -> Builder {
        Builder::new(data_dir)
    }

    /// Opens `data_dir` with the defaults: `sync` durability, nothing else running.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Logbook, LogbookError> {
        Builder::new(data_dir).open()
    }

    /// The recorder: the one path into the journal, and the current state.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        self.recorder.journal()
    }

    /// A tracker for `upgrade_id` (start it, or attach to an upgrade already recorded).
    pub fn tracker(&self, upgrade_id: impl Into<String>) -> ProgressTracker {
        ProgressTracker::new(self.recorder.clone(), upgrade_id)
    }

    /// The artifact store (files in `data_dir/artifacts`).
    pub fn artifacts(&self) -> ArtifactStore {
        self.artifacts.clone()
    }

    /// Where the HTTP/WebSocket server listens (its real port), if one runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|r| r.server.as_ref())
            .map(|s| s.addr)
    }

    /// Starts the HTTP API, WebSocket stream and dashboard on `options.listen` (e.g. on demand,
    /// as the original system's `start_websocket_server`); where it listens. Refused if one
    /// already runs.
    pub fn start_server(&self, options: ServerOptions) -> Result<SocketAddr, LogbookError> {
        if self.local_addr().is_some() {
            return Err(LogbookError::Config(
                "a server already runs; stop it first".into(),
            ));
        }
        let handle = self.runtime();
        let listener = builder::on(&handle, async {
            crate::server::bind(options.listen, options.token.as_deref()).await
        })?;
        self.serve_on(listener, &options)
    }

    /// Serves on a bound listener (see [`Logbook::start_server`]).
    fn serve_on(
        &self,
        listener: tokio::net::TcpListener,
        options: &ServerOptions,
    ) -> Result<SocketAddr, LogbookError> {
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: options.listen,
            source,
        })?;
        let mut state = AppState::new(
            self.recorder.clone(),
            options.token.clone(),
            self.journal().config().record_bytes_max,
            self.recorder.data_dir().to_path_buf(),
        );
        state.shipping = self.shipping.clone();
        state.artifacts = self.artifacts.clone();
        state.s3 = self.ship_to.clone();
        state.artifact_bytes_max = options.artifact_bytes_max;
        state.eventbridge = self.eventbridge.clone();
        state.streams = crate::server::stream::Streams::with_stall_limit(options.ws_stall_limit);
        let state = Arc::new(state.with_limits(options.limits));
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = self.runtime();
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(running) = running.as_mut() else {
            return Err(RecordError::from(crate::journal::JournalError::Closed).into());
        };
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let serving = crate::server::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        });
        let served = handle.spawn(async move {
            let served = serving.await;
            let _ = ended_tx.send(true);
            served
        });
        running.server = Some(Server {
            addr,
            state,
            stop,
            served,
            ended,
        });
        Ok(addr)
    }

    /// Stops the server, if one runs: no new connections, in-flight requests finish, streams
    /// are closed with 1001. The journal and everything else go on.
    pub fn stop_server(&self) -> Result<(), LogbookError> {
        let server = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(|r| r.server.take());
        if let Some(server) = server {
            let handle = self.runtime();
            builder::on(&handle, stop_server(server));
        }
        Ok(())
    }

    /// What shipping to S3 is doing, if it runs.
    pub fn shipping(&self) -> Option<&Arc<ShipStatus>> {
        self.shipping.as_ref()
    }

    /// The EventBridge consumer's counters, if it runs.
    pub fn eventbridge(&self) -> Option<&Arc<Metrics>> {
        self.eventbridge.as_ref()
    }

    /// What the restore did, if this Logbook follows an S3 prefix into an empty data dir.
    pub fn restored(&self) -> Option<&crate::s3::RestoreReport> {
        self.restored.as_ref()
    }

    /// Ships everything now and stops the background shipper: the artifact files, then every
    /// segment after sealing the active one (waiting up to `seal_timeout` for the seal); the
    /// end of what is in S3. For a run that ends (the demo, a batch job): later records are not
    /// shipped by this Logbook any more.
    pub fn ship_all(&self, seal_timeout: std::time::Duration) -> Result<u64, LogbookError> {
        let Some((location, sdk)) = &self.ship_to else {
            return Err(LogbookError::Config(
                "no S3 location: open the Logbook with Builder::s3 to ship".into(),
            ));
        };
        let shipper_task = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            running.as_mut().map(|r| {
                let (shipper, others) = std::mem::take(&mut r.tasks)
                    .into_iter()
                    .partition::<Vec<_>, _>(|t| t.name() == "shipper");
                r.tasks = others;
                shipper
            })
        };
        let handle = self.runtime();
        let recorder = self.recorder.clone();
        let (location, client) = (location.clone(), crate::s3::client(sdk));
        let report = builder::on(&handle, async move {
            background::stop_all(shipper_task.unwrap_or_default()).await;
            let mut shipper = crate::s3::Shipper::open(
                recorder.data_dir(),
                recorder.clone(),
                client,
                location,
                crate::s3::UploadConfig::default(),
            )
            .await?;
            shipper.ship_all(seal_timeout, &mut |_| {}).await
        })?;
        Ok(report.next_offset)
    }

    /// The runtime the background tasks run on (the Logbook's own, or the caller's).
    pub fn runtime(&self) -> Handle {
        match &self.rt {
            Some(rt) => rt.handle(),
            None => Handle::current(),
        }
    }

    /// A subscription from `from`, filtered (read it with `next_blocking` or `next_async`).
    pub fn subscribe(&self, from: From, filter: EventFilter) -> Result<Subscription, LogbookError> {
        Ok(Subscription::new(self.journal(), from, filter)?)
    }

    /// Runs `f(event, offset)` on a thread of its own for every event from `from` that
    /// `filter` matches, until close; a panic in `f` stops only this callback (logged).
    pub fn on_event<F>(
        &self,
        name: &str,
        from: From,
        filter: EventFilter,
        f: F,
    ) -> Result<(), LogbookError>
    where
        F: FnMut(&crate::event::Event, u64) + Send + 'static,
    {
        let sub = self.subscribe(from, filter)?;
        self.with_callbacks(|callbacks| callbacks.on_event(name, sub, f))
    }

    /// Runs `f(delivery)` for every record from `from` that `filter` matches (the record as
    /// stored, with its envelope: offset, timestamp), as [`Logbook::on_event`].
    pub fn on_record<F>(
        &self,
        name: &str,
        from: From,
        filter: EventFilter,
        f: F,
    ) -> Result<(), LogbookError>
    where
        F: FnMut(&crate::subscribe::Delivery) + Send + 'static,
    {
        let sub = self.subscribe(from, filter)?;
        self.with_callbacks(|callbacks| callbacks.on_record(name, sub, f))
    }

    /// Runs `f(change)` for every task or upgrade status change from `from`, as
    /// [`Logbook::on_event`].
    pub fn on_status<F>(
        &self,
        name: &str,
        from: From,
        filter: EventFilter,
        f: F,
    ) -> Result<(), LogbookError>
    where
        F: FnMut(StatusChange) + Send + 'static,
    {
        let sub = self.subscribe(from, filter)?;
        self.with_callbacks(|callbacks| callbacks.on_status(name, sub, f))
    }

    fn with_callbacks(
        &self,
        register: impl FnOnce(&mut Callbacks) -> crate::subscribe::Result<()>,
    ) -> Result<(), LogbookError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.as_mut() {
            Some(running) => Ok(register(&mut running.callbacks)?),
            None => Err(RecordError::from(crate::journal::JournalError::Closed).into()),
        }
    }

    /// Blocks until `signal` completes or the server (if one runs) stops on its own; an error
    /// if the server failed. Then call [`Logbook::close`]. Not from inside an async context.
    pub fn run_until(&self, signal: impl Future<Output = ()>) -> Result<(), LogbookError> {
        let handle = self.runtime();
        let serving = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|r| r.server.is_some());
        let server_ended = handle.block_on(async {
            if !serving {
                signal.await;
                return false;
            }
            tokio::select! {
                () = signal => false,
                () = self.server_ended() => true,
            }
        });
        if !server_ended {
            return Ok(());
        }
        let server = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(|r| r.server.take());
        match server.map(|server| handle.block_on(server.served)) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(error.into()),
            Some(Err(join)) => Err(LogbookError::Runtime(std::io::Error::other(
                join.to_string(),
            ))),
        }
    }

    /// Completes when the server task has finished (at once if none runs).
    async fn server_ended(&self) {
        let ended = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|r| r.server.as_ref())
            .map(|s| s.ended.clone());
        if let Some(mut ended) = ended {
            // An error means the sender is gone: the task ended too.
            let _ = ended.wait_for(|done| *done).await;
        }
    }

    /// Stops the server (drained), the callbacks and the background tasks (within
    /// [`background::STOP_WAIT`]), then closes the journal (flushed, fsynced) with the
    /// projection caught up. Blocks; from async code, use [`Logbook::close_async`].
    pub fn close(mut self) -> Result<(), LogbookError> {
        self.shutdown()
    }

    /// [`Logbook::close`] for async code (the blocking parts run on the blocking pool).
    pub async fn close_async(mut self) -> Result<(), LogbookError> {
        self.closed = true;
        let running = self.take_running();
        if let Some(running) = running {
            stop_running(running).await;
        }
        let recorder = self.recorder.clone();
        let closed = tokio::task::spawn_blocking(move || recorder.finish())
            .await
            .map_err(|e| LogbookError::Runtime(std::io::Error::other(e.to_string())))?;
        Ok(closed?)
    }

    fn take_running(&self) -> Option<Running> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn shutdown(&mut self) -> Result<(), LogbookError> {
        self.closed = true;
        if let Some(running) = self.take_running() {
            let handle = self.runtime();
            // From a thread of its own, so this works whether or not the caller is inside a
            // runtime (a multi-thread one drives the tasks meanwhile).
            std::thread::scope(|scope| {
                let stopping = scope.spawn(|| handle.block_on(stop_running(running)));
                let _ = stopping.join();
            });
        }
        if let Some(Rt::Own(runtime)) = self.rt.take() {
            // No task can still be recording; a blocking call an abandoned task started is not
            // waited for long.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
        Ok(self.recorder.finish()?)
    }
}

/// Stops what runs: the server first (no new requests), then callbacks and tasks together.
async fn stop_running(running: Running) {
    let Running {
        server,
        tasks,
        mut callbacks,
    } = running;
    if let Some(server) = server {
        stop_server(server).await;
    }
    let stopping = tokio::task::spawn_blocking(move || callbacks.stop());
    background::stop_all(tasks).await;
    let _ = stopping.await;
}

/// Signals the server to stop and waits until it has drained.
async fn stop_server(server: Server) {
    let _ = server.stop.send(());
    match server.served.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => crate::journal::quietly(|| tracing::warn!(%error, "server")),
        Err(error) => crate::journal::quietly(|| tracing::error!(%error, "server panicked")),
    }
    // The handlers' shared state (and its recorder handle) goes with the server.
    drop(server.state);
}

impl Drop for Logbook {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.shutdown();
        }
    }
}
