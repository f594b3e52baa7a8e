"""Benchmark: the model serving wrapper vs a bare Flask JSON endpoint, requests per second, same run.

The candidate is the shipped price model served by :func:`handlers.ml.serving.app.create_app` — strict input
reading and validation, canary routing, the model's prediction, the guard rails, counters — loaded from a real
model store (moto server) after a real training on generated listings, made live as the validator would. Two
variants of it: the change limit's memory in the process (``serving``), and shared by the fleet in a real
PostgreSQL server (``serving_shared``: one upsert per answer, what the local stage runs; DynamoDB on AWS costs a
read and a conditional write per answer instead). The baseline is the thinnest Flask endpoint that still parses
and answers JSON: what any HTTP API pays anyway. All are driven in-process through Werkzeug's test client (no
sockets), with the same rotating request bodies, so the ratios measure the wrapper, the model and the shared
memory rather than the network; the shared memory's cost per answer is reported in microseconds.
"""
from __future__ import annotations

import base64
import time
from datetime import datetime, timezone
from typing import Any

from flask import Flask, jsonify, request

from bench.timing import alternate, progress
from handlers.core.kinesis import RawRecord
from handlers.tracking.processor import Processor
from letgo import REPO_ROOT

REQUESTS = 2000


def _listing_rows(processor: Processor, definition: Any, n_events: int) -> tuple[Any, Any]:
    """Training data from generated traffic: the valid ItemListed events, as the training job's loader sees them."""
    import numpy as np

    from handlers.ml.data import row_of
    from handlers.ml.dataset import Dataset
    from letgo.traffic import generate

    plan = generate(n_events, seed=3, now=datetime.now(timezone.utc), malformed_share=0.0)
    records = [RawRecord(str(i), r.partition_key, base64.b64encode(r.data).decode(), time.time(), "shard-0")
               for i, r in enumerate(plan.records)]
    events = [e for i in range(0, len(records), 500) for e in processor.process(records[i:i + 500]).events
              if e.type == "ItemListed"]
    rows = [row_of(e.to_document(), definition.data) for e in events]
    data = Dataset.from_rows(rows, definition.data.kinds)
    labels = np.asarray([definition.data.label.derive(row) for row in rows], dtype=float)
    return data, labels


def run(processor: Processor, rounds: int, *, requests_per_round: int = REQUESTS) -> dict[str, Any]:
    import os
    import shutil
    import tempfile
    from pathlib import Path

    import boto3

    from bench.timing import unpinned
    from handlers.ml.artifacts import dumps
    from handlers.ml.definition import load_definition
    from handlers.ml.serving.app import create_app
    from handlers.ml.serving.config import ServingConfig
    from handlers.ml.serving.memory import PostgresMemory
    from handlers.ml.store import ModelStore
    from letgo.services.moto import FAKE_CREDENTIALS, MotoServer
    from letgo.services.postgres import PostgresServer

    definition = load_definition(REPO_ROOT / "models" / "price_suggestion.yaml")
    progress("training the price model on generated listings")
    data, labels = _listing_rows(processor, definition, 60_000)
    artefact = definition.train(data, labels, definition, seed=1)
    base = REPO_ROOT / ".local" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pg-serving-", dir=base))
    try:
        with unpinned(set(range(os.cpu_count() or 1))):  # the servers are other machines in production
            moto, postgres = MotoServer().start(), PostgresServer(workdir).start()
        try:
            s3 = boto3.session.Session(aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                       aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                       region_name=FAKE_CREDENTIALS["AWS_REGION"]).client("s3",
                                                                                          endpoint_url=moto.url)
            s3.create_bucket(Bucket="bench-models",
                             CreateBucketConfiguration={"LocationConstraint": FAKE_CREDENTIALS["AWS_REGION"]})
            store = ModelStore("bench-models", s3=s3)  # an explicit client: the process environment is not touched
            version = store.publish(definition.name, dumps(artefact), {"metrics": {}, "reference_stats": {},
                                                                      "training_rows": len(labels)})
            store.mark_validated(definition.name, version)  # what a passing validation does
            store.promote(definition.name, version, reason="bench")
            config = ServingConfig(poll=False, stale_after_seconds=0)
            apps = {"serving": create_app(definition, store, config=config),
                    "serving_shared": create_app(definition, store, config=config,
                                                 memory=PostgresMemory(postgres.dsn))}
            return _measure(definition, apps, rounds, requests_per_round)
        finally:
            postgres.stop()
            moto.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _measure(definition: Any, apps: dict[str, Any], rounds: int, n: int) -> dict[str, Any]:
    path = definition.endpoints[0].path
    bodies = [dict(g.input) for g in definition.golden_requests]
    clients = {name: app.test_client() for name, app in apps.items()}
    for client in clients.values():  # loaded; no poll: the store is not asked again
        assert client.post(path, json=bodies[0]).status_code == 200
    bare_app = Flask("bare")

    @bare_app.post("/echo")
    def echo() -> Any:
        return jsonify({"received": request.get_json()})

    bare = bare_app.test_client()

    def serving_with(client: Any) -> Any:
        def served(_: int) -> int:
            for i in range(n):
                answer = client.post(path, json=bodies[i % len(bodies)], headers={"X-User-Id": f"u{i % 97}"})
                assert answer.status_code == 200
            return n

        return served

    def bare_flask(_: int) -> int:
        for i in range(n):
            assert bare.post("/echo", json=bodies[i % len(bodies)]).status_code == 200
        return n

    variants = alternate("serving", {**{name: serving_with(client) for name, client in clients.items()},
                                     "bare_flask": bare_flask}, rounds, n)
    bare_rate = variants["bare_flask"]["best_per_second"]
    local, shared = variants["serving"]["best_per_second"], variants["serving_shared"]["best_per_second"]
    return {"workload": "price_suggestion", "variants": variants,
            "shared_memory_cost_us": round((1 / shared - 1 / local) * 1e6, 1),
            "ratios": {"serving/bare_flask": {"value": round(local / bare_rate, 3), "goal": 0.5},
                       "serving_shared/bare_flask": {"value": round(shared / bare_rate, 3), "goal": 0.5}}}
