"""A new event type arrives before its YAML: quarantined, then re-driven once the YAML is added."""
from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

import orjson
import pytest

from handlers.core.aws import client
from handlers.schema.event_types import load_catalog
from handlers.tracking import lambda_consumer
from handlers.tracking.processor import Processor
from handlers.tracking.settings import load_settings
from handlers.tracking.sinks.s3objects import Quarantine
from letgo.redrive import redrive
from tests.e2e.conftest import inventory, lead_properties, native, now_iso, pg_rows, quarantine_lines, send

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

ITEM_REPORTED_YAML = """\
name: ItemReported
version: 1
description: A user reported a listing as spam, a scam or prohibited.
owner: trust-safety-team
properties:
  item_id: {shared: item_id, required: true}
  reason: {type: enum, values: [spam, scam, prohibited, duplicate, offensive], required: true}
  comment: {type: string, max_length: 500}
"""


@pytest.fixture
def event_types(tmp_path, monkeypatch, stage):
    """The consumer reads a copy of event_types/ that the test can change (as a deploy would)."""
    directory = tmp_path / "event_types"
    shutil.copytree(REPO / "event_types", directory)
    monkeypatch.setenv("EVENT_TYPES_DIR", str(directory))
    lambda_consumer.reset()
    yield directory
    lambda_consumer.reset()


def add_item_reported(directory: Path) -> None:
    (directory / "ItemReported.yaml").write_text(ITEM_REPORTED_YAML, encoding="utf-8")
    lambda_consumer.reset()  # the "deploy": a new container loads the new YAML


def run_redrive(stage, directory: Path):
    return redrive(Quarantine(client("s3"), stage.names.quarantine_bucket, "quarantine"),
                   Processor(load_catalog(directory), load_settings()), client("kinesis"), stage.names.stream)


def item_reported(message_id: str, reason: str = "spam") -> bytes:
    return native("ItemReported", {"item_id": f"it-{message_id[:8]}", "reason": reason}, message_id=message_id)


def pg_count_by_id(stage) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message_id, *_ in pg_rows(stage):
        counts[message_id] = counts.get(message_id, 0) + 1
    return counts


def test_unknown_type_is_quarantined_then_redriven_exactly_once_after_the_yaml_is_added(stage, event_types):
    reported = [str(uuid.uuid4()) for _ in range(5)]
    leads = [str(uuid.uuid4()) for _ in range(3)]
    screen = str(uuid.uuid4())
    # three native events, and two more inside one Segment batch (with a valid Screen next to them)
    segment_batch = orjson.dumps({"sentAt": now_iso(), "context": {"library": {"name": "analytics-ios"}}, "batch": [
        {"type": "track", "event": "ItemReported", "userId": "u-9", "messageId": mid, "timestamp": now_iso(),
         "properties": {"item_id": "it-77", "reason": "scam"}} for mid in reported[3:]] + [
        {"type": "screen", "name": "Home", "userId": "u-9", "messageId": screen, "timestamp": now_iso()}]})
    send(stage, [item_reported(mid) for mid in reported[:3]] + [segment_batch] +
         [native("Lead", lead_properties(), message_id=mid) for mid in leads])
    stage.mapping.drain()

    inv = inventory(stage)
    assert inv.quarantined == 5 and inv.quarantined_by_reason == {"unknown_event_type": 5}
    assert {line["eventType"] for line in quarantine_lines(stage)} == {"ItemReported"}
    assert inv.postgres_by_type == {"Lead": 3, "Screen": 1}

    # WHEN the event type is defined and the quarantine re-driven
    add_item_reported(event_types)
    report = run_redrive(stage, event_types)
    assert (report.redriven, report.still_invalid, report.still_invalid_by_reason) == (5, 0, {})
    assert stage.mapping.drain() == 5

    # THEN every reported item is in PostgreSQL exactly once and the quarantine is empty
    counts = pg_count_by_id(stage)
    assert {mid: counts.get(mid) for mid in reported} == {mid: 1 for mid in reported}
    assert sorted(counts) == sorted(reported + leads + [screen]) and set(counts.values()) == {1}
    inv = inventory(stage)
    assert inv.quarantined == 0 and quarantine_lines(stage) == []
    assert inv.postgres_by_type == {"ItemReported": 5, "Lead": 3, "Screen": 1}
    assert inv.firehose_distinct == inv.firehose_records == 9
    types = {mid: (kind, props) for mid, kind, _, props in pg_rows(stage)}
    assert types[reported[4]] == ("ItemReported", {"item_id": "it-77", "reason": "scam"})

    # AND re-driving again is a no-op
    again = run_redrive(stage, event_types)
    assert (again.objects, again.redriven, again.still_invalid) == (0, 0, 0)
    assert stage.mapping.drain() == 0
    assert pg_count_by_id(stage) == counts


