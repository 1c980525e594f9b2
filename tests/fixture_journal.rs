//! Old journals stay readable forever (DESIGN.md §3): `tests/fixtures/journal-v1/` is a real
//! journal written once by schema version 1 (sealed segments plus an unsealed active segment,
//! 60 events covering every event type), and `tests/fixtures/journal-v1.ndjson` is what
//! `logbook events` printed for it. Every future build must verify it, read every record as a
//! typed event through `upcast`, and print the same lines.
//!
//! The fixture is never regenerated: it stands for journals already on disk. The generator is
//! kept (ignored) to show how it was made: `cargo test --test fixture_journal -- --ignored
//! generate_fixture` refuses to overwrite an existing fixture.

use std::path::{Path, PathBuf};

use logbook::envelope::to_json_line;
use logbook::event::{
    ArtifactAdded, ArtifactArchived, ArtifactDeleted, ArtifactType, ArtifactUploadFailed,
    ArtifactUploaded, CollectionCreated, DeleteReason, EVENT_TYPES, Event, SessionCreated,
    TaskAdded, TaskCompleted, TaskFailed, TaskProgress, TaskTransition, TaskType, UpgradeCompleted,
    UpgradeFailed, UpgradePhaseChanged, UpgradeStarted, upcast,
};
use logbook::journal::record::PAYLOAD_BYTES_MAX;
use logbook::journal::{Journal, JournalConfig, Record, StartAt, verify_dir};
use serde_json::{Map, Value, json};

/// Records in the fixture.
const FIXTURE_RECORDS: u64 = 60;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1")
}

fn fixture_ndjson() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1.ndjson")
}

/// The config the fixture was written with: tiny segments, so it has several sealed ones.
fn fixture_config() -> JournalConfig {
    JournalConfig {
        segment_bytes: 2048,
        ..JournalConfig::default()
    }
}

fn read_all(journal: &Journal) -> Vec<Record> {
    let mut reader = journal.reader(StartAt::Earliest).unwrap();
    let mut records = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        records.push(record);
    }
    records
}

/// Copies the fixture's files into a fresh directory, so nothing can touch the checked-in ones.
fn copy_fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let entry = entry.unwrap();
        assert!(
            entry.file_type().unwrap().is_file(),
            "fixture holds only segment files, found {:?}",
            entry.path()
        );
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    (tmp, dir)
}

#[test]
fn reads_the_v1_fixture_forever() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|n| n.ends_with(".seg.zst") || n.ends_with(".log")),
        "only segments in the fixture (no LOCK, no quarantine): {names:?}"
    );
    let (_tmp, dir) = copy_fixture();

    let report = verify_dir(&dir, PAYLOAD_BYTES_MAX, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, FIXTURE_RECORDS);
    assert!(report.sealed_segments >= 2, "{report:?}");
    assert!(report.unsealed_segments >= 1, "{report:?}");
    assert_eq!(report.torn_tail_bytes, 0);

    let journal = Journal::open_read_only(&dir, fixture_config()).unwrap();
    let records = read_all(&journal);
    journal.close().unwrap();
    assert_eq!(records.len() as u64, FIXTURE_RECORDS);

    let expected = std::fs::read_to_string(fixture_ndjson()).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), records.len(), "one NDJSON line per record");

    let mut kinds = Vec::new();
    for (record, line) in records.iter().zip(&expected) {
        assert_eq!(record.schema_version, 1, "offset {}", record.offset);
        let event = upcast(record.schema_version, &record.payload).unwrap_or_else(|e| {
            panic!("offset {}: {e}", record.offset);
        });
        // Version 1 is today's shape, so the stored bytes are exactly its canonical form.
        assert_eq!(
            event.to_payload(),
            record.payload,
            "offset {}",
            record.offset
        );
        assert_eq!(to_json_line(record), *line, "offset {}", record.offset);
        kinds.push(event.kind());
    }
    for kind in EVENT_TYPES {
        assert!(kinds.contains(&kind), "the fixture has no {kind}");
    }

    // A few facts of the recorded story, read through the typed API.
    let events: Vec<Event> = records
        .iter()
        .map(|r| upcast(r.schema_version, &r.payload).unwrap())
        .collect();
    assert!(matches!(
        &events[0],
        Event::UpgradeStarted(UpgradeStarted { upgrade_id, .. }) if upgrade_id == "eks-upgrade-a"
    ));
    assert_eq!(events[0].id(), Some("producer-0001"));
    assert!(matches!(
        events.last(),
        Some(Event::UpgradeCompleted(UpgradeCompleted { upgrade_id, .. })) if upgrade_id == "eks-upgrade-b"
    ));
    // "task-1" exists in both upgrades: task ids are scoped by their upgrade.
    let plans: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.kind() == "task.added" && e.task_id() == Some("task-1"))
        .map(|e| (e.upgrade_id().unwrap(), e.task_id().unwrap()))
        .collect();
    assert_eq!(
        plans,
        [("eks-upgrade-a", "task-1"), ("eks-upgrade-b", "task-1")]
    );
}

