//! SQLite projections (src/projection/): the views equal the in-memory fold (`State`, the
//! reference), rebuilds and batch sizes give identical digests, a SIGKILLed catch-up resumes
//! exactly once, the v1 fixture projects, search and statistics match a filter over the fold.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logbook::event::{ArtifactStatus, ArtifactType, Event};
use logbook::journal::{Durability, Journal, JournalConfig};
use logbook::projection::{ArtifactQuery, Projection, ProjectionError, TagMatch};
use logbook::recorder::Recorder;
use logbook::state::{State, Until, state_at};
use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    match std::env::var("LOGBOOK_TEST_SEED") {
        Ok(s) => s.parse().expect("LOGBOOK_TEST_SEED is a number"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

fn ev(value: Value) -> Event {
    Event::parse(value.to_string().as_bytes()).unwrap()
}

fn config() -> JournalConfig {
    JournalConfig {
        durability: Durability::None,
        segment_bytes: 256 << 10,
        ..JournalConfig::default()
    }
}

fn journal_dir(data: &Path) -> PathBuf {
    data.join("journal")
}

const TYPES: [&str; 8] = [
    "log_file",
    "test_result",
    "configuration",
    "screenshot",
    "metrics_data",
    "backup",
    "report",
    "diagnostic",
];
const TASK_TYPES: [&str; 5] = [
    "upgrade_plan",
    "upgrade_step",
    "validation",
    "rollback",
    "cleanup",
];
const EXTS: [&str; 3] = ["log", "json", "txt"];
const TAGS: [&str; 6] = [
    "blue",
    "green",
    "node",
    "etcd",
    "Ärger spaß",
    "critical path",
];

/// Every event of a rich scenario for one upgrade: nested tasks, progress, pauses, failures,
/// cancellations, phases, a session with collections and artifacts with tags, uploads,
/// failed uploads, archives and deletions; ends completed, failed or in progress.
fn upgrade_events(u: usize, tasks: usize, progress: usize, rng: &mut Rng) -> Vec<Event> {
    let uid = format!("u-{u}");
    let mut out = vec![ev(json!({
        "type": "upgrade.started", "upgrade_id": uid, "plan_id": format!("plan-{}", u % 3),
        "cluster_name": format!("cluster-{u}"), "phase": "preparing",
        "metadata": {"region": "eu-west-1", "n": u, "nested": {"a": [1, 2.5, null]}}
    }))];
    let mut roots: Vec<String> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for t in 0..tasks {
        let tid = format!("t-{t}");
        let parent = match t % 5 {
            0 => None,
            1 | 2 => roots.last().cloned(),
            _ => ids.last().cloned(),
        };
        let mut added = json!({
            "type": "task.added", "upgrade_id": uid, "task_id": tid,
            "name": format!("Task {t} of {uid}"),
            "task_type": TASK_TYPES[t % 5],
        });
        if let Some(p) = &parent {
            added["parent_id"] = json!(p);
        } else {
            roots.push(tid.clone());
        }
        out.push(ev(added));
        ids.push(tid);
    }
    out.push(ev(
        json!({"type": "upgrade.phase_changed", "upgrade_id": uid, "phase": "blue-green"}),
    ));
    for (t, tid) in ids.iter().enumerate() {
        let fate = rng.below(10);
        if fate == 0 {
            continue; // never started
        }
        let mut started = json!({"type": "task.started", "upgrade_id": uid, "task_id": tid});
        if rng.below(2) == 0 {
            started["message"] = json!("starting");
        }
        out.push(ev(started));
        for p in 0..progress {
            let pct = ((p + 1) * 100 / (progress + 1)) as f64 + rng.below(1000) as f64 / 1000.0;
            let mut e = json!({"type": "task.progress", "upgrade_id": uid, "task_id": tid,
                "percentage": pct.min(100.0)});
            if p % 2 == 0 {
                e["message"] = json!(format!("step {p}"));
            }
            if p % 3 == 0 {
                e["details"] = json!({"nodes_done": p, "ratio": pct / 100.0});
            }
            out.push(ev(e));
            if p == 0 && fate == 1 {
                out.push(ev(
                    json!({"type": "task.paused", "upgrade_id": uid, "task_id": tid,
                    "message": "waiting for capacity"}),
                ));
                out.push(ev(
                    json!({"type": "task.resumed", "upgrade_id": uid, "task_id": tid}),
                ));
            }
        }
        match fate {
            2 => out.push(ev(
                json!({"type": "task.failed", "upgrade_id": uid, "task_id": tid,
                "error": format!("node {t} NotReady")}),
            )),
            3 => out.push(ev(
                json!({"type": "task.cancelled", "upgrade_id": uid, "task_id": tid,
                "message": "superseded"}),
            )),
            4 => out.push(ev(
                json!({"type": "task.paused", "upgrade_id": uid, "task_id": tid}),
            )),
            5 => {} // in progress
            _ => {
                let mut done = json!({"type": "task.completed", "upgrade_id": uid, "task_id": tid});
                if fate.is_multiple_of(2) {
                    done["metrics"] = json!({"seconds": t * 3, "pods": 12});
                    done["message"] = json!("done");
                }
                out.push(ev(done));
            }
        }
    }
    let sid = format!("s-{u}");
    out.push(ev(
        json!({"type": "session.created", "session_id": sid, "upgrade_id": uid,
        "cluster_name": format!("cluster-{u}")}),
    ));
    out.push(ev(
        json!({"type": "collection.created", "session_id": sid, "collection_id": "logs",
        "name": "Logs"}),
    ));
    out.push(ev(
        json!({"type": "collection.created", "session_id": sid, "collection_id": "reports",
        "name": "Reports", "task_id": "t-0"}),
    ));
    for a in 0..8 {
        let aid = format!("a-{u}-{a}");
        let n_tags = rng.below(4) as usize;
        let tags: Vec<&str> = (0..n_tags).map(|_| TAGS[rng.below(6) as usize]).collect();
        let mut added = json!({
            "type": "artifact.added", "session_id": sid,
            "collection_id": if a % 3 == 0 { "reports" } else { "logs" },
            "artifact_id": aid, "file_name": format!("file-{a}.{}", EXTS[a % 3]),
            "artifact_type": TYPES[(a + u) % 8],
            "sha256": format!("{:064x}", u * 100 + a),
            "size_bytes": rng.below(1 << 20), "tags": tags,
        });
        if a % 2 == 0 {
            added["task_id"] = json!(format!("t-{}", a % tasks.max(1)));
        }
        if a % 3 != 1 {
            added["description"] = json!(format!(
                "kubelet journal of node {a} during the rollout of {uid}"
            ));
        }
        if a == 7 {
            added["expires_at"] = json!("2031-01-01T00:00:00.000000Z");
        }
        out.push(ev(added));
        match rng.below(6) {
            0 => {}
            1 => out.push(ev(json!({"type": "artifact.uploaded", "artifact_id": aid,
                "s3_key": format!("{sid}/{aid}"), "etag": "\"abc\""}))),
            2 => out.push(ev(
                json!({"type": "artifact.upload_failed", "artifact_id": aid,
                "error": "503 SlowDown"}),
            )),
            3 => {
                out.push(ev(
                    json!({"type": "artifact.upload_failed", "artifact_id": aid,
                    "error": "timeout"}),
                ));
                out.push(ev(json!({"type": "artifact.uploaded", "artifact_id": aid,
                    "s3_key": format!("{sid}/{aid}"), "etag": "e2"})));
            }
            4 => out.push(ev(json!({"type": "artifact.archived", "artifact_id": aid}))),
            _ => out.push(ev(json!({"type": "artifact.deleted", "artifact_id": aid,
                "reason": "requested"}))),
        }
    }
    match u % 3 {
        0 => out.push(ev(json!({"type": "upgrade.completed", "upgrade_id": uid,
            "message": "all green"}))),
        1 => out.push(ev(json!({"type": "upgrade.failed", "upgrade_id": uid,
            "error": "rollback needed"}))),
        _ => {}
    }
    out
}

/// Records `upgrades` rich upgrades through the recorder (every event must be accepted).
fn record_rich(data: &Path, upgrades: usize, tasks: usize, progress: usize, seed: u64) {
    let recorder = Recorder::open(data, config()).unwrap();
    let mut rng = Rng::new(seed);
    for u in 0..upgrades {
        let events = upgrade_events(u, tasks, progress, &mut rng);
        for (event, result) in events.iter().zip(recorder.record_all(&events).unwrap()) {
            if let Err(e) = result {
                panic!("refused {event:?}: {e}");
            }
        }
    }
    recorder.close().unwrap();
}

/// Appends records the recorder would refuse (an unvalidated journal) and records that are
/// not typed events: the projection must treat them exactly as `State::apply` does.
fn append_lenient(data: &Path) {
    let journal = Journal::open(journal_dir(data), config()).unwrap();
    let raw = [
        json!({"type": "task.progress", "upgrade_id": "u-0", "task_id": "nope", "percentage": 5.0}),
        json!({"type": "task.progress", "upgrade_id": "nope", "task_id": "t-0", "percentage": 5.0}),
        json!({"type": "task.added", "upgrade_id": "u-0", "task_id": "t-1", "name": "dup",
            "task_type": "cleanup"}),
        json!({"type": "upgrade.started", "upgrade_id": "u-0", "plan_id": "x", "cluster_name": "x",
            "phase": "again"}),
        json!({"type": "task.progress", "upgrade_id": "u-0", "task_id": "t-2", "percentage": 1.0}),
        json!({"type": "upgrade.phase_changed", "upgrade_id": "late", "phase": "before start"}),
        json!({"type": "task.added", "upgrade_id": "late", "task_id": "t-0", "name": "early",
            "task_type": "cleanup"}),
        json!({"type": "upgrade.started", "upgrade_id": "late", "plan_id": "p", "cluster_name": "c",
            "phase": "p1"}),
        json!({"type": "collection.created", "session_id": "nope", "collection_id": "c",
            "name": "n"}),
        json!({"type": "artifact.added", "session_id": "s-0", "collection_id": "later",
            "artifact_id": "orphan", "file_name": "o.txt", "artifact_type": "report",
            "sha256": format!("{:064x}", 7), "size_bytes": 3, "tags": ["blue", "blue"]}),
        json!({"type": "collection.created", "session_id": "s-0", "collection_id": "later",
            "name": "Later"}),
        json!({"type": "artifact.added", "session_id": "s-0", "collection_id": "later",
            "artifact_id": "a-0-0", "file_name": "dup.txt", "artifact_type": "report",
            "sha256": format!("{:064x}", 8), "size_bytes": 4, "tags": []}),
        json!({"type": "artifact.uploaded", "artifact_id": "ghost", "s3_key": "k", "etag": "e"}),
        json!({"type": "task.completed", "upgrade_id": "u-0", "task_id": "t-3"}),
        json!({"type": "task.progress", "upgrade_id": "u-0", "task_id": "t-3", "percentage": 10.0}),
        json!({"type": "session.created", "session_id": "s-0", "upgrade_id": "other",
            "cluster_name": "x"}),
        json!({"hello": "not an event"}),
    ];
    for payload in raw {
        journal.append(payload.to_string()).unwrap();
    }
    journal.append(b"plain text, not JSON").unwrap();
    journal.close().unwrap();
}

fn open_journal(data: &Path) -> Journal {
    Journal::open_read_only(journal_dir(data), config()).unwrap()
}

fn project(data: &Path, journal: &Journal, batch: usize) -> Projection {
    let mut projection = Projection::open(data).unwrap();
    projection.set_batch_size(batch).unwrap();
    projection.catch_up(journal).unwrap();
    projection
}

/// Every view of the projection equals the fold's.
fn assert_same_views(projection: &Projection, state: &mut State, session_ids: &[String]) {
    let ids: Vec<String> = state.upgrade_ids().map(str::to_string).collect();
    assert_eq!(projection.upgrade_ids().unwrap(), ids);
    for id in &ids {
        assert_eq!(
            projection.upgrade(id).unwrap(),
            state.upgrade_view(id),
            "upgrade {id}"
        );
    }
    assert_eq!(projection.upgrade("absent").unwrap(), None);
    for id in session_ids {
        assert_eq!(
            projection.session(id).unwrap().as_ref(),
            state.session_view(id),
            "session {id}"
        );
    }
    let artifacts: Vec<_> = state.artifacts().cloned().collect();
    assert_eq!(
        projection.search(&ArtifactQuery::default()).unwrap(),
        artifacts
    );
    for a in &artifacts {
        assert_eq!(
            projection.artifact(&a.artifact_id).unwrap().as_ref(),
            Some(a)
        );
    }
}

fn session_ids(upgrades: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..upgrades).map(|u| format!("s-{u}")).collect();
    ids.push("nope".into());
    ids
}

#[test]
fn views_equal_the_fold_including_lenient_and_untyped_records() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let seed = seed();
    eprintln!("seed {seed}");
    record_rich(data, 6, 24, 4, seed);
    append_lenient(data);
    // The recorder left its projection current up to the lenient records: start from none.
    Projection::delete(data).unwrap();
    let journal = open_journal(data);
    let mut state = state_at(&journal, Until::End).unwrap();
    let mut projection = Projection::open(data).unwrap();
    let done = projection.catch_up(&journal).unwrap();
    assert_eq!(done.next_offset, journal.next_offset());
    assert_eq!(done.skipped, 2);
    assert_eq!(done.applied + done.skipped, journal.next_offset());
    assert_eq!(projection.checkpoint().unwrap(), journal.next_offset());
    assert_same_views(&projection, &mut state, &session_ids(6));
    // The lenient cases really happened: "late" exists with its early event ignored.
    let late = projection.upgrade("late").unwrap().unwrap();
    assert!(late.tasks.is_empty());
    assert_eq!(late.phase, "p1");
    let s0 = projection.session("s-0").unwrap().unwrap();
    let later = s0.collections.iter().find(|c| c.collection_id == "later");
    assert_eq!(later.unwrap().artifact_ids, Vec::<String>::new());
    // Some upgrade has a partial roll-up, and a completed one is at 100.
    let views: Vec<_> = (0..6)
        .map(|u| projection.upgrade(&format!("u-{u}")).unwrap().unwrap())
        .collect();
    assert!(
        views
            .iter()
            .any(|v| v.percentage > 0.0 && v.percentage < 100.0)
    );
    assert_eq!(views[0].percentage, 100.0);
    // Catching up again applies nothing.
    let again = projection.catch_up(&journal).unwrap();
    assert_eq!((again.applied, again.skipped), (0, 0));
}

