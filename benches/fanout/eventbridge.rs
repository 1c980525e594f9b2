//! Section 2: `EventBridgeConsumer` throughput against a real moto_server (tests/support/moto.rs
//! on a random 127.0.0.1 port). N `upgrade.phase_changed` events (plus the upgrade's start and
//! completion, through `ProgressTracker`) are recorded first; then the consumer runs from the
//! journal's start until its checkpoint (`Metrics::committed`) reaches the end. Side by side in
//! the same run: the same number of PutEvents calls of 10 entries made directly with the SDK
//! client, one at a time (moto's own limit, without the journal, the batching and the
//! checkpoint commits).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_eventbridge::config::Credentials;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use logbook::eventbridge::{EventBridgeConfig, EventBridgeConsumer};
use logbook::journal::JournalConfig;
use logbook::recorder::{Recorder, parse_event};
use logbook::subscribe::{DurableConsumer, EventFilter};
use logbook::tracker::ProgressTracker;

use crate::cpu;
use crate::moto::Moto;

const BUS: &str = "logbook-bench";
/// How long the consumer may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(600);

/// What section 2 measured.
pub struct Report {
    /// Lifecycle events the consumer had to send (phase changes + start + completion).
    pub lifecycle: u64,
    pub record_wall: Duration,
    pub wall: Duration,
    pub sent: u64,
    pub calls: u64,
    pub call_errors: u64,
    pub failed_entries: u64,
    pub cpu: cpu::Use,
    /// moto_server's CPU seconds per wall second during the consumer run.
    pub moto_cores: f64,
    /// Direct PutEvents calls of 10 entries: (calls, wall, moto cores).
    pub direct: (u64, Duration, f64),
    /// Median `DurableConsumer::commit` (the per-batch checkpoint, `synchronous = FULL`).
    pub commit_median: Duration,
}

/// The standard chain with what a user's environment would hold given explicitly (as
/// tests/eventbridge.rs does): never a fixed port, never the real AWS.
async fn sdk(moto: &Moto) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

fn moto_ticks(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| cpu::process_ticks(p)).sum()
}

pub fn run(phase_changes: usize) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lb-server")
        .enable_all()
        .build()?;
    let moto = Moto::start();
    let moto_pids = cpu::child_pids();
    let sdk = rt.block_on(sdk(&moto));
    let client = aws_sdk_eventbridge::Client::new(&sdk);
    rt.block_on(client.create_event_bus().name(BUS).send())?;

    let tmp = tempfile::tempdir()?;
    let recorder = Arc::new(Recorder::open(tmp.path(), JournalConfig::default())?);
    eprintln!("  recording {phase_changes} upgrade.phase_changed events...");
    let started = Instant::now();
    let tracker = ProgressTracker::new(recorder.clone(), "upg-bench");
    tracker.start_upgrade("plan-eks-1.30", "prod-eu-west-1", "preparing", None)?;
    let phases: Vec<_> = (0..phase_changes)
        .map(|p| {
            parse_event(
                format!(
                    r#"{{"type":"upgrade.phase_changed","upgrade_id":"upg-bench","phase":"traffic_shift_step_{p}"}}"#
                )
                .as_bytes(),
            )
        })
        .collect::<Result<_, _>>()?;
    for chunk in phases.chunks(1000) {
        for r in recorder.record_all(chunk)? {
            r?;
        }
    }
    tracker.complete_upgrade(Some("done"))?;
    drop(tracker);
    let record_wall = started.elapsed();
    let end = recorder.journal().next_offset();
    let lifecycle = phase_changes as u64 + 2;

    eprintln!("  EventBridgeConsumer until its checkpoint reaches offset {end}...");
    let consumer = EventBridgeConsumer::open(
        tmp.path(),
        recorder.journal(),
        EventBridgeConfig::new(BUS),
        &sdk,
    )?;
    let metrics = consumer.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cpu_before = cpu::Snapshot::take();
    let moto_before = moto_ticks(&moto_pids);
    let started = Instant::now();
    let task = rt.spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    let deadline = started + LIMIT;
    while metrics.committed.load(Ordering::Relaxed) < end {
        ensure!(
            Instant::now() < deadline,
            "checkpoint stuck at {} below {end}",
            metrics.committed.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = started.elapsed();
    let moto_cores = cpu::seconds(moto_ticks(&moto_pids) - moto_before) / wall.as_secs_f64();
    let cpu = cpu::Snapshot::take().since(&cpu_before);
    let _ = stop.send(());
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
        .context("consumer did not stop")???;

    let calls = metrics.calls.load(Ordering::Relaxed);
    eprintln!("  {calls} direct PutEvents calls of 10 entries...");
    let detail = r#"{"offset":1,"ts":"2026-11-23T00:00:00.000000Z","schema_version":1,"type":"upgrade.phase_changed","upgrade_id":"upg-bench","phase":"traffic_shift_step_1"}"#;
    let entries: Vec<PutEventsRequestEntry> = (0..10)
        .map(|_| {
            PutEventsRequestEntry::builder()
                .source("logbook")
                .detail_type("upgrade.phase_changed")
                .detail(detail)
                .event_bus_name(BUS)
                .build()
        })
        .collect();
    let moto_before = moto_ticks(&moto_pids);
    let started = Instant::now();
    rt.block_on(async {
        for _ in 0..calls {
            let out = client
                .put_events()
                .set_entries(Some(entries.clone()))
                .send()
                .await?;
            ensure!(out.failed_entry_count() == 0, "moto refused entries");
        }
        anyhow::Ok(())
    })?;
    let direct_wall = started.elapsed();
    let direct_moto =
        cpu::seconds(moto_ticks(&moto_pids) - moto_before) / direct_wall.as_secs_f64();

    // The consumer's per-batch checkpoint, alone: a second durable consumer over the same
    // journal and state.sqlite, committing every 10 lifecycle events as the consumer does.
    let mut probe = DurableConsumer::open(
        tmp.path(),
        "bench-commit",
        recorder.journal(),
        EventFilter {
            types: EventBridgeConfig::new(BUS).detail_types,
            ..EventFilter::default()
        },
    )?;
    let mut commits = Vec::new();
    'read: while commits.len() < 200 {
        for _ in 0..10 {
            if probe.try_next()?.is_none() {
                break 'read;
            }
        }
        let started = Instant::now();
        probe.commit(probe.position())?;
        commits.push(started.elapsed());
    }
    commits.sort_unstable();
    let commit_median = commits.get(commits.len() / 2).copied().unwrap_or_default();
    drop(probe);

    drop(rt);
    Arc::try_unwrap(recorder)
        .map_err(|_| anyhow::anyhow!("recorder still shared"))?
        .close()?;
    drop(moto);
    Ok(Report {
        lifecycle,
        record_wall,
        wall,
        sent: metrics.sent.load(Ordering::Relaxed),
        calls,
        call_errors: metrics.call_errors.load(Ordering::Relaxed),
        failed_entries: metrics.failed_entries.load(Ordering::Relaxed),
        cpu,
        moto_cores,
        direct: (calls, direct_wall, direct_moto),
        commit_median,
    })
}