#[test]
fn every_record_the_journal_writes_reads_as_an_event() {
    // Including the note the journal appends itself when it repairs damage.
    let tmp = tempfile::tempdir().unwrap();
    let journal = Journal::open(tmp.path(), JournalConfig::default()).unwrap();
    for event in fixture_events().iter().take(5) {
        journal.append(event.to_payload()).unwrap();
    }
    journal.close().unwrap();
    // Flip one payload byte of the record at offset 2 (frames: u32 length, u32 CRC, body).
    let log = tmp.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let mut at = 0;
    for _ in 0..2 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    bytes[at + 8 + 50 + 3] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    let config = JournalConfig {
        repair: true,
        ..JournalConfig::default()
    };
    let journal = Journal::open(tmp.path(), config).unwrap();
    let records = read_all(&journal);
    journal.close().unwrap();
    let events: Vec<Event> = records
        .iter()
        .map(|r| upcast(r.schema_version, &r.payload).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        ["upgrade.started", "session.created", "journal.repaired"]
    );
    let Some(Event::JournalRepaired(note)) = events.last() else {
        unreachable!()
    };
    assert_eq!(note.cut_from_offset, 2);
    // Readable, but not something a producer may append.
    assert!(events[2].validate().is_err());
}

fn object(value: Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A realistic small story: attempt A fails at validation and rolls back, attempt B completes;
/// artifacts are added, uploaded (once after a failed try), archived and deleted.
fn fixture_events() -> Vec<Event> {
    const A: &str = "eks-upgrade-a";
    const B: &str = "eks-upgrade-b";
    let s = |x: &str| x.to_owned();
    let some = |x: &str| Some(x.to_owned());
    let added = |u: &str, t: &str, name: &str, task_type, parent: Option<&str>| {
        Event::from(TaskAdded {
            id: None,
            upgrade_id: s(u),
            task_id: s(t),
            name: s(name),
            task_type,
            parent_id: parent.map(s),
        })
    };
    let transition = |u: &str, t: &str, message: Option<&str>| TaskTransition {
        id: None,
        upgrade_id: s(u),
        task_id: s(t),
        message: message.map(s),
    };
    let progress = |u: &str, t: &str, percentage: f64, message: Option<&str>, details: Value| {
        Event::from(TaskProgress {
            id: None,
            upgrade_id: s(u),
            task_id: s(t),
            percentage,
            message: message.map(s),
            details: object(details),
        })
    };
    let completed = |u: &str, t: &str, message: Option<&str>, metrics: Value| {
        Event::from(TaskCompleted {
            id: None,
            upgrade_id: s(u),
            task_id: s(t),
            message: message.map(s),
            metrics: object(metrics),
        })
    };
    let phase = |u: &str, p: &str| {
        Event::from(UpgradePhaseChanged {
            id: None,
            upgrade_id: s(u),
            phase: s(p),
        })
    };
    let collection = |sess: &str, c: &str, name: &str, task: Option<&str>| {
        Event::from(CollectionCreated {
            id: None,
            session_id: s(sess),
            collection_id: s(c),
            name: s(name),
            task_id: task.map(s),
        })
    };
    let artifact = |sess: &str,
                    c: &str,
                    a: &str,
                    file: &str,
                    artifact_type,
                    size: u64,
                    tags: &[&str],
                    task: Option<&str>| {
        ArtifactAdded {
            id: None,
            session_id: s(sess),
            collection_id: s(c),
            artifact_id: s(a),
            file_name: s(file),
            artifact_type,
            sha256: format!("{:064x}", u128::from(size) * 0x9e37_79b9_7f4a_7c15),
            size_bytes: size,
            tags: tags.iter().map(|t| s(t)).collect(),
            task_id: task.map(s),
            description: None,
            expires_at: None,
        }
    };
    let uploaded = |a: &str, key: &str, etag: &str| {
        Event::from(ArtifactUploaded {
            id: None,
            artifact_id: s(a),
            s3_key: s(key),
            etag: format!("\"{etag}\""),
        })
    };
    let metadata =
        json!({"source_version": "1.29", "target_version": "1.30", "strategy": "blue_green"});
    vec![
        // Attempt A.
        UpgradeStarted {
            id: some("producer-0001"),
            upgrade_id: s(A),
            plan_id: s("plan-eks-1.30"),
            cluster_name: s("prod-eks"),
            phase: s("Initialization"),
            metadata: object(metadata.clone()),
        }
        .into(),
        SessionCreated {
            id: None,
            session_id: s("session-a"),
            upgrade_id: s(A),
            cluster_name: s("prod-eks"),
        }
        .into(),
        added(A, "task-1", "Plan upgrade", TaskType::UpgradePlan, None),
        Event::TaskStarted(transition(A, "task-1", None)),
        progress(
            A,
            "task-1",
            50.0,
            Some("computing node groups"),
            json!(null),
        ),
        completed(
            A,
            "task-1",
            Some("3 node groups"),
            json!({"node_groups": 3}),
        ),
        phase(A, "ProvisionGreen"),
        added(A, "task-2", "Provision green", TaskType::UpgradeStep, None),
        added(
            A,
            "task-2.1",
            "Launch template",
            TaskType::UpgradeStep,
            Some("task-2"),
        ),
        Event::TaskStarted(transition(A, "task-2", None)),
        Event::TaskStarted(transition(A, "task-2.1", None)),
        progress(
            A,
            "task-2.1",
            40.0,
            None,
            json!({"instances_ready": 2, "instances_wanted": 5}),
        ),
        Event::TaskPaused(transition(A, "task-2.1", Some("waiting for EC2 capacity"))),
        Event::TaskResumed(transition(A, "task-2.1", Some("capacity available"))),
        progress(
            A,
            "task-2.1",
            100.0,
            Some("5/5 instances ready"),
            json!(null),
        ),
        completed(A, "task-2.1", None, json!(null)),
        completed(A, "task-2", None, json!({"seconds": 412.5})),
        collection(
            "session-a",
            "provisioning",
            "Provisioning logs",
            Some("task-2"),
        ),
        artifact(
            "session-a",
            "provisioning",
            "artifact-1",
            "provision.log",
            ArtifactType::LogFile,
            48_213,
            &["provision", "green"],
            Some("task-2"),
        )
        .into(),
        ArtifactUploadFailed {
            id: None,
            artifact_id: s("artifact-1"),
            error: s("S3 PutObject: 503 SlowDown"),
        }
        .into(),
        uploaded(
            "artifact-1",
            "prod/artifacts/session-a/provisioning/provision.log",
            "5d41402abc4b2a76b9719d911017c592",
        ),
        phase(A, "Validation"),
        added(A, "task-3", "Smoke tests", TaskType::Validation, None),
        Event::TaskStarted(transition(A, "task-3", None)),
        progress(
            A,
            "task-3",
            30.0,
            Some("3 of 10 checks"),
            json!({"passed": 3, "failed": 0}),
        ),
        TaskFailed {
            id: None,
            upgrade_id: s(A),
            task_id: s("task-3"),
            error: s("smoke test api-health: HTTP 502 from green\n  after 3 retries"),
        }
        .into(),
        collection(
            "session-a",
            "validation",
            "Validation results",
            Some("task-3"),
        ),
        artifact(
            "session-a",
            "validation",
            "artifact-2",
            "smoke-tests.xml",
            ArtifactType::TestResult,
            9_734,
            &["junit", "smoke"],
            Some("task-3"),
        )
        .into(),
        ArtifactAdded {
            description: some("dashboard at the moment of failure"),
            ..artifact(
                "session-a",
                "validation",
                "artifact-3",
                "grafana.png",
                ArtifactType::Screenshot,
                231_442,
                &["grafana"],
                Some("task-3"),
            )
        }
        .into(),
        uploaded(
            "artifact-2",
            "prod/artifacts/session-a/validation/smoke-tests.xml",
            "7d793037a0760186574b0282f2f435e7",
        ),
        added(A, "task-4", "Decommission blue", TaskType::Cleanup, None),
        Event::TaskCancelled(transition(A, "task-4", Some("validation failed"))),
        added(A, "task-5", "Roll back to blue", TaskType::Rollback, None),
        Event::TaskStarted(transition(A, "task-5", None)),
        completed(A, "task-5", Some("traffic back on blue"), json!(null)),
        UpgradeFailed {
            id: some("producer-0036"),
            upgrade_id: s(A),
            error: s("validation failed: smoke test api-health"),
        }
        .into(),
        // Attempt B.
        UpgradeStarted {
            id: some("producer-0037"),
            upgrade_id: s(B),
            plan_id: s("plan-eks-1.30"),
            cluster_name: s("prod-eks"),
            phase: s("Initialization"),
            metadata: object(metadata),
        }
        .into(),
        SessionCreated {
            id: None,
            session_id: s("session-b"),
            upgrade_id: s(B),
            cluster_name: s("prod-eks"),
        }
        .into(),
        added(B, "task-1", "Plan upgrade", TaskType::UpgradePlan, None),
        Event::TaskStarted(transition(B, "task-1", None)),
        completed(B, "task-1", None, json!(null)),
        phase(B, "TrafficShift"),
        added(
            B,
            "task-2",
            "Shift traffic to green",
            TaskType::UpgradeStep,
            None,
        ),
        Event::TaskStarted(transition(B, "task-2", Some("weighted routing"))),
        progress(B, "task-2", 10.0, None, json!({"weight_green": 10})),
        progress(B, "task-2", 50.0, None, json!({"weight_green": 50})),
        progress(
            B,
            "task-2",
            100.0,
            Some("all traffic on green"),
            json!({"weight_green": 100}),
        ),
        completed(B, "task-2", None, json!({"seconds": 900, "errors": 0})),
        collection("session-b", "metrics", "Traffic metrics", None),
        ArtifactAdded {
            expires_at: some("2026-12-01T00:00:00Z"),
            ..artifact(
                "session-b",
                "metrics",
                "artifact-4",
                "traffic.json",
                ArtifactType::MetricsData,
                1_024,
                &["traffic"],
                Some("task-2"),
            )
        }
        .into(),
        artifact(
            "session-b",
            "metrics",
            "artifact-5",
            "cluster-config.yaml",
            ArtifactType::Configuration,
            3_318,
            &[],
            None,
        )
        .into(),
        artifact(
            "session-b",
            "metrics",
            "artifact-6",
            "etcd-snapshot.db",
            ArtifactType::Backup,
            7_340_032,
            &["etcd", "pre-cleanup"],
            None,
        )
        .into(),
        ArtifactAdded {
            description: some("upgrade report for the change board"),
            ..artifact(
                "session-b",
                "metrics",
                "artifact-7",
                "report.html",
                ArtifactType::Report,
                88_120,
                &["report"],
                None,
            )
        }
        .into(),
        uploaded(
            "artifact-7",
            "prod/artifacts/session-b/metrics/report.html",
            "e2fc714c4727ee9395f324cd2e7f331f",
        ),
        ArtifactArchived {
            id: None,
            artifact_id: s("artifact-5"),
        }
        .into(),
        ArtifactDeleted {
            id: None,
            artifact_id: s("artifact-3"),
            reason: DeleteReason::Requested,
        }
        .into(),
        ArtifactDeleted {
            id: some("retention-2026-12-01"),
            artifact_id: s("artifact-4"),
            reason: DeleteReason::Expired,
        }
        .into(),
        artifact(
            "session-b",
            "metrics",
            "artifact-8",
            "node-diagnostics.txt",
            ArtifactType::Diagnostic,
            12_001,
            &["nodes"],
            None,
        )
        .into(),
        phase(B, "Cleanup"),
        UpgradeCompleted {
            id: some("producer-0060"),
            upgrade_id: s(B),
            message: some("cluster prod-eks on 1.30, blue decommissioned"),
        }
        .into(),
    ]
}

#[test]
fn the_story_is_valid_and_covers_every_type() {
    let events = fixture_events();
    assert_eq!(events.len() as u64, FIXTURE_RECORDS);
    for (i, event) in events.iter().enumerate() {
        event
            .validate()
            .unwrap_or_else(|e| panic!("event {i}: {e}"));
    }
    for kind in EVENT_TYPES {
        assert!(events.iter().any(|e| e.kind() == kind), "no {kind}");
    }
}

/// Writes the fixture (once; refuses to overwrite it).
#[test]
#[ignore = "writes tests/fixtures/journal-v1 once; the fixture is never regenerated"]
fn generate_fixture() {
    let dir = fixture_dir();
    assert!(
        !dir.exists() && !fixture_ndjson().exists(),
        "the v1 fixture exists and stands for journals already on disk: never regenerate it"
    );
    let events = fixture_events();
    let journal = Journal::open(&dir, fixture_config()).unwrap();
    for event in &events {
        event.validate().unwrap();
        journal.append(event.to_payload()).unwrap();
    }
    journal.close().unwrap();
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".seg.zst") || name.ends_with(".log"),
            "unexpected {name} in the fixture"
        );
    }
    let journal = Journal::open_read_only(&dir, fixture_config()).unwrap();
    let mut text = String::new();
    for record in read_all(&journal) {
        text.push_str(&to_json_line(&record));
        text.push('\n');
    }
    journal.close().unwrap();
    std::fs::write(fixture_ndjson(), text).unwrap();
}
