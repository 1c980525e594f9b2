//! Events about the tasks of an upgrade: `task.added`, `task.started` / `.paused` / `.resumed` /
//! `.cancelled` (one struct, [`TaskTransition`]), `task.progress`, `task.completed`,
//! `task.failed`.
//!
//! Invariants: as in [`super::upgrade`]. A task is named by the pair (upgrade_id, task_id): task
//! ids are unique only within their upgrade, so every task event carries both.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::types::TaskType;
use super::validate::{ID_MAX, ID_PATTERN, NAME_MAX, NAME_PATTERN, TEXT_MAX};

/// A task was added to an upgrade (status `not_started`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskAdded {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The upgrade that owns the task.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// The task (unique within its upgrade).
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub task_id: String,
    /// Human-readable name.
    #[schemars(length(min = 1, max = NAME_MAX), pattern(NAME_PATTERN))]
    pub name: String,
    /// What kind of task it is.
    pub task_type: TaskType,
    /// The parent task in the same upgrade, for a subtask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub parent_id: Option<String>,
}

/// A task changed status without other data: `task.started` (→ `in_progress`), `task.paused`
/// (→ `paused`), `task.resumed` (→ `in_progress`), `task.cancelled` (→ `cancelled`, terminal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskTransition {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The upgrade that owns the task.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// The task.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub task_id: String,
    /// Why, or what is happening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = TEXT_MAX))]
    pub message: Option<String>,
}

/// A task reported progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskProgress {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The upgrade that owns the task.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// The task.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub task_id: String,
    /// How far along the task is, in percent (finite, 0..=100).
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percentage: f64,
    /// What is happening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = TEXT_MAX))]
    pub message: Option<String>,
    /// Free-form details of this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
}

/// A task finished successfully (status `completed`, terminal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCompleted {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The upgrade that owns the task.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// The task.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub task_id: String,
    /// A closing remark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = TEXT_MAX))]
    pub message: Option<String>,
    /// Free-form measurements of the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Map<String, Value>>,
}

/// A task failed (status `failed`, terminal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskFailed {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The upgrade that owns the task.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// The task.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub task_id: String,
    /// What went wrong.
    #[schemars(length(max = TEXT_MAX))]
    pub error: String,
}
