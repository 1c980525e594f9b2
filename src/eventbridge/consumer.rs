//! [`EventBridgeConsumer`]: journal → PutEvents, checkpointed; see the module docs of
//! [`crate::eventbridge`].

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use tracing::Instrument;

use crate::envelope::to_json_line;
use crate::event::{Event, SubscriberSkipped};
use crate::journal::Journal;
use crate::recorder::Recorder;
use crate::subscribe::{Delivery, DurableConsumer, EventFilter, SubscribeError};
use crate::type_filter::TypeFilter;

use super::batch::{self, Batch, EntryOutcome};
use crate::backoff::Backoff;

/// First PutEvents retry delay (doubled per failure, jittered: [`Backoff`]).
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest PutEvents retry delay.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// The lifecycle events sent by default.
pub const DEFAULT_TYPES: &str =
    "upgrade.started,upgrade.completed,upgrade.failed,upgrade.phase_changed";

/// What to send where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBridgeConfig {
    /// The event bus (name or ARN).
    pub bus_name: String,
    /// The entries' `Source` (default `logbook`).
    pub source: String,
    /// Which event types are sent (default [`DEFAULT_TYPES`]).
    pub detail_types: TypeFilter,
    /// The durable consumer's name in `state.sqlite` (default `eventbridge`).
    pub consumer_name: String,
}

impl EventBridgeConfig {
    /// The defaults, sending to `bus_name`.
    pub fn new(bus_name: impl Into<String>) -> EventBridgeConfig {
        EventBridgeConfig {
            bus_name: bus_name.into(),
            source: "logbook".into(),
            detail_types: TypeFilter::parse(DEFAULT_TYPES).unwrap_or_default(),
            consumer_name: "eventbridge".into(),
        }
    }
}

/// Counters of a running consumer (shared: read them while it runs).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Entries AWS accepted.
    pub sent: AtomicU64,
    /// PutEvents calls made (retries included).
    pub calls: AtomicU64,
    /// Entries resent because the response marked them failed.
    pub failed_entries: AtomicU64,
    /// Calls that failed as a whole (transport or service error) and were retried.
    pub call_errors: AtomicU64,
    /// Events skipped because their entry alone exceeds the request limit.
    pub skipped_oversized: AtomicU64,
    /// The last committed next offset.
    pub committed: AtomicU64,
}

/// Why the consumer stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EventBridgeError {
    /// The journal or `state.sqlite` failed (or the journal was closed).
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
}

/// One entry on its way, with the offset it came from.
#[derive(Debug, Clone)]
struct Pending {
    offset: u64,
    entry: PutEventsRequestEntry,
}

/// The consumer; see the module docs of [`crate::eventbridge`].
#[derive(Debug)]
pub struct EventBridgeConsumer {
    config: EventBridgeConfig,
    client: Client,
    consumer: DurableConsumer,
    metrics: Arc<Metrics>,
    /// A delivery read but not fitting in the previous batch.
    carry: Option<(Pending, usize)>,
    /// Where a skipped event is noted (`subscriber.skipped`), when the consumer runs beside
    /// the journal's writer.
    notes: Option<Arc<Recorder>>,
}

impl EventBridgeConsumer {
    /// Opens the durable consumer `config.consumer_name` in `data_dir/state.sqlite` over
    /// `journal`, sending with a client built from `sdk` (see [`super::load_sdk_config`]).
    pub fn open(
        data_dir: impl AsRef<Path>,
        journal: &Journal,
        config: EventBridgeConfig,
        sdk: &aws_config::SdkConfig,
    ) -> Result<EventBridgeConsumer, EventBridgeError> {
        let filter = EventFilter {
            types: config.detail_types.clone(),
            ..EventFilter::default()
        };
        let consumer = DurableConsumer::open(data_dir, &config.consumer_name, journal, filter)?;
        let metrics = Arc::new(Metrics::default());
        metrics
            .committed
            .store(consumer.committed(), Ordering::Relaxed);
        Ok(EventBridgeConsumer {
            config,
            client: Client::new(sdk),
            consumer,
            metrics,
            carry: None,
            notes: None,
        })
    }

    /// Notes every skipped event in the journal through `recorder` (the writer of the journal
    /// this consumer reads), as a `subscriber.skipped` system event recorded before the
    /// checkpoint moves past it.
    pub fn with_notes(mut self, recorder: Arc<Recorder>) -> EventBridgeConsumer {
        self.notes = Some(recorder);
        self
    }

    /// The shared counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Sends until `stop` completes (then returns `Ok`, the checkpoint at the last success) or
    /// the journal fails or closes (an error).
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<(), EventBridgeError> {
        tokio::pin!(stop);
        loop {
            let batch = tokio::select! {
                biased;
                () = &mut stop => return Ok(()),
                batch = self.gather() => batch?,
            };
            let span = tracing::info_span!(
                "eventbridge_batch",
                bus = %self.config.bus_name,
                entries = batch.len(),
                bytes = batch.bytes(),
            );
            let done = tokio::select! {
                biased;
                () = &mut stop => return Ok(()),
                done = self.send(batch).instrument(span) => done,
            };
            if done {
                // Past the batch, and past the records the filter skipped after it.
                let next = match &self.carry {
                    Some((pending, _)) => pending.offset,
                    None => self.consumer.position(),
                };
                if next > self.consumer.committed() {
                    self.consumer.commit(next)?;
                    self.metrics.committed.store(next, Ordering::Relaxed);
                }
            }
        }
    }

