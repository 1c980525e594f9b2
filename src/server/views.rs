//! The JSON views: health, upgrades, one upgrade (now or `?as_of=N`), a session with its
//! artifacts, artifact search.
//!
//! Invariants: current views are read from the recorder's state ([`crate::live::Live`]: the
//! projection plus the overlay of what it lacks) under its lock, so they include exactly the
//! records up to `as_of` (the state's last applied offset) and a client that loads a view and
//! then streams from `as_of + 1` misses nothing and sees nothing twice. Once the recorder is
//! poisoned (its journal failed) every view answers 503 with the cause, never a state that may
//! hold events the journal does not.
//! Views `?as_of=N` replay the journal up to N on a blocking thread (never on the async
//! runtime). Unknown ids are 404, malformed or unknown query parameters 400, both JSON.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use crate::artifacts::{ArtifactQuery, TagMatch};
use crate::recorder::RecordError;
use crate::state::{ArtifactView, SessionView, Until, state_at};
use crate::timestamp::parse_rfc3339;

use super::AppState;
use super::error::ApiError;

/// Query parameters as pairs, in order (repeatable keys such as `tag` allowed).
type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn params(params: Params, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some((key, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {key:?} (expected one of: {})",
            allowed.join(", ")
        )));
    }
    Ok(pairs)
}

fn path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| ApiError::bad_request(format!("{key}={value:?}: {e}")))
}

/// The `as_of` parameter, if given.
fn as_of(pairs: &[(String, String)]) -> Result<Option<u64>, ApiError> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "as_of")
        .map(|(k, v)| number(k, v))
        .transpose()
}

/// The state as of `offset`, replayed on a blocking thread.
async fn state_as_of(app: &Arc<AppState>, offset: u64) -> Result<crate::state::State, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || state_at(app.recorder.journal(), Until::Offset(offset)))
        .await
        .map_err(|e| ApiError::internal(format!("replay worker failed: {e}")))?
        .map_err(|e| match e {
            crate::journal::JournalError::OffsetBeyondEnd { .. } => {
                ApiError::bad_request(format!("as_of={offset}: {e}"))
            }
            e => ApiError::internal(format!("journal failed: {e}")),
        })
}

/// `GET /v1/health`: 200 `{"status":"ok",..}`, or 503 `{"status":"failed","error":..}` once
/// the journal failed (the recorder refuses everything until restarted). With `serve --s3`,
/// `shipping` says what shipping does (`state`: starting, ok, retrying or stopped, with the
/// `error`; the shipped end; the last `warning`, e.g. a prefix found wiped and shipped again;
/// artifact counts; S3 requests sent). Shipping trouble does not make the server unhealthy: it
/// serves and records on; the copy in S3 is what is behind.
#[utoipa::path(get, path = "/v1/health", tag = "views",
    responses((status = 200, description = "Serving", body = Object),
              (status = 503, description = "The recorder failed (poisoned): the cause", body = Object)))]
pub async fn health(State(app): State<Arc<AppState>>) -> (axum::http::StatusCode, Json<Value>) {
    let hub = &app.streams.hub;
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let journal = app.recorder.journal();
    let failure = app.recorder.poisoned().or_else(|| journal.failure());
    let limits = app.limits();
    let body = json!({"status": if failure.is_some() { "failed" } else { "ok" },
            "error": failure,
            "next_offset": journal.next_offset(),
            "durable_offset": journal.durable_offset(),
            "stream_hub": {"frames": hub.frames.load(relaxed),
                           "fallbacks": hub.fallbacks.load(relaxed)},
            "connections": {"open": app.connections_open(),
                            "max": limits.connections_max},
            "ingests": {"active": app.ingests_active(), "max": limits.ingests_max},
            "stream_readers": {"reading": app.streams.readers.reading(),
                               "waiting": app.streams.readers.waiting(),
                               "max": limits.stream_readers_max},
            "shipping": app.shipping.as_ref().map(|s| s.snapshot())});
    let status = if failure.is_some() {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        axum::http::StatusCode::OK
    };
    (status, Json(body))
}

/// `GET /v1/upgrades`: every upgrade with its status, phase and percentage.
#[utoipa::path(get, path = "/v1/upgrades", tag = "views",
    responses((status = 200, description = "Every upgrade with status, phase and percentage", body = Object),
              (status = 400, description = "Unknown query parameter", body = crate::server::openapi::ErrorBody)))]
