//! The journal the S3 bench ships and restores: realistic typed events, the same shape as
//! benches/projection.rs (upgrades with nested tasks, interleaved progress, completions, then
//! a session of tagged artifacts), recorded through the `Recorder` one upgrade at a time so the
//! events never all sit in memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use logbook::journal::{Durability, JournalConfig};
use logbook::recorder::Recorder;

use crate::workload::{UpgradeShape, upgrade_events};

/// How much to record.
pub struct Shape {
    pub upgrades: usize,
    pub tasks: usize,
    pub progress: usize,
    pub artifacts: usize,
}

/// The default segment size (32 MiB raw) and block size; no fsync per batch (durability does
/// not change what is sealed), and no roll by age, so every segment but the last is full-size.
pub fn config() -> JournalConfig {
    JournalConfig {
        durability: Durability::None,
        segment_age: Duration::from_secs(3600),
        ..JournalConfig::default()
    }
}

/// Records `shape` into `<data>/journal` and seals the tail; the open recorder (the shipper
/// needs it) and the number of events.
pub fn record(data: &Path, shape: &Shape) -> (Arc<Recorder>, u64) {
    let recorder = Arc::new(Recorder::open(data, config()).unwrap());
    for u in 0..shape.upgrades {
        let events = upgrade_events(
            u,
            &UpgradeShape {
                tasks: shape.tasks,
                progress: shape.progress,
                artifacts: shape.artifacts,
                failures: false,
            },
        );
        for result in recorder.record_all(&events).unwrap() {
            result.unwrap();
        }
    }
    recorder.journal().wait_visible().unwrap();
    assert!(
        recorder
            .journal()
            .seal_now(Duration::from_secs(120))
            .unwrap(),
        "the tail did not seal within 120 s"
    );
    let events = recorder.journal().next_offset();
    (recorder, events)
}
