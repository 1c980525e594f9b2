//! Subscribers (issue 4, "Subscription core" and "Callbacks"): dense catch-up → live hand-over
//! under 16 producers, start points, filters, durable consumers, isolated callbacks.
//! No fixed sleeps: results are awaited on channels with bounded timeouts.

use std::collections::HashSet;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use logbook::event::{Event, ProgressStatus};
use logbook::journal::{Durability, Journal, JournalConfig};
use logbook::subscribe::{
    CallbackState, Callbacks, DurableConsumer, EventFilter, From, StatusChange, Subject,
    SubscribeError, Subscription,
};

const WAIT: Duration = Duration::from_secs(20);

/// Small segments and blocks, so rolls and seals happen while subscribers read.
fn config() -> JournalConfig {
    JournalConfig {
        durability: Durability::None,
        segment_bytes: 64 << 10,
        block_bytes: 4 << 10,
        ..JournalConfig::default()
    }
}

fn progress(upgrade: &str, task: &str) -> String {
    format!(
        r#"{{"type":"task.progress","upgrade_id":"{upgrade}","task_id":"{task}","percentage":1.0}}"#
    )
}

fn deadline() -> Option<Instant> {
    Some(Instant::now() + WAIT)
}

/// Every delivery's offset until `n` are read.
fn offsets(sub: &mut Subscription, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            sub.next_blocking(deadline())
                .unwrap()
                .expect("delivery before the deadline")
                .offset()
        })
        .collect()
}

#[test]
fn sixteen_producers_dense_across_catch_up_and_live() {
    const PRODUCERS: usize = 16;
    const EACH: usize = 2_000;
    const TOTAL: u64 = (PRODUCERS * EACH) as u64;
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(dir.path(), config()).unwrap());
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    journal
                        .append(progress(&format!("u-{p}"), &format!("t-{i}")))
                        .unwrap();
                }
            })
        })
        .collect();
    // Subscribe mid-way: some records are on disk (some sealed), the rest still to come.
    let until = Instant::now() + WAIT;
    while journal.next_offset() < TOTAL / 4 {
        assert!(Instant::now() < until, "producers stalled");
        std::thread::yield_now();
    }
    let mut sub = Subscription::new(&journal, From::Earliest, EventFilter::all()).unwrap();
    let at_subscribe = journal.next_offset();
    let mut seen = Vec::with_capacity(TOTAL as usize);
    let mut payloads = HashSet::new();
    while (seen.len() as u64) < TOTAL {
        let d = sub.next_blocking(deadline()).unwrap().expect("no stall");
        let offset = d.offset();
        let event = d.event.expect("typed");
        payloads.insert((
            event.upgrade_id().unwrap().to_string(),
            event.task_id().unwrap().to_string(),
        ));
        seen.push(offset);
    }
    for p in producers {
        p.join().unwrap();
    }
    assert!(
        at_subscribe < TOTAL,
        "the subscription must also read live records"
    );
    assert_eq!(
        seen,
        (0..TOTAL).collect::<Vec<_>>(),
        "dense: no gap, no duplicate"
    );
    assert_eq!(payloads.len() as u64, TOTAL, "every producer's record once");
    assert_eq!(sub.position(), TOTAL);
    assert!(sub.try_next().unwrap().is_none());
}

#[test]
fn latest_sees_only_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    for i in 0..10 {
        journal.append(progress("u", &format!("t{i}"))).unwrap();
    }
    // Durability::None acknowledges once sequenced; wait until readers can see them.
    journal.wait_visible().unwrap();
    let mut sub = Subscription::new(&journal, From::Latest, EventFilter::all()).unwrap();
    assert_eq!(sub.position(), 10);
    assert!(sub.try_next().unwrap().is_none());
    for i in 10..15 {
        journal.append(progress("u", &format!("t{i}"))).unwrap();
    }
    assert_eq!(offsets(&mut sub, 5), (10..15).collect::<Vec<_>>());
    journal.wait_visible().unwrap();
    assert!(sub.next_blocking(Some(Instant::now())).unwrap().is_none());
    // An offset past the end is refused; the end itself is fine.
    assert!(matches!(
        Subscription::new(&journal, From::Offset(16), EventFilter::all()),
        Err(SubscribeError::Journal(_))
    ));
    let mut at_end = Subscription::new(&journal, From::Offset(15), EventFilter::all()).unwrap();
    journal.append(progress("u", "t15")).unwrap();
    assert_eq!(offsets(&mut at_end, 1), vec![15]);
}

