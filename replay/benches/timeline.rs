//! Replay benchmark (issue [5/5]), side by side in one run over the same ~1M-event journal
//! (100 upgrades × 100 tasks × 95 progress rounds, every record sealed):
//!
//! 1. the decompress+parse limit: the journal reader (decompress, verify the chain) and
//!    `serde_json::from_slice::<Value>`, and the same with the typed `logbook::event::upcast`;
//! 2. the single-threaded timeline scan: the journal reader, upcast, `Timeline::push` (output
//!    to a sink);
//! 3. the scanner with one thread (its jobs inline) and with one decoding thread per core, as
//!    `logbook-replay timeline` runs it (events the timeline leaves out are parsed and dropped
//!    on the workers).
//!
//! `cargo bench -p logbook-replay --bench timeline`; `LOGBOOK_BENCH_QUICK=1` for a smoke run.
//! Progress goes to stderr, the markdown table to stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use logbook::event::upcast;
use logbook::journal::{Durability, Journal, JournalConfig, StartAt};
use logbook::recorder::Recorder;
use logbook_replay::decode::{Decoded, decode};
use logbook_replay::point::Range;
use logbook_replay::scan::{Flow, Scanner};
use logbook_replay::source::Source;
use logbook_replay::timeline::{Timeline, TimelineOptions, prepare};
use serde_json::Value;
use workload::{UpgradeShape, upgrade_events};

#[path = "../../benches/support/workload.rs"]
mod workload;

fn record(dir: &Path, upgrades: usize, tasks: usize, progress: usize) -> u64 {
    let config = JournalConfig {
        durability: Durability::None,
        ..JournalConfig::default()
    };
    let recorder =
        Recorder::open(dir.parent().expect("a data dir holds the journal"), config).unwrap();
    for u in 0..upgrades {
        for result in recorder
            .record_all(&upgrade_events(
                u,
                &UpgradeShape {
                    tasks,
                    progress,
                    artifacts: 0,
                    failures: true,
                },
            ))
            .unwrap()
        {
            result.unwrap();
        }
    }
    recorder.journal().wait_visible().unwrap();
    assert!(
        recorder
            .journal()
            .seal_now(Duration::from_secs(120))
            .unwrap()
    );
    let n = recorder.journal().next_offset();
    recorder.close().unwrap();
    n
}

struct Row {
    name: &'static str,
    events: u64,
    elapsed: Duration,
    cores: f64,
}

/// CPU time of this process so far (user + system, from /proc/self/stat, in seconds).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Best of `runs` (the machine is shared: the minimum is the least disturbed run), with the
/// mean number of cores busy over all runs (CPU time / wall time).
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Duration, f64) {
    let mut out = None;
    let mut fastest = Duration::MAX;
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    for _ in 0..runs {
        let start = Instant::now();
        let value = f();
        fastest = fastest.min(start.elapsed());
        out = Some(value);
    }
    let cores = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64();
    (out.unwrap(), fastest, cores)
}

fn timeline_sink() -> Timeline<std::io::BufWriter<std::io::Sink>> {
    Timeline::new(
        std::io::BufWriter::new(std::io::sink()),
        TimelineOptions::default(),
    )
}

fn main() {
    let quick = std::env::var_os("LOGBOOK_BENCH_QUICK").is_some();
    let (upgrades, tasks, progress, runs) = if quick {
        (10, 20, 20, 1)
    } else {
        (100, 100, 95, 3)
    };
    let tmp = tempfile::tempdir().unwrap();
    let journal_dir = tmp.path().join("journal");
    eprintln!("recording the journal (durability none) and sealing it...");
    let start = Instant::now();
    let events = record(&journal_dir, upgrades, tasks, progress);
    eprintln!("  {events} events in {:.1?}", start.elapsed());
    let journal = Journal::open_read_only(&journal_dir, JournalConfig::default()).unwrap();
    let segments = journal.sealed_segments().len();
    let source = Source::open(tmp.path().to_str().unwrap()).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut rows = Vec::new();

    eprintln!("limit: reader + serde_json::Value...");
    let (n, elapsed, cores_busy) = best(runs, || {
        let mut reader = journal.reader(StartAt::Earliest).unwrap();
        let mut n = 0u64;
        while let Some(r) = reader.next().unwrap() {
            let v: Value = serde_json::from_slice(&r.payload).unwrap();
            n += u64::from(v.is_object());
        }
        n
    });
    assert_eq!(n, events);
    rows.push(Row {
        name: "limit: reader + `serde_json::Value` parse",
        events,
        elapsed,
        cores: cores_busy,
    });

    eprintln!("limit: reader + typed upcast...");
    let (n, limit, cores_busy) = best(runs, || {
        let mut reader = journal.reader(StartAt::Earliest).unwrap();
        let mut n = 0u64;
        while let Some(r) = reader.next().unwrap() {
            n += u64::from(upcast(r.schema_version, &r.payload).is_ok());
        }
        n
    });
    assert_eq!(n, events);
    rows.push(Row {
        name: "limit: reader + typed `upcast` (the reference)",
        events,
        elapsed: limit,
        cores: cores_busy,
    });

    eprintln!("single-threaded timeline: reader + upcast + Timeline...");
    let (lines_single, elapsed, cores_busy) = best(runs, || {
        let mut reader = journal.reader(StartAt::Earliest).unwrap();
        let mut timeline = timeline_sink();
        while let Some(r) = reader.next().unwrap() {
            let d: Decoded = decode(r);
            timeline.push(&d).unwrap();
        }
        timeline.lines()
    });
    rows.push(Row {
        name: "timeline, single-threaded (reader + upcast + format)",
        events,
        elapsed,
        cores: cores_busy,
    });

    let scan = |threads: usize| {
        let scanner = Scanner { threads };
        best(runs, || {
            let mut timeline = timeline_sink();
            let map = prepare(TimelineOptions::default());
            scanner
                .scan(&source, &Range::all(), &map, &mut |item| {
                    timeline.push_item(&item)?;
                    Ok(Flow::Continue)
                })
                .unwrap();
            timeline.lines()
        })
    };
    eprintln!("timeline through the scanner, 1 thread...");
    let (lines_one, elapsed, cores_busy) = scan(1);
    assert_eq!(lines_one, lines_single);
    rows.push(Row {
        name: "timeline, scanner with 1 thread (jobs inline)",
        events,
        elapsed,
        cores: cores_busy,
    });
    eprintln!("timeline through the scanner, {cores} threads...");
    let (lines_par, parallel, cores_busy) = scan(cores);
    assert_eq!(lines_par, lines_single);
    rows.push(Row {
        name: "timeline, parallel scanner (one decoding thread per core)",
        events,
        elapsed: parallel,
        cores: cores_busy,
    });

    println!(
        "{events} events, {segments} sealed segments, {cores} cores, best of {runs} run(s); \
         the timeline writes {lines_single} lines (task.progress left out) to a sink.\n"
    );
    println!("| path | events | time | events/s | vs limit (typed) | cores busy |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.3} s | {:.0} | {:.2}× | {:.2} |",
            row.name,
            row.events,
            row.elapsed.as_secs_f64(),
            row.events as f64 / row.elapsed.as_secs_f64(),
            limit.as_secs_f64() / row.elapsed.as_secs_f64(),
            row.cores
        );
    }
    let ratio = limit.as_secs_f64() / parallel.as_secs_f64();
    println!(
        "\nParallel full timeline scan: {:.2}× the decompress+parse limit (target ≥ 0.90×: {}).",
        ratio,
        if ratio >= 0.9 { "met" } else { "NOT met" }
    );
}
