//! [`Engine`]: a handle on the embedded engine of one data directory (shared through
//! [`crate::registry`]). Views cross the boundary as JSON text (the Python layer turns them
//! into objects with datetimes); the hot path, `task.progress`, takes plain arguments.
//!
//! Invariants: every method that waits on I/O releases the GIL; a closed handle refuses every
//! call with `LogbookError(code="closed")`; closing the last handle closes the engine (journal
//! flushed and fsynced, background tasks stopped) with the GIL released, so callback threads
//! waiting for the GIL can finish.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use logbook::artifacts::{ArtifactQuery, NewArtifact, TagMatch};
use logbook::event::{ArtifactStatus, ArtifactType, Event, TaskProgress};
use logbook::journal::Durability;
use logbook::recorder::{RecordError, parse_event};
use logbook::s3::{ArtifactUploader, S3Location, UploadConfig};
use logbook::subscribe::{EventFilter, From};
use logbook::{Logbook, LogbookError};
use pyo3::prelude::*;

use crate::errors::{failed, from_artifact, from_logbook, from_record, from_s3, refused};
use crate::registry::{self, Refused, Settings, Shared};

/// A handle on one data directory's engine; see the module docs.
#[pyclass(module = "logbook._native", frozen)]
pub struct Engine {
    shared: Mutex<Option<Arc<Shared>>>,
    /// This handle's S3 location and AWS configuration (explicit uploads, pre-signed URLs).
    s3: Option<(S3Location, aws_config::SdkConfig)>,
    /// How long this handle's artifacts are kept (their `expires_at`), if not forever.
    keep_for: Option<Duration>,
}

fn durability(text: &str) -> PyResult<Durability> {
    text.parse::<Durability>()
        .map_err(|reason| refused("invalid", reason))
}

/// The AWS configuration from the standard chain, with `region` if given.
fn load_aws(region: Option<String>) -> Result<aws_config::SdkConfig, LogbookError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LogbookError::Runtime)?;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    let sdk = runtime.block_on(loader.load());
    if sdk.region().is_none() {
        return Err(LogbookError::Config(
            "S3 and EventBridge need an AWS region: pass aws_region= or set AWS_REGION".into(),
        ));
    }
    Ok(sdk)
}

/// Opens (or shares) the engine of `path`.
#[pyfunction]
#[pyo3(signature = (path, durability="sync", s3=None, auto_upload=false, eventbridge_bus=None, aws_region=None, retention_days=None))]
#[allow(clippy::too_many_arguments)]
pub fn open(
    py: Python<'_>,
    path: PathBuf,
    durability: &str,
    s3: Option<String>,
    auto_upload: bool,
    eventbridge_bus: Option<String>,
    aws_region: Option<String>,
    retention_days: Option<f64>,
) -> PyResult<Engine> {
    let policy = self::durability(durability)?;
    let location = match &s3 {
        Some(url) => Some(
            url.parse::<S3Location>()
                .map_err(|e| refused("invalid", e.to_string()))?,
        ),
        None => None,
    };
    let keep_for = match retention_days {
        Some(days) if days.is_finite() && days > 0.0 && days <= 36_500.0 => {
            Some(Duration::from_secs_f64(days * 86_400.0))
        }
        Some(days) => {
            return Err(refused(
                "out_of_range",
                format!("retention_days must be in (0, 36500], not {days}"),
            ));
        }
        None => None,
    };
    let background_aws = auto_upload && location.is_some() || eventbridge_bus.is_some();
    let settings = Settings {
        durability: durability.to_string(),
        ship: s3.clone().filter(|_| auto_upload),
        eventbridge_bus: eventbridge_bus.clone(),
        aws_region: aws_region.clone().filter(|_| background_aws),
    };
    let aws = match location.is_some() || eventbridge_bus.is_some() {
        true => Some(
            py.detach(|| load_aws(aws_region.clone()))
                .map_err(from_logbook)?,
        ),
        false => None,
    };
    let shared = py.detach(|| {
        registry::engine(&path, settings, |dir| {
            // Expired artifacts (each handle gives its own their expiry) are deleted hourly.
            let mut builder = Logbook::builder(dir)
                .durability(policy)
                .retention_sweep(Duration::from_secs(3600));
            if let Some(sdk) = &aws {
                builder = builder.aws(sdk.clone());
            }
            if let (Some(location), true) = (&location, auto_upload) {
                builder = builder.s3(location.clone());
            }
            if let Some(bus) = &eventbridge_bus {
                builder = builder.eventbridge(logbook::eventbridge::EventBridgeConfig::new(bus));
            }
            builder.open()
        })
    });
    match shared {
        Ok(shared) => Ok(Engine {
            shared: Mutex::new(Some(shared)),
            s3: location.zip(aws),
            keep_for,
        }),
        Err(Refused::Settings(reason)) => Err(refused("settings_differ", reason)),
        Err(Refused::Open(error)) => Err(from_logbook(error)),
        Err(Refused::Io(error)) => Err(failed(Some("io"), format!("{}: {error}", path.display()))),
    }
}

fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| failed(None, e.to_string()))
}

fn artifact_type(text: &str) -> PyResult<ArtifactType> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| refused("invalid", format!("unknown artifact type {text:?}")))
}

fn artifact_status(text: &str) -> PyResult<ArtifactStatus> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| refused("invalid", format!("unknown artifact status {text:?}")))
}

/// Logs a Python callback's exception through `logging.getLogger("logbook")`, or prints it as
/// unraisable if even that fails.
fn log_callback_error(py: Python<'_>, callback: &Py<PyAny>, error: PyErr) {
    let logged = py
        .import("logging")
        .and_then(|logging| logging.call_method1("getLogger", ("logbook",)))
        .and_then(|logger| {
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("exc_info", error.clone_ref(py).into_value(py))?;
            logger.call_method(
                "error",
                ("a Logbook callback raised; it keeps receiving events",),
                Some(&kwargs),
            )
        });
    if logged.is_err() {
        error.write_unraisable(py, Some(callback.bind(py)));
    }
}

impl Engine {
    fn get(&self) -> PyResult<Arc<Shared>> {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| failed(Some("closed"), "this Logbook is closed"))
    }

    fn uploader(&self, shared: &Shared) -> PyResult<ArtifactUploader> {
        let Some((location, sdk)) = &self.s3 else {
            return Err(refused(
                "no_s3",
                "no S3 location configured: pass s3_bucket= (and s3_prefix=) to use S3",
            ));
        };
        Ok(ArtifactUploader::new(
            logbook::s3::client(sdk),
            location.clone(),
            shared.logbook.recorder().clone(),
            shared.dir.join("artifacts"),
            UploadConfig::default(),
        ))
    }
}

/// One artifact's view, read with the GIL released.
fn artifact_view(
    py: Python<'_>,
    shared: &Shared,
    artifact_id: &str,
) -> PyResult<Option<logbook::state::ArtifactView>> {
    py.detach(|| {
        let live = shared.logbook.recorder().live()?;
        Ok::<_, RecordError>(live.artifact(artifact_id)?)
    })
    .map_err(from_record)
}

#[pymethods]
impl Engine {
    /// The data directory (canonical).
    #[getter]
    fn path(&self) -> PyResult<PathBuf> {
        Ok(self.get()?.dir.clone())
    }

    /// The journal's next offset.
    fn next_offset(&self) -> PyResult<u64> {
        Ok(self.get()?.logbook.journal().next_offset())
    }

    /// Records one event given as JSON; its offset (or the earlier one of its idempotency key).
    fn record(&self, py: Python<'_>, event: &str) -> PyResult<u64> {
        let shared = self.get()?;
        py.detach(|| {
            let event = parse_event(event.as_bytes())?;
            Ok::<u64, RecordError>(shared.logbook.recorder().record(&event)?.offset())
        })
        .map_err(from_record)
    }

    /// Records `task.progress` (the hot path: no JSON on the way in).
    #[pyo3(signature = (upgrade_id, task_id, percentage, message=None, details=None))]
    fn progress(
        &self,
        py: Python<'_>,
        upgrade_id: String,
        task_id: String,
        percentage: f64,
        message: Option<String>,
        details: Option<&str>,
    ) -> PyResult<u64> {
        let shared = self.get()?;
        let details = match details {
            Some(text) => Some(
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                    .map_err(|e| refused("invalid", format!("details: {e}")))?,
            ),
            None => None,
        };
        let event = Event::TaskProgress(TaskProgress {
            id: None,
            upgrade_id,
            task_id,
            percentage,
            message,
            details,
        });
        py.detach(|| shared.logbook.recorder().record(&event))
            .map(|r| r.offset())
            .map_err(from_record)
    }

