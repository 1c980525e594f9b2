//! The journal's domain state, folded from its events in offset order: upgrades with their
//! tasks, sessions with their collections, artifacts, and the idempotency keys seen.
//!
//! One fold serves three purposes: the stateful half of validation ([`State::check`]: unknown
//! ids, duplicates, transitions from terminal statuses), read-your-writes views for the embedded
//! API, and views *as of* any offset or time (replay a prefix of the journal into a fresh
//! `State`). The SQLite projections hold the same facts in tables; this fold is their in-memory
//! reference and what `record` checks against.
//!
//! Invariants: `apply` is only called with events that passed `check` (the recorder holds one
//! lock across check, sequencing and apply, so the journal's order is the checked order);
//! `apply` never fails and never reads the clock: replaying the same events gives the same
//! state. Task transitions: `task.started` from not_started or paused (a restart), `task.paused`
//! from in_progress, `task.resumed` from paused, `task.progress` from any non-terminal status
//! (it moves not_started and paused to in_progress), `task.completed`/`.failed`/`.cancelled`
//! from any non-terminal status. Nothing changes a terminal task or upgrade, and no task event
//! is accepted on a terminal upgrade.

mod as_of;
mod refusal;
mod session;
mod upgrade;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

pub use as_of::{Until, state_at};
pub use refusal::Refusal;
pub use session::{ArtifactView, CollectionView, SessionView};
pub use upgrade::{TaskView, UpgradeView, roll_up};

use crate::event::{ArtifactStatus, Event, ProgressStatus};
use upgrade::Upgrade;

/// What `check` found: the event may be appended, or it repeats an idempotency key already in
/// the journal (append nothing; the existing offset is the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Fresh,
    /// Already recorded at this offset.
    AlreadyRecorded(u64),
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct State {
    upgrades: BTreeMap<String, Upgrade>,
    sessions: BTreeMap<String, SessionView>,
    artifacts: BTreeMap<String, ArtifactView>,
    keys: HashMap<String, u64>,
    next_offset: u64,
}

fn terminal(what: &'static str, id: &str, status: ProgressStatus) -> Refusal {
    Refusal::Terminal {
        what,
        id: id.to_string(),
        status: status.as_str(),
    }
}

impl State {
    /// An empty state (an empty journal).
    pub fn new() -> State {
        State::default()
    }

    /// The offset the next applied event will have.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The offset holding the event recorded with idempotency key `key`, if any.
    pub fn recorded_key(&self, key: &str) -> Option<u64> {
        self.keys.get(key).copied()
    }

