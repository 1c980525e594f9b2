//! What the S3 black-box tests share: a moto-backed SDK configuration, the `logbook` binary in
//! the AWS environment a user would set, a journal recorded and shipped, the prefix's keys.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use logbook::event::TaskType;
use logbook::journal::JournalConfig;
use logbook::recorder::Recorder;
use logbook::tracker::ProgressTracker;

/// The bucket every S3 test uses (each test has its own moto_server or prefix).
pub const BUCKET: &str = "logbook-test";

/// A small multi-threaded runtime for the SDK calls a test makes itself.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The SDK configuration of a user pointing at `endpoint` (moto, or a proxy in front of it).
pub async fn sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

/// Logbook's S3 client for `sdk`.
pub fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    logbook::s3::client(sdk)
}

/// A moto_server of its own with [`BUCKET`] created: what most S3 tests start with. The
/// server stops when this is dropped.
pub struct S3Env {
    /// The server.
    pub moto: super::moto::Moto,
    /// Its endpoint URL.
    pub endpoint: String,
    /// A runtime for the test's own SDK calls.
    pub rt: tokio::runtime::Runtime,
    /// The SDK configuration pointing at it.
    pub sdk: SdkConfig,
}

impl S3Env {
    /// Starts moto and creates [`BUCKET`].
    pub fn start() -> S3Env {
        let moto = super::moto::Moto::start();
        let endpoint = moto.endpoint();
        let rt = runtime();
        let sdk = create_bucket(&rt, &endpoint);
        S3Env {
            moto,
            endpoint,
            rt,
            sdk,
        }
    }
}

impl S3Env {
    /// A fault proxy in front of the server (`tests/support/proxy.rs`).
    pub fn proxy(&self) -> super::proxy::Proxy {
        super::proxy::Proxy::start(self.endpoint.trim_start_matches("http://"))
    }
}

/// The sealed segment files of `data`'s journal, in offset order.
pub fn sealed_segments(data: &Path) -> Vec<std::path::PathBuf> {
    let mut sealed: Vec<_> = std::fs::read_dir(data.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".seg.zst"))
        .collect();
    sealed.sort();
    sealed
}

/// Flips one byte a third into `segment`; its damaged bytes.
pub fn flip_a_byte(segment: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(segment).unwrap();
    let i = bytes.len() / 3;
    bytes[i] ^= 0x40;
    std::fs::write(segment, &bytes).unwrap();
    bytes
}

/// Creates [`BUCKET`] at `endpoint`; the SDK configuration.
pub fn create_bucket(rt: &tokio::runtime::Runtime, endpoint: &str) -> SdkConfig {
    let sdk = rt.block_on(sdk(endpoint));
    rt.block_on(s3(&sdk).create_bucket().bucket(BUCKET).send())
        .unwrap();
    sdk
}

