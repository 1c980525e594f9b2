//! `logbook demo`: the main job. Simulates an EKS blue/green upgrade through the embedded API
//! (phases, tasks with subtasks, progress updates, artifacts: generated logs, configuration
//! snapshots, metrics and a JSON test report in a session with collections; `--fail-at PHASE`
//! fails a check and runs a rollback), showing progress bars while the dashboard is served at
//! `--listen` (default http://127.0.0.1:8765). At the end it verifies the journal, prints where
//! it is and what to try next, and keeps serving the dashboard until Ctrl-C unless `--exit`.
//! `--s3 URL` ships segments and uploads artifacts (everything, sealed, before it reports);
//! `--eventbridge-bus NAME` sends the lifecycle events (all of them, before it reports).
//! Events follow the event contract of DESIGN.md §3.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use logbook::artifacts::{ArtifactStore, NewArtifact};
use logbook::event::{ArtifactType, ProgressStatus, TaskType};
use logbook::eventbridge::EventBridgeConfig;
use logbook::journal::verify_dir;
use logbook::recorder::RecordError;
use logbook::server::ServeError;
use logbook::tracker::ProgressTracker;
use logbook::{Logbook, LogbookError};
use serde_json::json;

use super::{BadInput, Cli};

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Time scale: 2 runs twice as fast (the default run takes about 30 s).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Make this phase fail (and run a rollback): one of initialization, planning,
    /// provision-green, traffic-shift, validation, decommission-blue, cleanup.
    #[arg(long, value_name = "PHASE")]
    fail_at: Option<String>,
    /// Exit when the run is done instead of serving the dashboard until Ctrl-C.
    #[arg(long)]
    exit: bool,
    /// Where to serve the dashboard (loopback; 127.0.0.1:0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: std::net::SocketAddr,
    /// Ship segments and upload artifacts to s3://bucket/prefix (AWS settings from the
    /// standard chain: AWS_REGION, AWS_ENDPOINT_URL, credentials).
    #[arg(long, value_name = "URL", value_parser = super::aws::parse_location)]
    s3: Option<logbook::s3::S3Location>,
    /// Send lifecycle events to this EventBridge bus.
    #[arg(long, value_name = "NAME")]
    eventbridge_bus: Option<String>,
}

/// One phase of the plan: its slug, display name and tasks (id, name, type, seconds, subtasks).
struct Phase {
    slug: &'static str,
    name: &'static str,
    tasks: Vec<Task>,
}

struct Task {
    id: String,
    name: String,
    task_type: TaskType,
    seconds: f64,
    subtasks: Vec<Task>,
}

fn task(id: &str, name: &str, task_type: TaskType, seconds: f64, subtasks: Vec<Task>) -> Task {
    Task {
        id: id.into(),
        name: name.into(),
        task_type,
        seconds,
        subtasks,
    }
}

