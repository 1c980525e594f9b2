//! Settings, the results table, formatting and small measurement helpers.

use crate::procfs::{TICKS, machine_busy_ticks, self_ticks, thread_ticks};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::{EventGen, Progress};

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    /// Length of one round of a paired (limit vs journal) measurement.
    pub duration: Duration,
    /// Rounds of each paired measurement (limit and journal alternate; the median is reported).
    pub rounds: usize,
    /// Length of each single-run peer measurement (SQLite, naive rewrite).
    pub peer_duration: Duration,
    /// Events in the sealed-replay journal (item 5/6).
    pub replay_events: u64,
    /// Events in the open-time journal (item 7/8).
    pub open_events: u64,
    /// Distinct pre-generated events cycled by the throughput loops.
    pub pool_events: usize,
    /// Sections to run (`LOGBOOK_BENCH_ONLY=none,sync,peers,replay,open`); all if unset.
    pub only: Option<Vec<String>>,
}

impl Settings {
    pub fn from_env() -> Self {
        let quick = std::env::var("LOGBOOK_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let open_default = if quick { 100_000 } else { 10_000_000 };
        let open_events = std::env::var("LOGBOOK_BENCH_OPEN_EVENTS")
            .ok()
            .and_then(|v| v.replace('_', "").parse().ok())
            .unwrap_or(open_default);
        Settings {
            quick,
            duration: if quick {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(2)
            },
            rounds: if quick { 1 } else { 3 },
            peer_duration: if quick {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(4)
            },
            replay_events: if quick { 20_000 } else { 1_000_000 },
            open_events,
            pool_events: 1 << 14,
            only: std::env::var("LOGBOOK_BENCH_ONLY").ok().map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
        }
    }

    /// Whether the section `name` runs.
    pub fn enabled(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == name))
    }
}

/// The pre-generated events the throughput loops cycle through (generation is not timed).
pub fn event_pool(settings: &Settings) -> Arc<Vec<Progress>> {
    let pool = EventGen::new(0x5eed_0001).pool(settings.pool_events);
    let bytes: usize = pool
        .iter()
        .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len()))
        .sum();
    println!(
        "event pool: {} distinct events, mean serialized size {:.1} bytes",
        pool.len(),
        bytes as f64 / pool.len() as f64
    );
    Arc::new(pool)
}

pub fn print_header(args: &[String], settings: &Settings) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem_gib = meminfo_kib("MemTotal:").map_or(0.0, |k| k as f64 / (1 << 20) as f64);
    let tmp = std::env::temp_dir();
    println!("# logbook journal benchmark");
    println!();
    println!(
        "command: `cargo bench --bench journal`{} (binary args: {:?})",
        if settings.quick {
            " with LOGBOOK_BENCH_QUICK=1"
        } else {
            ""
        },
        args
    );
    println!(
        "date: {}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    println!("machine: nproc {nproc}, CPU {cpu}, {mem_gib:.1} GiB RAM, Linux {kernel}");
    println!(
        "temp dir: {} on {}",
        tmp.display(),
        filesystem_of(&tmp).unwrap_or_else(|| "unknown filesystem".into())
    );
    println!(
        "settings: paired measurements {} round(s) of {} s each (limit and journal alternate, \
         median reported, range in brackets); peers {} s; replay N = {}; open-time N = {}",
        settings.rounds,
        settings.duration.as_secs_f64(),
        settings.peer_duration.as_secs_f64(),
        settings.replay_events,
        settings.open_events
    );
    println!(
        "column `bg`: CPU cores used by other processes on the machine during that measurement \
         (from /proc/stat minus this process); non-zero values mean the result was disturbed"
    );
    println!(
        "load average at the start: {} (other processes on this machine skew results)",
        loadavg()
    );
    if let Some(only) = &settings.only {
        println!("sections: only {only:?} (LOGBOOK_BENCH_ONLY)");
    }
}

/// The mount (device and type) holding `path`, from /proc/mounts.
fn filesystem_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, mnt, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mnt)
                .then(|| (mnt.len(), format!("{dev} ({fs}, mounted at {mnt})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
}

fn meminfo_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_kib(&text, key)
}

fn parse_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's resident set size in bytes (VmRSS).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_kib(&s, "VmRSS:"))
        .map_or(0, |k| k * 1024)
}

/// Total size of the files in `dir` whose names end with `suffix`, and their count.
pub fn files_size(dir: &Path, suffix: &str) -> (u64, usize) {
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with(suffix) {
            total.0 += entry.metadata().map_or(0, |m| m.len());
            total.1 += 1;
        }
    }
    total
}

/// Median and 99th percentile.
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    samples.sort_unstable();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    (p50, p99)
}

pub use crate::procfs::thousands;

pub fn rate(x: f64) -> String {
    format!("{} ev/s", thousands(x))
}