/// The `logbook` binary on `data` with `args`, in the AWS environment a user would set
/// (stdin closed, stdout and stderr piped).
pub fn logbook_command(data: &Path, endpoint: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_logbook"));
    command
        .arg("--data")
        .arg(data)
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("LOGBOOK_S3")
        .env_remove("LOGBOOK_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the `logbook` binary (see [`logbook_command`]) to completion.
pub fn logbook(data: &Path, endpoint: &str, args: &[&str]) -> Output {
    logbook_command(data, endpoint, args).output().unwrap()
}

/// Its stdout, after asserting it succeeded.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `logbook events --from 0` of `data`: what two journals are compared by.
pub fn events(data: &Path, endpoint: &str) -> String {
    ok(logbook(data, endpoint, &["events", "--from", "0"]))
}

/// A `logbook serve` child, killed and reaped when dropped (a failing test leaves nothing
/// running).
pub struct Served {
    /// The child.
    pub child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its stderr so far (the log a test may search).
    pub log: Arc<std::sync::Mutex<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Its log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (bounded by `limit`) until it exits; how long it took and its
    /// exit status.
    pub fn terminate(&mut self, limit: Duration) -> (Duration, std::process::ExitStatus) {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (started.elapsed(), status);
            }
            assert!(
                started.elapsed() < limit,
                "still running {limit:?} after SIGTERM; log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Served {
    /// SIGTERM, and asserts it exits 0 within 10 s.
    pub fn stop(&mut self) {
        let (_, status) = self.terminate(Duration::from_secs(10));
        assert!(status.success(), "{status}; log: {}", self.log());
    }
}

/// Starts `logbook serve` with `args` (which include `--listen 127.0.0.1:0`), reading its base
/// URL from the line it prints first; its stderr is collected in [`Served::log`].
pub fn spawn_serve(data: &Path, endpoint: &str, args: &[&str]) -> Served {
    let mut child = logbook_command(data, endpoint, args).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    if let Some(err) = child.stderr.take() {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let mut served = Served {
        child,
        base: String::new(),
        log,
    };
    served.base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("serve did not start: {line:?}: {}", served.log()))
        .to_string();
    served
}

/// `serve --s3 URL --ship-interval INTERVAL` on `data`, sealing segments after 0.3 s.
pub fn serve_shipping(data: &Path, endpoint: &str, url: &str, interval: &str) -> Served {
    spawn_serve(
        data,
        endpoint,
        &[
            "--segment-age",
            "0.3",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--s3",
            url,
            "--ship-interval",
            interval,
        ],
    )
}

/// Journal settings with small segments (many objects from few events).
pub fn small_segments() -> JournalConfig {
    JournalConfig {
        segment_bytes: 8 << 10,
        ..JournalConfig::default()
    }
}

/// Appends `n` progress events of task `t` of upgrade `u-1` to `data` (opening the upgrade when
/// `from` is 0), with small segments, and closes the journal.
pub fn append(data: &Path, from: usize, n: usize) {
    let recorder = Arc::new(Recorder::open(data, small_segments()).unwrap());
    let t = ProgressTracker::new(recorder.clone(), "u-1");
    if from == 0 {
        t.start_upgrade("p", "c", "Planning", None).unwrap();
        t.add_task("t", "T", TaskType::UpgradeStep, None).unwrap();
        t.start_task("t").unwrap();
    }
    for i in from..from + n {
        t.update_task_progress("t", (i % 100) as f64, Some("following"))
            .unwrap();
    }
    drop(t);
    Arc::into_inner(recorder).unwrap().close().unwrap();
}

/// [`append`], then `ship --once` to `url`.
pub fn append_and_ship(data: &Path, endpoint: &str, url: &str, from: usize, n: usize) {
    append(data, from, n);
    ok(logbook(data, endpoint, &["ship", "--s3", url, "--once"]));
}

/// Every key under `{prefix}/` (sorted).
pub fn keys(rt: &tokio::runtime::Runtime, sdk: &SdkConfig, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = rt
            .block_on(
                s3(sdk)
                    .list_objects_v2()
                    .bucket(BUCKET)
                    .prefix(format!("{prefix}/"))
                    .set_continuation_token(token)
                    .send(),
            )
            .unwrap();
        keys.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        token = out.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    keys
}

/// The segment object keys under `{prefix}/journal/` (sorted).
pub fn segment_keys(rt: &tokio::runtime::Runtime, sdk: &SdkConfig, prefix: &str) -> Vec<String> {
    keys(rt, sdk, prefix)
        .into_iter()
        .filter(|k| k.starts_with(&format!("{prefix}/journal/")))
        .collect()
}

/// Deletes every object under `{prefix}/`.
pub fn wipe(rt: &tokio::runtime::Runtime, sdk: &SdkConfig, prefix: &str) {
    for key in keys(rt, sdk, prefix) {
        rt.block_on(s3(sdk).delete_object().bucket(BUCKET).key(&key).send())
            .unwrap();
    }
}

/// The body of `key`, `None` if it does not exist.
pub fn get(rt: &tokio::runtime::Runtime, sdk: &SdkConfig, key: &str) -> Option<Vec<u8>> {
    let object = rt
        .block_on(s3(sdk).get_object().bucket(BUCKET).key(key).send())
        .ok()?;
    Some(
        rt.block_on(object.body.collect())
            .unwrap()
            .into_bytes()
            .to_vec(),
    )
}

/// Wipes every bucket and object of the moto_server at `endpoint` (`POST /moto-api/reset`): S3
/// comes back empty, as after its bucket was deleted and recreated.
pub fn reset_moto(endpoint: &str) {
    let response = ureq::post(format!("{endpoint}/moto-api/reset"))
        .send_empty()
        .expect("POST /moto-api/reset");
    assert_eq!(response.status(), 200);
}

/// Polls `condition` every 50 ms until it holds, failing with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}
