"""Event and status callbacks: on a Logbook thread, every event of the upgrade, the task for a
status change; an exception in a callback is logged and isolated."""

from __future__ import annotations

import logging
import threading

from conftest import wait_for
from logbook import ProgressStatus, ProgressTracker, TaskType


def test_event_and_status_callbacks(open_tracker, caplog):
    tracker = open_tracker("u-1")
    events = []
    completed = []
    threads = set()

    def on_event(event):
        threads.add(threading.current_thread().ident)
        events.append(event)

    def boom(event):
        raise RuntimeError("a callback that fails")

    tracker.add_event_callback(boom)
    tracker.add_event_callback(on_event)
    tracker.add_status_callback(ProgressStatus.COMPLETED, lambda task: completed.append(task))
    tracker.start_upgrade("one")
    tracker.add_task("t", "The task", TaskType.VALIDATION)
    tracker.start_task("t")
    tracker.update_task_progress("t", 40.0, "forty", details={"step": 2})
    tracker.complete_task("t", "done")
    with caplog.at_level(logging.ERROR, logger="logbook"):
        wait_for(lambda: len(events) >= 5, what="5 events")
        wait_for(lambda: completed, what="the status callback")
    kinds = [e.event_type for e in events]
    assert kinds == ["upgrade.started", "task.added", "task.started", "task.progress", "task.completed"]
    progress = events[3]
    assert progress.task_id == "t"
    assert progress.percentage == 40.0
    assert progress.message == "forty"
    assert progress.details == {"step": 2}
    assert progress.timestamp.tzinfo is not None
    assert [e.offset for e in events] == sorted(e.offset for e in events)
    assert completed[0].task_name == "The task"
    assert completed[0].status == ProgressStatus.COMPLETED
    assert threading.main_thread().ident not in threads, "callbacks run on a Logbook thread"
    # The raising callback was logged, once per event, and stopped nothing.
    assert any("callback raised" in r.getMessage() for r in caplog.records)
    tracker.complete_upgrade()
    wait_for(lambda: len(events) >= 6, what="the event after the failures")
    tracker.close()


def test_callbacks_see_only_their_upgrade(open_tracker):
    one = open_tracker("u-1")
    two = open_tracker("u-2")
    seen = []
    one.add_event_callback(lambda e: seen.append(e.upgrade_id))
    two.start_upgrade("x")
    one.start_upgrade("x")
    wait_for(lambda: seen, what="u-1's event")
    assert seen == ["u-1"]
    one.close()
    two.close()
