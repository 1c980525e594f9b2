"""EventBridge: a tracker with `eventbridge_bus_name` sends the lifecycle events, which reach an
SQS queue through a rule (moto)."""

from __future__ import annotations

import json

from conftest import boto, wait_for
from logbook import ProgressTracker, TaskType


def test_lifecycle_events_reach_sqs_through_a_rule(data_dir, aws):
    events = boto("events", aws)
    sqs = boto("sqs", aws)
    events.create_event_bus(Name="upgrades")
    queue = sqs.create_queue(QueueName="upgrade-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName="upgrades", EventPattern=json.dumps({"source": ["logbook"]}))
    events.put_targets(Rule="all", EventBusName="upgrades", Targets=[{"Id": "q", "Arn": arn}])

    tracker = ProgressTracker("u-1", "p", "prod", storage_path=data_dir, eventbridge_bus_name="upgrades",
                              aws_region="us-east-1")
    tracker.start_upgrade("one")
    tracker.add_task("t", "T", TaskType.VALIDATION)
    tracker.change_phase("two")
    tracker.complete_upgrade("done")
    received = []

    def drain():
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            received.append(json.loads(message["Body"]))
        return len(received) >= 3

    wait_for(drain, 60, "3 lifecycle events in SQS")
    kinds = [m["detail-type"] for m in received]
    assert kinds == ["upgrade.started", "upgrade.phase_changed", "upgrade.completed"], kinds
    assert received[0]["detail"]["upgrade_id"] == "u-1"
    tracker.close()
