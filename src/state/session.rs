//! Session, collection and artifact views, folded from events.

use serde::Serialize;

use crate::event::{ArtifactStatus, ArtifactType};

/// The view of one artifact session.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Session id.
    pub session_id: String,
    /// The upgrade it belongs to.
    pub upgrade_id: String,
    /// Cluster.
    pub cluster_name: String,
    /// Creation time.
    pub created_at_us: i64,
    /// Collections in creation order.
    pub collections: Vec<CollectionView>,
}

/// The view of one collection.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CollectionView {
    /// Collection id (unique within the session).
    pub collection_id: String,
    /// Name.
    pub name: String,
    /// Task it belongs to.
    pub task_id: Option<String>,
    /// Artifact ids in the order they were added.
    pub artifact_ids: Vec<String>,
}

/// The view of one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ArtifactView {
    /// Artifact id (unique across the journal).
    pub artifact_id: String,
    /// Session.
    pub session_id: String,
    /// Collection.
    pub collection_id: String,
    /// File name.
    pub file_name: String,
    /// Type.
    pub artifact_type: ArtifactType,
    /// Status.
    pub status: ArtifactStatus,
    /// SHA-256 (hex).
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Tags.
    pub tags: Vec<String>,
    /// Task that produced it.
    pub task_id: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// S3 key once uploaded.
    pub s3_key: Option<String>,
    /// ETag once uploaded.
    pub etag: Option<String>,
    /// Last upload error.
    pub error: Option<String>,
    /// Creation time.
    pub created_at_us: i64,
    /// Expiry (RFC 3339), if any.
    pub expires_at: Option<String>,
}