#[test]
fn time_starts_at_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    for i in 0..3_000 {
        journal.append(progress("u", &format!("t{i}"))).unwrap();
    }
    journal.wait_visible().unwrap();
    let mut all = Subscription::new(&journal, From::Earliest, EventFilter::all()).unwrap();
    let stamps: Vec<i64> = (0..3_000)
        .map(|_| all.try_next().unwrap().unwrap().ts_us())
        .collect();
    for probe in [0usize, 7, 1_234, 2_999] {
        for t in [stamps[probe], stamps[probe] + 1] {
            let expected = stamps.iter().position(|&s| s >= t).map(|p| p as u64);
            let mut sub = Subscription::new(&journal, From::Time(t), EventFilter::all()).unwrap();
            let first = sub.try_next().unwrap().map(|d| d.offset());
            assert_eq!(first, expected, "From::Time({t})");
        }
    }
    let mut future = Subscription::new(&journal, From::Time(i64::MAX), EventFilter::all()).unwrap();
    assert_eq!(future.position(), 3_000);
    assert!(future.try_next().unwrap().is_none());
}

#[test]
fn filters_by_type_glob_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let payloads = [
        progress("u-a", "t1"), // 0
        r#"{"type":"upgrade.phase_changed","upgrade_id":"u-a","phase":"p"}"#.into(), // 1
        progress("u-b", "t1"), // 2
        "not an event".into(), // 3
        r#"{"type":"task.failed","upgrade_id":"u-a","task_id":"t1","error":"x"}"#.into(), // 4
        r#"{"type":"upgrade.failed","upgrade_id":"u-b","error":"x"}"#.into(), // 5
        r#"{"type":"session.created","session_id":"s-1","upgrade_id":"u-a","cluster_name":"c"}"#
            .into(), // 6
    ];
    for p in &payloads {
        journal.append(p).unwrap();
    }
    journal.wait_visible().unwrap();
    let all_of = |filter: EventFilter| {
        let mut sub = Subscription::new(&journal, From::Earliest, filter).unwrap();
        let mut got = Vec::new();
        while let Some(d) = sub.try_next().unwrap() {
            got.push(d.offset());
        }
        assert_eq!(
            sub.position(),
            payloads.len() as u64,
            "skipped records advance"
        );
        got
    };
    assert_eq!(all_of(EventFilter::all()), vec![0, 1, 2, 3, 4, 5, 6]);
    let types = |t: &str| EventFilter::parse(Some(t), None, None).unwrap();
    assert_eq!(all_of(types("task.*")), vec![0, 2, 4]);
    assert_eq!(all_of(types("task.*,upgrade.failed")), vec![0, 2, 4, 5]);
    assert_eq!(all_of(types("*.failed")), vec![4, 5]);
    assert_eq!(
        all_of(EventFilter::all().with_upgrade("u-a")),
        vec![0, 1, 4, 6]
    );
    assert_eq!(all_of(types("task.*").with_upgrade("u-a")), vec![0, 4]);
    assert_eq!(
        all_of(EventFilter::parse(None, None, Some("s-1")).unwrap()),
        vec![6]
    );
}

