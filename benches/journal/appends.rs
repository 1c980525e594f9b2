//! Items 1-3: raw limits and journal appends, measured in alternating rounds so that both sides
//! of every ratio see the same machine conditions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook::journal::{Durability, Journal, JournalConfig};

use crate::events::Progress;
use crate::raw::{self, PRODUCERS, Timed};
use crate::util::{CpuSnapshot, Report, Series, Settings, Target, micros, percentiles, rate};

/// Journal `sync` rates later compared with peers: (label, series).
#[derive(Debug, Clone, Default)]
pub struct Appends {
    pub sync: Vec<(String, Series)>,
}

impl Appends {
    pub fn sync_rate(&self, label: &str) -> f64 {
        self.sync
            .iter()
            .find(|(l, _)| l == label)
            .map_or(0.0, |(_, s)| s.median())
    }
}

fn config(durability: Durability) -> JournalConfig {
    JournalConfig {
        durability,
        ..JournalConfig::default()
    }
}

/// Where the time went in a series of `sync` runs, for the notes.
fn diagnose(what: &str, s: &Series, p: usize) -> String {
    format!(
        "{what}: {} events in {:.1} s over {} run(s); {} write syscalls, i.e. {:.1} events per \
         write + fdatasync (the raw loop puts {p} in each); {}",
        s.events,
        s.wall.as_secs_f64(),
        s.rates.len(),
        s.cpu.writes,
        s.events as f64 / s.cpu.writes.max(1) as f64,
        s.cpu.per_event(s.events, s.wall)
    )
}

fn push(series: &mut Series, run: Timed) {
    series.push(run.0, run.1, run.2, run.3);
}

/// Items 1a and 2: raw serialize+write vs journal `none`, one producer.
pub fn run_none(settings: &Settings, pool: &[Progress], report: &mut Report) -> anyhow::Result<()> {
    let mut raw = Series::default();
    let mut journal = Series::default();
    let mut closing = Duration::ZERO;
    let mut sealed = 0;
    for round in 0..settings.rounds {
        // Alternate which side goes first, so drift in machine conditions cancels out.
        if round % 2 == 0 {
            push(&mut raw, raw::serialize_write(settings.duration, pool)?);
        }
        let (run, close, segs) = journal_none(settings.duration, pool)?;
        push(&mut journal, run);
        closing += close;
        sealed += segs;
        if round % 2 == 1 {
            push(&mut raw, raw::serialize_write(settings.duration, pool)?);
        }
    }
    report.bg = Some(raw.cpu.bg());
    report.plain(
        "1a",
        "raw serialize+write: `serde_json::to_vec` + `BufWriter<File>` (64 KiB), no framing, 1 thread",
        raw.cell(),
    );
    report.bg = Some(journal.cpu.bg());
    report.compare(
        "2",
        "journal `none`, 1 producer: serialize + `append` (acked when sequenced)",
        journal.value(),
        "raw serialize+write (1a)",
        raw.value(),
        Target::AtLeast(0.60),
    );
    let sustained = journal.events as f64 / (journal.wall + closing).as_secs_f64();
    report.plain(
        "2",
        "journal `none`, same runs counting `close` too (flush, fsync, sealing of rolled segments)",
        format!(
            "{} (close took {:.2} s per run; {sealed} segments sealed)",
            rate(sustained),
            closing.as_secs_f64() / settings.rounds as f64
        ),
    );
    report.bg = None;
    report.note(format!(
        "2 `none`, while appending: {} events in {:.1} s; {} write syscalls ({:.0} events per \
         flusher write); {}",
        journal.events,
        journal.wall.as_secs_f64(),
        journal.cpu.writes,
        journal.events as f64 / journal.cpu.writes.max(1) as f64,
        journal.cpu.per_event(journal.events, journal.wall)
    ));
    report.note(format!(
        "1a raw serialize+write: {}",
        raw.cpu.per_event(raw.events, raw.wall)
    ));
    Ok(())
}

