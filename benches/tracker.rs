//! The Rust call under the Python binding (issue [2/4]): `ProgressTracker::update_task_progress`
//! with durability `none`, one thread, calls per second (median of 3 rounds of 2 s). Compare its
//! µs per call with the Python bench's native `Engine.progress` row (benches/python_tracker.py)
//! to get the binding's own per-call cost.
//!
//! `cargo bench --bench tracker`; `LOGBOOK_BENCH_QUICK=1` for a smoke run.

use std::time::{Duration, Instant};

use logbook::Logbook;
use logbook::event::TaskType;
use logbook::journal::Durability;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::var("LOGBOOK_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (rounds, seconds) = if quick { (1, 0.5) } else { (3, 2.0) };
    let tmp = tempfile::tempdir()?;
    let logbook = Logbook::builder(tmp.path())
        .durability(Durability::None)
        .open()?;
    let tracker = logbook.tracker("u-bench");
    tracker.start_upgrade("p", "c", "bench", None)?;
    tracker.add_task("t0", "Task", TaskType::UpgradeStep, None)?;
    tracker.start_task("t0")?;
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let began = Instant::now();
        let stop = began + Duration::from_secs_f64(seconds);
        let mut calls = 0u64;
        while Instant::now() < stop {
            for _ in 0..64 {
                tracker.update_task_progress("t0", (calls % 100) as f64, Some("step"))?;
                calls += 1;
            }
        }
        rates.push(calls as f64 / began.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "| Rust `ProgressTracker::update_task_progress`, `none`, 1 thread | {median:.0} calls/s [{:.0}–{:.0}] | {:.2} µs per call |",
        rates[0],
        rates[rates.len() - 1],
        1e6 / median
    );
    logbook.close()?;
    Ok(())
}
