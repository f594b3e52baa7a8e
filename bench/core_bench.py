"""Benchmark 1: the event core (Processor + Firehose document) vs a parse/serialise floor vs jsonschema."""
from __future__ import annotations

import binascii
import copy
import json
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from bench.schema import event_schema
from bench.timing import alternate, progress
from bench.workloads import Workload
from handlers.core.kinesis import RawRecord
from handlers.tracking.processor import Processor

BATCH = 500


def _batches(records: list[RawRecord]) -> list[list[RawRecord]]:
    return [records[i:i + BATCH] for i in range(0, len(records), BATCH)]


def build_validators(processor: Processor, event_types_dir: Path) -> dict[str, Draft202012Validator]:
    validators = {}
    for name in processor.catalog.types:
        schema = event_schema(processor.catalog, event_types_dir, name)
        Draft202012Validator.check_schema(schema)
        validators[name] = Draft202012Validator(schema)
    return validators


def _sanity_check_schemas(validators: dict[str, Draft202012Validator], sample: dict[str, Any]) -> None:
    """The baseline must really validate: a few broken copies of a valid event have to fail."""
    name = sample["type"]
    breakages = [("properties", "price", -1), ("properties", "not_declared", 1), ("properties", "item_id", "a b"),
                 ("properties", "category", "spaceships"), ("context", "locale", "x" * 36)]
    for where, key, value in breakages:
        broken = copy.deepcopy(sample)
        broken[where][key] = value
        if validators[name].is_valid(broken):
            raise AssertionError(f"jsonschema baseline accepted {where}.{key}={value!r}")
    broken = copy.deepcopy(sample)
    del broken["properties"]["item_id"]
    if validators[name].is_valid(broken):
        raise AssertionError("jsonschema baseline accepted an event without item_id")


def run(workload: Workload, processor: Processor, validators: dict[str, Draft202012Validator],
        rounds: int) -> dict[str, Any]:
    records = workload.records
    batches = _batches(records)
    n = len(records)

    def core(_: int) -> int:
        good = 0
        for batch in batches:
            result = processor.process(batch)
            blobs = [e.to_json() + b"\n" for e in result.events]  # as consumer.py does
            good += len(blobs)
        return good

    def floor(_: int) -> int:
        done = 0
        for batch in batches:
            blobs = [orjson.dumps(orjson.loads(binascii.a2b_base64(r.data))) for r in batch]
            done += len(blobs)
        return done

    def generic(_: int) -> int:
        good = 0
        for batch in batches:
            blobs = []
            for r in batch:
                obj = json.loads(binascii.a2b_base64(r.data))
                validator = validators.get(obj.get("type"))
                if validator is not None and validator.is_valid(obj):
                    blobs.append(json.dumps(obj))
            good += len(blobs)
        return good

    # correctness + warm-up: every record is a good event of the core (the timed rounds check that every
    # path handled all n records; jsonschema needs no warm-up and is the slow part, so it gets none)
    progress(f"{workload.name}: checking that the core accepts all {n} records (warm-up)")
    results = [processor.process(b) for b in batches]
    rejected = [r for res in results for r in res.rejections] + [d for res in results for d in res.duplicates]
    if rejected:
        raise AssertionError(f"{workload.name}: the core refused {len(rejected)} records, e.g. {rejected[0]}")
    for name, fn in (("core", core), ("floor", floor)):
        got = fn(-1)
        if got != n:
            raise AssertionError(f"{workload.name}: {name} accepted {got} of {n} records")
    _sanity_check_schemas(validators, orjson.loads(binascii.a2b_base64(records[0].data)))

    timings = alternate(f"event core [{workload.name}]", {"core": core, "floor": floor, "jsonschema": generic},
                        rounds, expected=n)
    core_rate = timings["core"]["best_per_second"]
    return {
        "workload": workload.name, "description": workload.description, "records": n,
        "mean_event_bytes": round(workload.mean_bytes, 1), "batch_size": BATCH, "rounds": rounds,
        "variants": timings,
        "ratios": {
            "core/floor": {"value": core_rate / timings["floor"]["best_per_second"], "goal": 0.6},
            "core/jsonschema": {"value": core_rate / timings["jsonschema"]["best_per_second"], "goal": 5.0},
        },
    }
