"""The validator against the real serving app over HTTP and a real moto S3 store: a good model trained by the
training job is validated and served; a model failing its golden requests (or whose bytes were changed) is
rolled back to the last validated version, alerted on, and left by the serving app at its next check; a
serving API that cannot be asked decides nothing.

What the golden requests should say about each artefact is computed here from the artefact itself (the
definition's predict and expectations), never written down.
"""
from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import sentry_sdk

from handlers.core import aws as core_aws
from handlers.core.alerts import read_local_alerts
from handlers.ml.serving import validator
from handlers.ml.serving.client import HttpClient
from handlers.ml.serving.errors import ValidationInconclusive
from handlers.ml.serving.validator import Outcome, handle_event
from handlers.ml.store import ModelStore
from handlers.ml.report import Decision
from handlers.ml.training import run_training
from letgo.services import free_port
from letgo.services.moto import FAKE_CREDENTIALS
from tests.ml_kit import END, definition, listing_documents, write_processed
from tests.ml_serving_kit import (TickClock, local_prediction, pointer_event, publish, request_body, serving,
                                  shared_aws, stable_version, trained_artefact, wait_for_health)

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


def pointer_moved(store: ModelStore) -> dict:
    return pointer_event(store.bucket, store.pointer_key(NAME))


def validation_issues(path) -> list[dict]:
    return [issue for issue in read_local_alerts(path) if issue["fingerprint"][0] == "ml-validation"]


