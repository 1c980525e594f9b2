//! Why an event is refused: [`EventError`] for the event as a whole, [`FieldProblem`] for one
//! field.
//!
//! Invariant: every refusal of a field names the field (`task_id`, `tags[3]`, ...) in its
//! message, so a producer can fix its input without reading the source.

/// Why bytes are not an acceptable event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// Not a JSON object of a known event type with exactly the fields that type has (bad JSON,
    /// unknown `type`, a missing required field, an unknown or duplicate field, a wrong type).
    #[error("invalid event: {reason}")]
    Parse {
        /// The top-level field at fault, when one is (`type` for an unknown type).
        field: Option<String>,
        /// What is wrong; names the field when there is one.
        reason: String,
    },
    /// A field has the right type but a value the contract refuses.
    #[error("{field}: {problem}")]
    Field {
        /// The field, as named in the event (`task_id`, `tags[2]`).
        field: String,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// A type only the journal itself writes (e.g. `journal.repaired`); producers may not.
    #[error("{kind} events are written by the journal itself and cannot be recorded")]
    Reserved {
        /// The event type.
        kind: &'static str,
    },
    /// A producer event passed where only a system event is accepted.
    #[error("{kind} is not a system event")]
    NotSystem {
        /// The event type.
        kind: &'static str,
    },
    /// A record with a payload schema version this build cannot read.
    #[error(
        "schema version {found} is not readable by this build (it reads versions 1..={newest})"
    )]
    UnsupportedVersion {
        /// The record's schema version.
        found: u16,
        /// The newest version this build reads (and writes).
        newest: u16,
    },
}

impl EventError {
    /// Builds a [`EventError::Field`].
    pub fn field(field: impl Into<String>, problem: FieldProblem) -> EventError {
        EventError::Field {
            field: field.into(),
            problem,
        }
    }
}

/// What is wrong with one field's value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldProblem {
    /// An empty string.
    #[error("must not be empty")]
    Empty,
    /// Longer than allowed (UTF-8 bytes for strings, items for arrays).
    #[error("is {len} bytes long, more than the {max} allowed")]
    TooLong {
        /// Actual length in bytes.
        len: usize,
        /// Largest allowed length in bytes.
        max: usize,
    },
    /// More items than allowed.
    #[error("has {count} items, more than the {max} allowed")]
    TooMany {
        /// Actual number of items.
        count: usize,
        /// Largest allowed number.
        max: usize,
    },
    /// Holds a control character (C0, DEL or C1).
    #[error("contains a control character")]
    ControlCharacter,
    /// Holds `/` or `\`, which could make a path escape its directory.
    #[error("contains {0:?}, which could escape a directory")]
    PathSeparator(char),
    /// Holds `..`, which could make a path escape its directory.
    #[error("contains \"..\", which could escape a directory")]
    DotDot,
    /// Is exactly `.` (the directory itself).
    #[error("must not be \".\"")]
    Dot,
    /// Starts or ends with whitespace.
    #[error("must not start or end with whitespace")]
    SurroundingWhitespace,
    /// NaN or infinite.
    #[error("must be a finite number, found {0}")]
    NotFinite(f64),
    /// Outside its range.
    #[error("must be within {min}..={max}, found {value}")]
    OutOfRange {
        /// The value found.
        value: f64,
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// Not a SHA-256 digest in lower-case hex.
    #[error("must be 64 lower-case hex digits (a SHA-256 digest)")]
    NotSha256,
    /// Not an RFC 3339 time.
    #[error("{0}")]
    NotTimestamp(String),
}
