//! `GET /v1/stream` and `logbook tail` against the real binary (`serve --listen 127.0.0.1:0`)
//! with a real WebSocket client (tokio-tungstenite). Every receive has a timeout; servers are
//! killed by pid when their guard drops.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use support::serve::{Server, agent, start};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const RECV_TIMEOUT: Duration = Duration::from_secs(20);

impl Server {
    /// Posts NDJSON lines; every line must be accepted.
    fn post(&self, lines: &[String]) {
        let mut body = lines.join("\n");
        body.push('\n');
        let (status, response) = self.post_body(body.as_bytes());
        assert_eq!(status, 200, "{response}");
    }

    fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/v1/stream?{query}", self.addr)
    }
}

fn start_events(upgrade: &str) -> Vec<String> {
    vec![
        format!(
            r#"{{"type":"upgrade.started","upgrade_id":"{upgrade}","plan_id":"p","cluster_name":"prod","phase":"Planning"}}"#
        ),
        format!(
            r#"{{"type":"task.added","upgrade_id":"{upgrade}","task_id":"t-1","name":"Drain","task_type":"upgrade_step"}}"#
        ),
    ]
}

/// `n` progress events for `upgrade`'s task t-1, `first` numbering the first.
fn progress(upgrade: &str, first: usize, n: usize) -> Vec<String> {
    (first..first + n)
        .map(|i| {
            format!(
                r#"{{"type":"task.progress","upgrade_id":"{upgrade}","task_id":"t-1","percentage":{}}}"#,
                i as f64 / 1000.0
            )
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(url: &str, bearer: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out")?;
    Ok(ws)
}

/// Receives `n` event frames (each within the timeout), checking the envelope.
async fn recv_events(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        let message = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no frame after {} events", events.len()))
            .expect("stream ended")
            .expect("websocket error");
        match message {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(text.as_str()).expect("frame is JSON");
                assert!(v["offset"].is_u64(), "{v}");
                assert!(v["ts"].is_string(), "{v}");
                assert!(v["schema_version"].is_u64(), "{v}");
                assert!(v["type"].is_string(), "{v}");
                events.push(v);
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    events
}

/// Asserts nothing more arrives within a short time.
async fn assert_quiet(ws: &mut Ws) {
    if let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        panic!("unexpected extra frame {t}");
    }
}

fn offsets(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect()
}

#[test]
fn catch_up_then_live_with_dense_offsets() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    let mut first = start_events("u-1");
    first.extend(progress("u-1", 0, 48));
    server.post(&first);
    let rt = runtime();
    let mut ws = rt
        .block_on(connect(&server.ws_url("from=earliest"), None))
        .unwrap();
    let events = rt.block_on(recv_events(&mut ws, 50));
    assert_eq!(offsets(&events), (0..50).collect::<Vec<_>>());
    assert_eq!(events[0]["type"], "upgrade.started");
    server.post(&progress("u-1", 48, 20));
    let live = rt.block_on(recv_events(&mut ws, 20));
    assert_eq!(offsets(&live), (50..70).collect::<Vec<_>>());
    assert!(live.iter().all(|e| e["type"] == "task.progress"));
    rt.block_on(assert_quiet(&mut ws));

    // from=latest (the default) sees only what comes after.
    let mut latest = rt.block_on(connect(&server.ws_url(""), None)).unwrap();
    rt.block_on(assert_quiet(&mut latest));
    server.post(&progress("u-1", 68, 1));
    let one = rt.block_on(recv_events(&mut latest, 1));
    assert_eq!(offsets(&one), [70]);
}

#[test]
fn from_offset_and_filters() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    let mut lines = start_events("u-1");
    lines.extend(start_events("u-2"));
    lines.extend(progress("u-1", 0, 5));
    lines.extend(progress("u-2", 0, 5));
    server.post(&lines); // offsets 0..14
    let rt = runtime();

    let mut ws = rt
        .block_on(connect(&server.ws_url("from=10"), None))
        .unwrap();
    let events = rt.block_on(recv_events(&mut ws, 4));
    assert_eq!(offsets(&events), [10, 11, 12, 13]);
    rt.block_on(assert_quiet(&mut ws));

    let mut ws = rt
        .block_on(connect(
            &server.ws_url("from=earliest&types=upgrade.*,task.added"),
            None,
        ))
        .unwrap();
    let events = rt.block_on(recv_events(&mut ws, 4));
    assert_eq!(offsets(&events), [0, 1, 2, 3]);
    rt.block_on(assert_quiet(&mut ws));

    let mut ws = rt
        .block_on(connect(
            &server.ws_url("from=earliest&types=task.*&upgrade_id=u-2"),
            None,
        ))
        .unwrap();
    let events = rt.block_on(recv_events(&mut ws, 6));
    assert_eq!(offsets(&events), [3, 9, 10, 11, 12, 13]);
    assert!(events.iter().all(|e| e["upgrade_id"] == "u-2"));
    rt.block_on(assert_quiet(&mut ws));
    // Live events are filtered too.
    let mut more = progress("u-1", 5, 1);
    more.extend(progress("u-2", 5, 1));
    server.post(&more);
    assert_eq!(offsets(&rt.block_on(recv_events(&mut ws, 1))), [15]);
}

#[test]
fn resume_after_server_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut lines = start_events("u-1");
    lines.extend(progress("u-1", 0, 98));
    let rt = runtime();
    let last = {
        let server = start(data.path(), &[]);
        server.post(&lines);
        let mut ws = rt
            .block_on(connect(&server.ws_url("from=earliest"), None))
            .unwrap();
        let events = rt.block_on(recv_events(&mut ws, 40));
        assert_eq!(offsets(&events), (0..40).collect::<Vec<_>>());
        events.last().unwrap()["offset"].as_u64().unwrap()
        // The server is killed here (guard), the socket with it.
    };
    let server = start(data.path(), &[]);
    server.post(&progress("u-1", 98, 10));
    let mut ws = rt
        .block_on(connect(&server.ws_url(&format!("from={}", last + 1)), None))
        .unwrap();
    let rest = rt.block_on(recv_events(&mut ws, 70));
    assert_eq!(offsets(&rest), (40..110).collect::<Vec<_>>());
    rt.block_on(assert_quiet(&mut ws));
}

