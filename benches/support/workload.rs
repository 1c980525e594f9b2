//! The benchmarks' shared workload: realistic typed events of one EKS upgrade (nested tasks,
//! interleaved progress reports, completions, then a session of tagged artifacts, most of them
//! uploaded; optionally a failed drain). Included with `#[path]` by benches/projection.rs,
//! benches/s3.rs and replay/benches/timeline.rs, so they measure the same journal shape.

#![allow(dead_code)]

use logbook::event::Event;
use serde_json::{Value, json};

/// The shape of one upgrade.
#[derive(Debug, Clone, Copy)]
pub struct UpgradeShape {
    /// Tasks (a root every 10, the others its children).
    pub tasks: usize,
    /// Rounds of progress over every task.
    pub progress: usize,
    /// Artifacts in its session.
    pub artifacts: usize,
    /// Whether every tenth upgrade (u % 10 == 3) fails halfway through its completions (then no
    /// session follows).
    pub failures: bool,
}

/// A typed event from its JSON.
pub fn ev(value: Value) -> Event {
    Event::parse(value.to_string().as_bytes()).unwrap()
}

/// The events of upgrade number `u`.
pub fn upgrade_events(u: usize, shape: &UpgradeShape) -> Vec<Event> {
    let tasks = shape.tasks;
    let progress = shape.progress;
    let uid = format!("upgrade-{u:04}");
    let mut out = vec![ev(json!({
        "type": "upgrade.started", "upgrade_id": uid, "plan_id": "plan-eks-1.30",
        "cluster_name": format!("prod-{u}"), "phase": "preparing",
        "metadata": {"region": "eu-west-1", "from": "1.29", "to": "1.30"}
    }))];
    let mut root = String::new();
    for t in 0..tasks {
        let tid = format!("task-{t:05}");
        let mut added = json!({"type": "task.added", "upgrade_id": uid, "task_id": tid,
            "name": format!("Drain and replace node group {t}"), "task_type": "upgrade_step"});
        if t % 10 == 0 {
            root = tid;
        } else {
            added["parent_id"] = json!(root);
        }
        out.push(ev(added));
    }
    for t in 0..tasks {
        out.push(ev(json!({"type": "task.started", "upgrade_id": uid,
            "task_id": format!("task-{t:05}")})));
    }
    for p in 0..progress {
        let pct = ((p + 1) * 100 / (progress + 1)) as f64;
        for t in 0..tasks {
            let mut e = json!({"type": "task.progress", "upgrade_id": uid,
                "task_id": format!("task-{t:05}"), "percentage": pct});
            if p % 10 == 0 {
                e["message"] = json!(format!("{} of 40 nodes drained", p * 40 / progress.max(1)));
                e["details"] = json!({"pods_evicted": p * 7, "node": format!("ip-10-0-{t}-{p}")});
            }
            out.push(ev(e));
        }
    }
    for t in 0..tasks {
        if shape.failures && u % 10 == 3 && t == tasks / 2 {
            out.push(ev(json!({"type": "task.failed", "upgrade_id": uid,
                "task_id": format!("task-{t:05}"), "error": "PodDisruptionBudget blocks drain"})));
            out.push(ev(json!({"type": "upgrade.failed", "upgrade_id": uid,
                "error": "drain failed"})));
            return out;
        }
        out.push(ev(json!({"type": "task.completed", "upgrade_id": uid,
            "task_id": format!("task-{t:05}"), "metrics": {"seconds": t}})));
    }
    let sid = format!("session-{u:04}");
    out.push(ev(
        json!({"type": "session.created", "session_id": sid, "upgrade_id": uid,
        "cluster_name": format!("prod-{u}")}),
    ));
    out.push(ev(json!({"type": "collection.created", "session_id": sid,
        "collection_id": "logs", "name": "Node logs"})));
    for a in 0..shape.artifacts {
        let aid = format!("artifact-{u:04}-{a:04}");
        out.push(ev(
            json!({"type": "artifact.added", "session_id": sid, "collection_id": "logs",
            "artifact_id": aid, "file_name": format!("kubelet-{a}.log"),
            "artifact_type": "log_file", "sha256": format!("{:064x}", u * 100_000 + a),
            "size_bytes": 1000 + a * 37, "tags": ["kubelet", "drain", format!("node-{a}")],
            "description": "kubelet journal captured during the drain"}),
        ));
        if a % 4 != 3 {
            out.push(ev(json!({"type": "artifact.uploaded", "artifact_id": aid,
                "s3_key": format!("{sid}/logs/kubelet-{a}.log"), "etag": "\"0123abcd\""})));
        }
    }
    out.push(ev(json!({"type": "upgrade.completed", "upgrade_id": uid})));
    out
}
