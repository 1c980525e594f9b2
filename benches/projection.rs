//! Projection benchmarks, side by side in one run over the same journal: raw journal replay,
//! replay + upcast (typed events), the in-memory fold (`State::apply`), and the SQLite
//! projection's full rebuild at several batch sizes; plus the median time of
//! `State::upgrade_view` (what `progress()` returns) and `Projection::upgrade` on an upgrade
//! with 10,000 tasks.
//!
//! `cargo bench --bench projection` (1M events; about a minute on 2 cores);
//! `LOGBOOK_BENCH_QUICK=1` for a smoke run. Progress goes to stderr; the markdown table to
//! stdout. Targets: rebuild ≥ 200,000 events/s; `upgrade_view` with 10,000 tasks < 1 ms median.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use logbook::event::{Event, upcast};
use logbook::journal::{Durability, Journal, JournalConfig, StartAt};
use logbook::projection::Projection;
use logbook::recorder::Recorder;
use logbook::state::State;
use workload::{UpgradeShape, upgrade_events};

#[path = "support/workload.rs"]
mod workload;

struct Scale {
    upgrades: usize,
    tasks: usize,
    progress: usize,
    artifacts: usize,
    big_tasks: usize,
    view_iterations: usize,
}

fn config() -> JournalConfig {
    JournalConfig {
        durability: Durability::None,
        ..JournalConfig::default()
    }
}

fn record(dir: &Path, upgrades: &[Vec<Event>]) -> u64 {
    let recorder = Recorder::open(
        dir.parent().expect("a data dir holds the journal"),
        config(),
    )
    .unwrap();
    for events in upgrades {
        for result in recorder.record_all(events).unwrap() {
            result.unwrap();
        }
    }
    recorder.journal().wait_visible().unwrap();
    let n = recorder.journal().next_offset();
    recorder.close().unwrap();
    n
}

struct Row {
    name: String,
    events: u64,
    elapsed: Duration,
}

impl Row {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::var_os("LOGBOOK_BENCH_QUICK").is_some();
    let scale = if quick {
        Scale {
            upgrades: 10,
            tasks: 20,
            progress: 20,
            artifacts: 10,
            big_tasks: 1000,
            view_iterations: 21,
        }
    } else {
        Scale {
            upgrades: 100,
            tasks: 100,
            progress: 95,
            artifacts: 50,
            big_tasks: 10_000,
            view_iterations: 201,
        }
    };
    let tmp = tempfile::tempdir()?;
    let data = tmp.path();
    let journal_dir = data.join("journal");

    eprintln!("generating the journal through the recorder (durability none)...");
    let upgrades: Vec<Vec<Event>> = (0..scale.upgrades)
        .map(|u| {
            upgrade_events(
                u,
                &UpgradeShape {
                    tasks: scale.tasks,
                    progress: scale.progress,
                    artifacts: scale.artifacts,
                    failures: false,
                },
            )
        })
        .collect();
    let (events, took) = timed(|| record(&journal_dir, &upgrades));
    drop(upgrades);
    eprintln!("  {events} events recorded in {took:.2?}");
    let journal = Journal::open_read_only(&journal_dir, config())?;
    let mut rows = Vec::new();

    eprintln!("raw journal replay...");
    let (bytes, elapsed) = timed(|| {
        let mut reader = journal.reader(StartAt::Earliest).unwrap();
        let mut bytes = 0usize;
        while let Some(record) = reader.next().unwrap() {
            bytes += record.payload.len();
        }
        bytes
    });
    eprintln!("  {bytes} payload bytes");
    rows.push(Row {
        name: "journal replay (raw records)".into(),
        events,
        elapsed,
    });

    eprintln!("replay + upcast...");
    let (_, elapsed) = timed(|| {
        let mut reader = journal.reader(StartAt::Earliest).unwrap();
        while let Some(record) = reader.next().unwrap() {
            std::hint::black_box(upcast(record.schema_version, &record.payload).unwrap());
        }
    });
    rows.push(Row {
        name: "journal replay + upcast (typed events)".into(),
        events,
        elapsed,
    });
    let parse_elapsed = elapsed;

