//! S3 (issue 5) against a real moto_server through the real AWS SDK: ship (conditional puts,
//! metadata, head), fencing of a second writer, an outage mid-shipping (a proxy cut in front of
//! moto), restore (views equal the source's, point in time equals the as-of view, a tampered
//! object is refused by name), artifacts (multipart with flat memory, pre-signed URL fetched
//! with a plain HTTP client, retention deleting the object).
//! moto is installed into ./.venv by scripts/test.sh; without it these tests fail (never skip).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use logbook::artifacts::{ArtifactStore, NewArtifact};
use logbook::event::{ArtifactType, TaskType};
use logbook::journal::JournalConfig;
use logbook::projection::Projection;
use logbook::recorder::Recorder;
use logbook::s3::{S3Location, Shipper, UploadConfig};
use logbook::tracker::ProgressTracker;
use serde_json::Value;
use support::s3::*;

/// A rich run: 3 upgrades (one failed) with nested tasks, progress, a session with
/// collections and artifacts; small segments so there are many. The upgrade ids.
fn record_rich_run(data: &Path) {
    let recorder = Arc::new(Recorder::open(data, small_segments()).unwrap());
    let store = ArtifactStore::new(recorder.clone(), data.join("artifacts"));
    for u in 0..3 {
        let id = format!("upg-{u}");
        let t = ProgressTracker::new(recorder.clone(), &id);
        t.start_upgrade("plan", "prod-eks", "Planning", None)
            .unwrap();
        t.add_task("green", "Provision green", TaskType::UpgradeStep, None)
            .unwrap();
        t.start_task("green").unwrap();
        for s in 0..4 {
            let sub = format!("ng-{s}");
            t.add_task(&sub, "Node group", TaskType::UpgradeStep, Some("green"))
                .unwrap();
            t.start_task(&sub).unwrap();
            for p in 1..=20 {
                t.update_task_progress(&sub, f64::from(p * 5), Some("rolling nodes"))
                    .unwrap();
            }
            t.complete_task(&sub, None, None).unwrap();
        }
        t.change_phase("Traffic shift").unwrap();
        let session = format!("sess-{u}");
        store.create_session(&session, &id, "prod-eks").unwrap();
        store
            .create_collection(&session, "logs", "Logs", Some("green"))
            .unwrap();
        let file = data.join(format!("green-{u}.log"));
        std::fs::write(&file, format!("upgrade {u}: green ready\n").repeat(100)).unwrap();
        store
            .add_artifact(&NewArtifact {
                session_id: session.clone(),
                collection_id: "logs".into(),
                artifact_id: format!("log-{u}"),
                source: file,
                file_name: None,
                artifact_type: ArtifactType::LogFile,
                tags: vec!["green".into(), format!("u{u}")],
                task_id: Some("green".into()),
                description: None,
                expires_at: None,
            })
            .unwrap();
        if u == 1 {
            t.fail_task("green", "validation failed").unwrap();
            t.fail_upgrade("validation failed").unwrap();
        } else {
            t.complete_task("green", None, None).unwrap();
            t.complete_upgrade(Some("done")).unwrap();
        }
    }
    drop(store);
    Arc::into_inner(recorder).unwrap().close().unwrap();
}

/// `head.json` of `location`, if any.
async fn read_head(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
) -> Result<Option<logbook::s3::layout::Head>, logbook::s3::S3Error> {
    let objects = logbook::s3::Objects::new(client.clone(), location.clone());
    Ok(logbook::s3::prefix::read_head(&objects)
        .await?
        .map(|(head, _)| head))
}

fn digest(data: &Path) -> String {
    Projection::open(data).unwrap().digest().unwrap()
}

