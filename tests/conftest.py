"""Shared fixtures. Tiers: unit (no I/O), functional (moto server, PostgreSQL), e2e (the local stage)."""
from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from handlers.core.kinesis import RawRecord
from handlers.schema.event_types import load_catalog
from handlers.tracking.processor import Processor
from handlers.tracking.settings import load_settings
from letgo.stage import LocalStage
from tests.stage_kit import empty_stage, private_tmp

REPO = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).resolve().parent / "events"


@pytest.fixture(scope="session")
def catalog():
    return load_catalog(REPO / "event_types")


@pytest.fixture(scope="session")
def processor(catalog):
    return Processor(catalog, load_settings())


def record(data: bytes, seq: str = "1", arrival: float | None = None, shard: str = "shardId-000000000000") -> RawRecord:
    return RawRecord(seq, "pk", base64.b64encode(data).decode(), arrival if arrival is not None else time.time(), shard)


@pytest.fixture(scope="session")
def session_stage():
    """One local stage (real moto server + real PostgreSQL) per test session; stopped even after failures."""
    with private_tmp() as directory, LocalStage(directory / "stage", shards=2, batch_size=50) as stage:
        yield stage


@pytest.fixture
def stage(session_stage):
    yield empty_stage(session_stage)
    from handlers.tracking import lambda_consumer

    lambda_consumer.reset()


@pytest.fixture
def sentry_file(tmp_path):
    """Real sentry-sdk with its local file transport for one test; reporting is off again afterwards."""
    import sentry_sdk

    from handlers.core.alerts import init_sentry

    path = tmp_path / "sentry.jsonl"
    init_sentry("test", local_path=path)
    yield path
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
