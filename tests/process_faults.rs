//! Process faults (issue [1/4]): `logbook serve` is SIGKILLed at random moments while several
//! HTTP clients post batches, for many rounds on one data dir. After every round the next
//! server starts on what the last one left; at the end, every event a 200 acknowledged is in
//! the journal at the offset it was acknowledged with, `verify` is clean, every view equals a
//! fresh fold of the journal, and `state.sqlite` equals a projection built from scratch.
//!
//! The kill comes after a seeded number of acknowledged batches (a condition, not a sleep), so
//! other clients' requests are in flight: some are cut mid-body, some mid-commit.
//! `LOGBOOK_KILL_ROUNDS=N` runs N rounds (default [`ROUNDS_DEFAULT`]).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logbook::journal::storage::sim::SimRng;
use logbook::journal::{Journal, JournalConfig, StartAt};
use logbook::projection::Projection;
use logbook::state::{Until, state_at};
use serde_json::Value;
use support::serve::{agent, read};

const ROUNDS_DEFAULT: u64 = 30;
const CLIENTS: u64 = 3;

/// Acknowledged events: offset → idempotency key.
type Acked = Arc<Mutex<BTreeMap<u64, String>>>;

fn line(id: &str, body: &str) -> String {
    format!(r#"{{"id":"{id}",{body}}}"#)
}

/// Posts batches for upgrade `u` until the server goes away; counts acknowledged batches.
fn client(
    url: String,
    round: u64,
    c: u64,
    acked: Acked,
    batches: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let u = format!("u-{round}-{c}");
    let mut rng = SimRng::new(round * 31 + c);
    let send = |lines: Vec<String>| -> bool {
        let ids: Vec<String> = lines
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let response = agent()
            .post(format!("{url}/v1/events"))
            .send(lines.join("\n").as_bytes());
        let Ok(response) = response else { return false };
        let (status, body) = read(response);
        if status != 200 {
            return false;
        }
        let offsets = body["offsets"].as_array().unwrap();
        // Lines already recorded (a retry) are not in `offsets`; the appended ones are, in order.
        let already: Vec<u64> = body["already_recorded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["line"].as_u64().unwrap())
            .collect();
        let appended = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| !already.contains(&(*i as u64 + 1)))
            .map(|(_, id)| id.clone());
        let mut map = acked.lock().unwrap();
        for (offset, id) in offsets.iter().zip(appended) {
            map.insert(offset.as_u64().unwrap(), id);
        }
        batches.fetch_add(1, Ordering::SeqCst);
        true
    };
    let start = vec![
        line(
            &format!("s-{u}"),
            &format!(
                r#""type":"upgrade.started","upgrade_id":"{u}","plan_id":"p","cluster_name":"c","phase":"Go""#
            ),
        ),
        line(
            &format!("a-{u}"),
            &format!(
                r#""type":"task.added","upgrade_id":"{u}","task_id":"t","name":"T","task_type":"upgrade_step""#
            ),
        ),
    ];
    if !send(start) {
        return;
    }
    let mut step = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let n = 1 + rng.below(40);
        let lines = (0..n)
            .map(|_| {
                step += 1;
                line(
                    &format!("p-{u}-{step}"),
                    &format!(r#""type":"task.progress","upgrade_id":"{u}","task_id":"t","percentage":{},"message":"step {step}""#, step % 100),
                )
            })
            .collect();
        if !send(lines) {
            return;
        }
    }
}

#[test]
fn sigkill_of_serve_under_load_loses_no_acknowledged_event() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let rounds: u64 = std::env::var("LOGBOOK_KILL_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ROUNDS_DEFAULT);
    let acked: Acked = Arc::default();
    let mut rng = SimRng::new(0x5eed);
    let started = Instant::now();
    for round in 0..rounds {
        let mut server = support::serve::start(data, &[]);
        let batches = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (url, acked, batches, stop) = (
                    server.url.clone(),
                    acked.clone(),
                    batches.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || client(url, round, c, acked, batches, stop))
            })
            .collect();
        let kill_after = 1 + rng.below(25);
        let deadline = Instant::now() + Duration::from_secs(60);
        while batches.load(Ordering::SeqCst) < kill_after {
            assert!(
                Instant::now() < deadline,
                "round {round}: clients made no progress"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        server.child.kill().unwrap(); // SIGKILL, with requests in flight
        server.child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() as u64 > rounds * 10,
        "the clients got work acknowledged"
    );

    // What the last kill left: every acknowledged event at its offset, views equal the fold.
    let server = support::serve::start(data, &[]);
    let journal = Journal::open_read_only(data.join("journal"), JournalConfig::default()).unwrap();
    let mut found = BTreeMap::new();
    let mut reader = journal.reader(StartAt::Earliest).unwrap();
    while let Some(record) = reader.next().unwrap() {
        let value: Value = serde_json::from_slice(&record.payload).unwrap();
        if let Some(id) = value["id"].as_str() {
            found.insert(record.offset, id.to_string());
        }
    }
    for (offset, id) in &acked {
        assert_eq!(
            found.get(offset),
            Some(id),
            "acknowledged event {id} at {offset} lost"
        );
    }
    let mut fold = state_at(&journal, Until::End).unwrap();
    let ids: Vec<String> = fold.upgrade_ids().map(str::to_string).collect();
    for id in &ids {
        let (status, mut view) = server.get(&format!("/v1/upgrades/{id}"));
        assert_eq!(status, 200);
        let object = view.as_object_mut().unwrap();
        object.remove("as_of");
        object.remove("sessions");
        assert_eq!(
            view,
            serde_json::to_value(fold.upgrade_view(id).unwrap()).unwrap(),
            "view of {id}"
        );
    }
    drop(server);
    let out = support::cli::logbook(data, &["verify"], "");
    assert!(out.status.success(), "{}", support::cli::text(&out.stdout));
    let own = Projection::open(data).unwrap().digest().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut fresh = Projection::open(elsewhere.path()).unwrap();
    fresh.catch_up(&journal).unwrap();
    assert_eq!(
        own,
        fresh.digest().unwrap(),
        "state.sqlite equals a fresh fold"
    );
    eprintln!(
        "{rounds} SIGKILLs in {:.1} s: {} acknowledged events, {} records, 0 lost, {} views equal",
        started.elapsed().as_secs_f64(),
        acked.len(),
        journal.next_offset(),
        ids.len()
    );
}
