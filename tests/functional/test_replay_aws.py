"""The AWS side of a statistics replay, step by step, in CloudFormation's real order (letgo/ops/replay.py).

Lambda (moto's API) holds the real mapping; PostgreSQL holds the real rows. CloudFormation's update is played
by ``CloudFormationOrder``: it turns the statistics layer's parameters into the mapping Lambda should have, in
CloudFormation's order — a replacement is created *before* the old mapping is deleted, and Lambda refuses a
second mapping for one (stream, function). That refusal is documented (DESIGN.md; "provided mapping already
exists") but not modelled by moto, hence the double; everything it calls is moto's Lambda API. The template
side (mapping removed, then AT_TIMESTAMP T) is rendered by the real humilis in tests/functional/test_deployment.py
and deployed to moto by the real humilis in tests/e2e/test_humilis_roundtrip.py.

Each step is made to fail once; the same command run again must finish the replay, and no row may be deleted
while a mapping could still write it.
"""
from __future__ import annotations

import io
import subprocess
import uuid
import zipfile
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from handlers.core.aws import client
from handlers.statistics.sink import MetricSink
from letgo.ops.replay import ReplayIncomplete, replay_aws, set_stage_parameter

pytestmark = pytest.mark.functional
SINCE = datetime(2026, 11, 26, 10, 1, 30, tzinfo=timezone.utc)
T = int(datetime(2026, 11, 26, 10, 1, tzinfo=timezone.utc).timestamp())  # SINCE aligned to the 60 s window
NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)


class CloudFormationOrder:
    """The statistics stack's mapping as CloudFormation would update it from the layer's parameters."""

    def __init__(self, lambda_, function_arn: str, stream_arn: str) -> None:
        self.lambda_, self.function_arn, self.stream_arn = lambda_, function_arn, stream_arn
        self.state = {"mapping": True, "replay_from": 0}
        self.calls: list[dict] = []
        self.failures: list = []  # predicates on an update's overrides: a match fails it once (rolled back)
        self._create(self.state)

    @staticmethod
    def _position(state: dict) -> str | None:
        if not state["mapping"]:
            return None
        return f"AT_TIMESTAMP:{state['replay_from']}" if state["replay_from"] else "LATEST"

    def position(self) -> str | None:  # the stack's StartingPosition output
        return self._position(self.state)

    def mappings(self) -> list[dict]:
        return self.lambda_.list_event_source_mappings(FunctionName=self.function_arn)["EventSourceMappings"]

    def _create(self, state: dict) -> None:
        if self.mappings():  # Lambda: one mapping per (stream, function)
            raise subprocess.CalledProcessError(1, "humilis update", "provided mapping already exists; rolled back")
        at = {"StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": state["replay_from"]} \
            if state["replay_from"] else {"StartingPosition": "LATEST"}
        self.lambda_.create_event_source_mapping(EventSourceArn=self.stream_arn, FunctionName=self.function_arn,
                                                 TumblingWindowInSeconds=60, **at)

    def deploy(self, overrides: dict) -> None:
        self.calls.append(overrides)
        new = {**self.state, **{k.removeprefix("statistics_"): v for k, v in overrides.items()}}
        for failure in self.failures:
            if failure(overrides):
                self.failures.remove(failure)
                raise subprocess.CalledProcessError(1, "humilis update", "the update failed and rolled back")
        if self._position(new) != self._position(self.state):
            if self.state["mapping"] and new["mapping"]:
                self._create(new)  # a replacement is created first: Lambda refuses it, the update rolls back
            if self.state["mapping"]:
                for mapping in self.mappings():
                    self.lambda_.delete_event_source_mapping(UUID=mapping["UUID"])
            if new["mapping"]:
                self._create(new)
        self.state = new


class Flaky:
    """Wraps a collaborator so that one named method fails once, the way the real one can."""

    def __init__(self, real, method: str, error: BaseException) -> None:
        self.real, self.method, self.error = real, method, error

    def __getattr__(self, name):
        attribute = getattr(self.real, name)
        if name == self.method and self.error is not None:
            def fail(*args, **kwargs):
                error, self.error = self.error, None
                raise error
            return fail
        return attribute


