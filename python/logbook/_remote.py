"""Remote mode: the engine's operations over HTTP against a running ``logbook serve``, with the
same behaviour and the same errors as the embedded engine (refusals come back as
``{"code", "reason"}`` and are raised as `RefusedError`). Standard library only; live callbacks
use the ``websockets`` package when it is installed.

One keep-alive connection per thread; artifact files are streamed (chunked multipart), never
read whole into memory."""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
import urllib.parse
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional

from . import _native
from ._views import from_us

__all__ = ["RemoteEngine"]

_CHUNK = 1 << 20


def _error(status: int, body: bytes) -> Exception:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {"error": body.decode("utf-8", "replace")}
    code = payload.get("code")
    reason = payload.get("reason") or payload.get("error") or f"HTTP {status}"
    refused = code is not None and status < 500 and code not in ("s3",)
    error = (_native.RefusedError if refused else _native.LogbookError)(reason)
    if code is None and status == 503:
        code = "unavailable"
    error.code = code
    error.reason = reason
    return error


class RemoteEngine:
    """The subset of the native `Engine` the tracker and the manager use, over HTTP."""

    def __init__(self, server_url: str, token: Optional[str] = None, timeout: float = 60.0) -> None:
        url = urllib.parse.urlsplit(server_url)
        if url.scheme != "http" or not url.hostname:
            raise _native.RefusedError(f"server_url must be http://HOST:PORT, not {server_url!r}")
        self._host = url.hostname
        self._port = url.port or 80
        self._base = url.path.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._local = threading.local()
        self._closed = False
        self._listeners: List[threading.Thread] = []
        self._stop = threading.Event()
        self.path = server_url
        self.next_offset()  # fails now, clearly, if the server is not there

    # -- HTTP -----------------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def _headers(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        headers = dict(extra or {})
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _send(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
              chunked: bool = False) -> "tuple[int, bytes]":
        """One request on this thread's kept-alive connection; (status, body)."""
        if self._closed:
            error = _native.LogbookError("this Logbook is closed")
            error.code, error.reason = "closed", "this Logbook is closed"
            raise error
        for attempt in (1, 2):
            conn = self._connection()
            try:
                try:
                    conn.request(method, self._base + path, body=body, headers=self._headers(headers),
                                 encode_chunked=chunked)
                except (BrokenPipeError, ConnectionResetError):
                    # The server answered (a refusal) before the whole upload was sent: read it.
                    if not chunked:
                        raise
                response = conn.getresponse()
                data = response.read()
                if chunked:
                    conn.close()
                    self._local.conn = None
                return response.status, data
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                conn.close()
                self._local.conn = None
                # A kept-alive connection the server closed meanwhile: once more, on a new one
                # (only for requests that can be sent again: not a streamed upload).
                if attempt == 2 or chunked:
                    error = _native.LogbookError(f"cannot reach {self.path}: {e}")
                    error.code, error.reason = "unreachable", str(e)
                    raise error from e
        raise AssertionError("unreachable")

    def _request(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
                 chunked: bool = False) -> Any:
        status, data = self._send(method, path, body, headers, chunked)
        if status >= 400:
            raise _error(status, data)
        return json.loads(data) if data else None

    # -- the journal ----------------------------------------------------------------------------

    def next_offset(self) -> int:
        return self._request("GET", "/v1/health")["next_offset"]

    def record(self, event: str) -> int:
        return self._post_line(event)

    def _post_line(self, line: str) -> int:
        status, data = self._send("POST", "/v1/events", line.encode() + b"\n",
                                  {"Content-Type": "application/x-ndjson"})
        report = json.loads(data) if data and status in (200, 400) else {}
        if report.get("refused"):
            refused = report["refused"][0]
            error = _native.RefusedError(refused["reason"])
            error.code = refused.get("code") or "invalid"
            error.reason = refused["reason"]
            raise error
        if report.get("offsets"):
            return report["offsets"][0]
        if report.get("already_recorded"):
            return report["already_recorded"][0]["offset"]
        raise _error(status, data)

    def progress(self, upgrade_id: str, task_id: str, percentage: float, message: Optional[str] = None,
                 details: Optional[str] = None) -> int:
        if not math.isfinite(percentage):
            # JSON has no NaN or infinity: refused here as the engine refuses it.
            error = _native.RefusedError(f"percentage: must be a finite number, found {percentage}")
            error.code, error.reason = "out_of_range", str(error)
            raise error
        event: Dict[str, Any] = {"type": "task.progress", "upgrade_id": upgrade_id, "task_id": task_id,
                                 "percentage": percentage}
        if message is not None:
            event["message"] = message
        if details is not None:
            event["details"] = json.loads(details)
        return self._post_line(json.dumps(event))

    def upgrade(self, upgrade_id: str) -> Optional[str]:
        try:
            view = self._request("GET", "/v1/upgrades/" + urllib.parse.quote(upgrade_id, safe=""))
        except _native.LogbookError as e:
            if getattr(e, "code", None) in ("unknown_upgrade",) or "unknown upgrade" in str(e):
                return None
            raise
        return json.dumps(view)

    # -- artifacts ------------------------------------------------------------------------------

    def add_artifact(self, session_id: str, collection_id: str, artifact_id: str, path: str,
                     artifact_type: str, tags: List[str], task_id: Optional[str] = None,
                     description: Optional[str] = None, file_name: Optional[str] = None) -> str:
        if not os.path.isfile(path):
            error = _native.RefusedError(f"{path} is not a regular file")
            error.code, error.reason = "invalid", f"{path} is not a regular file"
            raise error
        boundary = uuid.uuid4().hex
        fields = {
            "session_id": session_id,
            "collection_id": collection_id,
            "artifact_id": artifact_id,
            "artifact_type": artifact_type,
            "task_id": task_id,
            "description": description,
        }
        name = file_name or os.path.basename(path)

        def parts() -> Iterator[bytes]:
            for key, value in fields.items():
                if value is not None:
                    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n"
                           f"{value}\r\n").encode()
            for tag in tags:
                yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\n"
                       f"{tag}\r\n").encode()
            quoted = name.replace("\\", "\\\\").replace('"', '\\"')
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{quoted}\"\r\n"
                   "Content-Type: application/octet-stream\r\n\r\n").encode()
            with open(path, "rb") as source:
                while True:
                    chunk = source.read(_CHUNK)
                    if not chunk:
                        break
                    yield chunk
            yield f"\r\n--{boundary}--\r\n".encode()

        view = self._request("POST", "/v1/artifacts", parts(),
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"}, chunked=True)
        return json.dumps(view)

    def artifact(self, artifact_id: str) -> Optional[str]:
        try:
            return json.dumps(self._request("GET", "/v1/artifacts/" + urllib.parse.quote(artifact_id, safe="")))
        except _native.LogbookError as e:
            if getattr(e, "code", None) == "unknown_artifact":
                return None
            raise

    def artifact_path(self, artifact_id: str) -> Optional[str]:
        return None  # the file is in the server's store

    def search(self, session_id=None, artifact_type=None, tags=None, any_tag=False, task_id=None, status=None,
               min_size=None, max_size=None, since_us=None, until_us=None, name=None, text=None,
               limit=None) -> str:
        query: List[tuple] = []

        def add(key: str, value: Any) -> None:
            if value is not None:
                query.append((key, str(value)))

        add("session", session_id)
        add("type", artifact_type)
        if tags:
            add("any_tag" if any_tag else "tag", ",".join(tags))
        add("task", task_id)
        add("status", status)
        add("min_size", min_size)
        add("max_size", max_size)
        for key, us in (("since", since_us), ("until", until_us)):
            if us is not None:
                add(key, from_us(us).isoformat().replace("+00:00", "Z"))
        add("name", name)
        add("text", text)
        add("limit", limit)
        found = self._request("GET", "/v1/artifacts?" + urllib.parse.urlencode(query))
        return json.dumps(found["artifacts"])

    def statistics(self) -> str:
        return json.dumps(self._request("GET", "/v1/statistics"))

    def apply_retention(self) -> List[str]:
        return self._request("POST", "/v1/retention", b"")["deleted"]

    def upload_artifact(self, artifact_id: str) -> str:
        quoted = urllib.parse.quote(artifact_id, safe="")
        return json.dumps(self._request("POST", f"/v1/artifacts/{quoted}/upload", b""))

    def presigned_url(self, artifact_id: str, expires_in: float) -> str:
        quoted = urllib.parse.quote(artifact_id, safe="")
        return self._request("GET", f"/v1/artifacts/{quoted}/url?expires_in={int(expires_in)}")["url"]

    # -- callbacks and the server ----------------------------------------------------------------

    def on_record(self, name: str, callback: Callable[[str], Any], from_offset: Optional[int] = None) -> None:
        try:
            from websockets.sync.client import connect
        except ImportError as e:  # pragma: no cover - depends on the environment
            error = _native.LogbookError("remote callbacks need the websockets package (pip install websockets)")
            error.code, error.reason = "unsupported", str(error)
            raise error from e
        start = "latest" if from_offset is None else str(from_offset)
        uri = f"ws://{self._host}:{self._port}{self._base}/v1/stream?from={start}"
        headers = self._headers()
        # Connected before returning, so every event recorded after this call is delivered.
        ws = connect(uri, additional_headers=headers, open_timeout=self._timeout)

        def listen() -> None:
            with ws:
                while not self._stop.is_set():
                    try:
                        message = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    except Exception:  # noqa: BLE001 - the stream ended
                        return
                    try:
                        callback(message)
                    except Exception:  # noqa: BLE001 - isolated, as in the engine
                        import logging

                        logging.getLogger("logbook").exception("a Logbook callback raised")

        thread = threading.Thread(target=listen, name=f"logbook-remote-{name}", daemon=True)
        thread.start()
        self._listeners.append(thread)

    def start_server(self, host: str, port: int, token: Optional[str] = None) -> int:
        return self._port  # the remote server already serves the stream, API and dashboard

    def stop_server(self) -> None:
        return None

    def server_port(self) -> Optional[int]:
        return self._port

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        for thread in self._listeners:
            thread.join(timeout=5)
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    @property
    def closed(self) -> bool:
        return self._closed
