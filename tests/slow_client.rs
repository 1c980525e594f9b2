//! Slow, stalled and reconnecting stream clients against the real binary: a `logbook serve`
//! child (tests/support/serve.rs) and a real WebSocket client (tokio-tungstenite), or the real
//! `logbook tail`. Every receive and every wait is bounded; children are killed by pid.
//!
//! The tests take a shared lock so that they run one at a time: one appends 200k events and
//! measures the server's memory, two depend on a one-second stall limit, one on reconnection
//! timing, and on two cores they should not compete for the CPU.
//!
//! `stalled_client_resuming_late_sees_the_connection_end` found a bug in
//! src/server/stream.rs, now fixed (see its docs).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use support::serve::{Server, start, start_on};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const RECV_TIMEOUT: Duration = Duration::from_secs(20);

/// One test at a time (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Posts NDJSON lines; every line must be accepted.
fn post(server: &Server, lines: &[String]) {
    let mut body = lines.join("\n");
    body.push('\n');
    let (status, response) = server.post_body(body.as_bytes());
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["count"], lines.len() as u64, "{response}");
}

fn ws_url(server: &Server, query: &str) -> String {
    format!("ws://{}/v1/stream?{query}", server.addr)
}

/// The two events that open upgrade `upgrade` and its task t-1 (as in tests/stream.rs).
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

