//! Error injection into the journal's storage (`journal::storage::sim`): `ENOSPC` and `EIO` at
//! every write, fsync, rename, removal, truncation and directory fsync of a workload in turn.
//!
//! For every fault point the journal must fail cleanly: no hang (every producer returns within
//! a deadline), no thread panic, every waiter gets the error, later appends fail fast with the
//! cause; and after the fault is cleared, reopening finds every acknowledged record byte for
//! byte and `verify` clean. A logger that panics on every line (what a full stderr did to the
//! real `tracing` subscriber) must change nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logbook::journal::storage::Storage;
use logbook::journal::storage::sim::{Fault, Plan, SimStorage};
use logbook::journal::{Durability, Journal, JournalConfig, JournalError, StartAt};

const PRODUCERS: usize = 3;
const RECORDS_EACH: usize = 30;

fn config(sim: &SimStorage) -> JournalConfig {
    JournalConfig {
        durability: Durability::Sync,
        segment_bytes: 2048,
        segment_age: Duration::from_secs(3600),
        block_bytes: 1024,
        storage: Arc::new(sim.clone()),
        ..JournalConfig::default()
    }
}

fn payload(producer: usize, i: usize) -> Vec<u8> {
    format!(
        "{{\"type\":\"task.progress\",\"producer\":{producer},\"i\":{i},\"pad\":\"{}\"}}",
        "x".repeat(i % 40)
    )
    .into_bytes()
}

/// What a workload saw: acknowledged offsets with their payloads, and the errors returned.
#[derive(Debug, Default)]
struct Outcome {
    acked: BTreeMap<u64, Vec<u8>>,
    errors: Vec<String>,
}

