//! Black-box tests of the `logbook` binary: exit codes (0 ok, 1 failure found, 2 bad input),
//! refusals that write nothing, the NDJSON envelope, the writer lock across processes, verify
//! and repair, and the demo.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use support::cli::{frame_pos, logbook, text};

const START: &str = r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p-1","cluster_name":"prod","phase":"Planning"}"#;
const ADD: &str = r#"{"type":"task.added","upgrade_id":"u-1","task_id":"t-1","name":"Drain nodes","task_type":"upgrade_step"}"#;

fn progress(pct: u32) -> String {
    format!(r#"{{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":{pct}.0}}"#)
}

fn events(data: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    let out = logbook(data, &all, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn record_refuses_bad_lines_by_number_and_writes_only_good_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let input = [
        START,
        "not json",
        "[1,2]",
        "",
        r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"nope","percentage":5.0}"#,
        ADD,
        r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":150.0}"#,
        r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":5.0,"ts":"x"}"#,
        r#"{"type":"task.added","upgrade_id":"u-1","task_id":"t-1","name":"again","task_type":"upgrade_step"}"#,
        r#"{"type":"task.added","upgrade_id":"u-1","task_id":"../x","name":"bad","task_type":"upgrade_step"}"#,
        r#"{"type":"task.added","upgrade_id":"u-1","task_id":"t-2","name":"orphan","task_type":"upgrade_step","parent_id":"t-9"}"#,
        r#"{"type":"upgrade.exploded","upgrade_id":"u-1"}"#,
    ]
    .join("\n");
    let out = logbook(tmp.path(), &["--json", "record"], &input);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for (line, needle) in [
        (2, "line 2: refused"),
        (3, "line 3: refused"),
        (5, "unknown task \"nope\""),
        (7, "percentage"),
        (8, "ts"),
        (9, "duplicate task id \"t-1\""),
        (10, "task_id"),
        (11, "parent task \"t-9\" does not exist"),
        (12, "upgrade.exploded"),
    ] {
        let found = stderr
            .lines()
            .find(|l| l.starts_with(&format!("line {line}: refused")));
        let found = found.unwrap_or_else(|| panic!("line {line} not refused: {stderr}"));
        assert!(found.contains(needle), "line {line}: {found}");
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"first": 0, "last": 1, "count": 2, "refused": 9, "already_recorded": 0})
    );
    let all = events(tmp.path(), &[]);
    assert_eq!(all.len(), 2, "nothing of a refused line was written");
    assert_eq!(all[0]["type"], "upgrade.started");
    assert_eq!(all[1]["offset"], 1);
    assert_eq!(all[1]["schema_version"], 1);
    let ts = all[1]["ts"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-11-22T23:40:00.123456Z".len(),
        "{ts}"
    );
    // A fully refused input writes nothing at all.
    let out = logbook(tmp.path(), &["record"], "{bad\n");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(events(tmp.path(), &[]).len(), 2);
}

