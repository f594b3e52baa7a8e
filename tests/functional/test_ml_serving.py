"""The serving wrapper over HTTP on a real moto S3 model store, with real price models fitted and serialised with
skops: users get the live, validated version only (a candidate answers the validator's signed requests alone),
the app follows the live pointer in the background, obeys the kill switch and fails safe on a malformed one, and
never serves an artefact that fails its checksum or the allow-list.

Expected answers are computed here by loading the same artefact bytes and calling the definition's predict.
"""
from __future__ import annotations

import itertools
import threading
import time

import pytest
import sentry_sdk
from sklearn.linear_model import LogisticRegression

from handlers.core.alerts import read_local_alerts
from handlers.ml import artifacts, killswitch
from handlers.ml.errors import InvalidKillSwitch, NoCurrentModel
from handlers.ml.serving.client import HttpClient
from handlers.ml.store import ModelStore
from tests.ml_kit import definition
from tests.ml_serving_kit import (TickClock, get_json, internal, local_prediction, model_health, publish, publish_live,
                                  request_body, serving, shared_aws, stable_version, trained_artefact,
                                  wait_for_health)

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


def test_a_candidate_answers_only_the_validator_until_it_is_live(store):
    artefact = trained_artefact("good")
    version = publish(store, artefact)

    with serving(DEFINITION, store) as (server, _):
        client = HttpClient(server.url)
        before = client.request("POST", PATH, request_body(), headers={"X-User-Id": "usr_1"})
        pinned = internal(client, store, version, request_body())
        guessed = internal(client, store, version, request_body(), key=b"a guess at the key, 32 bytes....")
        store.mark_validated(NAME, version)
        store.promote(NAME, version, reason="validator: test")
        wait_for_health(server.url, lambda h: stable_version(h) == version, "the promotion")
        answers = [client.request("POST", PATH, body, headers={"X-User-Id": f"usr_{i}"})
                   for i, body in enumerate(golden_bodies())]
        status, health = get_json(f"{server.url}/health")

    assert before.status == 503 and before.body["error"]["code"] == "model_unavailable"
    assert (pinned.status, pinned.body["version"], pinned.body["variant"]) == (200, version, "pinned")
    assert guessed.status == 401 and guessed.body["error"]["code"] == "validation_auth_required"
    for body, answer in zip(golden_bodies(), answers):
        assert answer.status == 200, answer.body
        assert (answer.body["version"], answer.body["variant"], answer.body["clamped"]) == (version, "stable", False)
        assert answer.body["prediction"] == local_prediction(DEFINITION, artefact, body)
    assert status == 200 and model_health(health)["status"] == "ok"
    counters = model_health(health)["counters"]
    assert counters["predictions_by_version"] == {version: len(answers) + 1}  # and the validator's one
    assert (counters["variants"]["pinned"]["predictions"], counters["variants"]["stable"]["predictions"]) == (
        1, len(answers))


def test_app_follows_the_live_pointer_without_requests_and_never_answers_from_a_half_loaded_model(store):
    first, second = trained_artefact("good"), trained_artefact("good", seed=12)
    v1 = publish_live(store, first)
    body = request_body(title="Bicicleta de montaña 29 pulgadas")
    raw1 = local_prediction(DEFINITION, first, body)[RAILS.output_field]

    with serving(DEFINITION, store) as (server, app):
        client = HttpClient(server.url)
        before = client.request("POST", PATH, body)
        v2 = publish_live(store, second)
        core = app.extensions["ml_serving"].service(NAME)
        deadline = time.monotonic() + 10
        while (core.stable.version if core.stable else None) != v2:  # no request: the poll thread follows
            assert time.monotonic() < deadline, "the poll did not follow the pointer"
            time.sleep(0.05)
        answers, stop = [], threading.Event()

        def hammer():  # users keep asking while the pointer moves again
            while not stop.is_set():
                answers.append(client.request("POST", PATH, body))

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            assert store.rollback(NAME, reason="test") == v1  # v1 is still loaded: a swap, not a download
            wait_for_health(server.url, lambda h: stable_version(h) == v1, "the rollback")
        finally:
            stop.set()
            worker.join(10)
        fresh_body = request_body(title="Mesa de comedor de roble")
        fresh = client.request("POST", PATH, fresh_body)
        _, health = get_json(f"{server.url}/health")

    assert before.body["version"] == v1
    assert {a.body["version"] for a in answers} <= {v1, v2} and all(a.status == 200 for a in answers)
    for answer in [before, *answers]:  # the same input: within the sliding limit of what was served first
        assert answer.body["prediction"][RAILS.output_field] == pytest.approx(raw1, rel=1e-3)
    assert fresh.body["version"] == v1 and fresh.body["prediction"] == local_prediction(DEFINITION, first,
                                                                                        fresh_body)
    reload = model_health(health)["reload"]
    assert reload["problem"] is None and reload["reloads"] == 3  # v1, v2, v1 again
    assert model_health(health)["rejected_versions"] == [v2]