    /// The upgrade's view as JSON, or None.
    fn upgrade(&self, py: Python<'_>, upgrade_id: &str) -> PyResult<Option<String>> {
        let shared = self.get()?;
        let view = py
            .detach(|| shared.logbook.recorder().upgrade(upgrade_id))
            .map_err(from_record)?;
        view.as_ref().map(json).transpose()
    }

    /// The ids of every upgrade.
    fn upgrade_ids(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let shared = self.get()?;
        py.detach(|| {
            let live = shared.logbook.recorder().live()?;
            Ok::<_, RecordError>(live.upgrade_ids()?)
        })
        .map_err(from_record)
    }

    /// Copies `path` into the store and records `artifact.added`; the artifact as JSON.
    #[pyo3(signature = (session_id, collection_id, artifact_id, path, artifact_type, tags, task_id=None, description=None, file_name=None))]
    #[allow(clippy::too_many_arguments)]
    fn add_artifact(
        &self,
        py: Python<'_>,
        session_id: String,
        collection_id: String,
        artifact_id: String,
        path: PathBuf,
        artifact_type: &str,
        tags: Vec<String>,
        task_id: Option<String>,
        description: Option<String>,
        file_name: Option<String>,
    ) -> PyResult<String> {
        let shared = self.get()?;
        let new = NewArtifact {
            session_id,
            collection_id,
            artifact_id,
            source: path,
            file_name,
            artifact_type: self::artifact_type(artifact_type)?,
            tags,
            task_id,
            description,
            expires_at: None,
        };
        let mut store = shared.logbook.artifacts();
        if let Some(keep_for) = self.keep_for {
            store = store.with_retention(keep_for);
        }
        let view = py
            .detach(|| store.add_artifact(&new))
            .map_err(from_artifact)?;
        json(&view)
    }

    /// One artifact as JSON, or None.
    fn artifact(&self, py: Python<'_>, artifact_id: &str) -> PyResult<Option<String>> {
        let shared = self.get()?;
        let view = artifact_view(py, &shared, artifact_id)?;
        view.as_ref().map(json).transpose()
    }

    /// Where the store keeps an artifact's file.
    fn artifact_path(&self, py: Python<'_>, artifact_id: &str) -> PyResult<Option<PathBuf>> {
        let shared = self.get()?;
        let view = artifact_view(py, &shared, artifact_id)?;
        Ok(view.map(|v| shared.logbook.artifacts().path_of(&v)))
    }

