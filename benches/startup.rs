//! Start-up and reads independent of the journal's size (issue [1/4]).
//!
//! Two data dirs of the same shape (upgrades of 20 tasks with progress rounds, 1 event in 10
//! with an idempotency key): a small one (about 1,000 events) and a big one (10,000,000 by
//! default; `LOGBOOK_BENCH_EVENTS=N` sets it). Side by side in one run, alternating, for
//! [`ROUNDS`] rounds, with the release `logbook` binary:
//!
//! 1. `serve` ready: from spawning `logbook serve` to the first `200` of `/v1/health`; and the
//!    server's VmRSS at that moment (RSS at open).
//! 2. `show upgrade ID`: the whole command, process start to exit.
//!
//! Targets: each big/small ratio within 2x; RSS at open of the big one within 32 MiB of the
//! small one. For context it also times what `show` did before (fold the whole journal in
//! memory) on the big journal, and building the big projection from scratch.
//!
//! `cargo bench --bench startup` (about 6 minutes with 10M events, most of it creating them);
//! the results go in benches/RESULTS.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logbook::event::Event;
use logbook::journal::{Durability, Journal, JournalConfig};
use logbook::recorder::Recorder;
use logbook::state::{Until, state_at};

#[path = "support/workload.rs"]
mod workload;

const ROUNDS: usize = 5;
const BIN: &str = env!("CARGO_BIN_EXE_logbook");

/// Events of upgrade `u` with about `per_upgrade` events; 1 in 10 carries an id.
fn events_of(u: usize, progress: usize) -> Vec<Vec<u8>> {
    let shape = workload::UpgradeShape {
        tasks: 20,
        progress,
        artifacts: 0,
        failures: false,
    };
    workload::upgrade_events(u, &shape)
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            if i % 10 == 5 {
                let mut value: serde_json::Value =
                    serde_json::from_slice(&event.to_payload()).unwrap();
                value["id"] = serde_json::json!(format!("key-{u}-{i}"));
                Event::parse(value.to_string().as_bytes())
                    .unwrap()
                    .to_payload()
            } else {
                event.to_payload()
            }
        })
        .collect()
}

/// Creates a data dir of about `events` events; returns the exact count.
fn create(data: &Path, events: u64) -> u64 {
    let per_upgrade_progress = if events < 10_000 { 45 } else { 490 };
    let journal = Journal::open(
        data.join("journal"),
        JournalConfig {
            durability: Durability::None,
            ..JournalConfig::default()
        },
    )
    .unwrap();
    let mut written = 0u64;
    let mut u = 0;
    while written < events {
        let batch = events_of(u, per_upgrade_progress);
        for chunk in batch.chunks(1000) {
            written += journal.append_batch(chunk).unwrap().count() as u64;
        }
        u += 1;
    }
    journal.close().unwrap();
    // The first writer builds the projection from scratch.
    let started = Instant::now();
    Recorder::open(data, JournalConfig::default())
        .unwrap()
        .close()
        .unwrap();
    eprintln!(
        "  {written} events in {u} upgrades; projection built from scratch in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    written
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn health_ok(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// Time from spawning `serve` to its first healthy answer, and its RSS then (KiB).
fn serve_ready(data: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("serve: {line:?}"))
        .to_string();
    while !health_ok(&addr) {
        assert!(started.elapsed() < Duration::from_secs(600));
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = started.elapsed();
    let rss = vm_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (took, rss)
}

/// The whole `show upgrade ID` command.
fn show(data: &Path, id: &str) -> Duration {
    let started = Instant::now();
    let out = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(["--json", "show", "upgrade", id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let big_events: u64 = std::env::var("LOGBOOK_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    // LOGBOOK_BENCH_DIR=DIR keeps the two data dirs (DIR/small, DIR/big) for profiling.
    let keep = std::env::var_os("LOGBOOK_BENCH_DIR").map(std::path::PathBuf::from);
    let parent = match &keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).unwrap();
            tempfile::Builder::new()
                .disable_cleanup(true)
                .tempdir_in(dir)
                .unwrap()
        }
        None => tempfile::tempdir().unwrap(),
    };
    let (small, big) = (parent.path().join("small"), parent.path().join("big"));
    eprintln!("creating the small data dir...");
    let small_n = create(&small, 1_000);
    eprintln!("creating the big data dir...");
    let big_n = create(&big, big_events);
    if keep.is_some() {
        eprintln!("keeping {}", parent.path().display());
    }
    let id = "upgrade-0000";
    let (mut ready, mut rss, mut shows) = ([vec![], vec![]], [vec![], vec![]], [vec![], vec![]]);
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}...", round + 1);
        for (i, dir) in [small.as_path(), big.as_path()].into_iter().enumerate() {
            let (took, kib) = serve_ready(dir);
            ready[i].push(took.as_secs_f64() * 1000.0);
            rss[i].push(kib as f64 / 1024.0);
            shows[i].push(show(dir, id).as_secs_f64() * 1000.0);
        }
    }
    // Context: what `show` did before (fold the whole journal in memory), on the big one.
    let journal = Journal::open_read_only(big.join("journal"), JournalConfig::default()).unwrap();
    let started = Instant::now();
    let mut state = state_at(&journal, Until::End).unwrap();
    let fold = started.elapsed();
    assert!(state.upgrade_view(id).is_some());

    let row = |name: &str, unit: &str, s: &[f64], b: &[f64], target: f64| {
        let (s, b) = (median(s.to_vec()), median(b.to_vec()));
        let ratio = b / s;
        let status = if ratio <= target { "PASS" } else { "FAIL" };
        println!(
            "| {name} | {s:.1} {unit} | {b:.1} {unit} | {ratio:.2}x | ≤ {target:.1}x | {status} |"
        );
    };
    println!(
        "\n### Start-up and reads ({small_n} vs {big_n} events, median of {ROUNDS} alternating rounds)\n"
    );
    println!("| measurement | {small_n} events | {big_n} events | ratio | target | status |");
    println!("|---|---:|---:|---:|---|---|");
    row(
        "`serve` ready (spawn to first 200 of /v1/health)",
        "ms",
        &ready[0],
        &ready[1],
        2.0,
    );
    row(
        "`show upgrade` (whole command)",
        "ms",
        &shows[0],
        &shows[1],
        2.0,
    );
    let (rs, rb) = (median(rss[0].clone()), median(rss[1].clone()));
    println!(
        "| `serve` VmRSS when ready | {rs:.1} MiB | {rb:.1} MiB | +{:.1} MiB | ≤ +32 MiB | {} |",
        rb - rs,
        if rb - rs <= 32.0 { "PASS" } else { "FAIL" }
    );
    println!(
        "| context: the old `show`, folding the whole journal in memory (`state_at`) | — | {:.0} ms | — | — | info |",
        fold.as_secs_f64() * 1000.0
    );
}