    /// Checks `event` against the current state.
    pub fn check(&self, event: &Event) -> Result<Verdict, Refusal> {
        if let Some(offset) = event.id().and_then(|key| self.keys.get(key)) {
            return Ok(Verdict::AlreadyRecorded(*offset));
        }
        match event {
            Event::JournalRepaired(_) | Event::SubscriberSkipped(_) => {
                Err(Refusal::System(event.kind()))
            }
            Event::UpgradeStarted(e) => match self.upgrades.contains_key(&e.upgrade_id) {
                true => Err(Refusal::Duplicate {
                    what: "upgrade",
                    id: e.upgrade_id.clone(),
                }),
                false => Ok(Verdict::Fresh),
            },
            Event::UpgradePhaseChanged(e) => {
                self.live_upgrade(&e.upgrade_id).map(|_| Verdict::Fresh)
            }
            Event::UpgradeCompleted(e) => self.live_upgrade(&e.upgrade_id).map(|_| Verdict::Fresh),
            Event::UpgradeFailed(e) => self.live_upgrade(&e.upgrade_id).map(|_| Verdict::Fresh),
            Event::TaskAdded(e) => {
                let upgrade = self.live_upgrade(&e.upgrade_id)?;
                if upgrade.task(&e.task_id).is_some() {
                    return Err(Refusal::Duplicate {
                        what: "task",
                        id: e.task_id.clone(),
                    });
                }
                match e.parent_id.as_deref() {
                    Some(parent) if parent == e.task_id => Err(Refusal::ParentCycle(parent.into())),
                    Some(parent) if upgrade.task(parent).is_none() => Err(Refusal::UnknownParent {
                        upgrade_id: e.upgrade_id.clone(),
                        parent_id: parent.into(),
                    }),
                    _ => Ok(Verdict::Fresh),
                }
            }
            Event::TaskStarted(e) => {
                self.task_transition(&e.upgrade_id, &e.task_id, "start", |s| {
                    matches!(s, ProgressStatus::NotStarted | ProgressStatus::Paused)
                })
            }
            Event::TaskPaused(e) => self.task_transition(&e.upgrade_id, &e.task_id, "pause", |s| {
                s == ProgressStatus::InProgress
            }),
            Event::TaskResumed(e) => {
                self.task_transition(&e.upgrade_id, &e.task_id, "resume", |s| {
                    s == ProgressStatus::Paused
                })
            }
            Event::TaskCancelled(e) => {
                self.task_transition(&e.upgrade_id, &e.task_id, "cancel", |_| true)
            }
            Event::TaskProgress(e) => {
                self.task_transition(&e.upgrade_id, &e.task_id, "progress", |_| true)
            }
            Event::TaskCompleted(e) => {
                self.task_transition(&e.upgrade_id, &e.task_id, "complete", |_| true)
            }
            Event::TaskFailed(e) => {
                self.task_transition(&e.upgrade_id, &e.task_id, "fail", |_| true)
            }
            Event::SessionCreated(e) => {
                if self.sessions.contains_key(&e.session_id) {
                    return Err(Refusal::Duplicate {
                        what: "session",
                        id: e.session_id.clone(),
                    });
                }
                // The upgrade may be recorded elsewhere: an artifact store can keep its own
                // journal, apart from the tracker's (as the original system's two classes did).
                Ok(Verdict::Fresh)
            }
            Event::CollectionCreated(e) => {
                let session = self.session(&e.session_id)?;
                if session
                    .collections
                    .iter()
                    .any(|c| c.collection_id == e.collection_id)
                {
                    return Err(Refusal::Duplicate {
                        what: "collection",
                        id: e.collection_id.clone(),
                    });
                }
                self.session_task(session, e.task_id.as_deref())
            }
            Event::ArtifactAdded(e) => {
                if self.artifacts.contains_key(&e.artifact_id) {
                    return Err(Refusal::Duplicate {
                        what: "artifact",
                        id: e.artifact_id.clone(),
                    });
                }
                let session = self.session(&e.session_id)?;
                if !session
                    .collections
                    .iter()
                    .any(|c| c.collection_id == e.collection_id)
                {
                    return Err(Refusal::UnknownCollection {
                        session_id: e.session_id.clone(),
                        collection_id: e.collection_id.clone(),
                    });
                }
                self.session_task(session, e.task_id.as_deref())
            }
            Event::ArtifactUploaded(e) => self.live_artifact(&e.artifact_id),
            Event::ArtifactUploadFailed(e) => self.live_artifact(&e.artifact_id),
            Event::ArtifactArchived(e) => self.live_artifact(&e.artifact_id),
            Event::ArtifactDeleted(e) => self.live_artifact(&e.artifact_id),
        }
    }

    fn upgrade(&self, upgrade_id: &str) -> Result<&Upgrade, Refusal> {
        self.upgrades
            .get(upgrade_id)
            .ok_or_else(|| Refusal::UnknownUpgrade(upgrade_id.into()))
    }

    fn live_upgrade(&self, upgrade_id: &str) -> Result<&Upgrade, Refusal> {
        let upgrade = self.upgrade(upgrade_id)?;
        match upgrade.view.status.is_terminal() {
            true => Err(terminal("upgrade", upgrade_id, upgrade.view.status)),
            false => Ok(upgrade),
        }
    }

    fn task_transition(
        &self,
        upgrade_id: &str,
        task_id: &str,
        action: &'static str,
        allowed: impl Fn(ProgressStatus) -> bool,
    ) -> Result<Verdict, Refusal> {
        let upgrade = self.live_upgrade(upgrade_id)?;
        let task = upgrade.task(task_id).ok_or_else(|| Refusal::UnknownTask {
            upgrade_id: upgrade_id.into(),
            task_id: task_id.into(),
        })?;
        if task.status.is_terminal() {
            return Err(terminal("task", task_id, task.status));
        }
        if !allowed(task.status) {
            return Err(Refusal::Transition {
                task_id: task_id.into(),
                status: task.status.as_str(),
                action,
            });
        }
        Ok(Verdict::Fresh)
    }

    fn session(&self, session_id: &str) -> Result<&SessionView, Refusal> {
        self.sessions
            .get(session_id)
            .ok_or_else(|| Refusal::UnknownSession(session_id.into()))
    }

