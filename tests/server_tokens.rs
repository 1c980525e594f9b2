//! `logbook serve`'s token handling (an outside test's finding 11), black-box: the real binary
//! (tests/support/serve.rs) and a blocking HTTP client.
//!
//! - A blank (empty or whitespace-only) token, or one with control characters, is refused at
//!   start with exit 2 and a message naming the problem. Before the fix `--token "   "` was
//!   accepted (even beyond loopback, where it was the only protection).
//! - The `Bearer` scheme is matched case-insensitively (RFC 7235 §2.1): `bearer T` and
//!   `BEARER T` work. Before the fix both got 401.
//! - A query token (`?token=`, on downloads and the stream only) never matches when empty or
//!   blank, and is compared exactly (no trimming).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::serve::{agent, read, start};

/// Runs `logbook serve ARGS` and waits (bounded) for it to exit: its exit code and stderr.
/// A server that starts instead is killed and reported as `None`.
fn serve_exit(data: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .arg("--data")
        .arg(data)
        .arg("serve")
        .args(args)
        .env_remove("LOGBOOK_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("logbook serve starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    }
    (code, stderr)
}

#[test]
fn blank_or_control_character_tokens_are_refused_with_exit_2() {
    let data = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("127.0.0.1:0", "", "empty"),
        ("127.0.0.1:0", "   ", "empty"),
        ("0.0.0.0:0", " \t ", "empty"),
        ("127.0.0.1:0", "abc\u{1}def", "control"),
        ("0.0.0.0:0", "abc\tdef", "control"),
        ("127.0.0.1:0", "abc\u{7f}", "control"),
    ];
    for (listen, token, problem) in cases {
        let (code, stderr) = serve_exit(data.path(), &["--listen", listen, "--token", token]);
        assert_eq!(
            code,
            Some(2),
            "--listen {listen} --token {token:?} must be refused (exit 2); stderr: {stderr}"
        );
        assert!(
            stderr.contains("token") && stderr.contains(problem),
            "--token {token:?}: {stderr}"
        );
    }
}

#[test]
fn bearer_scheme_is_case_insensitive_and_query_tokens_compare_exactly() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &["--token", "s3cret"]);
    let health = format!("{}/v1/health", server.url);
    let with_header = |value: &str| {
        read(
            agent()
                .get(&health)
                .header("Authorization", value)
                .call()
                .expect("GET /v1/health"),
        )
        .0
    };
    for ok in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER s3cret",
        "bEaReR s3cret",
        "Bearer   s3cret",
    ] {
        assert_eq!(with_header(ok), 200, "Authorization: {ok}");
    }
    for bad in [
        "Bearer S3CRET",
        "Bearer s3cret2",
        "Bearers3cret",
        "Bearer",
        "Bearer ",
        "Basic s3cret",
        "s3cret",
        "Bearer s3 cret",
    ] {
        assert_eq!(with_header(bad), 401, "Authorization: {bad}");
    }

    // The query token: compared exactly, never matched when empty or blank.
    let download = |query: &str| {
        let url = format!("{}/v1/artifacts/nope/download?{query}", server.url);
        read(agent().get(&url).call().expect("GET download")).0
    };
    for bad in [
        "token=",
        "token=%20",
        "token=%20%20",
        "token=%09",
        "token=s3cret%20",
        "token=%20s3cret",
        "token=S3CRET",
        "token",
    ] {
        assert_eq!(download(bad), 401, "?{bad}");
    }
    // The right token passes the check: the artifact is unknown (404), not unauthorized.
    assert_eq!(download("token=s3cret"), 404);
}
