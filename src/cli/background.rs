//! The subscribers a writer process runs beside its journal (`serve`, `demo`): the S3 shipper,
//! the EventBridge consumer and the S3 follower, each a tokio task with a stop signal.
//!
//! Invariant: [`Task::stop`] signals the task and waits for it, so when it returns the task no
//! longer holds the recorder (whose last `Arc` the caller then closes).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use logbook::eventbridge::{EventBridgeConfig, EventBridgeConsumer, Metrics};
use logbook::recorder::Recorder;
use logbook::s3::{S3Location, Shipper, UploadConfig};
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

    /// Signals the task to stop and waits until it has.
    pub fn stop(self, runtime: &Runtime) {
        let _ = self.stop.send(());
        if let Err(error) = runtime.block_on(self.handle) {
            tracing::error!(%error, "{} panicked", self.name);
        }
    }
}

/// Completes when `stopped` fires (or its sender is dropped).
async fn until(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

/// Opens the S3 shipper of `data_dir` (taking the prefix's writer lease) and runs it.
pub fn start_shipper(
    runtime: &Runtime,
    data_dir: &Path,
    recorder: &Arc<Recorder>,
    location: &S3Location,
    interval: Duration,
) -> anyhow::Result<Task> {
    let shipper = open_shipper(runtime, data_dir, recorder, location)?;
    Ok(Task::spawn(runtime, "shipper", move |stopped| {
        shipper.run(interval, until(stopped))
    }))
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