    fn session_task(
        &self,
        session: &SessionView,
        task_id: Option<&str>,
    ) -> Result<Verdict, Refusal> {
        let Some(task_id) = task_id else {
            return Ok(Verdict::Fresh);
        };
        // A task of an upgrade recorded in another journal cannot be checked here.
        let Some(upgrade) = self.upgrades.get(&session.upgrade_id) else {
            return Ok(Verdict::Fresh);
        };
        match upgrade.task(task_id) {
            Some(_) => Ok(Verdict::Fresh),
            None => Err(Refusal::UnknownTask {
                upgrade_id: session.upgrade_id.clone(),
                task_id: task_id.into(),
            }),
        }
    }

    fn live_artifact(&self, artifact_id: &str) -> Result<Verdict, Refusal> {
        let artifact = self
            .artifacts
            .get(artifact_id)
            .ok_or_else(|| Refusal::UnknownArtifact(artifact_id.into()))?;
        match artifact.status {
            ArtifactStatus::Deleted => Err(Refusal::Terminal {
                what: "artifact",
                id: artifact_id.into(),
                status: artifact.status.as_str(),
            }),
            _ => Ok(Verdict::Fresh),
        }
    }

    /// Applies the event recorded at `offset` and time `ts_us`. Events that would not pass
    /// `check` (possible only in a journal written without validation) change nothing they
    /// cannot name, so replaying any journal never panics.
    pub fn apply(&mut self, offset: u64, ts_us: i64, event: &Event) {
        self.next_offset = offset + 1;
        if let Some(key) = event.id() {
            self.keys.entry(key.to_string()).or_insert(offset);
        }
        match event {
            Event::JournalRepaired(_) | Event::SubscriberSkipped(_) => {}
            Event::UpgradeStarted(e) => {
                self.upgrades
                    .entry(e.upgrade_id.clone())
                    .or_insert_with(|| Upgrade {
                        view: UpgradeView {
                            upgrade_id: e.upgrade_id.clone(),
                            plan_id: e.plan_id.clone(),
                            cluster_name: e.cluster_name.clone(),
                            phase: e.phase.clone(),
                            status: ProgressStatus::InProgress,
                            metadata: e.metadata.clone().unwrap_or_default(),
                            percentage: 0.0,
                            message: None,
                            error: None,
                            started_at_us: ts_us,
                            completed_at_us: None,
                            last_offset: offset,
                            tasks: Vec::new(),
                        },
                        index: BTreeMap::new(),
                        parents: Vec::new(),
                    });
            }
            Event::UpgradePhaseChanged(e) => self.with_upgrade(&e.upgrade_id, offset, |u| {
                u.view.phase = e.phase.clone();
            }),
            Event::UpgradeCompleted(e) => self.with_upgrade(&e.upgrade_id, offset, |u| {
                u.view.status = ProgressStatus::Completed;
                u.view.message = e.message.clone();
                u.view.completed_at_us = Some(ts_us);
            }),
            Event::UpgradeFailed(e) => self.with_upgrade(&e.upgrade_id, offset, |u| {
                u.view.status = ProgressStatus::Failed;
                u.view.error = Some(e.error.clone());
                u.view.completed_at_us = Some(ts_us);
            }),
            Event::TaskAdded(e) => self.with_upgrade(&e.upgrade_id, offset, |u| {
                if u.index.contains_key(&e.task_id) {
                    return;
                }
                u.push_task(TaskView {
                    task_id: e.task_id.clone(),
                    name: e.name.clone(),
                    task_type: e.task_type,
                    parent_id: e.parent_id.clone(),
                    status: ProgressStatus::NotStarted,
                    percentage: 0.0,
                    effective_percentage: 0.0,
                    message: None,
                    details: None,
                    metrics: None,
                    error: None,
                    started_at_us: None,
                    completed_at_us: None,
                });
            }),
            Event::TaskStarted(e) | Event::TaskResumed(e) => {
                self.with_task(&e.upgrade_id, &e.task_id, offset, |t| {
                    t.status = ProgressStatus::InProgress;
                    t.started_at_us.get_or_insert(ts_us);
                    if e.message.is_some() {
                        t.message = e.message.clone();
                    }
                })
            }
            Event::TaskPaused(e) => self.with_task(&e.upgrade_id, &e.task_id, offset, |t| {
                t.status = ProgressStatus::Paused;
                if e.message.is_some() {
                    t.message = e.message.clone();
                }
            }),
            Event::TaskCancelled(e) => self.with_task(&e.upgrade_id, &e.task_id, offset, |t| {
                t.status = ProgressStatus::Cancelled;
                t.completed_at_us = Some(ts_us);
                if e.message.is_some() {
                    t.message = e.message.clone();
                }
            }),
            Event::TaskProgress(e) => self.with_task(&e.upgrade_id, &e.task_id, offset, |t| {
                t.status = ProgressStatus::InProgress;
                t.started_at_us.get_or_insert(ts_us);
                t.percentage = e.percentage;
                if e.message.is_some() {
                    t.message = e.message.clone();
                }
                if e.details.is_some() {
                    t.details = e.details.clone();
                }
            }),
            Event::TaskCompleted(e) => self.with_task(&e.upgrade_id, &e.task_id, offset, |t| {
                t.status = ProgressStatus::Completed;
                t.percentage = 100.0;
                t.started_at_us.get_or_insert(ts_us);
                t.completed_at_us = Some(ts_us);
                if e.message.is_some() {
                    t.message = e.message.clone();
                }
                t.metrics = e.metrics.clone();
            }),
            Event::TaskFailed(e) => self.with_task(&e.upgrade_id, &e.task_id, offset, |t| {
                t.status = ProgressStatus::Failed;
                t.error = Some(e.error.clone());
                t.completed_at_us = Some(ts_us);
            }),
            Event::SessionCreated(e) => {
                self.sessions
                    .entry(e.session_id.clone())
                    .or_insert_with(|| SessionView {
                        session_id: e.session_id.clone(),
                        upgrade_id: e.upgrade_id.clone(),
                        cluster_name: e.cluster_name.clone(),
                        created_at_us: ts_us,
                        collections: Vec::new(),
                    });
            }
            Event::CollectionCreated(e) => {
                if let Some(session) = self.sessions.get_mut(&e.session_id)
                    && !session
                        .collections
                        .iter()
                        .any(|c| c.collection_id == e.collection_id)
                {
                    session.collections.push(CollectionView {
                        collection_id: e.collection_id.clone(),
                        name: e.name.clone(),
                        task_id: e.task_id.clone(),
                        artifact_ids: Vec::new(),
                    });
                }
            }
            Event::ArtifactAdded(e) => {
                if self.artifacts.contains_key(&e.artifact_id) {
                    return;
                }
                if let Some(collection) = self.sessions.get_mut(&e.session_id).and_then(|s| {
                    s.collections
                        .iter_mut()
                        .find(|c| c.collection_id == e.collection_id)
                }) {
                    collection.artifact_ids.push(e.artifact_id.clone());
                }
                self.artifacts.insert(
                    e.artifact_id.clone(),
                    ArtifactView {
                        artifact_id: e.artifact_id.clone(),
                        session_id: e.session_id.clone(),
                        collection_id: e.collection_id.clone(),
                        file_name: e.file_name.clone(),
                        artifact_type: e.artifact_type,
                        status: ArtifactStatus::Created,
                        sha256: e.sha256.clone(),
                        size_bytes: e.size_bytes,
                        tags: e.tags.clone(),
                        task_id: e.task_id.clone(),
                        description: e.description.clone(),
                        s3_key: None,
                        etag: None,
                        error: None,
                        created_at_us: ts_us,
                        expires_at: e.expires_at.clone(),
                    },
                );
            }
            Event::ArtifactUploaded(e) => self.with_artifact(&e.artifact_id, |a| {
                a.status = ArtifactStatus::Uploaded;
                a.s3_key = Some(e.s3_key.clone());
                a.etag = Some(e.etag.clone());
                a.error = None;
            }),
            Event::ArtifactUploadFailed(e) => self.with_artifact(&e.artifact_id, |a| {
                a.status = ArtifactStatus::Failed;
                a.error = Some(e.error.clone());
            }),
            Event::ArtifactArchived(e) => self.with_artifact(&e.artifact_id, |a| {
                a.status = ArtifactStatus::Archived;
            }),
            Event::ArtifactDeleted(e) => self.with_artifact(&e.artifact_id, |a| {
                a.status = ArtifactStatus::Deleted;
            }),
        }
    }