fn plan() -> Vec<Phase> {
    let step = TaskType::UpgradeStep;
    let mut shift = Vec::new();
    for pct in [10, 25, 50, 75, 100] {
        shift.push(task(
            &format!("shift-{pct}"),
            &format!("Shift {pct}% of traffic to green"),
            step,
            1.2,
            vec![],
        ));
    }
    vec![
        Phase {
            slug: "initialization",
            name: "Initialization",
            tasks: vec![task(
                "init",
                "Initialize upgrade",
                step,
                2.0,
                vec![
                    task(
                        "init-creds",
                        "Check AWS credentials",
                        TaskType::Validation,
                        0.8,
                        vec![],
                    ),
                    task("init-cluster", "Describe blue cluster", step, 1.0, vec![]),
                ],
            )],
        },
        Phase {
            slug: "planning",
            name: "Planning",
            tasks: vec![task(
                "plan",
                "Plan upgrade 1.29 -> 1.30",
                TaskType::UpgradePlan,
                2.5,
                vec![
                    task(
                        "plan-addons",
                        "Check add-on compatibility",
                        TaskType::Validation,
                        1.2,
                        vec![],
                    ),
                    task(
                        "plan-apis",
                        "Scan for deprecated APIs",
                        TaskType::Validation,
                        1.3,
                        vec![],
                    ),
                ],
            )],
        },
        Phase {
            slug: "provision-green",
            name: "Provision green",
            tasks: vec![task(
                "green",
                "Provision green cluster",
                step,
                6.0,
                vec![
                    task("green-cp", "Create control plane", step, 3.0, vec![]),
                    task("green-ng", "Create node groups", step, 2.0, vec![]),
                    task("green-addons", "Install add-ons", step, 1.0, vec![]),
                ],
            )],
        },
        Phase {
            slug: "traffic-shift",
            name: "Traffic shift",
            tasks: vec![task(
                "shift",
                "Shift traffic blue -> green",
                step,
                6.0,
                shift,
            )],
        },
        Phase {
            slug: "validation",
            name: "Validation",
            tasks: vec![task(
                "validate",
                "Validate green cluster",
                TaskType::Validation,
                5.0,
                vec![
                    task(
                        "validate-smoke",
                        "Smoke tests",
                        TaskType::Validation,
                        2.0,
                        vec![],
                    ),
                    task(
                        "validate-slo",
                        "SLO checks",
                        TaskType::Validation,
                        3.0,
                        vec![],
                    ),
                ],
            )],
        },
        Phase {
            slug: "decommission-blue",
            name: "Decommission blue",
            tasks: vec![task(
                "decom",
                "Decommission blue cluster",
                step,
                4.0,
                vec![],
            )],
        },
        Phase {
            slug: "cleanup",
            name: "Cleanup",
            tasks: vec![task(
                "cleanup",
                "Clean up temporary resources",
                TaskType::Cleanup,
                2.0,
                vec![],
            )],
        },
    ]
}

struct Run {
    tracker: ProgressTracker,
    store: ArtifactStore,
    /// Where generated files are written before the store copies them in.
    scratch: PathBuf,
    upgrade_id: String,
    session_id: String,
    speed: f64,
    bars: MultiProgress,
    overall: ProgressBar,
    events: u64,
    /// Log lines of the current phase (becomes the phase's log artifact).
    log: Vec<String>,
}

impl Run {
    /// Counts one event recorded through the tracker (every one validated like any producer's).
    fn counted<T>(&mut self, recorded: Result<T, RecordError>) -> anyhow::Result<()> {
        recorded?;
        self.events += 1;
        Ok(())
    }

    fn sleep(&self, seconds: f64) {
        std::thread::sleep(Duration::from_secs_f64(seconds / self.speed));
    }

    fn note(&mut self, line: String) {
        let ts = logbook::timestamp::format_us(logbook::timestamp::now_us());
        self.log.push(format!("{ts} {line}"));
    }

    /// Writes `content` to a file and adds it to the store as an artifact of `task`.
    fn artifact(
        &mut self,
        collection: &str,
        file_name: &str,
        artifact_type: ArtifactType,
        tags: &[&str],
        task: &str,
        content: &str,
    ) -> anyhow::Result<()> {
        let source = self.scratch.join(file_name);
        std::fs::write(&source, content)?;
        let artifact_id = format!("{}-{}", self.upgrade_id, file_name.replace('.', "-"));
        self.store.add_artifact(&NewArtifact {
            session_id: self.session_id.clone(),
            collection_id: collection.into(),
            artifact_id,
            source: source.clone(),
            file_name: None,
            artifact_type,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            task_id: Some(task.into()),
            description: None,
            expires_at: None,
        })?;
        self.events += 1;
        std::fs::remove_file(&source)?;
        Ok(())
    }

