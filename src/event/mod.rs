//! Typed events: the payloads of journal records (DESIGN.md §3), their stateless validation,
//! their JSON Schemas and their versions.
//!
//! An event is one JSON object tagged by `type`, e.g.
//! `{"type":"task.progress","upgrade_id":"u-1","task_id":"t-1","percentage":50.0}`, and is an
//! [`Event`] in Rust: one variant per type, one struct per variant (the four bare task
//! transitions share [`TaskTransition`]).
//!
//! | file | role |
//! |---|---|
//! | [`upgrade`], [`task`], [`artifact`], [`system`] | the event structs, per noun |
//! | [`types`] | the domain enums (statuses, task and artifact types, delete reasons) |
//! | [`validate`] | stateless rules: id and file-name safety, lengths, ranges, formats |
//! | [`version`] | [`EVENT_SCHEMA_VERSION`] and [`upcast`], which reads payloads of any version |
//! | [`schema`] | the JSON Schemas checked in under `schemas/`, generated from these types |
//! | [`error`] | [`EventError`] |
//!
//! Invariants:
//! - The serialized form is the contract: `type` first, then the struct's fields in declaration
//!   order, optional fields omitted when absent, no unknown fields accepted
//!   ([`Event::parse`] refuses them, as it refuses missing required fields and duplicates).
//! - [`Event::to_payload`] of a parsed payload in that canonical form gives back the same bytes;
//!   the v1 fixture test checks it on a real journal.
//! - The schemas in `schemas/` are generated from these types and compared by a test, so they
//!   cannot drift; changing a type means regenerating them and, if the change is not purely
//!   additive, a new schema version with an upcaster ([`version`]).
//! - Parsing checks shape only; [`Event::validate`] checks values. Stateful rules (unknown ids,
//!   duplicates, terminal transitions) belong to the layer that knows the journal's state.

pub mod artifact;
pub mod error;
pub mod schema;
pub mod system;
pub mod task;
pub mod types;
pub mod upgrade;
pub mod validate;
pub mod version;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use artifact::{
    ArtifactAdded, ArtifactArchived, ArtifactDeleted, ArtifactUploadFailed, ArtifactUploaded,
    CollectionCreated, SessionCreated,
};
pub use error::{EventError, FieldProblem};
pub use system::{JournalRepaired, SubscriberSkipped};
pub use task::{TaskAdded, TaskCompleted, TaskFailed, TaskProgress, TaskTransition};
pub use types::{ArtifactStatus, ArtifactType, DeleteReason, ProgressStatus, TaskType};
pub use upgrade::{UpgradeCompleted, UpgradeFailed, UpgradePhaseChanged, UpgradeStarted};
pub use validate::Validate;
pub use version::{EVENT_SCHEMA_VERSION, upcast};

/// The event types of DESIGN.md §3, in the order of its table: what producers may record.
pub const EVENT_TYPES: [&str; 19] = [
    "upgrade.started",
    "upgrade.phase_changed",
    "upgrade.completed",
    "upgrade.failed",
    "task.added",
    "task.started",
    "task.paused",
    "task.resumed",
    "task.cancelled",
    "task.progress",
    "task.completed",
    "task.failed",
    "session.created",
    "collection.created",
    "artifact.added",
    "artifact.uploaded",
    "artifact.upload_failed",
    "artifact.archived",
    "artifact.deleted",
];

/// Event types the journal writes about itself; readable, but never accepted from producers.
pub const SYSTEM_EVENT_TYPES: [&str; 2] = ["journal.repaired", "subscriber.skipped"];