def test_events_still_invalid_after_the_fix_stay_quarantined(stage, event_types):
    fixable = [str(uuid.uuid4()) for _ in range(2)]
    bad_enum, bad_price = str(uuid.uuid4()), str(uuid.uuid4())
    send(stage, [item_reported(mid) for mid in fixable] + [item_reported(bad_enum, reason="because")] +
         [native("Lead", lead_properties(price=-1), message_id=bad_price)])
    stage.mapping.drain()
    assert inventory(stage).quarantined_by_reason == {"unknown_event_type": 3, "out_of_range": 1}

    add_item_reported(event_types)
    report = run_redrive(stage, event_types)
    assert report.redriven == 2 and report.still_invalid == 2
    assert report.still_invalid_by_reason == {"not_in_enum": 1, "out_of_range": 1}
    stage.mapping.drain()

    assert sorted(pg_count_by_id(stage).items()) == sorted((mid, 1) for mid in fixable)
    left = {orjson.loads(base64.b64decode(line["raw"]))["messageId"]: line
            for line in quarantine_lines(stage)}
    assert sorted(left) == sorted([bad_enum, bad_price])
    assert (left[bad_price]["reason"], left[bad_price]["field"]) == ("out_of_range", "properties.price")
    assert left[bad_enum]["eventType"] == "ItemReported"

    # a second re-drive changes nothing: the same two stay, nothing new reaches PostgreSQL
    again = run_redrive(stage, event_types)
    assert (again.redriven, again.still_invalid) == (0, 2)
    assert stage.mapping.drain() == 0
    assert len(quarantine_lines(stage)) == 2 and len(pg_rows(stage)) == 2


def test_still_invalid_line_is_requarantined_with_its_current_reason(stage, event_types):
    bad_enum = str(uuid.uuid4())
    send(stage, [item_reported(bad_enum, reason="because")])
    stage.mapping.drain()
    add_item_reported(event_types)
    run_redrive(stage, event_types)
    [line] = quarantine_lines(stage)
    assert (line["reason"], line["field"]) == ("not_in_enum", "properties.reason")


def test_redrive_counts_each_quarantined_unit_once_even_when_old_objects_repeat_it(stage, event_types):
    """Objects written before quarantine keys were per record could hold the same line twice (a bisected
    sub-batch): re-drive counts and re-sends distinct (shard, sequence number, index) units only."""
    from handlers.tracking.sinks.s3objects import gzip_lines

    send(stage, [item_reported(str(uuid.uuid4())) for _ in range(3)])
    stage.mapping.drain()
    lines = quarantine_lines(stage)
    assert len(lines) == 3
    s3 = client("s3")
    s3.put_object(Bucket=stage.names.quarantine_bucket, Key="quarantine/dt=2026-01-01/old/1-9.jsonl.gz",
                  Body=gzip_lines(lines))  # the same three units again, as a legacy per-batch object
    assert run_redrive(stage, event_types).still_invalid == 3  # not 6: the YAML is still missing
    add_item_reported(event_types)
    report = run_redrive(stage, event_types)
    assert (report.redriven, report.still_invalid) == (3, 0)
    stage.mapping.drain()
    assert len(pg_count_by_id(stage)) == 3 and quarantine_lines(stage) == []
