"""TestArtifactsManager: the original system's artifact examples with only the import lines
changed: sessions, collections, files with SHA-256, the four search examples, statistics,
retention, and S3 upload (moto) with pre-signed URLs and auto-upload."""

from __future__ import annotations

import hashlib
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import boto, wait_for
from logbook import (
    ArtifactStatus,
    ArtifactType,
    LogbookError,
    ProgressTracker,
    RefusedError,
    TaskType,
    TestArtifactsManager,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path):
    return {
        "log": write(tmp_path / "upgrade.log", "node ng-1 ready\n" * 100),
        "junit": write(tmp_path / "junit.xml", "<testsuite tests='3'/>"),
        "cfg": write(tmp_path / "cluster.json", '{"version": "1.30"}'),
        "shot": write(tmp_path / "dashboard.png", "PNG" * 10),
    }


def test_sessions_collections_and_the_four_searches(open_manager, files, mode):
    manager = open_manager()
    session = manager.create_session("upgrade-123", "prod-cluster")
    assert session.session_id and session.upgrade_id == "upgrade-123"
    logs = manager.create_collection(session.session_id, "logs", description="Upgrade logs")
    tests = manager.create_collection(session.session_id, "tests", task_id="validate")
    log = manager.add_artifact(
        session.session_id, logs.collection_id, files["log"], ArtifactType.LOG_FILE,
        tags=["upgrade", "nodegroup"], description="node group log",
    )
    assert log.sha256 == hashlib.sha256(files["log"].read_bytes()).hexdigest()
    assert log.size_bytes == files["log"].stat().st_size
    assert log.status == ArtifactStatus.CREATED
    if mode == "local":
        assert Path(log.file_path).read_bytes() == files["log"].read_bytes()
    assert log.created_at.tzinfo is not None
    if mode == "local":  # a server's retention is its own
        assert log.expires_at > datetime.now(timezone.utc) + timedelta(days=29)
    manager.add_artifact(session.session_id, tests.collection_id, files["junit"], ArtifactType.TEST_RESULT,
                         tags=["tests", "green"], task_id="validate")
    manager.add_artifact(session.session_id, tests.collection_id, files["cfg"], ArtifactType.CONFIGURATION,
                         tags=["snapshot"])
    manager.add_artifact(session.session_id, logs.collection_id, files["shot"], ArtifactType.SCREENSHOT,
                         tags=["upgrade"])

    # 1. By type.
    assert [a.file_name for a in manager.search_artifacts(artifact_type=ArtifactType.LOG_FILE)] == ["upgrade.log"]
    # 2. By tags (all of them) in a session.
    found = manager.search_artifacts(session_id=session.session_id, tags=["upgrade"])
    assert sorted(a.file_name for a in found) == ["dashboard.png", "upgrade.log"]
    # 3. By task and status.
    found = manager.search_artifacts(task_id="validate", status=ArtifactStatus.CREATED)
    assert [a.file_name for a in found] == ["junit.xml"]
    # 4. By size and time range, and by name pattern and text.
    now = datetime.now(timezone.utc)
    found = manager.search_artifacts(min_size=1000, since=now - timedelta(minutes=5), until=now + timedelta(minutes=5))
    assert [a.file_name for a in found] == ["upgrade.log"]
    assert [a.file_name for a in manager.search_artifacts(name="*.json")] == ["cluster.json"]
    assert [a.file_name for a in manager.search_artifacts(text="node group")] == ["upgrade.log"]

    stats = manager.get_statistics()
    assert stats["total_artifacts"] == 4
    assert stats["total_size_bytes"] == sum(f.stat().st_size for f in files.values())
    assert stats["by_type"]["log_file"]["count"] == 1
    manager.close()


