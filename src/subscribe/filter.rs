//! [`EventFilter`]: which records a subscription delivers.
//!
//! Invariants: every condition set must hold (types AND upgrade AND session); an empty filter
//! (no globs, no ids) matches every record, including records whose payload is not a typed event
//! (a failed upcast); a non-empty filter never matches such a record. `session_id` compares
//! [`Event::session_id`], which only `session.created`, `collection.created` and `artifact.added`
//! carry.

use crate::event::{Event, upcast};
use crate::journal::Record;
use crate::type_filter::TypeFilter;

use super::{Result, SubscribeError};

/// A conjunction of optional conditions over events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Type globs such as `task.*,upgrade.failed` (empty: any type).
    pub types: TypeFilter,
    /// Only events about this upgrade.
    pub upgrade_id: Option<String>,
    /// Only events naming this session.
    pub session_id: Option<String>,
}

impl EventFilter {
    /// Everything (the empty filter).
    pub fn all() -> EventFilter {
        EventFilter::default()
    }

    /// From the textual forms used on the command line and in query strings: `types` a
    /// comma-separated glob list, ids verbatim; empty strings and `None` mean "no condition".
    pub fn parse(
        types: Option<&str>,
        upgrade_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<EventFilter> {
        let types = match types.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => TypeFilter::parse(text).map_err(SubscribeError::Invalid)?,
            None => TypeFilter::default(),
        };
        let id = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        Ok(EventFilter {
            types,
            upgrade_id: id(upgrade_id),
            session_id: id(session_id),
        })
    }

    /// With these type globs.
    pub fn with_types(mut self, types: &str) -> Result<EventFilter> {
        self.types = TypeFilter::parse(types).map_err(SubscribeError::Invalid)?;
        Ok(self)
    }

    /// Only events about `upgrade_id`.
    pub fn with_upgrade(mut self, upgrade_id: impl Into<String>) -> EventFilter {
        self.upgrade_id = Some(upgrade_id.into());
        self
    }

    /// Only events naming `session_id`.
    pub fn with_session(mut self, session_id: impl Into<String>) -> EventFilter {
        self.session_id = Some(session_id.into());
        self
    }

    /// Whether this is the empty filter (which also matches untyped records).
    pub fn is_empty(&self) -> bool {
        self.types == TypeFilter::default()
            && self.upgrade_id.is_none()
            && self.session_id.is_none()
    }

    /// Whether a typed event passes.
    pub fn matches_event(&self, event: &Event) -> bool {
        self.types.matches(Some(event.kind()))
            && same(self.upgrade_id.as_deref(), event.upgrade_id())
            && same(self.session_id.as_deref(), event.session_id())
    }

    /// Whether a record passes (decoding its payload).
    pub fn matches(&self, record: &Record) -> bool {
        self.matches_decoded(upcast(record.schema_version, &record.payload).ok().as_ref())
    }

    /// Whether a record passes, given its decoded event (`None`: not a typed event).
    pub fn matches_decoded(&self, event: Option<&Event>) -> bool {
        match event {
            Some(event) => self.matches_event(event),
            None => self.is_empty(),
        }
    }
}

fn same(wanted: Option<&str>, found: Option<&str>) -> bool {
    wanted.is_none_or(|w| found == Some(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &str) -> Record {
        Record {
            offset: 0,
            ts_us: 0,
            schema_version: 1,
            payload: payload.as_bytes().to_vec(),
            hash: [0; 32],
        }
    }

    #[test]
    fn conditions() {
        let progress =
            record(r#"{"type":"task.progress","upgrade_id":"u-1","task_id":"t","percentage":5.0}"#);
        let junk = record("not json");
        assert!(EventFilter::all().matches(&progress));
        assert!(EventFilter::all().matches(&junk));
        let tasks = EventFilter::parse(Some("task.*,upgrade.failed"), None, None).unwrap();
        assert!(tasks.matches(&progress));
        assert!(!tasks.matches(&junk));
        assert!(EventFilter::all().with_upgrade("u-1").matches(&progress));
        assert!(!EventFilter::all().with_upgrade("u-2").matches(&progress));
        assert!(!EventFilter::all().with_session("s").matches(&progress));
        assert!(
            !EventFilter::all()
                .with_types("upgrade.*")
                .unwrap()
                .matches(&progress)
        );
        assert!(
            EventFilter::parse(Some(""), Some(""), None)
                .unwrap()
                .is_empty()
        );
        assert!(EventFilter::parse(Some("a,,b"), None, None).is_err());
    }
}
