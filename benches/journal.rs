//! Journal benchmarks against raw limits and peers, measured side by side in one run.
//!
//! `cargo bench --bench journal` (about 2-3 minutes on 2 cores); `LOGBOOK_BENCH_QUICK=1` for a smoke run;
//! `LOGBOOK_BENCH_OPEN_EVENTS=N` sets the size of the open-time / RSS journal (default 10M);
//! `LOGBOOK_BENCH_ONLY=none,sync,peers,replay,open` runs only those sections.
//! Progress goes to stderr; the header and the final markdown table go to stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "journal/appends.rs"]
mod appends;
#[path = "journal/events.rs"]
mod events;
#[path = "journal/peers.rs"]
mod peers;
#[path = "support/procfs.rs"]
mod procfs;
#[path = "journal/raw.rs"]
mod raw;
#[path = "journal/replay.rs"]
mod replay;
#[path = "journal/scale.rs"]
mod scale;
#[path = "journal/util.rs"]
mod util;

use std::time::Instant;

use util::{Report, Settings};

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench` (and possibly filters); none of them change what runs.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = Settings::from_env();
    let started = Instant::now();
    util::print_header(&args, &settings);

    let mut report = Report::default();
    let pool = util::event_pool(&settings);

    if settings.enabled("none") {
        eprintln!("== 1a/2. raw serialize+write vs journal `none`");
        appends::run_none(&settings, &pool, &mut report)?;
    }
    let mut appends = appends::Appends::default();
    if settings.enabled("sync") {
        eprintln!("== 1b/1c/3. raw durable loops vs journal `sync`");
        appends = appends::run_sync(&settings, &pool, &mut report)?;
    }
    eprintln!("== 4. peers");
    if settings.enabled("peers") {
        peers::run(&settings, &pool, &appends, &mut report)?;
    }
    eprintln!("== 5/6. sealed replay and size");
    if settings.enabled("replay") {
        replay::run(&settings, &mut report)?;
    }
    eprintln!("== 7/8. open time and RSS");
    if settings.enabled("open") {
        scale::run(&settings, &mut report)?;
    }

    let total = started.elapsed();
    println!();
    println!("load average at the end: {}", util::loadavg());
    println!();
    report.print(total);
    eprintln!("done in {:.1} s", total.as_secs_f64());
    Ok(())
}
