"""The objects the API hands out, built from the engine's JSON views: tasks, upgrades, events,
sessions, collections and artifacts, with the original system's attribute names, enums and
timezone-aware datetimes (UTC). They are snapshots: reading one never changes the journal."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

from ._enums import ArtifactStatus, ArtifactType, ProgressStatus, TaskType

__all__ = [
    "TaskProgress",
    "UpgradeProgress",
    "ProgressEvent",
    "TestSession",
    "ArtifactCollection",
    "TestArtifact",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def from_us(us: Optional[int]) -> Optional[datetime]:
    """An aware UTC datetime from microseconds since the epoch (exact, no float rounding)."""
    if us is None:
        return None
    return _EPOCH + timedelta(microseconds=us)


def to_us(when: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive ones are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_rfc3339(text: Optional[str]) -> Optional[datetime]:
    """An aware datetime from the journal's RFC 3339 text (`...Z`)."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class TaskProgress:
    """One task of an upgrade, as of the call that returned it."""

    task_id: str
    task_name: str
    task_type: TaskType
    status: ProgressStatus = ProgressStatus.NOT_STARTED
    percentage: float = 0.0
    message: Optional[str] = None
    parent_task_id: Optional[str] = None
    started_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None
    error: Optional[str] = None
    metrics: Dict[str, Any] = field(default_factory=dict)
    details: Dict[str, Any] = field(default_factory=dict)
    #: The percentage rolled up from the subtasks (the task's own for a leaf task).
    effective_percentage: float = 0.0
    #: Ids of the direct subtasks.
    subtasks: List[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.task_name

    @property
    def duration(self) -> Optional[timedelta]:
        """From start to completion (or to now while it runs); None before it starts."""
        if self.started_at is None:
            return None
        end = self.completed_at or datetime.now(timezone.utc)
        return end - self.started_at

    @classmethod
    def _from_view(cls, view: Dict[str, Any]) -> "TaskProgress":
        return cls(
            task_id=view["task_id"],
            task_name=view["name"],
            task_type=TaskType(view["task_type"]),
            status=ProgressStatus(view["status"]),
            percentage=view["percentage"],
            message=view.get("message"),
            parent_task_id=view.get("parent_id"),
            started_at=from_us(view.get("started_at_us")),
            completed_at=from_us(view.get("completed_at_us")),
            error=view.get("error"),
            metrics=view.get("metrics") or {},
            details=view.get("details") or {},
            effective_percentage=view.get("effective_percentage", view["percentage"]),
        )


@dataclass
class UpgradeProgress:
    """An upgrade with its tasks (by task id, in the order they were added)."""

    upgrade_id: str
    plan_id: str
    cluster_name: str
    status: ProgressStatus
    current_phase: str
    overall_percentage: float
    started_at: Optional[datetime]
    completed_at: Optional[datetime] = None
    tasks: Dict[str, TaskProgress] = field(default_factory=dict)
    metadata: Dict[str, Any] = field(default_factory=dict)
    message: Optional[str] = None
    error: Optional[str] = None
    #: The journal offset of the last event that changed this upgrade.
    last_offset: int = 0

    @property
    def phase(self) -> str:
        return self.current_phase

    @property
    def percentage(self) -> float:
        return self.overall_percentage

    @classmethod
    def _from_json(cls, text: str) -> "UpgradeProgress":
        view = json.loads(text)
        tasks: Dict[str, TaskProgress] = {}
        for task_view in view["tasks"]:
            task = TaskProgress._from_view(task_view)
            tasks[task.task_id] = task
        for task in tasks.values():
            parent = tasks.get(task.parent_task_id) if task.parent_task_id else None
            if parent is not None:
                parent.subtasks.append(task.task_id)
        return cls(
            upgrade_id=view["upgrade_id"],
            plan_id=view["plan_id"],
            cluster_name=view["cluster_name"],
            status=ProgressStatus(view["status"]),
            current_phase=view["phase"],
            overall_percentage=view["percentage"],
            started_at=from_us(view["started_at_us"]),
            completed_at=from_us(view.get("completed_at_us")),
            tasks=tasks,
            metadata=view.get("metadata") or {},
            message=view.get("message"),
            error=view.get("error"),
            last_offset=view.get("last_offset", 0),
        )


@dataclass
class ProgressEvent:
    """One recorded event, as callbacks receive it."""

    #: The contract's type, e.g. ``"task.progress"``.
    event_type: str
    upgrade_id: Optional[str]
    task_id: Optional[str]
    message: Optional[str]
    percentage: Optional[float]
    #: When the journal recorded it (aware, UTC).
    timestamp: datetime
    details: Dict[str, Any]
    #: Its offset in the journal.
    offset: int
    #: The whole event as recorded (envelope fields included).
    data: Dict[str, Any]

    @classmethod
    def _from_line(cls, line: str) -> "ProgressEvent":
        data = json.loads(line)
        message = data.get("message")
        if message is None:
            message = data.get("error")
        return cls(
            event_type=data.get("type", ""),
            upgrade_id=data.get("upgrade_id"),
            task_id=data.get("task_id"),
            message=message,
            percentage=data.get("percentage"),
            timestamp=from_rfc3339(data["ts"]) or datetime.now(timezone.utc),
            details=data.get("details") or data.get("metrics") or {},
            offset=data["offset"],
            data=data,
        )


@dataclass
class TestSession:
    """A session of test artifacts for one upgrade."""

    __test__ = False  # not a pytest test class

    session_id: str
    upgrade_id: str
    cluster_name: str
    created_at: datetime
    collections: Dict[str, "ArtifactCollection"] = field(default_factory=dict)


@dataclass
class ArtifactCollection:
    """A named group of artifacts in a session."""

    collection_id: str
    session_id: str
    name: str
    task_id: Optional[str] = None
    #: Kept on this object only: the event contract's `collection.created` has no description.
    description: Optional[str] = None


@dataclass
class TestArtifact:
    """An artifact file kept in the store (and in S3 once uploaded)."""

    __test__ = False  # not a pytest test class

    artifact_id: str
    session_id: str
    collection_id: str
    file_name: str
    artifact_type: ArtifactType
    status: ArtifactStatus
    sha256: str
    size_bytes: int
    tags: List[str]
    task_id: Optional[str]
    description: Optional[str]
    s3_key: Optional[str]
    s3_etag: Optional[str]
    error: Optional[str]
    created_at: datetime
    expires_at: Optional[datetime]
    #: Where the store keeps the file.
    file_path: Optional[str] = None

    @property
    def checksum(self) -> str:
        return self.sha256

    @classmethod
    def _from_json(cls, text: str, file_path: Optional[str] = None) -> "TestArtifact":
        return cls._from_view(json.loads(text), file_path)

    @classmethod
    def _from_view(cls, view: Dict[str, Any], file_path: Optional[str] = None) -> "TestArtifact":
        return cls(
            artifact_id=view["artifact_id"],
            session_id=view["session_id"],
            collection_id=view["collection_id"],
            file_name=view["file_name"],
            artifact_type=ArtifactType(view["artifact_type"]),
            status=ArtifactStatus(view["status"]),
            sha256=view["sha256"],
            size_bytes=view["size_bytes"],
            tags=list(view.get("tags") or []),
            task_id=view.get("task_id"),
            description=view.get("description"),
            s3_key=view.get("s3_key"),
            s3_etag=view.get("etag"),
            error=view.get("error"),
            created_at=from_us(view["created_at_us"]) or _EPOCH,
            expires_at=from_rfc3339(view.get("expires_at")),
            file_path=file_path,
        )
