"""The validator against the real serving app over HTTP and a real moto S3 store: a candidate trained by the
training job answers its golden requests on the fleet's internal route and goes live; a candidate failing them
(or whose bytes were changed) is rejected and alerted on, and no user ever gets it; a live pointer that is broken
is rolled back; a fleet that cannot be asked — unreachable, or the model switched off — decides nothing; two models
(one a classifier) are validated side by side, and a broken definition skips only its own model.

What the golden requests should say about each artefact is computed here from the artefact itself (the
definition's predict and expectations), never written down.
"""
from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import numpy as np
import orjson
import pytest
import sentry_sdk

from handlers.core import aws as core_aws
from handlers.core.alerts import read_local_alerts
from handlers.ml import artifacts, killswitch
from handlers.ml.models import category_suggestion
from handlers.ml.report import Decision
from handlers.ml.serving import validator
from handlers.ml.serving.client import HttpClient
from handlers.ml.serving.errors import ValidationInconclusive
from handlers.ml.serving.validator import Outcome, handle_event
from handlers.ml.store import ModelStore
from handlers.ml.training import run_training
from letgo.services import free_port
from letgo.services.moto import FAKE_CREDENTIALS
from tests.ml_kit import END, classifier, dataset_of, definition, listing_documents, write_processed
from tests.ml_serving_kit import (TickClock, local_prediction, model_health, pointer_event, publish, publish_live,
                                  request_body, serving, shared_aws, stable_version, trained_artefact,
                                  wait_for_health)

pytestmark = pytest.mark.functional

DEFINITION = definition()
NAME = DEFINITION.name
PATH = DEFINITION.endpoints[0].path
DEFINITIONS = {NAME: DEFINITION}
_buckets = itertools.count(1)


@pytest.fixture(scope="session")
def aws(request, tmp_path_factory):
    return shared_aws(request, tmp_path_factory)


@pytest.fixture
def store(aws):
    return ModelStore(aws.bucket(f"validator-models-{next(_buckets)}"), s3=aws.s3(), clock=TickClock())


def expected_failures(artefact: bytes) -> list[str]:
    """The golden requests this artefact fails when asked offline: what the validator must find live."""
    failed = []
    for golden in DEFINITION.golden_requests:
        answer = local_prediction(DEFINITION, artefact, golden.input)
        if golden.problems(answer) or DEFINITION.guard_rails.output_problem(answer):
            failed.append(golden.name)
    return failed


def candidate_event(store: ModelStore, model: str = NAME) -> dict:
    return pointer_event(store.bucket, store.candidate_key(model))


def live_event(store: ModelStore, model: str = NAME) -> dict:
    return pointer_event(store.bucket, store.pointer_key(model))


def issues(path, kind: str) -> list[dict]:
    return [issue for issue in read_local_alerts(path) if issue["fingerprint"][0] == kind]


def validate_now(store, server_url, **kwargs):
    return handle_event(candidate_event(store), definitions=DEFINITIONS, store=store, client=HttpClient(server_url),
                        **kwargs)


