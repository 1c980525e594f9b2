//! S3 under faults (issue [1/4], findings 6, 7 and 8), each against a real moto_server through
//! the real AWS SDK and the real `logbook` binary: a prefix wiped (objects deleted, and S3 come
//! back empty), the lease deleted under a running writer and a second writer started then, a
//! writer whose lease was taken, 5xx and stalls through a fault proxy, 100 metadata-only
//! artifacts. After each, the prefix restores into a fresh directory and equals the local
//! journal up to the shipped head (`logbook events`), or the writer has stopped loudly; never
//! two writers' objects in one prefix.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use support::proxy::Fault;
use support::s3::*;

/// `head.json` of `prefix`, if any.
fn head(rt: &tokio::runtime::Runtime, sdk: &aws_config::SdkConfig, prefix: &str) -> Option<Value> {
    get(rt, sdk, &format!("{prefix}/head.json")).map(|b| serde_json::from_slice(&b).unwrap())
}

/// `/v1/health` of a server.
fn health(base: &str) -> Value {
    let mut response = support::serve::agent()
        .get(format!("{base}/v1/health"))
        .call()
        .unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

/// Posts NDJSON lines to a server's `/v1/events`.
fn post(base: &str, lines: &[String]) {
    let response = support::serve::agent()
        .post(format!("{base}/v1/events"))
        .send(lines.join("\n").as_bytes())
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// `n` progress events of task `t` of upgrade `u-1` (which [`append`] opened).
fn progress(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"type":"task.progress","upgrade_id":"u-1","task_id":"t","percentage":{}}}"#,
                i % 100
            )
        })
        .collect()
}

/// A journal of `events` progress events, and `serve --s3 s3://BUCKET/{prefix}` shipping it
/// (everything shipped on return): the URL, the data dir and the server.
fn shipping(
    rt: &tokio::runtime::Runtime,
    sdk: &aws_config::SdkConfig,
    endpoint: &str,
    prefix: &str,
    events: usize,
) -> (String, tempfile::TempDir, Served) {
    let url = format!("s3://{BUCKET}/{prefix}");
    let a = tempfile::tempdir().unwrap();
    append(a.path(), 0, events);
    let serve = serve_shipping(a.path(), endpoint, &url, "0.3s");
    wait_shipped(rt, sdk, prefix, &serve.base, Duration::from_secs(20));
    (url, a, serve)
}

/// Waits until `head.json` of `prefix` names the server's `next_offset` now (everything it
/// recorded so far), or beyond.
fn wait_shipped(
    rt: &tokio::runtime::Runtime,
    sdk: &aws_config::SdkConfig,
    prefix: &str,
    base: &str,
    limit: Duration,
) -> u64 {
    let end = health(base)["next_offset"].as_u64().unwrap();
    wait_until(&format!("head.json of {prefix} at {end}"), limit, || {
        head(rt, sdk, prefix).is_some_and(|h| h["next_offset"].as_u64() >= Some(end))
    });
    end
}

/// Restores `url` into a fresh directory and asserts its events equal `source`'s.
fn assert_restores_equal(endpoint: &str, url: &str, source: &Path) {
    let restored = tempfile::tempdir().unwrap();
    ok(logbook(
        restored.path(),
        endpoint,
        &["restore", "--from", url],
    ));
    assert_eq!(events(restored.path(), endpoint), events(source, endpoint));
}

