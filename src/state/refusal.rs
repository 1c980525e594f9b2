//! Why an event is refused against the journal's current state (the stateful half of
//! validation; the stateless half is `Event::validate`). Every refusal names the id involved.

/// A stateful refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The upgrade does not exist.
    #[error("unknown upgrade {0:?}")]
    UnknownUpgrade(String),
    /// The task does not exist in that upgrade.
    #[error("unknown task {task_id:?} in upgrade {upgrade_id:?}")]
    UnknownTask {
        /// The upgrade.
        upgrade_id: String,
        /// The task.
        task_id: String,
    },
    /// The parent task does not exist in that upgrade.
    #[error("parent task {parent_id:?} does not exist in upgrade {upgrade_id:?}")]
    UnknownParent {
        /// The upgrade.
        upgrade_id: String,
        /// The missing parent.
        parent_id: String,
    },
    /// A task cannot be its own parent (the only cycle possible, since parents exist first).
    #[error("task {0:?} cannot be its own parent")]
    ParentCycle(String),
    /// The session does not exist.
    #[error("unknown session {0:?}")]
    UnknownSession(String),
    /// The collection does not exist in that session.
    #[error("unknown collection {collection_id:?} in session {session_id:?}")]
    UnknownCollection {
        /// The session.
        session_id: String,
        /// The collection.
        collection_id: String,
    },
    /// The artifact does not exist.
    #[error("unknown artifact {0:?}")]
    UnknownArtifact(String),
    /// The id is already taken (`what` says which kind).
    #[error("duplicate {what} id {id:?}")]
    Duplicate {
        /// upgrade, task, session, collection or artifact.
        what: &'static str,
        /// The id.
        id: String,
    },
    /// The upgrade or task is in a terminal status and cannot change any more.
    #[error("{what} {id:?} is {status} and cannot change any more")]
    Terminal {
        /// upgrade, task or artifact.
        what: &'static str,
        /// The id.
        id: String,
        /// Its terminal status.
        status: &'static str,
    },
    /// The transition does not apply to the current status (e.g. resuming a task that is not paused).
    #[error("task {task_id:?} is {status}: cannot {action}")]
    Transition {
        /// The task.
        task_id: String,
        /// Its status.
        status: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// System events (journal.repaired) are written by the journal itself.
    #[error("{0} events are written by the journal itself and cannot be recorded")]
    System(&'static str),
}

impl Refusal {
    /// The machine-readable code of this refusal (HTTP `{"code"}`, Python `RefusedError.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownUpgrade(_) => "unknown_upgrade",
            Refusal::UnknownTask { .. } => "unknown_task",
            Refusal::UnknownParent { .. } => "unknown_parent",
            Refusal::ParentCycle(_) => "invalid",
            Refusal::UnknownSession(_) => "unknown_session",
            Refusal::UnknownCollection { .. } => "unknown_collection",
            Refusal::UnknownArtifact(_) => "unknown_artifact",
            Refusal::Duplicate { .. } => "duplicate_id",
            Refusal::Terminal { .. } => "terminal_status",
            Refusal::Transition { .. } => "invalid_transition",
            Refusal::System(_) => "system_event",
        }
    }
}