#[test]
fn incremental_catch_up_beside_the_writer_equals_the_fold() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let recorder = Recorder::open(data, config()).unwrap();
    let mut projection = Projection::open(data).unwrap();
    projection.set_batch_size(97).unwrap();
    let mut rng = Rng::new(seed());
    for u in 0..5 {
        for event in upgrade_events(u, 12, 3, &mut rng) {
            recorder.record(&event).unwrap();
        }
        recorder.journal().wait_visible().unwrap();
        projection.catch_up(recorder.journal()).unwrap();
        assert_eq!(
            projection.upgrade(&format!("u-{u}")).unwrap(),
            recorder.upgrade(&format!("u-{u}")).unwrap()
        );
    }
    let mut state =
        logbook::state::state_at(recorder.journal(), logbook::state::Until::End).unwrap();
    assert_same_views(&projection, &mut state, &session_ids(5));
    recorder.close().unwrap();
}

#[test]
fn rebuild_and_batch_sizes_give_identical_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    record_rich(data, 5, 20, 3, seed());
    append_lenient(data);
    let journal = open_journal(data);
    let reference = project(data, &journal, 10_000).digest().unwrap();
    for batch in [1, 2, 7, 64, 1000] {
        Projection::delete(data).unwrap();
        assert!(!data.join("state.sqlite").exists());
        let projection = project(data, &journal, batch);
        assert_eq!(
            projection.digest().unwrap(),
            reference,
            "batch size {batch}"
        );
        assert_eq!(projection.checkpoint().unwrap(), journal.next_offset());
    }
    // The CLI rebuild deletes and replays, and prints the same digest.
    let out = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args(["--json", "rebuild", "--batch-size", "33", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["digest"], json!(reference));
    assert_eq!(printed["next_offset"], json!(journal.next_offset()));
    assert_eq!(printed["applied"], json!(journal.next_offset() - 2));
    assert_eq!(Projection::open(data).unwrap().digest().unwrap(), reference);
    // Content differs → digest differs.
    let empty = tempfile::tempdir().unwrap();
    assert_ne!(
        Projection::open(empty.path()).unwrap().digest().unwrap(),
        reference
    );
}

