//! The embedded front door, `Logbook`: start and close under load (trackers and HTTP clients
//! at once, nothing acknowledged lost), one writer per data dir, callbacks, retention, the
//! caller's runtime, and a drop that does not hang on a stalled S3.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logbook::artifacts::NewArtifact;
use logbook::event::{ArtifactStatus, ArtifactType, Event, TaskType};
use logbook::journal::{Durability, Journal, JournalConfig, JournalError, StartAt};
use logbook::recorder::RecordError;
use logbook::subscribe::{EventFilter, From};
use logbook::{Logbook, LogbookError};
use serde_json::Value;

/// The message of the `task.progress` event at `offset`, read from the closed journal.
fn messages(data: &std::path::Path) -> std::collections::HashMap<u64, String> {
    let journal = Journal::open_read_only(data.join("journal"), JournalConfig::default()).unwrap();
    let mut reader = journal.reader(StartAt::Earliest).unwrap();
    let mut found = std::collections::HashMap::new();
    while let Some(record) = reader.next().unwrap() {
        let event = Event::parse(&record.payload).unwrap();
        if let Event::TaskProgress(p) = event {
            found.insert(record.offset, p.message.unwrap_or_default());
        }
    }
    found
}

fn started_upgrade(logbook: &Logbook, upgrade: &str) -> logbook::tracker::ProgressTracker {
    let tracker = logbook.tracker(upgrade);
    tracker.start_upgrade("plan", "prod", "Run", None).unwrap();
    tracker
        .add_task("t", "Task", TaskType::UpgradeStep, None)
        .unwrap();
    tracker.start_task("t").unwrap();
    tracker
}

#[test]
fn close_under_load_loses_nothing_acknowledged_and_fails_later_calls_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let logbook = Logbook::builder(tmp.path())
        .durability(Durability::Sync)
        .serve("127.0.0.1:0".parse().unwrap())
        .open()
        .unwrap();
    let base = format!("http://{}", logbook.local_addr().unwrap());
    // (offset, message) of every acknowledged progress event.
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let calls = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for t in 0..4 {
        let tracker = started_upgrade(&logbook, &format!("u-{t}"));
        let (acked, calls) = (acked.clone(), calls.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0..100_000u64 {
                let message = format!("tracker {t} call {i}");
                match tracker.update_task_progress("t", (i % 100) as f64, Some(&message)) {
                    Ok(offset) => acked.lock().unwrap().push((offset, message)),
                    Err(e) => return e.to_string(),
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            "ran out of calls".to_string()
        }));
    }
    for c in 0..2 {
        let upgrade = format!("h-{c}");
        started_upgrade(&logbook, &upgrade);
        let (acked, calls, base) = (acked.clone(), calls.clone(), base.clone());
        workers.push(std::thread::spawn(move || {
            let agent = ureq::Agent::new_with_defaults();
            for batch in 0..100_000u64 {
                let mut lines = Vec::new();
                let mut sent = Vec::new();
                for i in 0..20 {
                    let message = format!("http {c} batch {batch} line {i}");
                    lines.push(
                        serde_json::json!({"type": "task.progress", "upgrade_id": upgrade,
                        "task_id": "t", "percentage": 50, "message": message})
                        .to_string(),
                    );
                    sent.push(message);
                }
                let response = agent
                    .post(format!("{base}/v1/events"))
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .send(lines.join("\n") + "\n");
                let mut response = match response {
                    Ok(r) => r,
                    Err(e) => return format!("connection: {e}"),
                };
                if response.status() != 200 {
                    return format!("status {}", response.status());
                }
                let body: Value =
                    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
                let offsets = body["offsets"].as_array().unwrap();
                let mut acked = acked.lock().unwrap();
                for (offset, message) in offsets.iter().zip(sent) {
                    acked.push((offset.as_u64().unwrap(), message));
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            "ran out of batches".to_string()
        }));
    }
    // Under load for a moment (a condition with a deadline, not a fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.load(Ordering::Relaxed) < 2_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(calls.load(Ordering::Relaxed) >= 2_000, "load never started");
    let closing = Instant::now();
    logbook.close().unwrap();
    let close_took = closing.elapsed();
    assert!(
        close_took < Duration::from_secs(10),
        "close took {close_took:?}"
    );
    for worker in workers {
        let why = worker.join().unwrap();
        assert!(
            why.contains("closed") || why.starts_with("connection") || why.starts_with("status"),
            "a worker ended with {why}"
        );
    }
    let acked = acked.lock().unwrap();
    let found = messages(tmp.path());
    for (offset, message) in acked.iter() {
        assert_eq!(found.get(offset), Some(message), "acknowledged at {offset}");
    }
    eprintln!(
        "close took {close_took:?} with 6 producers running; {} acknowledged events all present",
        acked.len()
    );
    // The lock is released: the same dir opens again.
    Logbook::open(tmp.path()).unwrap().close().unwrap();
}

#[test]
fn a_second_logbook_on_the_same_dir_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Logbook::open(tmp.path()).unwrap();
    let second = Logbook::open(tmp.path()).unwrap_err();
    assert!(
        matches!(
            &second,
            LogbookError::Record(RecordError::Journal(JournalError::Locked { .. }))
        ),
        "{second:?}"
    );
    let text = second.to_string();
    assert!(text.contains(&std::process::id().to_string()), "{text}");
    drop(first);
    // Dropped without close: the dir is free again and nothing was lost.
    Logbook::open(tmp.path()).unwrap().close().unwrap();
}

