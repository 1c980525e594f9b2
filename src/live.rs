//! [`Live`]: the domain state as of the end of the journal, without folding the journal.
//!
//! It is the SQLite projection (an anchored snapshot of the fold, `state.sqlite`) plus an
//! in-memory overlay: a [`State`] holding the entities changed by records the projection has
//! not applied yet (*dirty*) and a bounded cache of entities read from the projection (*clean*).
//! The recorder checks and applies every new event here; views and search read here. Start-up
//! costs what the projection lacks (normally nothing: it follows the journal closely), never
//! the journal's length, and memory holds the dirty entities plus at most
//! [`CACHE_ENTITIES_MAX`] clean ones, whatever the journal's size; idempotency keys live in the
//! projection, only those of unapplied records in memory.
//!
//! # Invariants
//!
//! - **Every entity changed at or after `settled` is in the overlay.** Before an event is
//!   checked, [`Live::prepare`] loads every entity it names (upgrade with its tasks, session,
//!   artifact, key) from the projection if the overlay lacks it; applying then changes the
//!   overlay's copy and records the offset. An entity leaves the overlay only when clean: its
//!   last change is below `settled`, the projection's checkpoint, so the projection holds it.
//!   Hence an entity absent from the overlay is current in the projection, and one absent from
//!   both does not exist.
//! - **`settled` only grows, and only to a checkpoint the projection committed** (the
//!   projector calls [`Live::settle`] after each commit). A projection rebuilt from scratch is
//!   caught up past `settled` before it is read again (see `recorder`).
//! - **Views are consistent at `next_offset`.** Entities in the overlay are read from it, all
//!   others from the projection, whose copy of them cannot change meanwhile (a change would
//!   have loaded them into the overlay first).

use std::collections::HashMap;

use crate::artifacts::search::{ArtifactQuery, ArtifactStats, statistics};
use crate::event::Event;
use crate::projection::{Projection, ProjectionError};
use crate::state::{ArtifactView, Refusal, SessionView, State, UpgradeView, Verdict};

/// Clean entities kept in memory at most (beyond them the clean ones are dropped; dirty ones
/// never are).
pub const CACHE_ENTITIES_MAX: usize = 10_000;

/// An entity of the fold, as the overlay tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Entity {
    Upgrade(String),
    Session(String),
    Artifact(String),
    Key(String),
}

/// See the module docs.
#[derive(Debug)]
pub struct Live {
    overlay: State,
    /// Dirty entities: the offset of the last record that changed each.
    touched: HashMap<Entity, u64>,
    /// The projection holds every record below this.
    settled: u64,
    /// Read-only connection to the projection (`None`: no projection; the overlay is the
    /// whole fold, as for a reader that could not use `state.sqlite`).
    projection: Option<Projection>,
}

fn upgrade_of(event: &Event) -> Option<&str> {
    match event {
        Event::SessionCreated(_) => None,
        e => e.upgrade_id(),
    }
}

impl Live {
    /// The state over `projection`, which holds every record below `settled`.
    pub fn new(projection: Projection, settled: u64) -> Live {
        let mut overlay = State::new();
        overlay.set_next_offset(settled);
        Live {
            overlay,
            touched: HashMap::new(),
            settled,
            projection: Some(projection),
        }
    }

    /// The state as a complete in-memory fold (no projection).
    pub fn folded(state: State) -> Live {
        Live {
            overlay: state,
            touched: HashMap::new(),
            settled: 0,
            projection: None,
        }
    }

    /// The state of the journal `journal` (read-only: beside a live writer, or without one) as
    /// a reader sees it: the projection of `data_dir` if it matches the journal, plus the
    /// records it lacks applied in memory. A projection that is missing, unreadable or does
    /// not match is left alone (its writer owns it) and the journal is folded instead; the
    /// second value then says why.
    pub fn open_read(
        data_dir: &std::path::Path,
        journal: &crate::journal::Journal,
    ) -> Result<(Live, Option<String>), crate::journal::JournalError> {
        let usable = match Projection::open_read(data_dir) {
            Ok(Some(mut p)) => match p.check(journal) {
                Ok(None) => p.checkpoint().map(|c| (p, c)).map_err(|e| e.to_string()),
                Ok(Some(reason)) => Err(reason),
                Err(ProjectionError::Journal(e)) => return Err(e),
                Err(e) => Err(e.to_string()),
            },
            Ok(None) => Err("there is no state.sqlite".to_string()),
            Err(e) => Err(e.to_string()),
        };
        let (projection, checkpoint) = match usable {
            Ok(found) => found,
            Err(why) => {
                let state = crate::state::state_at(journal, crate::state::Until::End)?;
                return Ok((Live::folded(state), Some(why)));
            }
        };
        let mut live = Live::new(projection, checkpoint);
        let mut reader = journal.reader(crate::journal::StartAt::Offset(checkpoint))?;
        while let Some(record) = reader.next()? {
            match crate::event::upcast(record.schema_version, &record.payload) {
                Ok(event) => {
                    if let Err(e) = live.prepare(&event) {
                        let state = crate::state::state_at(journal, crate::state::Until::End)?;
                        return Ok((Live::folded(state), Some(e.to_string())));
                    }
                    live.apply(record.offset, record.ts_us, &event);
                }
                Err(_) => live.skip(record.offset),
            }
        }
        Ok((live, None))
    }

