//! One event → SQL, with exactly the effects of [`crate::state::State::apply`] (the reference):
//! the same "change nothing you cannot name" leniency for events that would not pass `check`,
//! and no clock: every time comes from the record.
//!
//! Every upgrade and task event that names an existing upgrade sets its `last_offset` (as
//! `State`'s `with_upgrade` does, even when the task is unknown). Those writes are gathered per
//! batch and written once per upgrade when the batch ends ([`Batch::finish`]), guarded by
//! `last_offset < new`, so an event naming an upgrade before it was started (only possible in
//! an unvalidated journal) cannot lower the offset set by a later `upgrade.started`.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use crate::event::{ArtifactStatus, Event, ProgressStatus};

/// Work gathered over one batch (one transaction).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// upgrade id → offset of the last event in this batch that named it.
    last_offsets: HashMap<String, u64>,
}

fn json(map: &Map<String, Value>) -> String {
    Value::Object(map.clone()).to_string()
}

fn opt_json(map: Option<&Map<String, Value>>) -> Option<String> {
    map.map(json)
}

/// Offsets are stored as SQLite integers (i64); journals never get near 2^63 records.
pub(crate) fn sql_offset(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

impl Batch {
    fn touch(&mut self, upgrade_id: &str, offset: u64) {
        match self.last_offsets.get_mut(upgrade_id) {
            Some(slot) => *slot = offset,
            None => {
                self.last_offsets.insert(upgrade_id.to_string(), offset);
            }
        }
    }

    /// Writes the gathered upgrade offsets.
    pub(crate) fn finish(&mut self, db: &Connection) -> rusqlite::Result<()> {
        let mut stmt = db.prepare_cached(
            "UPDATE upgrades SET last_offset = ?1 WHERE upgrade_id = ?2 AND last_offset < ?1",
        )?;
        for (upgrade_id, offset) in self.last_offsets.drain() {
            stmt.execute(params![sql_offset(offset), upgrade_id])?;
        }
        Ok(())
    }

    /// Applies the event recorded at `offset` and time `ts_us`.
    pub(crate) fn apply(
        &mut self,
        db: &Connection,
        offset: u64,
        ts_us: i64,
        event: &Event,
    ) -> rusqlite::Result<()> {
        let off = sql_offset(offset);
        if let Some(key) = event.id() {
            // The first record of a key wins, as in `State::apply`.
            db.prepare_cached(
                "INSERT OR IGNORE INTO idempotency_keys (key, offset) VALUES (?1, ?2)",
            )?
            .execute(params![key, off])?;
        }
        if !matches!(event, Event::UpgradeStarted(_))
            && let Some(upgrade_id) = event.upgrade_id()
            && !matches!(event, Event::SessionCreated(_))
        {
            self.touch(upgrade_id, offset);
        }
        match event {
            Event::JournalRepaired(_) | Event::SubscriberSkipped(_) => {}
            Event::UpgradeStarted(e) => {
                let metadata = e.metadata.as_ref().map(json);
                db.prepare_cached(
                    "INSERT OR IGNORE INTO upgrades (upgrade_id, plan_id, cluster_name, phase, \
                     status, metadata, started_at_us, last_offset) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    e.upgrade_id,
                    e.plan_id,
                    e.cluster_name,
                    e.phase,
                    ProgressStatus::InProgress.as_str(),
                    metadata.unwrap_or_else(|| "{}".to_string()),
                    ts_us,
                    off
                ])?;
            }
            Event::UpgradePhaseChanged(e) => {
                db.prepare_cached("UPDATE upgrades SET phase = ?2 WHERE upgrade_id = ?1")?
                    .execute(params![e.upgrade_id, e.phase])?;
            }
            Event::UpgradeCompleted(e) => {
                db.prepare_cached(
                    "UPDATE upgrades SET status = ?2, message = ?3, completed_at_us = ?4 \
                     WHERE upgrade_id = ?1",
                )?
                .execute(params![
                    e.upgrade_id,
                    ProgressStatus::Completed.as_str(),
                    e.message,
                    ts_us
                ])?;
            }
            Event::UpgradeFailed(e) => {
                db.prepare_cached(
                    "UPDATE upgrades SET status = ?2, error = ?3, completed_at_us = ?4 \
                     WHERE upgrade_id = ?1",
                )?
                .execute(params![
                    e.upgrade_id,
                    ProgressStatus::Failed.as_str(),
                    e.error,
                    ts_us
                ])?;
            }
            Event::TaskAdded(e) => {
                db.prepare_cached(
                    "INSERT OR IGNORE INTO tasks (upgrade_id, task_id, added_offset, name, \
                     task_type, parent_id, status, percentage) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, 0.0 \
                     WHERE EXISTS (SELECT 1 FROM upgrades WHERE upgrade_id = ?1)",
                )?
                .execute(params![
                    e.upgrade_id,
                    e.task_id,
                    off,
                    e.name,
                    e.task_type.as_str(),
                    e.parent_id,
                    ProgressStatus::NotStarted.as_str()
                ])?;
            }
            Event::TaskStarted(e) | Event::TaskResumed(e) => {
                db.prepare_cached(
                    "UPDATE tasks SET status = ?3, started_at_us = COALESCE(started_at_us, ?4), \
                     message = COALESCE(?5, message) WHERE upgrade_id = ?1 AND task_id = ?2",
                )?
                .execute(params![
                    e.upgrade_id,
                    e.task_id,
                    ProgressStatus::InProgress.as_str(),
                    ts_us,
                    e.message
                ])?;
            }
            Event::TaskPaused(e) => {
                db.prepare_cached(
                    "UPDATE tasks SET status = ?3, message = COALESCE(?4, message) \
                     WHERE upgrade_id = ?1 AND task_id = ?2",
                )?
                .execute(params![
                    e.upgrade_id,
                    e.task_id,
                    ProgressStatus::Paused.as_str(),
                    e.message
                ])?;
            }
            Event::TaskCancelled(e) => {
                db.prepare_cached(
                    "UPDATE tasks SET status = ?3, completed_at_us = ?4, \
                     message = COALESCE(?5, message) WHERE upgrade_id = ?1 AND task_id = ?2",
                )?
                .execute(params![
                    e.upgrade_id,
                    e.task_id,
                    ProgressStatus::Cancelled.as_str(),
                    ts_us,
                    e.message
                ])?;
            }
            Event::TaskProgress(e) => {
                db.prepare_cached(
                    "UPDATE tasks SET status = ?3, started_at_us = COALESCE(started_at_us, ?4), \
                     percentage = ?5, message = COALESCE(?6, message), \
                     details = COALESCE(?7, details) WHERE upgrade_id = ?1 AND task_id = ?2",
                )?
                .execute(params![
                    e.upgrade_id,
                    e.task_id,
                    ProgressStatus::InProgress.as_str(),
                    ts_us,
                    e.percentage,
                    e.message,
                    opt_json(e.details.as_ref())
                ])?;
            }
            Event::TaskCompleted(e) => {
                db.prepare_cached(
                    "UPDATE tasks SET status = ?3, percentage = 100.0, \
                     started_at_us = COALESCE(started_at_us, ?4), completed_at_us = ?4, \
                     message = COALESCE(?5, message), metrics = ?6 \
                     WHERE upgrade_id = ?1 AND task_id = ?2",
                )?
                .execute(params![
                    e.upgrade_id,
                    e.task_id,
                    ProgressStatus::Completed.as_str(),
                    ts_us,
                    e.message,
                    opt_json(e.metrics.as_ref())
                ])?;
            }
            Event::TaskFailed(e) => {
                db.prepare_cached(
                    "UPDATE tasks SET status = ?3, error = ?4, completed_at_us = ?5 \
                     WHERE upgrade_id = ?1 AND task_id = ?2",
                )?
                .execute(params![
                    e.upgrade_id,
                    e.task_id,
                    ProgressStatus::Failed.as_str(),
                    e.error,
                    ts_us
                ])?;
            }
            Event::SessionCreated(e) => {
                db.prepare_cached(
                    "INSERT OR IGNORE INTO sessions (session_id, upgrade_id, cluster_name, \
                     created_at_us) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    e.session_id,
                    e.upgrade_id,
                    e.cluster_name,
                    ts_us
                ])?;
            }
            Event::CollectionCreated(e) => {
                db.prepare_cached(
                    "INSERT OR IGNORE INTO collections (session_id, collection_id, \
                     created_offset, name, task_id) SELECT ?1, ?2, ?3, ?4, ?5 \
                     WHERE EXISTS (SELECT 1 FROM sessions WHERE session_id = ?1)",
                )?
                .execute(params![
                    e.session_id,
                    e.collection_id,
                    off,
                    e.name,
                    e.task_id
                ])?;
            }
            Event::ArtifactAdded(e) => {
                let listed: bool = db
                    .prepare_cached(
                        "SELECT 1 FROM collections WHERE session_id = ?1 AND collection_id = ?2",
                    )?
                    .query_row(params![e.session_id, e.collection_id], |_| Ok(()))
                    .optional()?
                    .is_some();
                let inserted = db
                    .prepare_cached(
                        "INSERT OR IGNORE INTO artifacts (artifact_id, added_offset, \
                         session_id, collection_id, listed, file_name, artifact_type, status, \
                         sha256, size_bytes, task_id, description, created_at_us, expires_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    )?
                    .execute(params![
                        e.artifact_id,
                        off,
                        e.session_id,
                        e.collection_id,
                        listed,
                        e.file_name,
                        e.artifact_type.as_str(),
                        ArtifactStatus::Created.as_str(),
                        e.sha256,
                        i64::try_from(e.size_bytes).unwrap_or(i64::MAX),
                        e.task_id,
                        e.description,
                        ts_us,
                        e.expires_at
                    ])?;
                if inserted == 1 {
                    let mut tag_stmt = db.prepare_cached(
                        "INSERT INTO artifact_tags (artifact_id, position, tag) \
                         VALUES (?1, ?2, ?3)",
                    )?;
                    for (position, tag) in e.tags.iter().enumerate() {
                        tag_stmt.execute(params![
                            e.artifact_id,
                            i64::try_from(position).unwrap_or(i64::MAX),
                            tag
                        ])?;
                    }
                    db.prepare_cached(
                        "INSERT INTO artifacts_fts (artifact_id, file_name, description, tags) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![
                        e.artifact_id,
                        e.file_name,
                        e.description,
                        e.tags.join(" ")
                    ])?;
                }
            }
            Event::ArtifactUploaded(e) => {
                db.prepare_cached(
                    "UPDATE artifacts SET status = ?2, s3_key = ?3, etag = ?4, error = NULL \
                     WHERE artifact_id = ?1",
                )?
                .execute(params![
                    e.artifact_id,
                    ArtifactStatus::Uploaded.as_str(),
                    e.s3_key,
                    e.etag
                ])?;
            }
            Event::ArtifactUploadFailed(e) => {
                db.prepare_cached(
                    "UPDATE artifacts SET status = ?2, error = ?3 WHERE artifact_id = ?1",
                )?
                .execute(params![
                    e.artifact_id,
                    ArtifactStatus::Failed.as_str(),
                    e.error
                ])?;
            }
            Event::ArtifactArchived(e) => {
                set_artifact_status(db, &e.artifact_id, ArtifactStatus::Archived)?
            }
            Event::ArtifactDeleted(e) => {
                set_artifact_status(db, &e.artifact_id, ArtifactStatus::Deleted)?
            }
        }
        Ok(())
    }
}

fn set_artifact_status(
    db: &Connection,
    artifact_id: &str,
    status: ArtifactStatus,
) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE artifacts SET status = ?2 WHERE artifact_id = ?1")?
        .execute(params![artifact_id, status.as_str()])?;
    Ok(())
}