#[test]
fn callbacks_see_every_event_and_a_panicking_one_is_isolated() {
    let tmp = tempfile::tempdir().unwrap();
    let logbook = Logbook::open(tmp.path()).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    logbook
        .on_event(
            "count",
            From::Earliest,
            EventFilter::all().with_types("task.*").unwrap(),
            move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
            },
        )
        .unwrap();
    logbook
        .on_event("boom", From::Earliest, EventFilter::all(), |_, _| {
            panic!("a callback that fails")
        })
        .unwrap();
    let completed = Arc::new(Mutex::new(Vec::new()));
    let statuses = completed.clone();
    logbook
        .on_status(
            "status",
            From::Earliest,
            EventFilter::all(),
            move |change| {
                statuses
                    .lock()
                    .unwrap()
                    .push(change.status.as_str().to_string());
            },
        )
        .unwrap();
    let tracker = started_upgrade(&logbook, "u-1");
    for i in 0..10 {
        tracker
            .update_task_progress("t", f64::from(i) * 10.0, None)
            .unwrap();
    }
    tracker.complete_task("t", None, None).unwrap();
    // task.added, started, 10 progress, completed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.load(Ordering::Relaxed) < 13 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(seen.load(Ordering::Relaxed), 13);
    while !completed.lock().unwrap().contains(&"completed".to_string()) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(completed.lock().unwrap().contains(&"completed".to_string()));
    // The recorder is unharmed by the panicking callback.
    tracker.complete_upgrade(None).unwrap();
    logbook.close().unwrap();
}

#[test]
fn retention_gives_artifacts_an_expiry_and_sweeps_them_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let logbook = Logbook::builder(tmp.path())
        .retention(Duration::from_millis(1))
        .retention_sweep(Duration::from_millis(50))
        .open()
        .unwrap();
    started_upgrade(&logbook, "u-1");
    let store = logbook.artifacts();
    store.create_session("s", "u-1", "prod").unwrap();
    store.create_collection("s", "logs", "Logs", None).unwrap();
    let source = tmp.path().join("a.log");
    std::fs::write(&source, "line\n").unwrap();
    let added = store
        .add_artifact(&NewArtifact {
            session_id: "s".into(),
            collection_id: "logs".into(),
            artifact_id: "a".into(),
            source,
            file_name: None,
            artifact_type: ArtifactType::LogFile,
            tags: vec![],
            task_id: None,
            description: None,
            expires_at: None,
        })
        .unwrap();
    assert!(added.expires_at.is_some(), "{added:?}");
    let file = store.path_of(&added);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = logbook
            .recorder()
            .live()
            .unwrap()
            .artifact("a")
            .unwrap()
            .unwrap()
            .status;
        if status == ArtifactStatus::Deleted && !file.exists() {
            break;
        }
        assert!(Instant::now() < deadline, "not swept: {status:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    logbook.close().unwrap();
}

