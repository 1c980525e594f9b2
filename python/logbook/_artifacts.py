"""`TestArtifactsManager`: the original system's artifact API over the embedded engine. Files are
copied into the store (hashed with SHA-256 while streaming), every change is a journal event,
and S3 upload, pre-signed URLs, search, statistics and retention work as before."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from typing import Any, Dict, List, Optional, Union

from . import _native
from ._enums import ArtifactStatus, ArtifactType
from ._remote import RemoteEngine
from ._views import ArtifactCollection, TestArtifact, TestSession, to_us

__all__ = ["TestArtifactsManager"]


def _new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


class TestArtifactsManager:
    """Sessions, collections and artifact files of test runs, durably recorded.

    ``base_directory`` is the data directory; a `ProgressTracker` pointed at the same directory
    shares its engine. With ``s3_bucket`` (and ``s3_prefix``) artifacts can be uploaded
    (``upload_artifact``), and with ``auto_upload=True`` every artifact and the journal itself
    are shipped in the background. Artifacts expire ``retention_days`` after they are added;
    ``apply_retention_policy`` (also run hourly in the background) deletes expired ones.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        base_directory: str = "./artifacts",
        s3_bucket: Optional[str] = None,
        s3_prefix: Optional[str] = None,
        aws_region: Optional[str] = None,
        retention_days: Optional[float] = 30,
        auto_upload: bool = False,
        *,
        durability: str = "sync",
        server_url: Optional[str] = None,
        token: Optional[str] = None,
    ) -> None:
        self.base_directory = base_directory
        self.s3_bucket = s3_bucket
        self.s3_prefix = s3_prefix
        self.retention_days = retention_days
        self.auto_upload = auto_upload
        s3 = None
        if s3_bucket:
            prefix = (s3_prefix or "").strip("/")
            s3 = f"s3://{s3_bucket}/{prefix}" if prefix else f"s3://{s3_bucket}"
        if server_url is not None:
            # Remote mode: the server's store, S3 location and retention apply.
            self._engine = RemoteEngine(server_url, token)
            self._sessions = {}
            return
        self._engine = _native.open(
            base_directory,
            durability=durability,
            s3=s3,
            auto_upload=auto_upload,
            aws_region=aws_region,
            retention_days=retention_days,
        )
        self._sessions: Dict[str, TestSession] = {}

    # -- sessions and collections ---------------------------------------------------------------

    def create_session(self, upgrade_id: str, cluster_name: str, session_id: Optional[str] = None) -> TestSession:
        """Records ``session.created``; the new session (its ``session_id`` generated unless given)."""
        session_id = session_id or _new_id("session")
        self._engine.record(
            json.dumps(
                {
                    "type": "session.created",
                    "session_id": session_id,
                    "upgrade_id": upgrade_id,
                    "cluster_name": cluster_name,
                }
            )
        )
        session = TestSession(
            session_id=session_id,
            upgrade_id=upgrade_id,
            cluster_name=cluster_name,
            created_at=datetime.now().astimezone(),
        )
        self._sessions[session_id] = session
        return session

    def create_collection(
        self,
        session_id: str,
        name: str,
        task_id: Optional[str] = None,
        description: Optional[str] = None,
        collection_id: Optional[str] = None,
    ) -> ArtifactCollection:
        """Records ``collection.created``; the new collection (its ``collection_id`` generated
        unless given)."""
        collection_id = collection_id or _new_id("collection")
        event: Dict[str, Any] = {
            "type": "collection.created",
            "session_id": session_id,
            "collection_id": collection_id,
            "name": name,
        }
        if task_id is not None:
            event["task_id"] = task_id
        self._engine.record(json.dumps(event))
        collection = ArtifactCollection(
            collection_id=collection_id,
            session_id=session_id,
            name=name,
            task_id=task_id,
            description=description,
        )
        session = self._sessions.get(session_id)
        if session is not None:
            session.collections[collection_id] = collection
        return collection

    # -- artifacts ------------------------------------------------------------------------------

    def add_artifact(
        self,
        session_id: str,
        collection_id: str,
        file_path: Union[str, "os.PathLike[str]"],
        artifact_type: Union[ArtifactType, str],
        tags: Optional[List[str]] = None,
        description: Optional[str] = None,
        task_id: Optional[str] = None,
        artifact_id: Optional[str] = None,
    ) -> TestArtifact:
        """Copies ``file_path`` into the store (SHA-256 computed while copying) and records
        ``artifact.added``; the artifact. A refused artifact copies nothing."""
        artifact_id = artifact_id or _new_id("artifact")
        text = self._engine.add_artifact(
            session_id,
            collection_id,
            artifact_id,
            os.fspath(file_path),
            ArtifactType(artifact_type).value,
            list(tags or []),
            task_id,
            description,
        )
        return self._artifact(text)

    def _artifact(self, text: str) -> TestArtifact:
        view = json.loads(text)
        path = self._engine.artifact_path(view["artifact_id"])
        return TestArtifact._from_view(view, None if path is None else os.fspath(path))

    def get_artifact(self, artifact_id: str) -> Optional[TestArtifact]:
        """One artifact, or None."""
        text = self._engine.artifact(artifact_id)
        return None if text is None else self._artifact(text)

    def upload_artifact(self, session_id: str, artifact_id: str) -> bool:
        """Uploads one artifact to S3 now (checked against its SHA-256; records
        ``artifact.uploaded``); True. Raises `LogbookError` if S3 refuses or fails."""
        artifact = self.get_artifact(artifact_id)
        if artifact is None or artifact.session_id != session_id:
            raise _native.RefusedError(f"unknown artifact {artifact_id!r} in session {session_id!r}")
        self._engine.upload_artifact(artifact_id)
        return True

    def get_presigned_url(self, artifact_id: str, expires_in: int = 3600) -> str:
        """A pre-signed GET URL of an uploaded artifact, valid ``expires_in`` seconds."""
        return self._engine.presigned_url(artifact_id, float(expires_in))

    def search_artifacts(
        self,
        session_id: Optional[str] = None,
        artifact_type: Optional[Union[ArtifactType, str]] = None,
        tags: Optional[List[str]] = None,
        task_id: Optional[str] = None,
        status: Optional[Union[ArtifactStatus, str]] = None,
        min_size: Optional[int] = None,
        max_size: Optional[int] = None,
        since: Optional[datetime] = None,
        until: Optional[datetime] = None,
        name: Optional[str] = None,
        text: Optional[str] = None,
        any_tag: bool = False,
        limit: Optional[int] = None,
    ) -> List[TestArtifact]:
        """Artifacts matching every filter given (tags: all of them, or any with
        ``any_tag=True``; ``name``: a glob over the file name; ``text``: words in the name,
        description or tags), by artifact id."""
        found = self._engine.search(
            session_id=session_id,
            artifact_type=None if artifact_type is None else ArtifactType(artifact_type).value,
            tags=None if tags is None else list(tags),
            any_tag=any_tag,
            task_id=task_id,
            status=None if status is None else ArtifactStatus(status).value,
            min_size=min_size,
            max_size=max_size,
            since_us=None if since is None else to_us(since),
            until_us=None if until is None else to_us(until),
            name=name,
            text=text,
            limit=limit,
        )
        return [TestArtifact._from_view(view) for view in json.loads(found)]

    def get_statistics(self) -> Dict[str, Any]:
        """Counts and bytes, in total, by type and by status."""
        stats = json.loads(self._engine.statistics())
        return {
            "total_artifacts": stats["total"]["count"],
            "total_size_bytes": stats["total"]["bytes"],
            "by_type": stats["by_type"],
            "by_status": stats["by_status"],
            "sessions": len(self._sessions),
        }

    def apply_retention_policy(self) -> int:
        """Deletes expired artifacts (``artifact.deleted`` recorded, then the file removed, and
        its S3 object when S3 is configured); how many."""
        return len(self._engine.apply_retention())

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Closes this manager (the engine closes with its last user)."""
        self._engine.close()

    def __enter__(self) -> "TestArtifactsManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

