//! `logbook serve` against slow and numerous connections (an outside test's finding 9,
//! "Slowloris"): the real binary on 127.0.0.1:0 (tests/support/serve.rs), raw TCP clients that
//! send requests byte by byte, and a real WebSocket client. Every wait has a deadline; the
//! server is killed by pid when a test ends.
//!
//! - `slowloris_connections_are_closed_after_the_header_timeout`: 200 connections trickling
//!   a header are closed once `--header-timeout` passes, while an authorized request is served.
//! - `idle_keep_alive_connection_is_closed_after_the_idle_timeout`: between requests the
//!   idle timeout applies (not the header timeout), and then the connection is closed.
//! - `connections_beyond_the_cap_get_503_and_websocket_streams_count`: `--max-connections`
//!   counts WebSocket streams; the next connection gets a JSON 503 and is closed; a freed slot
//!   serves again.
//!
//! Before the fix (axum::serve without timeouts or a cap), all 200 trickling connections were
//! still open after the 6 s deadline of the first test, the idle connection was never closed,
//! and there was no cap at all.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use support::serve::{Server, start};

const TOKEN: &str = "s3cret";

/// A connected raw client, blocking reads bounded by `timeout`.
fn connect(server: &Server, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(&server.addr).expect("connects");
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    stream
}

/// `GET path` on `stream` (keep-alive), with the token.
fn send_get(stream: &mut TcpStream, path: &str) {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("request sent");
}

/// One response read from `stream`: status, head, body (needs `Content-Length`).
fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed mid-head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(_) => buf.push(byte[0]),
            Err(e) => panic!(
                "reading the head: {e} after {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let head = String::from_utf8(buf).expect("ASCII head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("Content-Length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("body");
    (status, head, body)
}

/// `GET path` on a keep-alive connection: status and JSON body.
fn get_json(stream: &mut TcpStream, path: &str) -> (u16, Value) {
    send_get(stream, path);
    let (status, _, body) = read_response(stream);
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

/// Whether the server closed `stream` (EOF or reset) within `wait`; `false` if it is still
/// open then. Data the server sends first (none is expected) is read and ignored.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true, // reset
        }
    }
}

