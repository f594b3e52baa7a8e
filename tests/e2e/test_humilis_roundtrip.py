"""humilis create / update (no-op, then a real change) / preview / delete for the LOCAL stage, on moto server.

The real humilis in its own virtualenv deploys the real layers, with the packaged consumer zip, to a moto
server started by the patched launcher (letgo/services/moto_launcher.py closes moto's two change-set gaps).
The create is *plain* humilis — its own command line, our environment file, a ``.humilis.ini`` and nothing else
(no variables, no wrapper): what ``make deploy`` adds is convenience, not a requirement.
moto's CloudFormation silently skips what it does not model (Firehose, alarms, RDS clusters): those parts
are checked on the rendered templates instead (tests/functional/test_deployment.py).
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from tests.deploy_kit import DISABLED, LAYERS, REPO, client, humilis, moto_server, stacks

pytestmark = pytest.mark.e2e
STAGE = "LOCAL"


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto")) as env:
        yield env


def plain_humilis_create(aws, work, output):
    """`humilis create` as its README says: a .humilis.ini in the working folder naming an existing bucket (the one
    `make deploy` bootstraps, so that the later updates through deploy/humilis_run.py see no change)."""
    from deploy.humilis_run import deploy_bucket

    bucket = deploy_bucket(client("sts", aws).get_caller_identity()["Account"], STAGE)
    client("s3", aws).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": aws["AWS_REGION"]})
    work.mkdir()
    (work / ".humilis.ini").write_text(f"[profile:default]\naws_profile = default\naws_region = {aws['AWS_REGION']}\n"
                                       f"bucket = {bucket}\ns3prefix = humilis/\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LETGO_")}
    done = subprocess.run([str(REPO / ".venv-humilis" / "bin" / "humilis"), "create", "--stage", STAGE,
                           "--parameters", str(REPO / "environments" / "parameters.yaml"), "--output", str(output),
                           str(REPO / "environments" / "letgo.yaml.j2")], cwd=work, capture_output=True, text=True,
                          env={**environment, **aws, "HOME": str(work)}, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def replay_statistics(aws, parameters):
    from datetime import datetime, timedelta, timezone

    from letgo.ops.replay import redeploy, replay_aws, set_stage_parameter, stack_position

    lambda_, function = client("lambda", aws), "letgo-statistics-local"

    class Rows:  # the metrics database (PostgreSQL is not part of this test): who could write when rows went
        mappings_at_delete: list[int] = []

        def delete_from(self, since, metric=None):
            self.mappings_at_delete.append(len(lambda_.list_event_source_mappings(FunctionName=function)[
                "EventSourceMappings"]))
            return 0

    rows, now = Rows(), datetime.now(timezone.utc)
    report = replay_aws(lambda_, function_name=function, since=now - timedelta(hours=1), sink=rows, window_seconds=60,
                        retention=timedelta(hours=168), say=lambda _m: None, timeout_seconds=60,
                        deploy=lambda overrides: redeploy(STAGE, overrides, parameters=parameters),
                        persist=lambda epoch: set_stage_parameter(parameters, STAGE, "statistics_replay_from", epoch),
                        deployed_position=stack_position(client("cloudformation", aws), STAGE))
    epoch = int(report.since.timestamp())
    assert rows.mappings_at_delete == [0]
    [mapping] = lambda_.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
    assert mapping["StartingPosition"] == "AT_TIMESTAMP" and mapping["MaximumRecordAgeInSeconds"] == -1
    assert yaml.safe_load(parameters.read_text())[STAGE]["statistics_replay_from"] == epoch
    # a deploy with the persisted parameters leaves the mapping alone
    done = humilis("update", "--stage", STAGE, "--parameters", str(parameters), env=aws)
    assert "Nothing to update on stack 'letgo-statistics-LOCAL'" in done.stdout + done.stderr
    # one that would move it back to LATEST (in one update: refused by Lambda) stops before CloudFormation
    stale = parameters.with_name("stale.yaml")
    stale.write_text(parameters.read_text().replace(f"statistics_replay_from: {epoch}", "statistics_replay_from: 0"))
    refused = humilis("update", "--stage", STAGE, "--parameters", str(stale), env=aws, check=False)
    assert refused.returncode == 2 and f"reads from AT_TIMESTAMP:{epoch}" in refused.stderr, refused.stderr[-2000:]


def test_create_update_preview_delete_round_trip(aws, tmp_path):
    expected = [f"letgo-{layer}-{STAGE}" for layer in LAYERS if layer not in DISABLED[STAGE]]

    # WHEN the environment is created with plain humilis
    plain_humilis_create(aws, tmp_path / "plain", tmp_path / "outputs.yaml")
    deployed = stacks(aws)
    assert sorted(deployed) == sorted(expected)
    outputs = yaml.safe_load((tmp_path / "outputs.yaml").read_text())
    stream_name = outputs["kinesis"]["StreamName"]
    function_name = outputs["kinesis"]["ConsumerFunctionName"]
    assert outputs["storage"]["RawBucketName"].startswith("letgo-raw-events-")
    # THEN the consumer's mapping reads the stream, with partial batch responses
    kinesis, lambda_ = client("kinesis", aws), client("lambda", aws)
    stream_arn = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["StreamARN"]
    [mapping] = lambda_.list_event_source_mappings(FunctionName=function_name)["EventSourceMappings"]
    assert mapping["EventSourceArn"] == stream_arn
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    variables = lambda_.get_function_configuration(FunctionName=function_name)["Environment"]["Variables"]
    assert variables["RAW_BUCKET"] == outputs["storage"]["RawBucketName"]
    # THEN the statistics function's tumbling-window mapping reads the same stream
    [windows] = lambda_.list_event_source_mappings(
        FunctionName=outputs["statistics"]["StatisticsFunctionName"])["EventSourceMappings"]
    assert windows["EventSourceArn"] == stream_arn
    assert windows["TumblingWindowInSeconds"] == 60 and windows["BisectBatchOnFunctionError"] is False
    assert windows["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    # WHEN nothing changed, an update changes nothing
    done = humilis("update", "--stage", STAGE, env=aws)
    assert set(re.findall(r"Nothing to update on stack '([^']+)'", done.stdout + done.stderr)) == set(expected)

    # WHEN a parameter changes, preview shows it without applying it, and update applies it
    parameters = yaml.safe_load((REPO / "environments" / "parameters.yaml").read_text())
    parameters[STAGE]["retention_hours"] = 192
    changed = tmp_path / "parameters.yaml"
    changed.write_text(yaml.safe_dump(parameters))
    preview = humilis("preview", "--stage", STAGE, "--parameters", str(changed), env=aws).stdout
    assert "letgo-kinesis-LOCAL: update" in preview and "Stream" in preview
    assert kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["RetentionPeriodHours"] == 168
    humilis("update", "--stage", STAGE, "--parameters", str(changed), env=aws)
    assert kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["RetentionPeriodHours"] == 192

    # WHEN the statistics are replayed from T: two updates (without the mapping, then with it at T), rows deleted in
    # between; the parameters file keeps T, and a deploy that would move the mapping back is refused
    replay_statistics(aws, changed)

    # WHEN the environment is deleted, every stack is gone
    humilis("delete", "--stage", STAGE, env=aws)
    assert stacks(aws) == {}
