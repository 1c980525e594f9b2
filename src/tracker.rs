//! `ProgressTracker`: the embedded API for one upgrade's progress, the library's front door for
//! programs that run long operations.
//!
//! Each operation is one journal event recorded through the [`Recorder`], so it is validated
//! (values and state: unknown tasks, terminal statuses...) and acknowledged under the journal's
//! durability policy before the call returns; [`ProgressTracker::progress`] then reflects it
//! (read-your-writes). Every operation exists in a blocking form (`start_task`) and an async
//! form (`start_task_async`) that never blocks a tokio runtime; both build the same event.
//! Operations return the offset of the event in the journal.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::event::{
    Event, TaskAdded, TaskCompleted, TaskFailed, TaskProgress, TaskTransition, TaskType,
    UpgradeCompleted, UpgradeFailed, UpgradePhaseChanged, UpgradeStarted,
};
use crate::recorder::{RecordError, Recorder};
use crate::state::UpgradeView;

/// Tracks one upgrade; cheap to clone (shares the recorder).
#[derive(Debug, Clone)]
pub struct ProgressTracker {
    recorder: Arc<Recorder>,
    upgrade_id: String,
}

fn text(value: Option<&str>) -> Option<String> {
    value.map(str::to_string)
}

/// Generates, for each operation, the event constructor, the blocking call and the async call.
macro_rules! operations {
    ($(
        $(#[$doc:meta])*
        fn $name:ident / $name_async:ident / $event_fn:ident (&$self:ident $(, $arg:ident : $ty:ty)*) => $event:expr;
    )*) => {
        impl ProgressTracker {
            $(
                $(#[$doc])*
                pub fn $name(&$self $(, $arg: $ty)*) -> Result<u64, RecordError> {
                    $self.emit(&$self.$event_fn($($arg),*))
                }

                $(#[$doc])*
                ///
                /// Async form: never blocks the runtime.
                pub async fn $name_async(&$self $(, $arg: $ty)*) -> Result<u64, RecordError> {
                    $self.emit_async(&$self.$event_fn($($arg),*)).await
                }

                fn $event_fn(&$self $(, $arg: $ty)*) -> Event {
                    $event
                }
            )*
        }
    };
}

operations! {
    /// Records `upgrade.started` for this tracker's upgrade.
    fn start_upgrade / start_upgrade_async / ev_start_upgrade(&self, plan_id: &str, cluster_name: &str, phase: &str, metadata: Option<Map<String, Value>>) =>
        Event::UpgradeStarted(UpgradeStarted {
            id: None,
            upgrade_id: self.upgrade_id.clone(),
            plan_id: plan_id.into(),
            cluster_name: cluster_name.into(),
            phase: phase.into(),
            metadata,
        });
    /// Records `upgrade.phase_changed`.
    fn change_phase / change_phase_async / ev_change_phase(&self, phase: &str) =>
        Event::UpgradePhaseChanged(UpgradePhaseChanged { id: None, upgrade_id: self.upgrade_id.clone(), phase: phase.into() });
    /// Records `upgrade.completed`.
    fn complete_upgrade / complete_upgrade_async / ev_complete_upgrade(&self, message: Option<&str>) =>
        Event::UpgradeCompleted(UpgradeCompleted { id: None, upgrade_id: self.upgrade_id.clone(), message: text(message) });
    /// Records `upgrade.failed`.
    fn fail_upgrade / fail_upgrade_async / ev_fail_upgrade(&self, error: &str) =>
        Event::UpgradeFailed(UpgradeFailed { id: None, upgrade_id: self.upgrade_id.clone(), error: error.into() });
    /// Records `task.added` (status `not_started`); `parent` makes it a subtask.
    fn add_task / add_task_async / ev_add_task(&self, task_id: &str, name: &str, task_type: TaskType, parent: Option<&str>) =>
        Event::TaskAdded(TaskAdded {
            id: None,
            upgrade_id: self.upgrade_id.clone(),
            task_id: task_id.into(),
            name: name.into(),
            task_type,
            parent_id: text(parent),
        });
    /// Records `task.started`.
    fn start_task / start_task_async / ev_start_task(&self, task_id: &str) =>
        Event::TaskStarted(self.transition(task_id, None));
    /// Records `task.progress` (percentage in 0..=100).
    fn update_task_progress / update_task_progress_async / ev_progress(&self, task_id: &str, percentage: f64, message: Option<&str>) =>
        Event::TaskProgress(TaskProgress {
            id: None,
            upgrade_id: self.upgrade_id.clone(),
            task_id: task_id.into(),
            percentage,
            message: text(message),
            details: None,
        });
    /// Records `task.completed`, with optional metrics.
    fn complete_task / complete_task_async / ev_complete_task(&self, task_id: &str, message: Option<&str>, metrics: Option<Map<String, Value>>) =>
        Event::TaskCompleted(TaskCompleted {
            id: None,
            upgrade_id: self.upgrade_id.clone(),
            task_id: task_id.into(),
            message: text(message),
            metrics,
        });
    /// Records `task.failed`.
    fn fail_task / fail_task_async / ev_fail_task(&self, task_id: &str, error: &str) =>
        Event::TaskFailed(TaskFailed { id: None, upgrade_id: self.upgrade_id.clone(), task_id: task_id.into(), error: error.into() });
    /// Records `task.paused`.
    fn pause_task / pause_task_async / ev_pause_task(&self, task_id: &str, message: Option<&str>) =>
        Event::TaskPaused(self.transition(task_id, message));
    /// Records `task.resumed`.
    fn resume_task / resume_task_async / ev_resume_task(&self, task_id: &str) =>
        Event::TaskResumed(self.transition(task_id, None));
    /// Records `task.cancelled`.
    fn cancel_task / cancel_task_async / ev_cancel_task(&self, task_id: &str, message: Option<&str>) =>
        Event::TaskCancelled(self.transition(task_id, message));
}

impl ProgressTracker {
    /// A tracker for `upgrade_id` (start it with [`ProgressTracker::start_upgrade`], or attach to
    /// an upgrade already in the journal).
    pub fn new(recorder: Arc<Recorder>, upgrade_id: impl Into<String>) -> ProgressTracker {
        ProgressTracker {
            recorder,
            upgrade_id: upgrade_id.into(),
        }
    }

    /// The upgrade id.
    pub fn upgrade_id(&self) -> &str {
        &self.upgrade_id
    }

    /// The current view: status, phase, overall percentage (rolled up from subtasks), tasks.
    /// `None` until the upgrade started; an error once the recorder stopped serving (its
    /// journal failed).
    pub fn progress(&self) -> Result<Option<UpgradeView>, RecordError> {
        self.recorder.upgrade(&self.upgrade_id)
    }

    /// Records any event (e.g. one carrying an idempotency `id`); returns its offset, or the
    /// offset it was already recorded at.
    pub fn emit(&self, event: &Event) -> Result<u64, RecordError> {
        Ok(self.recorder.record(event)?.offset())
    }

    /// Async form of [`ProgressTracker::emit`].
    pub async fn emit_async(&self, event: &Event) -> Result<u64, RecordError> {
        Ok(self.recorder.record_async(event).await?.offset())
    }

    fn transition(&self, task_id: &str, message: Option<&str>) -> TaskTransition {
        TaskTransition {
            id: None,
            upgrade_id: self.upgrade_id.clone(),
            task_id: task_id.into(),
            message: text(message),
        }
    }
}