/// One event, tagged by its dotted `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum Event {
    /// An upgrade began.
    #[serde(rename = "upgrade.started")]
    UpgradeStarted(UpgradeStarted),
    /// An upgrade moved to another phase.
    #[serde(rename = "upgrade.phase_changed")]
    UpgradePhaseChanged(UpgradePhaseChanged),
    /// An upgrade finished successfully.
    #[serde(rename = "upgrade.completed")]
    UpgradeCompleted(UpgradeCompleted),
    /// An upgrade failed.
    #[serde(rename = "upgrade.failed")]
    UpgradeFailed(UpgradeFailed),
    /// A task was added to an upgrade.
    #[serde(rename = "task.added")]
    TaskAdded(TaskAdded),
    /// A task started.
    #[serde(rename = "task.started")]
    TaskStarted(TaskTransition),
    /// A task was paused.
    #[serde(rename = "task.paused")]
    TaskPaused(TaskTransition),
    /// A paused task resumed.
    #[serde(rename = "task.resumed")]
    TaskResumed(TaskTransition),
    /// A task was cancelled.
    #[serde(rename = "task.cancelled")]
    TaskCancelled(TaskTransition),
    /// A task reported progress.
    #[serde(rename = "task.progress")]
    TaskProgress(TaskProgress),
    /// A task finished successfully.
    #[serde(rename = "task.completed")]
    TaskCompleted(TaskCompleted),
    /// A task failed.
    #[serde(rename = "task.failed")]
    TaskFailed(TaskFailed),
    /// An artifact session was opened.
    #[serde(rename = "session.created")]
    SessionCreated(SessionCreated),
    /// A collection was created in a session.
    #[serde(rename = "collection.created")]
    CollectionCreated(CollectionCreated),
    /// A file was added to a collection.
    #[serde(rename = "artifact.added")]
    ArtifactAdded(ArtifactAdded),
    /// An artifact was uploaded to S3.
    #[serde(rename = "artifact.uploaded")]
    ArtifactUploaded(ArtifactUploaded),
    /// An artifact's upload failed.
    #[serde(rename = "artifact.upload_failed")]
    ArtifactUploadFailed(ArtifactUploadFailed),
    /// An artifact was archived.
    #[serde(rename = "artifact.archived")]
    ArtifactArchived(ArtifactArchived),
    /// An artifact's file was deleted.
    #[serde(rename = "artifact.deleted")]
    ArtifactDeleted(ArtifactDeleted),
    /// The journal cut damaged records on open (written by the journal only).
    #[serde(rename = "journal.repaired")]
    JournalRepaired(JournalRepaired),
    /// A durable consumer skipped a record it can never deliver (system event).
    #[serde(rename = "subscriber.skipped")]
    SubscriberSkipped(SubscriberSkipped),
}

/// The ids an event body may name; each struct answers for its own fields.
trait Ids: Validate {
    fn id(&self) -> Option<&str>;
    fn upgrade_id(&self) -> Option<&str> {
        None
    }
    fn task_id(&self) -> Option<&str> {
        None
    }
    fn session_id(&self) -> Option<&str> {
        None
    }
    fn collection_id(&self) -> Option<&str> {
        None
    }
    fn artifact_id(&self) -> Option<&str> {
        None
    }
}

macro_rules! ids {
    ($ty:ty { $($getter:ident: $field:ident $(($optional:tt))?),* $(,)? }) => {
        impl Ids for $ty {
            fn id(&self) -> Option<&str> {
                self.id.as_deref()
            }
            $(ids!(@getter $getter $field $(($optional))?);)*
        }
    };
    (@getter $getter:ident $field:ident) => {
        fn $getter(&self) -> Option<&str> {
            Some(&self.$field)
        }
    };
    (@getter $getter:ident $field:ident (?)) => {
        fn $getter(&self) -> Option<&str> {
            self.$field.as_deref()
        }
    };
}

ids!(UpgradeStarted {
    upgrade_id: upgrade_id
});
ids!(UpgradePhaseChanged {
    upgrade_id: upgrade_id
});
ids!(UpgradeCompleted {
    upgrade_id: upgrade_id
});
ids!(UpgradeFailed {
    upgrade_id: upgrade_id
});
ids!(TaskAdded {
    upgrade_id: upgrade_id,
    task_id: task_id
});
ids!(TaskTransition {
    upgrade_id: upgrade_id,
    task_id: task_id
});
ids!(TaskProgress {
    upgrade_id: upgrade_id,
    task_id: task_id
});
ids!(TaskCompleted {
    upgrade_id: upgrade_id,
    task_id: task_id
});
ids!(TaskFailed {
    upgrade_id: upgrade_id,
    task_id: task_id
});
ids!(SessionCreated {
    session_id: session_id,
    upgrade_id: upgrade_id
});
ids!(CollectionCreated {
    session_id: session_id,
    collection_id: collection_id,
    task_id: task_id (?),
});
ids!(ArtifactAdded {
    session_id: session_id,
    collection_id: collection_id,
    artifact_id: artifact_id,
    task_id: task_id (?),
});
ids!(ArtifactUploaded {
    artifact_id: artifact_id
});
ids!(ArtifactUploadFailed {
    artifact_id: artifact_id
});
ids!(ArtifactArchived {
    artifact_id: artifact_id
});
ids!(ArtifactDeleted {
    artifact_id: artifact_id
});
ids!(JournalRepaired {});
ids!(SubscriberSkipped {});

impl Event {
    /// Parses one payload. Checks the shape only (known `type`, exactly the fields of that
    /// type, right JSON types); see [`Event::validate`] for the values.
    pub fn parse(bytes: &[u8]) -> Result<Event, EventError> {
        serde_json::from_slice(bytes).map_err(|e| parse_error(bytes, &e.to_string()))
    }