    /// The offset the next applied event will have.
    pub fn next_offset(&self) -> u64 {
        self.overlay.next_offset()
    }

    /// The projection's checkpoint as last settled.
    pub fn settled(&self) -> u64 {
        self.settled
    }

    /// Entities held in memory (dirty and cached).
    pub fn entities_in_memory(&self) -> usize {
        self.overlay.entities()
    }

    /// Loads into the overlay every entity `event` names that it lacks (see the module docs).
    pub fn prepare(&mut self, event: &Event) -> Result<(), ProjectionError> {
        if let Some(key) = event.id() {
            self.load_key(key)?;
        }
        if let Some(upgrade_id) = upgrade_of(event) {
            self.load_upgrade(upgrade_id)?;
        }
        match event {
            Event::SessionCreated(e) => {
                self.load_session(&e.session_id)?;
                self.load_upgrade(&e.upgrade_id)?;
            }
            Event::CollectionCreated(e) => {
                self.load_session(&e.session_id)?;
                self.load_upgrade_of_session(&e.session_id)?;
            }
            Event::ArtifactAdded(e) => {
                self.load_artifact(&e.artifact_id)?;
                self.load_session(&e.session_id)?;
                self.load_upgrade_of_session(&e.session_id)?;
            }
            Event::ArtifactUploaded(e) => self.load_artifact(&e.artifact_id)?,
            Event::ArtifactUploadFailed(e) => self.load_artifact(&e.artifact_id)?,
            Event::ArtifactArchived(e) => self.load_artifact(&e.artifact_id)?,
            Event::ArtifactDeleted(e) => self.load_artifact(&e.artifact_id)?,
            _ => {}
        }
        Ok(())
    }

    fn load_key(&mut self, key: &str) -> Result<(), ProjectionError> {
        if self.overlay.has_key(key) {
            return Ok(());
        }
        if let Some(offset) = self.query(|p| p.recorded_key(key))? {
            self.overlay.adopt_key(key.to_string(), offset);
        }
        Ok(())
    }

    fn load_upgrade(&mut self, id: &str) -> Result<(), ProjectionError> {
        if self.overlay.has_upgrade(id) {
            return Ok(());
        }
        if let Some(view) = self.query(|p| p.upgrade(id))? {
            self.overlay.adopt_upgrade(view);
        }
        Ok(())
    }

    fn load_session(&mut self, id: &str) -> Result<(), ProjectionError> {
        if self.overlay.has_session(id) {
            return Ok(());
        }
        if let Some(view) = self.query(|p| p.session(id))? {
            self.overlay.adopt_session(view);
        }
        Ok(())
    }

    fn load_upgrade_of_session(&mut self, session_id: &str) -> Result<(), ProjectionError> {
        let upgrade_id = self
            .overlay
            .session_view(session_id)
            .map(|s| s.upgrade_id.clone());
        match upgrade_id {
            Some(id) => self.load_upgrade(&id),
            None => Ok(()),
        }
    }

    fn load_artifact(&mut self, id: &str) -> Result<(), ProjectionError> {
        if self.overlay.has_artifact(id) {
            return Ok(());
        }
        if let Some(view) = self.query(|p| p.artifact(id))? {
            self.overlay.adopt_artifact(view);
        }
        Ok(())
    }

    /// Runs a read on the projection (`None` without one).
    fn query<T>(
        &self,
        f: impl FnOnce(&Projection) -> Result<Option<T>, ProjectionError>,
    ) -> Result<Option<T>, ProjectionError> {
        match &self.projection {
            Some(p) => f(p),
            None => Ok(None),
        }
    }

    /// Checks `event` (after [`Live::prepare`]).
    pub fn check(&self, event: &Event) -> Result<Verdict, Refusal> {
        self.overlay.check(event)
    }

