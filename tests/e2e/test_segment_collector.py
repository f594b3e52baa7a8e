"""An unmodified Segment SDK → the local collector (HTTP) → Kinesis → the Lambda handler → PostgreSQL."""
from __future__ import annotations

import base64

import orjson
import pytest
import requests
from segment.analytics import Client

from handlers.core.aws import client
from letgo.collector import Collector
from tests.e2e.conftest import inventory, lead_properties, pg_rows

pytestmark = pytest.mark.e2e

WRITE_KEY = "e2e-write-key"


@pytest.fixture
def collector(stage):
    with Collector(client("kinesis"), stage.names.stream, {WRITE_KEY}) as running:
        yield running


def sdk(collector, **options) -> Client:
    # sync_mode: every call is one POST /v1/batch, and a non-2xx answer raises APIError
    return Client(WRITE_KEY, host=collector.url, sync_mode=True, max_retries=0, **options)


def test_unmodified_segment_sdk_events_land_in_postgres(stage, collector):
    plain, gzipped = sdk(collector), sdk(collector, gzip=True)
    sent = {}  # messageId -> (type, userId)

    ok, msg = plain.track(user_id="u-seg-1", event="Lead",
                          properties=lead_properties(item_id="it-42", price=120.5, currency="EUR"))
    assert ok
    sent[msg["messageId"]] = ("Lead", "u-seg-1")
    ok, msg = plain.screen(user_id="u-seg-1", name="Home")
    assert ok
    sent[msg["messageId"]] = ("Screen", "u-seg-1")
    ok, msg = plain.identify(user_id="u-seg-2", traits={"email": "ana@example.com", "country": "ES"})
    assert ok
    sent[msg["messageId"]] = ("Identify", "u-seg-2")
    ok, msg = gzipped.track(user_id="u-seg-3", event="Lead", properties=lead_properties(channel="offer"))
    assert ok
    sent[msg["messageId"]] = ("Lead", "u-seg-3")
    ok, msg = gzipped.identify(user_id="u-seg-3", traits={"email": "bo@example.com", "country": "GB"})
    assert ok
    sent[msg["messageId"]] = ("Identify", "u-seg-3")

    assert stage.mapping.drain() == len(sent)  # one Kinesis record per SDK request
    rows = pg_rows(stage)
    assert {mid: (kind, user) for mid, kind, user, _ in rows} == sent
    by_id = {mid: props for mid, _, _, props in rows}
    screen_id = next(m for m, (kind, _) in sent.items() if kind == "Screen")
    assert by_id[screen_id]["name"] == "Home"
    identify_id = next(m for m, (kind, user) in sent.items() if kind == "Identify" and user == "u-seg-2")
    assert by_id[identify_id]["country"] == "ES"

    inv = inventory(stage)
    assert inv.quarantined == 0 and inv.quarantined_by_reason == {}
    assert inv.postgres_by_type == {"Lead": 2, "Screen": 1, "Identify": 2}
    assert inv.archived == len(sent) and inv.firehose_distinct == inv.firehose_records == len(sent)
    assert not stage.sentry_path.exists()  # no rejection, no alert


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
            "Content-Type": "application/json"}


def test_wrong_write_key_is_refused_and_puts_nothing_on_the_stream(stage, collector):
    batch = orjson.dumps({"batch": [{"type": "track", "event": "Lead", "userId": "u-x", "messageId": "m-x",
                                     "properties": lead_properties()}]})
    track = orjson.dumps({"event": "Lead", "userId": "u-x", "messageId": "m-y", "properties": lead_properties()})
    answers = [
        requests.post(f"{collector.url}/v1/batch", data=batch, headers=_basic("wrong-key"), timeout=10),
        requests.post(f"{collector.url}/v1/track", data=track, headers=_basic("wrong-key"), timeout=10),
        requests.post(f"{collector.url}/v1/batch", data=batch, headers={"Content-Type": "application/json"},
                      timeout=10),
        requests.post(f"{collector.url}/v1/batch", data=batch, headers=_basic(WRITE_KEY[:-1]), timeout=10),
    ]
    assert [a.status_code for a in answers] == [401, 401, 401, 401]
    assert all(a.json() == {"error": "invalid write key"} for a in answers)

    assert stage.mapping.drain() == 0  # nothing reached the stream
    inv = inventory(stage)
    assert (inv.archived, inv.postgres_rows, inv.quarantined) == (0, 0, 0)

    # and the right key on the same collector still works (the refusal was about the key only)
    good = requests.post(f"{collector.url}/v1/batch", data=batch, headers=_basic(WRITE_KEY), timeout=10)
    assert good.status_code == 200 and good.json() == {"success": True}
    assert stage.mapping.drain() == 1
