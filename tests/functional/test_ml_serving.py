"""The serving wrapper over HTTP on a real moto S3 model store, with real price models fitted and serialised
with skops: it serves what the pointer names, follows the pointer, obeys the kill switch, and never serves an
artefact that fails its checksum or the allow-list.

Expected answers are computed here by loading the same artefact bytes and calling the definition's predict.
"""
from __future__ import annotations

import itertools
import threading

import pytest
import sentry_sdk
from sklearn.linear_model import LogisticRegression

from handlers.core.alerts import read_local_alerts
from handlers.ml import artifacts, killswitch
from handlers.ml.errors import InvalidKillSwitch, NoCurrentModel
from handlers.ml.serving.client import HttpClient
from handlers.ml.store import ModelStore
from tests.ml_kit import definition
from tests.ml_serving_kit import (TickClock, get_json, local_prediction, publish, request_body, serving, shared_aws,
                                  stable_version, trained_artefact, wait_for_health)

pytestmark = pytest.mark.functional

DEFINITION = definition()
NAME = DEFINITION.name
PATH = DEFINITION.endpoints[0].path
RAILS = DEFINITION.guard_rails
_buckets = itertools.count(1)


@pytest.fixture(scope="session")
def aws(request, tmp_path_factory):
    return shared_aws(request, tmp_path_factory)


@pytest.fixture
def store(aws):
    """A fresh models bucket per test: each starts with no model."""
    return ModelStore(aws.bucket(f"serving-models-{next(_buckets)}"), s3=aws.s3(), clock=TickClock())


def golden_bodies():
    return [dict(golden.input) for golden in DEFINITION.golden_requests]


def test_published_model_is_served_with_its_own_answers(store):
    artefact = trained_artefact("good")
    version = publish(store, artefact)

    with serving(DEFINITION, store) as (server, _):
        client = HttpClient(server.url)
        answers = [client.request("POST", PATH, body, headers={"X-User-Id": f"usr_{i}"})
                   for i, body in enumerate(golden_bodies())]
        status, health = get_json(f"{server.url}/health")

    for body, answer in zip(golden_bodies(), answers):
        assert answer.status == 200, answer.body
        assert (answer.body["version"], answer.body["variant"], answer.body["clamped"]) == (version, "stable", False)
        assert answer.body["prediction"] == local_prediction(DEFINITION, artefact, body)
    assert status == 200 and stable_version(health) == version and health["status"] == "ok"
    assert health["counters"]["predictions_by_version"] == {version: len(answers)}


def test_app_follows_the_pointer_and_never_answers_from_a_half_loaded_model(store):
    first, second = trained_artefact("good"), trained_artefact("good", seed=12)
    v1 = publish(store, first)
    body = request_body(title="Bicicleta de montaña 29 pulgadas")
    raw = {v: local_prediction(DEFINITION, a, body)[RAILS.output_field] for v, a in ((v1, first),)}

    with serving(DEFINITION, store) as (server, _):
        client = HttpClient(server.url)
        before = client.request("POST", PATH, body)
        answers, stop = [], threading.Event()

        def hammer():  # users keep asking while the new version loads
            while not stop.is_set():
                answers.append(client.request("POST", PATH, body))

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            v2 = publish(store, second)
            raw[v2] = local_prediction(DEFINITION, second, body)[RAILS.output_field]
            wait_for_health(server.url, lambda h: stable_version(h) == v2, "the reload to the new version")
        finally:
            stop.set()
            worker.join(10)
        after = client.request("POST", PATH, body)
        fresh_body = request_body(title="Mesa de comedor de roble")
        fresh = client.request("POST", PATH, fresh_body)
        _, health = get_json(f"{server.url}/health")

    # the same input within the window: v2's answer capped around v1's (the max-change guard rail)
    r = RAILS.max_change_relative
    expected = {v1: raw[v1], v2: min(max(raw[v2], raw[v1] * (1 - r)), raw[v1] * (1 + r))}
    assert before.body["version"] == v1 and after.body["version"] == v2
    assert {a.body["version"] for a in answers} <= {v1, v2} and all(a.status == 200 for a in answers)
    for answer in [before, *answers, after]:
        assert answer.body["prediction"][RAILS.output_field] == pytest.approx(expected[answer.body["version"]])
    assert fresh.body["version"] == v2
    assert fresh.body["prediction"] == local_prediction(DEFINITION, second, fresh_body)
    assert health["reload"]["reloads"] == 2 and health["reload"]["problem"] is None
    assert health["reload"]["pointer"]["version"] == v2


def test_kill_switch_answers_503_until_it_is_switched_off(store):
    version = publish(store, trained_artefact("good"))
    with serving(DEFINITION, store) as (server, _):
        client = HttpClient(server.url)
        store.set_kill_switch(NAME, True, reason="prices look wrong in TR")
        wait_for_health(server.url, lambda h: h["kill_switch"]["on"], "the kill switch")
        off = client.request("POST", PATH, request_body())
        operator = client.request("POST", PATH, request_body(), headers={"X-Model-Version": version})
        store.set_kill_switch(NAME, False)
        wait_for_health(server.url, lambda h: not h["kill_switch"]["on"], "the kill switch off")
        on = client.request("POST", PATH, request_body())

    assert off.status == 503 and off.body["error"]["code"] == "model_disabled"
    assert store.kill_switch_key(NAME) in off.body["error"]["message"]
    assert operator.status == 200 and operator.body["variant"] == "pinned"
    assert on.status == 200 and on.body["version"] == version


