//! The artifact and session routes (what the Python package's remote mode and other languages
//! use): `POST /v1/sessions`, `POST /v1/sessions/{id}/collections`, `POST /v1/artifacts`
//! (multipart upload), `GET /v1/artifacts/{id}`, `POST /v1/artifacts/{id}/upload` (to S3 now),
//! `GET /v1/artifacts/{id}/url` (pre-signed), `GET /v1/statistics`, `POST /v1/retention`.
//!
//! Invariants: an upload is streamed into a staged file (constant memory: one buffer of
//! [`WRITE_BUFFER`]), hashed with SHA-256 on the way and refused past
//! [`AppState::artifact_bytes_max`] (413, `too_large`); it enters the store and the journal
//! only once complete and accepted, so a refused or interrupted upload writes nothing and
//! leaves no file. Refusals carry the same codes as the Python package (`{"code", "reason"}`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::artifacts::{ArtifactError, NewArtifact, Staged};
use crate::event::ArtifactType;
use crate::s3::{ArtifactUploader, UploadConfig};

/// Bytes of an upload buffered before each write to the staged file.
pub const WRITE_BUFFER: usize = 1 << 20;

/// Tells generated ids of one process apart.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A new id `{kind}-{µs}-{n}` (unique in this journal: one writer per data dir).
fn new_id(kind: &str) -> String {
    format!(
        "{kind}-{}-{}",
        crate::timestamp::now_us(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|e| ApiError::bad_request(e.body_text()).with_code("invalid"))
}

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(t)| t)
        .map_err(|e| ApiError::bad_request(e.body_text()).with_code("invalid"))
}

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// `POST /v1/sessions` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// Generated when absent.
    pub session_id: Option<String>,
    /// The upgrade (may be recorded in another journal).
    pub upgrade_id: String,
    /// The cluster.
    pub cluster_name: String,
}

/// `POST /v1/sessions`: records `session.created`; 201 with the session.
#[utoipa::path(post, path = "/v1/sessions", tag = "artifacts", request_body = NewSession,
    responses((status = 201, description = "Recorded `session.created`", body = Object),
              (status = 400, description = "Refused", body = crate::server::openapi::ErrorBody),
              (status = 409, description = "Duplicate session id", body = crate::server::openapi::ErrorBody),
              (status = 415, description = "Not JSON", body = crate::server::openapi::ErrorBody),
              (status = 422, description = "Unreadable JSON body", body = crate::server::openapi::ErrorBody)))]
pub async fn create_session(
    State(app): State<Arc<AppState>>,
    json: Result<Json<NewSession>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new = body(json)?;
    let session_id = new.session_id.unwrap_or_else(|| new_id("session"));
    let store = app.artifacts.clone();
    let (id, upgrade, cluster) = (
        session_id.clone(),
        new.upgrade_id.clone(),
        new.cluster_name.clone(),
    );
    let offset = blocking(move || Ok(store.create_session(&id, &upgrade, &cluster)?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"session_id": session_id, "upgrade_id": new.upgrade_id,
            "cluster_name": new.cluster_name, "offset": offset}),
        ),
    ))
}

/// `POST /v1/sessions/{id}/collections` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCollection {
    /// Generated when absent.
    pub collection_id: Option<String>,
    /// Its name.
    pub name: String,
    /// The task it belongs to.
    pub task_id: Option<String>,
}

/// `POST /v1/sessions/{id}/collections`: records `collection.created`; 201 with it.
#[utoipa::path(post, path = "/v1/sessions/{id}/collections", tag = "artifacts", request_body = NewCollection,
    params(("id" = String, Path, description = "Session id")),
    responses((status = 201, description = "Recorded `collection.created`", body = Object),
              (status = 400, description = "Refused", body = crate::server::openapi::ErrorBody),
              (status = 404, description = "Unknown session", body = crate::server::openapi::ErrorBody),
              (status = 409, description = "Duplicate collection id", body = crate::server::openapi::ErrorBody),
              (status = 415, description = "Not JSON", body = crate::server::openapi::ErrorBody),
              (status = 422, description = "Unreadable JSON body", body = crate::server::openapi::ErrorBody)))]