#[test]
fn a_projection_ahead_of_its_journal_is_refused() {
    let long = tempfile::tempdir().unwrap();
    let short = tempfile::tempdir().unwrap();
    record_rich(long.path(), 2, 5, 2, 1);
    record_rich(short.path(), 1, 2, 1, 1);
    project(long.path(), &open_journal(long.path()), 100);
    let mut projection = Projection::open(long.path()).unwrap();
    let err = projection
        .catch_up(&open_journal(short.path()))
        .unwrap_err();
    assert!(matches!(err, ProjectionError::Diverged { .. }), "{err}");
    assert!(matches!(
        projection.set_batch_size(0),
        Err(ProjectionError::BatchSize)
    ));
}

/// A child `logbook rebuild --resume` is SIGKILLed at random points (after a random number of
/// committed batches, or after a random delay) for many rounds; in the end the in-process
/// catch-up gives the clean rebuild's digest, and no checkpoint ever went backwards.
#[test]
fn sigkill_during_catch_up_applies_every_event_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let seed = seed();
    eprintln!("seed {seed}");
    record_rich(data, 30, 60, 10, seed);
    append_lenient(data);
    Projection::delete(data).unwrap();
    let journal = open_journal(data);
    let end = journal.next_offset();
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = project(clean_dir.path(), &journal, 10_000)
        .digest()
        .unwrap();

    let mut rng = Rng::new(seed ^ 0x9e37_79b9);
    let mut last = 0u64;
    let mut killed = 0;
    for round in 0..12 {
        let batch = 20 + rng.below(300);
        let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
            .arg("--data")
            .arg(data)
            .args(["rebuild", "--resume", "--checkpoints", "--batch-size"])
            .arg(batch.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        if round % 2 == 0 {
            let wanted = 1 + rng.below(6);
            let mut seen = 0;
            while seen < wanted {
                let Some(line) = lines.next() else { break };
                let line = line.unwrap();
                if let Some(n) = line.strip_prefix("checkpoint ") {
                    let n: u64 = n.parse().unwrap();
                    assert!(n > last, "checkpoint went backwards: {n} after {last}");
                    last = n;
                    seen += 1;
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(40)));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        killed += usize::from(!status.success());
        // Lines printed before the kill landed.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("checkpoint ") {
                let n: u64 = n.parse().unwrap();
                assert!(n > last, "checkpoint went backwards: {n} after {last}");
                last = n;
            }
        }
        let on_disk = Projection::open(data).unwrap().checkpoint().unwrap();
        assert!(
            on_disk >= last,
            "round {round}: checkpoint {on_disk} behind printed {last}"
        );
        last = on_disk;
        eprintln!("round {round}: batch {batch}, checkpoint {on_disk}, {status}");
        if on_disk == end {
            break;
        }
    }
    eprintln!(
        "{end} records, {killed} children killed, checkpoint {last} before the final catch-up"
    );
    assert!(killed >= 10, "only {killed} children were killed mid-run");
    let mut projection = Projection::open(data).unwrap();
    projection.catch_up(&journal).unwrap();
    assert_eq!(projection.checkpoint().unwrap(), end);
    assert_eq!(projection.digest().unwrap(), clean);
    let mut state = state_at(&journal, Until::End).unwrap();
    assert_same_views(&projection, &mut state, &session_ids(30));
}

