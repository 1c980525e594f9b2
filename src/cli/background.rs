//! The subscribers a writer process runs beside its journal (`serve`, `demo`): the S3 shipper,
//! the EventBridge consumer and the S3 follower, each a tokio task with a stop signal.
//!
//! Invariants: [`stop_all`] signals every task at once and waits for them at most
//! [`STOP_WAIT`] in all (a task still running then is aborted: dropped at its next await), so a
//! stalled S3 or EventBridge cannot hold a shutdown; when it returns, no task holds the
//! recorder (whose last `Arc` the caller then closes), except a blocking call an aborted task
//! had started, which ends on its own.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use logbook::backoff::Backoff;
use logbook::eventbridge::{EventBridgeConfig, EventBridgeConsumer, Metrics};
use logbook::recorder::Recorder;
use logbook::s3::{Objects, S3Location, ShipStatus, Shipper, UploadConfig};
use logbook::type_filter::TypeFilter;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::BadInput;

/// A running background task.
pub struct Task {
    name: &'static str,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl Task {
    /// Spawns `run(stop)` on `runtime`, logging its error (with `name`) if it ends with one.
    pub fn spawn<F, E>(
        runtime: &Runtime,
        name: &'static str,
        run: impl FnOnce(oneshot::Receiver<()>) -> F,
    ) -> Task
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let future = run(stopped);
        let handle = runtime.spawn(async move {
            if let Err(error) = future.await {
                tracing::error!(%error, "{name} stopped");
            }
        });
        Task { name, stop, handle }
    }

    /// Signals the task to stop and waits until it has (at most [`STOP_WAIT`]).
    pub fn stop(self, runtime: &Runtime) {
        stop_all(runtime, vec![self]);
    }
}

/// How long [`stop_all`] waits for tasks before aborting them. The shipper gives its in-flight
/// uploads [`logbook::s3::ship::STOP_GRACE`] of it.
pub const STOP_WAIT: Duration = Duration::from_secs(3);

/// Signals every task to stop, then waits for them, at most [`STOP_WAIT`] in all; those still
/// running are aborted.
pub fn stop_all(runtime: &Runtime, tasks: Vec<Task>) {
    let mut waiting = Vec::with_capacity(tasks.len());
    for task in tasks {
        let _ = task.stop.send(());
        waiting.push((task.name, task.handle));
    }
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        for (name, mut handle) in waiting {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "{name} panicked"),
                Err(_) => {
                    tracing::warn!("{name} did not stop within {STOP_WAIT:?}; abandoned");
                    handle.abort();
                    let _ = handle.await;
                }
            }
        }
    });
}

/// Completes when `stopped` fires (or its sender is dropped).
async fn until(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

/// How long starting waits for S3 to answer before it goes on without (then the shipper's task
/// keeps trying).
pub const OPEN_WAIT: Duration = Duration::from_secs(5);

/// Opens the S3 shipper of `data_dir` (taking the prefix's writer lease) and runs it; the task
/// and the shipper's status (for `/v1/health`). A refusal (fenced, diverged) fails here, before
/// anything runs; an S3 that does not answer does not: the task keeps opening the shipper with
/// [`Backoff`] (the status says why meanwhile) and ships once S3 answers.
pub fn start_shipper(
    runtime: &Runtime,
    data_dir: &Path,
    recorder: &Arc<Recorder>,
    location: &S3Location,
    interval: Duration,
) -> anyhow::Result<(Task, Arc<ShipStatus>)> {
    let sdk = super::aws::sdk_config(runtime, "--s3")?;
    let objects = Objects::new(logbook::s3::client(&sdk), location.clone());
    let writer_id = logbook::s3::lease::writer_id(data_dir).map_err(super::aws::s3_error)?;
    let status = Arc::new(ShipStatus::new(objects.clone(), &writer_id, 0));
    let open = {
        let (data_dir, recorder, status) =
            (data_dir.to_path_buf(), recorder.clone(), status.clone());
        move || {
            let (data_dir, recorder, objects, status) = (
                data_dir.clone(),
                recorder.clone(),
                objects.clone(),
                status.clone(),
            );
            async move {
                Shipper::open_reporting(
                    &data_dir,
                    recorder,
                    objects,
                    UploadConfig::default(),
                    status,
                )
                .await
            }
        }
    };
    let first = match runtime.block_on(async { tokio::time::timeout(OPEN_WAIT, open()).await }) {
        Ok(Ok(shipper)) => Some(shipper),
        Err(_) => {
            tracing::warn!(
                "S3 did not answer within {OPEN_WAIT:?}; serving anyway, shipping starts once it does"
            );
            status.round_failed(&format!("S3 did not answer within {OPEN_WAIT:?}"));
            None
        }
        Ok(Err(error)) if error.is_transient() => {
            tracing::warn!(%error, "S3 does not answer; serving anyway, shipping starts once it does");
            status.round_failed(&error.to_string());
            None
        }
        Ok(Err(error)) => return Err(super::aws::s3_error(error)),
    };
    let reporting = status.clone();
    let task = Task::spawn(runtime, "shipper", move |mut stopped| async move {
        let shipper = match first {
            Some(shipper) => shipper,
            None => {
                let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
                loop {
                    tokio::select! {
                        _ = &mut stopped => return Ok(()),
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                    match open().await {
                        Ok(shipper) => break shipper,
                        Err(error) if error.is_transient() => {
                            reporting.round_failed(&error.to_string());
                        }
                        Err(error) => {
                            reporting.stopped(&error.to_string());
                            return Err(error);
                        }
                    }
                }
            }
        };
        shipper.run(interval, until(stopped)).await
    });
    Ok((task, status))
}

/// Opens the S3 shipper of `data_dir` (bad input errors as such).
pub fn open_shipper(
    runtime: &Runtime,
    data_dir: &Path,
    recorder: &Arc<Recorder>,
    location: &S3Location,
) -> anyhow::Result<Shipper> {
    let sdk = super::aws::sdk_config(runtime, "--s3")?;
    runtime
        .block_on(Shipper::open(
            data_dir,
            recorder.clone(),
            logbook::s3::client(&sdk),
            location.clone(),
            UploadConfig::default(),
        ))
        .map_err(super::aws::s3_error)
}

/// What the EventBridge consumer sends.
pub struct EventBridgeArgs<'a> {
    /// The bus.
    pub bus: &'a str,
    /// The entries' Source.
    pub source: &'a str,
    /// The event types sent (comma-separated globs).
    pub types: &'a str,
}

/// Opens the durable consumer `eventbridge` of `data_dir` and runs it (skips are journaled
/// through `recorder`); its counters.
pub fn start_eventbridge(
    runtime: &Runtime,
    data_dir: &Path,
    recorder: &Arc<Recorder>,
    args: &EventBridgeArgs<'_>,
) -> anyhow::Result<(Task, Arc<Metrics>)> {
    let mut config = EventBridgeConfig::new(args.bus);
    config.source = args.source.to_string();
    config.detail_types = TypeFilter::parse(args.types).map_err(BadInput)?;
    let sdk = super::aws::sdk_config(runtime, "--eventbridge-bus")?;
    let consumer = EventBridgeConsumer::open(data_dir, recorder.journal(), config, &sdk)?
        .with_notes(recorder.clone());
    let metrics = consumer.metrics();
    let task = Task::spawn(runtime, "eventbridge consumer", move |stopped| {
        consumer.run(until(stopped))
    });
    Ok((task, metrics))
}
