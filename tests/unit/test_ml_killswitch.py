"""The kill switch's format: ``on`` is a JSON boolean, and whatever is not in the format is refused, naming why.

(The switch on a real store and a serving process reading it: tests/functional/test_ml_serving.py.)
"""
from __future__ import annotations

import pytest

from handlers.ml.errors import InvalidKillSwitch, StoreError
from handlers.ml.store import ModelStore
from handlers.ml.store_types import KillSwitch

pytestmark = pytest.mark.unit

KEY = "models/price_suggestion/kill_switch.json"


@pytest.mark.parametrize("body, switch", [
    (b'{"on": true}', KillSwitch("price_suggestion", True)),
    (b'{"model": "price_suggestion", "on": false, "reason": "fixed", "updated_at": "2026-11-26T10:00:00.000Z"}',
     KillSwitch("price_suggestion", False, "fixed", "2026-11-26T10:00:00.000Z")),
    (b'{"on": true, "reason": null, "by": "ops"}', KillSwitch("price_suggestion", True)),  # a newer writer's key
])
def test_a_switch_in_the_format_is_read(body, switch):
    assert KillSwitch.from_json("price_suggestion", KEY, body) == switch


@pytest.mark.parametrize("body, problem", [
    (b'{"on": "false"}', "'on' must be true or false (a JSON boolean), not \"false\""),  # was read as truthy: off
    (b'{"on": "true"}', "'on' must be true or false (a JSON boolean), not \"true\""),
    (b'{"on": 0}', "'on' must be true or false (a JSON boolean), not 0"),
    (b'{"reason": "no on"}', "'on' must be true or false (a JSON boolean), not null"),
    (b'{"on": true, "reason": 42}', "'reason' must be a string"),
    (b'[true]', "a JSON object is expected, not list"),
    (b'{"on": tru', "not JSON"),
    (b'', "not JSON"),
])
def test_anything_else_is_refused_naming_the_key_and_why(body, problem):
    with pytest.raises(InvalidKillSwitch) as refused:
        KillSwitch.from_json("price_suggestion", KEY, body)
    assert refused.value.problem.startswith(problem)
    assert isinstance(refused.value, StoreError) and refused.value.key == KEY and problem in str(refused.value)


@pytest.mark.parametrize("on, reason", [("false", ""), (1, ""), (None, ""), (True, None)])
def test_only_the_format_is_ever_written(on, reason):
    store = ModelStore("models", s3=object())  # refused before anything reaches S3
    with pytest.raises(TypeError):
        store.set_kill_switch("price_suggestion", on, reason=reason)
