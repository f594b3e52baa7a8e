"""``letgo ml kill | revive | status | rollback <model>`` on the local stage's model store (moto S3): the operator's
commands, and what they write is what every serving process reads."""
from __future__ import annotations

import os

import orjson
import pytest

from handlers.core.aws import client
from handlers.ml.store import ModelStore
from letgo import cli, stage_control
from tests.ml_serving_kit import publish, publish_live, trained_artefact

pytestmark = pytest.mark.functional

NAME = "price_suggestion"


@pytest.fixture
def running_stage(stage, tmp_path, monkeypatch):
    """What `letgo stage up` writes for the other commands: this stage's endpoint."""
    stage_file = tmp_path / "stage.json"
    keys = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
    stage_file.write_bytes(orjson.dumps({"pid": os.getpid(), "stream": stage.names.stream,
                                         "env": {k: os.environ[k] for k in keys if k in os.environ}}))
    monkeypatch.setattr(stage_control, "STAGE_FILE", stage_file)
    return stage


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
