"""``letgo ml kill-switch on|off|status`` on the local stage's model store (moto S3): the operator's command."""
from __future__ import annotations

import os

import orjson
import pytest

from handlers.core.aws import client
from handlers.ml.store import ModelStore
from letgo import cli, stage_control
from tests.ml_serving_kit import publish, trained_artefact

pytestmark = pytest.mark.functional


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


def test_switch_a_published_model_off_and_on_and_read_it_back(running_stage, capsys):
    store = ModelStore(running_stage.names.models_bucket, s3=client("s3"))
    assert cli.main(["ml", "kill-switch", "on"]) == 1  # nothing published under that name yet: refused
    assert "price_suggestion" in capsys.readouterr().out
    publish(store, trained_artefact("good"))

    assert cli.main(["ml", "kill-switch", "on", "--reason", "prices look wrong in TR"]) == 0
    written = shown(capsys)
    assert (written["on"], written["reason"]) == (True, "prices look wrong in TR")
    assert store.kill_switch_state("price_suggestion").on is True  # what every serving process reads
    assert cli.main(["ml", "kill-switch", "status"]) == 0 and shown(capsys)["on"] is True
    assert cli.main(["ml", "kill-switch", "off", "--reason", "fixed"]) == 0 and shown(capsys)["on"] is False

    store.s3.put_object(Bucket=store.bucket, Key=store.kill_switch_key("price_suggestion"), Body=b'{"on": "yes"}')
    assert cli.main(["ml", "kill-switch", "status"]) == 1  # a hand-written switch out of format is reported
    assert "'on' must be true or false" in capsys.readouterr().out