    /// Applies the event recorded at `offset` (after [`Live::prepare`]) and marks what it
    /// changed dirty.
    pub fn apply(&mut self, offset: u64, ts_us: i64, event: &Event) {
        debug_assert!(offset >= self.overlay.next_offset(), "applied out of order");
        self.overlay.apply(offset, ts_us, event);
        if self.projection.is_none() {
            return;
        }
        let mut touch = |entity| {
            self.touched.insert(entity, offset);
        };
        if let Some(key) = event.id() {
            touch(Entity::Key(key.to_string()));
        }
        if let Some(upgrade_id) = upgrade_of(event) {
            touch(Entity::Upgrade(upgrade_id.to_string()));
        }
        match event {
            Event::SessionCreated(e) => touch(Entity::Session(e.session_id.clone())),
            Event::CollectionCreated(e) => touch(Entity::Session(e.session_id.clone())),
            Event::ArtifactAdded(e) => {
                touch(Entity::Session(e.session_id.clone()));
                touch(Entity::Artifact(e.artifact_id.clone()));
            }
            Event::ArtifactUploaded(e) => touch(Entity::Artifact(e.artifact_id.clone())),
            Event::ArtifactUploadFailed(e) => touch(Entity::Artifact(e.artifact_id.clone())),
            Event::ArtifactArchived(e) => touch(Entity::Artifact(e.artifact_id.clone())),
            Event::ArtifactDeleted(e) => touch(Entity::Artifact(e.artifact_id.clone())),
            _ => {}
        }
    }

    /// Notes a record below `next_offset` that is not a typed event (it changes nothing).
    pub fn skip(&mut self, offset: u64) {
        if offset >= self.overlay.next_offset() {
            self.overlay.set_next_offset(offset + 1);
        }
    }

    /// The projection committed every record below `checkpoint`: entities last changed before
    /// it are clean; keys and, beyond the cache bound, other clean entities leave memory.
    pub fn settle(&mut self, checkpoint: u64) {
        if checkpoint <= self.settled || self.projection.is_none() {
            return;
        }
        self.settled = checkpoint;
        // A replica applies nothing itself: what the projection settled is its state's end.
        if checkpoint > self.overlay.next_offset() {
            self.overlay.set_next_offset(checkpoint);
        }
        let mut clean = Vec::new();
        self.touched.retain(|entity, offset| {
            let dirty = *offset >= checkpoint;
            if !dirty {
                clean.push(entity.clone());
            }
            dirty
        });
        for entity in clean {
            if let Entity::Key(key) = entity {
                self.overlay.forget_key(&key);
            }
        }
        if self.overlay.entities() > CACHE_ENTITIES_MAX {
            self.evict_clean();
        }
    }

    /// Drops every clean entity from memory.
    fn evict_clean(&mut self) {
        let dirty = |e: &Entity| self.touched.contains_key(e);
        let upgrades: Vec<String> = self
            .overlay
            .upgrade_ids()
            .filter(|id| !dirty(&Entity::Upgrade((*id).to_string())))
            .map(str::to_string)
            .collect();
        let sessions: Vec<String> = self
            .overlay
            .session_ids()
            .filter(|id| !dirty(&Entity::Session((*id).to_string())))
            .map(str::to_string)
            .collect();
        let artifacts: Vec<String> = self
            .overlay
            .artifacts()
            .map(|a| a.artifact_id.clone())
            .filter(|id| !dirty(&Entity::Artifact(id.clone())))
            .collect();
        for id in upgrades {
            self.overlay.forget_upgrade(&id);
        }
        for id in sessions {
            self.overlay.forget_session(&id);
        }
        for id in artifacts {
            self.overlay.forget_artifact(&id);
        }
    }

    /// Replaces the projection (after it was rebuilt and caught up to at least `settled`).
    pub fn replace_projection(&mut self, projection: Projection, settled: u64) {
        debug_assert!(
            settled >= self.settled,
            "a rebuilt projection must catch up first"
        );
        self.projection = Some(projection);
        self.settle(settled);
    }

    fn is_dirty(&self, entity: &Entity) -> bool {
        self.projection.is_none() || self.touched.contains_key(entity)
    }

    /// The view of an upgrade.
    pub fn upgrade_view(&mut self, id: &str) -> Result<Option<UpgradeView>, ProjectionError> {
        if self.overlay.has_upgrade(id) {
            return Ok(self.overlay.upgrade_view(id));
        }
        self.query(|p| p.upgrade(id))
    }