pub async fn create_collection(
    State(app): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    json: Result<Json<NewCollection>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let session_id = path_id(id)?;
    let new = body(json)?;
    let collection_id = new.collection_id.unwrap_or_else(|| new_id("collection"));
    let store = app.artifacts.clone();
    let (session, collection, name, task) = (
        session_id.clone(),
        collection_id.clone(),
        new.name.clone(),
        new.task_id.clone(),
    );
    let offset = blocking(move || {
        Ok(store.create_collection(&session, &collection, &name, task.as_deref())?)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"session_id": session_id, "collection_id": collection_id,
            "name": new.name, "task_id": new.task_id, "offset": offset}),
        ),
    ))
}

/// The form of `POST /v1/artifacts` (for the OpenAPI document; the handler reads the parts as
/// they come, see [`UploadFields`]).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The session.
    session_id: String,
    /// The collection.
    collection_id: String,
    /// The artifact's type.
    artifact_type: crate::event::ArtifactType,
    /// Generated when absent.
    artifact_id: Option<String>,
    /// Tags (repeated fields, or one comma-separated list).
    tags: Option<Vec<String>>,
    /// The producing task.
    task_id: Option<String>,
    /// A description.
    description: Option<String>,
    /// Expiry (RFC 3339).
    expires_at: Option<String>,
    /// The stored file's name (default: the file part's file name).
    file_name: Option<String>,
    /// The file, last.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The metadata fields of an upload, gathered in any order.
#[derive(Debug, Default)]
struct UploadFields {
    session_id: Option<String>,
    collection_id: Option<String>,
    artifact_id: Option<String>,
    artifact_type: Option<String>,
    tags: Vec<String>,
    task_id: Option<String>,
    description: Option<String>,
    expires_at: Option<String>,
    file_name: Option<String>,
}

impl UploadFields {
    fn set(&mut self, name: &str, value: String) -> Result<(), ApiError> {
        let slot = match name {
            "session_id" => &mut self.session_id,
            "collection_id" => &mut self.collection_id,
            "artifact_id" => &mut self.artifact_id,
            "artifact_type" => &mut self.artifact_type,
            "task_id" => &mut self.task_id,
            "description" => &mut self.description,
            "expires_at" => &mut self.expires_at,
            "file_name" => &mut self.file_name,
            "tags" => {
                // Repeated fields, or one comma-separated list.
                self.tags.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string),
                );
                return Ok(());
            }
            other => {
                return Err(ApiError::refused(
                    "invalid",
                    format!("unknown form field {other:?}"),
                ));
            }
        };
        *slot = Some(value);
        Ok(())
    }

    fn artifact(&self, file_name: Option<String>) -> Result<NewArtifact, ApiError> {
        let need = |v: &Option<String>, name: &str| {
            v.clone()
                .ok_or_else(|| ApiError::refused("invalid", format!("missing form field {name:?}")))
        };
        let kind = need(&self.artifact_type, "artifact_type")?;
        let artifact_type: ArtifactType = serde_json::from_value(Value::String(kind.clone()))
            .map_err(|_| ApiError::refused("invalid", format!("unknown artifact_type {kind:?}")))?;
        Ok(NewArtifact {
            session_id: need(&self.session_id, "session_id")?,
            collection_id: need(&self.collection_id, "collection_id")?,
            artifact_id: self
                .artifact_id
                .clone()
                .unwrap_or_else(|| new_id("artifact")),
            source: std::path::PathBuf::new(),
            file_name: self.file_name.clone().or(file_name),
            artifact_type,
            tags: self.tags.clone(),
            task_id: self.task_id.clone(),
            description: self.description.clone(),
            expires_at: self.expires_at.clone(),
        })
    }
}

/// Writes `buf` to `staged` on the blocking pool.
async fn flush(mut staged: Staged, buf: Vec<u8>) -> Result<(Staged, Vec<u8>), ApiError> {
    tokio::task::spawn_blocking(move || {
        staged.write(&buf)?;
        let mut buf = buf;
        buf.clear();
        Ok::<_, ArtifactError>((staged, buf))
    })
    .await
    .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
    .map_err(ApiError::from)
}

/// How much of a refused upload's remaining body is read (and discarded) before the refusal is
/// answered: a client still sending gets the answer instead of a reset connection. Beyond it,
/// the connection is closed after the answer.
pub const DRAIN_MAX: u64 = 64 << 20;

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let code = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        _ => "invalid",
    };
    ApiError::new(e.status(), e.body_text()).with_code(code)
}

