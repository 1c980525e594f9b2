//! `state --at OFFSET|TIME`: the views as of a point, folded with the library's own fold
//! (`logbook::state::State::apply`), so they are exactly `logbook::state::state_at` and
//! `logbook show upgrade ID --at N --json`: an offset includes that record, a time every record
//! at or before it, records that are not readable events change nothing.
//!
//! Output: every upgrade's view in id order (or the one named by `--upgrade`); with `--json`
//! one `UpgradeView` object per line, serialized as `logbook show --json` does.

use std::collections::BTreeSet;
use std::io::Write;

use logbook::event::Event;
use logbook::state::{State, UpgradeView};
use logbook::timestamp::format_us;

use crate::decode::{Decoded, decode};
use crate::error::{ReplayError, Result};
use crate::point::{Point, Range};
use crate::scan::{Flow, Scanner};
use crate::source::Source;

/// A fold and where it stopped.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    /// The state.
    pub state: State,
    /// Offset and time of the last record applied.
    pub last: Option<(u64, i64)>,
    /// Sessions created (the state offers no list of them).
    pub sessions: BTreeSet<String>,
    /// Records that were not readable events.
    pub unreadable: u64,
}

impl Folded {
    /// Applies one record.
    pub fn apply(&mut self, record: &Decoded) {
        self.last = Some((record.offset, record.ts_us));
        match &record.event {
            Ok(event) => {
                if let Event::SessionCreated(e) = event {
                    self.sessions.insert(e.session_id.clone());
                }
                self.state.apply(record.offset, record.ts_us, event);
            }
            Err(_) => self.unreadable += 1,
        }
    }

    /// "as of offset N (time)", or "before the first record".
    pub fn describe(&self) -> String {
        match self.last {
            Some((offset, ts)) => format!("offset {offset} ({})", format_us(ts)),
            None => "before the first record".into(),
        }
    }
}

/// Folds `source` up to `at` (inclusive; the end when `None`).
pub fn fold(source: &Source, scanner: &Scanner, at: Option<Point>) -> Result<Folded> {
    let range = Range {
        from: None,
        until: at,
    };
    range.check("--at", "--at", source.end())?;
    let mut folded = Folded::default();
    scanner.scan(source, &range, &decode, &mut |record| {
        folded.apply(&record);
        Ok(Flow::Continue)
    })?;
    Ok(folded)
}

/// Writes the views (see the module docs). `upgrade` selects one; unknown is bad input.
pub fn write_state(
    out: &mut dyn Write,
    folded: &mut Folded,
    upgrade: Option<&str>,
    json: bool,
) -> Result<()> {
    let ids: Vec<String> = match upgrade {
        Some(id) => vec![id.to_string()],
        None => folded.state.upgrade_ids().map(str::to_string).collect(),
    };
    if !json {
        writeln!(out, "state as of {}", folded.describe())?;
        if ids.is_empty() {
            writeln!(out, "  (no upgrades)")?;
        }
    }
    for id in ids {
        let view = folded.state.upgrade_view(&id).ok_or_else(|| {
            ReplayError::BadInput(format!(
                "unknown upgrade {id:?} as of {}",
                folded.describe()
            ))
        })?;
        if json {
            let line = serde_json::to_string(&view)
                .map_err(|e| ReplayError::Worker(format!("serializing a view: {e}")))?;
            writeln!(out, "{line}")?;
        } else {
            write_upgrade(out, &view)?;
        }
    }
    Ok(())
}

/// The human form of one upgrade view: a header, then the task tree depth-first.
pub fn write_upgrade(out: &mut dyn Write, view: &UpgradeView) -> Result<()> {
    writeln!(
        out,
        "upgrade {} ({}, plan {}): {}, phase {}, {:.1}% overall, started {}{}",
        view.upgrade_id,
        view.cluster_name,
        view.plan_id,
        view.status.as_str(),
        view.phase,
        view.percentage,
        format_us(view.started_at_us),
        view.completed_at_us
            .map(|t| format!(", ended {}", format_us(t)))
            .unwrap_or_default()
    )?;
    if let Some(error) = &view.error {
        writeln!(out, "!! error: {}", crate::render::one_line(error))?;
    }
    // Parents come before their children; an explicit stack bounds the walk by the task count.
    let mut stack: Vec<(usize, usize)> = view
        .tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.parent_id.is_none())
        .map(|(i, _)| (i, 0))
        .rev()
        .collect();
    let mut children_of: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, task) in view.tasks.iter().enumerate() {
        if let Some(parent) = task.parent_id.as_deref() {
            children_of.entry(parent).or_default().push(i);
        }
    }
    let mut budget = view.tasks.len();
    while let Some((i, depth)) = stack.pop() {
        let Some(task) = view.tasks.get(i) else {
            continue;
        };
        if budget == 0 {
            break;
        }
        budget -= 1;
        let mark = if task.status == logbook::event::ProgressStatus::Failed {
            "!!"
        } else {
            "  "
        };
        writeln!(
            out,
            "{mark} {}{} \"{}\" {} {:.1}%{}",
            "  ".repeat(depth),
            task.task_id,
            task.name,
            task.status.as_str(),
            task.effective_percentage,
            task.error
                .as_deref()
                .map(|e| format!(": {}", crate::render::one_line(e)))
                .unwrap_or_default()
        )?;
        let children = children_of
            .get(task.task_id.as_str())
            .map(|c| c.iter().map(|c| (*c, depth + 1)).collect::<Vec<_>>())
            .unwrap_or_default();
        stack.extend(children.into_iter().rev());
    }
    Ok(())
}
