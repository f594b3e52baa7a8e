"""Chaos on the local stage: every record ends in exactly one place whatever fails, and nothing is repeated.

Each case sends realistic traffic (letgo.traffic: natives, Segment calls and batches, gzip, ~2 % malformed,
~1 % re-sent) on a stream of its own, breaks something for real while the consumer runs, and ends with the
audit of tests/chaos/kit.py. Real faults wherever they can be produced: PostgreSQL is stopped with
``pg_ctl -m immediate`` (a crash) and started again on the same port, the consumer process is SIGKILLed.
Two faults are fakes because nothing real produces them here, each says so: a frozen S3 (a relay that stops
relaying; moto serves all of AWS from one process) and Firehose refusing some entries (moto cannot).
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from handlers.core.aws import client, reset_clients
from handlers.tracking import lambda_consumer
from letgo.recover import local_recoveries
from letgo.traffic import TrafficRecord, generate
from tests.chaos.kit import FreezableRelay, audit, case_stream, mapping_for, put
from tests.functional.test_event_path import FlakyFirehose

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def chaos_stage(stage):
    """The session's local stage, emptied, with every on-failure queue empty too and PostgreSQL running after."""
    sqs = client("sqs")
    for url in stage.queue_urls.values():  # (PurgeQueue is limited to once a minute per queue)
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    yield stage
    if not stage.postgres.running():
        stage.postgres.start()
    lambda_consumer.reset()


def traffic(n: int, seed: int) -> list[TrafficRecord]:
    return generate(n, seed=seed, now=datetime.now(timezone.utc)).records


def when_delivered(mapping, count: int, action, timeout: float = 60) -> threading.Thread:
    """Run ``action`` in the background once the mapping has delivered ``count`` records (mid-stream)."""
    def run() -> None:
        deadline = time.monotonic() + timeout
        while mapping.stats.records_delivered < count and time.monotonic() < deadline:
            time.sleep(0.01)
        action()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_postgres_stopped_immediately_mid_stream_for_30_seconds(chaos_stage, ledger):
    stage, records = chaos_stage, traffic(3000, seed=11)
    stream = case_stream()
    put(stream, records)
    mapping = mapping_for(stage, stream)
    seen: dict[str, int] = {}

    def outage() -> None:
        seen["delivered_at_stop"] = mapping.stats.records_delivered
        stage.postgres.stop("immediate")  # a crash: sessions cut mid-transaction, WAL recovery on start
        time.sleep(30)
        stage.postgres.start()  # same folder, same port

    thread = when_delivered(mapping, 500, outage)
    mapping.drain()
    thread.join()
    result = ledger(audit("postgres-stopped-30s", stage, records))
    assert 0 < seen["delivered_at_stop"] < len(records)  # really mid-stream
    assert mapping.stats.waits > 0 and mapping.stats.waited_seconds >= 25  # the shard waited the outage out
    assert mapping.stats.function_errors == mapping.stats.bisects == mapping.stats.sent_to_on_failure == 0
    assert result.ok, result.details


def test_postgres_down_past_the_retry_budget_then_letgo_recover(chaos_stage, ledger, capsys):
    stage, records = chaos_stage, traffic(1500, seed=12)
    stream = case_stream()
    put(stream, records)
    mapping = mapping_for(stage, stream, maximum_record_age_seconds=6)  # the stage's budget, made short
    stage.postgres.stop("immediate")
    try:
        mapping.drain()
    finally:
        stage.postgres.start()
    assert mapping.stats.sent_to_on_failure == len(records)  # every batch gave up: coordinates queued
    assert "giving up" in capsys.readouterr().out  # and the console said so

    info = {"stream": stream, "queues": stage.queue_urls, "env": {"RAW_BUCKET": stage.names.raw_bucket,
                                                                 "DATABASE_URL": stage.postgres.dsn}}
    [(_name, dry)] = local_recoveries(info, ["consumer"], say=print)
    planned = dry.run(dry_run=True)
    assert planned.messages > 0 and len(planned.plan) == planned.messages and planned.recovered == 0
    assert planned.records == len(records) and planned.from_kinesis == len(records)

    [(_name, recovery)] = local_recoveries(info, ["consumer"], say=print)
    report = recovery.run()
    assert (report.messages, report.recovered, report.left, report.problems) == (planned.messages,
                                                                              planned.messages, 0, [])
    [(_name, again)] = local_recoveries(info, ["consumer"], say=print)
    assert again.run().messages == 0  # twice = once: the queue is empty, nothing re-delivered
    result = ledger(audit("postgres-down-then-recover", stage, records))
    assert result.ok, result.details


