//! `logbook tail ws://HOST:PORT [--from ..] [--types ..] [--upgrade-id ..] [--session-id ..]
//! [--token T] [--count N] [--json]`: follows `GET /v1/stream` of a `logbook serve` and prints
//! each event, one line each (human form, or the envelope line itself with `--json`).
//!
//! Invariants: it remembers the last offset printed; on a dropped connection (or a close from
//! the server) it reconnects with capped exponential backoff and `from=<last + 1>`, so nothing
//! is printed twice and, once something was printed, nothing is missed (before the first event,
//! a reconnect reuses `--from`, so `--from latest` may skip what was appended meanwhile).
//! A connection silent for longer than [`SILENCE_LIMIT`] (the server pings every 15 s) counts
//! as dropped. Bad URL or flags, or a 400 from the server, exit 2; a refused token exits 1;
//! `--count N` exits 0 after N events.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use logbook::backoff::Backoff;
use logbook::subscribe::EventFilter;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{BadInput, Cli};

/// No frame (not even a ping) for this long: the connection is considered dropped.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// First reconnect delay; doubled (jittered: [`Backoff`]) after each failed attempt up to
/// [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Arguments of `tail`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server, `ws://HOST:PORT` (the path defaults to `/v1/stream`).
    url: String,
    /// Where to start: earliest, latest, an offset, or an RFC 3339 time.
    #[arg(long, default_value = "latest")]
    from: String,
    /// Only these event types (comma-separated globs, e.g. `task.*,upgrade.completed`).
    #[arg(long)]
    types: Option<String>,
    /// Only events about this upgrade.
    #[arg(long)]
    upgrade_id: Option<String>,
    /// Only events naming this session.
    #[arg(long)]
    session_id: Option<String>,
    /// The server's bearer token (sent as `Authorization: Bearer`).
    #[arg(long, env = "LOGBOOK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Exit (0) after printing this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `ws://authority` plus the path (default `/v1/stream`), checked.
fn base_url(url: &str) -> Result<String, BadInput> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| {
        BadInput(format!(
            "expected a ws://HOST:PORT URL, got {url:?} (wss:// is not supported)"
        ))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(['?', '#', '@', ' ']) || path.contains(['?', '#'])
    {
        return Err(BadInput(format!("bad URL {url:?}")));
    }
    let path = match path.trim_end_matches('/') {
        "" => "/v1/stream",
        p => p,
    };
    Ok(format!("ws://{authority}{path}"))
}

/// The stream URL starting at `from`.
fn stream_url(base: &str, args: &Args, from: &str) -> String {
    let mut url = format!("{base}?from={}", encode(from));
    for (key, value) in [
        ("types", &args.types),
        ("upgrade_id", &args.upgrade_id),
        ("session_id", &args.session_id),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            url.push_str(&format!("&{key}={}", encode(v)));
        }
    }
    url
}

/// The human one-line form of an envelope line.
fn human(event: &Value) -> String {
    let field = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or("");
    let mut line = format!(
        "{:>8} {} {:<24}",
        event.get("offset").and_then(Value::as_u64).unwrap_or(0),
        field("ts"),
        field("type")
    );
    if let Some(object) = event.as_object() {
        for (key, value) in object {
            if key.ends_with("_id")
                && key != "id"
                && let Some(v) = value.as_str()
            {
                line.push_str(&format!(" {key}={v}"));
            }
        }
    }
    if let Some(pct) = event.get("percentage").and_then(Value::as_f64) {
        line.push_str(&format!(" {pct:.1}%"));
    }
    for key in ["phase", "status", "message", "error", "reason"] {
        if let Some(v) = event.get(key).and_then(Value::as_str) {
            line.push_str(&format!(" {key}={v:?}"));
        }
    }
    line.trim_end().to_string()
}

/// How one connection ended.
enum Outcome {
    /// `--count` reached, or stdout closed.
    Done,
    /// Dropped: reconnect.
    Dropped(String),
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let base = base_url(&args.url)?;
    args.from
        .parse::<logbook::subscribe::From>()
        .map_err(|e| BadInput(format!("--from: {e}")))?;
    EventFilter::parse(
        args.types.as_deref(),
        args.upgrade_id.as_deref(),
        args.session_id.as_deref(),
    )
    .map_err(|e| BadInput(format!("--types: {e}")))?;
    if args.token.as_deref() == Some("") {
        return Err(BadInput("--token must not be empty".into()).into());
    }
    if args.count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(follow(cli.json, &base, args))
}

async fn follow(json: bool, base: &str, args: &Args) -> anyhow::Result<ExitCode> {
    let mut last: Option<u64> = None;
    let mut printed = 0u64;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        let from = last.map_or_else(|| args.from.clone(), |l| (l + 1).to_string());
        let mut request = stream_url(base, args, &from).into_client_request()?;
        if let Some(token) = &args.token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
        }
        let why = match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => {
                backoff.reset();
                match connection(socket, json, args.count, &mut last, &mut printed).await? {
                    Outcome::Done => return Ok(ExitCode::SUCCESS),
                    Outcome::Dropped(why) => why,
                }
            }
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status();
                let body = response
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                let message = format!("server answered {status}: {}", body.trim());
                if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                    if status.as_u16() == 400 || status.as_u16() == 404 {
                        return Err(BadInput(message).into());
                    }
                    anyhow::bail!(message);
                }
                message
            }
            Err(error) => error.to_string(),
        };
        let delay = backoff.next_delay();
        note!("logbook tail: {why}; reconnecting in {delay:?}");
        tokio::time::sleep(delay).await;
    }
}

async fn connection(
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    json: bool,
    count: Option<u64>,
    last: &mut Option<u64>,
    printed: &mut u64,
) -> anyhow::Result<Outcome> {
    loop {
        let message = match tokio::time::timeout(SILENCE_LIMIT, socket.next()).await {
            Err(_) => return Ok(Outcome::Dropped("no frame from the server".into())),
            Ok(None) => return Ok(Outcome::Dropped("connection closed".into())),
            Ok(Some(Err(e))) => return Ok(Outcome::Dropped(e.to_string())),
            Ok(Some(Ok(m))) => m,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                let why = frame.map_or_else(
                    || "server closed the connection".to_string(),
                    |f| format!("server closed the connection ({}: {})", f.code, f.reason),
                );
                return Ok(Outcome::Dropped(why));
            }
            // Pings are answered by tungstenite; nothing else is expected.
            _ => continue,
        };
        let event: Value = match serde_json::from_str(text.as_str()) {
            Ok(v) => v,
            Err(e) => anyhow::bail!("server sent a frame that is not JSON: {e}"),
        };
        let Some(offset) = event.get("offset").and_then(Value::as_u64) else {
            anyhow::bail!("server sent a frame without an offset");
        };
        if last.is_some_and(|l| offset <= l) {
            continue;
        }
        let line = if json {
            text.as_str().to_string()
        } else {
            human(&event)
        };
        {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // Stdout closed (e.g. `| head`): done.
                return Ok(Outcome::Done);
            }
        }
        *last = Some(offset);
        *printed += 1;
        if count.is_some_and(|n| *printed >= n) {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
            return Ok(Outcome::Done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            base_url("ws://127.0.0.1:8765").unwrap(),
            "ws://127.0.0.1:8765/v1/stream"
        );
        assert_eq!(
            base_url("ws://h:1/v1/stream").unwrap(),
            "ws://h:1/v1/stream"
        );
        for bad in ["http://h:1", "wss://h:1", "ws://", "ws://h:1/?x=1", "h:1"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
        assert_eq!(encode("task.*,a b"), "task.%2A%2Ca%20b");
    }
}