/// Appends from several producer threads until each has appended its records or got an error;
/// panics if a producer does not return within the deadline (a hang).
fn workload(journal: &Arc<Journal>) -> Outcome {
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let done = Arc::new(Mutex::new(0usize));
    let mut handles = Vec::new();
    for producer in 0..PRODUCERS {
        let (journal, outcome, done) = (journal.clone(), outcome.clone(), done.clone());
        handles.push(std::thread::spawn(move || {
            for i in 0..RECORDS_EACH {
                let p = payload(producer, i);
                match journal.append(&p) {
                    Ok(offset) => {
                        outcome.lock().unwrap().acked.insert(offset, p);
                    }
                    Err(e) => {
                        outcome.lock().unwrap().errors.push(e.to_string());
                        break;
                    }
                }
            }
            *done.lock().unwrap() += 1;
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while *done.lock().unwrap() < PRODUCERS {
        assert!(Instant::now() < deadline, "a producer hung after a fault");
        std::thread::sleep(Duration::from_millis(2));
    }
    for h in handles {
        h.join().expect("producer thread");
    }
    Arc::try_unwrap(outcome).unwrap().into_inner().unwrap()
}

/// Reopens the journal on `storage` and checks every acknowledged record and `verify`.
fn check_reopened(storage: &SimStorage, dir: &Path, acked: &BTreeMap<u64, Vec<u8>>, what: &str) {
    storage.set_plan(Plan::None); // the fault is cleared (one that never fired, too)
    let journal = Journal::open(dir, config(storage))
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let mut reader = journal.reader(StartAt::Earliest).unwrap();
    let mut found = BTreeMap::new();
    while let Some(record) = reader.next().unwrap() {
        found.insert(record.offset, record.payload);
    }
    for (offset, payload) in acked {
        assert_eq!(
            found.get(offset),
            Some(payload),
            "{what}: acknowledged record {offset} lost or changed"
        );
    }
    journal.close().unwrap();
    let report = logbook::journal::verify::verify_in(storage, dir, 16 << 20, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{what}: verify found {:?}", report.damage);
}

#[test]
fn every_fault_point_fails_cleanly_and_loses_nothing_acknowledged() {
    let dir = Path::new("/sim/journal");
    // A clean run counts the fault points.
    let sim = SimStorage::new();
    let journal = Arc::new(Journal::open(dir, config(&sim)).unwrap());
    let clean = workload(&journal);
    assert!(clean.errors.is_empty(), "{:?}", clean.errors);
    Arc::try_unwrap(journal).unwrap().close().unwrap();
    let points = sim.ops();
    assert!(points > 50, "the workload passes {points} fault points");
    let mut fired = 0;
    let mut failed_cleanly = 0;
    for at in 1..=points + 5 {
        let fault = if at % 2 == 0 {
            Fault::NoSpace
        } else {
            Fault::Io
        };
        let sim = SimStorage::new();
        sim.set_plan(Plan::FailAt { at, fault });
        let journal = match Journal::open(dir, config(&sim)) {
            Ok(j) => Arc::new(j),
            Err(e) => {
                // The fault hit open itself: a clean error, and nothing was acknowledged.
                assert!(!matches!(e, JournalError::Damaged(_)), "at {at}: {e}");
                check_reopened(
                    &sim,
                    dir,
                    &BTreeMap::new(),
                    &format!("fault at {at} in open"),
                );
                fired += 1;
                continue;
            }
        };
        let outcome = workload(&journal);
        let hit = !sim.fired().is_empty();
        fired += usize::from(hit);
        if !outcome.errors.is_empty() {
            failed_cleanly += 1;
            // Failure is final: a later append fails fast with the cause.
            let started = Instant::now();
            let later = journal.append(b"{\"type\":\"after\"}");
            assert!(
                matches!(later, Err(JournalError::WriterFailed(_))),
                "at {at}: {later:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(2));
            assert!(journal.failure().is_some());
        }
        let closed = Arc::try_unwrap(journal).unwrap().close();
        if hit {
            // Either an append saw it, or the close did (a fault in sealing, or the last fsync).
            assert!(
                !outcome.errors.is_empty() || closed.is_err() || sim_fired_in_seal(&sim),
                "at {at}: the fault {:?} went unnoticed",
                sim.fired()
            );
        }
        check_reopened(&sim, dir, &outcome.acked, &format!("fault at {at}"));
    }
    assert!(
        fired as u64 >= points / 2,
        "{fired} of {points} faults fired"
    );
    assert!(failed_cleanly > 0);
    eprintln!(
        "{points} fault points: {fired} faults fired (ENOSPC and EIO in turn), {failed_cleanly} \
         runs failed their appends cleanly, 0 acknowledged records lost, every reopen verified"
    );
}

/// A fault in work no append waits for (sealing a rolled segment, removing its unsealed file)
/// fails the journal too; `close` reports it.
fn sim_fired_in_seal(sim: &SimStorage) -> bool {
    sim.fired()
        .iter()
        .any(|f| f.path.to_string_lossy().contains(".seg.zst") || f.path.ends_with("journal"))
}

/// A `tracing` subscriber whose every line panics, as the real one did when stderr was full.
struct PanickingLogger;

impl tracing::Subscriber for PanickingLogger {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        panic!("failed printing to stderr: No space left on device (os error 28)");
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_logger_that_panics_never_takes_the_journal_down() {
    // Process-wide, so the journal's own threads log through it (this test binary's only
    // other test does not depend on logging).
    let _ = tracing::subscriber::set_global_default(PanickingLogger);
    let dir = Path::new("/sim/journal");
    let sim = SimStorage::new();
    let journal = Arc::new(Journal::open(dir, config(&sim)).unwrap());
    // Rolls and seals log at debug level: the journal must carry on through them.
    let outcome = workload(&journal);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert!(
        !journal.sealed_segments().is_empty() || journal.seal_now(Duration::from_secs(5)).unwrap()
    );
    // A failure logs an error: the failure must still reach every waiter.
    let points = sim.ops();
    sim.set_plan(Plan::FailAt {
        at: points + 2,
        fault: Fault::NoSpace,
    });
    let after = workload(&journal);
    assert!(!after.errors.is_empty(), "the fault failed the appends");
    assert!(journal.failure().is_some());
    let _ = Arc::try_unwrap(journal).unwrap().close();
    let mut acked = outcome.acked;
    acked.extend(after.acked);
    check_reopened(&sim, dir, &acked, "after a panicking logger");
    let _ = Storage::exists(&sim, dir);
}

/// A repair's cut is crash-safe (journal::repair, spec 3.4): power is lost at every fault point
/// of a cut in turn. After the reboot a writer's open either finds the journal as it was (the
/// damage still there, and a second cut succeeds) or finishes the cut; either way the journal
/// then verifies, the note is at the damaged offset, and the records before it are intact.
#[test]
fn a_cut_interrupted_at_any_point_is_finished_or_never_happened() {
    use logbook::journal::repair::cut_damage;
    let dir = Path::new("/sim/journal");
    // A journal with sealed segments and a damaged record in the active segment.
    let build = || {
        let sim = SimStorage::new();
        let journal = Arc::new(Journal::open(dir, config(&sim)).unwrap());
        let outcome = workload(&journal);
        assert!(outcome.errors.is_empty());
        Arc::try_unwrap(journal).unwrap().close().unwrap();
        let mut logs: Vec<String> = Storage::list(&sim, dir)
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".log"))
            .collect();
        logs.sort();
        let name = logs.pop().unwrap();
        let at: u64 = name.trim_end_matches(".log").parse().unwrap();
        let log = dir.join(name);
        let mut bytes = sim.file(&log).unwrap();
        assert!(bytes.len() > 200, "the active segment holds records");
        bytes[70] ^= 0x01; // inside the first frame's payload
        sim.overwrite(&log, bytes).unwrap();
        (sim, outcome.acked, at)
    };
    let (sim, _, at) = build();
    let before = sim.ops();
    let cut = cut_damage(dir, &config(&sim))
        .unwrap()
        .expect("damage found");
    assert_eq!(cut.damage.offset, at);
    let points = sim.ops() - before;
    assert!(points > 5, "a cut passes {points} fault points");
    let mut finished = 0;
    for k in 1..=points {
        let (sim, acked, at) = build();
        sim.set_plan(Plan::PowerLossAt { at: sim.ops() + k });
        let _ = cut_damage(dir, &config(&sim));
        let (image, _) = sim.power_loss_image(k);
        // The writer's open finishes a committed cut, or finds the damage still there.
        let reopened = Journal::open(dir, config(&image));
        let journal = match reopened {
            Ok(journal) => journal,
            Err(logbook::journal::JournalError::Damaged(d)) => {
                assert_eq!(d.offset, at, "power lost at point {k} of the cut");
                cut_damage(dir, &config(&image))
                    .unwrap()
                    .expect("the damage, cut now");
                Journal::open(dir, config(&image)).unwrap()
            }
            Err(e) => panic!("power lost at point {k} of the cut: reopen failed: {e}"),
        };
        finished += 1;
        let mut reader = journal.reader(StartAt::Earliest).unwrap();
        let mut found = BTreeMap::new();
        while let Some(record) = reader.next().unwrap() {
            found.insert(record.offset, record.payload);
        }
        assert!(
            String::from_utf8_lossy(&found[&at]).contains("journal.repaired"),
            "point {k}: the note is at {at}"
        );
        for (offset, payload) in acked.range(..at) {
            assert_eq!(
                found.get(offset),
                Some(payload),
                "point {k}: record {offset}"
            );
        }
        journal.close().unwrap();
        let report =
            logbook::journal::verify::verify_in(&image, dir, 16 << 20, &mut |_| {}).unwrap();
        assert!(report.is_ok(), "point {k}: {:?}", report.damage);
    }
    eprintln!(
        "power lost at each of the {points} fault points of a cut: {finished} journals whole"
    );
}
