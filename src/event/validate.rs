//! Stateless validation: what a single event must satisfy on its own, whatever the journal holds
//! (DESIGN.md §3, "Bad input is refused at append"). Checks that need state (unknown ids,
//! duplicates, transitions from a terminal status) are built on top of these types elsewhere.
//!
//! | fields | rule |
//! |---|---|
//! | every id (`id`, `upgrade_id`, `task_id`, `parent_id`, `session_id`, `collection_id`, `artifact_id`) | 1..=128 bytes; no control character, `/`, `\`, `..`; not `.`; no leading or trailing whitespace |
//! | `file_name` | the id rules, 1..=255 bytes |
//! | `phase`, `name`, `cluster_name`, `plan_id`, `etag` | 1..=256 bytes, no control character |
//! | `s3_key` | 1..=1024 bytes, no control character (it holds `/` by design) |
//! | `tags` | at most 64, each 1..=128 bytes without control characters |
//! | `error`, `message`, `description` | at most 64 KiB (control characters such as newlines allowed) |
//! | `percentage` | finite, 0..=100 |
//! | `sha256` | 64 lower-case hex digits |
//! | `expires_at` | RFC 3339 ([`crate::timestamp::parse_rfc3339`]) |
//!
//! "Control character" is [`char::is_control`] (C0, DEL, C1); "whitespace" is
//! [`char::is_whitespace`] plus U+FEFF, which is ECMAScript's `\s`, so the schema patterns below
//! mean the same. Lengths here are UTF-8 bytes; a schema's `maxLength` counts characters, so for
//! non-ASCII text the schema is looser than this module and this module is the authority.
//!
//! Invariant: the `*_PATTERN` and `*_MAX` constants are what the `schemars` attributes of the
//! event structs put into the checked-in schemas; `tests/schemas.rs` checks on tricky strings
//! that a schema and these rules give the same verdict.

use super::artifact::{
    ArtifactAdded, ArtifactArchived, ArtifactDeleted, ArtifactUploadFailed, ArtifactUploaded,
    CollectionCreated, SessionCreated,
};
use super::error::{EventError, FieldProblem};
use super::system::{JournalRepaired, SubscriberSkipped};
use super::task::{TaskAdded, TaskCompleted, TaskFailed, TaskProgress, TaskTransition};
use super::upgrade::{UpgradeCompleted, UpgradeFailed, UpgradePhaseChanged, UpgradeStarted};

/// Longest id, in bytes.
pub const ID_MAX: usize = 128;
/// Longest file name, in bytes.
pub const FILE_NAME_MAX: usize = 255;
/// Longest phase, name, cluster name, plan id or ETag, in bytes.
pub const NAME_MAX: usize = 256;
/// Longest S3 key, in bytes (S3's own limit).
pub const S3_KEY_MAX: usize = 1024;
/// Longest tag, in bytes.
pub const TAG_MAX: usize = 128;
/// Most tags on one artifact.
pub const TAGS_MAX: usize = 64;
/// Longest error, message or description, in bytes (64 KiB).
pub const TEXT_MAX: usize = 64 << 10;
/// Smallest and largest `percentage`.
pub const PERCENTAGE_RANGE: (f64, f64) = (0.0, 100.0);

/// ECMA-262 pattern of an id or file name (lengths are separate): not `.`, no `..`, no `/`, `\`
/// or control character, and neither the first nor the last character is whitespace.
pub const ID_PATTERN: &str = concat!(
    r"^(?!\.$)(?![\s\S]*\.\.)",
    r"[^/\\\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]",
    r"(?:[^/\\\u0000-\u001f\u007f-\u009f]*",
    r"[^/\\\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff])?$"
);
/// ECMA-262 pattern of a name, tag or key: no control character.
pub const NAME_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";
/// ECMA-262 pattern of a SHA-256 digest in lower-case hex.
pub const SHA256_PATTERN: &str = r"^[0-9a-f]{64}$";

/// An event (or one event's body) that can check itself without any state.
pub trait Validate {
    /// `Ok` if every field satisfies its rule; otherwise the first refusal, naming the field.
    fn validate(&self) -> Result<(), EventError>;
}

