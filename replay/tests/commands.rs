//! Every subcommand of the real `logbook-replay` binary on a fixture journal recorded through
//! the library: happy paths, the failure chain, `state --at` against the library's as-of view,
//! ranges, damage (exit 1) and bad input (exit 2).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;

use logbook::envelope::to_json_line;
use logbook::journal::{Journal, JournalConfig, StartAt};
use logbook::state::{Until, state_at};
use serde_json::Value;
use support::{bad, lines, ok, replay, rich_dir};

fn dir_arg(data: &Path) -> String {
    data.display().to_string()
}

fn journal(data: &Path) -> Journal {
    Journal::open_read_only(data.join("journal"), JournalConfig::default()).unwrap()
}

#[test]
fn failed_upgrade_failure_chain_is_reported() {
    let data = tempfile::tempdir().unwrap();
    rich_dir(data.path());
    let src = dir_arg(data.path());
    let out = lines(&ok(replay(&["tasks", &src, "--json", "--context", "4"])));
    assert_eq!(out.len(), 3);
    let failed = out.iter().find(|u| u["upgrade_id"] == "upg-1").unwrap();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "green cluster not ready");
    let tasks = failed["failed_tasks"].as_array().unwrap();
    // Both failures, in order: the subtask first, then its parent.
    assert_eq!(tasks.len(), 2, "{failed}");
    assert_eq!(tasks[0]["task_id"], "ng-2");
    assert_eq!(tasks[0]["error"], "node group ng-2: nodes NotReady");
    assert_eq!(tasks[1]["task_id"], "green");
    // What led to ng-2's failure: its own last events (progress up to 50%), oldest first,
    // all before the failure, at most --context of them, from the task or its parent.
    let preceding = tasks[0]["preceding"].as_array().unwrap();
    assert_eq!(preceding.len(), 4);
    let failure_offset = tasks[0]["event"]["offset"].as_u64().unwrap();
    let offsets: Vec<u64> = preceding
        .iter()
        .map(|n| n["offset"].as_u64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert!(offsets.iter().all(|o| *o < failure_offset));
    assert!(
        preceding
            .iter()
            .all(|n| n["task_id"] == "ng-2" || n["task_id"] == "green")
    );
    assert_eq!(preceding[3]["type"], "task.progress");
    assert!(preceding[3]["text"].as_str().unwrap().contains("50.0%"));
    // The parent's context holds its own events (it has no parent): added, started.
    let green = tasks[1]["preceding"].as_array().unwrap();
    let kinds: Vec<&str> = green.iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["task.added", "task.started"], "{green:?}");
    assert_eq!(failed["upgrade_failure"]["event"]["type"], "upgrade.failed");
    // Timings: ng-3 was never added in upg-1; every ended task has a duration, no open ones.
    let task_ids: Vec<&str> = failed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(task_ids, ["green", "checks", "ng-0", "ng-1", "ng-2"]);
    // Slowest path: green (the longest root) down to one of its node groups.
    let ok_upgrade = out.iter().find(|u| u["upgrade_id"] == "upg-0").unwrap();
    let path = ok_upgrade["slowest_path"]["tasks"].as_array().unwrap();
    assert_eq!(path[0], "green");
    assert_eq!(path.len(), 2);
    assert!(ok_upgrade["failed_tasks"].as_array().unwrap().is_empty());
    for t in ok_upgrade["tasks"].as_array().unwrap() {
        assert_eq!(t["open"], false);
        assert!(t["duration_us"].as_i64().unwrap() >= 0);
    }
    // Human form: failures highlighted, the chain shown.
    let text = ok(replay(&["tasks", &src, "--upgrade", "upg-1"]));
    assert!(text.starts_with("!! upgrade upg-1"), "{text}");
    assert!(text.contains("failure of task ng-2: node group ng-2: nodes NotReady"));
    assert!(text.contains("slowest path"));
    assert!(!text.contains("upg-0"));
    bad(
        replay(&["tasks", &src, "--upgrade", "nope"]),
        "unknown upgrade",
    );
    bad(
        replay(&["tasks", &src, "--until", "999999"]),
        "beyond the end",
    );
}

