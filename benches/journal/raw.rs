//! Item 1: raw limits of this machine (no journal), measured in the same run as the journal.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use crate::events::Progress;
use crate::util::{CpuSnapshot, CpuUse};

/// Batch sizes of the raw "P events per fdatasync" loop (and the journal's producer counts).
pub const PRODUCERS: [usize; 3] = [1, 16, 256];

/// One timed run: events, wall time, CPU use, per-operation latencies.
pub type Timed = (u64, Duration, CpuUse, Vec<Duration>);

/// "raw serialize+write": `serde_json::to_vec` of each event + `write_all` to a
/// `BufWriter<File>` (64 KiB buffer), no framing, one thread, for `duration`.
pub fn serialize_write(duration: Duration, pool: &[Progress]) -> anyhow::Result<Timed> {
    let dir = tempfile::tempdir()?;
    let file = File::create(dir.path().join("raw.json"))?;
    let mut out = BufWriter::with_capacity(64 << 10, file);
    let mask = pool.len() - 1;
    let mut n = 0usize;
    let before = CpuSnapshot::take();
    let start = Instant::now();
    let deadline = start + duration;
    loop {
        for _ in 0..256 {
            let bytes = serde_json::to_vec(&pool[n & mask])?;
            out.write_all(&bytes)?;
            n += 1;
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    out.flush()?;
    let wall = start.elapsed();
    let cpu = CpuSnapshot::take().since(&before);
    Ok((n as u64, wall, cpu, Vec::new()))
}

/// The raw durable loop: serialize `p` events into one buffer, one `write`, one `sync_data`,
/// repeat for `duration`, appending to one growing file. Latencies are of `write` + `sync_data`.
pub fn events_per_fdatasync(
    duration: Duration,
    pool: &[Progress],
    p: usize,
) -> anyhow::Result<Timed> {
    let dir = tempfile::tempdir()?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("raw-sync.json"))?;
    let mask = pool.len() - 1;
    let mut buf = Vec::with_capacity(p * 400);
    let mut latencies = Vec::new();
    let mut n = 0usize;
    let before = CpuSnapshot::take();
    let start = Instant::now();
    let deadline = start + duration;
    while Instant::now() < deadline {
        buf.clear();
        for _ in 0..p {
            serde_json::to_writer(&mut buf, &pool[n & mask])?;
            n += 1;
        }
        let t = Instant::now();
        file.write_all(&buf)?;
        file.sync_data()?;
        latencies.push(t.elapsed());
    }
    let wall = start.elapsed();
    let cpu = CpuSnapshot::take().since(&before);
    Ok((n as u64, wall, cpu, latencies))
}
