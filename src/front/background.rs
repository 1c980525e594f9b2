//! The background tasks a [`Logbook`](super::Logbook) runs beside its journal: the S3 shipper,
//! the EventBridge consumer, the S3 follower and the artifact retention sweep, each a tokio task
//! with a stop signal.
//!
//! Invariants: [`stop_all`] signals every task at once and waits for them at most
//! [`STOP_WAIT`] in all (a task still running then is aborted: dropped at its next await), so a
//! stalled S3 or EventBridge cannot hold a shutdown; when it returns, no task holds the
//! recorder, except a blocking call an aborted task had started, which ends on its own. A task
//! that fails logs why (through [`crate::journal::quietly`]: logging cannot take anything down)
//! and ends; it never fails the journal.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::LogbookError;
use crate::artifacts::ArtifactStore;
use crate::backoff::Backoff;
use crate::eventbridge::{EventBridgeConfig, EventBridgeConsumer, Metrics};
use crate::recorder::Recorder;
use crate::s3::{Follower, Objects, S3Location, ShipStatus, Shipper, UploadConfig};

/// A running background task.
#[derive(Debug)]
pub struct Task {
    name: &'static str,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl Task {
    /// Spawns `run(stop)` on `runtime`, logging its error (with `name`) if it ends with one.
    pub fn spawn<F, E>(
        runtime: &Handle,
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
                crate::journal::quietly(|| tracing::error!(%error, "{name} stopped"));
            }
        });
        Task { name, stop, handle }
    }

    /// The task's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// How long [`stop_all`] waits for tasks before aborting them. The shipper gives its in-flight
/// uploads [`crate::s3::ship::STOP_GRACE`] of it.
pub const STOP_WAIT: Duration = Duration::from_secs(3);

/// Signals every task to stop, then waits for them, at most [`STOP_WAIT`] in all; those still
/// running are aborted. Async: the caller decides how to wait (see [`super::Logbook::close`]).
pub async fn stop_all(tasks: Vec<Task>) {
    let mut waiting = Vec::with_capacity(tasks.len());
    for task in tasks {
        let _ = task.stop.send(());
        waiting.push((task.name, task.handle));
    }
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    for (name, mut handle) in waiting {
        match tokio::time::timeout_at(deadline, &mut handle).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                crate::journal::quietly(|| tracing::error!(%error, "{name} panicked"))
            }
            Err(_) => {
                crate::journal::quietly(|| {
                    tracing::warn!("{name} did not stop within {STOP_WAIT:?}; abandoned")
                });
                handle.abort();
                let _ = handle.await;
            }
        }
    }
}

/// Completes when `stopped` fires (or its sender is dropped).
pub async fn until(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

/// How long starting waits for S3 to answer before it goes on without (then the shipper's task
/// keeps trying).
pub const OPEN_WAIT: Duration = Duration::from_secs(5);

/// Opens the S3 shipper of `data_dir` (taking the prefix's writer lease) and runs it; the task
/// and the shipper's status (for `/v1/health`). A refusal (fenced, diverged) fails here, before
/// anything runs; an S3 that does not answer does not: the task keeps opening the shipper with
/// [`Backoff`] (the status says why meanwhile) and ships once S3 answers.
pub async fn start_shipper(
    runtime: &Handle,
    sdk: &aws_config::SdkConfig,
    data_dir: &Path,
    recorder: &Arc<Recorder>,
    location: &S3Location,
    interval: Duration,
) -> Result<(Task, Arc<ShipStatus>), LogbookError> {
    let objects = Objects::new(crate::s3::client(sdk), location.clone());
    let writer_id = crate::s3::lease::writer_id(data_dir)?;
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
    let first = match tokio::time::timeout(OPEN_WAIT, open()).await {
        Ok(Ok(shipper)) => Some(shipper),
        Err(_) => {
            crate::journal::quietly(|| {
                tracing::warn!(
                    "S3 did not answer within {OPEN_WAIT:?}; going on, shipping starts once it does"
                )
            });
            status.round_failed(&format!("S3 did not answer within {OPEN_WAIT:?}"));
            None
        }
        Ok(Err(error)) if error.is_transient() => {
            crate::journal::quietly(
                || tracing::warn!(%error, "S3 does not answer; going on, shipping starts once it does"),
            );
            status.round_failed(&error.to_string());
            None
        }
        Ok(Err(error)) => return Err(error.into()),
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

/// Opens the durable consumer `eventbridge` of `data_dir` and runs it (skips are journaled
/// through `recorder`); its counters.
pub fn start_eventbridge(
    runtime: &Handle,
    sdk: &aws_config::SdkConfig,
    data_dir: &Path,
    recorder: &Arc<Recorder>,
    config: EventBridgeConfig,
) -> Result<(Task, Arc<Metrics>), LogbookError> {
    let consumer = EventBridgeConsumer::open(data_dir, recorder.journal(), config, sdk)?
        .with_notes(recorder.clone());
    let metrics = consumer.metrics();
    let task = Task::spawn(runtime, "eventbridge consumer", move |stopped| {
        consumer.run(until(stopped))
    });
    Ok((task, metrics))
}

/// Polls the followed prefix every `interval` and makes what the follower applied visible
/// (views, streams, projection) until stopped.
pub fn start_follower(
    runtime: &Handle,
    mut follower: Follower,
    recorder: Arc<Recorder>,
    interval: Duration,
) -> Task {
    Task::spawn(runtime, "follower", move |mut stop| async move {
        loop {
            match follower.poll_segments().await {
                Ok(0) => {}
                Ok(applied) => {
                    let recorder = recorder.clone();
                    let refreshed = tokio::task::spawn_blocking(move || recorder.refresh()).await;
                    crate::journal::quietly(|| match refreshed {
                        Ok(Ok(end)) => {
                            tracing::info!(applied, next_offset = end, "follow: applied")
                        }
                        Ok(Err(error)) => tracing::error!(%error, "follow: refresh failed"),
                        Err(error) => tracing::error!(%error, "follow: refresh task failed"),
                    });
                }
                Err(error) if error.is_transient() => {
                    crate::journal::quietly(
                        || tracing::warn!(%error, "follow: poll failed; will retry"),
                    );
                }
                Err(error) => return Err(error),
            }
            tokio::select! {
                _ = &mut stop => return Ok::<(), crate::s3::S3Error>(()),
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}

/// Applies the store's retention every `every` (expired artifacts: `artifact.deleted`, then
/// the file removed), the first time right away.
pub fn start_retention(runtime: &Handle, store: ArtifactStore, every: Duration) -> Task {
    Task::spawn(runtime, "retention", move |mut stop| async move {
        loop {
            let now = crate::timestamp::now_us();
            match store.apply_retention_async(now).await {
                Ok(deleted) if !deleted.is_empty() => crate::journal::quietly(|| {
                    tracing::info!(
                        count = deleted.len(),
                        "retention: expired artifacts deleted"
                    )
                }),
                Ok(_) => {}
                Err(error) if error.is_unavailable() => return Err(error),
                Err(error) => crate::journal::quietly(
                    || tracing::warn!(%error, "retention: a sweep failed; will retry"),
                ),
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                () = tokio::time::sleep(every) => {}
            }
        }
    })
}