fn refuse(field: &str, problem: FieldProblem) -> Result<(), EventError> {
    Err(EventError::field(field, problem))
}

fn is_whitespace(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), EventError> {
    if value.len() > max {
        return refuse(
            field,
            FieldProblem::TooLong {
                len: value.len(),
                max,
            },
        );
    }
    Ok(())
}

/// A non-empty string of at most `max` bytes without control characters.
fn check_name_max(field: &str, value: &str, max: usize) -> Result<(), EventError> {
    if value.is_empty() {
        return refuse(field, FieldProblem::Empty);
    }
    check_len(field, value, max)?;
    if value.chars().any(char::is_control) {
        return refuse(field, FieldProblem::ControlCharacter);
    }
    Ok(())
}

/// A string that is safe as one path component: the id rules with a maximum of `max` bytes.
fn check_component(field: &str, value: &str, max: usize) -> Result<(), EventError> {
    check_name_max(field, value, max)?;
    if let Some(sep) = value.chars().find(|c| matches!(c, '/' | '\\')) {
        return refuse(field, FieldProblem::PathSeparator(sep));
    }
    if value == "." {
        return refuse(field, FieldProblem::Dot);
    }
    if value.contains("..") {
        return refuse(field, FieldProblem::DotDot);
    }
    if value.starts_with(is_whitespace) || value.ends_with(is_whitespace) {
        return refuse(field, FieldProblem::SurroundingWhitespace);
    }
    Ok(())
}

/// Checks an id (`upgrade_id`, `task_id`, the idempotency `id`, ...).
pub fn check_id(field: &str, value: &str) -> Result<(), EventError> {
    check_component(field, value, ID_MAX)
}

/// Checks a file name: the id rules, at most [`FILE_NAME_MAX`] bytes.
pub fn check_file_name(field: &str, value: &str) -> Result<(), EventError> {
    check_component(field, value, FILE_NAME_MAX)
}

/// Checks a phase, name, cluster name, plan id or ETag.
pub fn check_name(field: &str, value: &str) -> Result<(), EventError> {
    check_name_max(field, value, NAME_MAX)
}

/// Checks an error, message or description.
pub fn check_text(field: &str, value: &str) -> Result<(), EventError> {
    check_len(field, value, TEXT_MAX)
}

/// Checks a percentage: finite and within [`PERCENTAGE_RANGE`].
pub fn check_percentage(field: &str, value: f64) -> Result<(), EventError> {
    let (min, max) = PERCENTAGE_RANGE;
    if !value.is_finite() {
        return refuse(field, FieldProblem::NotFinite(value));
    }
    if !(min..=max).contains(&value) {
        return refuse(field, FieldProblem::OutOfRange { value, min, max });
    }
    Ok(())
}

/// Checks a SHA-256 digest: 64 lower-case hex digits.
pub fn check_sha256(field: &str, value: &str) -> Result<(), EventError> {
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if value.len() != 64 || !value.bytes().all(hex) {
        return refuse(field, FieldProblem::NotSha256);
    }
    Ok(())
}

/// Checks an RFC 3339 time.
pub fn check_timestamp(field: &str, value: &str) -> Result<(), EventError> {
    match crate::timestamp::parse_rfc3339(value) {
        Ok(_) => Ok(()),
        Err(why) => refuse(field, FieldProblem::NotTimestamp(why)),
    }
}

/// Checks a tag list: at most [`TAGS_MAX`] tags of 1..=[`TAG_MAX`] bytes without control
/// characters; a tag is named `tags[i]` in errors.
pub fn check_tags(field: &str, tags: &[String]) -> Result<(), EventError> {
    if tags.len() > TAGS_MAX {
        return refuse(
            field,
            FieldProblem::TooMany {
                count: tags.len(),
                max: TAGS_MAX,
            },
        );
    }
    for (i, tag) in tags.iter().enumerate() {
        check_name_max(&format!("{field}[{i}]"), tag, TAG_MAX)?;
    }
    Ok(())
}