    eprintln!("replay + upcast + State::apply...");
    let (mut state, elapsed) = timed(|| {
        let mut state = State::new();
        let mut reader = journal.reader(StartAt::Earliest).unwrap();
        while let Some(record) = reader.next().unwrap() {
            let event = upcast(record.schema_version, &record.payload).unwrap();
            state.apply(record.offset, record.ts_us, &event);
        }
        state
    });
    rows.push(Row {
        name: "in-memory fold (replay + upcast + State::apply)".into(),
        events,
        elapsed,
    });

    let mut digest = None;
    let mut default_elapsed = Duration::ZERO;
    for batch in [1_000, 10_000, 100_000] {
        eprintln!("projection rebuild, batch {batch}...");
        Projection::delete(data)?;
        let (projection, elapsed) = timed(|| {
            let mut projection = Projection::open(data).unwrap();
            projection.set_batch_size(batch).unwrap();
            projection.catch_up(&journal).unwrap();
            projection
        });
        let d = projection.digest()?;
        assert!(
            digest.as_ref().is_none_or(|prev| *prev == d),
            "digests differ"
        );
        digest = Some(d);
        if batch == 10_000 {
            default_elapsed = elapsed;
            let id = state.upgrade_ids().next().unwrap().to_string();
            assert_eq!(projection.upgrade(&id)?, state.upgrade_view(&id));
        }
        rows.push(Row {
            name: format!("projection rebuild (SQLite), batch {batch}"),
            events,
            elapsed,
        });
    }
    let apply_only = default_elapsed.saturating_sub(parse_elapsed);
    rows.push(Row {
        name: "projection apply only, batch 10000 (rebuild − replay+upcast)".into(),
        events,
        elapsed: apply_only,
    });
    drop(state);

    eprintln!(
        "one upgrade with {} tasks: State::upgrade_view and Projection::upgrade...",
        scale.big_tasks
    );
    let big_dir = tempfile::tempdir()?;
    let big = upgrade_events(
        0,
        &UpgradeShape {
            tasks: scale.big_tasks,
            progress: 1,
            artifacts: 0,
            failures: false,
        },
    );
    let big_events = record(&big_dir.path().join("journal"), &[big]);
    let big_journal = Journal::open_read_only(big_dir.path().join("journal"), config())?;
    let mut state = logbook::state::state_at(&big_journal, logbook::state::Until::End)?;
    let mut projection = Projection::open(big_dir.path())?;
    projection.catch_up(&big_journal)?;
    let id = "upgrade-0000";
    // An in-progress view: the completed one takes the same path, but make it typical.
    let view_samples: Vec<Duration> = (0..scale.view_iterations)
        .map(|_| timed(|| std::hint::black_box(state.upgrade_view(id))).1)
        .collect();
    let proj_samples: Vec<Duration> = (0..scale.view_iterations.min(51))
        .map(|_| timed(|| std::hint::black_box(projection.upgrade(id).unwrap())).1)
        .collect();
    let view_median = median(view_samples);
    let proj_median = median(proj_samples);
    assert_eq!(projection.upgrade(id)?, state.upgrade_view(id));

    // Report.
    let raw_rate = rows[0].rate();
    println!(
        "\n### Projection bench ({} events: {} upgrades × {} tasks × {} progress rounds, \
         {} artifacts each{})\n",
        events,
        scale.upgrades,
        scale.tasks,
        scale.progress,
        scale.artifacts,
        if quick { "; QUICK" } else { "" }
    );
    println!("| path | events | time | events/s | vs raw replay |");
    println!("|---|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.2} s | {:.0} | {:.2}× |",
            row.name,
            row.events,
            row.elapsed.as_secs_f64(),
            row.rate(),
            row.rate() / raw_rate
        );
    }
    let rebuild_rate = events as f64 / default_elapsed.as_secs_f64();
    println!(
        "\nRebuild (default batch 10,000): {:.0} events/s, target ≥ 200,000: {}",
        rebuild_rate,
        if rebuild_rate >= 200_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "\n| view of one upgrade with {} tasks ({} events) | median |\n|---|---:|",
        scale.big_tasks, big_events
    );
    println!(
        "| `State::upgrade_view` (progress()) | {:.3} ms (target < 1 ms: {}) |",
        view_median.as_secs_f64() * 1e3,
        if view_median < Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "| `Projection::upgrade` (SQLite) | {:.3} ms |",
        proj_median.as_secs_f64() * 1e3
    );
    Ok(())
}