#[test]
fn ship_restore_views_equal_point_in_time_and_tampering() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let a = tempfile::tempdir().unwrap();
    record_rich_run(a.path());
    let url = format!("s3://{BUCKET}/team/prod");

    // Ship everything (the active segment is sealed first), with its artifacts.
    let shipped: Value = serde_json::from_str(&ok(logbook(
        a.path(),
        endpoint,
        &["--json", "ship", "--s3", &url, "--once"],
    )))
    .unwrap();
    let end = shipped["journal_next_offset"].as_u64().unwrap();
    assert_eq!(shipped["shipped_next_offset"], end, "{shipped}");
    assert!(shipped["segments"].as_u64().unwrap() > 3, "{shipped}");
    assert_eq!(shipped["artifacts_uploaded"], 3);
    // Every object carries its metadata; keys are contiguous and sorted.
    let keys = segment_keys(rt, sdk, "team/prod");
    assert_eq!(keys.len() as u64, shipped["segments"].as_u64().unwrap());
    let head = rt
        .block_on(s3(sdk).head_object().bucket(BUCKET).key(&keys[1]).send())
        .unwrap();
    let meta = head.metadata().unwrap();
    for field in [
        "first-offset",
        "last-offset",
        "count",
        "blake3",
        "chain-start",
        "chain-end",
    ] {
        assert!(meta.contains_key(field), "{field} missing: {meta:?}");
    }
    // A second --once ships nothing new and overwrites nothing.
    let again: Value = serde_json::from_str(&ok(logbook(
        a.path(),
        endpoint,
        &["--json", "ship", "--s3", &url, "--once"],
    )))
    .unwrap();
    assert_eq!(again["segments"], 0, "{again}");

    // Restore into B: same events, same views, same projection digest, artifacts checked.
    let b = tempfile::tempdir().unwrap();
    let restored: Value = serde_json::from_str(&ok(logbook(
        b.path(),
        endpoint,
        &["--json", "restore", "--from", &url, "--with-artifacts"],
    )))
    .unwrap();
    assert_eq!(restored["next_offset"], end);
    assert_eq!(restored["artifacts"], 3);
    let events = |d: &Path| ok(logbook(d, endpoint, &["events", "--from", "0"]));
    assert_eq!(events(a.path()), events(b.path()));
    assert_eq!(digest(a.path()), digest(b.path()));
    for u in 0..3 {
        let show = |d: &Path, what: &str, id: &str| {
            ok(logbook(d, endpoint, &["--json", "show", what, id]))
        };
        let id = format!("upg-{u}");
        assert_eq!(
            show(a.path(), "upgrade", &id),
            show(b.path(), "upgrade", &id)
        );
        let session = format!("sess-{u}");
        assert_eq!(
            show(a.path(), "session", &session),
            show(b.path(), "session", &session)
        );
        let name = format!("sess-{u}/logs/green-{u}.log");
        assert_eq!(
            std::fs::read(a.path().join("artifacts").join(&name)).unwrap(),
            std::fs::read(b.path().join("artifacts").join(&name)).unwrap()
        );
    }
    ok(logbook(b.path(), endpoint, &["verify"]));
    // A restore target that already holds a journal is refused (usage error).
    let refused = logbook(b.path(), endpoint, &["restore", "--from", &url]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already holds a journal"));
    assert_eq!(
        events(a.path()),
        events(b.path()),
        "the target is untouched"
    );

    // Point in time: restore --until N equals A's view as of N (N inside a segment).
    let n = end / 2 + 3;
    let c = tempfile::tempdir().unwrap();
    let pit: Value = serde_json::from_str(&ok(logbook(
        c.path(),
        endpoint,
        &[
            "--json",
            "restore",
            "--from",
            &url,
            "--until",
            &n.to_string(),
        ],
    )))
    .unwrap();
    assert_eq!(pit["next_offset"], n + 1);
    for u in 0..3 {
        let id = format!("upg-{u}");
        let as_of = logbook(
            a.path(),
            endpoint,
            &["--json", "show", "upgrade", &id, "--at", &n.to_string()],
        );
        let restored = logbook(c.path(), endpoint, &["--json", "show", "upgrade", &id]);
        assert_eq!(as_of.status.code(), restored.status.code(), "upgrade {id}");
        assert_eq!(as_of.stdout, restored.stdout, "upgrade {id}");
    }
    ok(logbook(c.path(), endpoint, &["verify"]));
    // A point-in-time restore ends in unsealed records: it cannot follow the prefix, and
    // asking changes nothing in it.
    let before = events(c.path());
    let out = logbook(
        c.path(),
        endpoint,
        &["serve", "--listen", "127.0.0.1:0", "--follow", &url],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a follower's data dir"));
    assert_eq!(events(c.path()), before);

    // One byte changed in one object (its BLAKE3 metadata left alone): refused, named.
    let victim = keys[2].clone();
    let tamper = |fix_metadata: bool| {
        let object = rt
            .block_on(s3(sdk).get_object().bucket(BUCKET).key(&victim).send())
            .unwrap();
        let mut metadata = object.metadata().cloned().unwrap_or_default();
        let mut bytes = rt
            .block_on(object.body.collect())
            .unwrap()
            .into_bytes()
            .to_vec();
        let i = bytes.len() / 3;
        bytes[i] ^= 0x01;
        if fix_metadata {
            metadata.insert("blake3".into(), blake3::hash(&bytes).to_hex().to_string());
        }
        rt.block_on(
            s3(sdk)
                .put_object()
                .bucket(BUCKET)
                .key(&victim)
                .set_metadata(Some(metadata))
                .body(ByteStream::from(bytes))
                .send(),
        )
        .unwrap();
    };
    let d = tempfile::tempdir().unwrap();
    for fix_metadata in [false, true] {
        tamper(fix_metadata);
        let out = logbook(d.path(), endpoint, &["restore", "--from", &url]);
        assert_eq!(out.status.code(), Some(1), "tampered restore must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&victim), "names the object: {stderr}");
        assert!(stderr.contains("offset"), "names the offset: {stderr}");
        // Nothing of the failed restore is left: no segment, no state.sqlite.
        let left: Vec<_> = std::fs::read_dir(d.path().join("journal"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "LOCK")
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(!d.path().join("state.sqlite").exists());
        // Put the original bytes back for the next round: flip the same byte again.
        tamper(fix_metadata);
    }
    // A failed restore removed what it wrote: the same directory takes a good restore.
    ok(logbook(d.path(), endpoint, &["restore", "--from", &url]));
    assert_eq!(events(a.path()), events(d.path()));
}

#[test]
fn a_second_journal_is_fenced_from_the_prefix() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let url = format!("s3://{BUCKET}/shared");
    let record = |data: &Path| {
        let recorder = Arc::new(Recorder::open(data, JournalConfig::default()).unwrap());
        let t = ProgressTracker::new(recorder.clone(), "u-1");
        t.start_upgrade("p", "c", "Planning", None).unwrap();
        drop(t);
        Arc::into_inner(recorder).unwrap().close().unwrap();
    };
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    record(first.path());
    record(second.path());
    ok(logbook(
        first.path(),
        endpoint,
        &["ship", "--s3", &url, "--once"],
    ));
    let keys = segment_keys(rt, sdk, "shared");
    let out = logbook(second.path(), endpoint, &["ship", "--s3", &url, "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to another journal"), "{stderr}");
    assert!(
        stderr.contains(&first.path().display().to_string()),
        "names the holder: {stderr}"
    );
    assert_eq!(
        segment_keys(rt, sdk, "shared"),
        keys,
        "nothing written by the second"
    );
    // The first writer keeps shipping (same data dir, same writer id).
    ok(logbook(
        first.path(),
        endpoint,
        &["ship", "--s3", &url, "--once"],
    ));
}

#[test]
fn outage_mid_shipping_loses_and_duplicates_nothing() {
    let env = S3Env::start();
    let proxy = env.proxy();
    let (rt, direct) = (&env.rt, &env.sdk);
    let via_proxy = rt.block_on(sdk(&proxy.endpoint()));
    let a = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        segment_bytes: 4 << 10,
        segment_age: Duration::from_millis(300),
        ..JournalConfig::default()
    };
    let recorder = Arc::new(Recorder::open(a.path(), config).unwrap());
    let location: S3Location = format!("s3://{BUCKET}/outage").parse().unwrap();
    let shipper = rt
        .block_on(Shipper::open(
            a.path(),
            recorder.clone(),
            s3(&via_proxy),
            location.clone(),
            UploadConfig::default(),
        ))
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(shipper.run(Duration::from_millis(200), async move {
        let _ = stopped.await;
    }));
    let t = ProgressTracker::new(recorder.clone(), "u-1");
    t.start_upgrade("p", "c", "Planning", None).unwrap();
    t.add_task("t", "T", TaskType::UpgradeStep, None).unwrap();
    t.start_task("t").unwrap();
    let mut pct = 0.0;
    let mut append = |n: usize| {
        for _ in 0..n {
            pct = (pct + 0.01f64).min(100.0);
            t.update_task_progress("t", pct, Some("appending through the outage"))
                .unwrap();
        }
    };
    append(300);
    std::thread::sleep(Duration::from_millis(800));
    // S3 goes away (open uploads are cut) while appends go on for a while.
    proxy.cut();
    let during = Instant::now();
    while during.elapsed() < Duration::from_secs(3) {
        append(50);
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.restore();
    append(300);
    // Wait until everything sealed is in S3 (head.json), bounded.
    let sealed_end = || recorder.journal().sealed_end();
    std::thread::sleep(Duration::from_millis(600));
    let target = sealed_end();
    assert!(target > 600, "segments sealed: {target}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let head = rt.block_on(read_head(&s3(direct), &location)).unwrap();
        if head.as_ref().is_some_and(|h| h.next_offset >= target) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shipping did not catch up: {head:?}, target {target}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.send(()).unwrap();
    rt.block_on(task).unwrap().unwrap();
    // S3 holds a contiguous, non-overlapping run of segments from 0 (no duplicate ranges).
    let mut ranges: Vec<(u64, u64)> = segment_keys(rt, direct, "outage")
        .iter()
        .map(|k| logbook::s3::layout::parse_segment_key(&location, k).unwrap())
        .collect();
    ranges.sort_unstable();
    let mut next = 0;
    for (first, last) in &ranges {
        assert_eq!(*first, next, "contiguous: {ranges:?}");
        next = last + 1;
    }
    assert!(next >= target);
    // And it restores to exactly the local records.
    let b = tempfile::tempdir().unwrap();
    let (report, _follower) = rt
        .block_on(logbook::s3::restore(
            &s3(direct),
            &location,
            b.path(),
            &logbook::s3::RestoreOptions::default(),
            &mut |_| {},
            &mut |_| {},
        ))
        .unwrap();
    assert_eq!(report.next_offset, next);
    let restored = logbook::journal::Journal::open_read_only(
        b.path().join("journal"),
        JournalConfig::default(),
    )
    .unwrap();
    let mut theirs = restored
        .reader(logbook::journal::StartAt::Earliest)
        .unwrap();
    let mut ours = recorder
        .journal()
        .reader(logbook::journal::StartAt::Earliest)
        .unwrap();
    for _ in 0..next {
        assert_eq!(
            theirs.next().unwrap().unwrap(),
            ours.next().unwrap().unwrap()
        );
    }
    assert!(theirs.next().unwrap().is_none());
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn artifacts_multipart_presigned_url_and_retention() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let data = tempfile::tempdir().unwrap();
    let url = format!("s3://{BUCKET}/arts");
    {
        let recorder = Arc::new(Recorder::open(data.path(), JournalConfig::default()).unwrap());
        let t = ProgressTracker::new(recorder.clone(), "u-1");
        t.start_upgrade("p", "c", "Planning", None).unwrap();
        let store = ArtifactStore::new(recorder.clone(), data.path().join("artifacts"));
        store.create_session("s-1", "u-1", "c").unwrap();
        store
            .create_collection("s-1", "dumps", "Dumps", None)
            .unwrap();
        // 50 MiB of varied bytes.
        let big = data.path().join("heap.dump");
        let mut bytes = Vec::with_capacity(50 << 20);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while bytes.len() < 50 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(&big, &bytes).unwrap();
        let small = data.path().join("old.log");
        std::fs::write(&small, "expired\n").unwrap();
        for (id, source, expires) in [
            ("big", big, None),
            ("old", small, Some("2020-01-01T00:00:00Z".to_string())),
        ] {
            store
                .add_artifact(&NewArtifact {
                    session_id: "s-1".into(),
                    collection_id: "dumps".into(),
                    artifact_id: id.into(),
                    source,
                    file_name: None,
                    artifact_type: ArtifactType::Diagnostic,
                    tags: vec!["dump".into()],
                    task_id: None,
                    description: None,
                    expires_at: expires,
                })
                .unwrap();
        }
        drop((store, t));
        Arc::into_inner(recorder).unwrap().close().unwrap();
    }
    // Upload the 50 MiB file in a child process, sampling its memory.
    let mut child = logbook_command(
        data.path(),
        endpoint,
        &["--json", "artifacts", "upload", "big", "--s3", &url],
    )
    .spawn()
    .unwrap();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "upload did not finish");
        peak = peak.max(rss_kib(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(10));
    }
    let out: Value = serde_json::from_str(&ok(child.wait_with_output().unwrap())).unwrap();
    println!("peak RSS of the 50 MiB upload: {} MiB", peak / 1024);
    assert_eq!(out["s3_key"], "arts/artifacts/s-1/dumps/heap.dump");
    assert!(
        peak < 48 << 10,
        "memory must stay below the file's size: peak {} MiB",
        peak / 1024
    );
    let head = rt
        .block_on(
            s3(sdk)
                .head_object()
                .bucket(BUCKET)
                .key("arts/artifacts/s-1/dumps/heap.dump")
                .send(),
        )
        .unwrap();
    assert_eq!(head.content_length(), Some(50 << 20));
    assert_eq!(head.metadata().unwrap()["artifact-type"], "diagnostic");
    let search = ok(logbook(
        data.path(),
        endpoint,
        &["--json", "artifacts", "search", "--status", "uploaded"],
    ));
    assert!(search.contains("\"big\""), "{search}");

    // A pre-signed URL, fetched with a plain HTTP client: the same bytes.
    let presigned = ok(logbook(
        data.path(),
        endpoint,
        &["artifacts", "url", "big", "--expires", "1h", "--s3", &url],
    ));
    let mut response = ureq::get(presigned.trim()).call().unwrap();
    let fetched = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    let local = std::fs::read(data.path().join("artifacts/s-1/dumps/heap.dump")).unwrap();
    assert!(fetched == local, "presigned bytes differ");
    // Not uploaded: a usage error with a reason.
    let not_yet = logbook(
        data.path(),
        endpoint,
        &["artifacts", "url", "old", "--s3", &url],
    );
    assert_eq!(not_yet.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_yet.stderr).contains("not uploaded"));
    assert!(
        rt.block_on(
            s3(sdk)
                .head_object()
                .bucket(BUCKET)
                .key("arts/artifacts/s-1/dumps/old.log")
                .send()
        )
        .is_err(),
        "asking for a URL uploads nothing"
    );

    // Retention: the expired artifact (uploaded first) loses its file and its object.
    ok(logbook(
        data.path(),
        endpoint,
        &["artifacts", "upload", "old", "--s3", &url],
    ));
    let key = "arts/artifacts/s-1/dumps/old.log";
    rt.block_on(s3(sdk).head_object().bucket(BUCKET).key(key).send())
        .unwrap();
    let retention: Value = serde_json::from_str(&ok(logbook(
        data.path(),
        endpoint,
        &["--json", "artifacts", "retention", "--s3", &url],
    )))
    .unwrap();
    assert_eq!(retention["deleted"], serde_json::json!(["old"]));
    assert!(
        rt.block_on(s3(sdk).head_object().bucket(BUCKET).key(key).send())
            .is_err()
    );
    assert!(!data.path().join("artifacts/s-1/dumps/old.log").exists());
}

#[test]
fn follow_applies_newly_shipped_segments() {
    let env = S3Env::start();
    let endpoint = env.endpoint.as_str();
    let url = format!("s3://{BUCKET}/follow");
    let a = tempfile::tempdir().unwrap();
    append_and_ship(a.path(), endpoint, &url, 0, 200);
    let b = tempfile::tempdir().unwrap();
    let mut follower = logbook_command(
        b.path(),
        endpoint,
        &[
            "restore",
            "--from",
            &url,
            "--follow",
            "--poll-interval",
            "0.2s",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let count = |d: &Path| {
        let out = logbook(d, endpoint, &["events", "--from", "0"]);
        if !out.status.success() {
            return 0;
        }
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let wait_equal = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let want = count(a.path());
        while count(b.path()) != want {
            assert!(
                Instant::now() < deadline,
                "{what}: follower stuck at {} of {want}",
                count(b.path())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_equal("initial restore");
    // The follower holds the data dir: no writer can open it meanwhile.
    let refused = logbook(b.path(), endpoint, &["record"]);
    assert_ne!(refused.status.code(), Some(0));
    for round in 1..=2 {
        append_and_ship(a.path(), endpoint, &url, 200 * round, 150);
        wait_equal("after more shipping");
    }
    let events = |d: &Path| ok(logbook(d, endpoint, &["events", "--from", "0"]));
    assert_eq!(events(a.path()), events(b.path()));
    assert_eq!(digest(a.path()), digest(b.path()));
    let status = Command::new("kill")
        .args(["-TERM", &follower.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = follower.try_wait().unwrap() {
            assert!(status.success(), "follower exit {status}");
            break;
        }
        assert!(Instant::now() < deadline, "follower did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_ships_what_it_records() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let data = tempfile::tempdir().unwrap();
    let url = format!("s3://{BUCKET}/served");
    let serve = serve_shipping(data.path(), endpoint, &url, "0.5s");
    let body = [
        r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p","cluster_name":"c","phase":"Planning"}"#,
        r#"{"type":"upgrade.phase_changed","upgrade_id":"u-1","phase":"Provision green"}"#,
        r#"{"type":"upgrade.completed","upgrade_id":"u-1"}"#,
    ]
    .join("\n");
    let response = ureq::post(format!("{}/v1/events", serve.base))
        .send(body.as_bytes())
        .unwrap();
    assert_eq!(response.status(), 200);
    let location: S3Location = url.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head = rt.block_on(read_head(&s3(sdk), &location)).unwrap();
        if head.as_ref().is_some_and(|h| h.next_offset >= 3) {
            break;
        }
        assert!(Instant::now() < deadline, "serve did not ship: {head:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(serve);
}

/// `serve --follow`: a read-only replica serving the views of a prefix, kept current,
/// refusing ingest, resuming its data dir after a restart.
#[test]
fn serve_follow_is_a_read_only_replica() {
    let env = S3Env::start();
    let (endpoint, rt) = (env.endpoint.as_str(), &env.rt);
    let url = format!("s3://{BUCKET}/replica");
    let a = tempfile::tempdir().unwrap();
    let append = |from: usize, n: usize| append_and_ship(a.path(), endpoint, &url, from, n);
    append(0, 100);
    let replica = tempfile::tempdir().unwrap();
    let start = || {
        spawn_serve(
            replica.path(),
            endpoint,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--follow",
                &url,
                "--poll-interval",
                "0.2s",
            ],
        )
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let json = |url: String| -> Value {
        let mut r = agent.get(url).call().unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    };
    let wait_for = |base: &str, end: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = json(format!("{base}/v1/health"));
            if health["next_offset"].as_u64() == Some(end) {
                break;
            }
            assert!(Instant::now() < deadline, "replica stuck: {health}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let serve = start();
    let base = serve.base.clone();
    wait_for(&base, 103);
    let refused = agent
        .post(format!("{base}/v1/events"))
        .send(r#"{"type":"upgrade.completed","upgrade_id":"u-1"}"#)
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert_eq!(
        json(format!("{base}/v1/health"))["next_offset"],
        103,
        "nothing written"
    );
    append(100, 50);
    wait_for(&base, 153);
    let view = json(format!("{base}/v1/upgrades/u-1"));
    assert_eq!(view["as_of"], 152, "{view}");
    // Restarted on the same data dir, it resumes (no new restore) and keeps following.
    drop(serve);
    let serve = start();
    let base = serve.base.clone();
    wait_for(&base, 153);
    // A WebSocket client tailing the replica sees the records as they are followed.
    let ws_url = format!("{}/v1/stream?from=150", base.replace("http://", "ws://"));
    let tail = rt.spawn(async move {
        use futures_util::StreamExt;
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let mut offsets = Vec::new();
        while offsets.last() != Some(&202u64) {
            let frame = tokio::time::timeout(Duration::from_secs(60), ws.next())
                .await
                .expect("live frames from the replica")
                .unwrap()
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                let v: Value = serde_json::from_str(&text).unwrap();
                offsets.push(v["offset"].as_u64().unwrap());
            }
        }
        offsets
    });
    append(150, 50);
    wait_for(&base, 203);
    let offsets = rt.block_on(tail).unwrap();
    assert_eq!(offsets, (150..203).collect::<Vec<u64>>());
    drop(serve);
    assert_eq!(events(a.path(), endpoint), events(replica.path(), endpoint));
}

/// `demo --s3 --eventbridge-bus`: the main job ships everything and notifies, then a restore
/// elsewhere holds exactly the demo's journal.
#[test]
fn demo_ships_and_notifies() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    rt.block_on(
        aws_sdk_eventbridge::Client::new(sdk)
            .create_event_bus()
            .name("demo-bus")
            .send(),
    )
    .unwrap();
    let url = format!("s3://{BUCKET}/demo");
    let a = tempfile::tempdir().unwrap();
    let out = ok(logbook(
        a.path(),
        endpoint,
        &[
            "demo",
            "--speed",
            "100",
            "--exit",
            "--listen",
            "127.0.0.1:0",
            "--s3",
            &url,
            "--eventbridge-bus",
            "demo-bus",
        ],
    ));
    assert!(out.contains("verify: ok"), "{out}");
    let lifecycle = ok(logbook(
        a.path(),
        endpoint,
        &["events", "--from", "0", "--types", "upgrade.*"],
    ))
    .lines()
    .count();
    assert!(
        out.contains(&format!("eventbridge: {lifecycle} lifecycle events sent")),
        "{out}"
    );
    assert!(out.contains("s3: offsets below"), "{out}");
    let b = tempfile::tempdir().unwrap();
    ok(logbook(
        b.path(),
        endpoint,
        &["restore", "--from", &url, "--with-artifacts"],
    ));
    let events = |d: &Path| ok(logbook(d, endpoint, &["events", "--from", "0"]));
    assert_eq!(events(a.path()), events(b.path()));
    let uploaded = ok(logbook(
        b.path(),
        endpoint,
        &["--json", "artifacts", "search", "--status", "uploaded"],
    ));
    assert!(uploaded.contains("test-report.json"), "{uploaded}");
}

/// An auditor with another language's SDK: boto3 (from the venv moto comes with) lists the
/// prefix, checks each object's metadata and head.json, and downloads the segments; the
/// independent verifier (tools/verify_journal.py, written from the spec alone) verifies them
/// and finds the same record count and chain head as `logbook verify` on the source.
#[test]
fn an_auditor_verifies_the_prefix_with_boto3_and_the_independent_verifier() {
    let env = S3Env::start();
    let endpoint = env.endpoint.as_str();
    let a = tempfile::tempdir().unwrap();
    record_rich_run(a.path());
    let url = format!("s3://{BUCKET}/audit");
    ok(logbook(
        a.path(),
        endpoint,
        &["ship", "--s3", &url, "--once"],
    ));
    let verified: Value =
        serde_json::from_str(&ok(logbook(a.path(), endpoint, &["--json", "verify"]))).unwrap();

    let download = tempfile::tempdir().unwrap();
    let script = r#"
import json, sys, boto3
endpoint, bucket, prefix, out = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/journal/"):
    keys += [o["Key"] for o in page.get("Contents", [])]
keys.sort()
expected = 0
for key in keys:
    obj = s3.get_object(Bucket=bucket, Key=key)
    meta = obj["Metadata"]
    first, last = int(meta["first-offset"]), int(meta["last-offset"])
    assert first == expected, (key, first, expected)
    assert int(meta["count"]) == last - first + 1, key
    name = key.rsplit("/", 1)[1]
    assert name == "%020d-%020d.seg.zst" % (first, last), name
    with open(out + "/" + name, "wb") as f:
        f.write(obj["Body"].read())
    expected = last + 1
head = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "/head.json")["Body"].read())
assert head["next_offset"] == expected and head["last_key"] == keys[-1], head
writer = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "/writer.json")["Body"].read())
assert writer["writer_id"] == head["writer_id"], (writer, head)
print(len(keys), expected)
"#;
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = Command::new(&python)
        .args(["-c", script, endpoint, BUCKET, "audit"])
        .arg(download.path())
        .output()
        .unwrap();
    let listed = ok(out);
    let records: u64 = listed.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(records, verified["records"].as_u64().unwrap(), "{listed}");
    let out = Command::new(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/verify_journal.py"))
        .arg(download.path())
        .output()
        .unwrap();
    let report = ok(out);
    assert_eq!(
        report.split_whitespace().collect::<Vec<_>>(),
        [
            "ok",
            &records.to_string(),
            verified["head_hash"].as_str().unwrap()
        ],
        "{report}"
    );
}

/// A follower resuming a data dir that holds an empty journal (opened once by a writer, nothing
/// recorded): it follows the prefix from offset 0, then keeps up with newly shipped segments.
/// (The importer removes the writer's empty active segment under its lock: it holds no record.)
#[test]
fn a_follower_resumes_a_data_dir_holding_an_empty_journal() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let url = format!("s3://{BUCKET}/empty");
    let location: S3Location = url.parse().unwrap();
    let a = tempfile::tempdir().unwrap();
    append_and_ship(a.path(), endpoint, &url, 0, 200);
    let b = tempfile::tempdir().unwrap();
    logbook::journal::Journal::open(b.path().join("journal"), JournalConfig::default())
        .unwrap()
        .close()
        .unwrap();
    let mut follower = logbook::s3::Follower::resume(&s3(sdk), &location, b.path(), 4).unwrap();
    assert_eq!(follower.next_offset(), 0);
    assert_eq!(rt.block_on(follower.poll()).unwrap(), 203);
    append_and_ship(a.path(), endpoint, &url, 200, 150);
    assert_eq!(rt.block_on(follower.poll()).unwrap(), 150);
    assert_eq!(rt.block_on(follower.poll()).unwrap(), 0);
    drop(follower);
    assert_eq!(events(a.path(), endpoint), events(b.path(), endpoint));
    assert_eq!(digest(a.path()), digest(b.path()));
}

/// `logbook repair --from s3://...`: a byte flipped in a local sealed segment is named by
/// `repair` (exit 1, nothing changed), and replaced by its shipped copy with `--from`; then
/// verify is ok and the events are exactly those before the damage.
#[test]
fn repair_from_s3_replaces_a_damaged_sealed_segment() {
    let env = S3Env::start();
    let endpoint = env.endpoint.as_str();
    let url = format!("s3://{BUCKET}/repair");
    let a = tempfile::tempdir().unwrap();
    append_and_ship(a.path(), endpoint, &url, 0, 400);
    let before = events(a.path(), endpoint);
    let sealed = sealed_segments(a.path());
    assert!(sealed.len() >= 3, "{sealed:?}");
    let victim = &sealed[1];
    let bytes = flip_a_byte(victim);
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();

    let found = logbook(a.path(), endpoint, &["repair"]);
    assert_eq!(found.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&found.stdout);
    assert!(
        stdout.contains(&name),
        "names the damaged segment: {stdout}"
    );
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert_eq!(std::fs::read(victim).unwrap(), bytes, "unchanged");

    let repaired = ok(logbook(a.path(), endpoint, &["repair", "--from", &url]));
    assert!(repaired.contains("verify: ok"), "{repaired}");
    ok(logbook(a.path(), endpoint, &["verify"]));
    assert_eq!(events(a.path(), endpoint), before);
}
