//! How a [`Shipper`] is driven: one round and one artifact pass ([`Shipper::ship_once`]),
//! everything recorded so far (`ship --once`: [`Shipper::ship_all`]), or as a task
//! ([`Shipper::run`]): a round whenever the journal seals past the shipped
//! end ([`Journal::wait_sealed_beyond`](crate::journal::Journal::wait_sealed_beyond)) and every
//! interval, never by polling; a failed round retried after a [`Backoff`]; the artifact queue
//! in its own loop beside the rounds ([`ArtifactQueue::run`]), so neither waits for the other.
//!
//! Invariants: a stop ends both loops within [`STOP_GRACE`] (each finishes or abandons what it
//! is doing: see [`crate::s3::stop`]); a refusal of either ends both and leaves the status
//! `stopped` with its reason.

use std::time::Duration;

use super::{STOP_GRACE, ShipProgress, ShipReport, Shipper};
use crate::backoff::Backoff;
use crate::s3::S3Error;
use crate::s3::queue::ArtifactQueue;
use crate::s3::stop::Stop;

/// First wait after a failed round.
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait after failed rounds.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

impl Shipper {
    /// One round, then one artifact pass (see the module docs).
    pub async fn ship_once(&mut self) -> Result<ShipReport, S3Error> {
        let mut report = self.ship_round(&Stop::never()).await?;
        if let Some(queue) = &mut self.queue {
            report.artifacts = queue.pass(&Stop::never()).await?;
        }
        Ok(report)
    }

    /// Ships everything recorded so far: uploads the pending artifacts first (so the events
    /// recording their uploads are shipped too), seals the active segment (waiting up to
    /// `seal_timeout`), then ships every sealed segment. `progress` hears the backlog once, then
    /// each segment shipped. `logbook ship --once` and `demo --s3` end with this.
    pub async fn ship_all(
        &mut self,
        seal_timeout: Duration,
        progress: &mut (dyn FnMut(ShipProgress) + Send),
    ) -> Result<ShipReport, S3Error> {
        let mut report = ShipReport::default();
        self.check_prefix().await?;
        if let Some(queue) = &mut self.queue {
            report.artifacts = queue.pass(&Stop::never()).await?;
        }
        if !seal_timeout.is_zero() {
            let recorder = self.recorder.clone();
            let sealed =
                tokio::task::spawn_blocking(move || recorder.journal().seal_now(seal_timeout))
                    .await
                    .map_err(|e| {
                        S3Error::io(self.recorder.journal().dir(), std::io::Error::other(e))
                    })??;
            if !sealed {
                crate::journal::quietly(|| {
                    tracing::warn!(
                        ?seal_timeout,
                        "the active segment did not seal in time; shipping what is sealed"
                    );
                });
            }
        }
        let pending = self.pending();
        progress(ShipProgress::Backlog {
            segments: pending.len() as u64,
            bytes: pending.iter().map(|(_, len)| len).sum(),
        });
        for (segment, _) in pending {
            let bytes = match self.ship_segment(&segment).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    if !error.is_fencing() {
                        let _ = self.write_head().await;
                    }
                    return Err(error);
                }
            };
            report.segments += 1;
            report.bytes += bytes;
            progress(ShipProgress::Segment {
                first: segment.first,
                last: segment.last,
                bytes,
            });
        }
        self.write_head().await?;
        report.next_offset = self.shipped.next_offset;
        Ok(report)
    }

    /// Ships until `stop` completes: a round whenever the journal seals past the shipped end
    /// and every `interval`, failed rounds retried with backoff, the artifact queue beside it.
    /// Returns an error only for refusals that waiting cannot fix (fenced, lease lost,
    /// diverged, a damaged local segment, the journal failing); `/v1/health` shows it too.
    pub async fn run(
        mut self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), S3Error> {
        let (signal, stopping) = Stop::channel();
        let status = self.status.clone();
        let queue = self.queue.take();
        let recorder = self.recorder.clone();
        let work = async {
            let segments = self.segment_loop(interval, stopping.clone());
            let artifacts = artifacts(queue, recorder, interval, stopping.clone());
            tokio::try_join!(segments, artifacts).map(|_| ())
        };
        tokio::pin!(work, stop);
        let result = tokio::select! {
            result = &mut work => result,
            () = &mut stop => {
                signal.set();
                match tokio::time::timeout(STOP_GRACE, &mut work).await {
                    Ok(result) => result,
                    Err(_) => {
                        crate::journal::quietly(|| {
                            tracing::warn!("shipping abandoned in-flight work to stop in time");
                        });
                        Ok(())
                    }
                }
            }
        };
        if let Err(error) = &result {
            let text = error.to_string();
            status.stopped(&text);
            crate::journal::quietly(|| {
                tracing::error!(error = text, "shipping to S3 stopped");
            });
        }
        result
    }

    /// Rounds until `stop` (see [`Shipper::run`]).
    async fn segment_loop(&mut self, interval: Duration, mut stop: Stop) -> Result<(), S3Error> {
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        let mut journal_open = true;
        let recorder = self.recorder.clone();
        loop {
            if stop.is_set() {
                return Ok(());
            }
            let retry = match self.ship_round(&stop).await {
                Ok(report) => {
                    if report.segments > 0 {
                        crate::journal::quietly(|| {
                            tracing::info!(
                                segments = report.segments,
                                bytes = report.bytes,
                                next_offset = report.next_offset,
                                "shipped"
                            );
                        });
                    }
                    self.status.round_ok();
                    backoff.reset();
                    None
                }
                Err(S3Error::Stopped) => return Ok(()),
                Err(error) if error.is_transient() => {
                    let delay = backoff.next_delay();
                    let text = error.to_string();
                    self.status.round_failed(&text);
                    crate::journal::quietly(|| {
                        tracing::warn!(
                            error = text,
                            retry_in_ms = delay.as_millis() as u64,
                            "shipping failed; will retry"
                        );
                    });
                    Some(delay)
                }
                Err(error) => return Err(error),
            };
            match retry {
                Some(delay) => tokio::select! {
                    () = stop.wait() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                },
                None => tokio::select! {
                    () = stop.wait() => return Ok(()),
                    () = tokio::time::sleep(interval) => {}
                    sealed = recorder.journal().wait_sealed_beyond(self.shipped.next_offset), if journal_open => {
                        journal_open = sealed;
                    }
                },
            }
        }
    }
}

/// Runs `queue` until `stop`, if artifacts are uploaded at all.
async fn artifacts(
    queue: Option<ArtifactQueue>,
    recorder: std::sync::Arc<crate::recorder::Recorder>,
    interval: Duration,
    stop: Stop,
) -> Result<(), S3Error> {
    match queue {
        Some(queue) => queue.run(recorder, interval, stop).await,
        None => Ok(()),
    }
}
