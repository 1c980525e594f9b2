"""The contract's enums (DESIGN.md §2), as the original system had them: `enum.Enum` members
whose values are the snake_case strings of the event contract."""

from __future__ import annotations

import enum

__all__ = ["TaskType", "ProgressStatus", "ArtifactType", "ArtifactStatus"]


class TaskType(enum.Enum):
    """What a task is."""

    UPGRADE_PLAN = "upgrade_plan"
    UPGRADE_STEP = "upgrade_step"
    VALIDATION = "validation"
    ROLLBACK = "rollback"
    CLEANUP = "cleanup"


class ProgressStatus(enum.Enum):
    """Where an upgrade or a task is."""

    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class ArtifactType(enum.Enum):
    """What an artifact file is."""

    LOG_FILE = "log_file"
    TEST_RESULT = "test_result"
    CONFIGURATION = "configuration"
    SCREENSHOT = "screenshot"
    METRICS_DATA = "metrics_data"
    BACKUP = "backup"
    REPORT = "report"
    DIAGNOSTIC = "diagnostic"


class ArtifactStatus(enum.Enum):
    """Where an artifact is in its life."""

    CREATED = "created"
    UPLOADED = "uploaded"
    ARCHIVED = "archived"
    DELETED = "deleted"
    FAILED = "failed"
