//! [`ShipStatus`]: what shipping to S3 is doing, shared by the shipper's tasks (which write it)
//! and `/v1/health` (which reads it), so a copy that is behind, being repaired or abandoned is
//! visible without reading the log.
//!
//! States: `starting` (no round finished yet), `ok` (the last round succeeded), `retrying` (the
//! last round failed; `error` says why, the next is on its way with backoff), `stopped` (a
//! refusal waiting cannot fix: fenced, lease lost, diverged, a local segment damaged; `error`
//! says which and nothing more is written). `warning` keeps the last notable event (a prefix
//! found wiped and shipped again, artifacts without files).
//!
//! Invariant: the lock is held only to copy or update a few fields, never across an await, so
//! a reader can never block shipping (nor shipping a reader).

use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::objects::{Objects, RequestCounts};

/// What a shipper is doing (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipState {
    /// No round finished yet.
    Starting,
    /// The last round succeeded.
    Ok,
    /// The last round failed; the next one comes after a backoff.
    Retrying,
    /// Refused for good; nothing more is written.
    Stopped,
}

/// Counters of the artifact queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArtifactCounts {
    /// Uploaded since start.
    pub uploaded: u64,
    /// Waiting for a retry after a failed upload.
    pub failed: u64,
    /// Recorded without their file in the store (not uploaded until it appears).
    pub missing: u64,
}

/// A copy of the status (what `/v1/health` shows under `shipping`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShipHealth {
    /// `s3://bucket/prefix`.
    pub location: String,
    /// This data dir's writer id.
    pub writer_id: String,
    /// See [`ShipState`].
    pub state: ShipState,
    /// Every record below this offset is in S3 (as of the last check).
    pub shipped_next_offset: u64,
    /// Rounds finished (successful or not).
    pub rounds: u64,
    /// Why the last round failed, or why shipping stopped.
    pub error: Option<String>,
    /// The last notable event.
    pub warning: Option<String>,
    /// The artifact queue.
    pub artifacts: ArtifactCounts,
    /// S3 requests sent so far.
    pub requests: RequestCounts,
}

/// See the module docs.
#[derive(Debug)]
pub struct ShipStatus {
    objects: Objects,
    health: Mutex<ShipHealth>,
}

impl ShipStatus {
    /// The status of a shipper of `objects` for `writer_id`, shipped up to `shipped`.
    pub fn new(objects: Objects, writer_id: &str, shipped: u64) -> ShipStatus {
        ShipStatus {
            health: Mutex::new(ShipHealth {
                location: objects.location().to_string(),
                writer_id: writer_id.to_string(),
                state: ShipState::Starting,
                shipped_next_offset: shipped,
                rounds: 0,
                error: None,
                warning: None,
                artifacts: ArtifactCounts::default(),
                requests: objects.requests(),
            }),
            objects,
        }
    }

    fn update(&self, f: impl FnOnce(&mut ShipHealth)) {
        f(&mut self.health.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// A copy of the status now.
    pub fn snapshot(&self) -> ShipHealth {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        health.requests = self.objects.requests();
        health
    }

    /// The shipped end moved (or was found elsewhere by a check).
    pub fn shipped(&self, next_offset: u64) {
        self.update(|h| h.shipped_next_offset = next_offset);
    }

    /// A round succeeded.
    pub fn round_ok(&self) {
        self.update(|h| {
            h.state = ShipState::Ok;
            h.error = None;
            h.rounds += 1;
        });
    }

    /// A round failed; another comes after a backoff.
    pub fn round_failed(&self, error: &str) {
        self.update(|h| {
            h.state = ShipState::Retrying;
            h.error = Some(error.to_string());
            h.rounds += 1;
        });
    }

    /// Shipping stopped for good.
    pub fn stopped(&self, error: &str) {
        self.update(|h| {
            h.state = ShipState::Stopped;
            h.error = Some(error.to_string());
        });
    }

    /// Something an operator should know happened.
    pub fn warn(&self, warning: &str) {
        self.update(|h| h.warning = Some(warning.to_string()));
    }

    /// The artifact queue's counters after a pass.
    pub fn artifacts(&self, counts: ArtifactCounts) {
        self.update(|h| h.artifacts = counts);
    }
}