#[test]
fn state_at_equals_the_library_as_of_view() {
    let data = tempfile::tempdir().unwrap();
    rich_dir(data.path());
    let src = dir_arg(data.path());
    let j = journal(data.path());
    let end = j.next_offset();
    let mut reader = j.reader(StartAt::Earliest).unwrap();
    let mut times = Vec::new();
    while let Some(r) = reader.next().unwrap() {
        times.push(r.ts_us);
    }
    for at in [0, 5, end / 3, end / 2, end - 1] {
        let mut state = state_at(&j, Until::Offset(at)).unwrap();
        let ids: Vec<String> = state.upgrade_ids().map(str::to_string).collect();
        let expected: String = ids
            .iter()
            .map(|id| serde_json::to_string(&state.upgrade_view(id).unwrap()).unwrap() + "\n")
            .collect();
        let got = ok(replay(&["state", &src, "--at", &at.to_string(), "--json"]));
        assert_eq!(got, expected, "at {at}");
        // One upgrade, as `logbook show upgrade ID --at N --json` prints it.
        if let Some(id) = ids.first() {
            let one = ok(replay(&[
                "state",
                &src,
                "--at",
                &at.to_string(),
                "--upgrade",
                id,
                "--json",
            ]));
            assert_eq!(
                one,
                serde_json::to_string(&state.upgrade_view(id).unwrap()).unwrap() + "\n"
            );
        }
    }
    // A time point: every record stamped at or before it.
    let t = times[(end / 2) as usize];
    let text = logbook::timestamp::format_us(t);
    let mut state = state_at(&j, Until::Time(t)).unwrap();
    let expected: String = state
        .upgrade_ids()
        .map(str::to_string)
        .collect::<Vec<_>>()
        .iter()
        .map(|id| serde_json::to_string(&state.upgrade_view(id).unwrap()).unwrap() + "\n")
        .collect();
    assert_eq!(
        ok(replay(&["state", &src, "--at", &text, "--json"])),
        expected
    );
    // Human form, and the end by default.
    let human = ok(replay(&["state", &src]));
    assert!(
        human.contains(&format!("state as of offset {}", end - 1)),
        "{human}"
    );
    assert!(human.contains("!! error: green cluster not ready"));
    // Bad input: exit 2 with one line.
    bad(
        replay(&["state", &src, "--at", &end.to_string()]),
        "beyond the end",
    );
    bad(replay(&["state", &src, "--at", "yesterday"]), "RFC 3339");
    bad(
        replay(&["state", &src, "--at", "2", "--upgrade", "upg-2"]),
        "unknown upgrade",
    );
    bad(replay(&["state", "/nonexistent/data"]), "no journal");
}

#[test]
fn timeline_ranges_and_threads() {
    let data = tempfile::tempdir().unwrap();
    rich_dir(data.path());
    let src = dir_arg(data.path());
    let text = ok(replay(&["timeline", &src]));
    assert!(
        text.lines().next().unwrap().contains("+0:00:00.000"),
        "{text}"
    );
    assert!(text.contains("upgrade upg-0 started"));
    assert!(text.contains("phase → Traffic shift"));
    assert!(!text.contains("10.0%"), "progress is left out by default");
    let failures: Vec<&str> = text.lines().filter(|l| l.starts_with("!!")).collect();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures[0].contains("ng-2") && failures[0].contains("FAILED"));
    assert!(text.contains("completed (after"));
    // With progress, JSON: one object per line, offsets increasing.
    let json = lines(&ok(replay(&["timeline", &src, "--json", "--progress"])));
    let end = journal(data.path()).next_offset();
    assert_eq!(json.len() as u64, end);
    assert_eq!(json[0]["t_rel_us"], 0);
    assert!(json.iter().filter(|l| l["failure"] == true).count() == 3);
    // A range: only its records, the same as a slice of the full timeline.
    let (a, b) = (end / 4, end / 2);
    let part = lines(&ok(replay(&[
        "timeline",
        &src,
        "--json",
        "--progress",
        "--from",
        &a.to_string(),
        "--until",
        &b.to_string(),
    ])));
    assert_eq!(part.len() as u64, b - a + 1);
    assert_eq!(part[0]["offset"], a);
    for (p, full) in part.iter().zip(&json[a as usize..]) {
        assert_eq!(p["event"], full["event"]);
        assert_eq!(p["ts"], full["ts"]);
    }
    // Time bounds select the same records as the offsets they name.
    let (ta, tb) = (
        json[a as usize]["ts"].as_str().unwrap().to_string(),
        json[b as usize]["ts"].as_str().unwrap().to_string(),
    );
    let by_time = lines(&ok(replay(&[
        "timeline",
        &src,
        "--json",
        "--progress",
        "--from",
        &ta,
        "--until",
        &tb,
    ])));
    assert!(by_time.first().unwrap()["ts"].as_str().unwrap() >= ta.as_str());
    assert!(by_time.last().unwrap()["ts"].as_str().unwrap() <= tb.as_str());
    assert!(by_time.iter().any(|l| l["offset"] == a));
    // Single-threaded decoding gives the same bytes.
    for args in [vec!["timeline", &src], vec!["export", &src]] {
        let mut one = args.clone();
        one.extend(["--threads", "1"]);
        assert_eq!(ok(replay(&args)), ok(replay(&one)));
    }
    bad(
        replay(&["timeline", &src, "--from", &(end + 5).to_string()]),
        "beyond the end",
    );
    bad(
        replay(&["timeline", &src, "--from", "9", "--until", "3"]),
        "is after",
    );
    bad(
        replay(&["timeline", &src, "--until", "2026-13-45T00:00:00Z"]),
        "RFC 3339",
    );
}

