"""The change limit's shared memory on real stores: PostgreSQL (the local stage's) and DynamoDB (moto server).

Each shared memory must limit exactly as the rule says (:func:`handlers.ml.serving.memory.slew`, held equal on
the same sequence of answers), and must hold *across processes*: several processes answering the same input with
a bad version's value at once never serve more than the factor allows since the last answer — where a memory per
process lets each process's first answer through in full. An unreachable store degrades to a per-process limit,
reported once, never to an error.
"""
from __future__ import annotations

import itertools
import multiprocessing
import random

import pytest

from handlers.ml.serving.memory import DynamoMemory, LocalMemory, PostgresMemory, Resilient, slew
from letgo.services import free_port
from letgo.services.postgres import PostgresServer
from tests.ml_serving_kit import shared_aws
from tests.stage_kit import private_tmp

pytestmark = pytest.mark.functional

DAY = 86400.0
FACTOR = 1.35
_tables = itertools.count(1)


@pytest.fixture(scope="module")
def dsn():
    with private_tmp("letgo-ml-memory-") as directory, PostgresServer(directory / "pg") as pg:
        yield pg.dsn


@pytest.fixture(scope="session")
def aws(request, tmp_path_factory):
    return shared_aws(request, tmp_path_factory)


def dynamo_table(aws) -> DynamoMemory:
    import boto3

    from letgo.services.moto import FAKE_CREDENTIALS

    client = boto3.session.Session(aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                   region_name=FAKE_CREDENTIALS["AWS_REGION"]).client("dynamodb", endpoint_url=aws.url)
    name = f"ml-change-memory-{next(_tables)}"
    client.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    return DynamoMemory(name, client=client)


def answers(seed: int, n: int = 60):
    """A sequence of (key, raw answer, version, time): a few inputs, answers that jump, times that go forward."""
    rng = random.Random(seed)
    now, out = 0.0, []
    for _ in range(n):
        now += rng.choice([1.0, 600.0, DAY / 3, DAY * 2])
        out.append((rng.choice([b"a" * 16, b"b" * 16, b"c" * 16]), rng.choice([10.0, 100.0, 120.0, 5000.0]),
                    rng.choice(["v1", "v2"]), now))
    return out


def replay(memory, sequence, model: str, ignore=frozenset()):
    return [memory.step(model, key, value, version, now=now, factor=FACTOR, window=DAY, ignore=ignore)[0]
            for key, value, version, now in sequence]


@pytest.mark.parametrize("kind", ["postgresql", "dynamodb"])
def test_a_shared_memory_limits_exactly_as_the_rule_says(kind, dsn, aws):
    memory = PostgresMemory(dsn) if kind == "postgresql" else dynamo_table(aws)
    sequence = answers(seed=7)
    expected = replay(LocalMemory(), sequence, "m")
    assert replay(memory, sequence, f"model_{kind}") == pytest.approx(expected, rel=1e-12)
    # the rule itself, step by step, on the first input
    first = [(v, t) for k, v, _, t in sequence if k == sequence[0][0]]
    served = [first[0][0]]
    for (value, now), (_, before) in zip(first[1:], first):
        served.append(slew(served[-1], value, now - before, FACTOR, DAY))
    assert [s for (k, *_), s in zip(sequence, expected) if k == sequence[0][0]] == pytest.approx(served)


@pytest.mark.parametrize("kind", ["postgresql", "dynamodb"])
def test_what_a_rolled_back_version_served_does_not_hold_the_good_one_back(kind, dsn, aws):
    memory = PostgresMemory(dsn) if kind == "postgresql" else dynamo_table(aws)
    model, key = f"rollback_{kind}", b"k" * 16
    memory.step(model, key, 100.0, "good", now=0.0, factor=FACTOR, window=DAY, ignore=frozenset())
    bad = memory.step(model, key, 5000.0, "bad", now=DAY, factor=FACTOR, window=DAY, ignore=frozenset())[0]
    memory.forget(model, ["bad"])
    back = memory.step(model, key, 100.0, "good", now=DAY + 1, factor=FACTOR, window=DAY,
                       ignore=frozenset({"bad"}))[0]
    assert bad == pytest.approx(100.0 * FACTOR) and back == 100.0


def _answer_in_a_process(args):
    """One serving process answering the same input with the bad version's value, ``steps`` times."""
    spec, model, worker, steps = args
    if spec == "local":
        memory = LocalMemory()
    elif spec.startswith("postgresql://"):
        memory = PostgresMemory(spec)
    else:
        import boto3

        from letgo.services.moto import FAKE_CREDENTIALS

        table, url = spec.split("|")
        memory = DynamoMemory(table, client=boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_CREDENTIALS["AWS_REGION"]).client("dynamodb", endpoint_url=url))
    served = []
    for i in range(steps):
        now = 60.0 + worker * 0.5 + i  # all within ~2 minutes of the anchor at t=0
        served.append(memory.step(model, b"the-same-input!!", 5000.0, "bad", now=now, factor=FACTOR, window=DAY,
                                  ignore=frozenset())[0])
    return served


@pytest.mark.parametrize("kind", ["postgresql", "dynamodb", "local"])
def test_the_limit_holds_across_processes_only_with_a_shared_memory(kind, dsn, aws):
    if kind == "postgresql":
        spec, anchor = dsn, PostgresMemory(dsn)
    elif kind == "dynamodb":
        anchor = dynamo_table(aws)
        spec = f"{anchor.table}|{aws.url}"
    else:
        spec, anchor = "local", LocalMemory()
    model = f"fleet_{kind}"
    anchor.step(model, b"the-same-input!!", 100.0, "good", now=0.0, factor=FACTOR, window=DAY, ignore=frozenset())
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        served = [value for run in pool.map(_answer_in_a_process, [(spec, model, w, 25) for w in range(4)])
                  for value in run]
    allowed = 100.0 * FACTOR ** ((60.0 + 2.0 + 25) / DAY)  # the most time any answer had since the anchor
    if kind == "local":
        assert max(served) == 5000.0  # each process has its own memory: its first answer goes through
    else:
        assert max(served) <= allowed * (1 + 1e-9), max(served)


def test_an_unreachable_shared_memory_degrades_to_a_per_process_limit_reported_once():
    failures = []
    memory = Resilient(PostgresMemory(f"postgresql://nobody@127.0.0.1:{free_port()}/none", connect_timeout=1),
                       on_failure=failures.append, retry_seconds=3600)
    first = memory.step("m", b"k" * 16, 100.0, "v1", now=0.0, factor=FACTOR, window=DAY, ignore=frozenset())
    second = memory.step("m", b"k" * 16, 5000.0, "v2", now=60.0, factor=FACTOR, window=DAY, ignore=frozenset())
    assert first[0] == 100.0 and second[0] < 101.0  # still limited, within this process
    assert len(failures) == 1 and memory.describe()["state"] == "degraded" and memory.failures == 1