    fn add(&mut self, t: &Task, parent: Option<&str>) -> anyhow::Result<()> {
        let added = self.tracker.add_task(&t.id, &t.name, t.task_type, parent);
        self.counted(added)?;
        for sub in &t.subtasks {
            self.add(sub, Some(&t.id))?;
        }
        Ok(())
    }

    /// Runs a task (subtasks first, in order); returns false if it failed.
    fn run_task(&mut self, t: &Task, fail: bool) -> anyhow::Result<bool> {
        let started = self.tracker.start_task(&t.id);
        self.counted(started)?;
        self.note(format!("[{}] started: {}", t.id, t.name));
        let bar = self
            .bars
            .insert_before(&self.overall, ProgressBar::new(100));
        bar.set_style(ProgressStyle::with_template(
            "  {bar:30.green/white} {pos:>3}% {msg}",
        )?);
        bar.set_message(t.name.clone());
        let steps = if t.subtasks.is_empty() {
            8
        } else {
            t.subtasks.len()
        };
        for i in 0..steps {
            if let Some(sub) = t.subtasks.get(i) {
                let last = i + 1 == t.subtasks.len();
                if !self.run_task(sub, fail && last)? {
                    let error = format!("subtask {} failed", sub.id);
                    self.note(format!("[{}] FAILED: {error}", t.id));
                    let failed = self.tracker.fail_task(&t.id, &error);
                    self.counted(failed)?;
                    bar.abandon_with_message(format!("{} — FAILED", t.name));
                    return Ok(false);
                }
            } else {
                self.sleep(t.seconds / steps as f64);
                if fail && i + 2 == steps {
                    let error = "p99 latency 2.4 s exceeds the 500 ms SLO on green";
                    self.note(format!("[{}] FAILED: {error}", t.id));
                    let failed = self.tracker.fail_task(&t.id, error);
                    self.counted(failed)?;
                    bar.abandon_with_message(format!("{} — FAILED", t.name));
                    return Ok(false);
                }
            }
            let pct = ((i + 1) * 100 / steps) as f64;
            if pct < 100.0 {
                let message = format!("{} ({}/{})", t.name, i + 1, steps);
                self.note(format!("[{}] {pct:.0}% {message}", t.id));
                let progressed = self
                    .tracker
                    .update_task_progress(&t.id, pct, Some(&message));
                self.counted(progressed)?;
            }
            bar.set_position(pct as u64);
        }
        self.note(format!("[{}] completed", t.id));
        let mut metrics = serde_json::Map::new();
        metrics.insert("duration_s".into(), json!(t.seconds));
        let completed = self
            .tracker
            .complete_task(&t.id, Some("done"), Some(metrics));
        self.counted(completed)?;
        bar.finish_and_clear();
        Ok(true)
    }