def test_s3_frozen_mid_stream(chaos_stage, ledger, monkeypatch):
    stage, records = chaos_stage, traffic(2000, seed=13)
    stream = case_stream()
    put(stream, records)
    host, port = stage.moto.url.removeprefix("http://").split(":")
    with FreezableRelay(host, int(port)) as relay:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", relay.url)  # only S3 goes through the relay (botocore honours it)
        reset_clients()
        lambda_consumer.reset()
        mapping = mapping_for(stage, stream)
        thawed_after: dict[str, float] = {}

        def freeze() -> None:
            relay.freeze()
            started = time.monotonic()
            time.sleep(15)
            relay.thaw()
            thawed_after["seconds"] = time.monotonic() - started

        thread = when_delivered(mapping, 400, freeze)
        mapping.drain()
        thread.join()
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    reset_clients()
    lambda_consumer.reset()
    # a held request may reach S3 after the client gave up on it: a quarantine object it creates is one the
    # retry finds, so that record's Sentry report can be lost (at most once, never twice) — hence the flag
    result = ledger(audit("s3-frozen-15s", stage, records, alerts_may_be_missing=True))
    assert thawed_after["seconds"] >= 15
    assert mapping.stats.function_errors == mapping.stats.sent_to_on_failure == 0
    assert result.ok, result.details


def test_firehose_refusing_entries(chaos_stage, ledger):
    stage, records = chaos_stage, traffic(2000, seed=14)
    stream = case_stream()
    put(stream, records)
    consumer = lambda_consumer.get_consumer()
    # FlakyFirehose is a fake: moto cannot make PutRecordBatch refuse only some entries. It refuses every
    # third entry of its first 40 calls, more than the sink's own entry retries absorb.
    consumer.warehouse.firehose = FlakyFirehose(consumer.warehouse.firehose, failing_calls=40)
    consumer.warehouse.sleep = lambda _s: None
    mapping = mapping_for(stage, stream)
    mapping.drain()
    result = ledger(audit("firehose-partial-failures", stage, records))
    assert consumer.warehouse.firehose.calls > 40 and mapping.stats.waits > 0  # refusals reached the mapping
    assert mapping.stats.function_errors == mapping.stats.sent_to_on_failure == 0
    assert result.ok, result.details


