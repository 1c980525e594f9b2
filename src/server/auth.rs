//! Bearer-token authentication for every route.
//!
//! Invariants: with a token configured, a request without `Authorization: Bearer <token>` gets
//! 401 JSON (with `WWW-Authenticate: Bearer`) and reaches no handler, unknown routes included.
//! The comparison is constant-time: both sides are hashed with BLAKE3 and the digests compared
//! with `blake3::Hash`'s constant-time equality, so timing reveals neither a prefix of the token
//! nor its length. `GET /v1/stream` (a WebSocket, whose browser API cannot set headers) and
//! `GET /v1/artifacts/{id}/download` (a link) also accept `?token=<token>`, compared the same
//! way; no other route does. The dashboard page `GET /` is public: it is static, carries no
//! data, and asks for the token itself (every request it makes carries it).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// Whether `header` is `Bearer <token>` for the configured token (see the module docs).
pub fn bearer_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(given) = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    blake3::hash(given.trim().as_bytes()) == blake3::hash(token.as_bytes())
}

/// Whether the request is for `GET /v1/stream` or an artifact download with `?token=<token>`:
/// browsers cannot set headers on a WebSocket or a link, so those routes (only) also take the
/// token as a query parameter, compared in constant time like the header.
pub fn query_token_matches(uri: &axum::http::Uri, token: &str) -> bool {
    let path = uri.path();
    let download = path.starts_with("/v1/artifacts/") && path.ends_with("/download");
    if path != "/v1/stream" && !download {
        return false;
    }
    let Ok(axum::extract::Query(params)) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
    else {
        return false;
    };
    params
        .iter()
        .find(|(k, _)| k == "token")
        .is_some_and(|(_, given)| blake3::hash(given.as_bytes()) == blake3::hash(token.as_bytes()))
}

/// Middleware: passes the request on if no token is configured or the right one is given.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let public = request.uri().path() == "/" && request.method() == axum::http::Method::GET;
    if let Some(token) = state.token.as_deref()
        && !public
        && !bearer_matches(request.headers().get(header::AUTHORIZATION), token)
        && !query_token_matches(request.uri(), token)
    {
        let mut response = ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_token() {
        let ok = HeaderValue::from_static("Bearer s3cret");
        assert!(bearer_matches(Some(&ok), "s3cret"));
        for bad in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer ",
        ] {
            assert!(
                !bearer_matches(Some(&HeaderValue::from_static(bad)), "s3cret"),
                "{bad}"
            );
        }
        assert!(!bearer_matches(None, "s3cret"));
    }
}