    fn with_upgrade(&mut self, upgrade_id: &str, offset: u64, f: impl FnOnce(&mut Upgrade)) {
        if let Some(upgrade) = self.upgrades.get_mut(upgrade_id) {
            upgrade.view.last_offset = offset;
            f(upgrade);
        }
    }

    fn with_task(
        &mut self,
        upgrade_id: &str,
        task_id: &str,
        offset: u64,
        f: impl FnOnce(&mut TaskView),
    ) {
        self.with_upgrade(upgrade_id, offset, |u| {
            if let Some(task) = u.task_mut(task_id) {
                f(task);
            }
        });
    }

    fn with_artifact(&mut self, artifact_id: &str, f: impl FnOnce(&mut ArtifactView)) {
        if let Some(artifact) = self.artifacts.get_mut(artifact_id) {
            f(artifact);
        }
    }

    /// The offset the next applied event will have, set by a caller that starts the fold
    /// after offset 0 (the overlay of [`crate::live`], starting at the projection's checkpoint).
    pub(crate) fn set_next_offset(&mut self, next_offset: u64) {
        self.next_offset = next_offset;
    }

    /// Adopts an upgrade read from the projection (its current view).
    pub(crate) fn adopt_upgrade(&mut self, view: UpgradeView) {
        let mut tasks = view.tasks.clone();
        let mut upgrade = Upgrade {
            view: UpgradeView {
                tasks: Vec::new(),
                ..view
            },
            index: BTreeMap::new(),
            parents: Vec::new(),
        };
        for task in tasks.drain(..) {
            upgrade.push_task(std::sync::Arc::unwrap_or_clone(task));
        }
        self.upgrades
            .insert(upgrade.view.upgrade_id.clone(), upgrade);
    }