pub fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// How a measured ratio is judged.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Informational.
    None,
    /// `value / peer >= x`.
    AtLeast(f64),
    /// `value / peer <= x`.
    AtMost(f64),
}

/// One table row.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub what: String,
    pub value: String,
    pub peer: String,
    pub peer_value: String,
    pub ratio: String,
    pub target: String,
    pub status: String,
    pub bg: String,
}

/// All rows plus notes printed under the table.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    /// Background load of the measurement the next rows come from (`None`: derived rows).
    pub bg: Option<f64>,
}

impl Report {
    /// A row without a peer.
    pub fn plain(&mut self, id: &str, what: &str, value: String) {
        eprintln!("  {id} {what}: {value}");
        self.rows.push(Row {
            id: id.into(),
            what: what.into(),
            value,
            peer: "—".into(),
            peer_value: "—".into(),
            ratio: "—".into(),
            target: "—".into(),
            status: "info".into(),
            bg: self.bg_cell(),
        });
    }

    /// A row comparing `value` with `peer_value` (ratio = value / peer), judged by `target`.
    #[allow(clippy::too_many_arguments, reason = "a table row")]
    pub fn compare(
        &mut self,
        id: &str,
        what: &str,
        value: (f64, String),
        peer: &str,
        peer_value: (f64, String),
        target: Target,
    ) {
        let ratio = if peer_value.0 > 0.0 {
            value.0 / peer_value.0
        } else {
            f64::NAN
        };
        let (target_text, status) = match target {
            Target::None => ("—".to_owned(), "info"),
            Target::AtLeast(x) => (format!("≥ {}", fmt_ratio(x)), pass(ratio >= x)),
            Target::AtMost(x) => (format!("≤ {}", fmt_ratio(x)), pass(ratio <= x)),
        };
        eprintln!(
            "  {id} {what}: {} vs {peer} {} → {} {status}",
            value.1,
            peer_value.1,
            fmt_ratio(ratio)
        );
        self.rows.push(Row {
            id: id.into(),
            what: what.into(),
            value: value.1,
            peer: peer.into(),
            peer_value: peer_value.1,
            ratio: fmt_ratio(ratio),
            target: target_text,
            status: status.into(),
            bg: self.bg_cell(),
        });
    }

    /// A row with a fixed bound rather than a peer (e.g. open time < 100 ms).
    pub fn bound(&mut self, id: &str, what: &str, value: String, target: String, ok: bool) {
        eprintln!("  {id} {what}: {value} ({target}) {}", pass(ok));
        self.rows.push(Row {
            id: id.into(),
            what: what.into(),
            value,
            peer: "—".into(),
            peer_value: "—".into(),
            ratio: "—".into(),
            target,
            status: pass(ok).into(),
            bg: self.bg_cell(),
        });
    }

    /// A row with every cell given.
    #[allow(clippy::too_many_arguments, reason = "a table row")]
    pub fn custom(
        &mut self,
        id: &str,
        what: &str,
        value: String,
        peer: &str,
        peer_value: String,
        ratio: String,
        target: String,
        ok: Option<bool>,
    ) {
        let status = ok.map_or("info", pass);
        eprintln!("  {id} {what}: {value} vs {peer} {peer_value} → {ratio} {status}");
        self.rows.push(Row {
            id: id.into(),
            what: what.into(),
            value,
            peer: peer.into(),
            peer_value,
            ratio,
            target,
            status: status.into(),
            bg: self.bg_cell(),
        });
    }

    fn bg_cell(&self) -> String {
        self.bg.map_or_else(|| "—".into(), |b| format!("{b:.2}"))
    }

    pub fn note(&mut self, note: String) {
        eprintln!("  note: {note}");
        self.notes.push(note);
    }

    pub fn print(&self, total: Duration) {
        println!(
            "| # | measurement | result | peer / limit | peer result | ratio | target | status | bg |"
        );
        println!("|---|---|---:|---|---:|---:|---|---|---:|");
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        for r in rows {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.id, r.what, r.value, r.peer, r.peer_value, r.ratio, r.target, r.status, r.bg
            );
        }
        let judged = self.rows.iter().filter(|r| r.status != "info").count();
        let passed = self.rows.iter().filter(|r| r.status == "PASS").count();
        println!();
        println!(
            "targets: {passed}/{judged} PASS; total run time {:.1} s",
            total.as_secs_f64()
        );
        if !self.notes.is_empty() {
            println!();
            println!("Notes:");
            for n in &self.notes {
                println!("- {n}");
            }
        }
    }
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

pub fn fmt_ratio(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x >= 10.0 {
        format!("{x:.1}x")
    } else {
        format!("{x:.2}x")
    }
}

