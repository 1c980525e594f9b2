//! Unit tests of the fold: transitions, refusals, roll-up, idempotency.

use serde_json::json;

use super::{Refusal, State, Verdict};
use crate::event::{Event, ProgressStatus};

fn ev(value: serde_json::Value) -> Event {
    Event::parse(value.to_string().as_bytes()).expect("valid event")
}

fn record(state: &mut State, value: serde_json::Value) -> Result<Verdict, Refusal> {
    let event = ev(value);
    let verdict = state.check(&event)?;
    if verdict == Verdict::Fresh {
        let offset = state.next_offset();
        state.apply(offset, offset as i64 * 1000, &event);
    }
    Ok(verdict)
}

fn upgrade_with_tasks() -> State {
    let mut s = State::new();
    let events = [
        json!({"type":"upgrade.started","upgrade_id":"u","plan_id":"p","cluster_name":"c","phase":"one"}),
        json!({"type":"task.added","upgrade_id":"u","task_id":"a","name":"A","task_type":"upgrade_step"}),
        json!({"type":"task.added","upgrade_id":"u","task_id":"a1","name":"A1","task_type":"upgrade_step","parent_id":"a"}),
        json!({"type":"task.added","upgrade_id":"u","task_id":"a2","name":"A2","task_type":"validation","parent_id":"a"}),
        json!({"type":"task.added","upgrade_id":"u","task_id":"b","name":"B","task_type":"cleanup"}),
    ];
    for e in events {
        record(&mut s, e).expect("accepted");
    }
    s
}

#[test]
fn percentages_roll_up_from_subtasks_to_the_upgrade() {
    let mut s = upgrade_with_tasks();
    record(
        &mut s,
        json!({"type":"task.progress","upgrade_id":"u","task_id":"a1","percentage":50.0}),
    )
    .unwrap();
    record(
        &mut s,
        json!({"type":"task.completed","upgrade_id":"u","task_id":"a2"}),
    )
    .unwrap();
    let view = s.upgrade_view("u").unwrap();
    let a = view.tasks.iter().find(|t| t.task_id == "a").unwrap();
    assert_eq!(a.effective_percentage, 75.0, "mean of 50 and 100");
    assert_eq!(view.percentage, 37.5, "mean of A (75) and B (0)");
    record(&mut s, json!({"type":"upgrade.completed","upgrade_id":"u"})).unwrap();
    assert_eq!(s.upgrade_view("u").unwrap().percentage, 100.0);
}

#[test]
fn transitions_follow_the_status_rules() {
    let mut s = upgrade_with_tasks();
    let t = |kind: &str| json!({"type": kind, "upgrade_id":"u","task_id":"b"});
    assert!(matches!(
        record(&mut s, t("task.resumed")),
        Err(Refusal::Transition {
            action: "resume",
            ..
        })
    ));
    assert!(matches!(
        record(&mut s, t("task.paused")),
        Err(Refusal::Transition { .. })
    ));
    record(&mut s, t("task.started")).unwrap();
    record(&mut s, t("task.paused")).unwrap();
    assert_eq!(
        s.upgrade_view("u").unwrap().tasks[3].status,
        ProgressStatus::Paused
    );
    record(&mut s, t("task.resumed")).unwrap();
    record(
        &mut s,
        json!({"type":"task.failed","upgrade_id":"u","task_id":"b","error":"boom"}),
    )
    .unwrap();
    for kind in ["task.started", "task.cancelled", "task.completed"] {
        assert!(
            matches!(
                record(&mut s, t(kind)),
                Err(Refusal::Terminal { what: "task", .. })
            ),
            "{kind}"
        );
    }
    let progress = json!({"type":"task.progress","upgrade_id":"u","task_id":"b","percentage":1.0});
    assert!(matches!(
        record(&mut s, progress),
        Err(Refusal::Terminal {
            status: "failed",
            ..
        })
    ));
    record(
        &mut s,
        json!({"type":"upgrade.failed","upgrade_id":"u","error":"b failed"}),
    )
    .unwrap();
    let late = json!({"type":"task.progress","upgrade_id":"u","task_id":"a1","percentage":1.0});
    assert!(matches!(
        record(&mut s, late),
        Err(Refusal::Terminal {
            what: "upgrade",
            ..
        })
    ));
}

