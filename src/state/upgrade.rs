//! Upgrade and task views, folded from events.
//!
//! Overall percentage (the roll-up rule): a task's effective percentage is 100 once completed;
//! otherwise, if it has subtasks, the mean of its subtasks' effective percentages; otherwise its
//! last reported percentage (0 before any). Cancelled tasks count with their last value. The
//! upgrade's percentage is the mean over its root tasks, or 100 once the upgrade completed.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{ProgressStatus, TaskType};

/// The current (or as-of) view of one upgrade.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpgradeView {
    /// Upgrade id.
    pub upgrade_id: String,
    /// Plan id.
    pub plan_id: String,
    /// Cluster.
    pub cluster_name: String,
    /// Current phase.
    pub phase: String,
    /// Status.
    pub status: ProgressStatus,
    /// Metadata given at start.
    pub metadata: Map<String, Value>,
    /// Overall percentage (see the module docs).
    pub percentage: f64,
    /// Message given on completion.
    pub message: Option<String>,
    /// Error given on failure.
    pub error: Option<String>,
    /// Start time (µs since epoch).
    pub started_at_us: i64,
    /// Completion or failure time.
    pub completed_at_us: Option<i64>,
    /// Offset of the last event that changed this upgrade.
    pub last_offset: u64,
    /// Tasks in the order they were added.
    pub tasks: Vec<TaskView>,
}

/// The view of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    /// Task id (unique within the upgrade).
    pub task_id: String,
    /// Name.
    pub name: String,
    /// Type.
    pub task_type: TaskType,
    /// Parent task, for a subtask.
    pub parent_id: Option<String>,
    /// Status.
    pub status: ProgressStatus,
    /// Last reported percentage (100 once completed).
    pub percentage: f64,
    /// Effective percentage including subtasks (see the module docs).
    pub effective_percentage: f64,
    /// Last message.
    pub message: Option<String>,
    /// Details of the last progress report.
    pub details: Option<Map<String, Value>>,
    /// Metrics given on completion.
    pub metrics: Option<Map<String, Value>>,
    /// Error given on failure.
    pub error: Option<String>,
    /// First start time.
    pub started_at_us: Option<i64>,
    /// Completion, failure or cancellation time.
    pub completed_at_us: Option<i64>,
}

/// Mutable fold state of an upgrade (tasks indexed by id, in insertion order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Upgrade {
    pub view: UpgradeView,
    /// task id → index in `view.tasks`.
    pub index: BTreeMap<String, usize>,
}

impl Upgrade {
    pub fn task(&self, task_id: &str) -> Option<&TaskView> {
        self.index
            .get(task_id)
            .and_then(|i| self.view.tasks.get(*i))
    }

    pub fn task_mut(&mut self, task_id: &str) -> Option<&mut TaskView> {
        let i = *self.index.get(task_id)?;
        self.view.tasks.get_mut(i)
    }

    /// The view with percentages rolled up.
    pub fn snapshot(&self) -> UpgradeView {
        let mut view = self.view.clone();
        let effective = effective_percentages(&view.tasks);
        for (task, pct) in view.tasks.iter_mut().zip(&effective) {
            task.effective_percentage = *pct;
        }
        let roots: Vec<f64> = view
            .tasks
            .iter()
            .zip(&effective)
            .filter(|(t, _)| t.parent_id.is_none())
            .map(|(_, p)| *p)
            .collect();
        view.percentage = if view.status == ProgressStatus::Completed {
            100.0
        } else if roots.is_empty() {
            0.0
        } else {
            roots.iter().sum::<f64>() / roots.len() as f64
        };
        view
    }
}

/// Effective percentages of `tasks` (parents always precede their children, since a parent
/// must exist when a child is added), computed bottom-up in one reverse pass.
fn effective_percentages(tasks: &[TaskView]) -> Vec<f64> {
    let position: BTreeMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.task_id.as_str(), i))
        .collect();
    let mut sums = vec![(0.0f64, 0usize); tasks.len()];
    let mut effective = vec![0.0f64; tasks.len()];
    for (i, task) in tasks.iter().enumerate().rev() {
        let (sum, children) = sums.get(i).copied().unwrap_or((0.0, 0));
        let own = if task.status == ProgressStatus::Completed {
            100.0
        } else if children > 0 {
            sum / children as f64
        } else {
            task.percentage
        };
        if let Some(slot) = effective.get_mut(i) {
            *slot = own;
        }
        if let Some(parent) = task.parent_id.as_deref().and_then(|p| position.get(p))
            && let Some(slot) = sums.get_mut(*parent)
        {
            slot.0 += own;
            slot.1 += 1;
        }
    }
    effective
}
