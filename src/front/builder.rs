//! [`Builder`]: what a [`Logbook`] runs beside its journal, checked and started by
//! [`Builder::open`].
//!
//! Invariants: settings that cannot work together (following a replica *and* shipping or
//! sending to EventBridge; a non-loopback listen address without a token; AWS without a
//! region) are refused before anything is opened or locked; the listen address is bound before
//! the data dir is locked (a port in use fails without touching the journal); if a later step
//! fails, everything already started is stopped and the journal closed before the error is
//! returned.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;

use super::background::{self, Task};
use super::{Logbook, LogbookError, Rt, Running};
use crate::artifacts::ArtifactStore;
use crate::eventbridge::EventBridgeConfig;
use crate::journal::{Durability, JournalConfig};
use crate::recorder::Recorder;
use crate::s3::{RestoreOptions, S3Location};
use crate::server::{self, Limits};
use crate::subscribe::Callbacks;

/// The HTTP/WebSocket server's settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen (port 0 picks a free one; see [`Logbook::local_addr`]).
    pub listen: SocketAddr,
    /// The bearer token every request must carry (required off loopback).
    pub token: Option<String>,
    /// Timeouts and caps (see [`crate::server::limits`]).
    pub limits: Limits,
    /// How long a WebSocket client may stop reading while events wait for it.
    pub ws_stall_limit: Duration,
    /// The largest artifact file `POST /v1/artifacts` accepts, in bytes.
    pub artifact_bytes_max: u64,
}

impl ServerOptions {
    /// Listening on `listen` without a token, with the default limits.
    pub fn new(listen: SocketAddr) -> ServerOptions {
        ServerOptions {
            listen,
            token: None,
            limits: Limits::default(),
            ws_stall_limit: crate::server::stream::STALL_LIMIT,
            artifact_bytes_max: crate::server::ARTIFACT_BYTES_MAX,
        }
    }
}

/// Shipping sealed segments and artifact files to S3.
#[derive(Debug, Clone)]
pub struct ShipOptions {
    /// `s3://bucket/prefix`.
    pub location: S3Location,
    /// How often to ship besides right after each seal.
    pub interval: Duration,
}

/// Serving a read-only replica of an S3 prefix.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// `s3://bucket/prefix`.
    pub location: S3Location,
    /// How often to poll the prefix's head object.
    pub poll_interval: Duration,
}

/// Artifact retention.
#[derive(Debug, Clone, Copy)]
struct Retention {
    keep_for: Option<Duration>,
    sweep_every: Duration,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Builder {
    data_dir: PathBuf,
    journal: JournalConfig,
    server: Option<ServerOptions>,
    ship: Option<ShipOptions>,
    follow: Option<FollowOptions>,
    eventbridge: Option<EventBridgeConfig>,
    retention: Option<Retention>,
    runtime: Option<Handle>,
    aws: Option<aws_config::SdkConfig>,
}

impl Builder {
    /// Defaults: `sync` durability, no server, no S3, no EventBridge, artifacts kept forever.
    pub fn new(data_dir: impl AsRef<Path>) -> Builder {
        Builder {
            data_dir: data_dir.as_ref().to_path_buf(),
            journal: JournalConfig::default(),
            server: None,
            ship: None,
            follow: None,
            eventbridge: None,
            retention: None,
            runtime: None,
            aws: None,
        }
    }

    /// When a record call returns: `Sync` (durable, the default), `Batch` or `None`.
    pub fn durability(mut self, durability: Durability) -> Builder {
        self.journal.durability = durability;
        self
    }

    /// The whole journal configuration (segment sizes, limits, repair...).
    pub fn journal_config(mut self, config: JournalConfig) -> Builder {
        self.journal = config;
        self
    }

    /// Serves the HTTP API, the WebSocket stream and the dashboard on `listen`.
    pub fn serve(mut self, listen: SocketAddr) -> Builder {
        let token = self.server.take().and_then(|s| s.token);
        self.server = Some(ServerOptions {
            token,
            ..ServerOptions::new(listen)
        });
        self
    }

    /// The server with every setting given.
    pub fn server(mut self, options: ServerOptions) -> Builder {
        self.server = Some(options);
        self
    }

    /// Requires `Authorization: Bearer TOKEN` on the server's routes (after [`Builder::serve`]).
    pub fn token(mut self, token: impl Into<String>) -> Builder {
        if let Some(server) = &mut self.server {
            server.token = Some(token.into());
        }
        self
    }