/// `n` progress events for `upgrade`'s task t-1, `first` numbering the first, each with a
/// `message` of `pad` bytes (so that the size of what is appended is known).
fn progress(upgrade: &str, first: usize, n: usize, pad: usize) -> Vec<String> {
    let filler = "m".repeat(pad);
    (first..first + n)
        .map(|i| {
            format!(
                r#"{{"type":"task.progress","upgrade_id":"{upgrade}","task_id":"t-1","percentage":{},"message":"{i} {filler}"}}"#,
                (i % 100_000) as f64 / 1000.0
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

async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connects");
    ws
}

/// How a read of the stream ended.
#[derive(Debug)]
enum Ending {
    /// The expected number of events arrived.
    Complete,
    /// A close frame: code and reason.
    Closed(u16, String),
    /// The stream ended or failed without a close frame.
    Dropped(String),
}

/// Reads event frames until offset `until` (exclusive), a close frame, or the end of the stream;
/// every event must be offset `next` (then `next` moves on: offsets are dense), and every frame
/// must come within [`RECV_TIMEOUT`]. Only offsets are kept (200k envelopes are large).
async fn read_dense(ws: &mut Ws, next: &mut u64, until: u64) -> Ending {
    read_dense_within(ws, next, until, RECV_TIMEOUT).await
}

/// [`read_dense`], each frame within `silence`.
async fn read_dense_within(ws: &mut Ws, next: &mut u64, until: u64, silence: Duration) -> Ending {
    while *next < until {
        let message = match tokio::time::timeout(silence, ws.next()).await {
            Err(_) => panic!(
                "no frame for {silence:?} after offset {} (want {until}): neither an event, \
                 nor a close frame, nor the end of the stream",
                *next as i64 - 1
            ),
            Ok(None) => return Ending::Dropped("stream ended".into()),
            Ok(Some(Err(e))) => return Ending::Dropped(e.to_string()),
            Ok(Some(Ok(m))) => m,
        };
        match message {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(text.as_str()).expect("frame is JSON");
                assert_eq!(v["offset"].as_u64(), Some(*next), "offsets must be dense");
                assert!(v["type"].is_string(), "{v}");
                *next += 1;
            }
            Message::Close(frame) => {
                return match frame {
                    Some(f) => Ending::Closed(u16::from(f.code), f.reason.to_string()),
                    None => Ending::Closed(0, String::new()),
                };
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    Ending::Complete
}

/// Asserts no further event arrives within a short time.
async fn assert_quiet(ws: &mut Ws) {
    if let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        panic!("unexpected extra frame {t}");
    }
}

/// The resident set of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// A connected client that does not read while 200k events (~125 MB of envelopes) are
/// appended: the server must serve it from disk at its pace instead of queueing for it.
///
/// The bound: what a connection may hold is its subscription's reader buffer and the WebSocket
/// write buffer (32 KiB plus one frame), a constant. The server grows for other reasons
/// too: allocator slack from the 6.5 MB request bodies, the projection's SQLite cache, and the
/// sealer, which reads a whole segment into memory (hence 4 MiB segments here instead of the
/// 32 MiB default, whose transient spike would be as large as the margin). Measured in debug
/// builds: +31.6 MiB over the baseline after the first 10k with no lagging client, +33.3 MiB
/// with one. Queueing the lag instead would cost at least its envelope text, ~665 bytes x 190k
/// ≈ 120 MiB, so 64 MiB over the baseline leaves room for noise and still fails such a queue.
#[test]
fn slow_client_memory_is_bounded_while_200k_events_are_appended() {
    const TOTAL: u64 = 200_000;
    const BATCH: usize = 10_000;
    const PAD: usize = 512;
    const BOUND_KIB: u64 = 64 << 10;
    let _serial = serial();
    let began = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let server = start(
        data.path(),
        &["--ws-stall-limit", "3600", "--segment-bytes", "4194304"],
    );
    let pid = server.child.id();
    let mut samples = vec![("started".to_string(), rss_kib(pid))];
    let rt = runtime();
    // Connected, but not reading while everything is appended.
    let mut ws = rt.block_on(connect(&ws_url(&server, "from=earliest")));
    let mut first = start_events("u-1");
    first.extend(progress("u-1", 0, BATCH - 2, PAD));
    post(&server, &first);
    let baseline = rss_kib(pid);
    samples.push((format!("{BATCH}"), baseline));
    let mut appended = BATCH as u64;
    while appended < TOTAL {
        let n = BATCH.min((TOTAL - appended) as usize);
        post(&server, &progress("u-1", appended as usize - 2, n, PAD));
        appended += n as u64;
        samples.push((format!("{appended}"), rss_kib(pid)));
    }
    let append_time = began.elapsed();
    assert_eq!(server.next_offset(), TOTAL, "all events appended");
    samples.push(("appended".into(), rss_kib(pid)));
    let peak = samples.iter().map(|(_, kib)| *kib).max().unwrap();
    eprintln!("server RSS (KiB) by events appended, client not reading:");
    for (at, kib) in &samples {
        eprintln!("  {at:>8}: {kib:>8} ({:+})", *kib as i64 - baseline as i64);
    }
    eprintln!(
        "peak growth over the baseline after {BATCH}: {} KiB (bound {BOUND_KIB} KiB); appended in {append_time:.1?}",
        peak.saturating_sub(baseline)
    );
    assert!(
        peak.saturating_sub(baseline) < BOUND_KIB,
        "server RSS grew by {} KiB while a client lagged (bound {BOUND_KIB} KiB): {samples:?}",
        peak - baseline
    );

    // Now the client reads everything: dense 0..TOTAL, nothing lost, nothing more.
    let mut next = 0;
    let ending = rt.block_on(read_dense(&mut ws, &mut next, TOTAL));
    assert!(
        matches!(ending, Ending::Complete),
        "{ending:?} at offset {next}"
    );
    rt.block_on(assert_quiet(&mut ws));
    samples.push(("read".into(), rss_kib(pid)));
    eprintln!(
        "read back in {:.1?} (RSS {} KiB); total {:.1?}",
        began.elapsed() - append_time,
        samples.last().unwrap().1,
        began.elapsed()
    );
}

/// A client that stops reading while far more is pending than the socket buffers hold (and
/// more is appended) is closed with 1008 and a reason once the stall limit passes; what it got
/// before is a dense prefix, the server keeps serving, and a client resuming at `last + 1` gets
/// the rest.
///
/// Timing: the events are on disk before the client stops reading, so the server fills the
/// socket buffers at once and the stall limit (1 s) runs from then. The client reads again
/// 1.6 s after it stopped: past the limit, and before the server gives up on writing its close
/// frame (`CLOSE_WAIT`, 2 s, in src/server/stream.rs; the close frame can only follow the
/// frames still buffered, so it needs a reader to get out). For a client that comes back later
/// see [`stalled_client_resuming_late_sees_the_connection_end`].
#[test]
fn stalled_client_is_closed_with_1008_and_a_reason() {
    const TOTAL: u64 = 50_000;
    const FIRST: usize = 10_000;
    const DURING: usize = 1_000;
    const BATCH: usize = 10_000;
    const PAD: usize = 1000;
    let _serial = serial();
    let began = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &["--ws-stall-limit", "1"]);
    let rt = runtime();
    // ~10 MB: far more than the loopback socket buffers hold.
    let mut first = start_events("u-1");
    first.extend(progress("u-1", 0, FIRST - 2, PAD));
    post(&server, &first);
    let mut ws = rt.block_on(connect(&ws_url(&server, "from=earliest")));
    // Reading at first: the connection is live.
    let mut next = 0;
    let ending = rt.block_on(read_dense(&mut ws, &mut next, 2));
    assert!(matches!(ending, Ending::Complete), "{ending:?}");

    // Then it stops reading, and more is appended meanwhile.
    let stopped = Instant::now();
    post(&server, &progress("u-1", FIRST - 2, DURING, PAD));
    let mut appended = (FIRST + DURING) as u64;
    assert_eq!(server.next_offset(), appended);
    let posted = stopped.elapsed();
    std::thread::sleep(Duration::from_millis(1600).saturating_sub(stopped.elapsed()));
    let resumed = stopped.elapsed();
    let ending = rt.block_on(read_dense(&mut ws, &mut next, appended));
    eprintln!(
        "stopped reading; {DURING} more appended by +{posted:.2?}; read again at \
         +{resumed:.2?}: offsets 0..{next}, then {ending:?} at +{:.2?}",
        stopped.elapsed()
    );
    match &ending {
        Ending::Closed(code, reason) => {
            assert_eq!(*code, 1008, "{reason}");
            assert!(reason.contains("stopped reading"), "{reason:?}");
        }
        other => panic!("expected a 1008 close after offset {next}, got {other:?}"),
    }
    assert!(next > 2, "the server wrote to the socket before it stalled");
    assert!(
        next < appended,
        "closed after everything was delivered: not a stall"
    );
    // The connection ends after the close.
    rt.block_on(async {
        let end = tokio::time::timeout(RECV_TIMEOUT, ws.next()).await;
        assert!(
            matches!(end, Ok(None | Some(Err(_)))),
            "frame after the close: {end:?}"
        );
    });

    // The server still serves: more is appended, and a client resuming at last + 1 gets
    // exactly the rest.
    while appended < TOTAL {
        let n = BATCH.min((TOTAL - appended) as usize);
        post(&server, &progress("u-1", appended as usize - 2, n, PAD));
        appended += n as u64;
    }
    assert_eq!(server.next_offset(), TOTAL);
    let mut again = rt.block_on(connect(&ws_url(&server, &format!("from={next}"))));
    let ending = rt.block_on(read_dense(&mut again, &mut next, TOTAL));
    assert!(
        matches!(ending, Ending::Complete),
        "{ending:?} at offset {next}"
    );
    rt.block_on(assert_quiet(&mut again));
    eprintln!("total {:.1?}", began.elapsed());
}

/// A client that stops reading while ~50 MB are appended and reads again only once that is
/// done (1.5 s later) must not hang: within a bounded time after the frames the kernel
/// buffered, it gets the 1008 close or at least the end of the connection (so that it
/// reconnects at once), and a client resuming at `last + 1` gets the rest.
///
/// This found a bug, now fixed in src/server/stream.rs (`run`): the close frame can only be
/// queued behind the frames still buffered, so it is abandoned after `CLOSE_WAIT`; the reader
/// task, which holds the socket's other half, used to be left running, so the connection was
/// never closed while the client stayed silent. It is now aborted, dropping the socket.
#[test]
fn stalled_client_resuming_late_sees_the_connection_end() {
    const TOTAL: u64 = 50_000;
    const BATCH: usize = 10_000;
    const PAD: usize = 1000;
    /// Generous: the stall limit (1 s) plus the server's two 2 s waits is 5 s.
    const SILENCE: Duration = Duration::from_secs(10);
    let _serial = serial();
    let began = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &["--ws-stall-limit", "1"]);
    let rt = runtime();
    post(&server, &start_events("u-1"));
    let mut ws = rt.block_on(connect(&ws_url(&server, "from=earliest")));
    let mut next = 0;
    let ending = rt.block_on(read_dense(&mut ws, &mut next, 2));
    assert!(matches!(ending, Ending::Complete), "{ending:?}");

    // It stops reading while ~50 MB are appended.
    let stopped = Instant::now();
    let mut appended = 2u64;
    while appended < TOTAL {
        let n = BATCH.min((TOTAL - appended) as usize);
        post(&server, &progress("u-1", appended as usize - 2, n, PAD));
        appended += n as u64;
    }
    assert_eq!(server.next_offset(), TOTAL);
    let posted = stopped.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    eprintln!(
        "stopped reading; {TOTAL} appended by +{posted:.1?}; reading again at +{:.1?}",
        stopped.elapsed()
    );
    let ending = rt.block_on(read_dense_within(&mut ws, &mut next, TOTAL, SILENCE));
    eprintln!(
        "offsets 0..{next}, then {ending:?} at +{:.1?}",
        stopped.elapsed()
    );
    match &ending {
        Ending::Closed(code, reason) => {
            assert_eq!(*code, 1008, "{reason}");
            assert!(reason.contains("stopped reading"), "{reason:?}");
        }
        Ending::Dropped(why) => eprintln!("ended without a close frame: {why}"),
        Ending::Complete => panic!("not closed although it stalled for {posted:.1?}"),
    }
    let mut again = rt.block_on(connect(&ws_url(&server, &format!("from={next}"))));
    let ending = rt.block_on(read_dense(&mut again, &mut next, TOTAL));
    assert!(
        matches!(ending, Ending::Complete),
        "{ending:?} at offset {next}"
    );
    rt.block_on(assert_quiet(&mut again));
    eprintln!("total {:.1?}", began.elapsed());
}

/// A `logbook tail` child whose stdout lines arrive on a channel; killed by pid when dropped.
struct Tail {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Tail {
    fn spawn(args: &[&str]) -> Tail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
            .arg("tail")
            .args(args)
            .env_remove("LOGBOOK_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("logbook tail starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Tail { child, lines }
    }

    /// Collects printed lines until there are `n` in `out`, within `limit`.
    fn read_until(&mut self, out: &mut Vec<String>, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(e) => panic!(
                    "tail printed {} of {n} lines ({e}); still running: {:?}",
                    out.len(),
                    self.child.try_wait()
                ),
            }
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The offsets of `--json` tail lines.
fn printed_offsets(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["offset"]
                .as_u64()
                .unwrap_or_else(|| panic!("no offset: {l}"))
        })
        .collect()
}

/// `logbook tail` follows a server that is killed (mid-stream, most likely) and restarted on
/// the same data dir and port: every offset is printed exactly once, in order, across the
/// restart.
#[test]
fn tail_resumes_after_server_restart() {
    const LIVE: usize = 20_000;
    let _serial = serial();
    let began = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path(), &[]);
    let addr = server.addr.clone();
    let mut first = start_events("u-1");
    first.extend(progress("u-1", 0, 98, 16));
    post(&server, &first);
    let mut tail = Tail::spawn(&[&format!("ws://{addr}"), "--json", "--from", "0"]);
    let mut lines = Vec::new();
    tail.read_until(&mut lines, 100, Duration::from_secs(30));
    // Live events too; the server dies (SIGKILL: no close frame) while they are streamed.
    post(&server, &progress("u-1", 98, LIVE, 16));
    let appended = 100 + LIVE;
    tail.read_until(&mut lines, 1100, Duration::from_secs(30));
    server.child.kill().expect("kills serve");
    server.child.wait().expect("reaps serve");
    let at_kill = lines.len();
    drop(server);

    // It comes back on the same port and data dir, and more is appended.
    std::thread::sleep(Duration::from_millis(300));
    let server = start_on(data.path(), &addr, &[]);
    assert_eq!(server.addr, addr);
    assert_eq!(
        server.next_offset(),
        appended as u64,
        "the journal survived the kill"
    );
    post(&server, &progress("u-1", 98 + LIVE, 100, 16));
    tail.read_until(&mut lines, appended + 100, Duration::from_secs(60));
    // Nothing more: no duplicate arrives late.
    if let Ok(extra) = tail.lines.recv_timeout(Duration::from_millis(500)) {
        panic!("tail printed an extra line {extra}");
    }
    assert_eq!(
        printed_offsets(&lines),
        (0..(appended + 100) as u64).collect::<Vec<_>>()
    );
    assert!(
        tail.child.try_wait().unwrap().is_none(),
        "tail is still following"
    );
    drop(tail);
    eprintln!(
        "tail had printed {at_kill} of {appended} lines when serve was killed; total {:.1?}",
        began.elapsed()
    );
}
