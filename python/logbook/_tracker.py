"""`ProgressTracker`: the original system's progress API over the embedded engine. Every call
records one event in the journal and returns once it is durable (``durability="sync"``, the
default); a refused call raises `RefusedError` and writes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Union

from . import _native
from ._enums import ProgressStatus, TaskType
from ._remote import RemoteEngine
from ._views import ProgressEvent, TaskProgress, UpgradeProgress

__all__ = ["ProgressTracker"]

_log = logging.getLogger("logbook")

#: The task status each task event leads to (for status callbacks).
_STATUS_OF = {
    "task.started": ProgressStatus.IN_PROGRESS,
    "task.resumed": ProgressStatus.IN_PROGRESS,
    "task.completed": ProgressStatus.COMPLETED,
    "task.failed": ProgressStatus.FAILED,
    "task.paused": ProgressStatus.PAUSED,
    "task.cancelled": ProgressStatus.CANCELLED,
}


def _text(value: Optional[str]) -> Optional[str]:
    return None if value is None else str(value)


class ProgressTracker:
    """Tracks one upgrade: its phases and its tasks (with subtasks), durably.

    ``storage_path`` is the data directory (journal, state, artifacts). A tracker and a
    `TestArtifactsManager` pointed at the same directory share one engine. With
    ``server_url="http://HOST:PORT"`` the tracker talks to a running ``logbook serve`` instead.
    """

    def __init__(
        self,
        upgrade_id: str,
        plan_id: str,
        cluster_name: str,
        storage_path: str = "./progress",
        eventbridge_bus_name: Optional[str] = None,
        aws_region: Optional[str] = None,
        enable_websocket: bool = False,
        websocket_port: int = 8765,
        *,
        durability: str = "sync",
        websocket_host: str = "127.0.0.1",
        token: Optional[str] = None,
        server_url: Optional[str] = None,
    ) -> None:
        self.upgrade_id = upgrade_id
        self.plan_id = plan_id
        self.cluster_name = cluster_name
        self.storage_path = storage_path
        self.enable_websocket = enable_websocket
        self.websocket_port = websocket_port
        self._websocket_host = websocket_host
        self._token = token
        if server_url is not None:
            # Remote mode: the server's own settings (durability, EventBridge) apply.
            self._engine = RemoteEngine(server_url, token)
        else:
            self._engine = _native.open(
                storage_path,
                durability=durability,
                eventbridge_bus=eventbridge_bus_name,
                aws_region=aws_region,
            )
        self._callbacks: List[Callable[[ProgressEvent], Any]] = []
        self._status_callbacks: Dict[ProgressStatus, List[Callable[[TaskProgress], Any]]] = {}
        self._listening = False
        self._lock = threading.Lock()
        if enable_websocket:
            self._start_server()

    # -- the upgrade ---------------------------------------------------------------------------

    def _record(self, event: Dict[str, Any]) -> int:
        event.setdefault("upgrade_id", self.upgrade_id)
        return self._engine.record(json.dumps(event))

    def start_upgrade(self, phase: str = "initialization", metadata: Optional[Dict[str, Any]] = None) -> int:
        """Records ``upgrade.started`` in ``phase``; the event's offset."""
        event: Dict[str, Any] = {
            "type": "upgrade.started",
            "upgrade_id": self.upgrade_id,
            "plan_id": self.plan_id,
            "cluster_name": self.cluster_name,
            "phase": str(phase),
        }
        if metadata:
            event["metadata"] = metadata
        return self._record(event)

    def change_phase(self, phase: str) -> int:
        """Records ``upgrade.phase_changed``."""
        return self._record({"type": "upgrade.phase_changed", "phase": str(phase)})

    def complete_upgrade(self, message: Optional[str] = None) -> int:
        """Records ``upgrade.completed``."""
        event: Dict[str, Any] = {"type": "upgrade.completed"}
        if message is not None:
            event["message"] = str(message)
        return self._record(event)

    def fail_upgrade(self, error: str) -> int:
        """Records ``upgrade.failed``."""
        return self._record({"type": "upgrade.failed", "error": str(error)})

    # -- tasks -----------------------------------------------------------------------------------

    def add_task(
        self,
        task_id: str,
        name: str,
        task_type: Union[TaskType, str] = TaskType.UPGRADE_STEP,
        parent_id: Optional[str] = None,
    ) -> TaskProgress:
        """Records ``task.added`` (a subtask when ``parent_id`` is given); the new task."""
        kind = TaskType(task_type)
        event: Dict[str, Any] = {
            "type": "task.added",
            "task_id": task_id,
            "name": name,
            "task_type": kind.value,
        }
        if parent_id is not None:
            event["parent_id"] = parent_id
        self._record(event)
        task = self.get_task(task_id)
        if task is None:  # recorded, so it exists; only a concurrent close could hide it
            return TaskProgress(task_id=task_id, task_name=name, task_type=kind, parent_task_id=parent_id)
        return task

    def _transition(self, kind: str, task_id: str, message: Optional[str]) -> int:
        event: Dict[str, Any] = {"type": kind, "task_id": task_id}
        if message is not None:
            event["message"] = str(message)
        return self._record(event)

    def start_task(self, task_id: str, message: Optional[str] = None) -> int:
        """Records ``task.started``."""
        return self._transition("task.started", task_id, message)

    def update_task_progress(
        self,
        task_id: str,
        percentage: float,
        message: Optional[str] = None,
        details: Optional[Dict[str, Any]] = None,
    ) -> int:
        """Records ``task.progress`` (percentage in 0..100)."""
        return self._engine.progress(
            self.upgrade_id,
            task_id,
            float(percentage),
            _text(message),
            None if details is None else json.dumps(details),
        )

    def complete_task(
        self, task_id: str, message: Optional[str] = None, metrics: Optional[Dict[str, Any]] = None
    ) -> int:
        """Records ``task.completed`` (with metrics, if given)."""
        event: Dict[str, Any] = {"type": "task.completed", "task_id": task_id}
        if message is not None:
            event["message"] = str(message)
        if metrics is not None:
            event["metrics"] = metrics
        return self._record(event)

    def fail_task(self, task_id: str, error: str) -> int:
        """Records ``task.failed``."""
        return self._record({"type": "task.failed", "task_id": task_id, "error": str(error)})

    def pause_task(self, task_id: str, message: Optional[str] = None) -> int:
        """Records ``task.paused``."""
        return self._transition("task.paused", task_id, message)

    def resume_task(self, task_id: str, message: Optional[str] = None) -> int:
        """Records ``task.resumed``."""
        return self._transition("task.resumed", task_id, message)

    def cancel_task(self, task_id: str, message: Optional[str] = None) -> int:
        """Records ``task.cancelled``."""
        return self._transition("task.cancelled", task_id, message)

    # -- views -----------------------------------------------------------------------------------

    def get_progress(self) -> Optional[UpgradeProgress]:
        """The upgrade with its tasks, or None before ``start_upgrade``."""
        text = self._engine.upgrade(self.upgrade_id)
        return None if text is None else UpgradeProgress._from_json(text)

    def get_task(self, task_id: str) -> Optional[TaskProgress]:
        """One task, or None."""
        progress = self.get_progress()
        return None if progress is None else progress.tasks.get(task_id)

    def get_progress_summary(self) -> Dict[str, Any]:
        """Counts and times of the upgrade, as a plain dict (JSON-ready)."""
        progress = self.get_progress()
        if progress is None:
            return {"upgrade_id": self.upgrade_id, "status": ProgressStatus.NOT_STARTED.value, "total_tasks": 0}
        tasks = list(progress.tasks.values())

        def count(status: ProgressStatus) -> int:
            return sum(1 for t in tasks if t.status == status)

        duration = None
        if progress.started_at is not None and progress.completed_at is not None:
            duration = (progress.completed_at - progress.started_at).total_seconds()
        return {
            "upgrade_id": progress.upgrade_id,
            "plan_id": progress.plan_id,
            "cluster_name": progress.cluster_name,
            "status": progress.status.value,
            "current_phase": progress.current_phase,
            "overall_percentage": progress.overall_percentage,
            "total_tasks": len(tasks),
            "completed_tasks": count(ProgressStatus.COMPLETED),
            "failed_tasks": count(ProgressStatus.FAILED),
            "in_progress_tasks": count(ProgressStatus.IN_PROGRESS),
            "paused_tasks": count(ProgressStatus.PAUSED),
            "cancelled_tasks": count(ProgressStatus.CANCELLED),
            "not_started_tasks": count(ProgressStatus.NOT_STARTED),
            "started_at": progress.started_at.isoformat() if progress.started_at else None,
            "completed_at": progress.completed_at.isoformat() if progress.completed_at else None,
            "duration_seconds": duration,
            "error": progress.error,
        }

    # -- callbacks -------------------------------------------------------------------------------

    def add_event_callback(self, callback: Callable[[ProgressEvent], Any]) -> None:
        """Calls ``callback(event)`` on a Logbook thread for every event of this upgrade recorded
        from now on. An exception it raises is logged (logger ``logbook``) and ignored."""
        with self._lock:
            self._callbacks.append(callback)
            self._listen()

    def add_status_callback(self, status: Union[ProgressStatus, str], callback: Callable[[TaskProgress], Any]) -> None:
        """Calls ``callback(task)`` whenever a task of this upgrade enters ``status``."""
        with self._lock:
            self._status_callbacks.setdefault(ProgressStatus(status), []).append(callback)
            self._listen()

    def _listen(self) -> None:
        if self._listening:
            return
        name = f"python-tracker-{self.upgrade_id}-{id(self)}"
        self._engine.on_record(name, self._dispatch)
        self._listening = True

    def _dispatch(self, line: str) -> None:
        event = ProgressEvent._from_line(line)
        if event.upgrade_id != self.upgrade_id:
            return
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                _log.exception("a ProgressTracker event callback raised; it keeps receiving events")
        status = _STATUS_OF.get(event.event_type)
        callbacks = self._status_callbacks.get(status) if status is not None else None
        if callbacks and event.task_id is not None:
            task = self.get_task(event.task_id)
            if task is None:
                return
            for callback in list(callbacks):
                try:
                    callback(task)
                except Exception:
                    _log.exception("a ProgressTracker status callback raised; it keeps receiving events")

    # -- the WebSocket server --------------------------------------------------------------------

    async def start_websocket_server(self) -> int:
        """Serves the live stream (``ws://HOST:PORT/`` and ``/v1/stream``), the HTTP API and the
        dashboard on ``websocket_port``; the port."""
        return await asyncio.get_running_loop().run_in_executor(None, self._start_server)

    def _start_server(self) -> int:
        port = self._engine.server_port()
        if port is not None:
            return port
        port = self._engine.start_server(self._websocket_host, self.websocket_port, self._token)
        self.websocket_port = port
        return port

    async def stop_websocket_server(self) -> None:
        """Stops the server (the journal goes on)."""
        await asyncio.get_running_loop().run_in_executor(None, self._engine.stop_server)

    # -- lifetime --------------------------------------------------------------------------------

    @property
    def journal_offset(self) -> int:
        """The journal's next offset."""
        return self._engine.next_offset()

    def close(self) -> None:
        """Closes this tracker (the engine closes with its last user: flushed and fsynced)."""
        self._engine.close()

    def __enter__(self) -> "ProgressTracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
