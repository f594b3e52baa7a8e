"""Benchmark: the model serving wrapper vs a bare Flask JSON endpoint, requests per second, same run.

The candidate is the shipped price model served by :func:`handlers.ml.serving.app.create_app` — input
validation, canary routing, the model's prediction, the guard rails, counters — loaded from a real model
store (moto server) after a real training on generated listings. The baseline is the thinnest Flask
endpoint that still parses and answers JSON: what any HTTP API pays anyway. Both are driven in-process
through Werkzeug's test client (no sockets), with the same rotating request bodies, so the ratio measures
the wrapper and the model rather than the network.
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
    import boto3

    from handlers.ml.artifacts import dumps
    from handlers.ml.definition import load_definition
    from handlers.ml.serving.app import create_app
    from handlers.ml.serving.config import ServingConfig
    from handlers.ml.store import ModelStore
    from letgo.services.moto import FAKE_CREDENTIALS, MotoServer

    definition = load_definition(REPO_ROOT / "models" / "price_suggestion.yaml")
    progress("training the price model on generated listings")
    data, labels = _listing_rows(processor, definition, 60_000)
    artefact = definition.train(data, labels, definition, seed=1)
    with MotoServer() as moto:
        s3 = boto3.session.Session(aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                   region_name=FAKE_CREDENTIALS["AWS_REGION"]).client("s3", endpoint_url=moto.url)
        s3.create_bucket(Bucket="bench-models",
                         CreateBucketConfiguration={"LocationConstraint": FAKE_CREDENTIALS["AWS_REGION"]})
        store = ModelStore("bench-models", s3=s3)  # an explicit client: the process environment is not touched
        version = store.publish(definition.name, dumps(artefact), {"metrics": {}, "reference_stats": {},
                                                                  "training_rows": len(labels)})
        store.mark_validated(definition.name, version)  # what a passing validation does
        store.promote(definition.name, version, reason="bench")
        app = create_app(definition, store, config=ServingConfig(poll=False, stale_after_seconds=0))
        serving = app.test_client()
        path = definition.endpoints[0].path
        bodies = [dict(g.input) for g in definition.golden_requests]
        assert serving.post(path, json=bodies[0]).status_code == 200  # loaded; no poll: the store is not asked again

    bare_app = Flask("bare")

    @bare_app.post("/echo")
    def echo() -> Any:
        return jsonify({"received": request.get_json()})

    bare = bare_app.test_client()
    n = requests_per_round

    def served(_: int) -> int:
        for i in range(n):
            answer = serving.post(path, json=bodies[i % len(bodies)], headers={"X-User-Id": f"u{i % 97}"})
            assert answer.status_code == 200
        return n

    def bare_flask(_: int) -> int:
        for i in range(n):
            assert bare.post("/echo", json=bodies[i % len(bodies)]).status_code == 200
        return n

    variants = alternate("serving", {"serving": served, "bare_flask": bare_flask}, rounds, n)
    ratio = variants["serving"]["best_per_second"] / variants["bare_flask"]["best_per_second"]
    return {"workload": "price_suggestion", "variants": variants,
            "ratios": {"serving/bare_flask": {"value": round(ratio, 3), "goal": 0.5}}}