    /// The payload in its canonical form: compact JSON, `type` first, then the fields in
    /// declaration order, absent optional fields omitted.
    ///
    /// Serialize only [validated](Event::validate) events: a non-finite `percentage` would be
    /// written as `null`, which [`Event::parse`] refuses.
    pub fn to_payload(&self) -> Vec<u8> {
        match serde_json::to_vec(self) {
            Ok(bytes) => bytes,
            // Only string-keyed maps and plain values: serde_json cannot fail on them.
            Err(e) => unreachable!("an event always serializes: {e}"),
        }
    }

    /// Checks every field's value (ids, names, lengths, ranges, formats) without any state;
    /// refuses event types only the journal may write.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.is_system() {
            return Err(EventError::Reserved { kind: self.kind() });
        }
        self.body().validate()
    }

    /// Validates the fields of a system event (which [`Event::validate`] refuses as a whole):
    /// for Logbook's own writers, e.g. [`crate::recorder::Recorder::record_system`].
    pub fn validate_system(&self) -> Result<(), EventError> {
        if !self.is_system() {
            return Err(EventError::NotSystem { kind: self.kind() });
        }
        self.body().validate()
    }

    /// The dotted `type`, e.g. `task.progress`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::UpgradeStarted(_) => "upgrade.started",
            Event::UpgradePhaseChanged(_) => "upgrade.phase_changed",
            Event::UpgradeCompleted(_) => "upgrade.completed",
            Event::UpgradeFailed(_) => "upgrade.failed",
            Event::TaskAdded(_) => "task.added",
            Event::TaskStarted(_) => "task.started",
            Event::TaskPaused(_) => "task.paused",
            Event::TaskResumed(_) => "task.resumed",
            Event::TaskCancelled(_) => "task.cancelled",
            Event::TaskProgress(_) => "task.progress",
            Event::TaskCompleted(_) => "task.completed",
            Event::TaskFailed(_) => "task.failed",
            Event::SessionCreated(_) => "session.created",
            Event::CollectionCreated(_) => "collection.created",
            Event::ArtifactAdded(_) => "artifact.added",
            Event::ArtifactUploaded(_) => "artifact.uploaded",
            Event::ArtifactUploadFailed(_) => "artifact.upload_failed",
            Event::ArtifactArchived(_) => "artifact.archived",
            Event::ArtifactDeleted(_) => "artifact.deleted",
            Event::JournalRepaired(_) => "journal.repaired",
            Event::SubscriberSkipped(_) => "subscriber.skipped",
        }
    }

    /// Whether only the journal itself may write this event ([`SYSTEM_EVENT_TYPES`]).
    pub fn is_system(&self) -> bool {
        matches!(
            self,
            Event::JournalRepaired(_) | Event::SubscriberSkipped(_)
        )
    }

    fn body(&self) -> &dyn Ids {
        match self {
            Event::UpgradeStarted(e) => e,
            Event::UpgradePhaseChanged(e) => e,
            Event::UpgradeCompleted(e) => e,
            Event::UpgradeFailed(e) => e,
            Event::TaskAdded(e) => e,
            Event::TaskStarted(e)
            | Event::TaskPaused(e)
            | Event::TaskResumed(e)
            | Event::TaskCancelled(e) => e,
            Event::TaskProgress(e) => e,
            Event::TaskCompleted(e) => e,
            Event::TaskFailed(e) => e,
            Event::SessionCreated(e) => e,
            Event::CollectionCreated(e) => e,
            Event::ArtifactAdded(e) => e,
            Event::ArtifactUploaded(e) => e,
            Event::ArtifactUploadFailed(e) => e,
            Event::ArtifactArchived(e) => e,
            Event::ArtifactDeleted(e) => e,
            Event::JournalRepaired(e) => e,
            Event::SubscriberSkipped(e) => e,
        }
    }

    /// The producer's idempotency key, if it set one.
    pub fn id(&self) -> Option<&str> {
        self.body().id()
    }

    /// The upgrade the event is about: every `upgrade.*` and `task.*` event, and
    /// `session.created`.
    pub fn upgrade_id(&self) -> Option<&str> {
        self.body().upgrade_id()
    }

    /// The task the event is about or refers to: every `task.*` event, and
    /// `collection.created` / `artifact.added` when they name one. A task id is unique only
    /// within its upgrade (see [`Event::upgrade_id`]; for the two artifact-store events the
    /// upgrade is the session's).
    pub fn task_id(&self) -> Option<&str> {
        self.body().task_id()
    }

    /// The session: `session.created`, `collection.created`, `artifact.added`.
    pub fn session_id(&self) -> Option<&str> {
        self.body().session_id()
    }

    /// The collection: `collection.created`, `artifact.added`.
    pub fn collection_id(&self) -> Option<&str> {
        self.body().collection_id()
    }

    /// The artifact: every `artifact.*` event.
    pub fn artifact_id(&self) -> Option<&str> {
        self.body().artifact_id()
    }

    /// The status this event moves its upgrade or task to, by type alone (`upgrade.started` →
    /// `in_progress`, `task.added` → `not_started`, `task.paused` → `paused`, ...); `None` for
    /// `upgrade.phase_changed` and `task.progress`, which change no status, and for the other
    /// nouns. Whether the move is allowed is a stateful check, not made here.
    pub fn progress_status(&self) -> Option<ProgressStatus> {
        use ProgressStatus as S;
        Some(match self {
            Event::UpgradeStarted(_) | Event::TaskStarted(_) | Event::TaskResumed(_) => {
                S::InProgress
            }
            Event::TaskAdded(_) => S::NotStarted,
            Event::UpgradeCompleted(_) | Event::TaskCompleted(_) => S::Completed,
            Event::UpgradeFailed(_) | Event::TaskFailed(_) => S::Failed,
            Event::TaskPaused(_) => S::Paused,
            Event::TaskCancelled(_) => S::Cancelled,
            _ => return None,
        })
    }

    /// The status this event moves its artifact to, by type alone (`artifact.upload_failed` →
    /// `failed`); `None` for events that are not about an artifact.
    pub fn artifact_status(&self) -> Option<ArtifactStatus> {
        use ArtifactStatus as S;
        Some(match self {
            Event::ArtifactAdded(_) => S::Created,
            Event::ArtifactUploaded(_) => S::Uploaded,
            Event::ArtifactUploadFailed(_) => S::Failed,
            Event::ArtifactArchived(_) => S::Archived,
            Event::ArtifactDeleted(_) => S::Deleted,
            _ => return None,
        })
    }
}