/// Applies `check` to an optional value.
fn opt<T: ?Sized>(
    field: &str,
    value: Option<&T>,
    check: fn(&str, &T) -> Result<(), EventError>,
) -> Result<(), EventError> {
    value.map_or(Ok(()), |v| check(field, v))
}

impl Validate for UpgradeStarted {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        check_name("plan_id", &self.plan_id)?;
        check_name("cluster_name", &self.cluster_name)?;
        check_name("phase", &self.phase)
    }
}

impl Validate for UpgradePhaseChanged {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        check_name("phase", &self.phase)
    }
}

impl Validate for UpgradeCompleted {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        opt("message", self.message.as_deref(), check_text)
    }
}

impl Validate for UpgradeFailed {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        check_text("error", &self.error)
    }
}

impl Validate for TaskAdded {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        check_id("task_id", &self.task_id)?;
        check_name("name", &self.name)?;
        opt("parent_id", self.parent_id.as_deref(), check_id)
    }
}

impl Validate for TaskTransition {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        check_id("task_id", &self.task_id)?;
        opt("message", self.message.as_deref(), check_text)
    }
}

impl Validate for TaskProgress {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        check_id("task_id", &self.task_id)?;
        check_percentage("percentage", self.percentage)?;
        opt("message", self.message.as_deref(), check_text)
    }
}

impl Validate for TaskCompleted {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        check_id("task_id", &self.task_id)?;
        opt("message", self.message.as_deref(), check_text)
    }
}

impl Validate for TaskFailed {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        check_id("task_id", &self.task_id)?;
        check_text("error", &self.error)
    }
}

impl Validate for SessionCreated {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("session_id", &self.session_id)?;
        check_id("upgrade_id", &self.upgrade_id)?;
        check_name("cluster_name", &self.cluster_name)
    }
}

impl Validate for CollectionCreated {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("session_id", &self.session_id)?;
        check_id("collection_id", &self.collection_id)?;
        check_name("name", &self.name)?;
        opt("task_id", self.task_id.as_deref(), check_id)
    }
}

impl Validate for ArtifactAdded {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("session_id", &self.session_id)?;
        check_id("collection_id", &self.collection_id)?;
        check_id("artifact_id", &self.artifact_id)?;
        check_file_name("file_name", &self.file_name)?;
        check_sha256("sha256", &self.sha256)?;
        check_tags("tags", &self.tags)?;
        opt("task_id", self.task_id.as_deref(), check_id)?;
        opt("description", self.description.as_deref(), check_text)?;
        opt("expires_at", self.expires_at.as_deref(), check_timestamp)
    }
}

impl Validate for ArtifactUploaded {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("artifact_id", &self.artifact_id)?;
        check_name_max("s3_key", &self.s3_key, S3_KEY_MAX)?;
        check_name("etag", &self.etag)
    }
}

impl Validate for ArtifactUploadFailed {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("artifact_id", &self.artifact_id)?;
        check_text("error", &self.error)
    }
}

impl Validate for ArtifactArchived {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("artifact_id", &self.artifact_id)
    }
}

impl Validate for ArtifactDeleted {
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("artifact_id", &self.artifact_id)
    }
}

impl Validate for JournalRepaired {
    /// Checks the fields only; [`super::Event::validate`] refuses the event as a whole from
    /// producers.
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_text("segment", &self.segment)?;
        check_text("reason", &self.reason)?;
        opt("quarantine", self.quarantine.as_deref(), check_text)
    }
}

