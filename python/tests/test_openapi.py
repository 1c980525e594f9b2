"""`/v1/openapi.json` (generated from the code) checked by schemathesis against a running
`logbook serve`: generated requests for every operation (bounded examples, fixed seed) give no
5xx, and every answer matches the document (status codes, content types, body schemas,
headers)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import Served


def test_the_document_is_openapi_3_1_and_lists_every_route(data_dir):
    server = Served(data_dir)
    try:
        doc = json.load(urllib.request.urlopen(server.url + "/v1/openapi.json", timeout=10))
    finally:
        server.stop()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) >= {
        "/", "/metrics", "/v1/health", "/v1/events", "/v1/upgrades", "/v1/upgrades/{id}",
        "/v1/sessions", "/v1/sessions/{id}", "/v1/sessions/{id}/collections", "/v1/artifacts",
        "/v1/artifacts/{id}", "/v1/artifacts/{id}/download", "/v1/artifacts/{id}/upload",
        "/v1/artifacts/{id}/url", "/v1/statistics", "/v1/retention", "/v1/stream", "/v1/openapi.json",
    }
    assert "ErrorBody" in doc["components"]["schemas"]
    assert "UpgradeView" in doc["components"]["schemas"]


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(data_dir):
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe, "schemathesis is not installed in this venv: run ./scripts/test.sh"
    server = Served(data_dir)
    try:
        # Something to find: an upgrade, a session, an artifact.
        events = [
            {"type": "upgrade.started", "upgrade_id": "u-1", "plan_id": "p", "cluster_name": "c", "phase": "one"},
            {"type": "session.created", "session_id": "s-1", "upgrade_id": "u-1", "cluster_name": "c"},
        ]
        body = "\n".join(json.dumps(e) for e in events).encode()
        urllib.request.urlopen(urllib.request.Request(server.url + "/v1/events", data=body), timeout=10)
        run = subprocess.run(
            [exe, "run", server.url + "/v1/openapi.json", "--max-examples", "25", "--seed", "1",
             "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                         "response_schema_conformance,response_headers_conformance",
             "--no-color"],
            capture_output=True, text=True, timeout=600,
        )
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_a_huge_search_limit_is_not_a_server_error(data_dir):
    # Found by schemathesis: LIMIT 9223372036854775808 made SQLite refuse the query (a 503).
    server = Served(data_dir)
    try:
        answer = urllib.request.urlopen(server.url + "/v1/artifacts?limit=9223372036854775808", timeout=10)
        assert answer.status == 200
    finally:
        server.stop()
