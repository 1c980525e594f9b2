//! `diff --from A --to B`: what changed between the views as of two points (both inclusive, as
//! `state --at`): upgrades added, their status, phase, overall percentage and error; tasks
//! added, their status, effective percentage and error; sessions added; artifacts added and
//! their status (uploaded, archived, failed, deleted).
//!
//! One scan: the state is folded up to A, copied, folded on to B, and the two are compared.
//! Without `--from` the diff starts before the first record (everything is "added"). A before B
//! is required (an A after B is bad input). Output: one line per change, in a stable order
//! (upgrades by id with their tasks in added order, then sessions, then artifacts by id);
//! `--json`: one object per change, `{"entity","id","upgrade_id"?,"field","from","to"}`
//! (`field` is `added` for new things, with `to` their summary).

use std::io::Write;

use serde_json::{Value, json};

use crate::asof::Folded;
use crate::decode::decode;
use crate::error::{ReplayError, Result};
use crate::point::{Point, Range};
use crate::scan::{Flow, Scanner};
use crate::source::Source;

/// One change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `upgrade`, `task`, `session` or `artifact`.
    pub entity: &'static str,
    /// Its id.
    pub id: String,
    /// The upgrade of a task.
    pub upgrade_id: Option<String>,
    /// What changed (`added`, `status`, `phase`, `percentage`, `error`).
    pub field: &'static str,
    /// Before.
    pub from: Value,
    /// After.
    pub to: Value,
}

/// The states at both points.
#[derive(Debug)]
pub struct Diff {
    /// As of A.
    pub a: Folded,
    /// As of B.
    pub b: Folded,
}

/// Folds to `from` and `to` in one scan.
pub fn diff(
    source: &Source,
    scanner: &Scanner,
    from: Option<Point>,
    to: Option<Point>,
) -> Result<Diff> {
    let end = source.end();
    if let Some(p) = &from {
        p.check("--from", end)?;
    }
    if let Some(p) = &to {
        p.check("--to", end)?;
    }
    let mut folded = Folded::default();
    let mut a: Option<Folded> = match from {
        None => Some(Folded::default()),
        Some(_) => None,
    };
    let mut wrong_order = false;
    let range = Range {
        from: None,
        until: to,
    };
    scanner.scan(source, &range, &decode, &mut |record| {
        if a.is_none() && from.is_some_and(|p| p.is_before(record.offset, record.ts_us)) {
            a = Some(folded.clone());
        }
        folded.apply(&record);
        Ok(Flow::Continue)
    })?;
    // The scan ended at B. If A was not passed, A is at or after B's cut: the same point is
    // fine (an empty diff), a later one is refused.
    let a = match a {
        Some(a) => a,
        None => {
            if let (Some(fp), Some(tp)) = (from, to) {
                wrong_order = match (fp, tp) {
                    (Point::Offset(x), Point::Offset(y)) => x > y,
                    (Point::Time(x), Point::Time(y)) => x > y,
                    (Point::Offset(x), _) => folded.last.is_none_or(|(o, _)| x > o),
                    (Point::Time(x), _) => folded.last.is_none_or(|(_, t)| x > t),
                };
            }
            folded.clone()
        }
    };
    if wrong_order {
        return Err(ReplayError::BadInput(format!(
            "--from {} is after --to {}",
            from.map(|p| p.describe()).unwrap_or_default(),
            to.map(|p| p.describe()).unwrap_or_default()
        )));
    }
    Ok(Diff { a, b: folded })
}

fn pct(p: f64) -> Value {
    json!((p * 10.0).round() / 10.0)
}

