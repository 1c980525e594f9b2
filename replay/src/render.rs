//! Human-readable pieces shared by the commands: relative times, durations, one-line
//! descriptions of events. Plain text, no colour codes (output is often piped or diffed);
//! failures are marked with a leading `!!` by the callers.

use logbook::event::Event;

/// A time relative to a base, `+H:MM:SS.mmm` (hours unbounded; negative as `-`).
pub fn rel(delta_us: i64) -> String {
    let sign = if delta_us < 0 { '-' } else { '+' };
    let us = delta_us.unsigned_abs();
    let ms = us / 1000;
    format!(
        "{sign}{}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A duration: `0.123s`, `5m03.456s`, `2h05m03s`.
pub fn duration(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let us = us.unsigned_abs();
    let ms = us / 1000;
    if ms < 60_000 {
        format!("{sign}{}.{:03}s", ms / 1000, ms % 1000)
    } else if ms < 3_600_000 {
        format!(
            "{sign}{}m{:02}.{:03}s",
            ms / 60_000,
            ms / 1000 % 60,
            ms % 1000
        )
    } else {
        format!(
            "{sign}{}h{:02}m{:02}s",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60
        )
    }
}

/// Whether the event reports a failure (highlighted everywhere).
pub fn is_failure(event: &Event) -> bool {
    matches!(
        event,
        Event::UpgradeFailed(_) | Event::TaskFailed(_) | Event::ArtifactUploadFailed(_)
    )
}

fn with_message(text: String, message: &Option<String>) -> String {
    match message {
        Some(m) => format!("{text}: {m}"),
        None => text,
    }
}

/// `text` on one line: line breaks shown as `\n`, so every output line is one entry.
pub fn one_line(text: &str) -> String {
    text.replace('\r', "\\r").replace('\n', "\\n")
}

/// One line describing `event` (without its time or offset). `task_name` names the task of a
/// `task.*` event when the caller knows it.
pub fn describe(event: &Event, task_name: Option<&str>) -> String {
    one_line(&describe_raw(event, task_name))
}

fn describe_raw(event: &Event, task_name: Option<&str>) -> String {
    let task = |id: &str| match task_name {
        Some(name) => format!("task {id} \"{name}\""),
        None => format!("task {id}"),
    };
    match event {
        Event::UpgradeStarted(e) => format!(
            "upgrade {} started: plan {}, cluster {}, phase {}",
            e.upgrade_id, e.plan_id, e.cluster_name, e.phase
        ),
        Event::UpgradePhaseChanged(e) => format!("upgrade {} phase → {}", e.upgrade_id, e.phase),
        Event::UpgradeCompleted(e) => {
            with_message(format!("upgrade {} completed", e.upgrade_id), &e.message)
        }
        Event::UpgradeFailed(e) => format!("upgrade {} FAILED: {}", e.upgrade_id, e.error),
        Event::TaskAdded(e) => {
            let parent = e
                .parent_id
                .as_deref()
                .map(|p| format!(", under {p}"))
                .unwrap_or_default();
            format!(
                "{} task {} added \"{}\" ({}{parent})",
                e.upgrade_id,
                e.task_id,
                e.name,
                e.task_type.as_str()
            )
        }
        Event::TaskStarted(e) => with_message(
            format!("{} {} started", e.upgrade_id, task(&e.task_id)),
            &e.message,
        ),
        Event::TaskPaused(e) => with_message(
            format!("{} {} paused", e.upgrade_id, task(&e.task_id)),
            &e.message,
        ),
        Event::TaskResumed(e) => with_message(
            format!("{} {} resumed", e.upgrade_id, task(&e.task_id)),
            &e.message,
        ),
        Event::TaskCancelled(e) => with_message(
            format!("{} {} cancelled", e.upgrade_id, task(&e.task_id)),
            &e.message,
        ),
        Event::TaskProgress(e) => with_message(
            format!("{} {} {:.1}%", e.upgrade_id, task(&e.task_id), e.percentage),
            &e.message,
        ),
        Event::TaskCompleted(e) => with_message(
            format!("{} {} completed", e.upgrade_id, task(&e.task_id)),
            &e.message,
        ),
        Event::TaskFailed(e) => {
            format!("{} {} FAILED: {}", e.upgrade_id, task(&e.task_id), e.error)
        }
        Event::SessionCreated(e) => format!(
            "session {} created for upgrade {} ({})",
            e.session_id, e.upgrade_id, e.cluster_name
        ),
        Event::CollectionCreated(e) => format!(
            "collection {}/{} \"{}\" created",
            e.session_id, e.collection_id, e.name
        ),
        Event::ArtifactAdded(e) => format!(
            "artifact {} added: {} ({}, {} bytes) in {}/{}",
            e.artifact_id,
            e.file_name,
            e.artifact_type.as_str(),
            e.size_bytes,
            e.session_id,
            e.collection_id
        ),
        Event::ArtifactUploaded(e) => {
            format!("artifact {} uploaded to {}", e.artifact_id, e.s3_key)
        }
        Event::ArtifactUploadFailed(e) => {
            format!("artifact {} upload FAILED: {}", e.artifact_id, e.error)
        }
        Event::ArtifactArchived(e) => format!("artifact {} archived", e.artifact_id),
        Event::ArtifactDeleted(e) => {
            format!("artifact {} deleted ({})", e.artifact_id, e.reason.as_str())
        }
        Event::JournalRepaired(_) | Event::SubscriberSkipped(_) => {
            format!("{} (system event)", event.kind())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::rel(0), "+0:00:00.000");
        assert_eq!(super::rel(3_723_456_000), "+1:02:03.456");
        assert_eq!(super::duration(1_234_000), "1.234s");
        assert_eq!(super::duration(303_456_000), "5m03.456s");
        assert_eq!(super::duration(7_503_000_000), "2h05m03s");
    }
}