/// Waits until `/v1/health` (asked on `probe`, itself one connection) counts only `open`
/// open connections: the connections of earlier requests are released.
fn wait_open_connections(probe: &mut TcpStream, open: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get_json(probe, "/v1/health");
        assert_eq!(status, 200, "{body}");
        if body["connections"]["open"] == open {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health still counts {} open connections, want {open}",
            body["connections"]["open"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 200 connections send a partial request and then one header byte every 250 ms (a Slowloris
/// attack). With `--header-timeout 1s` each is closed within the timeout plus a generous
/// margin (deadline 6 s after the last one opened), while an authorized `/v1/health` on a new
/// connection is served meanwhile. Before the fix none of the 200 was closed by the deadline.
#[test]
fn slowloris_connections_are_closed_after_the_header_timeout() {
    const SLOW: usize = 200;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
    const MARGIN: Duration = Duration::from_secs(5);
    let data = tempfile::tempdir().unwrap();
    let server = start(
        data.path(),
        &[
            "--token",
            TOKEN,
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "60s",
            "--max-connections",
            "512",
        ],
    );
    let mut slow: Vec<Option<TcpStream>> = (0..SLOW)
        .map(|_| {
            let mut s = connect(&server, Duration::from_secs(5));
            s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .expect("partial request sent");
            s.set_nonblocking(true).unwrap();
            Some(s)
        })
        .collect();
    let opened = Instant::now();

    // Meanwhile, an authorized request on a new connection is served.
    let (status, body) = server.get("/v1/health");
    assert_eq!(status, 200, "{body}");
    assert!(
        opened.elapsed() < HEADER_TIMEOUT,
        "health took {:?}: the slow connections were not yet due; rerun on a less loaded \
         machine",
        opened.elapsed()
    );
    let still_open = slow.iter().filter(|s| s.is_some()).count();
    assert_eq!(still_open, SLOW, "closed before the header timeout");

    // Trickle a byte per connection every 250 ms until the server closes each.
    let deadline = opened + HEADER_TIMEOUT + MARGIN;
    let mut buf = [0u8; 256];
    let mut closed_at = Vec::new();
    while slow.iter().any(Option::is_some) && Instant::now() < deadline {
        for slot in &mut slow {
            let Some(stream) = slot else { continue };
            let gone = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false, // a response (e.g. 408) before the close: keep reading
                Err(e) if e.kind() == ErrorKind::WouldBlock => stream.write(b"a").is_err(),
                Err(_) => true,
            };
            if gone {
                *slot = None;
                closed_at.push(opened.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let open = slow.iter().filter(|s| s.is_some()).count();
    eprintln!(
        "{} of {SLOW} slow connections closed by the server, the last at +{:.2?}; {open} still \
         open at +{:.2?}",
        closed_at.len(),
        closed_at.iter().max().copied().unwrap_or_default(),
        opened.elapsed()
    );
    assert_eq!(
        open, 0,
        "{open} of {SLOW} connections trickling a header were still open {:?} after the \
         header timeout",
        MARGIN
    );
    // The server still serves.
    assert_eq!(server.get("/v1/health").0, 200);
}

/// A keep-alive connection that finished a request is idle: the idle timeout (3 s) applies to
/// it, not the header timeout (1 s), so it still serves a second request after 1.5 s of
/// silence; once idle again it is closed after the idle timeout (deadline: +3 s margin).
/// Before the fix the connection was never closed. A WebSocket stream opened at the start is
/// no longer HTTP: neither timeout closes it, and it still delivers an event at the end.
#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
    let data = tempfile::tempdir().unwrap();
    let server = start(
        data.path(),
        &[
            "--token",
            TOKEN,
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "3s",
        ],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("ws://{}/v1/stream?from=latest&token={TOKEN}", server.addr);
    let (mut ws, _) = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async(url),
            )
            .await
        })
        .expect("WebSocket connect in time")
        .expect("WebSocket connects");
    let mut stream = connect(&server, Duration::from_secs(10));
    let (status, body) = get_json(&mut stream, "/v1/health");
    assert_eq!(status, 200, "{body}");
    assert!(
        !closed_within(&mut stream, Duration::from_millis(1500)),
        "an idle keep-alive connection was closed before the idle timeout"
    );
    let (status, body) = get_json(&mut stream, "/v1/health");
    assert_eq!(status, 200, "the idle connection serves again: {body}");
    let idle_since = Instant::now();
    assert!(
        closed_within(&mut stream, IDLE_TIMEOUT + Duration::from_secs(3)),
        "an idle keep-alive connection was still open {:?} after its last response",
        idle_since.elapsed()
    );
    eprintln!("idle connection closed at +{:.2?}", idle_since.elapsed());

    // The stream outlived both timeouts: it delivers what is recorded now.
    let event = r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p","cluster_name":"prod","phase":"Planning"}"#;
    let (status, body) = server.post_body(format!("{event}\n").as_bytes());
    assert_eq!(status, 200, "{body}");
    let frame = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                    break text.to_string();
                }
                Ok(Some(Ok(_))) => continue,
                other => panic!("the stream ended or fell silent: {other:?}"),
            }
        }
    });
    let frame: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(frame["offset"], 0, "{frame}");
}