/// Finding 6: the prefix wiped under a running shipper, first its objects deleted (idle
/// shipper), then S3 come back empty (moto reset, bucket recreated). Before: the shipper went
/// on from its local progress, never re-shipped 0..N nor re-created writer.json, and restore
/// failed (not contiguous). Now it notices on its next round, ships everything again from the
/// local sealed segments, takes the lease again, and says so.
#[test]
fn a_wiped_prefix_is_shipped_again_whole() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let (url, a, mut serve) = shipping(rt, sdk, endpoint, "wiped", 300);
    let shipped = segment_keys(rt, sdk, "wiped");
    assert!(shipped.len() > 2, "{shipped:?}");

    // 1. Every object deleted; nothing new recorded: the idle shipper notices by itself.
    wipe(rt, sdk, "wiped");
    wait_until(
        "the wiped prefix shipped again",
        Duration::from_secs(20),
        || {
            segment_keys(rt, sdk, "wiped") == shipped
                && get(rt, sdk, "wiped/writer.json").is_some()
                && head(rt, sdk, "wiped").is_some()
        },
    );
    assert_restores_equal(endpoint, &url, a.path());

    // 2. S3 comes back empty (bucket deleted and recreated), while events keep coming.
    reset_moto(endpoint);
    post(&serve.base, &progress(50));
    rt.block_on(s3(sdk).create_bucket().bucket(BUCKET).send())
        .unwrap();
    post(&serve.base, &progress(50));
    wait_shipped(rt, sdk, "wiped", &serve.base, Duration::from_secs(30));
    assert!(get(rt, sdk, "wiped/writer.json").is_some());
    assert_restores_equal(endpoint, &url, a.path());
    let shipping = &health(&serve.base)["shipping"];
    assert_eq!(shipping["state"], "ok", "{shipping}");
    serve.stop();
    let log = serve.log();
    assert!(
        log.contains("shipping the missing segments again"),
        "says so loudly: {log}"
    );
}

/// Finding 7: writer.json deleted while writer A runs, then writer B starts. Before: B took the
/// lease and shipped beside A (head.json flipping between them, keys interleaved), and restore
/// failed. Now B refuses (the prefix's head and segments name A), writes nothing, and A takes
/// its lease back on its next round and keeps shipping.
#[test]
fn a_deleted_lease_is_taken_back_and_a_second_writer_refused() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let (url, a, mut serve) = shipping(rt, sdk, endpoint, "lease", 200);
    let lease: Value = serde_json::from_slice(&get(rt, sdk, "lease/writer.json").unwrap()).unwrap();
    let writer_a = lease["writer_id"].as_str().unwrap().to_string();

    rt.block_on(
        s3(sdk)
            .delete_object()
            .bucket(BUCKET)
            .key("lease/writer.json")
            .send(),
    )
    .unwrap();
    let b = tempfile::tempdir().unwrap();
    append(b.path(), 0, 100);
    let before = segment_keys(rt, sdk, "lease");
    let out = logbook(b.path(), endpoint, &["ship", "--s3", &url, "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "B must be refused: {stderr}");
    assert!(stderr.contains("belongs to another journal"), "{stderr}");
    assert!(stderr.contains(&writer_a), "names writer A: {stderr}");
    let writer_b = std::fs::read_to_string(b.path().join("writer-id")).unwrap();
    for key in segment_keys(rt, sdk, "lease") {
        assert!(before.contains(&key), "B wrote {key}");
    }
    if let Some(lease) = get(rt, sdk, "lease/writer.json") {
        assert!(!String::from_utf8_lossy(&lease).contains(writer_b.trim()));
    }

    // A takes its lease back and keeps shipping.
    wait_until("A's lease back", Duration::from_secs(10), || {
        get(rt, sdk, "lease/writer.json")
            .is_some_and(|l| String::from_utf8_lossy(&l).contains(&writer_a))
    });
    post(&serve.base, &progress(100));
    wait_shipped(rt, sdk, "lease", &serve.base, Duration::from_secs(20));
    assert_restores_equal(endpoint, &url, a.path());
    serve.stop();
}

/// Finding 7: writer A's lease taken by another writer (B) while A runs. Before: A never
/// noticed and kept writing beside B. Now A's next check fails: it stops shipping with an
/// error naming B, in its log and in `/v1/health`, and writes no other object.
#[test]
fn a_writer_that_lost_its_lease_stops_and_writes_nothing_more() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let (_url, _a, mut serve) = shipping(rt, sdk, endpoint, "taken", 200);
    let shipped_end = head(rt, sdk, "taken").unwrap()["next_offset"].clone();

    let writer_b = "b".repeat(32);
    let lease_b = serde_json::json!({"writer_id": writer_b, "host": "elsewhere",
        "data_dir": "/srv/b", "acquired": "2026-01-01T00:00:00Z"});
    rt.block_on(
        s3(sdk)
            .put_object()
            .bucket(BUCKET)
            .key("taken/writer.json")
            .body(ByteStream::from(serde_json::to_vec(&lease_b).unwrap()))
            .send(),
    )
    .unwrap();
    let before = keys(rt, sdk, "taken");
    post(&serve.base, &progress(300));
    wait_until("A stops shipping", Duration::from_secs(10), || {
        health(&serve.base)["shipping"]["state"] == "stopped"
    });
    let shipping = health(&serve.base)["shipping"].clone();
    let error = shipping["error"].as_str().unwrap_or_default();
    assert!(error.contains(&writer_b), "names B: {shipping}");
    // Stopped for good: more records seal, and nothing is written (the state is terminal).
    post(&serve.base, &progress(300));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        keys(rt, sdk, "taken"),
        before,
        "A wrote after losing the lease"
    );
    assert_eq!(head(rt, sdk, "taken").unwrap()["next_offset"], shipped_end);
    assert!(serve.log().contains(&writer_b), "logged");
    serve.stop();
}

