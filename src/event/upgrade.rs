//! Events about an upgrade as a whole: `upgrade.started`, `.phase_changed`, `.completed`,
//! `.failed`.
//!
//! Invariants (shared by every event struct in this module tree): field names and optionality
//! are exactly DESIGN.md §3's; unknown fields are refused (`deny_unknown_fields`); optional fields
//! are omitted, never `null`, when serialized; `id` is the optional idempotency key; the
//! `schemars` attributes state the same limits as [`super::validate`], so the checked-in schemas
//! say what [`super::Event::validate`] enforces.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::validate::{ID_MAX, ID_PATTERN, NAME_MAX, NAME_PATTERN, TEXT_MAX};

/// An upgrade began (status `in_progress`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeStarted {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The upgrade (unique across the journal).
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// The plan it follows.
    #[schemars(length(min = 1, max = NAME_MAX), pattern(NAME_PATTERN))]
    pub plan_id: String,
    /// The cluster being upgraded.
    #[schemars(length(min = 1, max = NAME_MAX), pattern(NAME_PATTERN))]
    pub cluster_name: String,
    /// The first phase.
    #[schemars(length(min = 1, max = NAME_MAX), pattern(NAME_PATTERN))]
    pub phase: String,
    /// Free-form facts about the upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// An upgrade moved to another phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradePhaseChanged {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The upgrade.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// The new phase.
    #[schemars(length(min = 1, max = NAME_MAX), pattern(NAME_PATTERN))]
    pub phase: String,
}

/// An upgrade finished successfully (status `completed`, terminal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeCompleted {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The upgrade.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// A closing remark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = TEXT_MAX))]
    pub message: Option<String>,
}

/// An upgrade failed (status `failed`, terminal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeFailed {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The upgrade.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// What went wrong.
    #[schemars(length(max = TEXT_MAX))]
    pub error: String,
}
