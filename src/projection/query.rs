//! Reading the projection: the views of [`crate::state`] (same structs, same roll-up rule),
//! artifact search with filters and full-text search (FTS5), and statistics.

use rusqlite::types::Value as SqlValue;
use rusqlite::{OptionalExtension, Row, params, params_from_iter};
use serde_json::{Map, Value};

use super::{Projection, ProjectionError};
use crate::artifacts::search::{ArtifactQuery, ArtifactStats, TagMatch};
use crate::event::{ArtifactStatus, ArtifactType, ProgressStatus, TaskType};
use crate::state::{ArtifactView, CollectionView, SessionView, TaskView, UpgradeView};

const PROGRESS: [ProgressStatus; 6] = [
    ProgressStatus::NotStarted,
    ProgressStatus::InProgress,
    ProgressStatus::Completed,
    ProgressStatus::Failed,
    ProgressStatus::Paused,
    ProgressStatus::Cancelled,
];
const TASK_TYPES: [TaskType; 5] = [
    TaskType::UpgradePlan,
    TaskType::UpgradeStep,
    TaskType::Validation,
    TaskType::Rollback,
    TaskType::Cleanup,
];
const ARTIFACT_TYPES: [ArtifactType; 8] = [
    ArtifactType::LogFile,
    ArtifactType::TestResult,
    ArtifactType::Configuration,
    ArtifactType::Screenshot,
    ArtifactType::MetricsData,
    ArtifactType::Backup,
    ArtifactType::Report,
    ArtifactType::Diagnostic,
];
const ARTIFACT_STATUSES: [ArtifactStatus; 5] = [
    ArtifactStatus::Created,
    ArtifactStatus::Uploaded,
    ArtifactStatus::Archived,
    ArtifactStatus::Deleted,
    ArtifactStatus::Failed,
];

fn corrupt(what: &'static str, value: impl Into<String>) -> ProjectionError {
    ProjectionError::Corrupt {
        what,
        value: value.into(),
    }
}

fn by_name<T: Copy>(
    all: &[T],
    name: &str,
    as_str: impl Fn(T) -> &'static str,
    what: &'static str,
) -> Result<T, ProjectionError> {
    all.iter()
        .copied()
        .find(|v| as_str(*v) == name)
        .ok_or_else(|| corrupt(what, name))
}

fn map(text: &str) -> Result<Map<String, Value>, ProjectionError> {
    serde_json::from_str(text).map_err(|_| corrupt("JSON object", text))
}

fn opt_map(text: Option<String>) -> Result<Option<Map<String, Value>>, ProjectionError> {
    text.as_deref().map(map).transpose()
}

fn offset(value: i64) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| corrupt("offset", value.to_string()))
}

const ARTIFACT_COLUMNS: &str = "a.artifact_id, a.session_id, a.collection_id, a.file_name, \
     a.artifact_type, a.status, a.sha256, a.size_bytes, a.task_id, a.description, a.s3_key, \
     a.etag, a.error, a.created_at_us, a.expires_at";

/// An artifact row (in `ARTIFACT_COLUMNS` order) without its tags.
type ArtifactRow = (ArtifactView, String, String);

fn artifact_row(row: &Row<'_>) -> rusqlite::Result<(ArtifactRow, i64)> {
    Ok((
        (
            ArtifactView {
                artifact_id: row.get(0)?,
                session_id: row.get(1)?,
                collection_id: row.get(2)?,
                file_name: row.get(3)?,
                artifact_type: ArtifactType::LogFile,
                status: ArtifactStatus::Created,
                sha256: row.get(6)?,
                size_bytes: 0,
                tags: Vec::new(),
                task_id: row.get(8)?,
                description: row.get(9)?,
                s3_key: row.get(10)?,
                etag: row.get(11)?,
                error: row.get(12)?,
                created_at_us: row.get(13)?,
                expires_at: row.get(14)?,
            },
            row.get(4)?,
            row.get(5)?,
        ),
        row.get(7)?,
    ))
}

