//! Artifact search filters and statistics: one query type for both the in-memory state
//! ([`ArtifactQuery::matches`]) and the SQLite projection (which turns it into SQL and FTS5).
//!
//! Free text (`text`): every word of the query must occur as a word of the file name, the
//! description or a tag. Words are runs of letters and digits, compared case-insensitively
//! (as FTS5's default tokenizer does for ASCII; the projection uses FTS5 itself).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::event::{ArtifactStatus, ArtifactType};
use crate::state::ArtifactView;

/// How tags are matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TagMatch {
    /// The artifact has every listed tag.
    #[default]
    All,
    /// The artifact has at least one listed tag.
    Any,
}

/// Search filters; every filter that is set must match (empty query: everything).
#[derive(Debug, Clone, Default)]
pub struct ArtifactQuery {
    /// Artifact type.
    pub artifact_type: Option<ArtifactType>,
    /// Tags, matched per `tag_match`.
    pub tags: Vec<String>,
    /// All or any of the tags.
    pub tag_match: TagMatch,
    /// Producing task.
    pub task_id: Option<String>,
    /// Status.
    pub status: Option<ArtifactStatus>,
    /// Session.
    pub session_id: Option<String>,
    /// Smallest size in bytes (inclusive).
    pub min_size: Option<u64>,
    /// Largest size in bytes (inclusive).
    pub max_size: Option<u64>,
    /// Created at or after (µs since epoch).
    pub created_from_us: Option<i64>,
    /// Created at or before (µs since epoch).
    pub created_until_us: Option<i64>,
    /// Glob over the file name (`*` and `?`).
    pub name_glob: Option<String>,
    /// Free text: every word must occur in the file name, description or tags.
    pub text: Option<String>,
    /// At most this many results (by artifact id).
    pub limit: Option<usize>,
}

/// The words of `text`: runs of letters and digits, lower-cased.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl ArtifactQuery {
    /// Whether `a` matches every filter that is set.
    pub fn matches(&self, a: &ArtifactView) -> bool {
        let tags = match self.tag_match {
            TagMatch::All => self.tags.iter().all(|t| a.tags.contains(t)),
            TagMatch::Any => self.tags.is_empty() || self.tags.iter().any(|t| a.tags.contains(t)),
        };
        tags && self.artifact_type.is_none_or(|t| a.artifact_type == t)
            && self
                .task_id
                .as_ref()
                .is_none_or(|t| a.task_id.as_ref() == Some(t))
            && self.status.is_none_or(|s| a.status == s)
            && self.session_id.as_ref().is_none_or(|s| &a.session_id == s)
            && self.min_size.is_none_or(|m| a.size_bytes >= m)
            && self.max_size.is_none_or(|m| a.size_bytes <= m)
            && self.created_from_us.is_none_or(|t| a.created_at_us >= t)
            && self.created_until_us.is_none_or(|t| a.created_at_us <= t)
            && self
                .name_glob
                .as_ref()
                .is_none_or(|g| crate::type_filter::glob_match(g, &a.file_name))
            && self.text.as_deref().is_none_or(|text| {
                let mut have = words(&a.file_name);
                have.extend(a.description.as_deref().map(words).unwrap_or_default());
                have.extend(a.tags.iter().flat_map(|t| words(t)));
                words(text).iter().all(|w| have.contains(w))
            })
    }
}

/// Counts and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tally {
    /// Number of artifacts.
    pub count: u64,
    /// Their total size.
    pub bytes: u64,
}

/// Statistics over all artifacts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ArtifactStats {
    /// Everything.
    pub total: Tally,
    /// By artifact type (snake_case name).
    pub by_type: BTreeMap<String, Tally>,
    /// By status (snake_case name).
    pub by_status: BTreeMap<String, Tally>,
}

/// Statistics of `artifacts`.
pub fn statistics<'a>(artifacts: impl Iterator<Item = &'a ArtifactView>) -> ArtifactStats {
    let mut stats = ArtifactStats::default();
    for a in artifacts {
        for tally in [
            &mut stats.total,
            stats
                .by_type
                .entry(a.artifact_type.as_str().into())
                .or_default(),
            stats.by_status.entry(a.status.as_str().into()).or_default(),
        ] {
            tally.count += 1;
            tally.bytes += a.size_bytes;
        }
    }
    stats
}
