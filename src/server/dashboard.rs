//! The live dashboard: `GET /` serves one self-contained page (HTML, CSS and JavaScript, no
//! CDN, no build step; embedded in the binary from `dashboard.html`), and
//! `GET /v1/artifacts/{id}/download` serves an artifact's file from the store for its links.
//!
//! The page loads the snapshot of an upgrade (`/v1/upgrades/{id}`, whose `as_of` is the last
//! offset it includes), then streams `/v1/stream?from=as_of+1`; each event is shown in the
//! feed and triggers a fresh snapshot (at most four a second), so what it shows is always the
//! server's roll-up. A dropped stream reconnects with `from=<last offset + 1>`. With a token,
//! the page takes it from `#token=T` (or asks), sends it as a bearer header, and as `?token=` on
//! the WebSocket and download links (the only routes that accept it there).
//!
//! Invariants: the page is static (public even with a token: it carries no data); a download
//! serves only a file the journal names for a live artifact, from its store path (ids and file
//! names are validated at record time, so the path cannot escape the store), streamed in
//! chunks (memory does not grow with the file).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;

use super::AppState;
use super::error::ApiError;
use crate::event::ArtifactStatus;

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

/// `GET /`: the dashboard page.
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The dashboard page (a WebSocket upgrade here gets the live stream, as /v1/stream)", content_type = "text/html", body = String)))]
pub async fn page() -> Response {
    let mut response = PAGE.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self' ws: wss:",
        ),
    );
    response
}

/// `GET /v1/artifacts/{id}/download`: the artifact's file, as an attachment.
#[utoipa::path(get, path = "/v1/artifacts/{id}/download", tag = "artifacts",
    params(("id" = String, Path, description = "Artifact id"),
           ("token" = Option<String>, Query, description = "The bearer token, for links")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 400, description = "Bad parameter", body = crate::server::openapi::ErrorBody),
              (status = 404, description = "Unknown or deleted artifact, or its file is not in this store", body = crate::server::openapi::ErrorBody)))]
pub async fn download(
    State(app): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let artifact = app
        .recorder
        .live()?
        .artifact(&id)
        .map_err(crate::recorder::RecordError::from)?
        .ok_or_else(|| ApiError::not_found(format!("unknown artifact {id:?}")))?;
    if artifact.status == ArtifactStatus::Deleted {
        return Err(ApiError::not_found(format!("artifact {id:?} was deleted")));
    }
    let path = app
        .data_dir
        .join("artifacts")
        .join(&artifact.session_id)
        .join(&artifact.collection_id)
        .join(&artifact.file_name);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::not_found(format!(
            "artifact {id:?}: its file is not in this data dir's store ({e})"
        ))
    })?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(format!("artifact {id:?}: {e}")))?
        .len();
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 << 10];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let disposition = format!(
        "attachment; filename=\"{}\"",
        artifact.file_name.replace(['"', '\\'], "_")
    );
    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