impl Diff {
    /// The changes from A to B (see the module docs for the order).
    pub fn changes(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        let ids: Vec<String> = self.b.state.upgrade_ids().map(str::to_string).collect();
        for id in ids {
            let Some(new) = self.b.state.upgrade_view(&id) else {
                continue;
            };
            let old = self.a.state.upgrade_view(&id);
            let change = |field, from: Value, to: Value| Change {
                entity: "upgrade",
                id: id.clone(),
                upgrade_id: None,
                field,
                from,
                to,
            };
            match &old {
                None => out.push(change(
                    "added",
                    Value::Null,
                    json!({"status": new.status, "phase": new.phase,
                           "percentage": pct(new.percentage), "cluster_name": new.cluster_name}),
                )),
                Some(old) => {
                    if old.status != new.status {
                        out.push(change("status", json!(old.status), json!(new.status)));
                    }
                    if old.phase != new.phase {
                        out.push(change("phase", json!(old.phase), json!(new.phase)));
                    }
                    if pct(old.percentage) != pct(new.percentage) {
                        out.push(change(
                            "percentage",
                            pct(old.percentage),
                            pct(new.percentage),
                        ));
                    }
                    if old.error != new.error {
                        out.push(change("error", json!(old.error), json!(new.error)));
                    }
                }
            }
            let old_tasks: std::collections::HashMap<&str, &logbook::state::TaskView> = old
                .as_ref()
                .map(|o| o.tasks.iter().map(|t| (t.task_id.as_str(), &**t)).collect())
                .unwrap_or_default();
            for task in &new.tasks {
                let change = |field, from: Value, to: Value| Change {
                    entity: "task",
                    id: task.task_id.clone(),
                    upgrade_id: Some(id.clone()),
                    field,
                    from,
                    to,
                };
                match old_tasks.get(task.task_id.as_str()) {
                    None => out.push(change(
                        "added",
                        Value::Null,
                        json!({"name": task.name, "status": task.status,
                               "percentage": pct(task.effective_percentage),
                               "parent_id": task.parent_id}),
                    )),
                    Some(old) => {
                        if old.status != task.status {
                            out.push(change("status", json!(old.status), json!(task.status)));
                        }
                        if pct(old.effective_percentage) != pct(task.effective_percentage) {
                            out.push(change(
                                "percentage",
                                pct(old.effective_percentage),
                                pct(task.effective_percentage),
                            ));
                        }
                        if old.error != task.error {
                            out.push(change("error", json!(old.error), json!(task.error)));
                        }
                    }
                }
            }
        }
        for session in self.b.sessions.difference(&self.a.sessions) {
            let to = self
                .b
                .state
                .session_view(session)
                .map(|s| json!({"upgrade_id": s.upgrade_id, "cluster_name": s.cluster_name}))
                .unwrap_or(Value::Null);
            out.push(Change {
                entity: "session",
                id: session.clone(),
                upgrade_id: None,
                field: "added",
                from: Value::Null,
                to,
            });
        }
        for artifact in self.b.state.artifacts() {
            let change = |field, from: Value, to: Value| Change {
                entity: "artifact",
                id: artifact.artifact_id.clone(),
                upgrade_id: None,
                field,
                from,
                to,
            };
            match self.a.state.artifact(&artifact.artifact_id) {
                None => out.push(change(
                    "added",
                    Value::Null,
                    json!({"file_name": artifact.file_name, "artifact_type": artifact.artifact_type,
                           "status": artifact.status, "size_bytes": artifact.size_bytes,
                           "session_id": artifact.session_id}),
                )),
                Some(old) if old.status != artifact.status => {
                    out.push(change("status", json!(old.status), json!(artifact.status)))
                }
                Some(_) => {}
            }
        }
        out
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k} {}", show(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// Writes the diff.
pub fn write_diff(out: &mut dyn Write, diff: &mut Diff, json: bool) -> Result<()> {
    let changes = diff.changes();
    if !json {
        writeln!(
            out,
            "diff from {} to {}: {} change(s)",
            diff.a.describe(),
            diff.b.describe(),
            changes.len()
        )?;
    }
    for c in &changes {
        if json {
            let mut line = json!({"entity": c.entity, "id": c.id});
            if let (Some(u), Some(map)) = (&c.upgrade_id, line.as_object_mut()) {
                map.insert("upgrade_id".into(), json!(u));
            }
            if let Some(map) = line.as_object_mut() {
                map.insert("field".into(), json!(c.field));
                map.insert("from".into(), c.from.clone());
                map.insert("to".into(), c.to.clone());
            }
            writeln!(out, "{line}")?;
        } else {
            let who = match &c.upgrade_id {
                Some(u) => format!("{} {u}/{}", c.entity, c.id),
                None => format!("{} {}", c.entity, c.id),
            };
            let failed = c.to == json!("failed");
            let mark = if failed { "!!" } else { "  " };
            match c.field {
                "added" => writeln!(out, "{mark} {who}: added ({})", show(&c.to))?,
                field => writeln!(
                    out,
                    "{mark} {who}: {field} {} → {}",
                    show(&c.from),
                    show(&c.to)
                )?,
            }
        }
    }
    Ok(())
}
