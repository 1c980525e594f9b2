//! EventBridge consumer (issue 4, "EventBridge") against a real moto_server: a bus, a rule
//! matching `{"source":["logbook"]}` and an SQS target; entries arrive with DetailType = event
//! type and the offset in Detail; killing moto mid-stream loses nothing.
//! moto is installed into ./.venv by scripts/test.sh; without it these tests fail (never skip).
//! Each test has its own moto and passes an explicit SdkConfig (no process-wide env vars).

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_eventbridge::config::Credentials;
use aws_sdk_eventbridge::types::Target;
use logbook::eventbridge::{EventBridgeConfig, EventBridgeConsumer, Metrics};
use logbook::journal::JournalConfig;
use logbook::recorder::Recorder;
use logbook::tracker::ProgressTracker;
use serde_json::Value;
use support::moto::Moto;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const BUS: &str = "logbook-bus";
const QUEUE: &str = "logbook-events";
const WAIT: Duration = Duration::from_secs(60);

/// The standard chain, with what a user's environment would hold given explicitly.
async fn sdk(moto: &Moto) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

/// Bus, queue, and a rule on the bus sending `source = logbook` events to the queue; the
/// queue's URL.
async fn set_up(sdk: &SdkConfig) -> String {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name(QUEUE)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()
        .get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap()
        .clone();
    events.create_event_bus().name(BUS).send().await.unwrap();
    events
        .put_rule()
        .name("to-sqs")
        .event_bus_name(BUS)
        .event_pattern(r#"{"source":["logbook"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("to-sqs")
        .event_bus_name(BUS)
        .targets(Target::builder().id("q").arn(arn).build().unwrap())
        .send()
        .await
        .unwrap();
    url
}

/// Every message until the queue stays empty for a while (bounded): (offset, detail-type).
async fn drain(sdk: &SdkConfig, url: &str, want: usize) -> Vec<(u64, String)> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut empty_polls = 0;
    while Instant::now() < deadline && (got.len() < want || empty_polls < 2) {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = out.messages();
        if messages.is_empty() {
            empty_polls += 1;
        } else {
            empty_polls = 0;
        }
        for m in messages {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            assert_eq!(body["source"], "logbook");
            let detail_type = body["detail-type"].as_str().unwrap().to_string();
            assert_eq!(body["detail"]["type"], detail_type.as_str());
            let offset = body["detail"]["offset"].as_u64().expect("offset in detail");
            got.push((offset, detail_type));
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    got
}

fn recorder(dir: &std::path::Path) -> Arc<Recorder> {
    Arc::new(Recorder::open(dir, JournalConfig::default()).unwrap())
}

/// Records one upgrade with tasks and phases; the offsets of its lifecycle events.
fn record_upgrade(recorder: &Arc<Recorder>, id: &str, phases: usize) -> Vec<u64> {
    let t = ProgressTracker::new(recorder.clone(), id);
    let mut lifecycle = vec![t.start_upgrade("plan", "prod", "prepare", None).unwrap()];
    t.add_task("a", "Task A", logbook::event::TaskType::UpgradeStep, None)
        .unwrap();
    t.start_task("a").unwrap();
    for p in 0..phases {
        t.update_task_progress("a", (p * 5).min(100) as f64, None)
            .unwrap();
        lifecycle.push(t.change_phase(&format!("phase-{p}")).unwrap());
    }
    t.complete_task("a", None, None).unwrap();
    lifecycle.push(t.complete_upgrade(Some("done")).unwrap());
    lifecycle
}

fn start(
    dir: &std::path::Path,
    recorder: &Recorder,
    sdk: &SdkConfig,
) -> (
    Arc<Metrics>,
    oneshot::Sender<()>,
    JoinHandle<Result<(), logbook::eventbridge::EventBridgeError>>,
) {
    let consumer =
        EventBridgeConsumer::open(dir, recorder.journal(), EventBridgeConfig::new(BUS), sdk)
            .unwrap();
    let metrics = consumer.metrics();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    (metrics, stop, task)
}

async fn wait_committed(metrics: &Metrics, end: u64) {
    let deadline = Instant::now() + WAIT;
    while metrics.committed.load(Ordering::Relaxed) < end {
        assert!(Instant::now() < deadline, "checkpoint stuck below {end}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_reach_the_sqs_target() {
    let moto = Moto::start();
    let sdk = sdk(&moto).await;
    let url = set_up(&sdk).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());
    // 3 upgrades of 1 + 4 + 1 lifecycle events: 18 entries, so more than one batch.
    let mut lifecycle = Vec::new();
    for u in 0..3 {
        lifecycle.extend(record_upgrade(&recorder, &format!("upg-{u}"), 4));
    }
    let end = lifecycle.last().unwrap() + 1;
    let (metrics, stop, task) = start(dir.path(), &recorder, &sdk);
    wait_committed(&metrics, end).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(
        metrics.calls.load(Ordering::Relaxed) >= 2,
        "at most 10 entries per call"
    );
    assert_eq!(metrics.sent.load(Ordering::Relaxed), lifecycle.len() as u64);

    let got = drain(&sdk, &url, lifecycle.len()).await;
    let mut offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets, lifecycle,
        "exactly the lifecycle events, once each"
    );
    let types: BTreeSet<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        types,
        BTreeSet::from([
            "upgrade.completed",
            "upgrade.phase_changed",
            "upgrade.started"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_killed_mid_stream_loses_nothing() {
    let mut moto = Moto::start();
    let sdk = sdk(&moto).await;
    let url = set_up(&sdk).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());

    // First incarnation: some batches go through.
    let first = record_upgrade(&recorder, "upg-1", 12);
    let end1 = first.last().unwrap() + 1;
    let (metrics, stop, task) = start(dir.path(), &recorder, &sdk);
    wait_committed(&metrics, end1).await;
    let mut delivered: BTreeSet<u64> = drain(&sdk, &url, first.len())
        .await
        .into_iter()
        .map(|(o, _)| o)
        .collect();

    // moto dies; more events arrive; the consumer retries and the checkpoint holds.
    moto.kill();
    let second = record_upgrade(&recorder, "upg-2", 12);
    let deadline = Instant::now() + WAIT;
    while metrics.call_errors.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "the consumer never retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = metrics.committed.load(Ordering::Relaxed);
    assert!(
        held <= second[0],
        "checkpoint passed an unsent event: {held}"
    );
    // Stop it during its backoff: an empty moto accepts PutEvents on a bus before the rule and
    // target exist again, which would drop entries in the emulator, not in the consumer.
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(metrics.committed.load(Ordering::Relaxed), held);

    // Same port, fresh (empty) moto: set up again, resume from the checkpoint, keep recording.
    moto.restart();
    let url = set_up(&sdk).await;
    let (metrics, stop, task) = start(dir.path(), &recorder, &sdk);
    let third = record_upgrade(&recorder, "upg-3", 2);
    let end = third.last().unwrap() + 1;
    wait_committed(&metrics, end).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let after: Vec<u64> = drain(&sdk, &url, second.len() + third.len())
        .await
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert!(
        after.iter().all(|o| *o >= end1),
        "nothing committed was resent"
    );
    delivered.extend(after);
    let all: BTreeSet<u64> = first.iter().chain(&second).chain(&third).copied().collect();
    assert!(
        all.is_subset(&delivered),
        "lost: {:?}",
        all.difference(&delivered).collect::<Vec<_>>()
    );
}

/// `logbook serve --eventbridge-bus` with AWS settings only in the (child's) environment: the
/// standard chain, `AWS_ENDPOINT_URL` included; SIGTERM stops the consumer and serve cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_consumer_from_the_environment() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let moto = Moto::start();
    let sdk = sdk(&moto).await;
    let url = set_up(&sdk).await;
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args(["--data", data.path().to_str().unwrap(), "serve"])
        .args(["--listen", "127.0.0.1:0", "--eventbridge-bus", BUS])
        .args(["--eventbridge-types", "upgrade.*"])
        .env_remove("LOGBOOK_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let body = [
        r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p-1","cluster_name":"prod","phase":"Planning"}"#,
        r#"{"type":"task.added","upgrade_id":"u-1","task_id":"t-1","name":"Drain","task_type":"upgrade_step"}"#,
        r#"{"type":"upgrade.phase_changed","upgrade_id":"u-1","phase":"Draining"}"#,
    ]
    .join("\n");
    let posted = tokio::task::spawn_blocking(move || {
        ureq::post(format!("{base}/v1/events"))
            .send(body.as_bytes())
            .map(|r| r.status().as_u16())
    })
    .await
    .unwrap();
    assert_eq!(posted.unwrap(), 200);
    let mut got = drain(&sdk, &url, 2).await;
    got.sort();
    assert_eq!(
        got,
        vec![
            (0, "upgrade.started".to_string()),
            (2, "upgrade.phase_changed".to_string())
        ]
    );
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}

/// An event whose entry can never fit a PutEvents request is skipped, the skip is journaled as
/// `subscriber.skipped` (once, even across a restart), and the events after it still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_event_is_skipped_with_a_journaled_note() {
    let moto = Moto::start();
    let sdk = sdk(&moto).await;
    let url = set_up(&sdk).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = recorder(dir.path());
    let before = record_upgrade(&recorder, "small-1", 1);
    let big = ProgressTracker::new(recorder.clone(), "big");
    let mut metadata = serde_json::Map::new();
    metadata.insert("blob".into(), Value::String("x".repeat(300 << 10)));
    let big_offset = big
        .start_upgrade("plan", "prod", "prepare", Some(metadata))
        .unwrap();
    let after = record_upgrade(&recorder, "small-2", 1);
    let end = after.last().unwrap() + 1;

    let run = |recorder: Arc<Recorder>| {
        let consumer = EventBridgeConsumer::open(
            dir.path(),
            recorder.journal(),
            EventBridgeConfig::new(BUS),
            &sdk,
        )
        .unwrap()
        .with_notes(recorder.clone());
        let metrics = consumer.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(consumer.run(async move {
            let _ = stopped.await;
        }));
        (metrics, stop, task)
    };
    let (metrics, stop, task) = run(recorder.clone());
    wait_committed(&metrics, end).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(metrics.skipped_oversized.load(Ordering::Relaxed), 1);

    let want: BTreeSet<u64> = before.iter().chain(after.iter()).copied().collect();
    let got: BTreeSet<u64> = drain(&sdk, &url, want.len())
        .await
        .into_iter()
        .map(|(offset, _)| offset)
        .collect();
    assert_eq!(got, want, "everything but the oversized event arrives");

    let notes = |recorder: &Recorder| -> Vec<Value> {
        let mut reader = recorder
            .journal()
            .reader(logbook::journal::StartAt::Earliest)
            .unwrap();
        let mut notes = Vec::new();
        while let Some(record) = reader.next().unwrap() {
            let value: Value = serde_json::from_slice(&record.payload).unwrap();
            if value["type"] == "subscriber.skipped" {
                notes.push(value);
            }
        }
        notes
    };
    let found = notes(&recorder);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["consumer"], "eventbridge");
    assert_eq!(found[0]["skipped_offset"], big_offset);
    assert_eq!(found[0]["event_type"], "upgrade.started");
    assert!(found[0]["reason"].as_str().unwrap().contains("limit"));

    // A consumer that starts over from before the skip (its checkpoint reset) notes it once.
    rusqlite::Connection::open(dir.path().join("state.sqlite"))
        .unwrap()
        .execute("DELETE FROM checkpoints WHERE name LIKE 'consumer:%'", [])
        .unwrap();
    let (metrics, stop, task) = run(recorder.clone());
    wait_committed(&metrics, end).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(
        notes(&recorder).len(),
        1,
        "the note's idempotency key holds"
    );
}