/// `POST /v1/artifacts`: a multipart upload (fields `session_id`, `collection_id`,
/// `artifact_type`, optional `artifact_id`, `tags`, `task_id`, `description`, `expires_at`,
/// `file_name`, and the `file`); 201 with the artifact. See the module docs.
#[utoipa::path(post, path = "/v1/artifacts", tag = "artifacts",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "Stored and recorded `artifact.added`", body = crate::state::ArtifactView),
              (status = 400, description = "Refused (nothing written)", body = crate::server::openapi::ErrorBody),
              (status = 404, description = "Unknown session", body = crate::server::openapi::ErrorBody),
              (status = 409, description = "Duplicate artifact id or file name", body = crate::server::openapi::ErrorBody),
              (status = 413, description = "Over --max-artifact-bytes (`too_large`)", body = crate::server::openapi::ErrorBody),
              (status = 415, description = "Not multipart/form-data", body = crate::server::openapi::ErrorBody)))]
pub async fn upload(
    State(app): State<Arc<AppState>>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut multipart =
        multipart.map_err(|e| ApiError::bad_request(e.body_text()).with_code("invalid"))?;
    let received = receive(&app, &mut multipart).await;
    if received.is_err() {
        drain(&mut multipart).await;
    }
    received
}

/// Reads and discards what is left of a refused upload, at most [`DRAIN_MAX`] bytes.
async fn drain(multipart: &mut Multipart) {
    let mut drained = 0u64;
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(chunk)) = field.chunk().await {
            drained += chunk.len() as u64;
            if drained > DRAIN_MAX {
                return;
            }
        }
    }
}

async fn receive(
    app: &Arc<AppState>,
    multipart: &mut Multipart,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut fields = UploadFields::default();
    let mut file: Option<(Staged, Option<String>)> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name != "file" {
            let value = field.text().await.map_err(multipart_error)?;
            fields.set(&name, value)?;
            continue;
        }
        if file.is_some() {
            return Err(ApiError::refused("invalid", "more than one file field"));
        }
        let file_name = field.file_name().map(str::to_string);
        // Refuse before streaming when the metadata came first (the usual order).
        if fields.session_id.is_some() && fields.collection_id.is_some() {
            let new = fields.artifact(file_name.clone())?;
            let store = app.artifacts.clone();
            blocking(move || Ok(store.preflight(&new)?)).await?;
        }
        let store = app.artifacts.clone();
        let limit = app.artifact_bytes_max;
        let mut staged = blocking(move || Ok(store.stage(limit)?)).await?;
        let mut buf = Vec::with_capacity(WRITE_BUFFER);
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            buf.extend_from_slice(&chunk);
            if buf.len() >= WRITE_BUFFER {
                (staged, buf) = flush(staged, buf).await?;
            }
        }
        (staged, _) = flush(staged, buf).await?;
        file = Some((staged, file_name));
    }
    let Some((staged, file_name)) = file else {
        return Err(ApiError::refused("invalid", "missing the \"file\" field"));
    };
    let new = fields.artifact(file_name)?;
    let store = app.artifacts.clone();
    let view = blocking(move || Ok(store.add_staged(&new, staged)?)).await?;
    Ok((StatusCode::CREATED, Json(json!(view))))
}

/// `GET /v1/artifacts/{id}`: one artifact.
#[utoipa::path(get, path = "/v1/artifacts/{id}", tag = "artifacts",
    params(("id" = String, Path, description = "Artifact id")),
    responses((status = 200, description = "The artifact", body = crate::state::ArtifactView),
              (status = 400, description = "Bad parameter", body = crate::server::openapi::ErrorBody),
              (status = 404, description = "Unknown artifact", body = crate::server::openapi::ErrorBody)))]
pub async fn artifact(
    State(app): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(id)?;
    let view = app
        .recorder
        .live()?
        .artifact(&id)
        .map_err(crate::recorder::RecordError::from)?
        .ok_or_else(|| ApiError::refused("unknown_artifact", format!("unknown artifact {id:?}")))?;
    Ok(Json(json!(view)))
}

fn uploader(app: &AppState) -> Result<ArtifactUploader, ApiError> {
    let (location, sdk) = app.s3.as_ref().ok_or_else(|| {
        ApiError::refused(
            "no_s3",
            "this server has no S3 location: start it with --s3 s3://bucket/prefix",
        )
    })?;
    Ok(ArtifactUploader::new(
        crate::s3::client(sdk),
        location.clone(),
        app.recorder.clone(),
        app.data_dir.join("artifacts"),
        UploadConfig::default(),
    ))
}