/// With `--max-connections 4`: a health probe (1), a WebSocket stream (2) and two raw
/// connections that send nothing (3, 4) fill the cap; the fifth connection is answered
/// `503 {"error": ..}` and closed. Once one raw connection leaves, a new one is served.
#[test]
fn connections_beyond_the_cap_get_503_and_websocket_streams_count() {
    let data = tempfile::tempdir().unwrap();
    let server = start(
        data.path(),
        &[
            "--token",
            TOKEN,
            "--header-timeout",
            "30s",
            "--max-connections",
            "4",
        ],
    );
    let mut probe = connect(&server, Duration::from_secs(10));
    wait_open_connections(&mut probe, 1);
    let health = get_json(&mut probe, "/v1/health").1;
    assert_eq!(health["connections"]["max"], 4, "{health}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("ws://{}/v1/stream?from=latest&token={TOKEN}", server.addr);
    let (mut ws, _) = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async(url),
            )
            .await
        })
        .expect("WebSocket connect in time")
        .expect("WebSocket connects");
    wait_open_connections(&mut probe, 2);
    let quiet_a = connect(&server, Duration::from_secs(10));
    let quiet_b = connect(&server, Duration::from_secs(10));

    // Accepted in order: this one comes after the four above.
    let mut over = connect(&server, Duration::from_secs(10));
    let _ = over.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let (status, head, body) = read_response(&mut over);
    assert_eq!(status, 503, "{head}");
    let body: Value = serde_json::from_slice(&body).expect("JSON error body");
    assert!(body["error"].is_string(), "{body}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(
        closed_within(&mut over, Duration::from_secs(5)),
        "the refused connection is closed"
    );
    eprintln!("refused: {body}");

    // A slot freed: served again (the server notices the close asynchronously).
    drop(quiet_a);
    wait_open_connections(&mut probe, 3);
    let mut again = connect(&server, Duration::from_secs(10));
    let (status, body) = get_json(&mut again, "/v1/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connections"]["open"], 4, "{body}");

    drop(quiet_b);
    rt.block_on(async {
        let _ = ws.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    });
}

/// With `--max-ingests 1 --ingest-wait 1s`: while one `POST /v1/events` holds the only turn
/// (its body half sent), another gets `503 {"error": ..}` with `Retry-After` after the wait,
/// and nothing of it is written; the first, once its body is complete, is recorded. A body that
/// then stalls for the header timeout (2 s) is answered 408, nothing written.
#[test]
fn ingest_turns_are_bounded_and_a_stalled_body_gets_408() {
    const LINE: &str = r#"{"type":"upgrade.started","upgrade_id":"u-1","plan_id":"p","cluster_name":"prod","phase":"Planning"}"#;
    let data = tempfile::tempdir().unwrap();
    let server = start(
        data.path(),
        &[
            "--token",
            TOKEN,
            "--header-timeout",
            "2s",
            "--max-ingests",
            "1",
            "--ingest-wait",
            "1s",
        ],
    );
    let body = format!("{LINE}\n");
    let (half, rest) = body.split_at(20);
    let post_head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut first = connect(&server, Duration::from_secs(10));
    first.write_all(post_head.as_bytes()).unwrap();
    first.write_all(half.as_bytes()).unwrap();
    // Wait until the first holds the turn.
    let mut probe = connect(&server, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = get_json(&mut probe, "/v1/health");
        if health["ingests"]["active"] == 1 {
            assert_eq!(health["ingests"]["max"], 1, "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first ingest never took its turn: {health}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut second = connect(&server, Duration::from_secs(10));
    second.write_all(post_head.as_bytes()).unwrap();
    second.write_all(body.as_bytes()).unwrap();
    let (status, head, response) = read_response(&mut second);
    assert_eq!(status, 503, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let error: Value = serde_json::from_slice(&response).unwrap();
    assert!(error["error"].as_str().unwrap().contains("busy"), "{error}");

    first.write_all(rest.as_bytes()).unwrap();
    let (status, head, response) = read_response(&mut first);
    assert_eq!(status, 200, "{head} {}", String::from_utf8_lossy(&response));
    assert_eq!(get_json(&mut probe, "/v1/health").1["next_offset"], 1);

    // A body that stops half-way is answered 408 once the header timeout passes.
    let stalled_at = Instant::now();
    first.write_all(post_head.as_bytes()).unwrap();
    first.write_all(half.as_bytes()).unwrap();
    let (status, head, response) = read_response(&mut first);
    assert_eq!(status, 408, "{head} {}", String::from_utf8_lossy(&response));
    eprintln!(
        "stalled body answered 408 after {:.2?}",
        stalled_at.elapsed()
    );
    assert_eq!(get_json(&mut probe, "/v1/health").1["next_offset"], 1);
}
