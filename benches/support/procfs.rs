//! What the benchmarks read from /proc (CPU ticks of the process, its threads and other
//! processes; the load average) and how they print counts. Included with `#[path]` by
//! benches/journal.rs and benches/fanout.rs.

#![allow(dead_code)]

/// Clock ticks per second of /proc's utime/stime (USER_HZ, 100 on Linux).
pub const TICKS: f64 = 100.0;

/// (comm, utime + stime) of a /proc stat line.
pub fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the comm: utime is field 14 and stime field 15 of the line (11 and 12 here).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// utime + stime of this process.
pub fn self_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_ticks(&s))
        .map_or(0, |(_, t)| t)
}

/// (tid, comm, utime + stime) of every thread of this process.
pub fn thread_ticks() -> Vec<(u64, String, u64)> {
    let mut threads = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let tid = entry.file_name().to_string_lossy().parse().unwrap_or(0);
        if let Some((comm, ticks)) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| stat_ticks(&s))
        {
            threads.push((tid, comm, ticks));
        }
    }
    threads
}

/// Busy ticks of the whole machine (all CPUs) from the first line of /proc/stat: user, nice,
/// system, irq, softirq and steal (all but idle and iowait).
pub fn machine_busy_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.strip_prefix("cpu ")?.to_owned();
            let v: Vec<u64> = line
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            Some(
                [0, 1, 2, 5, 6, 7]
                    .iter()
                    .map(|&i| v.get(i).copied().unwrap_or(0))
                    .sum(),
            )
        })
        .unwrap_or(0)
}

/// The system load average (1, 5, 15 min) as /proc/loadavg prints it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
