//! The embedded API: `ProgressTracker` and `ArtifactStore`, blocking and async, every refusal
//! shown to write nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use logbook::artifacts::{ArtifactError, ArtifactQuery, ArtifactStore, NewArtifact, TagMatch};
use logbook::event::{ArtifactStatus, ArtifactType, ProgressStatus, TaskType};
use logbook::journal::JournalConfig;
use logbook::recorder::{RecordError, Recorder};
use logbook::state::Refusal;
use logbook::tracker::ProgressTracker;
use sha2::{Digest, Sha256};

fn open(dir: &std::path::Path) -> Arc<Recorder> {
    Arc::new(Recorder::open(dir, JournalConfig::default()).unwrap())
}

fn length(recorder: &Recorder) -> u64 {
    recorder.journal().next_offset()
}

#[test]
fn tracker_records_every_operation_and_reads_its_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let recorder = open(tmp.path());
    let t = ProgressTracker::new(recorder.clone(), "u-1");
    assert!(t.progress().unwrap().is_none());
    t.start_upgrade("plan-1", "prod", "Planning", None).unwrap();
    t.add_task("drain", "Drain", TaskType::UpgradeStep, None)
        .unwrap();
    t.add_task(
        "drain-a",
        "Drain node a",
        TaskType::UpgradeStep,
        Some("drain"),
    )
    .unwrap();
    t.add_task(
        "drain-b",
        "Drain node b",
        TaskType::UpgradeStep,
        Some("drain"),
    )
    .unwrap();
    t.start_task("drain-a").unwrap();
    t.update_task_progress("drain-a", 50.0, Some("half"))
        .unwrap();
    let view = t.progress().unwrap().unwrap();
    assert_eq!(view.tasks[1].percentage, 50.0, "read-your-writes");
    assert_eq!(
        view.tasks[0].effective_percentage, 25.0,
        "parent: mean of 50 and 0"
    );
    t.complete_task("drain-a", None, None).unwrap();
    t.start_task("drain-b").unwrap();
    t.pause_task("drain-b", Some("waiting for PDB")).unwrap();
    assert_eq!(
        t.progress().unwrap().unwrap().tasks[2].status,
        ProgressStatus::Paused
    );
    t.resume_task("drain-b").unwrap();
    t.cancel_task("drain-b", Some("not needed")).unwrap();
    t.change_phase("Validation").unwrap();
    t.fail_task("drain", "node b cancelled").unwrap();
    t.fail_upgrade("drain failed").unwrap();
    let view = t.progress().unwrap().unwrap();
    assert_eq!(
        (view.status, view.phase.as_str()),
        (ProgressStatus::Failed, "Validation")
    );
    assert_eq!(length(&recorder), 14, "one event per operation");
}

#[test]
fn tracker_refusals_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let recorder = open(tmp.path());
    let t = ProgressTracker::new(recorder.clone(), "u-1");
    assert!(matches!(
        t.start_task("x"),
        Err(RecordError::Refused(Refusal::UnknownUpgrade(_)))
    ));
    t.start_upgrade("p", "c", "one", None).unwrap();
    t.add_task("a", "A", TaskType::Validation, None).unwrap();
    let before = length(&recorder);
    let refused: Vec<RecordError> = vec![
        t.update_task_progress("a", 150.0, None).unwrap_err(),
        t.update_task_progress("a", f64::NAN, None).unwrap_err(),
        t.update_task_progress("nope", 5.0, None).unwrap_err(),
        t.add_task("a", "again", TaskType::Validation, None)
            .unwrap_err(),
        t.add_task("b", "B", TaskType::Validation, Some("missing"))
            .unwrap_err(),
        t.add_task("../b", "B", TaskType::Validation, None)
            .unwrap_err(),
        t.resume_task("a").unwrap_err(),
        t.start_upgrade("p", "c", "one", None).unwrap_err(),
    ];
    assert_eq!(length(&recorder), before, "nothing written: {refused:?}");
    assert!(refused.iter().all(RecordError::is_bad_input));
    t.complete_task("a", None, None).unwrap();
    let before = length(&recorder);
    assert!(matches!(
        t.update_task_progress("a", 5.0, None),
        Err(RecordError::Refused(Refusal::Terminal { .. }))
    ));
    assert_eq!(length(&recorder), before);
}