    /// Ids of all upgrades, sorted.
    pub fn upgrade_ids(&self) -> Result<Vec<String>, ProjectionError> {
        let mut ids = match &self.projection {
            Some(p) => p.upgrade_ids()?,
            None => Vec::new(),
        };
        ids.extend(self.overlay.upgrade_ids().map(str::to_string));
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Ids of the sessions of an upgrade, sorted.
    pub fn sessions_of(&self, upgrade_id: &str) -> Result<Vec<String>, ProjectionError> {
        let mut ids = match &self.projection {
            Some(p) => p.sessions_of(upgrade_id)?,
            None => Vec::new(),
        };
        ids.extend(self.overlay.sessions_of(upgrade_id));
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The view of a session.
    pub fn session_view(&self, id: &str) -> Result<Option<SessionView>, ProjectionError> {
        if let Some(view) = self.overlay.session_view(id) {
            return Ok(Some(view.clone()));
        }
        self.query(|p| p.session(id))
    }

    /// The view of an artifact.
    pub fn artifact(&self, id: &str) -> Result<Option<ArtifactView>, ProjectionError> {
        if let Some(view) = self.overlay.artifact(id) {
            return Ok(Some(view.clone()));
        }
        self.query(|p| p.artifact(id))
    }

    /// The dirty artifacts (changed since the projection's checkpoint).
    fn dirty_artifacts(&self) -> impl Iterator<Item = &ArtifactView> {
        self.overlay
            .artifacts()
            .filter(|a| self.is_dirty(&Entity::Artifact(a.artifact_id.clone())))
    }

    /// Artifacts matching `query`, by artifact id (at most `query.limit`).
    pub fn search(&self, query: &ArtifactQuery) -> Result<Vec<ArtifactView>, ProjectionError> {
        let dirty: Vec<&ArtifactView> = self.dirty_artifacts().collect();
        let mut found: Vec<ArtifactView> = match &self.projection {
            Some(p) => {
                let mut wider = query.clone();
                wider.limit = query.limit.map(|l| l.saturating_add(dirty.len()));
                let is_dirty = |id: &str| dirty.iter().any(|d| d.artifact_id == id);
                p.search(&wider)?
                    .into_iter()
                    .filter(|a| !is_dirty(&a.artifact_id))
                    .collect()
            }
            None => Vec::new(),
        };
        found.extend(dirty.into_iter().filter(|a| query.matches(a)).cloned());
        found.sort_by(|a, b| a.artifact_id.cmp(&b.artifact_id));
        if let Some(limit) = query.limit {
            found.truncate(limit);
        }
        Ok(found)
    }

    /// Counts and bytes of the artifacts matching `query`, in total, by type and by status.
    pub fn stats(&self, query: &ArtifactQuery) -> Result<ArtifactStats, ProjectionError> {
        let dirty: Vec<&ArtifactView> = self.dirty_artifacts().collect();
        let Some(projection) = &self.projection else {
            return Ok(statistics(dirty.into_iter().filter(|a| query.matches(a))));
        };
        let mut stats = projection.stats(query)?;
        // The projection's copies of dirty artifacts are out of date: take them out, and put
        // the overlay's in.
        let stale: Vec<ArtifactView> = dirty
            .iter()
            .filter_map(|a| projection.artifact(&a.artifact_id).transpose())
            .collect::<Result<_, _>>()?;
        subtract(
            &mut stats,
            &statistics(stale.iter().filter(|a| query.matches(a))),
        );
        add(
            &mut stats,
            &statistics(dirty.into_iter().filter(|a| query.matches(a))),
        );
        Ok(stats)
    }
}

fn add(stats: &mut ArtifactStats, more: &ArtifactStats) {
    stats.total.count += more.total.count;
    stats.total.bytes += more.total.bytes;
    for (key, tally) in &more.by_type {
        let slot = stats.by_type.entry(key.clone()).or_default();
        slot.count += tally.count;
        slot.bytes += tally.bytes;
    }
    for (key, tally) in &more.by_status {
        let slot = stats.by_status.entry(key.clone()).or_default();
        slot.count += tally.count;
        slot.bytes += tally.bytes;
    }
}

fn subtract(stats: &mut ArtifactStats, less: &ArtifactStats) {
    stats.total.count = stats.total.count.saturating_sub(less.total.count);
    stats.total.bytes = stats.total.bytes.saturating_sub(less.total.bytes);
    for (map, less) in [
        (&mut stats.by_type, &less.by_type),
        (&mut stats.by_status, &less.by_status),
    ] {
        for (key, tally) in less {
            if let Some(slot) = map.get_mut(key) {
                slot.count = slot.count.saturating_sub(tally.count);
                slot.bytes = slot.bytes.saturating_sub(tally.bytes);
                if slot.count == 0 {
                    map.remove(key);
                }
            }
        }
    }
}
