//! CPU seconds by thread group, from /proc (Linux): on a 2-core machine where the server, the
//! 100 WebSocket clients, the appender and moto all share the cores, "where did the time go" is
//! part of every result. Threads are grouped by the names this bench gives them.

use crate::procfs::{TICKS, machine_busy_ticks, self_ticks, stat_ticks, thread_ticks};
use std::time::Instant;

/// Thread groups, by `comm` (at most 15 bytes on Linux).
const GROUPS: [(&str, &str); 5] = [
    ("lb-server", "server"),
    ("lb-client", "clients"),
    ("bench-appender", "appenders"),
    ("logbook-flusher", "flusher"),
    ("logbook-sealer", "sealer"),
];

/// utime + stime of another process (moto_server), if it is still there.
pub fn process_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_ticks(&s))
        .map_or(0, |(_, t)| t)
}

/// CPU seconds of another process over an interval.
pub fn seconds(ticks: u64) -> f64 {
    ticks as f64 / TICKS
}

/// The children of this process (moto_server is started by tests/support/moto.rs, which keeps
/// its `Child` private); their pids.
pub fn child_pids() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The ppid is the second field after the comm.
        let ppid = stat
            .rfind(')')
            .and_then(|c| stat.get(c + 1..))
            .and_then(|rest| rest.split_whitespace().nth(1));
        if ppid == Some(me.as_str()) {
            out.push(pid);
        }
    }
    out
}

/// A point in time: every thread's ticks, the process's and the machine's.
pub struct Snapshot {
    threads: Vec<(u64, String, u64)>,
    process: u64,
    machine: u64,
    at: Instant,
}

impl Snapshot {
    pub fn take() -> Snapshot {
        let process = self_ticks();
        let threads = thread_ticks();
        Snapshot {
            threads,
            process,
            machine: machine_busy_ticks(),
            at: Instant::now(),
        }
    }

    /// Average cores busy since `before`, per group.
    pub fn since(&self, before: &Snapshot) -> Use {
        let mut groups = [0u64; GROUPS.len()];
        for (tid, comm, ticks) in &self.threads {
            let old = before
                .threads
                .iter()
                .find(|(t, _, _)| t == tid)
                .map_or(0, |(_, _, t)| *t);
            if let Some(i) = GROUPS.iter().position(|(name, _)| name == comm) {
                groups[i] += ticks.saturating_sub(old);
            }
        }
        let wall = self.at.saturating_duration_since(before.at).as_secs_f64();
        let cores = |ticks: u64| ticks as f64 / TICKS / wall.max(1e-9);
        let process = self.process.saturating_sub(before.process);
        let other = process.saturating_sub(groups.iter().sum());
        let machine = self.machine.saturating_sub(before.machine);
        Use {
            groups: groups.map(cores),
            other: cores(other),
            process: cores(process),
            foreign: cores(machine.saturating_sub(process)),
            wall,
        }
    }
}

/// Average cores busy over an interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct Use {
    groups: [f64; GROUPS.len()],
    /// This process's threads outside the groups (main thread, exited threads, moto's reader).
    other: f64,
    pub process: f64,
    /// Other processes (moto_server included, when it runs).
    pub foreign: f64,
    /// Length of the interval, seconds.
    pub wall: f64,
}

impl Use {
    /// CPU seconds of one group (`"server"`, `"clients"`...) over the interval.
    pub fn seconds(&self, label: &str) -> f64 {
        GROUPS
            .iter()
            .zip(self.groups)
            .find(|((_, l), _)| *l == label)
            .map_or(0.0, |(_, cores)| cores * self.wall)
    }

    /// `server 0.85, clients 0.70, ...; this process 1.80 cores, other processes 0.05`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = GROUPS
            .iter()
            .zip(self.groups)
            .filter(|(_, cores)| *cores >= 0.005)
            .map(|((_, label), cores)| format!("{label} {cores:.2}"))
            .collect();
        if self.other >= 0.005 {
            parts.push(format!("other threads {:.2}", self.other));
        }
        format!(
            "cores busy: {} (this process {:.2}; other processes {:.2})",
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            },
            self.process,
            self.foreign
        )
    }
}

pub use crate::procfs::loadavg;