    /// Artifacts matching every filter given, as a JSON list.
    #[pyo3(signature = (session_id=None, artifact_type=None, tags=None, any_tag=false, task_id=None, status=None, min_size=None, max_size=None, since_us=None, until_us=None, name=None, text=None, limit=None))]
    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        py: Python<'_>,
        session_id: Option<String>,
        artifact_type: Option<&str>,
        tags: Option<Vec<String>>,
        any_tag: bool,
        task_id: Option<String>,
        status: Option<&str>,
        min_size: Option<u64>,
        max_size: Option<u64>,
        since_us: Option<i64>,
        until_us: Option<i64>,
        name: Option<String>,
        text: Option<String>,
        limit: Option<usize>,
    ) -> PyResult<String> {
        let shared = self.get()?;
        let query = ArtifactQuery {
            artifact_type: artifact_type.map(self::artifact_type).transpose()?,
            tags: tags.unwrap_or_default(),
            tag_match: match any_tag {
                true => TagMatch::Any,
                false => TagMatch::All,
            },
            task_id,
            status: status.map(artifact_status).transpose()?,
            session_id,
            min_size,
            max_size,
            created_from_us: since_us,
            created_until_us: until_us,
            name_glob: name,
            text,
            limit,
        };
        let found = py
            .detach(|| shared.logbook.artifacts().search(&query))
            .map_err(from_artifact)?;
        json(&found)
    }

    /// Counts and bytes by type and status, as JSON.
    fn statistics(&self, py: Python<'_>) -> PyResult<String> {
        let shared = self.get()?;
        let stats = py
            .detach(|| shared.logbook.artifacts().statistics())
            .map_err(from_artifact)?;
        json(&stats)
    }

    /// Deletes expired artifacts (and their S3 objects when S3 is configured); the ids.
    fn apply_retention(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let shared = self.get()?;
        let deleted = py
            .detach(|| {
                shared
                    .logbook
                    .artifacts()
                    .apply_retention(logbook::timestamp::now_us())
            })
            .map_err(from_artifact)?;
        if self.s3.is_some() {
            let uploader = self.uploader(&shared)?;
            let handle = shared.logbook.runtime();
            py.detach(|| block_on(&handle, uploader.delete_deleted()))
                .map_err(from_s3)?;
        }
        Ok(deleted)
    }

    /// Uploads one artifact to S3 now (recording `artifact.uploaded`); the artifact as JSON.
    fn upload_artifact(&self, py: Python<'_>, artifact_id: &str) -> PyResult<String> {
        let shared = self.get()?;
        let uploader = self.uploader(&shared)?;
        let handle = shared.logbook.runtime();
        py.detach(|| block_on(&handle, uploader.upload(artifact_id)))
            .map_err(from_s3)?;
        self.artifact(py, artifact_id)?.ok_or_else(|| {
            refused(
                "unknown_artifact",
                format!("unknown artifact {artifact_id:?}"),
            )
        })
    }

    /// A pre-signed GET URL of an uploaded artifact.
    fn presigned_url(
        &self,
        py: Python<'_>,
        artifact_id: &str,
        expires_in: f64,
    ) -> PyResult<String> {
        if !(expires_in.is_finite() && (1.0..=604_800.0).contains(&expires_in)) {
            return Err(refused(
                "out_of_range",
                format!("expires_in must be 1..=604800 seconds (S3's limit), not {expires_in}"),
            ));
        }
        let shared = self.get()?;
        let uploader = self.uploader(&shared)?;
        let handle = shared.logbook.runtime();
        py.detach(|| {
            block_on(
                &handle,
                uploader.presigned_url(artifact_id, Duration::from_secs_f64(expires_in)),
            )
        })
        .map_err(from_s3)
    }

    /// Calls `callback(envelope_json)` on a Logbook thread for every record from now on (or
    /// from `from_offset`); an exception it raises is logged and the callback goes on.
    #[pyo3(signature = (name, callback, from_offset=None))]
    fn on_record(&self, name: &str, callback: Py<PyAny>, from_offset: Option<u64>) -> PyResult<()> {
        let shared = self.get()?;
        let from = from_offset.map_or(From::Latest, From::Offset);
        shared
            .logbook
            .on_record(name, from, EventFilter::all(), move |delivery| {
                let line = logbook::envelope::to_json_line(&delivery.record);
                Python::attach(|py| {
                    if let Err(error) = callback.call1(py, (line,)) {
                        log_callback_error(py, &callback, error);
                    }
                });
            })
            .map_err(from_logbook)
    }

    /// Starts the HTTP API, WebSocket stream (also on `/`) and dashboard; the port.
    #[pyo3(signature = (host, port, token=None))]
    fn start_server(
        &self,
        py: Python<'_>,
        host: &str,
        port: u16,
        token: Option<String>,
    ) -> PyResult<u16> {
        let shared = self.get()?;
        let ip: std::net::IpAddr = match host {
            "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
            other => other
                .parse()
                .map_err(|_| refused("invalid", format!("not an IP address: {other:?}")))?,
        };
        let mut options = logbook::front::ServerOptions::new((ip, port).into());
        options.token = token;
        py.detach(|| shared.logbook.start_server(options))
            .map(|addr| addr.port())
            .map_err(from_logbook)
    }

    /// Stops the server, if one runs.
    fn stop_server(&self, py: Python<'_>) -> PyResult<()> {
        let shared = self.get()?;
        py.detach(|| shared.logbook.stop_server())
            .map_err(from_logbook)
    }

    /// Where the server listens, if it runs.
    fn server_port(&self) -> PyResult<Option<u16>> {
        Ok(self.get()?.logbook.local_addr().map(|a| a.port()))
    }

    /// Closes this handle; the last one closes the engine (journal flushed and fsynced).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let shared = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(shared) = shared else {
            return Ok(());
        };
        py.detach(move || match Arc::try_unwrap(shared) {
            Ok(shared) => shared.logbook.close().map_err(from_logbook),
            // Others still use it; the last one closes it.
            Err(_) => Ok(()),
        })
    }

    /// Whether this handle is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let shared = self
            .shared
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(shared) = shared {
            // Collected without close: close with the GIL released (callback threads may be
            // waiting for it) if this was the last handle.
            Python::attach(|py| py.detach(move || drop(shared)));
        }
    }
}

/// Runs `future` on the engine's runtime from this (non-runtime) thread.
fn block_on<T>(handle: &tokio::runtime::Handle, future: impl std::future::Future<Output = T>) -> T {
    handle.block_on(future)
}