def _poison() -> list[TrafficRecord]:
    """Records the parser and the checks choke on, each with its expected verdict."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def lead(message_id: str, **properties) -> dict:
        return {"type": "Lead", "messageId": message_id, "userId": "u-poison", "timestamp": now,
                "context": {"app": {"version": "9.9.9"}},
                "properties": {"item_id": "it-1", "seller_id": "u-2", "category": "bikes", "channel": "chat",
                               **properties}}

    deep = b'{"type":"Lead","messageId":"deep","userId":"u","timestamp":"' + now.encode() + \
        b'","properties":{"item_id":' + b"[" * 2000 + b"]" * 2000 + b"}}"
    bomb = gzip.compress(b'{"type":"Lead","pad":"' + b" " * (3 * 1024 * 1024) + b'"}')
    huge = orjson.dumps(lead("huge-int")).replace(b'"channel":"chat"', b'"channel":"chat","offer_amount":1' +
                                                 b"0" * 400)
    bug = orjson.dumps(lead("bug-in-a-check", channel="offer", offer_amount=13.13, currency="EUR"))
    return [
        TrafficRecord("p1", deep, 1, {"rejected:too_deep": 1}),
        TrafficRecord("p2", bomb, 1, {"rejected:record_too_large": 1}),
        TrafficRecord("p3", b"\xef\xbb\xbf" + orjson.dumps(lead("with-a-bom")), 1, {"valid": 1}),
        TrafficRecord("p4", huge, 1, {"rejected:out_of_range": 1}),
        TrafficRecord("p5", b"\x82" + random.Random(5).randbytes(300), 1, {"rejected:invalid_utf8": 1}),
        TrafficRecord("p6", bug, 1, {"rejected:internal_error": 1}),
    ]


def test_poison_records_in_the_middle_of_batches(chaos_stage, ledger, monkeypatch):
    stage, good = chaos_stage, traffic(600, seed=15)
    poison = _poison()
    records = good[:200] + poison[:3] + good[200:400] + poison[3:] + good[400:]
    stream = case_stream(shards=1)  # one shard: the poison really sits between good records of the same batches
    put(stream, records)
    consumer = lambda_consumer.get_consumer()
    lead_type = consumer.processor.catalog.types["Lead"]
    real_check = lead_type.check

    def check_with_a_bug(properties):
        # A fake, on purpose: a bug inside a compiled check cannot be produced with the real, tested checks.
        # It raises for one marked value only, to prove such a bug quarantines that record and nothing else.
        if properties.get("offer_amount") == 13.13:
            raise ZeroDivisionError("a bug in a compiled check")
        return real_check(properties)

    monkeypatch.setitem(consumer.processor.catalog.types, "Lead",
                        dataclasses.replace(lead_type, check=check_with_a_bug))
    consumer.processor.fast = None  # the fast path would accept the marked event before the (buggy) check
    mapping = mapping_for(stage, stream)
    mapping.drain()
    result = ledger(audit("poison-records", stage, records))
    assert mapping.stats.function_errors == mapping.stats.bisects == mapping.stats.waits == 0
    assert result.ok, result.details
    internal = [line for line in _quarantine(stage) if line["reason"] == "internal_error"]
    assert len(internal) == 1 and "ZeroDivisionError" in internal[0]["message"]


def _quarantine(stage):
    from tests.stage_kit import quarantine_lines
    return quarantine_lines(stage)


def test_consumer_process_killed_mid_batch_and_restarted(chaos_stage, ledger, tmp_path):
    stage, records = chaos_stage, traffic(4000, seed=16)
    stream = case_stream()
    put(stream, records)
    checkpoint = tmp_path / "checkpoints.json"
    command = [sys.executable, "-m", "tests.chaos.consumer_process", stream, stage.queue_urls["consumer"],
               str(checkpoint)]
    env = {**os.environ}
    rng = random.Random(16)
    kills = 0
    for _ in range(3):  # three SIGKILLs at random moments, each after the consumer made some progress
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        before = checkpoint.read_bytes() if checkpoint.exists() else b""
        deadline = time.monotonic() + 60
        while (not checkpoint.exists() or checkpoint.read_bytes() == before) and time.monotonic() < deadline:
            time.sleep(0.05)  # wait for a first batch of this run (imports take a while)
        time.sleep(rng.uniform(0.05, 1.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(30)
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert kills >= 2  # the consumer really died mid-stream
    # the documented window: a kill between Firehose's answer and PostgreSQL's commit re-sends that batch's
    # new events to Firehose (the warehouse de-duplicates on messageId); at most one batch of 50 per kill
    result = ledger(audit("consumer-killed", stage, records, firehose_copies_allowed=50 * kills,
                          alerts_may_be_missing=True))
    assert result.ok, result.details
    assert orjson.loads(checkpoint.read_bytes())  # the mapping's position survived every kill


def test_chaos_audit_can_fail(chaos_stage):
    """The audit is not a rubber stamp: a row removed behind the consumer's back is reported as lost, and a
    quarantine line written twice as duplicated."""
    import psycopg

    from handlers.tracking.sinks.s3objects import Quarantine, gzip_lines

    stage, records = chaos_stage, traffic(300, seed=17)
    stream = case_stream()
    put(stream, records)
    mapping_for(stage, stream).drain()
    assert audit("clean", stage, records).ok
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM events WHERE message_id = (SELECT min(message_id) FROM events)")
    quarantine = Quarantine(client("s3"), stage.names.quarantine_bucket, "quarantine")
    key = next(iter(quarantine.keys()))
    quarantine.s3.put_object(Bucket=stage.names.quarantine_bucket, Key=key + ".copy.jsonl.gz",
                             Body=gzip_lines(quarantine.read(key)))
    broken = audit("broken", stage, records)
    assert broken.lost >= 1 and broken.duplicated >= 1 and not broken.ok
