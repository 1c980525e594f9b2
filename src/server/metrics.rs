//! `GET /metrics`: the server's and the journal's counters in the OpenMetrics text format (what
//! Prometheus scrapes), encoded by the Prometheus project's `prometheus-client`.
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `logbook_journal_records_total{durability}` | counter | records appended since open |
//! | `logbook_journal_bytes_total{durability}` | counter | bytes of frames written |
//! | `logbook_journal_batch_records` | histogram | records per group-commit batch |
//! | `logbook_journal_fsync_seconds` | histogram | fsync latency of the active segment |
//! | `logbook_journal_segments_sealed_total` | counter | segments sealed since open |
//! | `logbook_journal_next_offset` | gauge | the journal's next offset |
//! | `logbook_subscriber_lag_records{subscriber}` | gauge | records the projection, EventBridge or the S3 shipper has yet to take |
//! | `logbook_subscriber_lag_seconds{subscriber}` | gauge | age of the oldest record it has yet to take (0 when caught up) |
//! | `logbook_websocket_clients` | gauge | open `/v1/stream` (and `/`) WebSocket connections |
//! | `logbook_http_requests_total{route,status}` | counter | answered requests by matched route and status |
//!
//! Invariants: a scrape only reads (atomics, one short lock of the live state, at most one
//! record per lagging subscriber to date its lag); counting a request is one atomic add in a
//! labelled family; nothing here can block or fail the journal.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::journal::StartAt;
use crate::journal::stats::HistogramSnapshot;

/// The labels of `logbook_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route (`/v1/upgrades/{id}`), or `unmatched`.
    pub route: String,
    /// The response status.
    pub status: u16,
}

/// The server's own counters (requests), shared by every handler.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// Requests answered, by route and status.
    pub requests: Family<RequestLabels, Counter>,
}

/// Middleware: counts every answered request by matched route and status.
pub async fn count_requests(
    State(app): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// One subscriber's lag, as scraped.
#[derive(Debug)]
struct Lag {
    subscriber: &'static str,
    records: u64,
    seconds: f64,
}

/// What one scrape reads, encoded by [`Collector::encode`].
#[derive(Debug)]
struct Scrape {
    durability: &'static str,
    records: u64,
    bytes: u64,
    sealed: u64,
    next_offset: u64,
    batch: HistogramSnapshot,
    fsync: HistogramSnapshot,
    lags: Vec<Lag>,
    websocket_clients: u64,
}

fn encode_histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    // The encoder wants `(upper bound, count in that bucket)`, not cumulative counts.
    let mut below = 0;
    let buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|(le, cumulative)| {
            let count = cumulative - below;
            below = *cumulative;
            // prometheus-client writes the `+Inf` bucket for `f64::MAX` (as its own
            // histograms end), and an infinite bound as `inf`, which parsers refuse.
            let le = if le.is_infinite() { f64::MAX } else { *le };
            (le, count)
        })
        .collect();
    metric.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let durability = [("durability", self.durability)];
        for (name, help, value) in [
            (
                "logbook_journal_records",
                "Records appended to the journal since it opened.",
                self.records,
            ),
            (
                "logbook_journal_bytes",
                "Bytes of record frames written to the journal since it opened.",
                self.bytes,
            ),
        ] {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric.encode_family(&durability)?)?;
        }
        let counter = ConstCounter::new(self.sealed);
        counter.encode(encoder.encode_descriptor(
            "logbook_journal_segments_sealed",
            "Segments sealed since the journal opened.",
            None,
            counter.metric_type(),
        )?)?;
        let gauge = ConstGauge::new(self.next_offset as i64);
        gauge.encode(encoder.encode_descriptor(
            "logbook_journal_next_offset",
            "The journal's next offset (records in it).",
            None,
            gauge.metric_type(),
        )?)?;
        encode_histogram(
            &mut encoder,
            "logbook_journal_batch_records",
            "Records per group-commit batch write.",
            &self.batch,
        )?;
        encode_histogram(
            &mut encoder,
            "logbook_journal_fsync_seconds",
            "fsync latency of the active segment, in seconds.",
            &self.fsync,
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "logbook_subscriber_lag_records",
                "Records a subscriber has yet to take.",
                None,
                MetricType::Gauge,
            )?;
            for lag in &self.lags {
                let labels = [("subscriber", lag.subscriber)];
                ConstGauge::new(lag.records as i64).encode(metric.encode_family(&labels)?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "logbook_subscriber_lag_seconds",
                "Age of the oldest record a subscriber has yet to take, in seconds.",
                None,
                MetricType::Gauge,
            )?;
            for lag in &self.lags {
                let labels = [("subscriber", lag.subscriber)];
                ConstGauge::new(lag.seconds).encode(metric.encode_family(&labels)?)?;
            }
        }
        let clients = ConstGauge::new(self.websocket_clients as i64);
        clients.encode(encoder.encode_descriptor(
            "logbook_websocket_clients",
            "Open WebSocket stream connections.",
            None,
            clients.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The lag of a subscriber at `position` in a journal ending at `next`.
fn lag(app: &AppState, subscriber: &'static str, position: u64, next: u64) -> Lag {
    let records = next.saturating_sub(position);
    let seconds = match records {
        0 => 0.0,
        _ => app
            .recorder
            .journal()
            .reader(StartAt::Offset(position))
            .ok()
            .and_then(|mut reader| reader.next().ok().flatten())
            .map_or(0.0, |record| {
                (crate::timestamp::now_us() - record.ts_us).max(0) as f64 / 1e6
            }),
    };
    Lag {
        subscriber,
        records,
        seconds,
    }
}

fn scrape(app: &AppState) -> Scrape {
    let journal = app.recorder.journal();
    let stats = journal.stats();
    let next = journal.next_offset();
    let mut lags = Vec::new();
    if let Ok(live) = app.recorder.live() {
        let settled = live.settled();
        drop(live);
        lags.push(lag(app, "projection", settled, next));
    }
    if let Some(eventbridge) = &app.eventbridge {
        let committed = eventbridge.committed.load(Ordering::Relaxed);
        lags.push(lag(app, "eventbridge", committed, next));
    }
    if let Some(shipping) = &app.shipping {
        let shipped = shipping.snapshot().shipped_next_offset;
        lags.push(lag(app, "s3_shipper", shipped, next));
    }
    Scrape {
        durability: journal.config().durability.name(),
        records: stats.records(),
        bytes: stats.bytes(),
        sealed: stats.segments_sealed(),
        next_offset: next,
        batch: stats.batch_records(),
        fsync: stats.fsync_seconds(),
        lags,
        websocket_clients: app.streams.open() as u64,
    }
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let scraped = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || scrape(&app)).await
    };
    let scraped = match scraped {
        Ok(s) => s,
        Err(e) => return super::ApiError::internal(format!("scrape failed: {e}")).into_response(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scraped));
    registry.register(
        "logbook_http_requests",
        "HTTP requests answered, by matched route and status.",
        app.metrics.requests.clone(),
    );
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        return super::ApiError::internal(format!("encoding failed: {e}")).into_response();
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