def validate_now(store, server_url, **kwargs):
    return handle_event(pointer_moved(store), definitions=DEFINITIONS, store=store, client=HttpClient(server_url),
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


def test_model_published_by_training_is_validated_by_the_lambda_and_served(aws, store, lambda_environment):
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
        result = validator.handler(pointer_moved(store), None)
        again = validator.handler(pointer_moved(store), None)
        served = HttpClient(server.url).request("POST", PATH, request_body(), headers={"X-User-Id": "usr_1"})

    assert result["outcome"] == "validated" and result["version"] == report.version
    assert [r["name"] for r in result["results"]] == [g.name for g in DEFINITION.golden_requests]
    for golden, asked in zip(DEFINITION.golden_requests, result["results"]):
        assert asked["passed"] and asked["answered_version"] == report.version
        assert asked["prediction"] == local_prediction(DEFINITION, artefact, golden.input)
    assert store.validated_versions(NAME) == [report.version]
    assert (again["outcome"], again["detail"]) == ("skipped", "already validated")
    assert served.status == 200 and served.body["version"] == report.version
    assert served.body["prediction"] == local_prediction(DEFINITION, artefact, request_body())


def test_model_failing_golden_requests_is_rolled_back_alerted_and_left_by_the_app(store, sentry_file):
    good, bad = trained_artefact("good"), trained_artefact("inflated")
    failing = expected_failures(bad)
    assert failing, "the inflated model must fail at least one golden request for this test to mean anything"
    v1 = publish(store, good)
    with serving(DEFINITION, store) as (server, _):
        assert validate_now(store, server.url).outcome is Outcome.VALIDATED
        v2 = publish(store, bad)
        wait_for_health(server.url, lambda h: stable_version(h) == v2, "the app loading the new version")

        report = validate_now(store, server.url)

        wait_for_health(server.url, lambda h: stable_version(h) == v1, "the app following the rollback")
        after = HttpClient(server.url).request("POST", PATH, request_body())
        echo = validate_now(store, server.url)  # S3 reports the rollback's own pointer write too
    sentry_sdk.flush()

    assert (report.outcome, report.version, report.rolled_back_to) == (Outcome.ROLLED_BACK, v2, v1)
    assert [r.name for r in report.results if not r.passed] == failing
    assert all(r.judged and r.answered_version == v2 for r in report.results)
    pointer = store.current(NAME)
    assert (pointer.version, pointer.previous) == (v1, v2)
    assert pointer.reason.startswith("rollback: validator") and v2 in pointer.reason
    assert store.validated_versions(NAME) == [v1]
    assert after.body["version"] == v1 and after.body["prediction"] == local_prediction(DEFINITION, good,
                                                                                        request_body())
    assert echo.outcome is Outcome.SKIPPED and "rollback" in echo.detail
    issues = validation_issues(sentry_file)
    assert [(i["fingerprint"], i["events"]) for i in issues] == [(["ml-validation", NAME, "rolled_back", *failing], 1)]
    assert issues[0]["tags"]["version"] == v2 and report.alerted


def test_tampered_candidate_fails_live_and_is_rolled_back_without_ever_being_served(store, sentry_file):
    good = trained_artefact("good")
    v1 = publish(store, good)
    store.mark_validated(NAME, v1)
    # no background checks: the test says when the app looks at the pointer (no race with the tampering)
    with serving(DEFINITION, store, reload_seconds=3600) as (server, app):
        core = app.extensions["ml_serving"]
        client = HttpClient(server.url)
        v2 = publish(store, trained_artefact("good", seed=12))
        store.s3.put_object(Bucket=store.bucket, Key=store.artefact_key(NAME, v2), Body=trained_artefact("inflated"))
        core.refresh()
        during = client.request("POST", PATH, request_body())
        report = validate_now(store, server.url)
        core.refresh()
        after = client.request("POST", PATH, request_body())
        health = core.health()

    assert (report.outcome, report.rolled_back_to) == (Outcome.ROLLED_BACK, v1)
    assert all(r.judged and not r.passed and "model_unloadable" in r.problems[0] for r in report.results)
    assert store.current_version(NAME) == v1
    assert during.body["version"] == after.body["version"] == v1
    assert health["counters"]["predictions_by_version"] == {v1: 2}
    assert health["reload"]["pointer"]["version"] == v1 and health["reload"]["problem"] is None


def test_first_model_failing_has_nothing_to_roll_back_to_and_says_so(store, sentry_file):
    bad = trained_artefact("inflated")
    version = publish(store, bad)
    with serving(DEFINITION, store) as (server, _):
        report = validate_now(store, server.url)
    sentry_sdk.flush()

    assert (report.outcome, report.rolled_back_to) == (Outcome.FAILED_NO_ROLLBACK, None)
    assert "cannot roll back" in report.detail
    assert store.current_version(NAME) == version and store.validated_versions(NAME) == []
    assert [i["fingerprint"][2] for i in validation_issues(sentry_file)] == ["failed_no_rollback"]


def test_unreachable_serving_api_decides_nothing_and_the_lambda_raises_for_a_retry(store, lambda_environment):
    monkeypatch, alerts = lambda_environment
    version = publish(store, trained_artefact("inflated"))  # would fail if it could be asked
    monkeypatch.setenv("SERVING_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", store.s3.meta.endpoint_url)

    with pytest.raises(ValidationInconclusive) as raised:
        validator.handler(pointer_moved(store), None)
    sentry_sdk.flush()

    report = raised.value.report
    assert report.outcome is Outcome.INCONCLUSIVE and not any(r.judged for r in report.results)
    assert store.current_version(NAME) == version and store.validated_versions(NAME) == []
    assert [i["fingerprint"][:3] for i in validation_issues(alerts)] == [["ml-validation", NAME, "inconclusive"]]


def test_server_that_does_not_allow_version_pinning_is_inconclusive_not_a_rollback(store, sentry_file):
    v1 = publish(store, trained_artefact("good"))
    store.mark_validated(NAME, v1)
    v2 = publish(store, trained_artefact("inflated"))
    with serving(DEFINITION, store, allow_version_header=False) as (server, _):
        report = validate_now(store, server.url)

    assert report.outcome is Outcome.INCONCLUSIVE
    assert all("version_header_disabled" in r.problems[0] for r in report.results)
    assert store.current_version(NAME) == v2
