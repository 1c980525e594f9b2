"""`await start_websocket_server()`: a plain WebSocket client of the original system, connecting
to ws://localhost:PORT/, gets the live events; the dashboard and HTTP API are there too."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import websockets

from conftest import free_port
from logbook import ProgressTracker, TaskType


def test_a_plain_websocket_client_gets_live_events(data_dir):
    port = free_port()
    tracker = ProgressTracker("u-1", "p", "c", storage_path=data_dir, websocket_port=port)

    async def run():
        assert await tracker.start_websocket_server() == port
        async with websockets.connect(f"ws://localhost:{port}/") as ws:
            tracker.start_upgrade("one")
            tracker.add_task("t", "T", TaskType.UPGRADE_STEP)
            frames = []
            while len(frames) < 2:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        await tracker.stop_websocket_server()
        return frames

    frames = asyncio.run(run())
    assert [f["type"] for f in frames] == ["upgrade.started", "task.added"]
    assert frames[0]["upgrade_id"] == "u-1" and "offset" in frames[0] and "ts" in frames[0]
    tracker.close()


def test_enable_websocket_serves_the_dashboard_and_views(data_dir):
    port = free_port()
    with ProgressTracker("u-1", "p", "c", storage_path=data_dir, enable_websocket=True, websocket_port=port) as tracker:
        tracker.start_upgrade("one")
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "<html" in page.lower()
        view = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/upgrades/u-1", timeout=10))
        assert view["upgrade_id"] == "u-1"
