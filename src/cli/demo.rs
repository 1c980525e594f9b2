//! `logbook demo`: the main job. Simulates an EKS blue/green upgrade (phases, tasks with
//! subtasks, progress updates, an optional failure with rollback) and records every change in
//! the journal, showing progress bars; then verifies the journal and prints what to try next.
//! Events follow the event contract of DESIGN.md §3.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use logbook::event::ProgressStatus;
use logbook::journal::verify_dir;
use logbook::recorder::{Recorder, parse_event};
use serde_json::{Value, json};

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
    /// Exit when the run is done (the default until the dashboard server exists).
    #[arg(long)]
    exit: bool,
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
    task_type: &'static str,
    seconds: f64,
    subtasks: Vec<Task>,
}

fn task(id: &str, name: &str, task_type: &'static str, seconds: f64, subtasks: Vec<Task>) -> Task {
    Task {
        id: id.into(),
        name: name.into(),
        task_type,
        seconds,
        subtasks,
    }
}

fn plan() -> Vec<Phase> {
    let step = "upgrade_step";
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
                        "validation",
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
                "upgrade_plan",
                2.5,
                vec![
                    task(
                        "plan-addons",
                        "Check add-on compatibility",
                        "validation",
                        1.2,
                        vec![],
                    ),
                    task(
                        "plan-apis",
                        "Scan for deprecated APIs",
                        "validation",
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
                "validation",
                5.0,
                vec![
                    task("validate-smoke", "Smoke tests", "validation", 2.0, vec![]),
                    task("validate-slo", "SLO checks", "validation", 3.0, vec![]),
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
                "cleanup",
                2.0,
                vec![],
            )],
        },
    ]
}

struct Run<'a> {
    recorder: &'a Recorder,
    upgrade_id: String,
    speed: f64,
    bars: MultiProgress,
    overall: ProgressBar,
    events: u64,
}