@pytest.fixture
def lambda_environment(monkeypatch, store, tmp_path):
    """The Lambda's environment on the local stage: moto for S3, plain HTTP to the serving app, local Sentry."""
    alerts = tmp_path / "lambda-sentry.jsonl"
    for name, value in {**FAKE_CREDENTIALS, "MODELS_BUCKET": store.bucket, "MODELS_PREFIX": store.prefix,
                        "SERVING_IAM_AUTH": "0", "STAGE": "test", "SENTRY_LOCAL_PATH": str(alerts)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    validator.reset()
    core_aws.reset_clients()
    yield monkeypatch, alerts
    validator.reset()
    core_aws.reset_clients()
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def test_candidate_published_by_training_is_validated_by_the_lambda_and_goes_live(aws, store, lambda_environment):
    monkeypatch, _ = lambda_environment
    s3 = aws.s3()
    events = aws.bucket(f"validator-events-{next(_buckets)}")
    write_processed(s3, events, listing_documents(2500, seed=5, day=END - timedelta(days=1)))
    report = run_training(definition(**{"data.lookback_days": 1, "data.max_rows": 2500}), events_s3=s3,
                          processed_bucket=events, store=store, end=END - timedelta(days=1), alert=lambda r: None)
    assert report.decision is Decision.PUBLISHED
    artefact = store.verified_bytes(NAME, report.version)[0]
    assert expected_failures(artefact) == []  # the training gates ran the same golden requests offline

    with serving(DEFINITION, store) as (server, _):
        monkeypatch.setenv("SERVING_URL", server.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
        before = HttpClient(server.url).request("POST", PATH, request_body())
        result = validator.handler(candidate_event(store), None)
        again = validator.handler(candidate_event(store), None)
        echo = validator.handler(live_event(store), None)  # S3 reports the promotion's own write too
        wait_for_health(server.url, lambda h: stable_version(h) == report.version, "the new live version")
        served = HttpClient(server.url).request("POST", PATH, request_body(), headers={"X-User-Id": "usr_1"})

    assert before.status == 503  # nothing live before the validator said so
    assert (result["outcome"], result["version"], result["detail"]) == ("validated", report.version, "live")
    for golden, asked in zip(DEFINITION.golden_requests, result["results"]):
        assert asked["passed"] and asked["answered_version"] == report.version
        assert asked["prediction"] == local_prediction(DEFINITION, artefact, golden.input)
    assert store.validated_versions(NAME) == [report.version] == [store.current_version(NAME)]
    assert (again["outcome"], again["detail"]) == ("skipped", "already validated and live")
    assert echo["outcome"] == "live_ok"
    assert served.status == 200 and served.body["version"] == report.version


def test_candidate_failing_golden_requests_is_rejected_and_no_user_ever_gets_it(store, sentry_file):
    good, bad = trained_artefact("good"), trained_artefact("inflated")
    failing = expected_failures(bad)
    assert failing, "the inflated model must fail at least one golden request for this test to mean anything"
    v1 = publish_live(store, good)
    with serving(DEFINITION, store) as (server, _):
        client = HttpClient(server.url)
        answers, stop = [], threading.Event()

        def users():  # users keep asking while the candidate is published and validated
            while not stop.is_set():
                answers.append(client.request("POST", PATH, request_body(), headers={"X-User-Id": "usr_9"}))

        worker = threading.Thread(target=users)
        worker.start()
        try:
            v2 = publish(store, bad)
            report = validate_now(store, server.url)
        finally:
            stop.set()
            worker.join(10)
    sentry_sdk.flush()

    assert (report.outcome, report.version) == (Outcome.REJECTED, v2)
    assert [r.name for r in report.results if not r.passed] == failing
    assert all(r.judged and r.answered_version == v2 for r in report.results)
    assert store.current_version(NAME) == v1 and store.rejected_versions(NAME) == [v2]
    assert answers and {a.body["version"] for a in answers} == {v1}
    [issue] = issues(sentry_file, "ml-validation")
    assert issue["fingerprint"] == ["ml-validation", NAME, "rejected", *failing] and issue["tags"]["version"] == v2


def test_tampered_candidate_fails_on_the_fleet_and_is_rejected(store, sentry_file):
    v1 = publish_live(store, trained_artefact("good"))
    with serving(DEFINITION, store) as (server, _):
        v2 = publish(store, trained_artefact("good", seed=12))
        store.s3.put_object(Bucket=store.bucket, Key=store.artefact_key(NAME, v2), Body=trained_artefact("inflated"))
        report = validate_now(store, server.url)

    assert report.outcome is Outcome.REJECTED
    assert all(r.judged and not r.passed and "model_unloadable" in r.problems[0] for r in report.results)
    assert store.current_version(NAME) == v1


def test_first_candidate_failing_leaves_nothing_live(store, sentry_file):
    version = publish(store, trained_artefact("inflated"))
    with serving(DEFINITION, store) as (server, _):
        report = validate_now(store, server.url)
        after = HttpClient(server.url).request("POST", PATH, request_body())

    assert report.outcome is Outcome.REJECTED and store.current(NAME) is None
    assert store.rejected_versions(NAME) == [version] and after.status == 503


def test_unreachable_fleet_decides_nothing_and_the_lambda_raises_for_a_retry(store, lambda_environment):
    monkeypatch, alerts = lambda_environment
    version = publish(store, trained_artefact("inflated"))  # would fail if it could be asked
    monkeypatch.setenv("SERVING_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", store.s3.meta.endpoint_url)

    with pytest.raises(ValidationInconclusive) as raised:
        validator.handler(candidate_event(store), None)
    sentry_sdk.flush()

    report = raised.value.report
    assert report.outcome is Outcome.INCONCLUSIVE and not any(r.judged for r in report.results)
    assert store.verdict(NAME, version) == "unvalidated" and store.current(NAME) is None
    assert [i["fingerprint"][:3] for i in issues(alerts, "ml-validation")] == [["ml-validation", NAME, "inconclusive"]]


def test_a_model_switched_off_changes_nothing_until_revived_then_its_candidate_is_validated(store, sentry_file):
    v1 = publish_live(store, trained_artefact("good"))
    killswitch.kill(store, NAME, reason="investigating")
    with serving(DEFINITION, store) as (server, _):
        wait_for_health(server.url, lambda h: model_health(h)["kill_switch"]["on"], "the kill switch")
        v2 = publish(store, trained_artefact("good", seed=12))
        off = validate_now(store, server.url)
        revived = killswitch.revive(store, NAME, reason="done")
        wait_for_health(server.url, lambda h: not model_health(h)["kill_switch"]["on"], "the revival")
        on = validate_now(store, server.url)  # the event the revive's rewrite of candidate.json sends

    assert off.outcome is Outcome.INCONCLUSIVE and "model_disabled" in off.results[0].problems[0]
    assert revived.announced == v2 and (on.outcome, on.version) == (Outcome.VALIDATED, v2)
    assert store.current_version(NAME) == v2 and v1 in store.validated_versions(NAME)


def test_a_broken_live_pointer_is_rolled_back_by_the_validator_and_the_fleet_follows(store, sentry_file):
    v1 = publish_live(store, trained_artefact("good"))
    v2 = publish_live(store, trained_artefact("good", seed=12))
    with serving(DEFINITION, store) as (server, _):
        live = store.current(NAME)
        store.s3.put_object(Bucket=store.bucket, Key=store.pointer_key(NAME),  # a hand points at a missing version
                            Body=orjson.dumps({**live.to_dict(), "version": "00000000T000000000Z-000000000000"}))
        report = handle_event(live_event(store), definitions=DEFINITIONS, store=store, client=HttpClient(server.url))
        wait_for_health(server.url, lambda h: model_health(h)["reload"]["pointer"]["version"] == v2 and
                        model_health(h)["reload"]["problem"] is None, "the fleet following the rollback")
        served = HttpClient(server.url).request("POST", PATH, request_body())
    sentry_sdk.flush()

    assert (report.outcome, report.rolled_back_to) == (Outcome.ROLLED_BACK, v2)
    assert "unvalidated" in report.detail
    assert store.current_version(NAME) == v2 and served.body["version"] == v2 and v1 != v2
    [issue] = issues(sentry_file, "ml-live-pointer")
    assert issue["fingerprint"] == ["ml-live-pointer", NAME] and f"rolled back to {v2}" in issue["title"]


def classifier_artefact() -> bytes:
    spec = classifier()
    data = dataset_of(listing_documents(2000, seed=21), spec.data)
    labels = np.asarray(data.column(spec.data.label.name), dtype=object)
    return artifacts.dumps(category_suggestion.train(data, labels, spec, seed=1))


def test_two_models_are_validated_on_one_fleet_and_a_broken_definition_skips_only_its_own(store, sentry_file):
    categories = classifier()
    definitions = {NAME: DEFINITION, categories.name: categories}
    price = publish(store, trained_artefact("good"))
    category = publish(store, classifier_artefact(), categories.name)
    with serving(definitions, store) as (server, _):
        client = HttpClient(server.url)
        reports = [handle_event(candidate_event(store, model), definitions=definitions, store=store, client=client)
                   for model in definitions]
        skipped = handle_event(candidate_event(store, categories.name), definitions={NAME: DEFINITION}, store=store,
                               client=client, broken={"category_suggestion.yaml": ValueError("a typo")})
        wait_for_health(server.url, lambda h: stable_version(h, categories.name) == category, "both live")
        answer = client.request("POST", "/v1/category-suggestion", {"title": "Samsung Galaxy S22 256GB libre"})

    assert [(r.model, r.outcome, r.version) for r in reports] == [(NAME, Outcome.VALIDATED, price),
                                                                  (categories.name, Outcome.VALIDATED, category)]
    assert skipped.outcome is Outcome.SKIPPED and "category_suggestion.yaml does not load: a typo" in skipped.detail
    assert answer.status == 200 and answer.body["prediction"]["category"] == "phones"
    assert answer.body["model"] == categories.name and answer.body["abstained"] is False
