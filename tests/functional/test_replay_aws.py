"""The AWS side of a replay, against moto's Lambda API: disable the mapping, delete rows from T, redeploy at T."""
from __future__ import annotations

import io
import zipfile
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from handlers.core.aws import client
from handlers.statistics.sink import MetricSink
from letgo.ops.replay import replay_aws

pytestmark = pytest.mark.functional


def test_replay_disables_the_mapping_deletes_rows_from_t_and_redeploys_at_t(stage):
    iam, lambda_, kinesis = client("iam"), client("lambda"), client("kinesis")
    role = iam.create_role(RoleName="statistics-replay-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    function = lambda_.create_function(FunctionName="statistics-replay-test", Runtime="python3.11", Role=role,
                                       Handler="handler.handler", Code={"ZipFile": code.getvalue()})["FunctionArn"]
    stream_arn = kinesis.describe_stream(StreamName=stage.names.stream)["StreamDescription"]["StreamARN"]
    original = lambda_.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=function, BatchSize=100,
                                                   StartingPosition="LATEST", TumblingWindowInSeconds=60,
                                                   FunctionResponseTypes=["ReportBatchItemFailures"])
    with psycopg.connect(stage.postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metric_windows")
        for minute in (0, 1, 2):
            conn.execute(
                "INSERT INTO metric_windows (metric, version, metric_window_start, metric_window_end, "
                "stream_window_start, shard_id, dims_key, dims, count) VALUES ('m', 1, %s, %s, %s, 's', '[]', '{}', 1)",
                (datetime(2026, 11, 26, 10, minute, tzinfo=timezone.utc),) * 3)

    since = datetime(2026, 11, 26, 10, 1, 30, tzinfo=timezone.utc)
    sink = MetricSink(stage.postgres.dsn)
    deployed = []

    def deploy(at):  # `humilis update` with replay_from (the template side: tests/functional/test_deployment.py)
        assert lambda_.get_event_source_mapping(UUID=original["UUID"])["State"] == "Disabled"
        deployed.append(at)

    report = replay_aws(lambda_, function_name="statistics-replay-test", since=since, sink=sink, window_seconds=60,
                        retention=timedelta(hours=168), deploy=deploy, wait=lambda _s: None,
                        now=datetime(2026, 11, 26, 12, tzinfo=timezone.utc))
    assert report.since == datetime(2026, 11, 26, 10, 1, tzinfo=timezone.utc)  # aligned to its stream window
    assert report.rows_deleted == 2 and deployed == [report.since]

    with pytest.raises(ValueError, match="beyond the stream's retention"):
        replay_aws(lambda_, function_name="statistics-replay-test", since=since, sink=sink, window_seconds=60,
                   retention=timedelta(hours=1), deploy=deploy, now=datetime(2026, 11, 30, tzinfo=timezone.utc))