#[test]
fn record_is_idempotent_by_id_and_refuses_terminal_transitions() {
    let tmp = tempfile::tempdir().unwrap();
    let keyed = r#"{"type":"task.progress","id":"k-1","upgrade_id":"u-1","task_id":"t-1","percentage":10.0}"#;
    let input = [START, ADD, keyed, keyed].join("\n");
    let out = logbook(tmp.path(), &["record"], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("line 4: already recorded at offset 2"));
    // Across runs too: the state is rebuilt from the journal on open.
    let out = logbook(tmp.path(), &["record"], keyed);
    assert!(out.status.success());
    assert_eq!(events(tmp.path(), &[]).len(), 3);
    let done = r#"{"type":"task.completed","upgrade_id":"u-1","task_id":"t-1"}"#;
    let out = logbook(
        tmp.path(),
        &["record"],
        &format!("{done}\n{}\n", progress(50)),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 2: refused: task \"t-1\" is completed"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(events(tmp.path(), &[]).len(), 4);
}

#[test]
fn events_from_until_and_types() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = vec![START.to_string(), ADD.to_string()];
    for i in 2..50u32 {
        lines.push(match i % 5 {
            0 => format!(
                r#"{{"type":"upgrade.phase_changed","upgrade_id":"u-1","phase":"phase {i}"}}"#
            ),
            _ => progress(i),
        });
    }
    let input = lines.join("\n");
    let out = logbook(tmp.path(), &["record", "--durability", "none"], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "recorded 50 events: offsets 0..=49"
    );
    let got = events(tmp.path(), &["--from", "10", "--until", "19"]);
    let offsets: Vec<u64> = got.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (10..=19).collect::<Vec<_>>());
    let upgrades = events(tmp.path(), &["--types", "upgrade.*"]);
    assert_eq!(upgrades.len(), 10);
    let first_ts = events(tmp.path(), &[])[0]["ts"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(events(tmp.path(), &["--from", &first_ts]).len(), 50);
    assert_eq!(events(tmp.path(), &["--from", "latest"]).len(), 0);
    for bad in [
        &["events", "--from", "99"][..],
        &["events", "--from", "yesterday"],
        &["events", "--types", "a,,b"],
    ] {
        let out = logbook(tmp.path(), bad, "");
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).starts_with("error: "));
    }
    let missing = tmp.path().join("nowhere");
    let out = logbook(&missing, &["events"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no journal at"));
}

#[test]
fn verify_names_the_first_bad_offset_and_repair_fixes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = vec![START.to_string(), ADD.to_string()];
    lines.extend((2..20).map(progress));
    assert!(
        logbook(tmp.path(), &["record"], &lines.join("\n"))
            .status
            .success()
    );
    let out = logbook(tmp.path(), &["verify"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("ok: 20 records"));

    // Flip a payload byte of record 12 in the unsealed segment.
    let journal = tmp.path().join("journal");
    let log = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let at = frame_pos(&bytes, 12) + 60;
    bytes[at] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();
    let out = logbook(tmp.path(), &["--json", "verify"], "");
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["damage"]["offset"], 12);
    assert_eq!(report["damage"]["kind"], "checksum");
    // The writer refuses to append over damage...
    let out = logbook(tmp.path(), &["record"], &progress(99));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("journal damaged at offset 12"),
        "{}",
        text(&out.stderr)
    );
    // ...until told to repair, which is recorded.
    let out = logbook(tmp.path(), &["repair"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("from offset 12"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(logbook(tmp.path(), &["verify"], "").status.code(), Some(0));
    let all = events(tmp.path(), &[]);
    assert_eq!(all.len(), 13);
    assert_eq!(all[12]["type"], "journal.repaired");
}

#[test]
fn second_writer_process_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let mut holder = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .arg("--data")
        .arg(tmp.path())
        .args(["record", "--acks"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    writeln!(stdin, "{START}").unwrap();
    // Wait for the ack: the holder has the lock and is still running.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("\"first\":0"), "{line}");
    let out = logbook(tmp.path(), &["record"], ADD);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("locked by another writer (pid {})", holder.id())),
        "{stderr}"
    );
    // Readers are not blocked by the writer.
    assert_eq!(events(tmp.path(), &[]).len(), 1);
    drop(stdin);
    assert!(holder.wait().unwrap().success());
    assert_eq!(
        events(tmp.path(), &[]).len(),
        1,
        "the refused writer wrote nothing"
    );
}

#[test]
fn demo_runs_an_upgrade_and_a_failed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = logbook(
        tmp.path(),
        &[
            "demo",
            "--speed",
            "200",
            "--exit",
            "--listen",
            "127.0.0.1:0",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("completed") && stdout.contains("verify: ok"),
        "{stdout}"
    );
    let done = events(tmp.path(), &["--types", "upgrade.*"]);
    assert_eq!(done.first().unwrap()["type"], "upgrade.started");
    assert_eq!(done.last().unwrap()["type"], "upgrade.completed");

    let out = logbook(
        tmp.path(),
        &[
            "demo",
            "--speed",
            "200",
            "--fail-at",
            "validation",
            "--exit",
            "--listen",
            "127.0.0.1:0",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("FAILED in Validation"));
    let failed = events(tmp.path(), &["--types", "task.failed,upgrade.failed"]);
    assert!(failed.iter().any(|e| e["task_id"] == "validate-slo"));
    assert_eq!(failed.last().unwrap()["type"], "upgrade.failed");
    let rollback = events(tmp.path(), &["--types", "task.completed"]);
    assert!(rollback.iter().any(|e| e["task_id"] == "rollback"));
    // Artifacts of both runs: phase logs, configuration snapshots, the failed test report.
    let added = events(tmp.path(), &["--types", "artifact.added"]);
    assert!(added.len() >= 15, "{}", added.len());
    assert!(added.iter().any(|e| e["file_name"] == "test-report.json"
        && e["tags"].as_array().unwrap().iter().any(|t| t == "failed")));
    assert!(added.iter().any(|e| e["file_name"] == "rollback.log"));

    let out = logbook(tmp.path(), &["demo", "--fail-at", "lunch"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown phase \"lunch\""));
}

#[test]
fn bad_flags_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["record", "--durability", "sometimes"][..],
        &["--segment-bytes", "10", "record"],
        &["frobnicate"],
    ] {
        let out = logbook(tmp.path(), args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn show_upgrade_now_and_as_of_an_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let sub = r#"{"type":"task.added","upgrade_id":"u-1","task_id":"t-2","name":"Cordon","task_type":"upgrade_step","parent_id":"t-1"}"#;
    let done = r#"{"type":"task.completed","upgrade_id":"u-1","task_id":"t-2"}"#;
    let input = [START, ADD, sub, &progress(40), done].join("\n");
    assert!(logbook(tmp.path(), &["record"], &input).status.success());
    let show = |args: &[&str]| {
        let mut all = vec!["--json", "show", "upgrade", "u-1"];
        all.extend_from_slice(args);
        let out = logbook(tmp.path(), &all, "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let now = show(&[]);
    assert_eq!(now["status"], "in_progress");
    assert_eq!(
        now["tasks"][0]["effective_percentage"], 100.0,
        "its only subtask completed"
    );
    assert_eq!(now["tasks"][1]["status"], "completed");
    let before = show(&["--at", "2"]);
    assert_eq!(
        before["tasks"].as_array().unwrap().len(),
        2,
        "t-2 was added at offset 2"
    );
    assert_eq!(before["tasks"][1]["status"], "not_started");
    let human = logbook(tmp.path(), &["show", "upgrade", "u-1"], "");
    assert!(
        text(&human.stdout).contains("Drain nodes"),
        "{}",
        text(&human.stdout)
    );
    for bad in [
        &["show", "upgrade", "nope"][..],
        &["show", "upgrade", "u-1", "--at", "99"],
        &["show", "upgrade", "u-1", "--at", "noon"],
    ] {
        let out = logbook(tmp.path(), bad, "");
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
}

#[test]
fn artifacts_add_search_stats_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = [
        START,
        r#"{"type":"session.created","session_id":"s-1","upgrade_id":"u-1","cluster_name":"prod"}"#,
        r#"{"type":"collection.created","session_id":"s-1","collection_id":"logs","name":"Logs"}"#,
    ];
    assert!(
        logbook(tmp.path(), &["record"], &setup.join("\n"))
            .status
            .success()
    );
    let file = tmp.path().join("api.log");
    std::fs::write(&file, b"GET /healthz 200\n").unwrap();
    let f = file.to_str().unwrap();
    let add = [
        "artifacts",
        "add",
        f,
        "--session",
        "s-1",
        "--collection",
        "logs",
        "--type",
        "log_file",
    ];
    let mut with_tags = add.to_vec();
    with_tags.extend([
        "--tag",
        "api",
        "--id",
        "a-1",
        "--expires-at",
        "2020-01-01T00:00:00Z",
    ]);
    let out = logbook(tmp.path(), &with_tags, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut again = add.to_vec();
    again.extend(["--id", "a-1"]);
    let out = logbook(tmp.path(), &again, "");
    assert_eq!(out.status.code(), Some(2), "duplicate artifact id");
    assert!(
        text(&out.stderr).contains("duplicate artifact id \"a-1\""),
        "{}",
        text(&out.stderr)
    );
    let found = logbook(
        tmp.path(),
        &[
            "--json",
            "artifacts",
            "search",
            "--tag",
            "api",
            "--name",
            "*.log",
        ],
        "",
    );
    let view: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(
        (view["artifact_id"].as_str(), view["size_bytes"].as_u64()),
        (Some("a-1"), Some(17))
    );
    let stats = logbook(tmp.path(), &["--json", "artifacts", "stats"], "");
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["by_type"]["log_file"]["count"], 1);
    let out = logbook(tmp.path(), &["artifacts", "retention"], "");
    assert!(
        text(&out.stdout).contains("deleted 1 expired artifacts: a-1"),
        "{}",
        text(&out.stdout)
    );
    assert!(!tmp.path().join("artifacts/s-1/logs/api.log").exists());
    for bad in [
        &[
            "artifacts",
            "add",
            "/nonexistent",
            "--session",
            "s-1",
            "--collection",
            "logs",
            "--type",
            "log_file",
        ][..],
        &["artifacts", "search", "--since", "noon"],
        &["artifacts", "search", "--type", "poem"],
    ] {
        let out = logbook(tmp.path(), bad, "");
        assert_ne!(out.status.code(), Some(0), "{bad:?}");
    }
}

#[test]
fn writer_commands_keep_the_sqlite_projection_current() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = [START, ADD, &progress(30)].join("\n");
    assert!(logbook(tmp.path(), &["record"], &lines).status.success());
    let rebuild = |args: &[&str]| {
        let mut all = vec!["--json", "rebuild"];
        all.extend_from_slice(args);
        let out = logbook(tmp.path(), &all, "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let resumed = rebuild(&["--resume"]);
    assert_eq!(
        resumed["applied"], 0,
        "record already brought state.sqlite to the end"
    );
    assert_eq!(resumed["next_offset"], 3);
    let full = rebuild(&[]);
    assert_eq!(
        (full["applied"].as_u64(), &full["digest"]),
        (Some(3), &resumed["digest"])
    );
}

/// System events (`journal.repaired`, `subscriber.skipped`) are refused from producers, with the
/// reason, and nothing of them is written.
#[test]
fn system_events_are_refused_from_producers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = logbook(tmp.path(), &["record"], &format!("{START}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in [
        r#"{"type":"subscriber.skipped","consumer":"eventbridge","skipped_offset":0,"event_type":"upgrade.started","reason":"forged"}"#,
        r#"{"type":"journal.repaired","cut_from_offset":0,"bytes_cut":1,"segment":"s","reason":"forged"}"#,
    ] {
        let out = logbook(tmp.path(), &["record"], &format!("{line}\n"));
        assert_eq!(out.status.code(), Some(2), "{line}");
        assert!(
            text(&out.stderr).contains("written by the journal itself"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(events(tmp.path(), &[]).len(), 1, "only the upgrade.started");
}

/// Bad values of the flags this issue added are usage errors (exit 2) that create nothing.
#[test]
fn bad_new_flags_are_usage_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("never-created");
    for args in [
        &["serve", "--ws-stall-limit", "0"][..],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--follow",
            "http://not-s3",
        ],
        &["ship", "--s3", "s3://bucket/p", "--ship-interval", "0s"],
        &["ship", "--s3", "s3://Bad_Bucket/p", "--once"],
        &["restore", "--from", "s3://bucket/p", "--until", "yesterday"],
        &["restore", "--from", "s3://bucket/p", "--concurrency", "0"],
        &[
            "restore",
            "--from",
            "s3://bucket/p",
            "--until",
            "5",
            "--follow",
        ],
        &[
            "artifacts",
            "url",
            "a-1",
            "--expires",
            "1w",
            "--s3",
            "s3://bucket/p",
        ],
        &["demo", "--listen", "10.1.2.3:8765", "--exit"],
    ] {
        let out = logbook(&data, args, "");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}

/// `demo` refuses a busy dashboard address before it records anything.
#[test]
fn demo_on_a_busy_port_is_refused_before_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = logbook(tmp.path(), &["demo", "--exit", "--listen", &addr], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--listen 127.0.0.1:0"),
        "{}",
        text(&out.stderr)
    );
    assert!(!tmp.path().join("journal").exists(), "nothing recorded");
}