impl Projection {
    /// The view of an upgrade, percentages rolled up as [`crate::state::State::upgrade_view`]
    /// does (the rule is `crate::state::roll_up`, shared with the fold).
    pub fn upgrade(&self, id: &str) -> Result<Option<UpgradeView>, ProjectionError> {
        let row = self
            .db
            .prepare_cached(
                "SELECT upgrade_id, plan_id, cluster_name, phase, status, metadata, message, \
                 error, started_at_us, completed_at_us, last_offset FROM upgrades \
                 WHERE upgrade_id = ?1",
            )?
            .query_row([id], |row| {
                Ok((
                    (
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ),
                    (row.get::<_, String>(4)?, row.get::<_, String>(5)?),
                    (
                        row.get::<_, Option<String>>(6)?,
                        row.get::<_, Option<String>>(7)?,
                    ),
                    (
                        row.get::<_, i64>(8)?,
                        row.get::<_, Option<i64>>(9)?,
                        row.get::<_, i64>(10)?,
                    ),
                ))
            })
            .optional()?;
        let Some((
            (upgrade_id, plan_id, cluster_name, phase),
            (status, metadata),
            (message, error),
            (started_at_us, completed_at_us, last_offset),
        )) = row
        else {
            return Ok(None);
        };
        let mut view = UpgradeView {
            upgrade_id,
            plan_id,
            cluster_name,
            phase,
            status: by_name(&PROGRESS, &status, ProgressStatus::as_str, "status")?,
            metadata: map(&metadata)?,
            percentage: 0.0,
            message,
            error,
            started_at_us,
            completed_at_us,
            last_offset: offset(last_offset)?,
            tasks: self
                .tasks(id)?
                .into_iter()
                .map(std::sync::Arc::new)
                .collect(),
        };
        crate::state::roll_up(&mut view);
        Ok(Some(view))
    }

