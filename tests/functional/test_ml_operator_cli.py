"""``letgo ml kill | revive | status | rollback <model>`` on the local stage's model store (moto S3): the operator's
commands, and what they write is what every serving process reads. ``letgo ml train`` reports to the stage's Sentry,
and every local serving process gets every pointer event (S3 -> SNS -> one SQS queue per process)."""
from __future__ import annotations

import os
from urllib.parse import unquote_plus

import orjson
import pytest
import sentry_sdk

from handlers.core.alerts import read_local_alerts
from handlers.core.aws import client
from handlers.ml.store import ModelStore
from letgo import cli, stage_control
from letgo.ml_local import PointerEvents
from tests.ml_serving_kit import publish, publish_live, trained_artefact

pytestmark = pytest.mark.functional

NAME = "price_suggestion"


@pytest.fixture
def running_stage(stage, tmp_path, monkeypatch):
    """What `letgo stage up` writes for the other commands: this stage's endpoint (and its Sentry file)."""
    stage_file = tmp_path / "stage.json"
    keys = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "DATABASE_URL")
    env = {**{k: os.environ[k] for k in keys if k in os.environ}, "SENTRY_DSN": "",
           "SENTRY_LOCAL_PATH": str(stage.sentry_path)}
    for name, value in env.items():  # stage_info() writes them into os.environ: restored after the test
        monkeypatch.setenv(name, value)
    stage_file.write_bytes(orjson.dumps({"pid": os.getpid(), "stream": stage.names.stream, "env": env}))
    monkeypatch.setattr(stage_control, "STAGE_FILE", stage_file)
    yield stage
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def shown(capsys) -> dict:
    return orjson.loads(capsys.readouterr().out)


def test_kill_and_revive_a_model_and_read_its_status(running_stage, capsys):
    store = ModelStore(running_stage.names.models_bucket, s3=client("s3"))
    assert cli.main(["ml", "kill", NAME]) == 1  # nothing published under that name yet: refused
    assert NAME in capsys.readouterr().out
    live = publish_live(store, trained_artefact("good"))
    candidate = publish(store, trained_artefact("good", seed=12))

    assert cli.main(["ml", "kill", NAME, "--reason", "prices look wrong in TR"]) == 0
    written = shown(capsys)
    assert (written["on"], written["reason"]) == (True, "prices look wrong in TR")
    assert store.kill_switch_state(NAME).on is True  # what every serving process reads
    assert cli.main(["ml", "status", NAME]) == 0
    status = shown(capsys)
    assert (status["live"]["version"], status["candidate"]["version"], status["kill_switch"]["on"]) == (
        live, candidate, True)
    assert status["validated"] == [live] and status["live_problem"] is None
    assert cli.main(["ml", "revive", NAME, "--reason", "fixed"]) == 0
    revived = shown(capsys)
    assert revived["on"] is False and revived["announced_candidate"] == candidate

    store.s3.put_object(Bucket=store.bucket, Key=store.kill_switch_key(NAME), Body=b'{"on": "yes"}')
    assert cli.main(["ml", "status", NAME]) == 0  # each part says its own problem
    assert "'on' must be true or false" in shown(capsys)["kill_switch"]["error"]


def test_rollback_rejects_the_live_version_and_goes_back(running_stage, capsys):
    store = ModelStore(running_stage.names.models_bucket, s3=client("s3"))
    first = publish_live(store, trained_artefact("good"))
    second = publish_live(store, trained_artefact("good", seed=12))
    assert cli.main(["ml", "rollback", NAME, "--reason", "complaints from TR"]) == 0
    assert shown(capsys) == {"model": NAME, "live": first}
    assert store.rejected_versions(NAME) == [second]
    assert cli.main(["ml", "rollback", NAME]) == 1  # nothing older left
    assert "no validated version" in capsys.readouterr().out


def test_letgo_ml_train_reports_a_refused_run_to_the_stages_sentry(running_stage, capsys):
    """The stage has no listings: the data checks block the run, and `letgo alerts` must hear of it."""
    assert cli.main(["ml", "train", "--model", NAME]) == 2
    assert "blocked" in capsys.readouterr().out
    sentry_sdk.flush()
    [issue] = [i for i in read_local_alerts(running_stage.sentry_path) if i["fingerprint"][0] == "ml-training"]
    assert issue["fingerprint"][:3] == ["ml-training", NAME, "blocked"] and "min_rows" in issue["fingerprint"]


def test_each_local_serving_process_gets_every_pointer_event(running_stage):
    """Two `letgo ml serve` used to share one queue: each took the other's events. Now each has its own."""
    bucket = running_stage.names.models_bucket
    first, second = (PointerEvents.subscribe(bucket, f"letgo-model-pointers-test-{i}") for i in (1, 2))
    try:
        version = publish(ModelStore(bucket, s3=client("s3")), trained_artefact("good"))
        keys = [[unquote_plus(event["detail"]["object"]["key"]) for event in events.drain()]  # as S3 encodes it
                for events in (first, second)]
    finally:
        first.close()
        second.close()
    assert keys == [[f"models/{NAME}/candidate.json"]] * 2 and version