impl Validate for SubscriberSkipped {
    /// Checks the fields only; producers may not append it (see [`JournalRepaired`]).
    fn validate(&self) -> Result<(), EventError> {
        opt("id", self.id.as_deref(), check_id)?;
        check_id("consumer", &self.consumer)?;
        check_text("event_type", &self.event_type)?;
        check_text("reason", &self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(r: Result<(), EventError>) -> Option<FieldProblem> {
        match r {
            Ok(()) => None,
            Err(EventError::Field { problem, .. }) => Some(problem),
            Err(other) => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn ids() {
        for good in [
            "u-1",
            "task_1.2",
            "a",
            "a.b",
            "ünïcode",
            "with space",
            ".hidden",
        ] {
            assert_eq!(problem(check_id("task_id", good)), None, "{good:?}");
        }
        let cases: [(&str, FieldProblem); 13] = [
            ("", FieldProblem::Empty),
            ("a/b", FieldProblem::PathSeparator('/')),
            ("a\\b", FieldProblem::PathSeparator('\\')),
            ("..", FieldProblem::DotDot),
            ("a..b", FieldProblem::DotDot),
            (".", FieldProblem::Dot),
            ("a\0b", FieldProblem::ControlCharacter),
            ("a\nb", FieldProblem::ControlCharacter),
            ("a\u{7f}", FieldProblem::ControlCharacter),
            ("a\u{85}", FieldProblem::ControlCharacter),
            (" a", FieldProblem::SurroundingWhitespace),
            ("a\u{3000}", FieldProblem::SurroundingWhitespace),
            ("\u{feff}a", FieldProblem::SurroundingWhitespace),
        ];
        for (bad, why) in cases {
            assert_eq!(problem(check_id("task_id", bad)), Some(why), "{bad:?}");
        }
        assert_eq!(problem(check_id("x", &"a".repeat(128))), None);
        assert_eq!(
            problem(check_id("x", &"a".repeat(129))),
            Some(FieldProblem::TooLong { len: 129, max: 128 })
        );
        // Bytes, not characters: 43 three-byte characters are 129 bytes.
        assert!(problem(check_id("x", &"€".repeat(43))).is_some());
        let err = check_id("task_id", "../etc").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("task_id: contains '/', which could escape a directory")
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(
            problem(check_file_name("file_name", &"a".repeat(255))),
            None
        );
        assert!(problem(check_file_name("file_name", &"a".repeat(256))).is_some());
        assert_eq!(
            problem(check_file_name("file_name", ".")),
            Some(FieldProblem::Dot)
        );
        assert_eq!(problem(check_file_name("file_name", "kubectl.log")), None);
    }

    #[test]
    fn numbers_and_formats() {
        for good in [0.0, 50.5, 100.0] {
            assert_eq!(problem(check_percentage("percentage", good)), None);
        }
        assert!(matches!(
            problem(check_percentage("percentage", f64::NAN)),
            Some(FieldProblem::NotFinite(_))
        ));
        assert!(matches!(
            problem(check_percentage("percentage", f64::INFINITY)),
            Some(FieldProblem::NotFinite(_))
        ));
        assert!(matches!(
            problem(check_percentage("percentage", -0.1)),
            Some(FieldProblem::OutOfRange { .. })
        ));
        assert!(matches!(
            problem(check_percentage("percentage", 100.000_001)),
            Some(FieldProblem::OutOfRange { .. })
        ));
        let digest = "0123456789abcdef".repeat(4);
        assert_eq!(problem(check_sha256("sha256", &digest)), None);
        assert!(problem(check_sha256("sha256", &digest.to_uppercase())).is_some());
        assert!(problem(check_sha256("sha256", &digest[1..])).is_some());
        assert_eq!(
            problem(check_timestamp("expires_at", "2026-01-01T00:00:00Z")),
            None
        );
        assert!(matches!(
            problem(check_timestamp("expires_at", "tomorrow")),
            Some(FieldProblem::NotTimestamp(_))
        ));
        assert_eq!(problem(check_text("error", &"x".repeat(TEXT_MAX))), None);
        assert!(problem(check_text("error", &"x".repeat(TEXT_MAX + 1))).is_some());
        assert_eq!(problem(check_text("error", "line 1\nline 2\t")), None);
    }

    #[test]
    fn tags() {
        let tags = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        assert_eq!(problem(check_tags("tags", &tags(64))), None);
        assert_eq!(
            problem(check_tags("tags", &tags(65))),
            Some(FieldProblem::TooMany { count: 65, max: 64 })
        );
        let bad = vec!["ok".to_string(), String::new()];
        let err = check_tags("tags", &bad).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("tags[1]: must not be empty"));
        assert!(problem(check_tags("tags", &["a\tb".to_string()])).is_some());
        assert!(problem(check_tags("tags", &["x".repeat(129)])).is_some());
    }
}
