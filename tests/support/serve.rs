//! A `logbook serve` child on 127.0.0.1:0 for black-box tests: started with its real binary,
//! polled healthy against a deadline, killed by pid and reaped when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `logbook serve`.
pub struct Server {
    /// The child process (tests may signal it).
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The token it was started with (`--token`), sent as a bearer token by `get`/`post_body`.
    pub token: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `logbook --data DATA serve --listen 127.0.0.1:0 EXTRA..` and waits until healthy.
pub fn start(data: &Path, extra: &[&str]) -> Server {
    let deadline = Instant::now() + Duration::from_secs(20);
    try_start(data, "127.0.0.1:0", extra, deadline)
        .unwrap_or_else(|why| panic!("serve did not start: {why}"))
}

/// One attempt at `logbook --data DATA serve --listen ADDR EXTRA..`: the healthy server, or why
/// it did not start (its first line and stderr).
fn try_start(data: &Path, addr: &str, extra: &[&str], deadline: Instant) -> Result<Server, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .arg("--data")
        .arg(data)
        .args(["serve", "--listen", addr])
        .args(extra)
        .env_remove("LOGBOOK_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("logbook serve starts");
    // The first line names the URL (the child exits, closing stdout, if it cannot start).
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("reads the first line");
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        let mut why = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut why);
        }
        return Err(format!("first line {line:?}; stderr: {why}"));
    };
    // Drain stderr (a full pipe would block the server; a closed one could fail it).
    if let Some(mut err) = child.stderr.take() {
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    }
    let url = url.to_string();
    let token = extra
        .iter()
        .position(|a| *a == "--token")
        .and_then(|i| extra.get(i + 1))
        .map(|t| t.to_string());
    let server = Server {
        child,
        addr: url.trim_start_matches("http://").to_string(),
        url,
        token,
    };
    while server.get("/v1/health").0 != 200 {
        assert!(Instant::now() < deadline, "serve did not become healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// A client that returns 4xx/5xx responses instead of erroring, with a bounded timeout.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Status and body (JSON, or the text as a JSON string if it is not JSON).
pub fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("readable body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

impl Server {
    /// GET `path` (with the bearer token if any); status 0 if the request failed.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut request = agent().get(format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        match request.call() {
            Ok(r) => read(r),
            Err(_) => (0, Value::Null),
        }
    }

    /// POST `body` to `/v1/events` (with the bearer token if any).
    pub fn post_body(&self, body: &[u8]) -> (u16, Value) {
        let mut request = agent().post(format!("{}/v1/events", self.url));
        if let Some(t) = &self.token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        read(request.send(body).expect("POST /v1/events"))
    }

    /// `next_offset` from `/v1/health`.
    pub fn next_offset(&self) -> u64 {
        let (status, body) = self.get("/v1/health");
        assert_eq!(status, 200);
        assert_eq!(body["status"], "ok");
        body["next_offset"].as_u64().expect("next_offset")
    }
}

/// Starts `logbook --data DATA serve --listen ADDR EXTRA..` on a fixed address (e.g. the one of
/// a server just killed, to restart it on the same port) and waits until healthy. A start that
/// fails (port still busy, data dir still locked) is retried for a bounded time.
pub fn start_on(data: &Path, addr: &str, extra: &[&str]) -> Server {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match try_start(data, addr, extra, deadline) {
            Ok(server) => return server,
            Err(why) => {
                assert!(
                    Instant::now() < deadline,
                    "serve --listen {addr} did not start: {why}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