#[test]
fn durable_consumer_resumes_after_drop_and_reopen() {
    let data = tempfile::tempdir().unwrap();
    let jdir = data.path().join("journal");
    let journal = Journal::open(&jdir, config()).unwrap();
    for i in 0..20 {
        journal.append(progress("u", &format!("t{i}"))).unwrap();
    }
    let mut c = DurableConsumer::open(data.path(), "mailer", &journal, EventFilter::all()).unwrap();
    assert_eq!(c.committed(), 0);
    let mut handled = Vec::new();
    for _ in 0..8 {
        handled.push(c.next_blocking(deadline()).unwrap().unwrap().offset());
    }
    c.commit(c.position()).unwrap();
    // Read two more without committing: at least once, they come back.
    c.next_blocking(deadline()).unwrap().unwrap();
    c.next_blocking(deadline()).unwrap().unwrap();
    assert!(matches!(
        c.commit(11),
        Err(SubscribeError::CommitAhead { .. })
    ));
    drop(c);

    let mut c = DurableConsumer::open(data.path(), "mailer", &journal, EventFilter::all()).unwrap();
    assert_eq!(c.committed(), 8);
    assert_eq!(c.next_blocking(deadline()).unwrap().unwrap().offset(), 8);
    // Another name has its own checkpoint.
    let mut other =
        DurableConsumer::open(data.path(), "auditor", &journal, EventFilter::all()).unwrap();
    assert_eq!(other.try_next().unwrap().unwrap().offset(), 0);
    for _ in 9..15 {
        c.next_blocking(deadline()).unwrap().unwrap();
    }
    c.commit_position().unwrap();
    assert_eq!(c.committed(), 15);
    drop((c, other));
    // The projection shares the file and keeps working beside the consumer table.
    let mut projection = logbook::projection::Projection::open(data.path()).unwrap();
    projection.catch_up(&journal).unwrap();
    drop(projection);
    journal.close().unwrap();

    let journal = Journal::open(&jdir, config()).unwrap();
    for i in 20..25 {
        journal.append(progress("u", &format!("t{i}"))).unwrap();
    }
    let filter = EventFilter::parse(Some("task.*"), Some("u"), None).unwrap();
    let mut c = DurableConsumer::open(data.path(), "mailer", &journal, filter).unwrap();
    let mut sub = Subscription::new(&journal, From::Offset(15), EventFilter::all()).unwrap();
    assert_eq!(
        (15..25)
            .map(|_| c.next_blocking(deadline()).unwrap().unwrap().offset())
            .collect::<Vec<_>>(),
        offsets(&mut sub, 10)
    );
    assert!(DurableConsumer::open(data.path(), "", &journal, EventFilter::all()).is_err());
}

/// A tracing subscriber for the whole test binary that keeps what it logs.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Receives `n` offsets from `rx`.
fn receive(rx: &mpsc::Receiver<u64>, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(WAIT)
                .unwrap_or_else(|e| panic!("offset #{i}: {e}"))
        })
        .collect()
}

