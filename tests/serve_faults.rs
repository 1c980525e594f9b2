//! `logbook serve` when its disk fills up and its stderr cannot be written (findings 1 and 2 of
//! issue [1/4]), reproduced for real: the server runs under `ulimit -f` (every file it writes
//! stops at 2 MiB with `EFBIG`, SIGXFSZ ignored, as on a full disk) with stderr on `/dev/full`
//! (every log line fails with `ENOSPC`).
//!
//! It used to hang: the journal's threads died logging the failure (a panic in `eprintln!`),
//! the POST never answered, `/v1/health` said 200 and SIGTERM was ignored; and views went on
//! showing events that were never recorded. Now: the failing POST answers 503 with the cause,
//! health says 503, every later request fails fast with 503, SIGTERM ends the process in a few
//! seconds, and a restart serves exactly what the journal holds, with every acknowledged event
//! in it and the failed batch accepted again (already recorded or appended, never refused).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::serve::{agent, read};

/// A child killed and reaped when dropped (so a failing test leaves no server behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `logbook serve` on 127.0.0.1:0 under `ulimit -f` (KiB) with stderr on /dev/full; its child
/// and base URL.
fn start_limited(data: &Path, file_kib: u64) -> (Reaped, String) {
    let script = format!(
        "trap '' XFSZ; ulimit -f {file_kib}; exec \"$0\" --data \"$1\" serve --listen 127.0.0.1:0 2>/dev/full"
    );
    let mut child = Reaped(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_logbook"))
            .arg(data)
            .env_remove("LOGBOOK_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash starts"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("serve did not start: {line:?}"))
        .to_string();
    (child, url)
}

fn post(url: &str, body: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = agent()
        .post(format!("{url}/v1/events"))
        .send(body.as_bytes())
        .expect("the server answers (a hang ends in the client's timeout)");
    let (status, value) = read(response);
    (status, value, started.elapsed())
}

fn get(url: &str, path: &str) -> (u16, Value) {
    read(
        agent()
            .get(format!("{url}{path}"))
            .call()
            .expect("the server answers"),
    )
}

fn batch(n: usize) -> String {
    let message = "m".repeat(4000);
    (0..50)
        .map(|i| {
            let k = n * 50 + i;
            format!(
                r#"{{"id":"e-{k}","type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":{},"message":"{k} {message}"}}"#,
                (k % 100) as f64
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_full_disk_fails_serve_cleanly_and_a_restart_serves_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let (mut child, url) = start_limited(data, 2048);
    let setup = r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p","cluster_name":"c","phase":"Go"}
{"type":"task.added","upgrade_id":"u-1","task_id":"t-1","name":"T","task_type":"upgrade_step"}"#;
    assert_eq!(post(&url, setup).0, 200);
    let mut acked: Vec<u64> = Vec::new();
    let mut failed_batch = None;
    for n in 0..400 {
        let (status, body, took) = post(&url, &batch(n));
        assert!(took < Duration::from_secs(30), "a POST took {took:?}");
        if status == 200 {
            acked.extend(
                body["offsets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o.as_u64().unwrap()),
            );
            continue;
        }
        assert_eq!(status, 503, "the failing batch: {body}");
        let error = body["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.contains("os error 27") || error.contains("large") || error.contains("full"),
            "the cause is named: {error}"
        );
        failed_batch = Some(n);
        break;
    }
    let failed_batch = failed_batch.expect("the disk filled within 400 batches");
    // Health says so; every later request fails fast with the cause.
    let (status, health) = get(&url, "/v1/health");
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "failed");
    let (status, _, took) = post(&url, &batch(failed_batch + 1));
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(2), "fail fast: {took:?}");
    let (status, view) = get(&url, "/v1/upgrades/u-1");
    assert_eq!(
        status, 503,
        "no view of a state ahead of the journal: {view}"
    );
    // SIGTERM ends it promptly.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if child.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve ignored SIGTERM after the failure"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Restarted with room: every acknowledged event is there, views are the journal's, and the
    // failed batch goes in whole.
    let server = support::serve::start(data, &[]);
    let end = server.next_offset();
    assert!(
        acked.iter().all(|o| *o < end),
        "an acknowledged event was lost"
    );
    let (status, view) = server.get("/v1/upgrades/u-1");
    assert_eq!(status, 200);
    assert_eq!(
        view["as_of"].as_u64(),
        Some(end - 1),
        "views are the journal's: {view}"
    );
    let (status, report) = server.post_body(batch(failed_batch).as_bytes());
    assert_eq!(
        status, 200,
        "re-posting the failed batch is accepted: {report}"
    );
    let appended = report["count"].as_u64().unwrap();
    let already = report["already_recorded"].as_array().unwrap().len() as u64;
    assert_eq!(appended + already, 50);
    let out = support::cli::logbook(data, &["verify"], "");
    assert!(out.status.success(), "{}", support::cli::text(&out.stdout));
    assert!(support::cli::text(&out.stdout).starts_with("ok"));
}

/// Finding 4, under a running server: `state.sqlite` overwritten with random bytes while
/// `serve` records. It used to warn on every ingest and never rebuild. Every later POST is
/// answered 200, the views stay right, and after a restart `state.sqlite` equals a fresh fold.
#[test]
fn a_state_file_garbled_under_a_running_server_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let server = support::serve::start(data, &[]);
    let upgrade = |u: usize| {
        format!(
            r#"{{"type":"upgrade.started","upgrade_id":"u-{u}","plan_id":"p","cluster_name":"c","phase":"Go"}}
{{"type":"task.added","upgrade_id":"u-{u}","task_id":"t","name":"T","task_type":"upgrade_step"}}
{{"type":"task.progress","upgrade_id":"u-{u}","task_id":"t","percentage":{u}}}"#
        )
    };
    for u in 0..20 {
        assert_eq!(server.post_body(upgrade(u).as_bytes()).0, 200);
    }
    // Let the projector apply them, then garble the file under it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while logbook::projection::Projection::open_read(data)
        .ok()
        .flatten()
        .and_then(|p| p.checkpoint().ok())
        != Some(60)
    {
        assert!(Instant::now() < deadline, "the projector never caught up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(data.join("state.sqlite"), noise).unwrap();
    for u in 20..40 {
        let (status, body) = server.post_body(upgrade(u).as_bytes());
        assert_eq!(status, 200, "after the garbling: {body}");
    }
    for u in [0, 19, 20, 39] {
        let (status, view) = server.get(&format!("/v1/upgrades/u-{u}"));
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["tasks"][0]["percentage"], u as f64);
    }
    let (status, list) = server.get("/v1/upgrades");
    assert_eq!(status, 200);
    assert_eq!(list["upgrades"].as_array().unwrap().len(), 40);
    drop(server);
    let restarted = support::serve::start(data, &[]);
    assert_eq!(
        restarted.get("/v1/upgrades").1["upgrades"]
            .as_array()
            .unwrap()
            .len(),
        40
    );
    drop(restarted);
    let journal = logbook::journal::Journal::open_read_only(
        data.join("journal"),
        logbook::journal::JournalConfig::default(),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut fresh = logbook::projection::Projection::open(elsewhere.path()).unwrap();
    fresh.catch_up(&journal).unwrap();
    assert_eq!(
        logbook::projection::Projection::open(data)
            .unwrap()
            .digest()
            .unwrap(),
        fresh.digest().unwrap()
    );
}
