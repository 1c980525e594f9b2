//! Subscriber benchmarks (issue 4, "Proof (bench)"), in one run:
//!
//! 1. **WebSocket fan-out**: N clients (default 100) tail `GET /v1/stream?from=latest` while
//!    events are appended at a paced rate (default 10,000/s, 100 per `record_all` every 10 ms).
//!    Reports the delay from append-ack (`record_all` returned) to each client's receipt of the
//!    frame with that offset, over every (client, event) pair after a warm-up (target p99 <
//!    20 ms); and the unpaced append throughput with 0 clients, with the clients attached, and
//!    with 0 clients again, as a ratio (target: the clients cost < 10 %).
//!
//!    Then the same paced and unpaced runs against a prototype that serializes each record once
//!    for all connections (benches/fanout/shared.rs), the experiment behind the proposal in
//!    benches/RESULTS.md.
//! 2. **EventBridge**: `EventBridgeConsumer` against a real moto_server: events/s and PutEvents
//!    calls/s until the checkpoint reaches the end, beside direct PutEvents calls to the same
//!    moto.
//!
//! Everything runs on 127.0.0.1 in this process (server, clients, appenders), except
//! moto_server; the cores each part used are reported, since on a 2-core machine the clients
//! compete with the server. The journal uses `JournalConfig::default()` (durability `sync`).
//!
//! `cargo bench --bench fanout` (about 1-2 minutes on 2 cores); `LOGBOOK_BENCH_QUICK=1` for a
//! ~10 s smoke run. Overrides: `LOGBOOK_BENCH_CLIENTS`, `LOGBOOK_BENCH_RATE` (events/s),
//! `LOGBOOK_BENCH_SECONDS` (measured paced seconds), `LOGBOOK_BENCH_PRODUCERS` (appender threads
//! in the unpaced runs), `LOGBOOK_BENCH_SERVER_WORKERS` / `LOGBOOK_BENCH_CLIENT_WORKERS` (tokio
//! workers; the server's default is `logbook::server::worker_threads()`, as `serve` uses, the
//! clients' 2), `LOGBOOK_BENCH_EB_EVENTS`; `LOGBOOK_BENCH_ONLY=ws|eventbridge`.
//! Needs `.venv/bin/moto_server` (`./scripts/test.sh` installs it). Progress goes to stderr; the
//! markdown report to stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fanout/cpu.rs"]
mod cpu;
#[path = "fanout/eventbridge.rs"]
mod eventbridge;
#[path = "../tests/support/moto.rs"]
mod moto;
#[path = "support/procfs.rs"]
mod procfs;
#[path = "fanout/report.rs"]
mod report;
#[path = "fanout/shared.rs"]
mod shared;
#[path = "fanout/ws.rs"]
mod ws;

use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={text:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::var_os("LOGBOOK_BENCH_QUICK").is_some();
    let only = std::env::var("LOGBOOK_BENCH_ONLY").ok();
    let enabled = |s: &str| only.as_deref().is_none_or(|o| o == s);
    let settings = ws::Settings {
        clients: env_or("LOGBOOK_BENCH_CLIENTS", 100)?,
        rate: env_or("LOGBOOK_BENCH_RATE", 10_000)?,
        batch: 100,
        warmup: Duration::from_secs_f64(if quick { 0.5 } else { 1.0 }),
        paced: Duration::from_secs_f64(env_or(
            "LOGBOOK_BENCH_SECONDS",
            if quick { 2.0 } else { 5.0 },
        )?),
        unpaced: Duration::from_secs_f64(if quick { 1.0 } else { 3.0 }),
        producers: env_or("LOGBOOK_BENCH_PRODUCERS", 2)?,
        server_workers: env_or(
            "LOGBOOK_BENCH_SERVER_WORKERS",
            logbook::server::worker_threads(),
        )?,
        client_workers: env_or("LOGBOOK_BENCH_CLIENT_WORKERS", 2)?,
        rounds: if quick { 1 } else { 3 },
    };
    anyhow::ensure!(
        settings.clients > 0
            && settings.rate >= settings.batch
            && settings.producers > 0
            && settings.server_workers > 0
            && settings.client_workers > 0,
        "need at least one client, one producer and a rate of at least one batch per second"
    );
    let eb_events: usize = env_or(
        "LOGBOOK_BENCH_EB_EVENTS",
        if quick { 1_000 } else { 10_000 },
    )?;
    let started = Instant::now();
    report::header(quick);

    let fanout = if enabled("ws") {
        eprintln!("== 1. WebSocket fan-out");
        Some(ws::run(&settings)?)
    } else {
        None
    };
    let bridge = if enabled("eventbridge") {
        eprintln!("== 2. EventBridge consumer against moto_server");
        Some(eventbridge::run(eb_events)?)
    } else {
        None
    };
    if let Some(r) = &fanout {
        report::fanout(&settings, r);
    }
    if let Some(r) = &bridge {
        report::eventbridge(r);
    }
    println!(
        "\nload average at the end: {}; bench wall time {:.1} s",
        cpu::loadavg(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
