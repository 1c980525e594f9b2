//! The recorder after a journal failure (finding 2 of issue [1/4]): views showed events that
//! were never recorded (`as_of` ahead of the journal), a re-post of the failed batch was refused
//! ("task is completed"), and the state checked against was ahead of the journal.
//!
//! Now the first journal failure poisons the recorder: every later record or view fails fast
//! with the cause; reopening rebuilds the state from what the journal holds, and the failed
//! batch can be sent again whole (its lines carry ids: those that made it are answered as
//! already recorded, the others are appended).

use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook::event::Event;
use logbook::journal::storage::sim::{Fault, Op, Plan, SimStorage};
use logbook::journal::{Durability, JournalConfig};
use logbook::recorder::{RecordError, Recorded, Recorder};
use logbook::state::{Until, state_at};

fn config(sim: &SimStorage) -> JournalConfig {
    JournalConfig {
        durability: Durability::Sync,
        segment_age: Duration::from_secs(3600),
        storage: Arc::new(sim.clone()),
        ..JournalConfig::default()
    }
}

fn event(json: &str) -> Event {
    Event::parse(json.as_bytes()).unwrap()
}

fn batch() -> Vec<Event> {
    let mut events: Vec<Event> = (1..=20)
        .map(|i| {
            event(&format!(
                r#"{{"id":"b-{i}","type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":{}}}"#,
                i * 4
            ))
        })
        .collect();
    events.push(event(
        r#"{"id":"b-done","type":"task.completed","upgrade_id":"u-1","task_id":"t-1"}"#,
    ));
    events
}

#[test]
fn a_journal_failure_poisons_the_recorder_and_reopening_rebuilds_from_the_journal() {
    let data = tempfile::tempdir().unwrap();
    let sim = SimStorage::new();
    let recorder = Recorder::open(data.path(), config(&sim)).unwrap();
    recorder
        .record(&event(r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p","cluster_name":"c","phase":"Go"}"#))
        .unwrap();
    recorder
        .record(&event(r#"{"type":"task.added","upgrade_id":"u-1","task_id":"t-1","name":"T","task_type":"upgrade_step"}"#))
        .unwrap();
    // The disk fills during the batch's write.
    sim.set_plan(Plan::FailAt {
        at: sim.ops() + 1,
        fault: Fault::NoSpace,
    });
    let failed = recorder.record_all(&batch());
    assert!(matches!(failed, Err(RecordError::Journal(_))), "{failed:?}");
    assert!(sim.fired().iter().any(|f| f.op == Op::Write));
    // Poisoned: views and records fail fast with the cause, never a state ahead of the journal.
    let started = Instant::now();
    let view = recorder.upgrade("u-1");
    assert!(
        matches!(&view, Err(RecordError::Poisoned(cause)) if cause.contains("os error 28")),
        "{view:?}"
    );
    let again = recorder.record(&batch()[0]);
    assert!(matches!(again, Err(RecordError::Poisoned(_))), "{again:?}");
    assert!(recorder.live().is_err());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(recorder.poisoned().is_some());
    drop(recorder);

    // Reopen on what the process left: the state is the journal's, and the batch goes in whole.
    let after = sim.process_crash_image();
    let recorder = Recorder::open(data.path(), config(&after)).unwrap();
    let end = recorder.journal().next_offset();
    let mut fold = state_at(recorder.journal(), Until::End).unwrap();
    assert_eq!(recorder.upgrade("u-1").unwrap(), fold.upgrade_view("u-1"));
    let results = recorder.record_all(&batch()).unwrap();
    let mut appended = 0;
    for result in results {
        match result.unwrap() {
            Recorded::AlreadyRecorded(offset) => assert!(offset < end),
            Recorded::Appended(offset) => {
                assert!(offset >= end);
                appended += 1;
            }
        }
    }
    assert_eq!(
        end - 2 + appended,
        21,
        "every line of the batch is in the journal once"
    );
    let view = recorder.upgrade("u-1").unwrap().unwrap();
    assert_eq!(view.tasks[0].percentage, 100.0);
    recorder.close().unwrap();
}