#[test]
fn unknown_and_duplicate_ids_are_refused() {
    let mut s = upgrade_with_tasks();
    let cases = [
        (
            json!({"type":"upgrade.phase_changed","upgrade_id":"nope","phase":"x"}),
            "unknown upgrade",
        ),
        (
            json!({"type":"task.started","upgrade_id":"u","task_id":"nope"}),
            "unknown task",
        ),
        (
            json!({"type":"task.added","upgrade_id":"u","task_id":"a","name":"again","task_type":"cleanup"}),
            "duplicate task",
        ),
        (
            json!({"type":"task.added","upgrade_id":"u","task_id":"z","name":"z","task_type":"cleanup","parent_id":"z"}),
            "own parent",
        ),
        (
            json!({"type":"upgrade.started","upgrade_id":"u","plan_id":"p","cluster_name":"c","phase":"x"}),
            "duplicate upgrade",
        ),
        (
            json!({"type":"collection.created","session_id":"nope","collection_id":"c","name":"n"}),
            "unknown session",
        ),
        (
            json!({"type":"artifact.archived","artifact_id":"nope"}),
            "unknown artifact",
        ),
    ];
    for (event, message) in cases {
        let refusal = record(&mut s, event.clone()).expect_err("refused");
        assert!(refusal.to_string().contains(message), "{event}: {refusal}");
    }
    // A session may name an upgrade recorded in another journal (an artifact store kept apart
    // from the tracker's); its task ids cannot be checked here, so they are taken as given.
    record(&mut s, json!({"type":"session.created","session_id":"ext","upgrade_id":"elsewhere","cluster_name":"c"})).unwrap();
    record(&mut s, json!({"type":"collection.created","session_id":"ext","collection_id":"c","name":"n","task_id":"t-9"})).unwrap();
    // Another upgrade may reuse a task id (task ids are unique within their upgrade).
    record(&mut s, json!({"type":"upgrade.started","upgrade_id":"v","plan_id":"p","cluster_name":"c","phase":"x"})).unwrap();
    record(&mut s, json!({"type":"task.added","upgrade_id":"v","task_id":"a","name":"A","task_type":"cleanup"})).unwrap();
}

#[test]
fn artifacts_need_their_session_and_collection_and_end_at_deletion() {
    let mut s = upgrade_with_tasks();
    record(
        &mut s,
        json!({"type":"session.created","session_id":"s","upgrade_id":"u","cluster_name":"c"}),
    )
    .unwrap();
    let bad_task = json!({"type":"collection.created","session_id":"s","collection_id":"logs","name":"Logs","task_id":"nope"});
    assert!(matches!(
        record(&mut s, bad_task),
        Err(Refusal::UnknownTask { .. })
    ));
    record(&mut s, json!({"type":"collection.created","session_id":"s","collection_id":"logs","name":"Logs","task_id":"a"})).unwrap();
    let add = |id: &str, collection: &str| {
        json!({"type":"artifact.added","session_id":"s","collection_id":collection,
        "artifact_id":id,"file_name":"x.log","artifact_type":"log_file","sha256":"0".repeat(64),"size_bytes":3,"tags":["t"]})
    };
    assert!(matches!(
        record(&mut s, add("a1", "nope")),
        Err(Refusal::UnknownCollection { .. })
    ));
    record(&mut s, add("a1", "logs")).unwrap();
    assert!(matches!(
        record(&mut s, add("a1", "logs")),
        Err(Refusal::Duplicate {
            what: "artifact",
            ..
        })
    ));
    record(
        &mut s,
        json!({"type":"artifact.deleted","artifact_id":"a1","reason":"expired"}),
    )
    .unwrap();
    let upload = json!({"type":"artifact.uploaded","artifact_id":"a1","s3_key":"k","etag":"e"});
    assert!(matches!(
        record(&mut s, upload),
        Err(Refusal::Terminal {
            what: "artifact",
            ..
        })
    ));
    assert_eq!(
        s.session_view("s").unwrap().collections[0].artifact_ids,
        vec!["a1"]
    );
}

#[test]
fn an_idempotency_key_already_recorded_returns_its_offset() {
    let mut s = upgrade_with_tasks();
    let keyed =
        json!({"type":"task.progress","id":"k","upgrade_id":"u","task_id":"a1","percentage":5.0});
    assert_eq!(record(&mut s, keyed.clone()), Ok(Verdict::Fresh));
    assert_eq!(record(&mut s, keyed), Ok(Verdict::AlreadyRecorded(5)));
    let system = json!({"type":"journal.repaired","cut_from_offset":1,"bytes_cut":2,"segment":"x","reason":"r"});
    if let Ok(event) = Event::parse(system.to_string().as_bytes()) {
        assert!(matches!(s.check(&event), Err(Refusal::System(_))));
    }
}
