//! Bearer-token authentication for every route, and which tokens may be configured.
//!
//! Invariants:
//! - **Every route, one check.** With a token configured, a request without valid credentials
//!   gets 401 JSON (with `WWW-Authenticate: Bearer`) and reaches no handler, unknown routes
//!   included. The dashboard page `GET /` is public: it is static, carries no data, and asks
//!   for the token itself (every request it makes carries it).
//! - **Header.** `Authorization: <scheme> <token>` where the scheme is `Bearer` in any case
//!   (RFC 7235 §2.1: auth schemes are case-insensitive), one or more spaces, then the token;
//!   surrounding whitespace is not part of a header value (RFC 9110 §5.5), so it is dropped.
//! - **Query.** `GET /v1/stream` (a WebSocket, whose browser API cannot set headers) and
//!   `GET /v1/artifacts/{id}/download` (a link) also accept `?token=<token>`; no other route
//!   does. The decoded value is compared exactly, nothing trimmed.
//! - **Blank never matches.** A given token that is empty or only whitespace is refused before
//!   any comparison, whatever is configured.
//! - **Constant time.** Both sides are hashed with BLAKE3 and the digests compared with
//!   `blake3::Hash`'s constant-time equality, so timing reveals neither a prefix of the token
//!   nor its length.
//! - **Only sendable tokens are configured.** [`check_token`] refuses (at start, exit 2) a
//!   token that is empty or only whitespace (it would protect nothing), that has control
//!   characters or characters beyond ASCII (not sendable in a header), or that starts or ends
//!   with whitespace (a header cannot carry it unchanged).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ServeError};

/// Whether `token` may be configured (see the module docs); the operator's error if not.
pub fn check_token(token: &str) -> Result<(), ServeError> {
    if token.trim().is_empty() {
        return Err(ServeError::EmptyToken);
    }
    if let Some(c) = token.chars().find(|c| c.is_control()) {
        return Err(ServeError::BadToken(format!(
            "it contains the control character {c:?}"
        )));
    }
    if !token.is_ascii() {
        return Err(ServeError::BadToken(
            "it contains characters beyond ASCII, which an HTTP header cannot carry".into(),
        ));
    }
    if token.trim() != token {
        return Err(ServeError::BadToken(
            "it starts or ends with whitespace, which an HTTP header drops".into(),
        ));
    }
    Ok(())
}

/// Whether a presented credential equals the configured token: blank never matches; otherwise
/// an exact, constant-time comparison.
pub fn credential_matches(given: &str, token: &str) -> bool {
    !given.trim().is_empty() && blake3::hash(given.as_bytes()) == blake3::hash(token.as_bytes())
}

/// The credential of an `Authorization` value with the `Bearer` scheme (any case), if any.
fn bearer_credential(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with(' ') {
        return None;
    }
    Some(rest.trim_start_matches(' '))
}

/// Whether `header` is `Bearer <token>` for the configured token (see the module docs).
pub fn bearer_matches(header: Option<&HeaderValue>, token: &str) -> bool {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credential)
        .is_some_and(|given| credential_matches(given, token))
}

/// Whether the request is for `GET /v1/stream` (or its alias, a WebSocket on `/`) or an
/// artifact download with `?token=<token>`:
/// browsers cannot set headers on a WebSocket or a link, so those routes (only) also take the
/// token as a query parameter, compared exactly like the header's (see the module docs).
pub fn query_token_matches(uri: &axum::http::Uri, token: &str) -> bool {
    let path = uri.path();
    let download = path.starts_with("/v1/artifacts/") && path.ends_with("/download");
    if path != "/v1/stream" && path != "/" && !download {
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
        .is_some_and(|(_, given)| credential_matches(given, token))
}

/// Middleware: passes the request on if no token is configured or the right one is given.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    // The page is public; a WebSocket upgrade on `/` (the live stream, for the original
    // system's clients) is not.
    let upgrading = request.headers().contains_key(header::UPGRADE);
    let public =
        request.uri().path() == "/" && request.method() == axum::http::Method::GET && !upgrading;
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
            "Bearer",
            "Bearers3cret",
            "Bearer\ts3cret",
            "Bearer S3CRET",
            "Bearer s3 cret",
        ] {
            assert!(
                !bearer_matches(Some(&HeaderValue::from_static(bad)), "s3cret"),
                "{bad}"
            );
        }
        assert!(!bearer_matches(None, "s3cret"));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for ok in [
            "bearer s3cret",
            "BEARER s3cret",
            "bEaReR s3cret",
            "Bearer   s3cret",
            " Bearer s3cret ",
        ] {
            assert!(
                bearer_matches(Some(&HeaderValue::from_static(ok)), "s3cret"),
                "{ok:?}"
            );
        }
    }

    #[test]
    fn blank_credentials_never_match() {
        // Even if a blank token were configured (check_token refuses it), nothing blank matches.
        for token in ["", " ", "  ", "\t"] {
            for given in ["", " ", "  ", "\t", " \t "] {
                assert!(!credential_matches(given, token), "{given:?} vs {token:?}");
            }
        }
        let header = HeaderValue::from_static("Bearer  ");
        assert!(!bearer_matches(Some(&header), " "));
    }

    #[test]
    fn the_query_token_is_compared_exactly_on_its_routes_only() {
        let matches = |uri: &str| query_token_matches(&uri.parse().unwrap(), "s3cret");
        assert!(matches("/v1/stream?token=s3cret"));
        assert!(matches("/v1/artifacts/a-1/download?token=s3cret"));
        for bad in [
            "/v1/artifacts/a-1/download?token=",
            "/v1/artifacts/a-1/download?token=%20",
            "/v1/artifacts/a-1/download?token=+",
            "/v1/artifacts/a-1/download?token=s3cret%20",
            "/v1/artifacts/a-1/download?token=%20s3cret",
            "/v1/artifacts/a-1/download?token",
            "/v1/stream?token=S3CRET",
            "/v1/health?token=s3cret",
            "/v1/upgrades?token=s3cret",
        ] {
            assert!(!matches(bad), "{bad}");
        }
        // A blank configured token (refused at start anyway) is not matched by a blank query.
        let uri = "/v1/artifacts/a-1/download?token=%20".parse().unwrap();
        assert!(!query_token_matches(&uri, " "));
    }

    #[test]
    fn only_sendable_tokens_can_be_configured() {
        assert!(check_token("s3cret").is_ok());
        assert!(check_token("a b").is_ok());
        for (bad, what) in [
            ("", "empty"),
            ("   ", "empty"),
            ("\t", "empty"),
            (" \n ", "empty"),
            ("a\u{1}b", "control"),
            ("a\tb", "control"),
            ("a\u{7f}", "control"),
            ("a\nb", "control"),
            ("é", "ASCII"),
            (" s3cret", "whitespace"),
            ("s3cret ", "whitespace"),
        ] {
            let error = check_token(bad).expect_err(bad).to_string();
            assert!(error.contains(what), "{bad:?}: {error}");
        }
    }
}