#[test]
fn panicking_callback_is_isolated_and_logged() {
    let logs = captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let sub = || Subscription::new(&journal, From::Earliest, EventFilter::all()).unwrap();
    let mut callbacks = Callbacks::new();
    let (good_tx, good_rx) = mpsc::channel();
    callbacks
        .on_event("counter", sub(), move |_e: &Event, offset| {
            good_tx.send(offset).unwrap();
        })
        .unwrap();
    let (bad_tx, bad_rx) = mpsc::channel();
    callbacks
        .on_event("exploder-cb", sub(), move |_e: &Event, offset| {
            assert!(offset != 5, "boom at offset 5");
            bad_tx.send(offset).unwrap();
        })
        .unwrap();
    let (status_tx, status_rx) = mpsc::channel();
    callbacks
        .on_status("statuses", sub(), move |change: StatusChange| {
            status_tx.send(change).unwrap();
        })
        .unwrap();
    for i in 0..50 {
        journal.append(progress("u", &format!("t{i}"))).unwrap();
    }
    // The panicking callback saw 0..5, then its closure (and sender) was dropped.
    let mut bad = Vec::new();
    loop {
        match bad_rx.recv_timeout(WAIT) {
            Ok(offset) => bad.push(offset),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("the panicking callback never ended"),
        }
    }
    assert_eq!(bad, vec![0, 1, 2, 3, 4]);
    // The others carry on, and so do appends.
    journal
        .append(r#"{"type":"task.completed","upgrade_id":"u","task_id":"t1"}"#)
        .unwrap();
    journal
        .append(r#"{"type":"upgrade.failed","upgrade_id":"u","error":"x"}"#)
        .unwrap();
    for i in 52..100 {
        journal.append(progress("u", &format!("t{i}"))).unwrap();
    }
    assert_eq!(receive(&good_rx, 100), (0..100).collect::<Vec<_>>());
    let changes: Vec<StatusChange> = (0..2)
        .map(|_| status_rx.recv_timeout(WAIT).unwrap())
        .collect();
    assert_eq!(
        (changes[0].offset, changes[0].subject, changes[0].status),
        (50, Subject::Task, ProgressStatus::Completed)
    );
    assert_eq!(changes[0].task_id.as_deref(), Some("t1"));
    assert_eq!(
        (
            changes[1].offset,
            changes[1].subject,
            changes[1].status,
            changes[1].kind
        ),
        (
            51,
            Subject::Upgrade,
            ProgressStatus::Failed,
            "upgrade.failed"
        )
    );
    assert_eq!(
        callbacks.state("exploder-cb"),
        Some(CallbackState::Panicked)
    );
    assert_eq!(callbacks.state("counter"), Some(CallbackState::Running));
    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logged.lines().any(|l| l.contains("ERROR")
            && l.contains("exploder-cb")
            && l.contains("boom at offset 5")),
        "panic logged with the callback's name: {logged}"
    );
    // Stopping is bounded and leaves every thread ended.
    let started = Instant::now();
    callbacks.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(callbacks.state("counter"), Some(CallbackState::Stopped));
    assert_eq!(
        callbacks.state("exploder-cb"),
        Some(CallbackState::Panicked)
    );
}

#[test]
fn blocked_callback_delays_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config()).unwrap();
    let sub = || Subscription::new(&journal, From::Earliest, EventFilter::all()).unwrap();
    let mut callbacks = Callbacks::new();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (slow_tx, slow_rx) = mpsc::channel();
    callbacks
        .on_event("slow", sub(), move |_e: &Event, offset| {
            if offset == 0 {
                // Blocks until the test opens the gate (or drops it).
                let _ = gate_rx.recv();
            }
            slow_tx.send(offset).unwrap();
        })
        .unwrap();
    let (fast_tx, fast_rx) = mpsc::channel();
    callbacks
        .on_event("fast", sub(), move |_e: &Event, offset| {
            fast_tx.send(offset).unwrap();
        })
        .unwrap();
    const N: u64 = 2_000;
    for i in 0..N {
        journal.append(progress("u", &format!("t{i}"))).unwrap();
    }
    // Every append returned while "slow" is blocked; "fast" got everything.
    assert_eq!(receive(&fast_rx, N as usize), (0..N).collect::<Vec<_>>());
    assert!(slow_rx.try_recv().is_err(), "slow is still blocked");
    assert_eq!(callbacks.position("slow"), Some(1));
    gate_tx.send(()).unwrap();
    for i in N..N + 10 {
        journal.append(progress("u", &format!("t{i}"))).unwrap();
    }
    assert_eq!(
        receive(&slow_rx, N as usize + 10),
        (0..N + 10).collect::<Vec<_>>()
    );
    assert_eq!(receive(&fast_rx, 10), (N..N + 10).collect::<Vec<_>>());
    drop(callbacks); // stops the threads
}

#[test]
fn async_subscription_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(dir.path(), config()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let filter = EventFilter::parse(Some("upgrade.*"), None, None).unwrap();
    let mut sub = Subscription::new(&journal, From::Latest, filter).unwrap();
    let writer = journal.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..100 {
            writer.append(progress("u", &format!("t{i}"))).unwrap();
        }
        writer
            .append(r#"{"type":"upgrade.completed","upgrade_id":"u"}"#)
            .unwrap();
    });
    let delivery = runtime
        .block_on(async { tokio::time::timeout(WAIT, sub.next_async()).await })
        .expect("delivered before the timeout")
        .unwrap();
    producer.join().unwrap();
    assert_eq!(delivery.offset(), 100);
    assert_eq!(delivery.event.unwrap().kind(), "upgrade.completed");
    assert_eq!(sub.position(), 101);
}
