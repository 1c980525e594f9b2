//! `timeline`: what happened, in order, with times relative to the first event of the range:
//! upgrades (start, phases, end), tasks (added, started, paused, resumed, ended with their
//! duration), the artifact store's events, and failures marked `!!`. `task.progress` lines are
//! left out unless asked for (`--progress`): they are most of a journal and say little one by
//! one (`tasks` and `state` summarise them).
//!
//! Streaming: one pass, output written as records arrive; memory holds only the task names and
//! start times seen (O(tasks), independent of the number of events). `--json` writes one
//! object per line: `{"offset","ts","t_rel_us","type","upgrade_id"?,"task_id"?,"failure",
//! "text","event"}` (`event` is the typed payload; `type` is `null` for a record that is not a
//! readable event, with the reason in `text`).

use std::collections::HashMap;
use std::io::Write;

use logbook::event::Event;
use logbook::timestamp::format_us;
use serde_json::json;

use logbook::journal::Record;

use crate::decode::{Decoded, decode};
use crate::error::Result;
use crate::render::{describe, duration, is_failure, rel};

/// Options of `timeline`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimelineOptions {
    /// Include `task.progress` events.
    pub progress: bool,
    /// One JSON object per line.
    pub json: bool,
}

/// What the scanner's workers hand the timeline: a record to show, or only the time of one it
/// leaves out (so the events a timeline skips are parsed and freed on the workers, not on the
/// thread that writes).
#[derive(Debug)]
pub enum Item {
    /// A record the timeline leaves out (`task.progress` without `--progress`).
    Hidden {
        /// Its time (the first record of a range sets the base of relative times).
        ts_us: i64,
    },
    /// A record to show.
    Shown(Box<Decoded>),
}

/// The scanner's `map` for a timeline with `options`.
pub fn prepare(options: TimelineOptions) -> impl Fn(Record) -> Item + Sync {
    move |record| {
        let decoded = decode(record);
        match &decoded.event {
            Ok(Event::TaskProgress(_)) if !options.progress => Item::Hidden {
                ts_us: decoded.ts_us,
            },
            _ => Item::Shown(Box::new(decoded)),
        }
    }
}

/// The streaming timeline writer.
#[derive(Debug)]
pub struct Timeline<W: Write> {
    out: W,
    options: TimelineOptions,
    base_us: Option<i64>,
    /// (upgrade, task) → (name, first start).
    tasks: HashMap<(String, String), (String, Option<i64>)>,
    lines: u64,
}

impl<W: Write> Timeline<W> {
    /// A timeline writing to `out`.
    pub fn new(out: W, options: TimelineOptions) -> Timeline<W> {
        Timeline {
            out,
            options,
            base_us: None,
            tasks: HashMap::new(),
            lines: 0,
        }
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// Adds one item prepared by [`prepare`] (the same options).
    pub fn push_item(&mut self, item: &Item) -> Result<()> {
        match item {
            Item::Hidden { ts_us } => {
                self.base_us.get_or_insert(*ts_us);
                Ok(())
            }
            Item::Shown(record) => self.push(record),
        }
    }

    /// Adds one record.
    pub fn push(&mut self, record: &Decoded) -> Result<()> {
        let base = *self.base_us.get_or_insert(record.ts_us);
        let t_rel = record.ts_us - base;
        let event = match &record.event {
            Ok(event) => event,
            Err(reason) => {
                let text = format!("not a readable event: {reason}");
                return self.write(record, t_rel, None, &text, false);
            }
        };
        let key = |u: &str, t: &str| (u.to_string(), t.to_string());
        let mut suffix = String::new();
        match event {
            Event::TaskProgress(_) if !self.options.progress => return Ok(()),
            Event::TaskAdded(e) => {
                self.tasks
                    .insert(key(&e.upgrade_id, &e.task_id), (e.name.clone(), None));
            }
            Event::TaskStarted(e) | Event::TaskResumed(e) => {
                if let Some((_, start)) = self.tasks.get_mut(&key(&e.upgrade_id, &e.task_id)) {
                    start.get_or_insert(record.ts_us);
                }
            }
            Event::TaskCompleted(_) | Event::TaskFailed(_) | Event::TaskCancelled(_) => {
                let (u, t) = (event.upgrade_id(), event.task_id());
                if let (Some(u), Some(t)) = (u, t)
                    && let Some((_, Some(start))) = self.tasks.get(&key(u, t))
                {
                    suffix = format!(" (after {})", duration(record.ts_us - start));
                }
            }
            _ => {}
        }
        let name = match (event, event.upgrade_id(), event.task_id()) {
            (Event::TaskAdded(_), _, _) => None,
            (_, Some(u), Some(t)) if event.kind().starts_with("task.") => {
                self.tasks.get(&key(u, t)).map(|(name, _)| name.as_str())
            }
            _ => None,
        };
        let text = describe(event, name) + &suffix;
        self.write(record, t_rel, Some(event), &text, is_failure(event))
    }

    fn write(
        &mut self,
        record: &Decoded,
        t_rel: i64,
        event: Option<&Event>,
        text: &str,
        failure: bool,
    ) -> Result<()> {
        self.lines += 1;
        if self.options.json {
            let line = json!({
                "offset": record.offset,
                "ts": format_us(record.ts_us),
                "t_rel_us": t_rel,
                "type": event.map(Event::kind),
                "upgrade_id": event.and_then(Event::upgrade_id),
                "task_id": event.and_then(Event::task_id),
                "failure": failure,
                "text": text,
                "event": event,
            });
            writeln!(self.out, "{line}")?;
        } else {
            let mark = if failure { "!!" } else { "  " };
            writeln!(
                self.out,
                "{mark} {:>14}  #{:<8} {text}",
                rel(t_rel),
                record.offset
            )?;
        }
        Ok(())
    }
}
