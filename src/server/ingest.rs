//! `POST /v1/events`: NDJSON in, through exactly the path of `logbook record`.
//!
//! Each line (numbered from 1 within the request; `record --to` adds its chunk's start) is
//! trimmed; blank lines are skipped; a line longer than the journal's record limit, one that is
//! not a typed event ([`parse_event`]) or one the state refuses ([`Recorder::record_all`]) is
//! refused by number with the same reason text `record` prints, and nothing of it is written.
//! The other lines are appended in order with one group commit. A non-UTF-8 line is refused like
//! any other unparsable line (reason from the parser), so the rest of the body still counts.
//!
//! Status: 200 if nothing was refused, 400 if any line was refused, **the accepted lines are
//! written all the same** (as with `record`, which exits 2 but keeps them); the body says which,
//! listing at most [`LISTED_LINES_MAX`] refused (and already-recorded) lines, the first by line
//! number, with `refused_count` and `refused_truncated` (see [`crate::ingest`]).
//! 413 over [`MAX_BODY_BYTES`] (nothing written). 503 with the cause if the journal failed
//! during the batch or before it: from then on every request fails fast with 503 until the
//! server is restarted; what the caller may assume about the batch is in [`crate::ingest`].
//!
//! Bounds (nothing written in any of these cases):
//! - **Turns.** At most [`Limits::ingests_max`](super::Limits::ingests_max) requests are read
//!   and processed at once. Another waits for a turn, before any of its body is read, for up to
//!   [`Limits::ingest_wait`](super::Limits::ingest_wait), then gets `503 {"error": ..}` with
//!   `Retry-After: 1` (`logbook record --to` retries it). A turn is held until the journal
//!   answered, even if the client left meanwhile.
//! - **Body stalls.** A body that sends nothing for the header timeout gets 408.
//! - **One copy.** The body is read once into a buffer of its declared length and parsed in
//!   place.
//!
//! The SQLite projection (`state.sqlite`) follows the journal on its own (the recorder's
//! projector), so `show`, `artifacts search` and other readers of the projection follow what
//! was posted without the request waiting for it.

use std::sync::Arc;

use axum::Json;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use crate::ingest::{AlreadyRecordedLine, IngestReport, LISTED_LINES_MAX, RefusedLine, ingest};

use super::AppState;
use super::error::ApiError;

/// The largest request body accepted (413 beyond it).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The handler of `POST /v1/events`.
#[utoipa::path(post, path = "/v1/events", tag = "ingest",
    request_body(content = String, content_type = "text/plain", description = "NDJSON: one event per line, as `logbook record` takes them (any content type is read as NDJSON)"),
    responses((status = 200, description = "Every line recorded (or already recorded)", body = crate::ingest::IngestReport),
              (status = 400, description = "Some lines were refused (the others are recorded)", body = crate::ingest::IngestReport),
              (status = 408, description = "The body stalled", body = crate::server::openapi::ErrorBody),
              (status = 409, description = "A read-only replica", body = crate::server::openapi::ErrorBody),
              (status = 413, description = "Body over 16 MiB", body = crate::server::openapi::ErrorBody)))]
pub async fn post_events(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body exceeds the {MAX_BODY_BYTES}-byte limit; send fewer lines per request"
            ),
        )
    };
    // A declared length over the limit is refused before any of the body is read (the body
    // is read here, not by an extractor, so that this check comes first).
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    // A turn before the body is read: bodies in memory are bounded by the turns.
    let limits = *state.limits();
    let Some(turn) = state.ingest_turn().await else {
        return Err(ApiError::unavailable(
            format!(
                "busy: {} ingest requests are being processed and none finished within {:.0} s; \
                 retry later (serve --max-ingests)",
                limits.ingests_max,
                limits.ingest_wait.as_secs_f64()
            ),
            1,
        ));
    };
    let capacity = declared.map_or(0, |n| n as usize).min(MAX_BODY_BYTES);
    let body = read_body(request, capacity, limits.header_timeout)
        .await
        .map_err(|e| e.unwrap_or_else(too_large))?;
    // The body is read first (bounded above) so a client gets the answer, not a connection
    // reset in the middle of its upload. Then: fail fast once the journal failed, nothing
    // checked or written (503, the cause).
    if let Some(cause) = state.recorder.poisoned() {
        return Err(crate::recorder::RecordError::Poisoned(cause).into());
    }
    if state.recorder.is_replica() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this server is a read-only replica (serve --follow); record on the primary",
        ));
    }
    let worker = state.clone();
    let report = tokio::task::spawn_blocking(move || {
        // The turn ends when the journal answered, even if the client left meanwhile.
        let _turn = turn;
        ingest(
            &worker.recorder,
            &body,
            worker.max_record_bytes,
            LISTED_LINES_MAX,
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("ingest worker failed: {e}")))??;
    let status = if report.refused_total() == 0 {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, Json(report)).into_response())
}

/// Reads the whole body into one buffer of `capacity` (its declared length); `Err(None)` once
/// it passes [`MAX_BODY_BYTES`] (413), `Err(Some(..))` if it stalls for `stall` (408) or fails.
async fn read_body(
    request: Request,
    capacity: usize,
    stall: std::time::Duration,
) -> Result<Vec<u8>, Option<ApiError>> {
    let mut body = request.into_body();
    let mut bytes = Vec::with_capacity(capacity);
    loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
        let frame = match tokio::time::timeout(stall, next).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(bytes),
            Err(_) => {
                return Err(Some(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body sent nothing for {:.0} s",
                        stall.as_secs_f64()
                    ),
                )));
            }
        };
        let frame = frame.map_err(|e| {
            Some(ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )))
        })?;
        if let Ok(data) = frame.into_data() {
            // Without a (truthful) length, reading stops with 413 as soon as the limit passes.
            if bytes.len() + data.len() > MAX_BODY_BYTES {
                return Err(None);
            }
            bytes.extend_from_slice(&data);
        }
    }
}
