//! `tasks`: per upgrade, every task's timings, the slowest path through the task tree, and the
//! failure with the events that led to it.
//!
//! Definitions (times are the recorder's):
//! - *wait*: `task.added` → first `task.started` (or first progress, which starts a task too).
//! - *duration*: first start → `task.completed` / `.failed` / `.cancelled`. A task still open
//!   at the end of the range counts until the range's last record and is marked `open`; a task
//!   never started has no wait and a duration of 0.
//! - *slowest path*: among the chains from a root task to a leaf (following `parent_id`), the
//!   one with the largest **sum of task durations**; ties go to the chain added first. A parent
//!   usually spans its children, so the sum counts nested time more than once: the path is a
//!   ranking ("which nested chain of work took longest"), not a wall-clock span.
//! - *failure chain*: for each `task.failed` of an upgrade, the failure itself and the last
//!   `--context N` events (default 5) of that task **and its ancestors** before it, oldest
//!   first; for an `upgrade.failed`, the error and the last N events of the whole upgrade before
//!   it. A failed upgrade without a failed task is reported with that upgrade-wide context only.
//!
//! Memory: per task its timings and a ring of its last N events, per upgrade a ring of its last
//! N events: O(tasks × N), independent of the number of events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;

use logbook::event::{Event, ProgressStatus};
use logbook::timestamp::format_us;
use serde_json::{Value, json};

use crate::decode::Decoded;
use crate::error::Result;
use crate::render::{describe, duration, one_line, rel};

/// Largest `--context`.
pub const CONTEXT_MAX: usize = 1000;

/// One event kept as context.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// Offset.
    pub offset: u64,
    /// Time.
    pub ts_us: i64,
    /// Event type.
    pub kind: &'static str,
    /// Task, for task events.
    pub task_id: Option<String>,
    /// One-line description.
    pub text: String,
}

impl Note {
    fn to_json(&self) -> Value {
        json!({"offset": self.offset, "ts": format_us(self.ts_us), "type": self.kind,
               "task_id": self.task_id, "text": self.text})
    }
}

/// Timings of one task.
#[derive(Debug, Clone)]
pub struct TaskTimes {
    /// Task id.
    pub task_id: String,
    /// Name.
    pub name: String,
    /// Parent.
    pub parent_id: Option<String>,
    /// Status at the end of the range.
    pub status: ProgressStatus,
    /// `task.added` time.
    pub added_us: i64,
    /// First start.
    pub started_us: Option<i64>,
    /// End (completed, failed, cancelled).
    pub ended_us: Option<i64>,
    /// Error of a failed task.
    pub error: Option<String>,
    parent: Option<usize>,
    ring: VecDeque<Note>,
}

/// A task failure and what led to it.
#[derive(Debug, Clone)]
pub struct TaskFailure {
    /// The failed task.
    pub task_id: String,
    /// Its error.
    pub error: String,
    /// The `task.failed` event.
    pub event: Note,
    /// Events of the task and its ancestors before it, oldest first.
    pub preceding: Vec<Note>,
}

/// One upgrade's analysis.
#[derive(Debug, Clone)]
pub struct UpgradeTasks {
    /// Upgrade id.
    pub upgrade_id: String,
    /// Cluster.
    pub cluster_name: String,
    /// Status at the end of the range.
    pub status: ProgressStatus,
    /// Start.
    pub started_us: i64,
    /// End.
    pub ended_us: Option<i64>,
    /// Error of a failed upgrade.
    pub error: Option<String>,
    /// Tasks in added order.
    pub tasks: Vec<TaskTimes>,
    /// Task failures in order.
    pub failures: Vec<TaskFailure>,
    /// The `upgrade.failed` event and the upgrade's events before it.
    pub upgrade_failure: Option<(Note, Vec<Note>)>,
    index: HashMap<String, usize>,
    ring: VecDeque<Note>,
}

/// The analysis, fed record by record.
#[derive(Debug)]
pub struct TaskAnalysis {
    context: usize,
    upgrades: BTreeMap<String, UpgradeTasks>,
    first_us: Option<i64>,
    last_us: Option<i64>,
}

fn push_ring(ring: &mut VecDeque<Note>, note: Note, cap: usize) {
    if cap == 0 {
        return;
    }
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(note);
}