def test_kill_switch_answers_503_to_users_and_to_the_validator_until_revived(store):
    version = publish_live(store, trained_artefact("good"))
    with serving(DEFINITION, store) as (server, _):
        client = HttpClient(server.url)
        killswitch.kill(store, NAME, reason="prices look wrong in TR")
        wait_for_health(server.url, lambda h: model_health(h)["kill_switch"]["on"], "the kill switch")
        off = client.request("POST", PATH, request_body())
        validator = internal(client, store, version, request_body())
        killswitch.revive(store, NAME, reason="fixed")
        wait_for_health(server.url, lambda h: not model_health(h)["kill_switch"]["on"], "the revival")
        on = client.request("POST", PATH, request_body())

    assert off.status == validator.status == 503
    assert off.body["error"]["code"] == validator.body["error"]["code"] == "model_disabled"
    assert store.kill_switch_key(NAME) in off.body["error"]["message"]
    assert on.status == 200 and on.body["version"] == version


def test_a_malformed_kill_switch_fails_safe_with_one_alert_per_problem(store, sentry_file):
    """``{"on": "false"}`` used to switch the model off by accident, and a switch nobody could read left the
    model as it was while /health said ok: now anything out of format switches the model off, and says so."""
    with pytest.raises(NoCurrentModel):
        killswitch.kill(store, NAME, reason="a model never published: most likely a typo")
    version = publish_live(store, trained_artefact("good"))
    with serving(DEFINITION, store) as (server, _):
        client = HttpClient(server.url)
        for body, problem in ((b'{"on": "false"}', "'on' must be true or false"), (b'{"on": tru', "not JSON")):
            store.s3.put_object(Bucket=store.bucket, Key=store.kill_switch_key(NAME), Body=body)
            wait_for_health(server.url, lambda h, p=problem: p in (model_health(h)["kill_switch"]["problem"] or ""),
                            f"the malformed switch {body!r}")
        refused = client.request("POST", PATH, request_body())
        code, health = get_json(f"{server.url}/health")
        with pytest.raises(InvalidKillSwitch):
            killswitch.status(store, NAME)
        killswitch.revive(store, NAME, reason="written again")  # writing it repairs it
        wait_for_health(server.url, lambda h: model_health(h)["status"] == "ok", "the repaired switch")
        served = client.request("POST", PATH, request_body())
    sentry_sdk.flush()

    assert refused.status == 503 and refused.body["error"]["code"] == "model_disabled"
    body = model_health(health)
    assert code == 200 and body["status"] == "kill_switch_invalid" and body["kill_switch"]["on"] is True
    assert "not JSON" in body["kill_switch"]["problem"]
    assert served.status == 200 and served.body["version"] == version
    issues = [i for i in read_local_alerts(sentry_file) if i["fingerprint"][0] == "ml-serving-kill-switch"]
    assert [(issue["fingerprint"], issue["events"]) for issue in issues] == [(["ml-serving-kill-switch", NAME], 2)]


def _tamper(store, version):
    """Overwrite the artefact's bytes in place (a valid skops file, just not the one published)."""
    store.s3.put_object(Bucket=store.bucket, Key=store.artefact_key(NAME, version), Body=trained_artefact("inflated"))


@pytest.mark.parametrize("kind, error", [("tampered", "ChecksumMismatch"), ("untrusted", "UntrustedTypes")])
def test_artefact_failing_its_checks_is_never_served_and_the_previous_model_stays(store, sentry_file, kind, error):
    good = trained_artefact("good")
    v1 = publish_live(store, good)
    with serving(DEFINITION, store, poll=False) as (server, app):
        if kind == "tampered":
            bad = publish_live(store, trained_artefact("good", seed=12))
            _tamper(store, bad)
        else:
            bad = publish_live(store, artifacts.dumps({"estimator": LogisticRegression()}))
        app.extensions["ml_serving"].refresh()  # what the poll thread does every reload_seconds
        client = HttpClient(server.url)
        answer = client.request("POST", PATH, request_body())
        pinned = internal(client, store, bad, request_body())
        _, health = get_json(f"{server.url}/health")
    sentry_sdk.flush()

    assert store.current_version(NAME) == bad  # the pointer names it: only the checks keep it out
    assert answer.status == 200 and answer.body["version"] == v1
    assert answer.body["prediction"] == local_prediction(DEFINITION, good, request_body())
    assert stable_version(health) == v1
    problem = model_health(health)["reload"]["problem"]
    assert (problem["version"], problem["error"]) == (bad, error)
    assert pinned.status == 500 and pinned.body["error"]["code"] == "model_unloadable"
    assert pinned.body["error"]["details"] == {"version": bad, "error": error}
    issues = [i for i in read_local_alerts(sentry_file) if i["fingerprint"][0] == "ml-serving-reload"]
    assert [(issue["fingerprint"], issue["events"]) for issue in issues] == [(["ml-serving-reload", NAME, error], 1)]
    assert issues[0]["tags"]["version"] == bad