pub async fn upgrades(
    State(app): State<Arc<AppState>>,
    query: Params,
) -> Result<Json<Value>, ApiError> {
    params(query, &[])?;
    let mut live = app.recorder.live()?;
    let ids = live.upgrade_ids().map_err(RecordError::from)?;
    let mut upgrades = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(v) = live.upgrade_view(id).map_err(RecordError::from)? {
            upgrades.push(
                json!({"upgrade_id": v.upgrade_id, "cluster_name": v.cluster_name, "plan_id": v.plan_id,
                       "status": v.status, "phase": v.phase, "percentage": v.percentage,
                       "last_offset": v.last_offset, "started_at_us": v.started_at_us}),
            );
        }
    }
    let as_of = live.next_offset().checked_sub(1);
    Ok(Json(json!({"upgrades": upgrades, "as_of": as_of})))
}

/// `GET /v1/upgrades/{id}[?as_of=N]`: the upgrade's view plus `as_of`, the offset of the last
/// record the view includes, and `sessions`, the ids of its artifact sessions.
#[utoipa::path(get, path = "/v1/upgrades/{id}", tag = "views",
    params(("id" = String, Path, description = "Upgrade id"),
           ("as_of" = Option<u64>, Query, description = "The view as of this offset")),
    responses((status = 200, description = "The upgrade's view, plus `as_of` and `sessions`", body = crate::state::UpgradeView),
              (status = 400, description = "Bad parameter", body = crate::server::openapi::ErrorBody),
              (status = 404, description = "Unknown upgrade (as of that offset)", body = crate::server::openapi::ErrorBody)))]
pub async fn upgrade(
    State(app): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    query: Params,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let pairs = params(query, &["as_of"])?;
    let (view, as_of, sessions) = match as_of(&pairs)? {
        Some(offset) => {
            let mut state = state_as_of(&app, offset).await?;
            let sessions = state.sessions_of(&id);
            (state.upgrade_view(&id), Some(offset), sessions)
        }
        None => {
            let mut live = app.recorder.live()?;
            let sessions = live.sessions_of(&id).map_err(RecordError::from)?;
            (
                live.upgrade_view(&id).map_err(RecordError::from)?,
                live.next_offset().checked_sub(1),
                sessions,
            )
        }
    };
    let view = view.ok_or_else(|| ApiError::not_found(unknown("upgrade", &id, &pairs)))?;
    let mut body = serde_json::to_value(&view)
        .map_err(|e| ApiError::internal(format!("cannot serialize the view: {e}")))?;
    if let Value::Object(map) = &mut body {
        map.insert("as_of".into(), json!(as_of));
        map.insert("sessions".into(), json!(sessions));
    }
    Ok(Json(body))
}

fn unknown(what: &str, id: &str, pairs: &[(String, String)]) -> String {
    match pairs.iter().find(|(k, _)| k == "as_of") {
        Some((_, at)) => format!("unknown {what} {id:?} as of offset {at}"),
        None => format!("unknown {what} {id:?}"),
    }
}

/// `GET /v1/sessions/{id}[?as_of=N]`: `{"session": .., "artifacts": [..], "as_of": N}`.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "views",
    params(("id" = String, Path, description = "Session id"),
           ("as_of" = Option<u64>, Query, description = "The view as of this offset")),
    responses((status = 200, description = "`session`, `artifacts`, `as_of`", body = Object),
              (status = 400, description = "Bad parameter", body = crate::server::openapi::ErrorBody),
              (status = 404, description = "Unknown session", body = crate::server::openapi::ErrorBody)))]
pub async fn session(
    State(app): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    query: Params,
) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let pairs = params(query, &["as_of"])?;
    let render = |session: Option<SessionView>,
                  artifact: &dyn Fn(&str) -> Result<Option<ArtifactView>, ApiError>,
                  as_of: Option<u64>|
     -> Result<Option<Value>, ApiError> {
        let Some(session) = session else {
            return Ok(None);
        };
        let mut artifacts = Vec::new();
        for id in session
            .collections
            .iter()
            .flat_map(|c| c.artifact_ids.iter())
        {
            artifacts.extend(artifact(id)?);
        }
        Ok(Some(
            json!({"session": session, "artifacts": artifacts, "as_of": as_of}),
        ))
    };
    let body = match as_of(&pairs)? {
        Some(offset) => {
            let state = state_as_of(&app, offset).await?;
            render(
                state.session_view(&id).cloned(),
                &|a| Ok(state.artifact(a).cloned()),
                Some(offset),
            )?
        }
        None => {
            let live = app.recorder.live()?;
            render(
                live.session_view(&id).map_err(RecordError::from)?,
                &|a| Ok(live.artifact(a).map_err(RecordError::from)?),
                live.next_offset().checked_sub(1),
            )?
        }
    };
    body.map(Json)
        .ok_or_else(|| ApiError::not_found(unknown("session", &id, &pairs)))
}