def test_the_operator_kill_switch_and_a_malformed_one_written_by_hand(store, sentry_file):
    """``{"on": "false"}`` used to switch the model off (a string is truthy): now it is refused and reported."""
    with pytest.raises(NoCurrentModel):
        killswitch.switch(store, NAME, True, reason="a model never published: most likely a typo")
    version = publish(store, trained_artefact("good"))
    assert killswitch.status(store, NAME).on is False
    with serving(DEFINITION, store) as (server, _):
        client = HttpClient(server.url)
        written = killswitch.switch(store, NAME, True, reason="prices look wrong in TR")
        wait_for_health(server.url, lambda h: h["kill_switch"]["on"], "the kill switch")
        store.s3.put_object(Bucket=store.bucket, Key=store.kill_switch_key(NAME), Body=b'{"on": "false"}')
        wait_for_health(server.url, lambda h: h["kill_switch"]["problem"], "the refused kill switch")
        still_off = client.request("POST", PATH, request_body())
        _, refused_while_off = get_json(f"{server.url}/health")
        with pytest.raises(InvalidKillSwitch):
            killswitch.status(store, NAME)
        killswitch.switch(store, NAME, False, reason="fixed")  # writing it again repairs it
        wait_for_health(server.url, lambda h: not h["kill_switch"]["on"] and not h["kill_switch"]["problem"], "on")
        store.s3.put_object(Bucket=store.bucket, Key=store.kill_switch_key(NAME), Body=b'{"on": tru')
        wait_for_health(server.url, lambda h: h["status"] == "kill_switch_invalid", "the unreadable kill switch")
        served = client.request("POST", PATH, request_body())
        code, refused_while_on = get_json(f"{server.url}/health")
    sentry_sdk.flush()

    assert (written.on, written.reason) == (True, "prices look wrong in TR") and written.updated_at
    assert still_off.status == 503 and refused_while_off["status"] == "disabled"
    assert "'on' must be true or false" in refused_while_off["kill_switch"]["problem"]
    assert served.status == code == 200 and served.body["version"] == version
    assert refused_while_on["kill_switch"]["on"] is False and "not JSON" in refused_while_on["kill_switch"]["problem"]
    issues = [i for i in read_local_alerts(sentry_file) if i["fingerprint"][0] == "ml-serving-kill-switch"]
    assert [(issue["fingerprint"], issue["events"]) for issue in issues] == [(["ml-serving-kill-switch", NAME], 2)]


def _tamper(store, version):
    """Overwrite the artefact's bytes in place (a valid skops file, just not the one published)."""
    store.s3.put_object(Bucket=store.bucket, Key=store.artefact_key(NAME, version), Body=trained_artefact("inflated"))


def _untrusted():
    """A correctly published artefact holding a type outside the definition's allow-list."""
    return artifacts.dumps({"estimator": LogisticRegression()})


@pytest.mark.parametrize("kind, error", [("tampered", "ChecksumMismatch"), ("untrusted", "UntrustedTypes")])
def test_artefact_failing_its_checks_is_never_served_and_the_previous_model_stays(store, sentry_file, kind, error):
    good = trained_artefact("good")
    v1 = publish(store, good)
    with serving(DEFINITION, store, reload_seconds=3600) as (server, app):
        if kind == "tampered":
            bad = publish(store, trained_artefact("good", seed=12))
            _tamper(store, bad)
        else:
            bad = publish(store, _untrusted())
        assert app.extensions["ml_serving"].refresh()  # the check a request would start after reload_seconds
        client = HttpClient(server.url)
        answer = client.request("POST", PATH, request_body())
        pinned = client.request("POST", PATH, request_body(), headers={"X-Model-Version": bad})
        _, health = get_json(f"{server.url}/health")
    sentry_sdk.flush()

    assert store.current_version(NAME) == bad  # the pointer names it: only the checks keep it out
    assert answer.status == 200 and answer.body["version"] == v1
    assert answer.body["prediction"] == local_prediction(DEFINITION, good, request_body())
    assert stable_version(health) == v1
    assert (health["reload"]["problem"]["version"], health["reload"]["problem"]["error"]) == (bad, error)
    assert pinned.status == 500 and pinned.body["error"]["code"] == "model_unloadable"
    assert pinned.body["error"]["details"] == {"version": bad, "error": error}
    # one issue for the refused version (error logs also reach Sentry through its logging integration)
    issues = [i for i in read_local_alerts(sentry_file) if i["fingerprint"][0] == "ml-serving-reload"]
    assert [(issue["fingerprint"], issue["events"]) for issue in issues] == [(["ml-serving-reload", NAME, error], 1)]
    assert issues[0]["tags"]["version"] == bad
