//! `logbook serve` over real HTTP: the binary runs as a child on 127.0.0.1:0, the tests talk to
//! it with a blocking client. Every wait is bounded (health polled against a deadline).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::serve::{agent, read, start};

const START: &str = r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p-1","cluster_name":"prod","phase":"Planning"}"#;
const ADD: &str = r#"{"type":"task.added","upgrade_id":"u-1","task_id":"t-1","name":"Drain nodes","task_type":"upgrade_step"}"#;
const SESSION: &str =
    r#"{"type":"session.created","session_id":"s-1","upgrade_id":"u-1","cluster_name":"prod"}"#;
const COLLECTION: &str =
    r#"{"type":"collection.created","session_id":"s-1","collection_id":"logs","name":"Logs"}"#;

fn progress(pct: u32) -> String {
    format!(r#"{{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":{pct}.0}}"#)
}

fn artifact(id: &str, name: &str, kind: &str, size: u64, tags: &[&str]) -> String {
    json!({"type": "artifact.added", "session_id": "s-1", "collection_id": "logs",
           "artifact_id": id, "file_name": name, "artifact_type": kind,
           "sha256": "0".repeat(64), "size_bytes": size, "tags": tags})
    .to_string()
}

fn lines(lines: &[&str]) -> Vec<u8> {
    let mut body = lines.join("\n");
    body.push('\n');
    body.into_bytes()
}

fn logbook(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("LOGBOOK_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A child that exits before reading (e.g. the server is unreachable) closes its stdin.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn ingest_accepts_refuses_by_line_and_limits_the_body() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    assert_eq!(server.next_offset(), 0);

    let (status, body) = server.post_body(&lines(&[START, ADD, "", &progress(10)]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offsets"], json!([0, 1, 2]));
    assert_eq!(
        (
            body["first"].clone(),
            body["last"].clone(),
            body["count"].clone()
        ),
        (json!(0), json!(2), json!(3))
    );
    assert_eq!(body["refused"], json!([]));
    assert_eq!(server.next_offset(), 3);

    // Refused lines name their number and reason; nothing of them is written, the rest is.
    let unknown_task =
        r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"nope","percentage":5.0}"#;
    let (status, body) = server.post_body(&lines(&[
        &progress(20),
        "not json",
        unknown_task,
        &progress(30),
    ]));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["offsets"], json!([3, 4]));
    let refused: Vec<u64> = body["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(refused, [2, 3]);
    assert!(
        body["refused"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{body}"
    );
    assert_eq!(server.next_offset(), 5);

    // A whole body of refused lines writes nothing; non-UTF-8 is refused by line too.
    let (status, body) = server.post_body(b"\xff\xfe\n{\"type\":\"upgrade.exploded\"}\n");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["refused"].as_array().unwrap().len(), 2);
    assert_eq!(server.next_offset(), 5);

    // Idempotency keys: the second post writes nothing and names the first offset.
    let keyed = r#"{"type":"task.progress","id":"k-1","upgrade_id":"u-1","task_id":"t-1","percentage":40.0}"#;
    let (status, body) = server.post_body(&lines(&[keyed]));
    assert_eq!((status, body["offsets"].clone()), (200, json!([5])));
    let (status, body) = server.post_body(&lines(&[keyed]));
    assert_eq!(status, 200);
    assert_eq!(body["already_recorded"], json!([{"line": 1, "offset": 5}]));
    assert_eq!(server.next_offset(), 6);

    // Over the body limit: 413 JSON, nothing written. Raw TCP: the server answers from the
    // Content-Length alone, before any body is sent (a client still writing 16 MiB could see
    // the connection closed under it instead of the answer).
    let mut stream =
        std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        (16 << 20) + 1
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line:?}");
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
        if let Some(n) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = n.trim().parse().unwrap();
        }
    }
    let mut raw = vec![0; length];
    std::io::Read::read_exact(&mut reader, &mut raw).unwrap();
    let body: Value = serde_json::from_slice(&raw).unwrap();
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    assert_eq!(server.next_offset(), 6);
}