/// Builds the parse error, naming the top-level field at fault. serde names it in its message
/// for unknown, missing and duplicate fields and unknown types; for a wrong value inside an
/// internally tagged enum it does not, so the field is found by removing one field at a time:
/// the culprit is the one whose removal cures the error or turns it into "missing field".
/// Runs on the error path only.
fn parse_error(bytes: &[u8], message: &str) -> EventError {
    let quoted = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.split_once(prefix))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(field, _)| field.to_owned());
    // An unknown variant is either a bad enum field (found by `culprit`) or a bad `type`.
    let field = quoted.or_else(|| culprit(bytes)).or_else(|| {
        message
            .starts_with("unknown variant `")
            .then(|| "type".to_owned())
    });
    let reason = match &field {
        Some(field) if !message.contains(&format!("`{field}`")) => {
            format!("{field}: {message}")
        }
        _ => message.to_owned(),
    };
    EventError::Parse { field, reason }
}

/// The top-level field whose value breaks parsing, if removing a single field cures it. Skipped
/// for objects with more keys than any event has fields (such an object is wrong anyway, and
/// the search costs one parse per key).
fn culprit(bytes: &[u8]) -> Option<String> {
    const MAX_KEYS: usize = 32;
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let keys: Vec<String> = value
        .as_object()?
        .keys()
        .filter(|k| *k != "type")
        .cloned()
        .collect();
    if keys.len() > MAX_KEYS {
        return None;
    }
    keys.into_iter().find(|key| {
        let removed = value.as_object_mut().and_then(|map| map.remove(key));
        let cured = match Event::deserialize(&value) {
            Ok(_) => true,
            Err(e) => e.to_string().starts_with(&format!("missing field `{key}`")),
        };
        if let (Some(map), Some(removed)) = (value.as_object_mut(), removed) {
            map.insert(key.clone(), removed);
        }
        cured
    })
}

macro_rules! from_body {
    ($($ty:ident),* $(,)?) => {
        $(impl From<$ty> for Event {
            fn from(body: $ty) -> Event {
                Event::$ty(body)
            }
        })*
    };
}

// Every struct except the shared `TaskTransition`, whose variant must be chosen explicitly.
from_body!(
    UpgradeStarted,
    UpgradePhaseChanged,
    UpgradeCompleted,
    UpgradeFailed,
    TaskAdded,
    TaskProgress,
    TaskCompleted,
    TaskFailed,
    SessionCreated,
    CollectionCreated,
    ArtifactAdded,
    ArtifactUploaded,
    ArtifactUploadFailed,
    ArtifactArchived,
    ArtifactDeleted,
    JournalRepaired,
    SubscriberSkipped,
);

#[cfg(test)]
mod tests;