/// CPU time of this process and of each of its live threads, from /proc (clock ticks).
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    process: u64,
    threads: Vec<(u64, String, u64)>,
    /// Write syscalls so far (`syscw` of /proc/self/io).
    syscw: u64,
    /// Busy ticks of the whole machine (all CPUs), from /proc/stat.
    system: u64,
    at: Instant,
}

impl CpuSnapshot {
    pub fn take() -> Self {
        let process = self_ticks();
        let threads = thread_ticks();
        let syscw = std::fs::read_to_string("/proc/self/io")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("syscw:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        let system = machine_busy_ticks();
        CpuSnapshot {
            process,
            threads,
            syscw,
            system,
            at: Instant::now(),
        }
    }

    /// CPU seconds since `before`: (flusher, sealer, tokio workers, everything else), and
    /// the number of write syscalls.
    pub fn since(&self, before: &CpuSnapshot) -> CpuUse {
        let mut by = [0u64; 3];
        for (tid, comm, ticks) in &self.threads {
            let old = before
                .threads
                .iter()
                .find(|(t, _, _)| t == tid)
                .map_or(0, |(_, _, t)| *t);
            let slot = if comm == "logbook-flusher" {
                0
            } else if comm == "logbook-sealer" {
                1
            } else if comm == "bench-tokio" {
                2
            } else {
                continue;
            };
            by[slot] += ticks.saturating_sub(old);
        }
        let total = self.process.saturating_sub(before.process);
        let other = total.saturating_sub(by.iter().sum());
        let s = |t: u64| t as f64 / TICKS;
        let foreign = self
            .system
            .saturating_sub(before.system)
            .saturating_sub(total);
        CpuUse {
            flusher: s(by[0]),
            sealer: s(by[1]),
            tokio: s(by[2]),
            other: s(other),
            writes: self.syscw.saturating_sub(before.syscw),
            foreign: s(foreign),
            wall: self.at.saturating_duration_since(before.at),
        }
    }
}

/// CPU seconds by thread group over an interval, and write syscalls.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub flusher: f64,
    pub sealer: f64,
    pub tokio: f64,
    /// Main thread and producer threads (also threads that exited meanwhile).
    pub other: f64,
    pub writes: u64,
    /// CPU seconds used by other processes on the machine.
    pub foreign: f64,
    /// Length of the interval.
    pub wall: Duration,
}

impl CpuUse {
    /// Accumulates another interval.
    pub fn add(&mut self, o: &CpuUse) {
        self.flusher += o.flusher;
        self.sealer += o.sealer;
        self.tokio += o.tokio;
        self.other += o.other;
        self.writes += o.writes;
        self.foreign += o.foreign;
        self.wall += o.wall;
    }

    /// Cores used by other processes on average.
    pub fn bg(&self) -> f64 {
        self.foreign / self.wall.as_secs_f64().max(1e-9)
    }

    /// `producers 1.2 µs, flusher …` per event, and the cores kept busy over `wall`.
    pub fn per_event(&self, events: u64, wall: Duration) -> String {
        let us = |s: f64| s * 1e6 / events.max(1) as f64;
        let total = self.flusher + self.sealer + self.tokio + self.other;
        let mut parts = Vec::new();
        if self.tokio > 0.0 {
            parts.push(format!("tokio workers {:.2}", us(self.tokio)));
        }
        parts.push(format!("producer/main threads {:.2}", us(self.other)));
        parts.push(format!("flusher {:.2}", us(self.flusher)));
        parts.push(format!("sealer {:.2}", us(self.sealer)));
        format!(
            "CPU µs/event: {} (total {:.2} µs/event, {:.2} cores busy)",
            parts.join(", "),
            us(total),
            total / wall.as_secs_f64()
        )
    }
}

pub use crate::procfs::loadavg;

/// Repeated runs of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// events/s of each run.
    pub rates: Vec<f64>,
    pub events: u64,
    pub wall: Duration,
    pub cpu: CpuUse,
    pub latencies: Vec<Duration>,
}

impl Series {
    pub fn push(&mut self, events: u64, wall: Duration, cpu: CpuUse, latencies: Vec<Duration>) {
        self.rates.push(events as f64 / wall.as_secs_f64());
        self.events += events;
        self.wall += wall;
        self.cpu.add(&cpu);
        self.latencies.extend(latencies);
    }

    /// Median events/s over the runs.
    pub fn median(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    }

    /// `median ev/s [min–max]`.
    pub fn cell(&self) -> String {
        let min = self.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.rates.iter().copied().fold(0.0, f64::max);
        if self.rates.len() > 1 {
            format!("{} [{}–{}]", rate(self.median()), short(min), short(max))
        } else {
            rate(self.median())
        }
    }

    /// (median, cell) for `Report::compare`.
    pub fn value(&self) -> (f64, String) {
        (self.median(), self.cell())
    }
}

/// `1234567` → `1.23M`, `81234` → `81.2k`.
pub fn short(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