impl TaskAnalysis {
    /// An empty analysis keeping `context` events of context (at most [`CONTEXT_MAX`]).
    pub fn new(context: usize) -> TaskAnalysis {
        TaskAnalysis {
            context: context.min(CONTEXT_MAX),
            upgrades: BTreeMap::new(),
            first_us: None,
            last_us: None,
        }
    }

    /// The upgrades analysed, by id.
    pub fn upgrades(&self) -> &BTreeMap<String, UpgradeTasks> {
        &self.upgrades
    }

    /// Time of the first record seen.
    pub fn first_us(&self) -> Option<i64> {
        self.first_us
    }

    /// Adds one record.
    pub fn push(&mut self, record: &Decoded) {
        self.first_us.get_or_insert(record.ts_us);
        self.last_us = Some(record.ts_us);
        let Ok(event) = &record.event else { return };
        let Some(upgrade_id) = event.upgrade_id() else {
            return;
        };
        if let Event::UpgradeStarted(e) = event {
            self.upgrades
                .entry(e.upgrade_id.clone())
                .or_insert_with(|| UpgradeTasks {
                    upgrade_id: e.upgrade_id.clone(),
                    cluster_name: e.cluster_name.clone(),
                    status: ProgressStatus::InProgress,
                    started_us: record.ts_us,
                    ended_us: None,
                    error: None,
                    tasks: Vec::new(),
                    failures: Vec::new(),
                    upgrade_failure: None,
                    index: HashMap::new(),
                    ring: VecDeque::new(),
                });
        }
        let cap = self.context;
        let Some(upgrade) = self.upgrades.get_mut(upgrade_id) else {
            return;
        };
        if let Event::TaskAdded(e) = event
            && !upgrade.index.contains_key(&e.task_id)
        {
            let parent = e
                .parent_id
                .as_deref()
                .and_then(|p| upgrade.index.get(p))
                .copied();
            upgrade.index.insert(e.task_id.clone(), upgrade.tasks.len());
            upgrade.tasks.push(TaskTimes {
                task_id: e.task_id.clone(),
                name: e.name.clone(),
                parent_id: e.parent_id.clone(),
                status: ProgressStatus::NotStarted,
                added_us: record.ts_us,
                started_us: None,
                ended_us: None,
                error: None,
                parent,
                ring: VecDeque::new(),
            });
        }
        let task_index = event.task_id().and_then(|t| upgrade.index.get(t)).copied();
        let name = task_index
            .and_then(|i| upgrade.tasks.get(i))
            .map(|t| t.name.as_str());
        let note = Note {
            offset: record.offset,
            ts_us: record.ts_us,
            kind: event.kind(),
            task_id: event.task_id().map(str::to_string),
            text: describe(event, name),
        };
        match event {
            Event::UpgradeCompleted(_) => {
                upgrade.status = ProgressStatus::Completed;
                upgrade.ended_us = Some(record.ts_us);
            }
            Event::UpgradeFailed(e) => {
                upgrade.status = ProgressStatus::Failed;
                upgrade.ended_us = Some(record.ts_us);
                upgrade.error = Some(e.error.clone());
                upgrade.upgrade_failure =
                    Some((note.clone(), upgrade.ring.iter().cloned().collect()));
            }
            Event::TaskFailed(e) => {
                if let Some(i) = task_index {
                    let preceding = preceding(upgrade, i, cap);
                    upgrade.failures.push(TaskFailure {
                        task_id: e.task_id.clone(),
                        error: e.error.clone(),
                        event: note.clone(),
                        preceding,
                    });
                }
            }
            _ => {}
        }
        if let Some(task) = task_index.and_then(|i| upgrade.tasks.get_mut(i)) {
            let ts = record.ts_us;
            match event {
                Event::TaskStarted(_) | Event::TaskResumed(_) | Event::TaskProgress(_) => {
                    task.status = ProgressStatus::InProgress;
                    task.started_us.get_or_insert(ts);
                }
                Event::TaskPaused(_) => task.status = ProgressStatus::Paused,
                Event::TaskCompleted(_) => {
                    task.status = ProgressStatus::Completed;
                    task.started_us.get_or_insert(ts);
                    task.ended_us = Some(ts);
                }
                Event::TaskFailed(e) => {
                    task.status = ProgressStatus::Failed;
                    task.ended_us = Some(ts);
                    task.error = Some(e.error.clone());
                }
                Event::TaskCancelled(_) => {
                    task.status = ProgressStatus::Cancelled;
                    task.ended_us = Some(ts);
                }
                _ => {}
            }
            push_ring(&mut task.ring, note.clone(), cap);
        }
        push_ring(&mut upgrade.ring, note, cap);
    }