@pytest.fixture
def deployed(stage, tmp_path):
    iam, lambda_, kinesis = client("iam"), client("lambda"), client("kinesis")
    name = f"statistics-replay-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    function = lambda_.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler",
                                       Code={"ZipFile": code.getvalue()})["FunctionArn"]
    stream_arn = kinesis.describe_stream(StreamName=stage.names.stream)["StreamDescription"]["StreamARN"]
    stack = CloudFormationOrder(lambda_, function, stream_arn)
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metric_windows")
        for minute in (0, 1, 2):
            write_window(conn, minute)
    parameters = tmp_path / "parameters.yaml"
    parameters.write_text("_default:\n    statistics_replay_from: 0       # epoch seconds of the last replay\n"
                          "DEV:\n    shard_count: 1  # one\n")
    yield stage, lambda_, name, stack, parameters
    for mapping in stack.mappings():
        lambda_.delete_event_source_mapping(UUID=mapping["UUID"])


def write_window(conn, minute: int) -> None:
    conn.execute("INSERT INTO metric_windows (metric, version, metric_window_start, metric_window_end, "
                 "stream_window_start, shard_id, dims_key, dims, count) "
                 "VALUES ('m', 1, %s, %s, %s, 's', '[]', '{}', 1)",
                 (datetime(2026, 11, 26, 10, minute, tzinfo=timezone.utc),) * 3)


def windows(stage) -> list[int]:
    with psycopg.connect(stage.postgres.dsn) as conn:
        return [row[0].minute for row in conn.execute("SELECT stream_window_start FROM metric_windows ORDER BY 1")]


class WatchedSink(MetricSink):
    """The real sink; it records whether any mapping existed when rows were deleted."""

    def __init__(self, dsn: str, stack: CloudFormationOrder) -> None:
        super().__init__(dsn)
        self.stack, self.mappings_at_delete = stack, []

    def delete_from(self, since, metric=None):
        self.mappings_at_delete.append(len(self.stack.mappings()))
        return super().delete_from(since, metric)


def run(deployed, *, lambda_=None, sink=None, persist=None):
    stage, real_lambda, name, stack, parameters = deployed
    return replay_aws(lambda_ or real_lambda, function_name=name, since=SINCE,
                      sink=sink or WatchedSink(stage.postgres.dsn, stack), window_seconds=60,
                      retention=timedelta(hours=168), deploy=stack.deploy, deployed_position=stack.position,
                      persist=persist or (lambda epoch: set_stage_parameter(parameters, "DEV",
                                                                            "statistics_replay_from", epoch)),
                      now=NOW, wait=lambda _s: None, say=lambda _m: None)


def finished(deployed) -> None:
    stage, _, _, stack, parameters = deployed
    [mapping] = stack.mappings()
    assert mapping["StartingPosition"] == "AT_TIMESTAMP" and stack.position() == f"AT_TIMESTAMP:{T}"
    assert mapping["TumblingWindowInSeconds"] == 60
    assert windows(stage) == [0]  # the windows from T are gone (the function recomputes them), older ones stay
    assert f"DEV:\n    statistics_replay_from: {T}\n    shard_count: 1  # one\n" in parameters.read_text()


def test_changing_the_starting_position_in_one_update_is_refused_and_rolls_back(deployed):
    """The order the replay must avoid: CloudFormation's replacement meets Lambda's one-mapping rule."""
    _, _, _, stack, _ = deployed
    with pytest.raises(subprocess.CalledProcessError) as refused:
        stack.deploy({"statistics_replay_from": T})
    assert "already exists" in refused.value.output
    assert stack.position() == "LATEST" and len(stack.mappings()) == 1


def test_replay_removes_the_mapping_then_deletes_rows_then_adds_it_at_t(deployed):
    sink = WatchedSink(deployed[0].postgres.dsn, deployed[3])
    report = run(deployed, sink=sink)
    assert report.since == datetime(2026, 11, 26, 10, 1, tzinfo=timezone.utc) and report.rows_deleted == 2
    assert sink.mappings_at_delete == [0]  # no mapping could write the rows being deleted
    assert deployed[3].calls == [{"statistics_mapping": False},
                                 {"statistics_mapping": True, "statistics_replay_from": T}]
    finished(deployed)


