//! Logbook: an audit-grade flight recorder for long-running operations.
//!
//! Every progress change of a long operation is appended to an immutable, segment-compressed,
//! hash-chained [`journal`]; everything else (views, live streams, the copy in S3) is derived
//! from it by reading it from an offset.
//!
//! | module | role |
//! |---|---|
//! | [`front`] | [`Logbook`]: the embedded front door (recorder, store, server, S3, EventBridge) |
//! | [`artifacts`] | `ArtifactStore`: sessions, collections, files with SHA-256, search, retention |
//! | [`tracker`] | `ProgressTracker`: the embedded API for an upgrade's progress |
//! | [`projection`] | the fold in SQLite (`state.sqlite`): checkpointed catch-up, views, search |
//! | [`journal`] | the append-only log: group commit, segments, sealing, readers, recovery, verify |
//! | [`eventbridge`] | a durable consumer sending lifecycle events to Amazon EventBridge (PutEvents) |
//! | [`event`] | typed events (DESIGN §3): validation, JSON Schemas, versions and upcasting |
//! | [`ingest`] | NDJSON lines → recorder, with a per-line report (record, record --to, POST /v1/events) |
//! | [`s3`] | shipping sealed segments and artifacts to S3, restore and follow from it |
//! | [`aws`] | the shared AWS configuration (standard chain, `AWS_ENDPOINT_URL`) |
//! | [`backoff`] | `Backoff`: the capped, jittered exponential delay of every retry loop |
//! | [`recorder`] | the one path into the journal: validate, check against state, append, apply |
//! | [`live`] | the current state: the anchored projection plus an overlay of what it lacks |
//! | [`server`] | `logbook serve`: HTTP ingest and JSON views, bearer token, loopback by default |
//! | [`state`] | the domain fold: stateful validation, current and as-of views |
//! | [`subscribe`] | subscriptions from an offset or time, durable consumers, isolated callbacks |
//! | [`envelope`] | records as JSON lines: offset, ts, schema version, then the payload |
//! | [`type_filter`] | `task.*,upgrade.failed` style filters over event types |
//! | [`timestamp`] | recorder timestamps (µs since epoch, RFC 3339 on the wire) |
//!
//! The original Python system's usage, translated (an upgrade with a task and a subtask, and
//! a log file kept as an artifact of that task):
//!
//! ```
//! use logbook::Logbook;
//! use logbook::artifacts::{ArtifactQuery, NewArtifact};
//! use logbook::event::{ArtifactType, ProgressStatus, TaskType};
//!
//! let data = tempfile::tempdir()?;
//! // One front door: the journal, the state, the artifact store and (when asked for with
//! // `Logbook::builder(dir).serve(addr).s3(url).eventbridge(config)`) the server, S3 shipping
//! // and EventBridge. Every call returns once its event is durable (`sync`, the default).
//! let logbook = Logbook::open(data.path())?;
//!
//! // tracker = ProgressTracker(upgrade_id="upg-42"); tracker.start_upgrade(...)
//! let tracker = logbook.tracker("upg-42");
//! tracker.start_upgrade("plan-1.30", "prod-eks", "Provision green", None)?;
//! tracker.add_task("green", "Provision green cluster", TaskType::UpgradeStep, None)?;
//! tracker.add_task("green-ng", "Create node groups", TaskType::UpgradeStep, Some("green"))?;
//! tracker.start_task("green-ng")?;
//! tracker.update_task_progress("green-ng", 50.0, Some("2 of 4 node groups ready"))?;
//! let progress = tracker.progress()?.expect("started");
//! assert_eq!(progress.tasks[0].effective_percentage, 50.0); // rolled up from the subtask
//!
//! // store.create_session(...); store.add_artifact(path, ArtifactType.LOG_FILE, tags=[...])
//! let store = logbook.artifacts();
//! store.create_session("sess-1", "upg-42", "prod-eks")?;
//! store.create_collection("sess-1", "logs", "Node group logs", Some("green-ng"))?;
//! let log = data.path().join("ng.log");
//! std::fs::write(&log, "node group ng-1 ready\n")?;
//! let artifact = store.add_artifact(&NewArtifact {
//!     session_id: "sess-1".into(),
//!     collection_id: "logs".into(),
//!     artifact_id: "art-1".into(),
//!     source: log,
//!     file_name: None,
//!     artifact_type: ArtifactType::LogFile,
//!     tags: vec!["nodegroup".into()],
//!     task_id: Some("green-ng".into()),
//!     description: Some("node group creation log".into()),
//!     expires_at: None,
//! })?;
//! assert_eq!(artifact.size_bytes, 22);
//! assert_eq!(store.search(&ArtifactQuery { tags: vec!["nodegroup".into()], ..Default::default() })?.len(), 1);
//!
//! tracker.complete_task("green-ng", None, None)?;
//! tracker.complete_task("green", None, None)?;
//! tracker.complete_upgrade(Some("green is live"))?;
//! assert_eq!(tracker.progress()?.expect("started").status, ProgressStatus::Completed);
//! logbook.close()?; // flushed, fsynced, background tasks stopped
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]
#![warn(missing_debug_implementations)]

pub mod artifacts;
pub mod aws;
pub mod backoff;
pub mod envelope;
pub mod event;
pub mod eventbridge;
pub mod front;
pub mod ingest;
pub mod journal;
pub mod live;
pub mod projection;
pub mod recorder;
pub mod s3;
pub mod server;
pub mod state;
pub mod subscribe;
pub mod timestamp;
pub mod tracker;
pub mod type_filter;

pub use front::{Builder, Logbook, LogbookError};