    /// Ships sealed segments and artifact files to `location` every 10 s and after each seal
    /// (fenced: one writer per prefix).
    pub fn s3(self, location: S3Location) -> Builder {
        self.ship(ShipOptions {
            location,
            interval: Duration::from_secs(10),
        })
    }

    /// Shipping with every setting given.
    pub fn ship(mut self, options: ShipOptions) -> Builder {
        self.ship = Some(options);
        self
    }

    /// Serves a read-only replica of an S3 prefix: restores it into the (empty) data dir, or
    /// resumes a follower's data dir, then applies newly shipped segments. Recording is
    /// refused.
    pub fn follow(mut self, options: FollowOptions) -> Builder {
        self.follow = Some(options);
        self
    }

    /// Sends the configured event types to Amazon EventBridge (durable consumer `eventbridge`).
    pub fn eventbridge(mut self, config: EventBridgeConfig) -> Builder {
        self.eventbridge = Some(config);
        self
    }

    /// Gives artifacts added without an expiry one `keep_for` after they are added, and deletes
    /// expired artifacts every hour (the first sweep right after opening).
    pub fn retention(mut self, keep_for: Duration) -> Builder {
        self.retention = Some(Retention {
            keep_for: Some(keep_for),
            sweep_every: Duration::from_secs(3600),
        });
        self
    }

    /// How often expired artifacts are deleted (also without [`Builder::retention`]: then only
    /// artifacts given an explicit expiry expire).
    pub fn retention_sweep(mut self, every: Duration) -> Builder {
        let keep_for = self.retention.and_then(|r| r.keep_for);
        self.retention = Some(Retention {
            keep_for,
            sweep_every: every,
        });
        self
    }

    /// Runs the background tasks on the caller's (multi-thread) runtime instead of one of the
    /// Logbook's own.
    pub fn runtime(mut self, handle: Handle) -> Builder {
        self.runtime = Some(handle);
        self
    }

    /// The AWS configuration for S3 and EventBridge (default: the standard chain, read at
    /// open: `AWS_REGION`, `AWS_ENDPOINT_URL`, credentials, profiles).
    pub fn aws(mut self, sdk: aws_config::SdkConfig) -> Builder {
        self.aws = Some(sdk);
        self
    }

    /// Checks the settings, opens the data dir and starts what was asked for.
    pub fn open(self) -> Result<Logbook, LogbookError> {
        self.check()?;
        let rt = match self.runtime.clone() {
            Some(handle) => Rt::Caller(handle),
            None => Rt::Own(server::runtime().map_err(LogbookError::Runtime)?),
        };
        let handle = rt.handle();
        let listener = match &self.server {
            Some(options) => Some(on(&handle, async {
                server::bind(options.listen, options.token.as_deref()).await
            })?),
            None => None,
        };
        let needs_aws = self.ship.is_some() || self.follow.is_some() || self.eventbridge.is_some();
        let sdk = match (needs_aws, &self.aws) {
            (false, _) => None,
            (true, Some(sdk)) => Some(sdk.clone()),
            (true, None) => Some(sdk_config(&handle, self.what_needs_aws())?),
        };
        let (recorder, follower, restored) = match (&self.follow, &sdk) {
            (Some(follow), Some(sdk)) => {
                let (follower, restored) = start_following(&handle, sdk, &self.data_dir, follow)?;
                let recorder = Recorder::open_replica(&self.data_dir, self.journal.clone())?;
                (recorder, Some(follower), restored)
            }
            _ => (
                Recorder::open(&self.data_dir, self.journal.clone())?,
                None,
                None,
            ),
        };
        let recorder = Arc::new(recorder);
        // This process is the data dir's one writer: what a crash left staged is nobody's.
        crate::artifacts::stage::clear_staging(&self.data_dir.join("artifacts"));
        let mut artifacts = ArtifactStore::new(recorder.clone(), self.data_dir.join("artifacts"));
        if let Some(keep_for) = self.retention.and_then(|r| r.keep_for) {
            artifacts = artifacts.with_retention(keep_for);
        }
        // From here on, a failure drops `logbook`, which stops what started and closes.
        let mut logbook = Logbook {
            recorder: recorder.clone(),
            artifacts: artifacts.clone(),
            shipping: None,
            ship_to: match (&self.ship, &sdk) {
                (Some(ship), Some(sdk)) => Some((ship.location.clone(), sdk.clone())),
                _ => None,
            },
            eventbridge: None,
            restored,
            running: Mutex::new(Some(Running {
                server: None,
                tasks: Vec::new(),
                callbacks: Callbacks::new(),
            })),
            closed: false,
            rt: Some(rt),
        };
        let mut tasks: Vec<Task> = Vec::new();
        let started = (|| {
            if let (Some(ship), Some(sdk)) = (&self.ship, &sdk) {
                let (task, status) = on(&handle, async {
                    background::start_shipper(
                        &handle,
                        sdk,
                        &self.data_dir,
                        &recorder,
                        &ship.location,
                        ship.interval,
                    )
                    .await
                })?;
                tasks.push(task);
                logbook.shipping = Some(status);
            }
            if let (Some(config), Some(sdk)) = (&self.eventbridge, &sdk) {
                let (task, metrics) = background::start_eventbridge(
                    &handle,
                    sdk,
                    &self.data_dir,
                    &recorder,
                    config.clone(),
                )?;
                tasks.push(task);
                logbook.eventbridge = Some(metrics);
            }
            if let (Some(follower), Some(follow)) = (follower, &self.follow) {
                tasks.push(background::start_follower(
                    &handle,
                    follower,
                    recorder.clone(),
                    follow.poll_interval,
                ));
            }
            if let Some(retention) = self.retention {
                tasks.push(background::start_retention(
                    &handle,
                    artifacts.clone(),
                    retention.sweep_every,
                ));
            }
            Ok::<(), LogbookError>(())
        })();
        if let Some(running) = logbook.running.get_mut().ok().and_then(|r| r.as_mut()) {
            running.tasks = tasks;
        }
        started?;
        if let (Some(listener), Some(options)) = (listener, &self.server) {
            logbook.serve_on(listener, options)?;
        }
        Ok(logbook)
    }