impl Run<'_> {
    fn record(&mut self, mut event: Value) -> anyhow::Result<()> {
        if let Some(map) = event.as_object_mut() {
            // Right after "type", as in DESIGN.md's examples.
            map.shift_insert(
                1,
                "upgrade_id".into(),
                Value::String(self.upgrade_id.clone()),
            );
        }
        // Through the recorder: every demo event is validated like any producer's.
        let event = parse_event(event.to_string().as_bytes())?;
        self.recorder.record(&event)?;
        self.events += 1;
        Ok(())
    }

    fn sleep(&self, seconds: f64) {
        std::thread::sleep(Duration::from_secs_f64(seconds / self.speed));
    }

    fn add(&mut self, t: &Task, parent: Option<&str>) -> anyhow::Result<()> {
        let mut event = json!({"type": "task.added", "task_id": t.id, "name": t.name, "task_type": t.task_type});
        if let (Some(parent), Some(map)) = (parent, event.as_object_mut()) {
            map.insert("parent_id".into(), Value::String(parent.into()));
        }
        self.record(event)?;
        for sub in &t.subtasks {
            self.add(sub, Some(&t.id))?;
        }
        Ok(())
    }

    /// Runs a task (subtasks first, in order); returns false if it failed.
    fn run_task(&mut self, t: &Task, fail: bool) -> anyhow::Result<bool> {
        self.record(json!({"type": "task.started", "task_id": t.id}))?;
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
                    self.record(json!({"type": "task.failed", "task_id": t.id,
                        "error": format!("subtask {} failed", sub.id)}))?;
                    bar.abandon_with_message(format!("{} — FAILED", t.name));
                    return Ok(false);
                }
            } else {
                self.sleep(t.seconds / steps as f64);
                if fail && i + 2 == steps {
                    self.record(json!({"type": "task.failed", "task_id": t.id,
                        "error": "p99 latency 2.4 s exceeds the 500 ms SLO on green"}))?;
                    bar.abandon_with_message(format!("{} — FAILED", t.name));
                    return Ok(false);
                }
            }
            let pct = ((i + 1) * 100 / steps) as f64;
            if pct < 100.0 {
                self.record(
                    json!({"type": "task.progress", "task_id": t.id, "percentage": pct,
                    "message": format!("{} ({}/{})", t.name, i + 1, steps)}),
                )?;
            }
            bar.set_position(pct as u64);
        }
        self.record(
            json!({"type": "task.completed", "task_id": t.id, "message": "done",
            "metrics": {"duration_s": t.seconds}}),
        )?;
        bar.finish_and_clear();
        Ok(true)
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
    let dir = cli.journal_dir();
    let recorder = Recorder::open(&dir, cli.journal_config()?)?;
    let start_offset = recorder.journal().next_offset();
    let upgrade_id = format!("upgrade-{}", logbook::timestamp::now_us());
    let bars = MultiProgress::new();
    let overall = bars.add(ProgressBar::new(phases.len() as u64));
    overall.set_style(ProgressStyle::with_template(
        "{prefix:>18} [{bar:30.cyan/blue}] {pos}/{len} phases",
    )?);
    let mut run = Run {
        recorder: &recorder,
        upgrade_id: upgrade_id.clone(),
        speed: args.speed,
        bars,
        overall,
        events: 0,
    };
    run.record(
        json!({"type": "upgrade.started", "plan_id": "plan-eks-1.30", "cluster_name": "prod-eks",
        "phase": phases.first().map_or("", |p| p.name),
        "metadata": {"strategy": "blue/green", "from_version": "1.29", "to_version": "1.30"}}),
    )?;
    for phase in &phases {
        for t in &phase.tasks {
            run.add(t, None)?;
        }
    }
    let mut failed = None;
    for (i, phase) in phases.iter().enumerate() {
        run.overall.set_prefix(phase.name);
        if i > 0 {
            run.record(json!({"type": "upgrade.phase_changed", "phase": phase.name}))?;
        }
        let fail = args.fail_at.as_deref() == Some(phase.slug);
        for t in &phase.tasks {
            if !run.run_task(t, fail)? {
                failed = Some((phase.name, t.id.clone()));
                break;
            }
        }
        if failed.is_some() {
            break;
        }
        run.overall.inc(1);
    }
    if let Some((phase, task_id)) = &failed {
        let rollback = task(
            "rollback",
            "Roll back: shift traffic to blue",
            "rollback",
            3.0,
            vec![],
        );
        run.add(&rollback, None)?;
        run.run_task(&rollback, false)?;
        run.record(json!({"type": "upgrade.failed", "error": format!("{phase} failed ({task_id}); rolled back to blue")}))?;
        run.overall.abandon_with_message("failed");
    } else {
        run.record(
            json!({"type": "upgrade.completed", "message": "prod-eks now runs 1.30 on green"}),
        )?;
        run.overall.finish();
    }
    let events = run.events;
    let end_offset = recorder.journal().next_offset();
    let view = recorder.upgrade(&upgrade_id);
    super::sync_projection(cli, recorder.journal())?;
    recorder.close()?;
    let report = verify_dir(
        &dir,
        logbook::journal::record::PAYLOAD_BYTES_MAX,
        &mut |_| {},
    )?;
    let data = cli.data.display();
    println!();
    match &failed {
        Some((phase, _)) => println!("upgrade {upgrade_id} FAILED in {phase} and was rolled back"),
        None => println!("upgrade {upgrade_id} completed"),
    }
    if let Some(view) = view {
        let done = view
            .tasks
            .iter()
            .filter(|t| t.status == ProgressStatus::Completed)
            .count();
        println!(
            "status {}, {:.0}% overall, {done}/{} tasks completed, phase {}",
            view.status.as_str(),
            view.percentage,
            view.tasks.len(),
            view.phase
        );
    }
    println!(
        "recorded {events} events at offsets {start_offset}..{} in {}",
        end_offset.saturating_sub(1),
        dir.display()
    );
    match &report.damage {
        None => println!("verify: ok ({} records, chain intact)", report.records),
        Some(d) => println!("verify: DAMAGED at offset {}: {}", d.offset, d.kind),
    }
    println!("\nnext:");
    println!(
        "  cargo run --release -- --data {data} events --from {start_offset} --types 'upgrade.*,task.failed'"
    );
    println!("  cargo run --release -- --data {data} verify");
    println!("  cargo run --release -p logbook-replay -- verify {data}");
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
