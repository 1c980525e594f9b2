"""Fixtures of the Python package's tests: a fresh data dir per test, and a real moto_server on
a random 127.0.0.1 port (started and stopped by pid) for S3, EventBridge and SQS."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    """Polls ``condition()`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Moto:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        if exe is None:
            pytest.fail("moto_server is not installed in this venv: run ./scripts/test.sh")
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(answers, 30, "moto_server")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    server = Moto()
    yield server
    server.stop()


@pytest.fixture
def aws(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> Moto:
    """The standard AWS settings a user would export, pointing at moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto


def boto(service: str, moto: Moto):
    import boto3

    return boto3.client(
        service,
        endpoint_url=moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


REPO = Path(__file__).resolve().parents[2]


def logbook_binary() -> str:
    """The `logbook` binary `cargo test` built (or LOGBOOK_BIN)."""
    path = os.environ.get("LOGBOOK_BIN") or str(REPO / "target" / "debug" / "logbook")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `cargo build` (scripts/test.sh does) or set LOGBOOK_BIN")
    return path


class Served:
    """`logbook serve` on 127.0.0.1:0 over a data dir, stopped by pid."""

    def __init__(self, data: str, *args: str, env: Optional[dict] = None) -> None:
        self.proc = subprocess.Popen(
            [logbook_binary(), "--data", data, "serve", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise AssertionError(f"serve did not start: {line!r}")
        self.url = line.removeprefix("listening on ")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(params=["local", "remote"])
def mode(request) -> str:
    """Each test using it runs twice: embedded, and against a spawned `logbook serve`."""
    return request.param


@pytest.fixture
def servers() -> Iterator[dict]:
    running: dict = {}
    yield running
    for server in running.values():
        server.stop()


def _server_for(servers: dict, path: str) -> "Served":
    if path not in servers:
        servers[path] = Served(path)
    return servers[path]


@pytest.fixture
def open_tracker(mode, data_dir, servers):
    """Opens a ProgressTracker on the data dir, embedded or remote (one server per dir)."""
    from logbook import ProgressTracker

    def make(upgrade_id: str, plan_id: str = "p", cluster_name: str = "c", storage_path: Optional[str] = None, **kw):
        path = storage_path or data_dir
        if mode == "local":
            return ProgressTracker(upgrade_id, plan_id, cluster_name, storage_path=path, **kw)
        kw.pop("durability", None)
        return ProgressTracker(upgrade_id, plan_id, cluster_name, server_url=_server_for(servers, path).url, **kw)

    return make


@pytest.fixture
def open_manager(mode, data_dir, servers):
    """Opens a TestArtifactsManager on the data dir, embedded or remote (one server per dir)."""
    from logbook import TestArtifactsManager

    def make(base_directory: Optional[str] = None, **kw):
        path = base_directory or data_dir
        if mode == "local":
            return TestArtifactsManager(base_directory=path, **kw)
        return TestArtifactsManager(server_url=_server_for(servers, path).url, **kw)

    return make


os.environ.setdefault("PYTHONUNBUFFERED", "1")