/// Restore refuses a prefix whose segment objects carry two writer ids, naming both, and leaves
/// nothing behind.
#[test]
fn restore_refuses_a_prefix_holding_two_writers_segments() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let url = format!("s3://{BUCKET}/mixed");
    let a = tempfile::tempdir().unwrap();
    append_and_ship(a.path(), endpoint, &url, 0, 300);
    let writer_a = std::fs::read_to_string(a.path().join("writer-id")).unwrap();
    let keys = segment_keys(rt, sdk, "mixed");
    let victim = keys.last().unwrap();
    let object = rt
        .block_on(s3(sdk).get_object().bucket(BUCKET).key(victim).send())
        .unwrap();
    let mut metadata = object.metadata().cloned().unwrap();
    let bytes = rt.block_on(object.body.collect()).unwrap().into_bytes();
    metadata.insert("writer-id".into(), "c".repeat(32));
    rt.block_on(
        s3(sdk)
            .put_object()
            .bucket(BUCKET)
            .key(victim)
            .set_metadata(Some(metadata))
            .body(ByteStream::from(bytes))
            .send(),
    )
    .unwrap();
    let b = tempfile::tempdir().unwrap();
    let out = logbook(b.path(), endpoint, &["restore", "--from", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(writer_a.trim()), "{stderr}");
    assert!(stderr.contains(&"c".repeat(32)), "{stderr}");
    assert!(stderr.contains(victim.as_str()), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(b.path().join("journal"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name())
                .filter(|n| n != "LOCK")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert!(!b.path().join("state.sqlite").exists());
}

/// NDJSON for an upgrade, a session, a collection and `n` artifacts whose files are not in this
/// data dir (metadata recorded on another machine).
fn metadata_only_artifacts(n: usize) -> String {
    let mut lines = vec![
        r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p","cluster_name":"c","phase":"Planning"}"#.to_string(),
        r#"{"type":"task.added","upgrade_id":"u-1","task_id":"t","name":"T","task_type":"upgrade_step"}"#.to_string(),
        r#"{"type":"session.created","session_id":"s-1","upgrade_id":"u-1","cluster_name":"c"}"#.to_string(),
        r#"{"type":"collection.created","session_id":"s-1","collection_id":"c-1","name":"Logs"}"#.to_string(),
    ];
    for i in 0..n {
        lines.push(format!(
            r#"{{"type":"artifact.added","session_id":"s-1","collection_id":"c-1","artifact_id":"a-{i}","file_name":"node-{i}.log","artifact_type":"log_file","sha256":"{}","size_bytes":10,"tags":[]}}"#,
            "0".repeat(64)
        ));
    }
    lines.join("\n")
}

/// The `artifact.upload_failed` events of `data`.
fn upload_failures(data: &Path, endpoint: &str) -> Vec<Value> {
    ok(logbook(
        data,
        endpoint,
        &["events", "--from", "0", "--types", "artifact.upload_failed"],
    ))
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// Finding 8: 100 artifacts recorded without their files. Before: each cost ~1.2 s of retries
/// per round, a new event reached S3 after ~2 minutes, SIGTERM took as long, and `ship --once`
/// exited 1. Now: each is recorded once as `artifact.upload_failed` (the file is not in the
/// store), not again on restart, shipping is not delayed, SIGTERM ends `serve` in under 5 s, and
/// `ship --once` exits 0 with the problems as warnings (`--strict`: 1).
#[test]
fn metadata_only_artifacts_delay_neither_shipping_nor_shutdown() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let url = format!("s3://{BUCKET}/meta");
    let a = tempfile::tempdir().unwrap();
    let mut record = logbook_command(a.path(), endpoint, &["record"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut record.stdin.take().unwrap(),
        metadata_only_artifacts(100).as_bytes(),
    )
    .unwrap();
    ok(record.wait_with_output().unwrap());

    for round in 0..2 {
        let mut serve = serve_shipping(a.path(), endpoint, &url, "0.3s");
        post(&serve.base, &progress(5));
        let took = wait_shipped(rt, sdk, "meta", &serve.base, Duration::from_secs(10));
        println!("round {round}: shipped everything in {took:?}");
        let (took, status) = serve.terminate(Duration::from_secs(30));
        assert!(status.success());
        assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
        let failures = upload_failures(a.path(), endpoint);
        assert_eq!(
            failures.len(),
            100,
            "recorded once each, also after a restart"
        );
        assert!(
            failures[0]["error"]
                .as_str()
                .unwrap()
                .contains("not in the store"),
            "{}",
            failures[0]
        );
    }

    let out = logbook(a.path(), endpoint, &["ship", "--s3", &url, "--once"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("warning: 100 artifact(s)"), "{stderr}");
    let strict = logbook(
        a.path(),
        endpoint,
        &["ship", "--s3", &url, "--once", "--strict"],
    );
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(upload_failures(a.path(), endpoint).len(), 100);
    assert_restores_equal(endpoint, &url, a.path());
}

/// 5xx and a stalled S3 through the fault proxy: shipping waits (health says why), SIGTERM ends
/// `serve` in under 5 s while a request hangs, a `serve` started while S3 refuses connections
/// serves anyway, and once S3 answers again the prefix catches up and restores equal.
#[test]
fn errors_and_stalls_delay_shipping_and_never_block_shutdown() {
    let env = S3Env::start();
    let proxy = env.proxy();
    let (rt, sdk) = (&env.rt, &env.sdk);
    let url = format!("s3://{BUCKET}/faults");
    let a = tempfile::tempdir().unwrap();
    append(a.path(), 0, 100);
    let mut serve = serve_shipping(a.path(), &proxy.endpoint(), &url, "0.3s");
    wait_shipped(rt, sdk, "faults", &serve.base, Duration::from_secs(20));

    proxy.set(Fault::Error500);
    post(&serve.base, &progress(100));
    wait_until("health reports the 500s", Duration::from_secs(20), || {
        let shipping = &health(&serve.base)["shipping"];
        shipping["state"] == "retrying"
            && shipping["error"]
                .as_str()
                .is_some_and(|e| e.contains("HTTP 500"))
    });

    proxy.set(Fault::Stall);
    let stalled = proxy.faulted.load(std::sync::atomic::Ordering::SeqCst);
    post(&serve.base, &progress(100));
    wait_until("a request hangs", Duration::from_secs(30), || {
        proxy.faulted.load(std::sync::atomic::Ordering::SeqCst) > stalled
    });
    let (took, status) = serve.terminate(Duration::from_secs(30));
    assert!(status.success());
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");

    // Started while S3 refuses connections: it serves anyway, says why it does not ship, and
    // ships once S3 is back.
    proxy.cut();
    let mut serve = serve_shipping(a.path(), &proxy.endpoint(), &url, "0.3s");
    assert_eq!(health(&serve.base)["shipping"]["state"], "retrying");
    proxy.restore();
    wait_shipped(rt, sdk, "faults", &serve.base, Duration::from_secs(30));
    assert_eq!(health(&serve.base)["shipping"]["state"], "ok");
    serve.stop();
    assert_restores_equal(&env.endpoint, &url, a.path());
}

/// The S3 client has a connect and a per-attempt timeout, so a stalled S3 cannot hold a request
/// forever (before: none, and a stalled request held the shipper until the process was killed).
#[test]
fn the_s3_client_has_timeouts() {
    let rt = runtime();
    let sdk = rt.block_on(sdk("http://127.0.0.1:9"));
    let client = s3(&sdk);
    let timeouts = client
        .config()
        .timeout_config()
        .cloned()
        .expect("a timeout config");
    assert!(timeouts.connect_timeout().is_some(), "{timeouts:?}");
    assert!(
        timeouts.operation_attempt_timeout().is_some(),
        "{timeouts:?}"
    );
}

/// A local journal cut below what was shipped (`repair --cut` of a damaged sealed segment):
/// S3 holds records this journal no longer has. Shipping refuses, naming the offsets, and
/// writes nothing; with the prefix wiped too, the shipper's own checkpoint still refuses.
#[test]
fn a_journal_cut_below_the_shipped_end_is_refused() {
    let env = S3Env::start();
    let (endpoint, rt, sdk) = (env.endpoint.as_str(), &env.rt, &env.sdk);
    let url = format!("s3://{BUCKET}/cut");
    let a = tempfile::tempdir().unwrap();
    append_and_ship(a.path(), endpoint, &url, 0, 400);
    let shipped = head(rt, sdk, "cut").unwrap()["next_offset"]
        .as_u64()
        .unwrap();
    let sealed = sealed_segments(a.path());
    let victim = &sealed[sealed.len() / 2];
    flip_a_byte(victim);
    let cut: Value = serde_json::from_str(&ok(logbook(
        a.path(),
        endpoint,
        &["--json", "repair", "--cut"],
    )))
    .unwrap();
    let local_next = cut["next_offset"].as_u64().unwrap();
    assert!(local_next < shipped, "{cut}");

    let before = keys(rt, sdk, "cut");
    let out = logbook(a.path(), endpoint, &["ship", "--s3", &url, "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refusing to ship"), "{stderr}");
    assert!(
        stderr.contains(&format!("{local_next}..={}", shipped - 1)),
        "names the offsets S3 has and the journal lost: {stderr}"
    );
    assert_eq!(keys(rt, sdk, "cut"), before, "nothing written");

    wipe(rt, sdk, "cut");
    let out = logbook(a.path(), endpoint, &["ship", "--s3", &url, "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("its checkpoint"), "{stderr}");
    assert!(
        stderr.contains(&format!("{local_next}..={}", shipped - 1)),
        "{stderr}"
    );
    assert!(
        keys(rt, sdk, "cut").is_empty(),
        "nothing written, not even the lease"
    );
}

/// What an idle shipping round costs: two HEAD requests (head.json and writer.json), plus a
/// survey (GET, LIST, HEAD) every `SURVEY_ROUNDS` rounds; no write, and no artifact request.
#[test]
fn an_idle_round_costs_two_requests() {
    let env = S3Env::start();
    let endpoint = env.endpoint.as_str();
    let url = format!("s3://{BUCKET}/idle");
    let a = tempfile::tempdir().unwrap();
    append(a.path(), 0, 50);
    let serve = spawn_serve(
        a.path(),
        endpoint,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--s3",
            &url,
            "--ship-interval",
            "0.1s",
        ],
    );
    let shipping = || health(&serve.base)["shipping"].clone();
    wait_until("a first round", Duration::from_secs(20), || {
        shipping()["rounds"].as_u64() > Some(1)
    });
    let start = shipping();
    wait_until("20 idle rounds", Duration::from_secs(20), || {
        shipping()["rounds"].as_u64().unwrap() >= start["rounds"].as_u64().unwrap() + 20
    });
    let end = shipping();
    let delta = |what: &str| {
        end["requests"][what].as_u64().unwrap() - start["requests"][what].as_u64().unwrap()
    };
    let rounds = end["rounds"].as_u64().unwrap() - start["rounds"].as_u64().unwrap();
    println!("{rounds} idle rounds: {}", end["requests"]);
    assert_eq!(delta("put") + delta("delete"), 0, "{start} {end}");
    assert!(
        delta("list") <= 1 && delta("get") <= 1,
        "at most one survey: {start} {end}"
    );
    assert!(
        delta("head") >= 2 * rounds && delta("head") <= 2 * rounds + 2 + 1,
        "two HEADs a round: {rounds} rounds, {} HEADs",
        delta("head")
    );
}

/// A stop while a large artifact goes up in parts (a slow uplink): the upload is abandoned
/// within the grace period, its multipart upload aborted (no parts left behind), and nothing
/// recorded (it is still pending, for the next shipper).
#[test]
fn a_stop_abandons_a_multipart_upload_cleanly() {
    use logbook::artifacts::{ArtifactStore, NewArtifact};
    use logbook::s3::stop::Stop;
    use logbook::s3::{ArtifactQueue, ArtifactUploader, S3Location, UploadConfig};

    let env = S3Env::start();
    let proxy = env.proxy();
    let (rt, sdk) = (&env.rt, &env.sdk);
    let via_proxy = rt.block_on(support::s3::sdk(&proxy.endpoint()));
    let a = tempfile::tempdir().unwrap();
    let recorder =
        std::sync::Arc::new(logbook::recorder::Recorder::open(a.path(), small_segments()).unwrap());
    let store = ArtifactStore::new(recorder.clone(), a.path().join("artifacts"));
    let t = logbook::tracker::ProgressTracker::new(recorder.clone(), "u-1");
    t.start_upgrade("p", "c", "Planning", None).unwrap();
    store.create_session("s-1", "u-1", "c").unwrap();
    store
        .create_collection("s-1", "dumps", "Dumps", None)
        .unwrap();
    let file = a.path().join("heap.dump");
    std::fs::write(&file, vec![7u8; 24 << 20]).unwrap();
    store
        .add_artifact(&NewArtifact {
            session_id: "s-1".into(),
            collection_id: "dumps".into(),
            artifact_id: "big".into(),
            source: file,
            file_name: None,
            artifact_type: logbook::event::ArtifactType::Diagnostic,
            tags: vec![],
            task_id: None,
            description: None,
            expires_at: None,
        })
        .unwrap();
    let location: S3Location = format!("s3://{BUCKET}/parts").parse().unwrap();
    let uploader = ArtifactUploader::new(
        s3(&via_proxy),
        location,
        recorder.clone(),
        a.path().join("artifacts"),
        UploadConfig {
            multipart_threshold: 8 << 20,
            part_size: 5 << 20,
            attempts: 1,
        },
    );
    proxy.throttle(4 << 20);
    let (signal, stop) = Stop::channel();
    let mut queue = ArtifactQueue::new(uploader, None);
    let pass = rt.spawn(async move { queue.pass(&stop).await });
    let uploads = || {
        rt.block_on(s3(sdk).list_multipart_uploads().bucket(BUCKET).send())
            .unwrap()
            .uploads()
            .len()
    };
    wait_until(
        "a multipart upload in flight",
        Duration::from_secs(10),
        || uploads() == 1,
    );
    signal.set();
    let stopped = std::time::Instant::now();
    let pass = rt.block_on(pass).unwrap().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!((pass.uploaded, pass.failed.len()), (0, 0), "{pass:?}");
    wait_until(
        "the multipart upload aborted",
        Duration::from_secs(5),
        || uploads() == 0,
    );
    let artifact = recorder.live().unwrap().artifact("big").unwrap().unwrap();
    assert_eq!(artifact.status, logbook::event::ArtifactStatus::Created);
    drop((store, t));
}