    /// A task's duration in µs and whether it is still open at the end of the range.
    pub fn duration(&self, task: &TaskTimes) -> (i64, bool) {
        match (task.started_us, task.ended_us) {
            (Some(s), Some(e)) => (e - s, false),
            (Some(s), None) => (self.last_us.unwrap_or(s) - s, true),
            (None, _) => (0, false),
        }
    }

    /// The slowest root-to-leaf chain of an upgrade (see the module docs): task indices from
    /// the root, and the summed duration.
    pub fn slowest_path(&self, upgrade: &UpgradeTasks) -> (Vec<usize>, i64) {
        // Per task: the best chain sum from it down to a leaf, and the child that continues it.
        let mut best: Vec<(i64, Option<usize>)> = vec![(0, None); upgrade.tasks.len()];
        let sum = |best: &[(i64, Option<usize>)], i: usize| best.get(i).map_or(0, |b| b.0);
        // Children are added after their parents: a reverse pass sees every child first.
        for (i, task) in upgrade.tasks.iter().enumerate().rev() {
            let child = best.get(i).and_then(|b| b.1);
            let total = self.duration(task).0 + child.map_or(0, |c| sum(&best, c));
            if let Some(slot) = best.get_mut(i) {
                slot.0 = total;
            }
            if let Some(p) = task.parent {
                let current = best.get(p).and_then(|b| b.1).map(|c| sum(&best, c));
                // `>=` in a reverse pass: on a tie the earlier-added child wins.
                if current.is_none_or(|b| total >= b)
                    && let Some(slot) = best.get_mut(p)
                {
                    slot.1 = Some(i);
                }
            }
        }
        let mut root: Option<usize> = None;
        for (i, task) in upgrade.tasks.iter().enumerate() {
            if task.parent.is_none() && root.is_none_or(|r| sum(&best, i) > sum(&best, r)) {
                root = Some(i);
            }
        }
        let mut path = Vec::new();
        let mut at = root;
        while let Some(i) = at {
            if path.len() > upgrade.tasks.len() {
                break; // parents precede children, so no cycle; bounded anyway
            }
            path.push(i);
            at = best.get(i).and_then(|b| b.1);
        }
        (path, root.map_or(0, |r| sum(&best, r)))
    }
}

/// The last `cap` events of task `i` and its ancestors, oldest first.
fn preceding(upgrade: &UpgradeTasks, i: usize, cap: usize) -> Vec<Note> {
    let mut notes: Vec<Note> = Vec::new();
    let mut at = Some(i);
    let mut hops = 0;
    while let Some(t) = at.and_then(|t| upgrade.tasks.get(t)) {
        notes.extend(t.ring.iter().cloned());
        at = t.parent;
        hops += 1;
        if hops > upgrade.tasks.len() {
            break;
        }
    }
    notes.sort_by_key(|n| n.offset);
    notes.dedup_by_key(|n| n.offset);
    let skip = notes.len().saturating_sub(cap);
    notes.split_off(skip)
}