#[test]
fn on_the_callers_runtime_it_closes_from_async_code() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tmp.path().to_path_buf();
    rt.block_on(async move {
        let logbook = Logbook::builder(&data)
            .runtime(tokio::runtime::Handle::current())
            .serve("127.0.0.1:0".parse().unwrap())
            .open()
            .unwrap();
        let tracker = logbook.tracker("u-1");
        tracker
            .start_upgrade_async("plan", "prod", "Run", None)
            .await
            .unwrap();
        let addr = logbook.local_addr().unwrap();
        let health = tokio::task::spawn_blocking(move || {
            ureq::get(format!("http://{addr}/v1/health"))
                .call()
                .unwrap()
                .status()
        })
        .await
        .unwrap();
        assert_eq!(health, 200);
        logbook.close_async().await.unwrap();
        assert!(tracker.change_phase_async("later").await.is_err());
    });
}

#[test]
fn dropping_it_while_s3_stalls_does_not_hang() {
    let env = support::s3::S3Env::start();
    let proxy = env.proxy();
    proxy.set(support::proxy::Fault::Stall);
    let sdk = env.rt.block_on(support::s3::sdk(&proxy.endpoint()));
    let tmp = tempfile::tempdir().unwrap();
    let location = format!("s3://{}/front", support::s3::BUCKET)
        .parse()
        .unwrap();
    let opening = Instant::now();
    let logbook = Logbook::builder(tmp.path())
        .aws(sdk)
        .s3(location)
        .serve("127.0.0.1:0".parse().unwrap())
        .open()
        .unwrap();
    let opened = opening.elapsed();
    let tracker = started_upgrade(&logbook, "u-1");
    tracker.complete_task("t", None, None).unwrap();
    let shipping = logbook.shipping().unwrap().clone();
    let dropping = Instant::now();
    drop(logbook);
    let dropped = dropping.elapsed();
    eprintln!("open with S3 stalled: {opened:?}; drop: {dropped:?}");
    assert!(opened < Duration::from_secs(10), "open took {opened:?}");
    assert!(dropped < Duration::from_secs(8), "drop took {dropped:?}");
    let health = shipping.snapshot();
    assert!(health.error.is_some(), "{health:?}");
    // Everything recorded is in the journal, which is closed and free.
    // (The tracker still holds the closed recorder: the dir is free all the same.)
    let reopened = Logbook::open(tmp.path()).unwrap();
    assert_eq!(reopened.journal().next_offset(), 4);
    reopened.close().unwrap();
    assert!(tracker.change_phase("later").is_err());
}

#[test]
fn a_server_started_later_streams_live_events_to_a_plain_websocket_client_on_the_root() {
    use futures_util::StreamExt;
    let tmp = tempfile::tempdir().unwrap();
    let logbook = Logbook::open(tmp.path()).unwrap();
    assert!(logbook.local_addr().is_none());
    let addr = logbook
        .start_server(logbook::front::ServerOptions::new(
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    assert_eq!(logbook.local_addr(), Some(addr));
    // The page is still there for a browser.
    let page = ureq::get(format!("http://{addr}/")).call().unwrap();
    assert_eq!(page.status(), 200);
    let rt = support::s3::runtime();
    let (mut socket, _) = rt
        .block_on(tokio_tungstenite::connect_async(format!("ws://{addr}/")))
        .unwrap();
    let tracker = started_upgrade(&logbook, "u-1");
    tracker
        .update_task_progress("t", 40.0, Some("live"))
        .unwrap();
    // From `latest`: the first frames are what was recorded after connecting.
    let frame = rt.block_on(async {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if message.is_text() {
                let v: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
                if v["type"] == "task.progress" {
                    return v;
                }
            }
        }
    });
    assert_eq!(frame["message"], "live");
    logbook.stop_server().unwrap();
    assert!(logbook.local_addr().is_none());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
    logbook.close().unwrap();
}