#[test]
fn tracker_async_entry_points() {
    let tmp = tempfile::tempdir().unwrap();
    let recorder = open(tmp.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let view = runtime.block_on(async {
        let t = ProgressTracker::new(recorder.clone(), "u-async");
        t.start_upgrade_async("p", "c", "one", None).await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let t = t.clone();
                tokio::spawn(async move {
                    let id = format!("t-{i}");
                    t.add_task_async(&id, "T", TaskType::UpgradeStep, None)
                        .await
                        .unwrap();
                    t.update_task_progress_async(&id, 10.0 * i as f64, None)
                        .await
                        .unwrap();
                    t.complete_task_async(&id, None, None).await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        t.complete_upgrade_async(Some("done")).await.unwrap();
        t.progress().unwrap().unwrap()
    });
    assert_eq!(view.status, ProgressStatus::Completed);
    assert_eq!(view.tasks.len(), 8);
    assert!(
        view.tasks
            .iter()
            .all(|t| t.status == ProgressStatus::Completed)
    );
}

fn store_with_session(dir: &std::path::Path) -> (Arc<Recorder>, ArtifactStore) {
    let recorder = open(dir);
    let t = ProgressTracker::new(recorder.clone(), "u-1");
    t.start_upgrade("p", "prod", "Validation", None).unwrap();
    t.add_task("smoke", "Smoke tests", TaskType::Validation, None)
        .unwrap();
    let store = ArtifactStore::new(recorder.clone(), dir.join("artifacts"));
    store.create_session("s-1", "u-1", "prod").unwrap();
    store
        .create_collection("s-1", "logs", "Logs", Some("smoke"))
        .unwrap();
    (recorder, store)
}

fn new_artifact(
    id: &str,
    source: std::path::PathBuf,
    kind: ArtifactType,
    tags: &[&str],
) -> NewArtifact {
    NewArtifact {
        session_id: "s-1".into(),
        collection_id: "logs".into(),
        artifact_id: id.into(),
        source,
        file_name: None,
        artifact_type: kind,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        task_id: Some("smoke".into()),
        description: Some(format!("artifact {id}")),
        expires_at: None,
    }
}

#[test]
fn add_artifact_copies_hashes_and_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (recorder, store) = store_with_session(tmp.path());
    let src = tmp.path().join("big.log");
    // 9 MiB of varied bytes: several copy buffers.
    let content: Vec<u8> = (0..9u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &content).unwrap();
    let view = store
        .add_artifact(&new_artifact("a-1", src, ArtifactType::LogFile, &["k8s"]))
        .unwrap();
    let expected: String = Sha256::digest(&content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        (view.sha256.as_str(), view.size_bytes),
        (expected.as_str(), content.len() as u64)
    );
    let stored = tmp.path().join("artifacts/s-1/logs/big.log");
    assert_eq!(std::fs::read(&stored).unwrap(), content);
    assert_eq!(store.path_of(&view), stored);
    assert_eq!(
        recorder
            .live()
            .unwrap()
            .artifact("a-1")
            .unwrap()
            .unwrap()
            .status,
        ArtifactStatus::Created
    );
}

#[test]
fn add_artifact_refusals_copy_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (recorder, store) = store_with_session(tmp.path());
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, b"secret").unwrap();
    let inside = tmp.path().join("inputs");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(inside.join("ok.txt"), b"ok").unwrap();
    std::os::unix::fs::symlink(&secret, inside.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(inside.join("ok.txt"), inside.join("inner.txt")).unwrap();
    let before = length(&recorder);
    let mut bad = new_artifact("a-x", inside.join("escape.txt"), ArtifactType::LogFile, &[]);
    assert!(matches!(
        store.add_artifact(&bad),
        Err(ArtifactError::SymlinkEscapes { .. })
    ));
    bad.source = inside.clone();
    assert!(matches!(
        store.add_artifact(&bad),
        Err(ArtifactError::NotAFile(_))
    ));
    bad.source = inside.join("missing.txt");
    assert!(matches!(
        store.add_artifact(&bad),
        Err(ArtifactError::Io { .. })
    ));
    bad.source = inside.join("ok.txt");
    bad.collection_id = "nope".into();
    assert!(matches!(
        store.add_artifact(&bad),
        Err(ArtifactError::Record(RecordError::Refused(_)))
    ));
    bad.collection_id = "logs".into();
    bad.file_name = Some("../escape".into());
    assert!(matches!(
        store.add_artifact(&bad),
        Err(ArtifactError::Record(RecordError::Invalid(_)))
    ));
    assert_eq!(length(&recorder), before, "nothing recorded");
    assert!(
        !tmp.path().join("artifacts/s-1/logs").exists()
            || std::fs::read_dir(tmp.path().join("artifacts/s-1/logs"))
                .unwrap()
                .next()
                .is_none()
    );
    // A symlink within its own directory is fine.
    let inner = new_artifact("a-in", inside.join("inner.txt"), ArtifactType::LogFile, &[]);
    assert_eq!(store.add_artifact(&inner).unwrap().size_bytes, 2);
    // Session refusals. (A session may name an upgrade this journal has not recorded: the
    // tracker may keep its own journal elsewhere.)
    store
        .create_session("s-2", "recorded-elsewhere", "prod")
        .unwrap();
    assert!(
        store.create_session("s-1", "u-1", "prod").is_err(),
        "duplicate session"
    );
}

#[test]
fn search_statistics_and_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let (recorder, store) = store_with_session(tmp.path());
    let file = |name: &str, bytes: usize| {
        let p = tmp.path().join(name);
        std::fs::write(&p, vec![b'x'; bytes]).unwrap();
        p
    };
    let mut a = new_artifact(
        "a-1",
        file("api.log", 100),
        ArtifactType::LogFile,
        &["k8s", "api"],
    );
    a.expires_at = Some("2020-01-01T00:00:00Z".into());
    store.add_artifact(&a).unwrap();
    store
        .add_artifact(&new_artifact(
            "a-2",
            file("report.json", 5000),
            ArtifactType::TestResult,
            &["k8s"],
        ))
        .unwrap();
    let mut c = new_artifact(
        "a-3",
        file("node.log", 300),
        ArtifactType::LogFile,
        &["node"],
    );
    c.task_id = None;
    store.add_artifact(&c).unwrap();
    let ids = |q: &ArtifactQuery| {
        store
            .search(q)
            .unwrap()
            .into_iter()
            .map(|a| a.artifact_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&ArtifactQuery::default()), ["a-1", "a-2", "a-3"]);
    assert_eq!(
        ids(&ArtifactQuery {
            artifact_type: Some(ArtifactType::LogFile),
            ..Default::default()
        }),
        ["a-1", "a-3"]
    );
    let tags = vec!["k8s".to_string(), "api".to_string()];
    assert_eq!(
        ids(&ArtifactQuery {
            tags: tags.clone(),
            ..Default::default()
        }),
        ["a-1"]
    );
    assert_eq!(
        ids(&ArtifactQuery {
            tags,
            tag_match: TagMatch::Any,
            ..Default::default()
        }),
        ["a-1", "a-2"]
    );
    assert_eq!(
        ids(&ArtifactQuery {
            task_id: Some("smoke".into()),
            ..Default::default()
        }),
        ["a-1", "a-2"]
    );
    assert_eq!(
        ids(&ArtifactQuery {
            min_size: Some(200),
            max_size: Some(1000),
            ..Default::default()
        }),
        ["a-3"]
    );
    assert_eq!(
        ids(&ArtifactQuery {
            name_glob: Some("*.log".into()),
            ..Default::default()
        }),
        ["a-1", "a-3"]
    );
    assert_eq!(
        ids(&ArtifactQuery {
            session_id: Some("other".into()),
            ..Default::default()
        }),
        Vec::<String>::new()
    );
    let text = |t: &str| ArtifactQuery {
        text: Some(t.into()),
        ..Default::default()
    };
    assert_eq!(ids(&text("API")), ["a-1"], "tag word, case-insensitive");
    assert_eq!(
        ids(&text("artifact a-3")),
        ["a-3"],
        "words of the description"
    );
    assert_eq!(ids(&text("json")), ["a-2"], "word of the file name");
    assert_eq!(
        ids(&ArtifactQuery {
            limit: Some(2),
            ..Default::default()
        }),
        ["a-1", "a-2"]
    );
    let stats = store.statistics().unwrap();
    assert_eq!((stats.total.count, stats.total.bytes), (3, 5400));
    assert_eq!(stats.by_type["log_file"].bytes, 400);

    let now = logbook::timestamp::now_us();
    assert_eq!(store.apply_retention(now).unwrap(), ["a-1"]);
    assert!(
        !tmp.path().join("artifacts/s-1/logs/api.log").exists(),
        "file removed"
    );
    assert_eq!(
        recorder
            .live()
            .unwrap()
            .artifact("a-1")
            .unwrap()
            .unwrap()
            .status,
        ArtifactStatus::Deleted
    );
    assert_eq!(
        ids(&ArtifactQuery {
            status: Some(ArtifactStatus::Deleted),
            ..Default::default()
        }),
        ["a-1"]
    );
    assert!(store.apply_retention(now).unwrap().is_empty(), "idempotent");
    assert_eq!(store.statistics().unwrap().by_status["deleted"].count, 1);
}

#[test]
fn artifact_store_async_entry_points() {
    let tmp = tempfile::tempdir().unwrap();
    let recorder = open(tmp.path());
    ProgressTracker::new(recorder.clone(), "u-1")
        .start_upgrade("p", "prod", "one", None)
        .unwrap();
    let store = ArtifactStore::new(recorder.clone(), tmp.path().join("artifacts"));
    let src = tmp.path().join("r.json");
    std::fs::write(&src, b"{\"passed\":12}").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deleted = runtime.block_on(async {
        store
            .create_session_async("s-1", "u-1", "prod")
            .await
            .unwrap();
        store
            .create_collection_async("s-1", "logs", "Logs", None)
            .await
            .unwrap();
        let mut new = new_artifact("a-1", src, ArtifactType::TestResult, &["report"]);
        new.task_id = None;
        new.expires_at = Some("2000-01-01T00:00:00Z".into());
        let view = store.add_artifact_async(new).await.unwrap();
        assert_eq!(view.size_bytes, 13);
        store
            .apply_retention_async(logbook::timestamp::now_us())
            .await
            .unwrap()
    });
    assert_eq!(deleted, ["a-1"]);
}
