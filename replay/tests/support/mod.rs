//! Shared helpers of the replay tests: a rich fixture journal built through the library API,
//! and running the real `logbook-replay` binary.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use logbook::artifacts::{ArtifactStore, NewArtifact};
use logbook::event::{ArtifactType, TaskType};
use logbook::journal::JournalConfig;
use logbook::recorder::Recorder;
use logbook::tracker::ProgressTracker;

/// Small segments and blocks, so ranges cross many of both.
pub fn small() -> JournalConfig {
    JournalConfig {
        segment_bytes: 8 << 10,
        block_bytes: 1 << 10,
        ..JournalConfig::default()
    }
}

/// Three upgrades with nested tasks, progress, sessions and artifacts. `upg-1` fails: its
/// subtask `ng-2` (under `green`) fails, then `green`, then the upgrade. With `seal`, every
/// record ends in a sealed segment (what S3 holds). Returns the open recorder.
pub fn record_rich_run(data: &Path, seal: bool) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder::open(data, small()).unwrap());
    let store = ArtifactStore::new(recorder.clone(), data.join("artifacts"));
    for u in 0..3 {
        let id = format!("upg-{u}");
        let t = ProgressTracker::new(recorder.clone(), &id);
        t.start_upgrade("plan", "prod-eks", "Planning", None)
            .unwrap();
        t.add_task("green", "Provision green", TaskType::UpgradeStep, None)
            .unwrap();
        t.add_task("checks", "Checks", TaskType::Validation, None)
            .unwrap();
        t.start_task("green").unwrap();
        for s in 0..4 {
            let sub = format!("ng-{s}");
            t.add_task(&sub, "Node group", TaskType::UpgradeStep, Some("green"))
                .unwrap();
            t.start_task(&sub).unwrap();
            for p in 1..=10 {
                if u == 1 && s == 2 && p == 6 {
                    break;
                }
                t.update_task_progress(&sub, f64::from(p * 10), Some("rolling nodes"))
                    .unwrap();
            }
            if u == 1 && s == 2 {
                t.fail_task(&sub, "node group ng-2: nodes NotReady")
                    .unwrap();
                break;
            }
            t.complete_task(&sub, None, None).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        t.change_phase("Traffic shift").unwrap();
        let session = format!("sess-{u}");
        store.create_session(&session, &id, "prod-eks").unwrap();
        store
            .create_collection(&session, "logs", "Logs", Some("green"))
            .unwrap();
        let file = data.join(format!("green-{u}.log"));
        std::fs::write(&file, format!("upgrade {u}: green\n").repeat(10)).unwrap();
        store
            .add_artifact(&NewArtifact {
                session_id: session.clone(),
                collection_id: "logs".into(),
                artifact_id: format!("log-{u}"),
                source: file,
                file_name: None,
                artifact_type: ArtifactType::LogFile,
                tags: vec!["green".into()],
                task_id: Some("green".into()),
                description: None,
                expires_at: None,
            })
            .unwrap();
        if u == 1 {
            t.fail_task("green", "node group ng-2 failed").unwrap();
            t.fail_upgrade("green cluster not ready").unwrap();
        } else {
            t.start_task("checks").unwrap();
            t.complete_task("checks", None, None).unwrap();
            t.complete_task("green", None, None).unwrap();
            t.complete_upgrade(Some("done")).unwrap();
        }
    }
    if seal {
        assert!(
            recorder
                .journal()
                .seal_now(Duration::from_secs(30))
                .unwrap()
        );
    }
    recorder
}

/// Records the rich run and closes the recorder.
pub fn rich_dir(data: &Path) {
    let recorder = record_rich_run(data, false);
    Arc::into_inner(recorder).unwrap().close().unwrap();
}

/// Runs `logbook-replay ARGS` with `env`.
pub fn replay_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_logbook-replay"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command.env_remove("AWS_PROFILE");
    command.output().unwrap()
}

/// Runs `logbook-replay ARGS`.
pub fn replay(args: &[&str]) -> Output {
    replay_env(args, &[])
}

/// Stdout of a successful run.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts exit 2 with a one-line error naming `needle`.
pub fn bad(out: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}

/// JSON lines.
pub fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
