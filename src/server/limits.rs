//! The server's resource limits ([`Limits`]): how long a connection may take to send a
//! request's head or stay idle, how many connections, ingests and journal readers it serves at
//! once. Each has a `serve` flag; the defaults are the constants here.
//!
//! What happens at each limit (every queue is bounded; see also [`super::conn`],
//! [`super::ingest`], [`super::stream`]):
//!
//! | limit | when it is reached |
//! |---|---|
//! | [`Limits::header_timeout`] | a connection that has not sent a complete request head this long after it opened (or after the first byte of a later request) is closed; an ingest body that sends nothing for this long is answered 408 |
//! | [`Limits::idle_timeout`] | a keep-alive connection with no request for this long after its last response is closed |
//! | [`Limits::connections_max`] | a further connection is answered `503 {"error": ..}` with `Retry-After` and closed (at most [`REFUSING_MAX`] such answers at once; beyond, it is closed unanswered). WebSocket streams count |
//! | [`Limits::ingests_max`] | a further `POST /v1/events` waits (before its body is read) up to [`Limits::ingest_wait`] for a turn, then gets `503` with `Retry-After` (nothing written) |
//! | [`Limits::stream_readers_max`] | a further `/v1/stream` connection that must read the journal (catching up, or fallen behind the live edge) waits for a turn, in order; one that cannot write to its client while others wait gives its turn up |
//!
//! The connection limit is clamped below the process's open-file limit ([`Limits::resolve`]),
//! so that the cap, not `accept` failing with "too many open files", is what refuses clients.

use std::time::Duration;

/// Default of [`Limits::header_timeout`].
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`Limits::idle_timeout`].
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`Limits::connections_max`].
pub const CONNECTIONS_MAX: usize = 1024;
/// Default of [`Limits::ingests_max`]: ingest is parsing (CPU) and one group commit, so more at
/// once only queue for the cores while each holds its body (up to 16 MiB) in memory.
pub const INGESTS_MAX: usize = 2;
/// Default of [`Limits::ingest_wait`].
pub const INGEST_WAIT: Duration = Duration::from_secs(30);
/// Default of [`Limits::stream_readers_max`]: each holds a decompressed journal block (about
/// the journal's block size, 1 MiB by default, decoded).
pub const STREAM_READERS_MAX: usize = 16;
/// Connections refused with a 503 at once, at most (each for at most [`REFUSE_WAIT`]).
pub const REFUSING_MAX: usize = 64;
/// How long a refused connection is given to read its 503 before it is closed.
pub const REFUSE_WAIT: Duration = Duration::from_secs(2);
/// File descriptors left to the rest of the process (journal segments, SQLite, stdio, epoll,
/// S3 and EventBridge clients) when the connection limit is clamped to the open-file limit.
pub const FDS_RESERVED: usize = 128;

/// The server's resource limits; see the module docs for what happens at each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest time to send a complete request head (and longest silence in an ingest body).
    pub header_timeout: Duration,
    /// Longest time a keep-alive connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// Open connections at most, WebSocket streams included.
    pub connections_max: usize,
    /// `POST /v1/events` requests read and processed at once, at most.
    pub ingests_max: usize,
    /// How long a `POST /v1/events` waits for a turn before it gets 503.
    pub ingest_wait: Duration,
    /// `/v1/stream` connections holding a journal reader at once, at most.
    pub stream_readers_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            connections_max: CONNECTIONS_MAX,
            ingests_max: INGESTS_MAX,
            ingest_wait: INGEST_WAIT,
            stream_readers_max: STREAM_READERS_MAX,
        }
    }
}

impl Limits {
    /// These limits, made usable: counts at least 1, and the connection limit clamped to what
    /// the open-file limit allows ([`open_files_limit`] less [`FDS_RESERVED`], logged).
    pub fn resolve(self) -> Limits {
        let mut limits = Limits {
            connections_max: self.connections_max.max(1),
            ingests_max: self.ingests_max.max(1),
            stream_readers_max: self.stream_readers_max.max(1),
            ..self
        };
        if let Some(files) = open_files_limit() {
            let allowed = clamp_to_files(limits.connections_max, files);
            if allowed < limits.connections_max {
                tracing::warn!(
                    requested = limits.connections_max,
                    allowed,
                    open_files_limit = files,
                    "the connection limit exceeds what the open-file limit (ulimit -n) allows; \
                     raise that limit to serve more connections"
                );
                limits.connections_max = allowed;
            }
        }
        limits
    }
}

/// The connection limit `wanted` as far as an open-file limit of `files` allows it.
fn clamp_to_files(wanted: usize, files: u64) -> usize {
    let room = usize::try_from(files)
        .unwrap_or(usize::MAX)
        .saturating_sub(FDS_RESERVED)
        .max(1);
    wanted.min(room)
}

/// The process's soft open-file limit (`Max open files` in `/proc/self/limits`), if known.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    // "unlimited" means no clamp.
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_open_files_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files(unlimited), None);
        assert_eq!(parse_open_files("nothing here"), None);
    }

    #[test]
    fn the_connection_limit_leaves_room_for_other_files() {
        assert_eq!(clamp_to_files(1024, 1024), 1024 - FDS_RESERVED);
        assert_eq!(clamp_to_files(1024, 20_000), 1024);
        assert_eq!(clamp_to_files(1024, 10), 1);
        let resolved = Limits {
            connections_max: 0,
            ingests_max: 0,
            stream_readers_max: 0,
            ..Limits::default()
        }
        .resolve();
        assert_eq!(
            (
                resolved.connections_max,
                resolved.ingests_max,
                resolved.stream_readers_max
            ),
            (1, 1, 1)
        );
    }
}