/// Items 1b, 1c and 3: raw P-events-per-fdatasync vs journal `sync` with P producers.
pub fn run_sync(
    settings: &Settings,
    pool: &Arc<Vec<Progress>>,
    report: &mut Report,
) -> anyhow::Result<Appends> {
    let mut out = Appends::default();
    for p in PRODUCERS {
        let mut raw = Series::default();
        let mut tasks = Series::default();
        let mut threads = Series::default();
        for round in 0..settings.rounds {
            if round % 2 == 0 {
                push(
                    &mut raw,
                    raw::events_per_fdatasync(settings.duration, pool, p)?,
                );
            }
            push(&mut tasks, sync_tokio(settings.duration, pool, p)?);
            if p == 16 {
                push(&mut threads, sync_threads(settings.duration, pool, p)?);
            }
            if round % 2 == 1 {
                push(
                    &mut raw,
                    raw::events_per_fdatasync(settings.duration, pool, p)?,
                );
            }
        }
        report.bg = Some(raw.cpu.bg());
        report.plain(
            "1b",
            &format!("raw durable loop: serialize {p} event(s), 1 `write`, 1 `sync_data`, repeat"),
            raw.cell(),
        );
        let raw_p50 = percentiles(&mut raw.latencies).0;
        if p == 1 {
            let (p50, p99) = percentiles(&mut raw.latencies);
            report.plain(
                "1c",
                "raw fdatasync latency p50 / p99 (1 small append `write` + `sync_data`)",
                format!("{} / {}", micros(p50), micros(p99)),
            );
        }
        report.bg = Some(tasks.cpu.bg());
        report.compare(
            "3",
            &format!("journal `sync`, {p} producer(s) as tokio tasks (`append_async`), durable"),
            tasks.value(),
            &format!("raw {p} event(s) per fdatasync (1b)"),
            raw.value(),
            Target::AtLeast(0.70),
        );
        report.note(diagnose(&format!("3 `sync`, {p} tokio task(s)"), &tasks, p));
        if p == 1 {
            let (p50, p99) = percentiles(&mut tasks.latencies);
            report.compare(
                "3",
                "journal `sync`, 1 producer: append latency p50",
                (p50.as_secs_f64(), micros(p50)),
                "raw fdatasync p50 (1c)",
                (raw_p50.as_secs_f64(), micros(raw_p50)),
                Target::AtMost(2.0),
            );
            report.plain(
                "3",
                "journal `sync`, 1 producer: append latency p99",
                micros(p99),
            );
        }
        if p == 16 {
            report.bg = Some(threads.cpu.bg());
            report.compare(
                "3",
                "journal `sync`, 16 producers as std threads (blocking `append`), durable",
                threads.value(),
                "raw 16 events per fdatasync (1b)",
                raw.value(),
                Target::AtLeast(0.70),
            );
            let (p50, p99) = percentiles(&mut threads.latencies);
            report.plain(
                "3",
                "journal `sync`, 16 std threads: append latency p50 / p99",
                format!("{} / {}", micros(p50), micros(p99)),
            );
            report.note(diagnose("3 `sync`, 16 std threads", &threads, p));
            out.sync.push(("sync, 16 threads".into(), threads));
        }
        report.bg = None;
        out.sync.push((format!("sync, {p} tokio task(s)"), tasks));
    }
    Ok(out)
}

/// Item 2: one producer serializing and appending under `none` for `duration`. Returns the run
/// (CPU measured up to, not including, `close`), the time `close` took, and sealed segments.
fn journal_none(duration: Duration, pool: &[Progress]) -> anyhow::Result<(Timed, Duration, usize)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("journal");
    let journal = Journal::open(&path, config(Durability::None))?;
    let mask = pool.len() - 1;
    let mut n = 0usize;
    let before = CpuSnapshot::take();
    let start = Instant::now();
    let deadline = start + duration;
    loop {
        for _ in 0..256 {
            let bytes = serde_json::to_vec(&pool[n & mask])?;
            journal.append(&bytes)?;
            n += 1;
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let appending = start.elapsed();
    let cpu = CpuSnapshot::take().since(&before);
    let close_start = Instant::now();
    journal.close()?;
    let closing = close_start.elapsed();
    let sealed = crate::util::files_size(&path, ".seg.zst").1;
    Ok(((n as u64, appending, cpu, Vec::new()), closing, sealed))
}

/// Item 3: `p` tokio tasks on a multi-thread runtime (default worker count), each serializing
/// and `append_async`-ing in a loop for `duration`.
fn sync_tokio(duration: Duration, pool: &Arc<Vec<Progress>>, p: usize) -> anyhow::Result<Timed> {
    let dir = tempfile::tempdir()?;
    let journal = Arc::new(Journal::open(
        dir.path().join("journal"),
        config(Durability::Sync),
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-tokio")
        .enable_all()
        .build()?;
    let before = CpuSnapshot::take();
    let (latencies, elapsed) = runtime.block_on(async {
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::with_capacity(p);
        for t in 0..p {
            let journal = journal.clone();
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let mask = pool.len() - 1;
                let mut i = t;
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let bytes = serde_json::to_vec(&pool[i & mask])?;
                    let sent = Instant::now();
                    journal.append_async(&bytes).await?;
                    latencies.push(sent.elapsed());
                    i += p;
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok((all, start.elapsed()))
    })?;
    let cpu = CpuSnapshot::take().since(&before);
    drop(runtime);
    Arc::into_inner(journal)
        .expect("every task finished")
        .close()?;
    Ok((latencies.len() as u64, elapsed, cpu, latencies))
}

/// Item 3 (P = 16 variant): `p` std threads with blocking `append`.
fn sync_threads(duration: Duration, pool: &[Progress], p: usize) -> anyhow::Result<Timed> {
    let dir = tempfile::tempdir()?;
    let journal = Journal::open(dir.path().join("journal"), config(Durability::Sync))?;
    let before = CpuSnapshot::take();
    let start = Instant::now();
    let deadline = start + duration;
    let mask = pool.len() - 1;
    let latencies = std::thread::scope(|s| {
        let handles: Vec<_> = (0..p)
            .map(|t| {
                let journal = &journal;
                s.spawn(move || {
                    let mut i = t;
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let bytes = serde_json::to_vec(&pool[i & mask])?;
                        let sent = Instant::now();
                        journal.append(&bytes)?;
                        latencies.push(sent.elapsed());
                        i += p;
                    }
                    anyhow::Ok(latencies)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().expect("producer thread panicked")?);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = start.elapsed();
    let cpu = CpuSnapshot::take().since(&before);
    journal.close()?;
    Ok((latencies.len() as u64, elapsed, cpu, latencies))
}