#[test]
fn the_v1_fixture_journal_projects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    std::fs::create_dir(&dir).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1");
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let journal = Journal::open_read_only(
        &dir,
        JournalConfig {
            segment_bytes: 2048,
            ..JournalConfig::default()
        },
    )
    .unwrap();
    let mut projection = Projection::open(tmp.path()).unwrap();
    projection.set_batch_size(7).unwrap();
    let done = projection.catch_up(&journal).unwrap();
    assert_eq!(done.next_offset, 60);
    assert_eq!(done.applied, 60);
    let mut state = state_at(&journal, Until::End).unwrap();
    let sessions: Vec<String> = state.artifacts().map(|a| a.session_id.clone()).collect();
    assert!(!sessions.is_empty());
    assert_same_views(&projection, &mut state, &sessions);
}

#[test]
fn search_and_stats_match_a_filter_over_the_fold() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    record_rich(data, 8, 6, 1, seed());
    let journal = open_journal(data);
    let state = state_at(&journal, Until::End).unwrap();
    let projection = project(data, &journal, 100);
    let all: Vec<_> = state.artifacts().cloned().collect();
    let check = |query: ArtifactQuery, keep: &dyn Fn(&logbook::state::ArtifactView) -> bool| {
        let expected: Vec<_> = all.iter().filter(|a| keep(a)).cloned().collect();
        assert_eq!(projection.search(&query).unwrap(), expected, "{query:?}");
        // The same query type filters the in-memory fold identically (FTS5 vs word matching).
        let in_memory: Vec<_> = all
            .iter()
            .filter(|a| query.matches(a))
            .take(query.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        assert_eq!(in_memory, expected, "in-memory {query:?}");
        let stats = projection.stats(&query).unwrap();
        assert_eq!(stats.total.count, expected.len() as u64);
        assert_eq!(
            stats.total.bytes,
            expected.iter().map(|a| a.size_bytes).sum::<u64>()
        );
        for t in TYPES {
            let of: Vec<_> = expected
                .iter()
                .filter(|a| a.artifact_type.as_str() == t)
                .collect();
            let got = stats.by_type.get(t).copied().unwrap_or_default();
            assert_eq!(got.count, of.len() as u64);
            assert_eq!(got.bytes, of.iter().map(|a| a.size_bytes).sum::<u64>());
        }
        let by_status: u64 = stats.by_status.values().map(|c| c.count).sum();
        assert_eq!(by_status, expected.len() as u64);
        expected.len()
    };
    let n = check(
        ArtifactQuery {
            artifact_type: Some(ArtifactType::Report),
            ..Default::default()
        },
        &|a| a.artifact_type == ArtifactType::Report,
    );
    assert!(n > 0);
    check(
        ArtifactQuery {
            status: Some(ArtifactStatus::Deleted),
            session_id: Some("s-3".into()),
            ..Default::default()
        },
        &|a| a.status == ArtifactStatus::Deleted && a.session_id == "s-3",
    );
    let n = check(
        ArtifactQuery {
            tags: vec!["blue".into(), "etcd".into()],
            tag_match: TagMatch::All,
            ..Default::default()
        },
        &|a| a.tags.iter().any(|t| t == "blue") && a.tags.iter().any(|t| t == "etcd"),
    );
    let m = check(
        ArtifactQuery {
            tags: vec!["blue".into(), "etcd".into()],
            tag_match: TagMatch::Any,
            ..Default::default()
        },
        &|a| a.tags.iter().any(|t| t == "blue" || t == "etcd"),
    );
    assert!(m > n);
    check(
        ArtifactQuery {
            task_id: Some("t-2".into()),
            min_size: Some(1000),
            max_size: Some(600_000),
            ..Default::default()
        },
        &|a| a.task_id.as_deref() == Some("t-2") && (1000..=600_000).contains(&a.size_bytes),
    );
    let mid = all[all.len() / 2].created_at_us;
    check(
        ArtifactQuery {
            created_from_us: Some(mid),
            created_until_us: Some(mid + 1),
            ..Default::default()
        },
        &|a| (mid..=mid + 1).contains(&a.created_at_us),
    );
    let n = check(
        ArtifactQuery {
            name_glob: Some("file-[12]*.js?n".into()),
            ..Default::default()
        },
        &|a| a.file_name == "file-1.json" || a.file_name == "file-2.json",
    );
    assert!(n > 0);
    // Full text over file name, description and tags; words are tokens, not query syntax.
    let n = check(
        ArtifactQuery {
            text: Some("KUBELET node".into()),
            ..Default::default()
        },
        &|a| a.description.is_some(),
    );
    assert!(n > 0);
    check(
        ArtifactQuery {
            text: Some("spaß".into()),
            ..Default::default()
        },
        &|a| a.tags.iter().any(|t| t == "Ärger spaß"),
    );
    check(
        ArtifactQuery {
            text: Some("\"unbalanced OR ( NEAR".into()),
            ..Default::default()
        },
        &|_| false,
    );
    let limited = projection
        .search(&ArtifactQuery {
            limit: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited, all[..3].to_vec());
}

#[test]
fn rebuild_cli_refuses_bad_input_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_logbook"))
            .arg("--data")
            .arg(tmp.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["rebuild"]);
    assert_eq!(out.status.code(), Some(2), "no journal");
    record_rich(tmp.path(), 1, 2, 1, 1);
    assert_eq!(
        run(&["rebuild", "--batch-size", "0"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&["rebuild", "--batch-size", "x"]).status.code(),
        Some(2)
    );
    let out = run(&["rebuild", "--resume"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("digest "), "{text}");
}