    /// Waits for at least one sendable entry, then takes what is already committed to the
    /// journal until the batch is full. Oversized events are skipped here.
    async fn gather(&mut self) -> Result<Batch<Pending>, EventBridgeError> {
        let mut batch = Batch::new();
        if let Some((pending, size)) = self.carry.take() {
            // It fitted nowhere but alone, and alone it fits (oversized ones never get here).
            if let Err(pending) = batch.try_push(pending, size) {
                self.carry = Some((pending, size));
            }
        }
        while batch.is_empty() {
            let delivery = self.consumer.next_async().await?;
            if let Some((pending, size)) = self.entry(&delivery).await
                && let Err(pending) = batch.try_push(pending, size)
            {
                self.carry = Some((pending, size));
            }
        }
        while self.carry.is_none() && !batch.is_full() {
            let Some(delivery) = self.consumer.try_next()? else {
                break;
            };
            if let Some((pending, size)) = self.entry(&delivery).await
                && let Err(pending) = batch.try_push(pending, size)
            {
                self.carry = Some((pending, size));
            }
        }
        Ok(batch)
    }

    /// The entry for `delivery` and its counted size; `None` (logged, counted, noted) if too
    /// large.
    async fn entry(&mut self, delivery: &Delivery) -> Option<(Pending, usize)> {
        let offset = delivery.offset();
        let detail_type = delivery
            .event
            .as_ref()
            .map(|e| e.kind().to_string())
            .or_else(|| crate::envelope::event_type(&delivery.record.payload))
            .unwrap_or_else(|| "unknown".into());
        let detail = to_json_line(&delivery.record);
        let size = batch::entry_size(
            &self.config.source,
            &detail_type,
            &detail,
            &self.config.bus_name,
        );
        if batch::too_large(size) {
            self.metrics
                .skipped_oversized
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                offset,
                detail_type,
                size,
                limit = batch::MAX_BATCH_BYTES,
                "eventbridge: event too large for PutEvents, skipped (not sent)"
            );
            self.note_skipped(offset, detail_type, size).await;
            return None;
        }
        let entry = PutEventsRequestEntry::builder()
            .source(&self.config.source)
            .detail_type(detail_type)
            .detail(detail)
            .event_bus_name(&self.config.bus_name)
            .build();
        Some((Pending { offset, entry }, size))
    }

    /// Records `subscriber.skipped` for the event at `offset` (if notes are on). A failure to
    /// note is logged: the skip itself stands (the event can never be sent).
    async fn note_skipped(&mut self, offset: u64, event_type: String, size: usize) {
        let Some(recorder) = &self.notes else {
            return;
        };
        let consumer = &self.config.consumer_name;
        let note = Event::SubscriberSkipped(SubscriberSkipped {
            id: Some(format!("skipped-{consumer}-{offset}")),
            consumer: consumer.clone(),
            skipped_offset: offset,
            event_type,
            reason: format!(
                "its EventBridge entry is {size} bytes, over the {} byte request limit",
                batch::MAX_BATCH_BYTES
            ),
        });
        match recorder.record_system_async(&note).await {
            Ok(recorded) => tracing::info!(
                offset,
                note_offset = recorded.offset(),
                "eventbridge: skip recorded as subscriber.skipped"
            ),
            Err(error) => tracing::error!(offset, %error, "eventbridge: could not record the skip"),
        }
    }

    /// Sends `batch` until every entry is accepted; returns `true` then. Only the failed entries
    /// are resent; while some fail, the checkpoint moves up to the first of them.
    async fn send(&mut self, batch: Batch<Pending>) -> bool {
        let mut todo = batch.into_items();
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        loop {
            self.metrics.calls.fetch_add(1, Ordering::Relaxed);
            let request = self
                .client
                .put_events()
                .set_entries(Some(todo.iter().map(|p| p.entry.clone()).collect()));
            match request.send().await {
                Ok(output) => {
                    let outcomes: Vec<EntryOutcome> = output
                        .entries()
                        .iter()
                        .map(|r| match r.error_code() {
                            None => EntryOutcome::Ok,
                            Some(code) => EntryOutcome::Failed {
                                code: code.to_string(),
                                message: r.error_message().unwrap_or_default().to_string(),
                            },
                        })
                        .collect();
                    let resend = batch::to_resend(todo.len(), &outcomes);
                    let accepted = todo.len() - resend.len();
                    self.metrics
                        .sent
                        .fetch_add(accepted as u64, Ordering::Relaxed);
                    if resend.is_empty() {
                        tracing::debug!(entries = accepted, "eventbridge: batch sent");
                        return true;
                    }
                    for (i, outcome) in outcomes.iter().enumerate() {
                        if let (EntryOutcome::Failed { code, message }, Some(p)) =
                            (outcome, todo.get(i))
                        {
                            tracing::warn!(
                                offset = p.offset,
                                code,
                                message,
                                "eventbridge: entry failed, will resend"
                            );
                        }
                    }
                    self.metrics
                        .failed_entries
                        .fetch_add(resend.len() as u64, Ordering::Relaxed);
                    todo = resend
                        .into_iter()
                        .filter_map(|i| todo.get(i).cloned())
                        .collect();
                    // Everything before the first failed entry is delivered.
                    if let Some(first) = todo.first()
                        && first.offset > self.consumer.committed()
                        && self.consumer.commit(first.offset).is_ok()
                    {
                        self.metrics
                            .committed
                            .store(first.offset, Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    self.metrics.call_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        error = %aws_sdk_eventbridge::error::DisplayErrorContext(&error),
                        entries = todo.len(),
                        "eventbridge: PutEvents failed, will retry"
                    );
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}