@pytest.mark.parametrize("step", ["stop", "remove", "delete", "persist", "add"])
def test_a_failure_at_any_step_leaves_a_state_the_same_command_resumes_from(deployed, step):
    stage, real_lambda, _, stack, _ = deployed
    sink = WatchedSink(stage.postgres.dsn, stack)
    first = {"sink": sink}
    if step == "stop":  # the Lambda API throttles the disable
        first["lambda_"] = Flaky(real_lambda, "update_event_source_mapping", RuntimeError("throttled"))
    elif step == "remove":  # the update without the mapping fails and rolls back
        stack.failures.append(lambda overrides: overrides.get("statistics_mapping") is False)
    elif step == "delete":  # the metrics database is unreachable
        first["sink"] = Flaky(sink, "delete_from", psycopg.OperationalError("connection refused"))
    elif step == "persist":  # the parameters file cannot be written
        def disk_full(epoch):
            raise OSError("disk full")
        first["persist"] = disk_full
    elif step == "add":  # the update adding the mapping at T fails and rolls back
        stack.failures.append(lambda overrides: overrides.get("statistics_mapping") is True)

    with pytest.raises((RuntimeError, subprocess.CalledProcessError, psycopg.OperationalError, OSError)):
        run(deployed, **first)
    # THEN nothing was deleted while a mapping existed, and the rows are either all there or all gone
    assert set(sink.mappings_at_delete) <= {0}
    assert windows(stage) == ([0, 1, 2] if step in ("stop", "remove", "delete") else [0])
    assert len(stack.mappings()) == (1 if step in ("stop", "remove") else 0)

    # WHEN the same command runs again, the replay completes
    again = WatchedSink(stage.postgres.dsn, stack)
    run(deployed, sink=again)
    assert again.mappings_at_delete == [0]
    finished(deployed)


def test_a_finished_replay_run_again_deletes_nothing(deployed):
    run(deployed)
    stage = deployed[0]
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        write_window(conn, 1)  # the function recomputed a window from T
    sink = WatchedSink(stage.postgres.dsn, deployed[3])
    report = run(deployed, sink=sink)
    assert sink.mappings_at_delete == [] and report.rows_deleted == 0 and "already reads from" in report.notes[0]
    assert windows(stage) == [0, 1]


def test_replay_refuses_beyond_the_stream_retention(deployed):
    stage, lambda_, name, stack, _ = deployed
    with pytest.raises(ValueError, match="beyond the stream's retention"):
        replay_aws(lambda_, function_name=name, since=SINCE, sink=MetricSink(stage.postgres.dsn), window_seconds=60,
                   retention=timedelta(hours=1), deploy=stack.deploy, persist=lambda _e: None,
                   now=datetime(2026, 11, 30, tzinfo=timezone.utc))
    assert stack.calls == [] and windows(stage) == [0, 1, 2]


def test_a_mapping_that_does_not_stop_is_reported_and_nothing_is_deleted(deployed):
    stage, real_lambda, _, stack, _ = deployed

    class NeverDisabled(Flaky):
        def list_event_source_mappings(self, **kwargs):
            answer = self.real.list_event_source_mappings(**kwargs)
            return {"EventSourceMappings": [{**m, "State": "Disabling"} for m in answer["EventSourceMappings"]]}

    with pytest.raises(ReplayIncomplete, match="run the same command again"):
        replay_aws(NeverDisabled(real_lambda, "", None), function_name=deployed[2], since=SINCE,
                   sink=MetricSink(stage.postgres.dsn), window_seconds=60, retention=timedelta(hours=168),
                   deploy=stack.deploy, persist=lambda _e: None, now=NOW, wait=lambda _s: None, timeout_seconds=0,
                   say=lambda _m: None)
    assert stack.calls == [] and windows(stage) == [0, 1, 2]
