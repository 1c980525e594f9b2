//! Upgrade and task views, folded from events.
//!
//! Overall percentage (the roll-up rule): a task's effective percentage is 100 once completed;
//! otherwise, if it has subtasks, the mean of its subtasks' effective percentages; otherwise its
//! last reported percentage (0 before any). Cancelled tasks count with their last value. The
//! upgrade's percentage is the mean over its root tasks, or 100 once the upgrade completed.
//!
//! [`roll_up`] applies the rule to any view (the SQLite projection uses it on the rows it
//! reads); the fold keeps each task's parent index so its own roll-up needs no lookups, and
//! shares tasks behind `Arc` so a snapshot of 10,000 tasks copies pointers, not tasks. Both go
//! through one function ([`rolled`]), so they give bit-identical percentages.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{ProgressStatus, TaskType};

/// The current (or as-of) view of one upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    /// Tasks in the order they were added (shared: snapshots are cheap).
    #[schema(value_type = Vec<TaskView>)]
    pub tasks: Vec<Arc<TaskView>>,
}

/// The view of one task.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    /// Index of each task's parent (parents are always added before their children).
    pub parents: Vec<Option<usize>>,
}

impl Upgrade {
    pub fn task(&self, task_id: &str) -> Option<&TaskView> {
        self.index
            .get(task_id)
            .and_then(|i| self.view.tasks.get(*i))
            .map(|t| &**t)
    }

    pub fn task_mut(&mut self, task_id: &str) -> Option<&mut TaskView> {
        let i = *self.index.get(task_id)?;
        self.view.tasks.get_mut(i).map(Arc::make_mut)
    }

    /// Adds a task (its parent, if any, must already be indexed).
    pub fn push_task(&mut self, task: TaskView) {
        let parent = task
            .parent_id
            .as_deref()
            .and_then(|p| self.index.get(p))
            .copied();
        self.index
            .insert(task.task_id.clone(), self.view.tasks.len());
        self.parents.push(parent);
        self.view.tasks.push(Arc::new(task));
    }

    /// The view with percentages rolled up (only tasks whose percentage changed are touched).
    pub fn snapshot(&mut self) -> UpgradeView {
        let parents = &self.parents;
        let (effective, overall) = rolled(&self.view, |i| parents.get(i).copied().flatten());
        store(&mut self.view, &effective, overall);
        self.view.clone()
    }
}

/// Rolls up the percentages of `view` in place (see the module docs for the rule).
pub fn roll_up(view: &mut UpgradeView) {
    let position: HashMap<&str, usize> = view
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.task_id.as_str(), i))
        .collect();
    let parents: Vec<Option<usize>> = view
        .tasks
        .iter()
        .map(|t| {
            t.parent_id
                .as_deref()
                .and_then(|p| position.get(p))
                .copied()
        })
        .collect();
    let (effective, overall) = rolled(view, |i| parents.get(i).copied().flatten());
    store(view, &effective, overall);
}

/// Effective percentages of every task and the upgrade's overall percentage, in one reverse
/// pass (children come after their parents).
fn rolled(view: &UpgradeView, parent_of: impl Fn(usize) -> Option<usize>) -> (Vec<f64>, f64) {
    let tasks = &view.tasks;
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
        if let Some(slot) = parent_of(i).and_then(|p| sums.get_mut(p)) {
            slot.0 += own;
            slot.1 += 1;
        }
    }
    let mut roots = (0.0f64, 0usize);
    for (task, pct) in tasks.iter().zip(&effective) {
        if task.parent_id.is_none() {
            roots.0 += *pct;
            roots.1 += 1;
        }
    }
    let overall = if view.status == ProgressStatus::Completed {
        100.0
    } else if roots.1 == 0 {
        0.0
    } else {
        roots.0 / roots.1 as f64
    };
    (effective, overall)
}

fn store(view: &mut UpgradeView, effective: &[f64], overall: f64) {
    for (task, pct) in view.tasks.iter_mut().zip(effective) {
        // Compare bits: writes (and so copy-on-write of shared tasks) only on change.
        if task.effective_percentage.to_bits() != pct.to_bits() {
            Arc::make_mut(task).effective_percentage = *pct;
        }
    }
    view.percentage = overall;
}
