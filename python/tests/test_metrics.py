"""`GET /metrics` parsed by the Prometheus project's Python client (an independent parser of the
OpenMetrics text format): journal counters and histograms, subscriber lag, WebSocket clients,
requests by route and status."""

from __future__ import annotations

import urllib.request

import websockets.sync.client
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import Served, wait_for
from logbook import ProgressTracker, TaskType


def scrape(url: str) -> dict:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family, **labels) -> float:
    for sample in family.samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()) and not sample.name.endswith(
            ("_bucket", "_created")
        ):
            return sample.value
    raise AssertionError(f"no sample of {family.name} with {labels}: {family.samples}")


def test_metrics_parse_and_count_what_happened(data_dir):
    server = Served(data_dir)
    try:
        tracker = ProgressTracker("u-1", "p", "c", server_url=server.url)
        tracker.start_upgrade("one")
        tracker.add_task("t", "T", TaskType.UPGRADE_STEP)
        tracker.start_task("t")
        for i in range(20):
            tracker.update_task_progress("t", i)
        host = server.url.removeprefix("http://")
        # max_queue=None: the client library stops reading (and so never sees the server's close)
        # once 16 received messages wait unread.
        with websockets.sync.client.connect(f"ws://{host}/v1/stream?from=earliest", max_queue=None) as ws:
            ws.recv(timeout=10)
            families = scrape(server.url)
            assert value(families["logbook_websocket_clients"]) == 1
        records = value(families["logbook_journal_records"], durability="sync")
        assert records == 23
        assert value(families["logbook_journal_bytes"], durability="sync") > 23 * 50
        assert value(families["logbook_journal_next_offset"]) == 23
        fsync = families["logbook_journal_fsync_seconds"]
        assert fsync.type == "histogram"
        count = [s.value for s in fsync.samples if s.name.endswith("_count")][0]
        assert count >= 1
        buckets = [s for s in fsync.samples if s.name.endswith("_bucket")]
        assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == count
        batch = families["logbook_journal_batch_records"]
        assert [s.value for s in batch.samples if s.name.endswith("_sum")][0] == 23
        lag = families["logbook_subscriber_lag_records"]
        wait_for(lambda: value(scrape(server.url)["logbook_subscriber_lag_records"], subscriber="projection") == 0,
                 what="the projection to catch up")
        assert lag.type == "gauge"
        requests = families["logbook_http_requests"]
        assert value(requests, route="/v1/events", status="200") == 23
        tracker.close()
    finally:
        server.stop()