    fn check(&self) -> Result<(), LogbookError> {
        if self.follow.is_some() && (self.ship.is_some() || self.eventbridge.is_some()) {
            return Err(LogbookError::Config(
                "a follower is a read-only replica: it cannot also ship to S3 or send to \
                 EventBridge (the writer it follows does)"
                    .into(),
            ));
        }
        if let Some(server) = &self.server {
            server::check_listen(server.listen, server.token.as_deref())?;
        }
        Ok(())
    }

    fn what_needs_aws(&self) -> &'static str {
        if self.ship.is_some() {
            "shipping to S3"
        } else if self.follow.is_some() {
            "following S3"
        } else {
            "EventBridge"
        }
    }
}

/// Runs `future` to completion on `handle` from a thread of its own (so it works whether or
/// not the caller is inside a runtime).
pub(super) fn on<T: Send>(
    handle: &Handle,
    future: impl std::future::Future<Output = T> + Send,
) -> T {
    std::thread::scope(|scope| {
        let running = scope.spawn(|| handle.block_on(future));
        match running.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The shared AWS configuration from the standard chain; refused without a region.
fn sdk_config(handle: &Handle, what: &str) -> Result<aws_config::SdkConfig, LogbookError> {
    let sdk = on(handle, crate::aws::load_sdk_config());
    if sdk.region().is_none() {
        return Err(LogbookError::Config(format!(
            "{what} needs an AWS region (AWS_REGION, AWS_DEFAULT_REGION or a profile)"
        )));
    }
    Ok(sdk)
}

/// Restores the followed prefix into an empty data dir, or resumes a follower's data dir.
fn start_following(
    handle: &Handle,
    sdk: &aws_config::SdkConfig,
    data_dir: &Path,
    follow: &FollowOptions,
) -> Result<(crate::s3::Follower, Option<crate::s3::RestoreReport>), LogbookError> {
    let client = crate::s3::client(sdk);
    let has_journal =
        std::fs::read_dir(data_dir.join("journal")).is_ok_and(|mut d| d.next().is_some());
    if has_journal {
        let follower = crate::s3::Follower::resume(&client, &follow.location, data_dir, 4)?;
        return Ok((follower, None));
    }
    let (report, follower) = on(handle, async {
        crate::s3::restore(
            &client,
            &follow.location,
            data_dir,
            &RestoreOptions::default(),
            &mut |_| {},
            &mut |_| {},
        )
        .await
    })?;
    Ok((follower, Some(report)))
}
