"""Logbook for Python agents: the original system's `ProgressTracker` and `TestArtifactsManager`
over Logbook's embedded, audit-grade journal (hash-chained, fsynced, shipped to S3).

Switching from the original system means changing the import lines::

    from logbook import ProgressTracker, TestArtifactsManager, TaskType, ProgressStatus
    from logbook import ArtifactType, ArtifactStatus

Every call records an event and returns once it is durable (``durability="sync"``, the
default; ``"batch"`` or ``"none"`` trade that for speed). A refused call raises
`RefusedError` (``.code`` such as ``unknown_task``, ``duplicate_id``, ``terminal_status``,
``out_of_range``, ``invalid``; ``.reason``) and writes nothing; other failures raise its base,
`LogbookError`.
"""

from ._native import LogbookError, RefusedError, __version__
from ._enums import ArtifactStatus, ArtifactType, ProgressStatus, TaskType
from ._views import (
    ArtifactCollection,
    ProgressEvent,
    TaskProgress,
    TestArtifact,
    TestSession,
    UpgradeProgress,
)
from ._tracker import ProgressTracker
from ._artifacts import TestArtifactsManager

__all__ = [
    "ProgressTracker",
    "TestArtifactsManager",
    "TaskType",
    "ProgressStatus",
    "ArtifactType",
    "ArtifactStatus",
    "LogbookError",
    "RefusedError",
    "TaskProgress",
    "UpgradeProgress",
    "ProgressEvent",
    "TestSession",
    "ArtifactCollection",
    "TestArtifact",
    "__version__",
]
