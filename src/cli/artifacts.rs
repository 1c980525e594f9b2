//! `logbook artifacts add|search|stats|upload|url|retention`: the artifact store from the shell.
//! `add`, `upload` and `retention` write (they take the writer lock); `search`, `stats` and
//! `url` read the journal read-only, so they work beside a live writer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use logbook::artifacts::{ArtifactError, ArtifactQuery, ArtifactStore, NewArtifact, TagMatch};
use logbook::event::{ArtifactStatus, ArtifactType};
use logbook::recorder::Recorder;
use logbook::s3::upload::presigned_get;
use logbook::s3::{ArtifactUploader, S3Location, UploadConfig};
use logbook::state::ArtifactView;
use logbook::timestamp::{format_us, now_us, parse_rfc3339};

use super::aws::{parse_duration, parse_location, sdk_config};
use super::{BadInput, Cli};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Arguments of `artifacts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Copy a file into the store (hashing SHA-256) and record it.
    Add {
        /// The file.
        path: PathBuf,
        /// Session (must exist).
        #[arg(long)]
        session: String,
        /// Collection in the session (must exist).
        #[arg(long)]
        collection: String,
        /// Artifact id (unique); defaults to "<session>-<collection>-<file name>".
        #[arg(long)]
        id: Option<String>,
        /// Type: log_file, test_result, configuration, screenshot, metrics_data, backup, report, diagnostic.
        #[arg(long = "type", value_parser = parse_type)]
        artifact_type: ArtifactType,
        /// A tag (repeat for several).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The task that produced it.
        #[arg(long)]
        task: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Name in the store (defaults to the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Expiry for retention (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Search artifacts; every filter given must match.
    Search(SearchArgs),
    /// Counts and bytes by type and status.
    Stats,
    /// Upload an artifact to S3 now (verified; recorded as artifact.uploaded or .upload_failed).
    Upload {
        /// The artifact id.
        id: String,
        /// The bucket and prefix: s3://bucket/prefix.
        #[arg(long, value_name = "URL", env = "LOGBOOK_S3", value_parser = parse_location)]
        s3: S3Location,
    },
    /// Print a pre-signed GET URL of an uploaded artifact.
    Url {
        /// The artifact id.
        id: String,
        /// How long the URL stays valid (e.g. 15m, 1h, 7d; S3 allows at most 7 days).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        expires: Duration,
        /// The bucket and prefix the artifact was uploaded to: s3://bucket/prefix.
        #[arg(long, value_name = "URL", env = "LOGBOOK_S3", value_parser = parse_location)]
        s3: S3Location,
    },
    /// Delete expired artifacts (recorded, files removed; with --s3 their objects too).
    Retention {
        /// Treat this RFC 3339 time as now.
        #[arg(long)]
        now: Option<String>,
        /// Also delete the S3 objects of deleted artifacts in s3://bucket/prefix.
        #[arg(long, value_name = "URL", value_parser = parse_location)]
        s3: Option<S3Location>,
    },
}

#[derive(Debug, clap::Args)]
struct SearchArgs {
    /// Type.
    #[arg(long = "type", value_parser = parse_type)]
    artifact_type: Option<ArtifactType>,
    /// Tag (repeat for several; all must match unless --any-tag).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Match any of the tags instead of all.
    #[arg(long)]
    any_tag: bool,
    /// Producing task.
    #[arg(long)]
    task: Option<String>,
    /// Status: created, uploaded, archived, deleted, failed.
    #[arg(long, value_parser = parse_status)]
    status: Option<ArtifactStatus>,
    /// Session.
    #[arg(long)]
    session: Option<String>,
    /// Smallest size in bytes.
    #[arg(long)]
    min_size: Option<u64>,
    /// Largest size in bytes.
    #[arg(long)]
    max_size: Option<u64>,
    /// Created at or after (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Created at or before (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// File-name glob, e.g. '*.log'.
    #[arg(long)]
    name: Option<String>,
    /// Free text: every word must occur in the file name, description or tags.
    #[arg(long)]
    text: Option<String>,
    /// At most this many results.
    #[arg(long)]
    limit: Option<usize>,
}

fn parse_enum<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| format!("unknown value {text:?}"))
}

fn parse_type(text: &str) -> Result<ArtifactType, String> {
    parse_enum(text)
}

fn parse_status(text: &str) -> Result<ArtifactStatus, String> {
    parse_enum(text)
}

fn time(flag: &str, text: &Option<String>) -> Result<Option<i64>, BadInput> {
    text.as_deref()
        .map(|t| parse_rfc3339(t).map_err(|e| BadInput(format!("{flag}: {e}"))))
        .transpose()
}

fn store_error(e: ArtifactError) -> anyhow::Error {
    if e.is_bad_input() {
        BadInput(e.to_string()).into()
    } else {
        e.into()
    }
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Add {
            path,
            session,
            collection,
            id,
            artifact_type,
            tags,
            task,
            description,
            name,
            expires_at,
        } => {
            let recorder = Arc::new(Recorder::open(&cli.data, cli.journal_config()?)?);
            let store = ArtifactStore::new(recorder.clone(), cli.data.join("artifacts"));
            let file_name = name.clone().or_else(|| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
            });
            let artifact_id = id.clone().unwrap_or_else(|| {
                format!(
                    "{session}-{collection}-{}",
                    file_name.as_deref().unwrap_or("file")
                )
            });
            let new = NewArtifact {
                session_id: session.clone(),
                collection_id: collection.clone(),
                artifact_id,
                source: path.clone(),
                file_name: name.clone(),
                artifact_type: *artifact_type,
                tags: tags.clone(),
                task_id: task.clone(),
                description: description.clone(),
                expires_at: expires_at.clone(),
            };
            let view = store.add_artifact(&new).map_err(store_error)?;
            drop(store);
            if let Some(recorder) = Arc::into_inner(recorder) {
                recorder.close()?;
            }
            print_artifacts(cli.json, std::slice::from_ref(&view))?;
        }
        Command::Search(s) => {
            let query = ArtifactQuery {
                artifact_type: s.artifact_type,
                tags: s.tags.clone(),
                tag_match: if s.any_tag {
                    TagMatch::Any
                } else {
                    TagMatch::All
                },
                task_id: s.task.clone(),
                status: s.status,
                session_id: s.session.clone(),
                min_size: s.min_size,
                max_size: s.max_size,
                created_from_us: time("--since", &s.since)?,
                created_until_us: time("--until", &s.until)?,
                name_glob: s.name.clone(),
                text: s.text.clone(),
                limit: s.limit,
            };
            let (live, _journal) = super::read_live(cli)?;
            let found: Vec<ArtifactView> = live.search(&query)?;
            print_artifacts(cli.json, &found)?;
        }
        Command::Stats => {
            let (live, _journal) = super::read_live(cli)?;
            let stats = live.stats(&ArtifactQuery::default())?;
            if cli.json {
                out!("{}", serde_json::to_string(&stats)?);
            } else {
                out!(
                    "{} artifacts, {} bytes",
                    stats.total.count,
                    stats.total.bytes
                );
                for (kind, t) in &stats.by_type {
                    out!(
                        "  type   {kind:<14} {:>6} artifacts {:>12} bytes",
                        t.count,
                        t.bytes
                    );
                }
                for (status, t) in &stats.by_status {
                    out!(
                        "  status {status:<14} {:>6} artifacts {:>12} bytes",
                        t.count,
                        t.bytes
                    );
                }
            }
        }
        Command::Upload { id, s3 } => {
            let runtime = runtime()?;
            let sdk = sdk_config(&runtime, "artifacts upload")?;
            let recorder = Arc::new(Recorder::open(&cli.data, cli.journal_config()?)?);
            let uploader = ArtifactUploader::new(
                logbook::s3::client(&sdk),
                s3.clone(),
                recorder.clone(),
                cli.data.join("artifacts"),
                UploadConfig::default(),
            );
            let outcome = runtime.block_on(uploader.upload(id));
            drop(uploader);
            drop(runtime);
            if let Some(recorder) = Arc::into_inner(recorder) {
                recorder.close()?;
            }
            let uploaded = outcome.map_err(super::aws::s3_error)?;
            if cli.json {
                out!(
                    "{}",
                    serde_json::json!({"artifact_id": id, "s3_key": uploaded.key, "etag": uploaded.etag, "uploaded_now": uploaded.uploaded_now})
                );
            } else if uploaded.uploaded_now {
                out!("uploaded {id} to {} (etag {})", uploaded.key, uploaded.etag);
            } else {
                out!("{id} was already uploaded to {}", uploaded.key);
            }
        }
        Command::Url { id, expires, s3 } => {
            let (live, _journal) = super::read_live(cli)?;
            let artifact = live
                .artifact(id)?
                .ok_or_else(|| BadInput(format!("unknown artifact {id:?}")))?;
            let runtime = runtime()?;
            let sdk = sdk_config(&runtime, "artifacts url")?;
            let client = logbook::s3::client(&sdk);
            let url = runtime
                .block_on(presigned_get(&client, s3, &artifact, *expires))
                .map_err(super::aws::s3_error)?;
            if cli.json {
                out!(
                    "{}",
                    serde_json::json!({"artifact_id": id, "url": url, "expires_in_s": expires.as_secs()})
                );
            } else {
                out!("{url}");
            }
        }
        Command::Retention { now, s3 } => {
            let now = time("--now", now)?.unwrap_or_else(now_us);
            let recorder = Arc::new(Recorder::open(&cli.data, cli.journal_config()?)?);
            let store = ArtifactStore::new(recorder.clone(), cli.data.join("artifacts"));
            let deleted = store.apply_retention(now).map_err(store_error)?;
            drop(store);
            let mut objects = Vec::new();
            if let Some(s3) = s3 {
                let runtime = runtime()?;
                let sdk = sdk_config(&runtime, "artifacts retention --s3")?;
                let uploader = ArtifactUploader::new(
                    logbook::s3::client(&sdk),
                    s3.clone(),
                    recorder.clone(),
                    cli.data.join("artifacts"),
                    UploadConfig::default(),
                );
                objects = runtime.block_on(uploader.delete_deleted())?;
            }
            if let Some(recorder) = Arc::into_inner(recorder) {
                recorder.close()?;
            }
            if cli.json {
                out!(
                    "{}",
                    serde_json::json!({"deleted": deleted, "s3_objects_deleted": objects})
                );
            } else {
                if !objects.is_empty() {
                    out!("deleted {} S3 object(s)", objects.len());
                }
                out!(
                    "deleted {} expired artifacts{}",
                    deleted.len(),
                    if deleted.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", deleted.join(", "))
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_artifacts(json: bool, artifacts: &[ArtifactView]) -> std::io::Result<()> {
    for a in artifacts {
        if json {
            out!("{}", serde_json::to_string(a).unwrap_or_default());
        } else {
            out!(
                "{} {}/{}/{} [{}] {} bytes sha256:{} {} tags:{} created {}",
                a.artifact_id,
                a.session_id,
                a.collection_id,
                a.file_name,
                a.artifact_type.as_str(),
                a.size_bytes,
                a.sha256.get(..12).unwrap_or(&a.sha256),
                a.status.as_str(),
                a.tags.join(","),
                format_us(a.created_at_us)
            );
        }
    }
    Ok(())
}
