//! The domain's enums, serialized in snake_case (DESIGN.md §2).
//!
//! Invariant: the serialized names are part of the event contract and of the checked-in schemas
//! (`schemas/events/`): a variant may be added only with a new schema version, and never renamed
//! or removed. [`as_str`](ProgressStatus::as_str) returns exactly the serialized name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of an upgrade or a task: `not_started`, `in_progress`, `completed`, `failed`,
/// `paused`, `cancelled`; `completed`, `failed` and `cancelled` are terminal. (Variants are
/// undocumented on purpose: a doc comment would turn the schema's plain `enum` into a `oneOf`.)
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStatus {
    NotStarted,
    InProgress,
    Completed,
    Failed,
    Paused,
    Cancelled,
}

impl ProgressStatus {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressStatus::NotStarted => "not_started",
            ProgressStatus::InProgress => "in_progress",
            ProgressStatus::Completed => "completed",
            ProgressStatus::Failed => "failed",
            ProgressStatus::Paused => "paused",
            ProgressStatus::Cancelled => "cancelled",
        }
    }

    /// Whether no transition leaves this status (`completed`, `failed`, `cancelled`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ProgressStatus::Completed | ProgressStatus::Failed | ProgressStatus::Cancelled
        )
    }
}

/// What a task is: `upgrade_plan`, `upgrade_step`, `validation`, `rollback`, `cleanup`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    UpgradePlan,
    UpgradeStep,
    Validation,
    Rollback,
    Cleanup,
}

impl TaskType {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::UpgradePlan => "upgrade_plan",
            TaskType::UpgradeStep => "upgrade_step",
            TaskType::Validation => "validation",
            TaskType::Rollback => "rollback",
            TaskType::Cleanup => "cleanup",
        }
    }
}

/// What an artifact holds: `log_file`, `test_result`, `configuration`, `screenshot`,
/// `metrics_data`, `backup`, `report`, `diagnostic`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactType {
    LogFile,
    TestResult,
    Configuration,
    Screenshot,
    MetricsData,
    Backup,
    Report,
    Diagnostic,
}

impl ArtifactType {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactType::LogFile => "log_file",
            ArtifactType::TestResult => "test_result",
            ArtifactType::Configuration => "configuration",
            ArtifactType::Screenshot => "screenshot",
            ArtifactType::MetricsData => "metrics_data",
            ArtifactType::Backup => "backup",
            ArtifactType::Report => "report",
            ArtifactType::Diagnostic => "diagnostic",
        }
    }
}

/// Status of an artifact: `created`, `uploaded`, `archived`, `deleted`, `failed` (its upload
/// failed).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactStatus {
    Created,
    Uploaded,
    Archived,
    Deleted,
    Failed,
}

impl ArtifactStatus {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactStatus::Created => "created",
            ArtifactStatus::Uploaded => "uploaded",
            ArtifactStatus::Archived => "archived",
            ArtifactStatus::Deleted => "deleted",
            ArtifactStatus::Failed => "failed",
        }
    }
}

/// Why an artifact was deleted: `expired` (retention) or `requested` (by a user).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReason {
    Expired,
    Requested,
}

impl DeleteReason {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteReason::Expired => "expired",
            DeleteReason::Requested => "requested",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name<T: Serialize>(value: T) -> String {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn as_str_is_the_serialized_name() {
        use ProgressStatus as P;
        for s in [
            P::NotStarted,
            P::InProgress,
            P::Completed,
            P::Failed,
            P::Paused,
            P::Cancelled,
        ] {
            assert_eq!(name(s), s.as_str());
        }
        use TaskType as T;
        for t in [
            T::UpgradePlan,
            T::UpgradeStep,
            T::Validation,
            T::Rollback,
            T::Cleanup,
        ] {
            assert_eq!(name(t), t.as_str());
        }
        use ArtifactType as A;
        for a in [
            A::LogFile,
            A::TestResult,
            A::Configuration,
            A::Screenshot,
            A::MetricsData,
            A::Backup,
            A::Report,
            A::Diagnostic,
        ] {
            assert_eq!(name(a), a.as_str());
        }
        use ArtifactStatus as S;
        for s in [S::Created, S::Uploaded, S::Archived, S::Deleted, S::Failed] {
            assert_eq!(name(s), s.as_str());
        }
        for r in [DeleteReason::Expired, DeleteReason::Requested] {
            assert_eq!(name(r), r.as_str());
        }
        assert_eq!(
            serde_json::from_str::<TaskType>("\"upgrade_plan\"").ok(),
            Some(TaskType::UpgradePlan)
        );
        assert!(serde_json::from_str::<TaskType>("\"UpgradePlan\"").is_err());
    }
}