def test_refused_artifacts_copy_nothing(open_manager, data_dir, files):
    manager = open_manager()
    session = manager.create_session("u", "c")
    logs = manager.create_collection(session.session_id, "logs")
    before = manager._engine.next_offset()
    with pytest.raises(RefusedError) as refused:
        manager.add_artifact(session.session_id, "no-such-collection", files["log"], ArtifactType.LOG_FILE)
    assert refused.value.code == "unknown_collection"
    with pytest.raises(RefusedError) as refused:
        manager.add_artifact("no-such-session", logs.collection_id, files["log"], ArtifactType.LOG_FILE)
    assert refused.value.code == "unknown_session"
    with pytest.raises(RefusedError):
        manager.add_artifact(session.session_id, logs.collection_id, files["log"].parent, ArtifactType.LOG_FILE)
    assert manager._engine.next_offset() == before
    assert not list((Path(data_dir) / "artifacts").rglob("upgrade.log"))
    manager.close()


def test_retention_deletes_expired_artifacts(data_dir, files):
    manager = TestArtifactsManager(base_directory=data_dir, retention_days=1 / 86_400_000)  # ~1 ms
    session = manager.create_session("u", "c")
    logs = manager.create_collection(session.session_id, "logs")
    log = manager.add_artifact(session.session_id, logs.collection_id, files["log"], ArtifactType.LOG_FILE)
    time.sleep(0.01)
    # The background sweep may get there first; either way it ends deleted, file gone.
    manager.apply_retention_policy()
    wait_for(lambda: manager.get_artifact(log.artifact_id).status == ArtifactStatus.DELETED, what="deletion")
    assert not Path(log.file_path).exists()
    assert manager.apply_retention_policy() == 0
    manager.close()


def test_tracker_and_manager_share_one_engine(open_tracker, open_manager, files):
    tracker = open_tracker("u-1")
    manager = open_manager()
    tracker.start_upgrade("one")
    tracker.add_task("t", "T", TaskType.VALIDATION)
    session = manager.create_session("u-1", "c")
    logs = manager.create_collection(session.session_id, "logs", task_id="t")
    with pytest.raises(RefusedError) as refused:
        manager.create_collection(session.session_id, "other", task_id="no-such-task")
    assert refused.value.code == "unknown_task", "the manager sees the tracker's tasks"
    manager.add_artifact(session.session_id, logs.collection_id, files["log"], ArtifactType.LOG_FILE, task_id="t")
    tracker.close()
    manager.search_artifacts()  # still open: the engine closes with its last user
    manager.close()


def test_upload_presigned_url_and_auto_upload(data_dir, files, aws):
    s3 = boto("s3", aws)
    s3.create_bucket(Bucket="artifacts-test")
    manager = TestArtifactsManager(
        base_directory=data_dir, s3_bucket="artifacts-test", s3_prefix="runs/1", aws_region="us-east-1",
    )
    session = manager.create_session("upgrade-123", "prod")
    logs = manager.create_collection(session.session_id, "logs")
    log = manager.add_artifact(session.session_id, logs.collection_id, files["log"], ArtifactType.LOG_FILE)
    assert manager.upload_artifact(session.session_id, log.artifact_id) is True
    uploaded = manager.get_artifact(log.artifact_id)
    assert uploaded.status == ArtifactStatus.UPLOADED
    assert uploaded.s3_key.endswith(f"artifacts/{session.session_id}/{logs.collection_id}/upgrade.log")
    url = manager.get_presigned_url(log.artifact_id, expires_in=600)
    assert urllib.request.urlopen(url, timeout=10).read() == files["log"].read_bytes()
    with pytest.raises(RefusedError) as refused:
        manager.get_presigned_url(log.artifact_id, expires_in=10**9)
    assert refused.value.code == "out_of_range"
    manager.close()

    # auto_upload: shipped in the background, the journal too.
    auto = TestArtifactsManager(
        base_directory=data_dir + "-auto", s3_bucket="artifacts-test", s3_prefix="runs/2",
        aws_region="us-east-1", auto_upload=True,
    )
    session = auto.create_session("upgrade-124", "prod")
    logs = auto.create_collection(session.session_id, "logs")
    art = auto.add_artifact(session.session_id, logs.collection_id, files["junit"], ArtifactType.TEST_RESULT)
    wait_for(lambda: auto.get_artifact(art.artifact_id).status == ArtifactStatus.UPLOADED, 30, "auto-upload")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="artifacts-test", Prefix="runs/2/")["Contents"]]
    assert any(k.endswith("junit.xml") for k in keys), keys
    assert "runs/2/writer.json" in keys, keys
    auto.close()