#[test]
fn views_now_as_of_sessions_artifacts_and_json_errors() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    let a1 = artifact("a-1", "drain.log", "log_file", 100, &["nodegroup", "drain"]);
    let a2 = artifact("a-2", "report.json", "report", 5000, &["summary"]);
    let (status, _) = server.post_body(&lines(&[
        START,
        ADD,
        &progress(25),
        SESSION,
        COLLECTION,
        &a1,
        &a2,
        &progress(75),
    ]));
    assert_eq!(status, 200);

    let (status, body) = server.get("/v1/upgrades");
    assert_eq!(status, 200);
    assert_eq!(body["upgrades"][0]["upgrade_id"], "u-1");
    assert_eq!(body["upgrades"][0]["status"], "in_progress");
    assert_eq!(body["upgrades"][0]["percentage"], 75.0);

    let (status, now) = server.get("/v1/upgrades/u-1");
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["as_of"], 7);
    assert_eq!(now["percentage"], 75.0);
    assert_eq!(now["tasks"][0]["task_id"], "t-1");

    let (status, old) = server.get("/v1/upgrades/u-1?as_of=2");
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["as_of"], 2);
    assert_eq!(old["percentage"], 25.0);
    let (status, _) = server.get("/v1/upgrades/u-1?as_of=0");
    assert_eq!(status, 200);

    let (status, body) = server.get("/v1/sessions/s-1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["session"]["collections"][0]["artifact_ids"],
        json!(["a-1", "a-2"])
    );
    assert_eq!(body["artifacts"].as_array().unwrap().len(), 2);

    let ids = |path: &str| -> Vec<String> {
        let (status, body) = server.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        body["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["artifact_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("/v1/artifacts"), ["a-1", "a-2"]);
    assert_eq!(ids("/v1/artifacts?type=log_file"), ["a-1"]);
    assert_eq!(ids("/v1/artifacts?tag=nodegroup&tag=drain"), ["a-1"]);
    assert_eq!(ids("/v1/artifacts?any_tag=drain,summary"), ["a-1", "a-2"]);
    assert_eq!(ids("/v1/artifacts?min_size=1000"), ["a-2"]);
    assert_eq!(ids("/v1/artifacts?name=*.json&session=s-1"), ["a-2"]);
    assert_eq!(ids("/v1/artifacts?text=drain"), ["a-1"]);
    assert_eq!(ids("/v1/artifacts?limit=1"), ["a-1"]);

    // Unknown ids and routes: 404 JSON; malformed parameters: 400 JSON.
    for (path, code) in [
        ("/v1/upgrades/nope", 404),
        ("/v1/sessions/nope", 404),
        ("/v1/upgrades/u-1?as_of=0&x=1", 400),
        ("/v1/nothing/here", 404),
        ("/v1/upgrades/u-1?as_of=abc", 400),
        ("/v1/upgrades/u-1?as_of=99", 400),
        ("/v1/artifacts?min_size=-1", 400),
        ("/v1/artifacts?type=spreadsheet", 400),
        ("/v1/artifacts?since=yesterday", 400),
        ("/v1/artifacts?colour=red", 400),
        ("/v1/artifacts?tag=a&any_tag=b", 400),
    ] {
        let (status, body) = server.get(path);
        assert_eq!(status, code, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

#[test]
fn token_is_required_on_every_route_and_beyond_loopback() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &["--token", "s3cret"]);
    assert_eq!(server.get("/v1/health").0, 200);
    assert_eq!(server.post_body(&lines(&[START])).0, 200);
    for (token, path) in [
        (None, "/v1/health"),
        (Some("Bearer wrong"), "/v1/health"),
        (Some("s3cret"), "/v1/upgrades"),
        (None, "/v1/no-such-route"),
    ] {
        let mut request = agent().get(format!("{}{path}", server.url));
        if let Some(t) = token {
            request = request.header("Authorization", t);
        }
        let (status, body) = read(request.call().unwrap());
        assert_eq!(status, 401, "{token:?} {path}");
        assert!(body["error"].is_string());
    }
    let (status, _) = read(
        agent()
            .post(format!("{}/v1/events", server.url))
            .send(lines(&[ADD]).as_slice())
            .unwrap(),
    );
    assert_eq!(status, 401);
    assert_eq!(server.next_offset(), 1);
    drop(server);

    // No token: a non-loopback address is refused before anything is opened.
    let other = tempfile::tempdir().unwrap();
    let out = logbook(other.path(), &["serve", "--listen", "0.0.0.0:0"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));
    assert!(!other.path().join("journal").exists());
}

#[test]
fn record_to_posts_in_chunks_with_global_line_numbers() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &["--token", "tk"]);
    let mut input = vec![START.to_string(), ADD.to_string()];
    input.extend((0..5000).map(|i| progress(i % 100)));
    input.push(
        r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"nope","percentage":1.0}"#.into(),
    );
    input.push(progress(99));
    let stdin = input.join("\n") + "\n";
    let out = logbook(
        data.path(),
        &["record", "--to", &server.url, "--token", "tk"],
        &stdin,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("recorded 5003 events: offsets 0..=5002"),
        "{stdout}"
    );
    assert!(stdout.contains("refused 1 lines"), "{stdout}");
    assert!(stderr.contains("line 5003: refused:"), "{stderr}");
    assert_eq!(server.next_offset(), 5003);

    let out = logbook(
        data.path(),
        &["--json", "record", "--to", &server.url, "--token", "tk"],
        &(progress(50) + "\n"),
    );
    assert_eq!(out.status.code(), Some(0));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["first"].clone(), summary["count"].clone()),
        (json!(5003), json!(1))
    );

    // Wrong token: a usage error; nothing written.
    let out = logbook(
        data.path(),
        &["record", "--to", &server.url, "--token", "no"],
        START,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // The server owns the journal: a local writer is refused with the lock error.
    let out = logbook(data.path(), &["record"], &(progress(60) + "\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{out:?}"
    );
    let second = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args([
            "--data",
            data.path().to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("locked"));
    assert_eq!(server.next_offset(), 5004);

    // Unreachable server: exit 1 with a clear message.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = logbook(
        data.path(),
        &["record", "--to", &format!("http://127.0.0.1:{port}")],
        START,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[cfg(unix)]
#[test]
fn sigterm_stops_cleanly_and_releases_the_journal() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path(), &[]);
    assert_eq!(server.post_body(&lines(&[START, ADD])).0, 200);
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The lock is released and both records are there, verified and projected.
    let out = logbook(data.path(), &["verify"], "");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = logbook(data.path(), &["events", "--from", "0"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert!(data.path().join("state.sqlite").exists());
}
