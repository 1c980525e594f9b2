"""ProgressTracker: the original system's progress-tracking example with only the import lines
changed, views with aware datetimes, refusals with codes that write nothing."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from logbook import LogbookError, ProgressStatus, ProgressTracker, RefusedError, TaskType


def test_enums_have_the_contract_values():
    assert TaskType.UPGRADE_STEP.value == "upgrade_step"
    assert ProgressStatus.IN_PROGRESS.value == "in_progress"
    assert [t.value for t in TaskType] == [
        "upgrade_plan",
        "upgrade_step",
        "validation",
        "rollback",
        "cleanup",
    ]


def test_the_original_progress_example(open_tracker):
    # The original system's example, import lines changed only (remote: plus server_url=).
    tracker = open_tracker(
        upgrade_id="upgrade-123",
        plan_id="plan-456",
        cluster_name="prod-cluster",
    )
    tracker.start_upgrade("initialization")
    tracker.add_task("validate", "Validate cluster", TaskType.VALIDATION)
    tracker.add_task("upgrade-cp", "Upgrade control plane", TaskType.UPGRADE_STEP)
    tracker.add_task("upgrade-ng", "Upgrade node groups", TaskType.UPGRADE_STEP)
    tracker.add_task("ng-1", "Node group 1", TaskType.UPGRADE_STEP, parent_id="upgrade-ng")
    tracker.add_task("ng-2", "Node group 2", TaskType.UPGRADE_STEP, parent_id="upgrade-ng")

    tracker.start_task("validate", "checking")
    tracker.update_task_progress("validate", 50.0, "Half way", details={"checks": 4})
    tracker.complete_task("validate", "All checks passed", metrics={"checks": 8})
    tracker.change_phase("upgrade")
    tracker.start_task("upgrade-cp")
    tracker.update_task_progress("upgrade-cp", 30.0, "Upgrading")
    tracker.start_task("ng-1")
    tracker.update_task_progress("ng-1", 50.0)
    tracker.pause_task("ng-1", "waiting for a PDB")
    tracker.resume_task("ng-1")
    tracker.complete_task("ng-1")
    tracker.start_task("ng-2")
    tracker.fail_task("ng-2", "node group stuck")

    progress = tracker.get_progress()
    assert progress.upgrade_id == "upgrade-123"
    assert progress.current_phase == "upgrade"
    assert progress.status == ProgressStatus.IN_PROGRESS
    assert list(progress.tasks) == ["validate", "upgrade-cp", "upgrade-ng", "ng-1", "ng-2"]
    validate = progress.tasks["validate"]
    assert validate.task_name == "Validate cluster"
    assert validate.task_type == TaskType.VALIDATION
    assert validate.status == ProgressStatus.COMPLETED
    assert validate.percentage == 100.0
    assert validate.message == "All checks passed"
    assert validate.metrics == {"checks": 8}
    assert validate.started_at.tzinfo is not None and validate.completed_at.tzinfo is not None
    assert validate.started_at <= validate.completed_at <= datetime.now(timezone.utc)
    assert progress.tasks["ng-1"].parent_task_id == "upgrade-ng"
    assert progress.tasks["upgrade-ng"].subtasks == ["ng-1", "ng-2"]
    ng2 = progress.tasks["ng-2"]
    assert ng2.status == ProgressStatus.FAILED and ng2.error == "node group stuck"
    # Roll-up: ng-1 100, ng-2 0 -> parent 50; root mean of 100, 30, 50.
    assert progress.tasks["upgrade-ng"].effective_percentage == 50.0
    assert progress.overall_percentage == pytest.approx(60.0)

    summary = tracker.get_progress_summary()
    assert summary["total_tasks"] == 5
    assert summary["completed_tasks"] == 2
    assert summary["failed_tasks"] == 1
    assert summary["status"] == "in_progress"
    json.dumps(summary)  # JSON-ready

    tracker.fail_upgrade("node groups failed")
    assert tracker.get_progress().status == ProgressStatus.FAILED
    tracker.close()


def test_refusals_carry_codes_and_write_nothing(open_tracker):
    with open_tracker("u-1") as tracker:
        with pytest.raises(RefusedError) as refused:
            tracker.start_task("x")
        assert refused.value.code == "unknown_upgrade"
        tracker.start_upgrade("one")
        tracker.add_task("a", "A", TaskType.VALIDATION)
        before = tracker.journal_offset
        cases = [
            (lambda: tracker.update_task_progress("a", 150.0), "out_of_range"),
            (lambda: tracker.update_task_progress("a", float("nan")), "out_of_range"),
            (lambda: tracker.update_task_progress("nope", 5.0), "unknown_task"),
            (lambda: tracker.add_task("a", "again", TaskType.VALIDATION), "duplicate_id"),
            (lambda: tracker.add_task("b", "B", TaskType.VALIDATION, parent_id="zz"), "unknown_parent"),
            (lambda: tracker.add_task("", "empty", TaskType.VALIDATION), "invalid"),
            (lambda: tracker.resume_task("a"), "invalid_transition"),
        ]
        for call, code in cases:
            with pytest.raises(RefusedError) as refused:
                call()
            assert refused.value.code == code, refused.value
            assert refused.value.reason
            assert isinstance(refused.value, LogbookError)
        assert tracker.journal_offset == before, "a refusal wrote something"
        tracker.start_task("a")
        tracker.complete_task("a")
        with pytest.raises(RefusedError) as refused:
            tracker.update_task_progress("a", 10.0)
        assert refused.value.code == "terminal_status"
        with pytest.raises(ValueError):
            tracker.add_task("c", "C", "not-a-type")


def test_a_closed_tracker_says_so(open_tracker):
    tracker = open_tracker("u-1")
    tracker.start_upgrade("one")
    tracker.close()
    with pytest.raises(LogbookError) as closed:
        tracker.change_phase("two")
    assert closed.value.code == "closed"
    # Reopened, the journal has what was recorded.
    again = open_tracker("u-1")
    assert again.get_progress().current_phase == "one"
    again.close()


def test_durability_is_chosen_and_checked(data_dir):
    with pytest.raises(RefusedError) as bad:
        ProgressTracker("u", "p", "c", storage_path=data_dir, durability="sometimes")
    assert bad.value.code == "invalid"
    with ProgressTracker("u", "p", "c", storage_path=data_dir, durability="none") as fast:
        fast.start_upgrade("x")
        fast.add_task("t", "T", TaskType.CLEANUP)
        fast.start_task("t")
        for i in range(1000):
            fast.update_task_progress("t", i / 10)
        assert fast.get_task("t").percentage == 99.9