#[test]
fn token_required_header_or_query() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &["--token", "s3cret"]);
    server.post(&start_events("u-1"));
    let rt = runtime();
    for url in [
        server.ws_url("from=earliest"),
        server.ws_url("from=earliest&token=wrong"),
    ] {
        match rt.block_on(connect(&url, None)) {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }
    match rt.block_on(connect(&server.ws_url("from=earliest"), Some("wrong"))) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let mut ws = rt
        .block_on(connect(&server.ws_url("from=earliest&token=s3cret"), None))
        .unwrap();
    assert_eq!(offsets(&rt.block_on(recv_events(&mut ws, 2))), [0, 1]);
    let mut ws = rt
        .block_on(connect(&server.ws_url("from=earliest"), Some("s3cret")))
        .unwrap();
    assert_eq!(offsets(&rt.block_on(recv_events(&mut ws, 2))), [0, 1]);
    // The query token is for the stream only.
    let (status, _) = {
        let response = agent()
            .get(format!("http://{}/v1/health?token=s3cret", server.addr))
            .call()
            .unwrap();
        (response.status().as_u16(), ())
    };
    assert_eq!(status, 401);
}

#[test]
fn bad_query_is_400_json() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    server.post(&start_events("u-1"));
    let rt = runtime();
    for query in [
        "from=yesterday",
        "from=99",
        "types=task.*,,upgrade.*",
        "unknown=1",
        "from=earliest&from=latest",
    ] {
        // Over a real WebSocket handshake...
        match rt.block_on(connect(&server.ws_url(query), None)) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "{query}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert!(body["error"].is_string(), "{query}: {body}");
            }
            other => panic!("{query}: expected 400, got {:?}", other.map(|_| ())),
        }
        // ...and as a plain GET.
        let (status, body) = server.get(&format!("/v1/stream?{query}"));
        assert_eq!(status, 400, "{query}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }
    // A valid query without an upgrade is a JSON error too.
    let (status, body) = server.get("/v1/stream?from=earliest");
    assert!((400..500).contains(&status), "{status}");
    assert!(body["error"].is_string(), "{body}");
}