def test_s3_calls_without_a_bucket_say_so(open_manager, files):
    manager = open_manager()
    session = manager.create_session("u", "c")
    logs = manager.create_collection(session.session_id, "logs")
    log = manager.add_artifact(session.session_id, logs.collection_id, files["log"], ArtifactType.LOG_FILE)
    with pytest.raises(LogbookError) as error:
        manager.upload_artifact(session.session_id, log.artifact_id)
    assert error.value.code == "no_s3"
    manager.close()


def test_remote_upload_presigned_url_and_large_streamed_file(data_dir, files, aws, tmp_path):
    from conftest import Served

    s3 = boto("s3", aws)
    s3.create_bucket(Bucket="remote-test")
    server = Served(data_dir, "--s3", "s3://remote-test/served")
    try:
        manager = TestArtifactsManager(server_url=server.url)
        session = manager.create_session("u-9", "prod")
        logs = manager.create_collection(session.session_id, "logs")
        log = manager.add_artifact(session.session_id, logs.collection_id, files["log"], ArtifactType.LOG_FILE,
                                   tags=["a", "b"], description="streamed over HTTP")
        assert log.sha256 == hashlib.sha256(files["log"].read_bytes()).hexdigest()
        assert log.tags == ["a", "b"] and log.description == "streamed over HTTP"
        assert manager.upload_artifact(session.session_id, log.artifact_id) is True
        url = manager.get_presigned_url(log.artifact_id, expires_in=600)
        assert urllib.request.urlopen(url, timeout=10).read() == files["log"].read_bytes()
        # 40 MiB, streamed in chunks both ways (the server stages it, never holds it whole).
        big = tmp_path / "big.bin"
        with open(big, "wb") as out:
            for i in range(40):
                out.write(hashlib.sha256(str(i).encode()).digest() * 32768)
        artifact = manager.add_artifact(session.session_id, logs.collection_id, big, ArtifactType.BACKUP)
        assert artifact.size_bytes == 40 << 20
        assert artifact.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
        stored = Path(data_dir) / "artifacts" / session.session_id / logs.collection_id / "big.bin"
        assert stored.read_bytes() == big.read_bytes()
        # The same file name again in that collection is refused: nothing replaced.
        with pytest.raises(RefusedError) as refused:
            manager.add_artifact(session.session_id, logs.collection_id, files["log"], ArtifactType.BACKUP,
                                 artifact_id="other")
        assert refused.value.code == "duplicate_id"
        manager.close()
    finally:
        server.stop()
    assert not list(Path(data_dir + "/artifacts.staging").glob("*")), "an upload left a staged file"


def test_remote_uploads_over_the_limit_are_refused_and_leave_nothing(data_dir, files, tmp_path):
    from conftest import Served

    server = Served(data_dir, "--max-artifact-bytes", "1000")
    try:
        manager = TestArtifactsManager(server_url=server.url)
        session = manager.create_session("u", "c")
        logs = manager.create_collection(session.session_id, "logs")
        before = manager._engine.next_offset()
        big = tmp_path / "big.log"
        big.write_bytes(b"x" * 5000)
        with pytest.raises(LogbookError) as refused:
            manager.add_artifact(session.session_id, logs.collection_id, big, ArtifactType.LOG_FILE)
        assert refused.value.code == "too_large", refused.value
        small = manager.add_artifact(session.session_id, logs.collection_id, files["junit"], ArtifactType.TEST_RESULT)
        assert small.size_bytes == files["junit"].stat().st_size
        assert manager._engine.next_offset() == before + 1, "the refused upload wrote nothing"
        manager.close()
    finally:
        server.stop()
    assert not (Path(data_dir) / "artifacts" / session.session_id / logs.collection_id / "big.log").exists()
    assert not list(Path(data_dir + "/artifacts.staging").glob("*"))