fn s3_error(error: crate::s3::S3Error) -> ApiError {
    match error {
        crate::s3::S3Error::Record(e) => e.into(),
        e if e.is_bad_input() => ApiError::refused("invalid", e.to_string()),
        e => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()).with_code("s3"),
    }
}

/// `POST /v1/artifacts/{id}/upload`: uploads the artifact to S3 now (checked against its
/// SHA-256; records `artifact.uploaded`); the artifact.
#[utoipa::path(post, path = "/v1/artifacts/{id}/upload", tag = "artifacts",
    params(("id" = String, Path, description = "Artifact id")),
    responses((status = 200, description = "Uploaded (recorded `artifact.uploaded`)", body = crate::state::ArtifactView),
              (status = 400, description = "No S3 location (`no_s3`), or refused", body = crate::server::openapi::ErrorBody),
              (status = 404, description = "Unknown artifact", body = crate::server::openapi::ErrorBody),
              (status = 409, description = "Deleted artifact", body = crate::server::openapi::ErrorBody),
              (status = 502, description = "S3 failed", body = crate::server::openapi::ErrorBody)))]
pub async fn upload_to_s3(
    State(app): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(id)?;
    let uploader = uploader(&app)?;
    uploader.upload(&id).await.map_err(s3_error)?;
    artifact(State(app), Ok(Path(id))).await
}

/// `GET /v1/artifacts/{id}/url` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UrlQuery {
    /// Seconds the URL is valid (1..=604800, default 3600).
    pub expires_in: Option<u64>,
}

/// `GET /v1/artifacts/{id}/url?expires_in=3600`: a pre-signed GET URL of an uploaded artifact,
/// `{"url": ...}`.
#[utoipa::path(get, path = "/v1/artifacts/{id}/url", tag = "artifacts",
    params(("id" = String, Path, description = "Artifact id"), UrlQuery),
    responses((status = 200, description = "`url`, `expires_in`", body = Object),
              (status = 400, description = "No S3 location, not uploaded, or bad expiry", body = crate::server::openapi::ErrorBody),
              (status = 404, description = "Unknown artifact", body = crate::server::openapi::ErrorBody),
              (status = 409, description = "Deleted artifact", body = crate::server::openapi::ErrorBody),
              (status = 502, description = "S3 failed", body = crate::server::openapi::ErrorBody)))]
pub async fn presigned_url(
    State(app): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<UrlQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(id)?;
    let Query(query) =
        query.map_err(|e| ApiError::bad_request(e.body_text()).with_code("invalid"))?;
    let secs = query.expires_in.unwrap_or(3600);
    if !(1..=604_800).contains(&secs) {
        return Err(ApiError::refused(
            "out_of_range",
            format!("expires_in must be 1..=604800 seconds (S3's limit), not {secs}"),
        ));
    }
    let url = uploader(&app)?
        .presigned_url(&id, Duration::from_secs(secs))
        .await
        .map_err(s3_error)?;
    Ok(Json(json!({ "url": url, "expires_in": secs })))
}

/// `GET /v1/statistics`: artifact counts and bytes, in total, by type and by status.
#[utoipa::path(get, path = "/v1/statistics", tag = "artifacts",
    responses((status = 200, description = "Counts and bytes, in total, by type, by status", body = crate::artifacts::ArtifactStats)))]
pub async fn statistics(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let store = app.artifacts.clone();
    let stats = blocking(move || Ok(store.statistics()?)).await?;
    Ok(Json(json!(stats)))
}

/// `POST /v1/retention`: deletes expired artifacts (and their S3 objects when the server has an
/// S3 location); `{"deleted": [ids]}`.
#[utoipa::path(post, path = "/v1/retention", tag = "artifacts",
    responses((status = 200, description = "`deleted`: the ids of the expired artifacts deleted", body = Object),
              (status = 502, description = "S3 failed", body = crate::server::openapi::ErrorBody)))]
pub async fn retention(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let store = app.artifacts.clone();
    let deleted = blocking(move || Ok(store.apply_retention(crate::timestamp::now_us())?)).await?;
    if app.s3.is_some() {
        uploader(&app)?.delete_deleted().await.map_err(s3_error)?;
    }
    Ok(Json(json!({ "deleted": deleted })))
}