#[test]
fn oversized_and_binary_client_frames_are_closed_with_a_reason() {
    use futures_util::SinkExt;
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    let rt = runtime();
    for (message, code) in [
        (Message::Binary(vec![1, 2, 3].into()), 1003u16),
        (Message::Text("x".repeat(5000).into()), 1009),
    ] {
        let mut ws = rt.block_on(connect(&server.ws_url(""), None)).unwrap();
        rt.block_on(async {
            // Small text frames are ignored.
            ws.send(Message::Text("hello".into())).await.unwrap();
            ws.send(message).await.unwrap();
            loop {
                let frame = tokio::time::timeout(RECV_TIMEOUT, ws.next())
                    .await
                    .expect("no close frame")
                    .expect("stream ended without a close frame")
                    .expect("websocket error");
                if let Message::Close(Some(close)) = frame {
                    assert_eq!(u16::from(close.code), code);
                    assert!(!close.reason.is_empty());
                    break;
                }
            }
        });
    }
}

#[test]
fn tail_prints_exactly_count_envelope_lines() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    let mut lines = start_events("u-1");
    lines.extend(progress("u-1", 0, 48));
    server.post(&lines);
    let out = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args([
            "tail",
            &format!("ws://{}", server.addr),
            "--from",
            "earliest",
            "--count",
            "30",
            "--json",
        ])
        .env_remove("LOGBOOK_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(offsets(&printed), (0..30).collect::<Vec<_>>());

    // The human form, and bad usage exits 2.
    let out = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args([
            "tail",
            &format!("ws://{}", server.addr),
            "--from",
            "1",
            "--count",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.contains("task.added") && line.contains("task_id=t-1"),
        "{line}"
    );
    for bad in [
        vec!["tail", "http://127.0.0.1:1"],
        vec!["tail", "ws://127.0.0.1:1", "--from", "yesterday"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_logbook"))
            .args(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
}

#[test]
fn slow_client_is_served_from_disk() {
    const TOTAL: usize = 20_000;
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    server.post(&start_events("u-1"));
    let rt = runtime();
    // Connected, but not reading while the events are appended.
    let mut ws = rt
        .block_on(connect(&server.ws_url("from=earliest"), None))
        .unwrap();
    for batch in 0..TOTAL / 1000 {
        server.post(&progress("u-1", batch * 1000, 1000));
    }
    let (status, health) = server.get("/v1/health");
    assert_eq!(status, 200);
    assert_eq!(health["next_offset"], (TOTAL + 2) as u64);
    let events = rt.block_on(recv_events(&mut ws, TOTAL + 2));
    assert_eq!(
        offsets(&events),
        (0..(TOTAL + 2) as u64).collect::<Vec<_>>()
    );
}

#[cfg(unix)]
#[test]
fn server_shutdown_closes_streams_with_1001() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path(), &[]);
    let rt = runtime();
    let mut ws = rt.block_on(connect(&server.ws_url(""), None)).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    rt.block_on(async {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, ws.next())
                .await
                .expect("no close frame")
                .expect("stream ended without a close frame")
                .expect("websocket error");
            if let Message::Close(Some(close)) = frame {
                assert_eq!(u16::from(close.code), 1001);
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Many clients reading at the live edge share the hub (one serialization per record, shown
/// by its counters in /v1/health); a filtered one gets only its upgrade; one that stops reading
/// while more than the hub's buffer (4096 frames) passes falls back to the journal. Every
/// client sees exactly its dense sequence, and all are live again afterwards.
#[test]
fn live_clients_share_the_hub_and_a_lagging_one_falls_back_to_the_journal() {
    const CLIENTS: usize = 12;
    const PER_BATCH: usize = 500;
    const BATCHES: usize = 20;
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    let mut opening = start_events("u-1");
    opening.extend(start_events("u-2"));
    server.post(&opening);
    let first = server.next_offset();
    let total = (PER_BATCH * BATCHES) as u64;
    let want: Vec<u64> = (first..first + total).collect();
    let u2: Vec<u64> = (0..BATCHES as u64)
        .filter(|b| b % 2 == 1)
        .flat_map(|b| {
            let start = first + b * PER_BATCH as u64;
            start..start + PER_BATCH as u64
        })
        .collect();
    // Readers run on their own threads while the events are posted.
    let readers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut live = Vec::new();
    for i in 0..=CLIENTS {
        let query = if i == CLIENTS {
            "from=latest&upgrade_id=u-2"
        } else {
            "from=latest"
        };
        let mut ws = readers
            .block_on(connect(&server.ws_url(query), None))
            .unwrap();
        let n = if i == CLIENTS { u2.len() } else { want.len() };
        live.push(readers.spawn(async move {
            let events = recv_events(&mut ws, n).await;
            (offsets(&events), ws)
        }));
    }
    for b in 0..BATCHES {
        let upgrade = if b % 2 == 0 { "u-1" } else { "u-2" };
        server.post(&progress(upgrade, b * PER_BATCH, PER_BATCH));
    }
    let mut sockets = Vec::new();
    for (i, reader) in live.into_iter().enumerate() {
        let (got, ws) = readers.block_on(reader).unwrap();
        assert_eq!(&got, if i == CLIENTS { &u2 } else { &want }, "client {i}");
        sockets.push(ws);
    }
    // The hub serialized the records once for all (it may start a little after the first
    // ones, which the clients then read from the journal).
    let (_, health) = server.get("/v1/health");
    assert!(
        health["stream_hub"]["frames"].as_u64().unwrap() >= total / 2,
        "{health}"
    );
    server.post(&progress("u-2", 10_000, 1));
    let last = first + total;
    for ws in &mut sockets {
        assert_eq!(offsets(&readers.block_on(recv_events(ws, 1))), [last]);
    }
}

/// A client at the live edge that stops reading while more than the socket buffers and the
/// hub's 4096 frames pass (8,000 events of 4 KiB) falls back to the journal and still gets
/// every offset, then is live again.
#[test]
fn a_client_lagging_behind_the_hub_falls_back_to_the_journal() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    server.post(&start_events("u-1"));
    let first = server.next_offset();
    let rt = runtime();
    let mut ws = rt
        .block_on(connect(&server.ws_url("from=latest"), None))
        .unwrap();
    server.post(&progress("u-1", 0, 1));
    assert_eq!(offsets(&rt.block_on(recv_events(&mut ws, 1))), [first]);
    let pad = "x".repeat(4096);
    for batch in 0..8 {
        let lines: Vec<String> = (0..1000)
            .map(|i| {
                format!(
                    r#"{{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":{}.0,"message":"{batch}-{i} {pad}"}}"#,
                    (batch * 1000 + i) % 100
                )
            })
            .collect();
        server.post(&lines);
    }
    let want: Vec<u64> = (first + 1..first + 8001).collect();
    assert_eq!(
        offsets(&rt.block_on(recv_events(&mut ws, want.len()))),
        want
    );
    let (_, health) = server.get("/v1/health");
    assert!(
        health["stream_hub"]["fallbacks"].as_u64().unwrap() >= 1,
        "{health}"
    );
    server.post(&progress("u-1", 1, 1));
    assert_eq!(
        offsets(&rt.block_on(recv_events(&mut ws, 1))),
        [first + 8001]
    );
}
