//! Payload schema versions and upcasting: every record in a journal, whichever build wrote it,
//! reads as an [`Event`] of today's shape.
//!
//! Each journal record carries the schema version of its payload (the recorder writes
//! [`crate::journal::record::CURRENT_SCHEMA_VERSION`], which equals [`EVENT_SCHEMA_VERSION`]).
//! Events are facts and are never rewritten on disk; instead, a reader lifts an old payload to
//! the current shape in memory with [`upcast`].
//!
//! # Adding version 2
//!
//! When an event's shape changes incompatibly (a field renamed, made required, split):
//!
//! 1. Change the Rust types to the new shape, regenerate `schemas/`
//!    (`LOGBOOK_BLESS_SCHEMAS=1 cargo test --test schemas`), and bump both
//!    [`EVENT_SCHEMA_VERSION`] and `CURRENT_SCHEMA_VERSION` to 2 (a test asserts they agree).
//! 2. Add one step here that rewrites a v1 JSON object into a v2 one, touching only the types
//!    that changed, e.g.
//!
//!    ```ignore
//!    fn v1_to_v2(mut event: Map<String, Value>) -> Result<Map<String, Value>, EventError> {
//!        if event.get("type").and_then(Value::as_str) == Some("task.progress") {
//!            // v2 renamed `percentage` to `percent`.
//!            if let Some(p) = event.remove("percentage") {
//!                event.insert("percent".into(), p);
//!            }
//!        }
//!        Ok(event)
//!    }
//!    ```
//!
//! 3. Make [`upcast`] parse the payload as a JSON object, apply the steps from the record's
//!    version up to the current one in order (`1 => v1_to_v2`, later `2 => v2_to_v3`, ...), and
//!    only then deserialize the `Event`. Version N payloads still parse directly.
//! 4. Keep the v1 fixture journal (`tests/fixtures/journal-v1/`) and its test untouched, add a
//!    v2 fixture next to it, and update the v1 test's expectation of the *upcast* events only:
//!    its `logbook events` output (the stored payloads) does not change, because facts are
//!    never edited.
//!
//! Steps are never removed: old journals stay readable forever. Additive changes (a new event
//! type, a new optional field) need no step, but still a new version, because an older build
//! must refuse (rather than misread) what it does not know: with `deny_unknown_fields` it would.

use super::{Event, EventError};

/// The payload schema version this build writes and the newest it reads.
pub const EVENT_SCHEMA_VERSION: u16 = 1;

/// Reads a record's payload written under `schema_version` as a current [`Event`].
///
/// Version 1 parses directly. Version 0 and versions newer than [`EVENT_SCHEMA_VERSION`] are
/// [`EventError::UnsupportedVersion`]. Does not [validate](Event::validate): validation is for
/// new input, and a fact already in the journal is read as it was recorded.
pub fn upcast(schema_version: u16, payload: &[u8]) -> Result<Event, EventError> {
    match schema_version {
        1 => Event::parse(payload),
        found => Err(EventError::UnsupportedVersion {
            found,
            newest: EVENT_SCHEMA_VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_journal_version() {
        assert_eq!(
            EVENT_SCHEMA_VERSION,
            crate::journal::record::CURRENT_SCHEMA_VERSION
        );
    }

    #[test]
    fn versions() {
        let payload = br#"{"type":"upgrade.phase_changed","upgrade_id":"u-1","phase":"p"}"#;
        assert_eq!(
            upcast(1, payload).map(|e| e.kind()),
            Ok("upgrade.phase_changed")
        );
        for version in [0, 2, u16::MAX] {
            let err = upcast(version, payload).err();
            assert_eq!(
                err,
                Some(EventError::UnsupportedVersion {
                    found: version,
                    newest: 1
                })
            );
        }
        let message = upcast(2, payload).err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("schema version 2 is not readable by this build (it reads versions 1..=1)")
        );
        assert!(matches!(upcast(1, b"{}"), Err(EventError::Parse { .. })));
    }
}
