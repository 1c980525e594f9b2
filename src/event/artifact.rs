//! Events of the artifact store: `session.created`, `collection.created`, `artifact.added`,
//! `.uploaded`, `.upload_failed`, `.archived`, `.deleted`.
//!
//! Invariants: as in [`super::upgrade`]. Session and artifact ids are unique across the journal,
//! a collection id within its session; ids and file names are path components of the artifact's
//! local and S3 location (`{session_id}/{collection_id}/{file_name}`), which is why
//! [`super::validate`] refuses anything that could escape a directory.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::{ArtifactType, DeleteReason};
use super::validate::{
    FILE_NAME_MAX, ID_MAX, ID_PATTERN, NAME_MAX, NAME_PATTERN, S3_KEY_MAX, SHA256_PATTERN, TAG_MAX,
    TAGS_MAX, TEXT_MAX,
};

/// An artifact session was opened for an upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionCreated {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The session (unique across the journal).
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub session_id: String,
    /// The upgrade it belongs to.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub upgrade_id: String,
    /// The cluster.
    #[schemars(length(min = 1, max = NAME_MAX), pattern(NAME_PATTERN))]
    pub cluster_name: String,
}

/// A collection of artifacts was created in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionCreated {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The session holding it.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub session_id: String,
    /// The collection (unique within its session).
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub collection_id: String,
    /// Human-readable name.
    #[schemars(length(min = 1, max = NAME_MAX), pattern(NAME_PATTERN))]
    pub name: String,
    /// The task (of the session's upgrade) it documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub task_id: Option<String>,
}

/// A file was added to a collection (status `created`): copied into the store and hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactAdded {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The session holding the collection.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub session_id: String,
    /// The collection holding the artifact.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub collection_id: String,
    /// The artifact (unique across the journal).
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub artifact_id: String,
    /// The file's name in the collection (one path component).
    #[schemars(length(min = 1, max = FILE_NAME_MAX), pattern(ID_PATTERN))]
    pub file_name: String,
    /// What the file holds.
    pub artifact_type: ArtifactType,
    /// SHA-256 of the content, lower-case hex.
    #[schemars(pattern(SHA256_PATTERN))]
    pub sha256: String,
    /// Size of the content in bytes.
    pub size_bytes: u64,
    /// Search tags.
    #[schemars(length(max = TAGS_MAX), inner(length(min = 1, max = TAG_MAX), pattern(NAME_PATTERN)))]
    pub tags: Vec<String>,
    /// The task (of the session's upgrade) that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub task_id: Option<String>,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = TEXT_MAX))]
    pub description: Option<String>,
    /// When retention may delete it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,
}

/// An artifact's file was uploaded to S3 (status `uploaded`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactUploaded {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The artifact.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub artifact_id: String,
    /// The object's key.
    #[schemars(length(min = 1, max = S3_KEY_MAX), pattern(NAME_PATTERN))]
    pub s3_key: String,
    /// The object's ETag as S3 returned it.
    #[schemars(length(min = 1, max = NAME_MAX), pattern(NAME_PATTERN))]
    pub etag: String,
}

/// An upload of an artifact failed (status `failed`; a later upload may still succeed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactUploadFailed {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The artifact.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub artifact_id: String,
    /// What went wrong.
    #[schemars(length(max = TEXT_MAX))]
    pub error: String,
}

/// An artifact was archived (status `archived`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactArchived {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The artifact.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub artifact_id: String,
}

/// An artifact's file was deleted (status `deleted`, terminal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactDeleted {
    /// Idempotency key chosen by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The artifact.
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub artifact_id: String,
    /// Why.
    pub reason: DeleteReason,
}