    /// The artifacts a phase leaves behind: its log, plus a configuration snapshot, metrics or
    /// the test report depending on the phase.
    fn phase_artifacts(&mut self, phase: &Phase, failed: bool) -> anyhow::Result<()> {
        let task = phase
            .tasks
            .first()
            .map_or("", |t| t.id.as_str())
            .to_string();
        let log = std::mem::take(&mut self.log).join("\n") + "\n";
        let log_name = format!("{}.log", phase.slug);
        self.artifact(
            "logs",
            &log_name,
            ArtifactType::LogFile,
            &[phase.slug, "eks"],
            &task,
            &log,
        )?;
        match phase.slug {
            "initialization" => {
                let blue = json!({"cluster": "prod-eks-blue", "version": "1.29",
                    "node_groups": [{"name": "ng-general", "instance_type": "m6i.xlarge", "desired": 6},
                                    {"name": "ng-batch", "instance_type": "c6i.2xlarge", "desired": 3}],
                    "addons": {"vpc-cni": "v1.16.0", "coredns": "v1.10.1", "kube-proxy": "v1.29.0"}});
                self.artifact(
                    "config",
                    "blue-cluster.json",
                    ArtifactType::Configuration,
                    &["snapshot", "blue", "before"],
                    &task,
                    &serde_json::to_string_pretty(&blue)?,
                )?;
            }
            "planning" => {
                let plan = json!({"plan_id": "plan-eks-1.30", "from": "1.29", "to": "1.30",
                    "strategy": "blue/green", "traffic_steps": [10, 25, 50, 75, 100],
                    "deprecated_apis": [], "addons_to_upgrade": ["vpc-cni", "coredns", "kube-proxy"]});
                self.artifact(
                    "config",
                    "upgrade-plan.json",
                    ArtifactType::Configuration,
                    &["plan"],
                    &task,
                    &serde_json::to_string_pretty(&plan)?,
                )?;
            }
            "traffic-shift" => {
                let mut csv = String::from("traffic_pct,p50_ms,p99_ms,error_rate\n");
                for (i, pct) in [10, 25, 50, 75, 100].iter().enumerate() {
                    csv.push_str(&format!(
                        "{pct},{},{},{:.4}\n",
                        38 + i,
                        120 + 9 * i,
                        0.0004 * (i + 1) as f64
                    ));
                }
                self.artifact(
                    "reports",
                    "traffic-metrics.csv",
                    ArtifactType::MetricsData,
                    &["metrics", "green"],
                    &task,
                    &csv,
                )?;
            }
            "validation" => {
                let slo = if failed { "failed" } else { "passed" };
                let report = json!({"suite": "green-validation", "cluster": "prod-eks-green",
                    "summary": {"tests": 4, "passed": if failed { 3 } else { 4 }, "failed": usize::from(failed)},
                    "tests": [
                        {"name": "pods ready", "status": "passed", "seconds": 3.1},
                        {"name": "ingress 200s", "status": "passed", "seconds": 1.4},
                        {"name": "dns resolution", "status": "passed", "seconds": 0.6},
                        {"name": "p99 latency under 500 ms", "status": slo, "seconds": 30.0,
                         "detail": if failed { "p99 2.4 s" } else { "p99 212 ms" }}]});
                self.artifact(
                    "reports",
                    "test-report.json",
                    ArtifactType::TestResult,
                    &["tests", "green", slo],
                    &task,
                    &serde_json::to_string_pretty(&report)?,
                )?;
            }
            "cleanup" => {
                let green = json!({"cluster": "prod-eks-green", "version": "1.30",
                    "node_groups": [{"name": "ng-general", "instance_type": "m7i.xlarge", "desired": 6},
                                    {"name": "ng-batch", "instance_type": "c7i.2xlarge", "desired": 3}],
                    "addons": {"vpc-cni": "v1.18.1", "coredns": "v1.11.1", "kube-proxy": "v1.30.0"}});
                self.artifact(
                    "config",
                    "green-cluster.json",
                    ArtifactType::Configuration,
                    &["snapshot", "green", "after"],
                    &task,
                    &serde_json::to_string_pretty(&green)?,
                )?;
            }
            _ => {}
        }
        Ok(())
    }
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(BadInput(format!(
            "--speed must be a positive number, got {}",
            args.speed
        ))
        .into());
    }
    let phases = plan();
    if let Some(slug) = &args.fail_at
        && !phases.iter().any(|p| p.slug == slug)
    {
        let known: Vec<&str> = phases.iter().map(|p| p.slug).collect();
        return Err(BadInput(format!(
            "--fail-at: unknown phase {slug:?}; one of {}",
            known.join(", ")
        ))
        .into());
    }
    let mut builder = Logbook::builder(&cli.data)
        .journal_config(cli.journal_config()?)
        .serve(args.listen);
    if let Some(location) = &args.s3 {
        builder = builder.s3(location.clone());
    }
    if let Some(bus) = &args.eventbridge_bus {
        builder = builder.eventbridge(EventBridgeConfig::new(bus));
    }
    let logbook = builder.open().map_err(|error| match error {
        LogbookError::Serve(ServeError::Bind { .. }) => BadInput(format!(
            "{error}: is another demo or serve running? `--listen 127.0.0.1:0` picks a free port"
        ))
        .into(),
        error => super::serve::bad(error),
    })?;
    let addr = logbook
        .local_addr()
        .ok_or_else(|| anyhow::anyhow!("the dashboard server did not start"))?;
    let dir = cli.journal_dir();
    out!("dashboard: http://{addr}/");

    let outcome = simulate(cli, args, &logbook, &phases)?;
    let end_offset = logbook.journal().next_offset();

    let shipped = match &args.s3 {
        Some(_) => Some(
            logbook
                .ship_all(Duration::from_secs(120))
                .map_err(super::serve::bad)?,
        ),
        None => None,
    };
    let mut notified = None;
    if let Some(metrics) = logbook.eventbridge() {
        let sent = logbook.runtime().block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while metrics.committed.load(std::sync::atomic::Ordering::Relaxed) < end_offset
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            metrics.sent.load(std::sync::atomic::Ordering::Relaxed)
        });
        notified = Some(sent);
    }

    let report = verify_dir(
        &dir,
        logbook::journal::record::PAYLOAD_BYTES_MAX,
        &mut |_| {},
    )?;
    let data = cli.data.display();
    out!();
    match &outcome.failed {
        Some((phase, _)) => out!(
            "upgrade {} FAILED in {phase} and was rolled back",
            outcome.upgrade_id
        ),
        None => out!("upgrade {} completed", outcome.upgrade_id),
    }
    if let Some(view) = logbook.recorder().upgrade(&outcome.upgrade_id)? {
        let done = view
            .tasks
            .iter()
            .filter(|t| t.status == ProgressStatus::Completed)
            .count();
        out!(
            "status {}, {:.0}% overall, {done}/{} tasks completed, phase {}",
            view.status.as_str(),
            view.percentage,
            view.tasks.len(),
            view.phase
        );
    }
    out!(
        "recorded {} events at offsets {}..{} in {}",
        outcome.events,
        outcome.start_offset,
        end_offset.saturating_sub(1),
        dir.display()
    );
    out!(
        "artifacts: {} files in {}/artifacts/{}",
        outcome.artifacts,
        data,
        outcome.session_id
    );
    match &report.damage {
        None => out!("verify: ok ({} records, chain intact)", report.records),
        Some(d) => out!("verify: DAMAGED at offset {}: {}", d.offset, d.kind),
    }
    if let (Some(next), Some(location)) = (shipped, &args.s3) {
        out!("s3: offsets below {next} shipped to {location}, artifacts uploaded");
    }
    if let (Some(sent), Some(bus)) = (notified, &args.eventbridge_bus) {
        out!("eventbridge: {sent} lifecycle events sent to bus {bus}");
    }
    let upgrade = &outcome.upgrade_id;
    out!("\nnext:");
    out!("  cargo run --release -- --data {data} show upgrade {upgrade}");
    out!(
        "  cargo run --release -- --data {data} tail ws://{addr} --from 0    # while the dashboard runs"
    );
    out!("  cargo run --release -p logbook-replay -- timeline {data}");
    out!("  cargo run --release -p logbook-replay -- tasks {data}");
    out!("  cargo run --release -p logbook-replay -- verify {data}");
    if !args.exit {
        out!("\ndashboard: http://{addr}/ (Ctrl-C to stop)");
        logbook.run_until(super::serve::shutdown_signal())?;
    }
    logbook.close().map_err(super::serve::bad)?;
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What a simulated run did.
struct Outcome {
    upgrade_id: String,
    session_id: String,
    start_offset: u64,
    events: u64,
    artifacts: u64,
    /// The phase and task that failed, if one did.
    failed: Option<(&'static str, String)>,
}

/// Runs the plan through the typed tracker and the artifact store.
fn simulate(
    cli: &Cli,
    args: &Args,
    logbook: &Logbook,
    phases: &[Phase],
) -> anyhow::Result<Outcome> {
    let start_offset = logbook.journal().next_offset();
    let upgrade_id = format!("upgrade-{}", logbook::timestamp::now_us());
    let session_id = format!("session-{}", logbook::timestamp::now_us());
    let scratch = cli.data.join("demo-scratch");
    std::fs::create_dir_all(&scratch)?;
    let bars = MultiProgress::new();
    let overall = bars.add(ProgressBar::new(phases.len() as u64));
    overall.set_style(ProgressStyle::with_template(
        "{prefix:>18} [{bar:30.cyan/blue}] {pos}/{len} phases",
    )?);
    let mut run = Run {
        tracker: logbook.tracker(upgrade_id.clone()),
        store: logbook.artifacts(),
        scratch: scratch.clone(),
        upgrade_id: upgrade_id.clone(),
        session_id: session_id.clone(),
        speed: args.speed,
        bars,
        overall,
        events: 0,
        log: Vec::new(),
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("strategy".into(), json!("blue/green"));
    metadata.insert("from_version".into(), json!("1.29"));
    metadata.insert("to_version".into(), json!("1.30"));
    let started = run.tracker.start_upgrade(
        "plan-eks-1.30",
        "prod-eks",
        phases.first().map_or("", |p| p.name),
        Some(metadata),
    );
    run.counted(started)?;
    for phase in phases {
        for t in &phase.tasks {
            run.add(t, None)?;
        }
    }
    run.store
        .create_session(&session_id, &upgrade_id, "prod-eks")?;
    run.store
        .create_collection(&session_id, "logs", "Phase logs", None)?;
    run.store.create_collection(
        &session_id,
        "config",
        "Configuration snapshots",
        Some("plan"),
    )?;
    run.store.create_collection(
        &session_id,
        "reports",
        "Test reports and metrics",
        Some("validate"),
    )?;
    run.events += 4;
    let mut failed = None;
    let mut artifacts = 0;
    for (i, phase) in phases.iter().enumerate() {
        run.overall.set_prefix(phase.name);
        if i > 0 {
            let changed = run.tracker.change_phase(phase.name);
            run.counted(changed)?;
        }
        let fail = args.fail_at.as_deref() == Some(phase.slug);
        for t in &phase.tasks {
            if !run.run_task(t, fail)? {
                failed = Some((phase.name, t.id.clone()));
                break;
            }
        }
        let before = run.events;
        run.phase_artifacts(phase, failed.is_some())?;
        artifacts += run.events - before;
        if failed.is_some() {
            break;
        }
        run.overall.inc(1);
    }
    if let Some((phase, task_id)) = &failed {
        let rollback = task(
            "rollback",
            "Roll back: shift traffic to blue",
            TaskType::Rollback,
            3.0,
            vec![],
        );
        run.add(&rollback, None)?;
        run.run_task(&rollback, false)?;
        let log = std::mem::take(&mut run.log).join("\n") + "\n";
        run.artifact(
            "logs",
            "rollback.log",
            ArtifactType::Diagnostic,
            &["rollback", "failure"],
            "rollback",
            &log,
        )?;
        artifacts += 1;
        let error = format!("{phase} failed ({task_id}); rolled back to blue");
        let failed_upgrade = run.tracker.fail_upgrade(&error);
        run.counted(failed_upgrade)?;
        run.overall.abandon_with_message("failed");
    } else {
        let completed = run
            .tracker
            .complete_upgrade(Some("prod-eks now runs 1.30 on green"));
        run.counted(completed)?;
        run.overall.finish();
    }
    let _ = std::fs::remove_dir(&scratch);
    Ok(Outcome {
        upgrade_id,
        session_id,
        start_offset,
        events: run.events,
        artifacts,
        failed,
    })
}