/// Writes the analysis: human text, or one JSON object per upgrade.
pub fn write_tasks(
    out: &mut dyn Write,
    analysis: &TaskAnalysis,
    only: Option<&str>,
    json: bool,
) -> Result<()> {
    let base = analysis.first_us.unwrap_or(0);
    for upgrade in analysis.upgrades.values() {
        if only.is_some_and(|id| id != upgrade.upgrade_id) {
            continue;
        }
        let (path, path_us) = analysis.slowest_path(upgrade);
        let path_ids: Vec<&str> = path
            .iter()
            .filter_map(|i| upgrade.tasks.get(*i))
            .map(|t| t.task_id.as_str())
            .collect();
        if json {
            let tasks: Vec<Value> = upgrade
                .tasks
                .iter()
                .map(|t| {
                    let (d, open) = analysis.duration(t);
                    json!({"task_id": t.task_id, "name": t.name, "parent_id": t.parent_id,
                           "status": t.status,
                           "added": format_us(t.added_us),
                           "started": t.started_us.map(format_us),
                           "ended": t.ended_us.map(format_us),
                           "wait_us": t.started_us.map(|s| s - t.added_us),
                           "duration_us": d, "open": open, "error": t.error})
                })
                .collect();
            let failures: Vec<Value> = upgrade
                .failures
                .iter()
                .map(|f| {
                    json!({"task_id": f.task_id, "error": f.error, "event": f.event.to_json(),
                           "preceding": f.preceding.iter().map(Note::to_json).collect::<Vec<_>>()})
                })
                .collect();
            let upgrade_failure = upgrade.upgrade_failure.as_ref().map(|(note, before)| {
                json!({"error": upgrade.error, "event": note.to_json(),
                       "preceding": before.iter().map(Note::to_json).collect::<Vec<_>>()})
            });
            let line = json!({
                "upgrade_id": upgrade.upgrade_id, "cluster_name": upgrade.cluster_name,
                "status": upgrade.status, "started": format_us(upgrade.started_us),
                "ended": upgrade.ended_us.map(format_us),
                "duration_us": upgrade.ended_us.map(|e| e - upgrade.started_us),
                "error": upgrade.error, "tasks": tasks,
                "slowest_path": {"tasks": path_ids, "duration_us": path_us},
                "failed_tasks": failures, "upgrade_failure": upgrade_failure,
            });
            writeln!(out, "{line}")?;
            continue;
        }
        let mark = if upgrade.status == ProgressStatus::Failed {
            "!!"
        } else {
            "  "
        };
        writeln!(
            out,
            "{mark} upgrade {} ({}): {}{}{}",
            upgrade.upgrade_id,
            upgrade.cluster_name,
            upgrade.status.as_str(),
            upgrade
                .ended_us
                .map(|e| format!(" after {}", duration(e - upgrade.started_us)))
                .unwrap_or_default(),
            upgrade
                .error
                .as_deref()
                .map(|e| format!(": {}", one_line(e)))
                .unwrap_or_default()
        )?;
        writeln!(
            out,
            "     {:<36} {:<11} {:>12} {:>12}",
            "task", "status", "wait", "duration"
        )?;
        for task in &upgrade.tasks {
            let depth = depth_of(upgrade, task);
            let (d, open) = analysis.duration(task);
            let mark = if task.status == ProgressStatus::Failed {
                "!!"
            } else {
                "  "
            };
            writeln!(
                out,
                "{mark}   {:<36} {:<11} {:>12} {:>12}{}",
                format!("{}{}", "  ".repeat(depth), task.task_id),
                task.status.as_str(),
                task.started_us
                    .map(|s| duration(s - task.added_us))
                    .unwrap_or_else(|| "-".into()),
                if task.started_us.is_some() {
                    duration(d)
                } else {
                    "-".into()
                },
                if open { " (open)" } else { "" }
            )?;
        }
        writeln!(
            out,
            "     slowest path (sum of durations {}): {}",
            duration(path_us),
            if path_ids.is_empty() {
                "(no tasks)".to_string()
            } else {
                path_ids.join(" → ")
            }
        )?;
        for f in &upgrade.failures {
            writeln!(
                out,
                "     failure of task {}: {}",
                f.task_id,
                one_line(&f.error)
            )?;
            writeln!(out, "       events of the task and its parents before it:")?;
            for n in &f.preceding {
                write_note(out, "  ", n, base)?;
            }
            write_note(out, "!!", &f.event, base)?;
        }
        if let Some((note, before)) = &upgrade.upgrade_failure {
            if upgrade.failures.is_empty() {
                writeln!(
                    out,
                    "     no task failed; the upgrade's events before its failure:"
                )?;
                for n in before {
                    write_note(out, "  ", n, base)?;
                }
            }
            write_note(out, "!!", note, base)?;
        }
    }
    Ok(())
}

fn write_note(out: &mut dyn Write, mark: &str, note: &Note, base: i64) -> Result<()> {
    writeln!(
        out,
        "{mark}       {:>14}  #{:<8} {}",
        rel(note.ts_us - base),
        note.offset,
        note.text
    )?;
    Ok(())
}

fn depth_of(upgrade: &UpgradeTasks, task: &TaskTimes) -> usize {
    let mut depth = 0;
    let mut at = task.parent;
    while let Some(p) = at.and_then(|p| upgrade.tasks.get(p)) {
        depth += 1;
        at = p.parent;
        if depth > upgrade.tasks.len() {
            break;
        }
    }
    depth
}