/// The parameters of `GET /v1/artifacts`.
pub const ARTIFACT_PARAMS: &[&str] = &[
    "type", "tag", "any_tag", "task", "status", "session", "min_size", "max_size", "since",
    "until", "name", "text", "limit",
];

/// Builds the artifact query from `GET /v1/artifacts` parameters. `tag` (all of) and `any_tag`
/// (any of) repeat or take comma-separated lists, and cannot be combined; `since`/`until` are
/// RFC 3339 times; `name` is a glob over the file name.
pub fn artifact_query(pairs: &[(String, String)]) -> Result<ArtifactQuery, ApiError> {
    let mut query = ArtifactQuery::default();
    let mut all_tags = false;
    let mut any_tags = false;
    for (key, value) in pairs {
        match key.as_str() {
            "type" => query.artifact_type = Some(enum_value(key, value)?),
            "status" => query.status = Some(enum_value(key, value)?),
            "tag" | "any_tag" => {
                if key == "tag" {
                    all_tags = true;
                } else {
                    any_tags = true;
                    query.tag_match = TagMatch::Any;
                }
                query.tags.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string),
                );
            }
            "task" => query.task_id = Some(value.clone()),
            "session" => query.session_id = Some(value.clone()),
            "min_size" => query.min_size = Some(number(key, value)?),
            "max_size" => query.max_size = Some(number(key, value)?),
            "since" | "until" => {
                let us = parse_rfc3339(value).map_err(|e| {
                    ApiError::bad_request(format!(
                        "{key}={value:?}: expected an RFC 3339 time: {e}"
                    ))
                })?;
                if key == "since" {
                    query.created_from_us = Some(us);
                } else {
                    query.created_until_us = Some(us);
                }
            }
            "name" => query.name_glob = Some(value.clone()),
            "text" => query.text = Some(value.clone()),
            "limit" => query.limit = Some(number(key, value)?),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {key:?}"
                )));
            }
        }
    }
    if all_tags && any_tags {
        return Err(ApiError::bad_request(
            "use either tag (all of) or any_tag (any of), not both",
        ));
    }
    Ok(query)
}

fn enum_value<T: serde::de::DeserializeOwned>(key: &str, value: &str) -> Result<T, ApiError> {
    serde_json::from_value(Value::String(value.to_string()))
        .map_err(|e| ApiError::bad_request(format!("{key}={value:?}: {e}")))
}

/// `GET /v1/artifacts?...`: `{"artifacts": [..], "count": N, "as_of": N}`, by artifact id.
#[utoipa::path(get, path = "/v1/artifacts", tag = "artifacts",
    params(("type" = Option<crate::event::ArtifactType>, Query, description = "Artifact type"),
           ("tag" = Option<String>, Query, description = "All of these tags (comma-separated)"),
           ("any_tag" = Option<String>, Query, description = "Any of these tags (comma-separated)"),
           ("task" = Option<String>, Query, description = "Producing task"),
           ("status" = Option<crate::event::ArtifactStatus>, Query, description = "Status"),
           ("session" = Option<String>, Query, description = "Session"),
           ("min_size" = Option<u64>, Query, description = "Smallest size, bytes"),
           ("max_size" = Option<u64>, Query, description = "Largest size, bytes"),
           ("since" = Option<String>, Query, description = "Created at or after (RFC 3339)"),
           ("until" = Option<String>, Query, description = "Created at or before (RFC 3339)"),
           ("name" = Option<String>, Query, description = "Glob over the file name"),
           ("text" = Option<String>, Query, description = "Words in the name, description or tags"),
           ("limit" = Option<u64>, Query, description = "At most this many")),
    responses((status = 200, description = "`artifacts`, `count`, `as_of`", body = Object),
              (status = 400, description = "Bad parameter", body = crate::server::openapi::ErrorBody)))]
pub async fn artifacts(
    State(app): State<Arc<AppState>>,
    query: Params,
) -> Result<Json<Value>, ApiError> {
    let pairs = params(query, ARTIFACT_PARAMS)?;
    let query = artifact_query(&pairs)?;
    let live = app.recorder.live()?;
    let found = live.search(&query).map_err(RecordError::from)?;
    Ok(Json(json!({"count": found.len(), "artifacts": found,
                    "as_of": live.next_offset().checked_sub(1)})))
}