    /// Adopts a session read from the projection.
    pub(crate) fn adopt_session(&mut self, view: SessionView) {
        self.sessions.insert(view.session_id.clone(), view);
    }

    /// Adopts an artifact read from the projection.
    pub(crate) fn adopt_artifact(&mut self, view: ArtifactView) {
        self.artifacts.insert(view.artifact_id.clone(), view);
    }

    /// Adopts an idempotency key read from the projection.
    pub(crate) fn adopt_key(&mut self, key: String, offset: u64) {
        self.keys.insert(key, offset);
    }

    /// Whether the fold holds this upgrade.
    pub(crate) fn has_upgrade(&self, id: &str) -> bool {
        self.upgrades.contains_key(id)
    }

    /// Whether the fold holds this session.
    pub(crate) fn has_session(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// Whether the fold holds this artifact.
    pub(crate) fn has_artifact(&self, id: &str) -> bool {
        self.artifacts.contains_key(id)
    }

    /// Whether the fold holds this idempotency key.
    pub(crate) fn has_key(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// Drops an upgrade (the overlay evicts what the projection holds).
    pub(crate) fn forget_upgrade(&mut self, id: &str) {
        self.upgrades.remove(id);
    }

    /// Drops a session.
    pub(crate) fn forget_session(&mut self, id: &str) {
        self.sessions.remove(id);
    }

    /// Drops an artifact.
    pub(crate) fn forget_artifact(&mut self, id: &str) {
        self.artifacts.remove(id);
    }

    /// Drops an idempotency key.
    pub(crate) fn forget_key(&mut self, key: &str) {
        self.keys.remove(key);
    }

    /// Upgrades, sessions, artifacts and keys held.
    pub(crate) fn entities(&self) -> usize {
        self.upgrades.len() + self.sessions.len() + self.artifacts.len() + self.keys.len()
    }

    /// Ids of all sessions, sorted.
    pub fn session_ids(&self) -> impl Iterator<Item = &str> {
        self.sessions.keys().map(String::as_str)
    }

    /// The view of an upgrade, percentages rolled up.
    ///
    /// `&mut`: the roll-up is cached in place, so a snapshot of a large upgrade costs O(tasks)
    /// arithmetic and pointer copies, not a deep copy.
    pub fn upgrade_view(&mut self, upgrade_id: &str) -> Option<UpgradeView> {
        self.upgrades.get_mut(upgrade_id).map(Upgrade::snapshot)
    }

    /// Ids of all upgrades, sorted.
    pub fn upgrade_ids(&self) -> impl Iterator<Item = &str> {
        self.upgrades.keys().map(String::as_str)
    }

    /// Ids of the sessions of an upgrade, sorted.
    pub fn sessions_of(&self, upgrade_id: &str) -> Vec<String> {
        self.sessions
            .values()
            .filter(|s| s.upgrade_id == upgrade_id)
            .map(|s| s.session_id.clone())
            .collect()
    }

    /// The view of a session.
    pub fn session_view(&self, session_id: &str) -> Option<&SessionView> {
        self.sessions.get(session_id)
    }

    /// The view of an artifact.
    pub fn artifact(&self, artifact_id: &str) -> Option<&ArtifactView> {
        self.artifacts.get(artifact_id)
    }

    /// All artifacts, by id.
    pub fn artifacts(&self) -> impl Iterator<Item = &ArtifactView> {
        self.artifacts.values()
    }
}