#[test]
fn diff_between_two_points() {
    let data = tempfile::tempdir().unwrap();
    rich_dir(data.path());
    let src = dir_arg(data.path());
    let end = journal(data.path()).next_offset();
    // Everything is added when diffing from the start.
    let all = lines(&ok(replay(&["diff", &src, "--json"])));
    let added = |entity: &str| {
        all.iter()
            .filter(|c| c["entity"] == entity && c["field"] == "added")
            .count()
    };
    assert_eq!(added("upgrade"), 3);
    assert_eq!(added("session"), 3);
    assert_eq!(added("artifact"), 3);
    // Between the failure's run-up and the end: upg-1 goes from in_progress to failed.
    let text = ok(replay(&["timeline", &src, "--json"]));
    let failed_at = lines(&text)
        .iter()
        .find(|l| l["type"] == "upgrade.failed")
        .unwrap()["offset"]
        .as_u64()
        .unwrap();
    let changes = lines(&ok(replay(&[
        "diff",
        &src,
        "--from",
        &(failed_at - 1).to_string(),
        "--to",
        &failed_at.to_string(),
        "--json",
    ])));
    assert!(
        changes.contains(&serde_json::json!({"entity": "upgrade", "id": "upg-1",
            "field": "status", "from": "in_progress", "to": "failed"})),
        "{changes:?}"
    );
    let human = ok(replay(&[
        "diff",
        &src,
        "--from",
        &(failed_at - 1).to_string(),
        "--to",
        &failed_at.to_string(),
    ]));
    assert!(
        human.contains("!! upgrade upg-1: status in_progress → failed"),
        "{human}"
    );
    // The same point twice: nothing changed.
    let none = ok(replay(&[
        "diff", &src, "--from", "7", "--to", "7", "--json",
    ]));
    assert_eq!(none, "");
    bad(
        replay(&["diff", &src, "--from", "9", "--to", "3"]),
        "is after",
    );
    bad(
        replay(&["diff", &src, "--to", &end.to_string()]),
        "beyond the end",
    );
    bad(replay(&["diff", &src, "--from", "soon"]), "RFC 3339");
}

#[test]
fn export_ndjson_csv_and_verify() {
    let data = tempfile::tempdir().unwrap();
    rich_dir(data.path());
    let src = dir_arg(data.path());
    let j = journal(data.path());
    let mut reader = j.reader(StartAt::Earliest).unwrap();
    let mut expected = String::new();
    while let Some(r) = reader.next().unwrap() {
        expected.push_str(&to_json_line(&r));
        expected.push('\n');
    }
    assert_eq!(ok(replay(&["export", &src])), expected);
    let part = ok(replay(&["export", &src, "--from", "10", "--until", "12"]));
    assert_eq!(
        part,
        expected
            .lines()
            .skip(10)
            .take(3)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let csv = ok(replay(&["export", &src, "--format", "csv"]));
    let mut rows = csv.lines();
    assert_eq!(
        rows.next().unwrap(),
        "offset,ts,schema_version,type,upgrade_id,task_id,session_id,artifact_id,payload"
    );
    assert_eq!(csv.lines().count() as u64, j.next_offset() + 1);
    assert!(rows.next().unwrap().starts_with("0,"));
    bad(
        replay(&["export", &src, "--until", "99999999"]),
        "beyond the end",
    );
    let usage = replay(&["export", &src, "--format", "xml"]);
    assert_eq!(usage.status.code(), Some(2));

    let verified = ok(replay(&["verify", &src]));
    assert!(
        verified.starts_with(&format!("ok: {} records, chain head ", j.next_offset())),
        "{verified}"
    );
    let report: Value = serde_json::from_str(&ok(replay(&["verify", &src, "--json"]))).unwrap();
    assert_eq!(report["ok"], true);
    drop(j);
    // Damage in a sealed segment: verify names it and exits 1; so does a scan reading it.
    let sealed = std::fs::read_dir(data.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".seg.zst"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[40] ^= 0x55;
    std::fs::write(&sealed, bytes).unwrap();
    let damaged = replay(&["verify", &src]);
    assert_eq!(damaged.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&damaged.stdout).starts_with("DAMAGED: "));
    let scan = replay(&["export", &src]);
    assert_eq!(scan.status.code(), Some(1), "{scan:?}");
    assert!(String::from_utf8_lossy(&scan.stderr).contains("damaged"));
}

#[test]
fn kept_v1_fixture_replays() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/journal-v1");
    let verified = ok(replay(&["verify", fixture]));
    assert!(verified.starts_with("ok: "), "{verified}");
    let tasks = ok(replay(&["tasks", fixture, "--json"]));
    assert!(lines(&tasks).iter().any(|u| u["status"] == "failed"));
    ok(replay(&["timeline", fixture]));
}