    fn tasks(&self, upgrade_id: &str) -> Result<Vec<TaskView>, ProjectionError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT task_id, name, task_type, parent_id, status, percentage, message, details, \
             metrics, error, started_at_us, completed_at_us FROM tasks WHERE upgrade_id = ?1 \
             ORDER BY added_offset",
        )?;
        let mut rows = stmt.query([upgrade_id])?;
        let mut tasks = Vec::new();
        while let Some(row) = rows.next()? {
            let task_type: String = row.get(2)?;
            let status: String = row.get(4)?;
            tasks.push(TaskView {
                task_id: row.get(0)?,
                name: row.get(1)?,
                task_type: by_name(&TASK_TYPES, &task_type, TaskType::as_str, "task type")?,
                parent_id: row.get(3)?,
                status: by_name(&PROGRESS, &status, ProgressStatus::as_str, "status")?,
                percentage: row.get(5)?,
                effective_percentage: 0.0,
                message: row.get(6)?,
                details: opt_map(row.get(7)?)?,
                metrics: opt_map(row.get(8)?)?,
                error: row.get(9)?,
                started_at_us: row.get(10)?,
                completed_at_us: row.get(11)?,
            });
        }
        Ok(tasks)
    }

    /// Ids of all upgrades, sorted.
    pub fn upgrade_ids(&self) -> Result<Vec<String>, ProjectionError> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT upgrade_id FROM upgrades ORDER BY upgrade_id")?;
        let ids = stmt
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Ids of the sessions of an upgrade, sorted.
    pub fn sessions_of(&self, upgrade_id: &str) -> Result<Vec<String>, ProjectionError> {
        let mut stmt = self.db.prepare_cached(
            "SELECT session_id FROM sessions WHERE upgrade_id = ?1 ORDER BY session_id",
        )?;
        let ids = stmt
            .query_map([upgrade_id], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// The offset holding the event recorded with idempotency key `key`, if any.
    pub fn recorded_key(&self, key: &str) -> Result<Option<u64>, ProjectionError> {
        let found: Option<i64> = self
            .db
            .prepare_cached("SELECT offset FROM idempotency_keys WHERE key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?;
        found.map(offset).transpose()
    }

    /// The view of a session: its collections in creation order, each with its artifact ids in
    /// the order they were added.
    pub fn session(&self, id: &str) -> Result<Option<SessionView>, ProjectionError> {
        let session = self
            .db
            .prepare_cached(
                "SELECT session_id, upgrade_id, cluster_name, created_at_us FROM sessions \
                 WHERE session_id = ?1",
            )?
            .query_row([id], |row| {
                Ok(SessionView {
                    session_id: row.get(0)?,
                    upgrade_id: row.get(1)?,
                    cluster_name: row.get(2)?,
                    created_at_us: row.get(3)?,
                    collections: Vec::new(),
                })
            })
            .optional()?;
        let Some(mut session) = session else {
            return Ok(None);
        };
        let mut stmt = self.db.prepare_cached(
            "SELECT collection_id, name, task_id FROM collections WHERE session_id = ?1 \
             ORDER BY created_offset",
        )?;
        session.collections = stmt
            .query_map([id], |row| {
                Ok(CollectionView {
                    collection_id: row.get(0)?,
                    name: row.get(1)?,
                    task_id: row.get(2)?,
                    artifact_ids: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut stmt = self.db.prepare_cached(
            "SELECT artifact_id FROM artifacts WHERE session_id = ?1 AND collection_id = ?2 \
             AND listed = 1 ORDER BY added_offset",
        )?;
        for collection in &mut session.collections {
            collection.artifact_ids = stmt
                .query_map(params![id, collection.collection_id], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
        }
        Ok(Some(session))
    }

    /// The view of an artifact.
    pub fn artifact(&self, id: &str) -> Result<Option<ArtifactView>, ProjectionError> {
        let query = ArtifactQuery::default();
        let (sql, mut values) = where_clause(&query);
        values.push(SqlValue::Text(id.to_string()));
        let sql = format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts a WHERE {sql} AND a.artifact_id = ?{}",
            values.len()
        );
        Ok(self.artifacts_by(&sql, values)?.into_iter().next())
    }

    /// Artifacts matching every filter of `query`, by artifact id.
    pub fn search(&self, query: &ArtifactQuery) -> Result<Vec<ArtifactView>, ProjectionError> {
        let (sql, values) = where_clause(query);
        let limit = match query.limit {
            // SQLite reads a LIMIT past i64::MAX as a float, and refuses it.
            Some(limit) => format!(" LIMIT {}", i64::try_from(limit).unwrap_or(i64::MAX)),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts a WHERE {sql} ORDER BY a.artifact_id{limit}"
        );
        self.artifacts_by(&sql, values)
    }

    fn artifacts_by(
        &self,
        sql: &str,
        values: Vec<SqlValue>,
    ) -> Result<Vec<ArtifactView>, ProjectionError> {
        let mut stmt = self.db.prepare(sql)?;
        let rows = stmt
            .query_map(params_from_iter(values), artifact_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut tags = self.db.prepare_cached(
            "SELECT tag FROM artifact_tags WHERE artifact_id = ?1 ORDER BY position",
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for ((mut view, artifact_type, status), size) in rows {
            view.artifact_type = by_name(
                &ARTIFACT_TYPES,
                &artifact_type,
                ArtifactType::as_str,
                "artifact type",
            )?;
            view.status = by_name(
                &ARTIFACT_STATUSES,
                &status,
                ArtifactStatus::as_str,
                "artifact status",
            )?;
            view.size_bytes = u64::try_from(size).map_err(|_| corrupt("size", size.to_string()))?;
            view.tags = tags
                .query_map([&view.artifact_id], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            out.push(view);
        }
        Ok(out)
    }

    /// Counts and bytes of the artifacts matching `query` (its `limit` is ignored), in total,
    /// by type and by status.
    pub fn stats(&self, query: &ArtifactQuery) -> Result<ArtifactStats, ProjectionError> {
        let (sql, values) = where_clause(query);
        let sql = format!(
            "SELECT a.artifact_type, a.status, COUNT(*), SUM(a.size_bytes) FROM artifacts a \
             WHERE {sql} GROUP BY a.artifact_type, a.status"
        );
        let mut stmt = self.db.prepare(&sql)?;
        let rows = stmt
            .query_map(params_from_iter(values), |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut stats = ArtifactStats::default();
        for (artifact_type, status, count, bytes) in rows {
            let count = u64::try_from(count).unwrap_or(0);
            let bytes = u64::try_from(bytes).unwrap_or(0);
            for slot in [
                &mut stats.total,
                stats.by_type.entry(artifact_type).or_default(),
                stats.by_status.entry(status).or_default(),
            ] {
                slot.count += count;
                slot.bytes += bytes;
            }
        }
        Ok(stats)
    }
}

/// The WHERE clause (over `artifacts a`) and its parameters, numbered from 1.
fn where_clause(query: &ArtifactQuery) -> (String, Vec<SqlValue>) {
    let mut terms: Vec<String> = vec!["1".into()];
    let mut values: Vec<SqlValue> = Vec::new();
    let mut bind = |value: SqlValue| {
        values.push(value);
        format!("?{}", values.len())
    };
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    if let Some(t) = query.artifact_type {
        terms.push(format!(
            "a.artifact_type = {}",
            bind(t.as_str().to_string().into())
        ));
    }
    if let Some(s) = query.status {
        terms.push(format!(
            "a.status = {}",
            bind(s.as_str().to_string().into())
        ));
    }
    if let Some(task) = &query.task_id {
        terms.push(format!("a.task_id = {}", bind(task.clone().into())));
    }
    if let Some(session) = &query.session_id {
        terms.push(format!("a.session_id = {}", bind(session.clone().into())));
    }
    if let Some(min) = query.min_size {
        terms.push(format!("a.size_bytes >= {}", bind(clamp(min).into())));
    }
    if let Some(max) = query.max_size {
        terms.push(format!("a.size_bytes <= {}", bind(clamp(max).into())));
    }
    if let Some(from) = query.created_from_us {
        terms.push(format!("a.created_at_us >= {}", bind(from.into())));
    }
    if let Some(to) = query.created_until_us {
        terms.push(format!("a.created_at_us <= {}", bind(to.into())));
    }
    if let Some(glob) = &query.name_glob {
        terms.push(format!("a.file_name GLOB {}", bind(glob.clone().into())));
    }
    match query.tag_match {
        TagMatch::All => {
            for tag in &query.tags {
                terms.push(format!(
                    "EXISTS (SELECT 1 FROM artifact_tags t WHERE t.artifact_id = a.artifact_id \
                     AND t.tag = {})",
                    bind(tag.clone().into())
                ));
            }
        }
        TagMatch::Any if !query.tags.is_empty() => {
            let list: Vec<String> = query
                .tags
                .iter()
                .map(|tag| bind(tag.clone().into()))
                .collect();
            terms.push(format!(
                "EXISTS (SELECT 1 FROM artifact_tags t WHERE t.artifact_id = a.artifact_id \
                 AND t.tag IN ({}))",
                list.join(", ")
            ));
        }
        TagMatch::Any => {}
    }
    if let Some(text) = &query.text {
        let words: Vec<String> = text
            .split_whitespace()
            .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
            .collect();
        if !words.is_empty() {
            terms.push(format!(
                "a.artifact_id IN (SELECT artifact_id FROM artifacts_fts \
                 WHERE artifacts_fts MATCH {})",
                bind(words.join(" ").into())
            ));
        }
    }
    (terms.join(" AND "), values)
}
