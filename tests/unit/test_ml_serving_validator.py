"""The validator's decisions without I/O: which events it acts on, and what each live answer says about a
candidate (judged failure, pass, or nothing to judge with)."""
from __future__ import annotations

import pytest

from handlers.core.config import ConfigError
from handlers.ml.serving.validator import (CANDIDATE_FAULTS, PointerMoved, ValidatorSettings, judge, parse_event)
from tests.ml_serving_kit import pointer_event, scripted_definition

pytestmark = pytest.mark.unit

DEFINITION = scripted_definition()
GOLDEN = DEFINITION.golden_requests[0]
RAILS = DEFINITION.guard_rails
VERSION = "20261126T030001000Z-0123456789ab"


def passing_prediction(golden=GOLDEN) -> dict:
    """An answer meeting every expectation of ``golden``, computed from the expectations themselves."""
    prediction = {name: 1.0 for name in DEFINITION.endpoint(golden.endpoint).outputs}
    for expectation in golden.expect:
        if expectation.equals is not None:
            prediction[expectation.field] = expectation.equals
        elif expectation.value is not None:
            prediction[expectation.field] = expectation.value
        else:
            low = expectation.min if expectation.min is not None else expectation.max - 1
            high = expectation.max if expectation.max is not None else low + 1
            prediction[expectation.field] = (low + high) / 2
    return prediction


def answer(prediction, *, version=VERSION, **extra) -> dict:
    return {"model": DEFINITION.name, "version": version, "variant": "pinned", "prediction": prediction,
            "clamped": False, "change_limited": False, **extra}


def test_judge_answer_meeting_every_expectation_passes():
    result = judge(DEFINITION, GOLDEN, VERSION, 200, answer(passing_prediction()))
    assert (result.passed, result.judged, result.problems) == (True, True, ())


@pytest.mark.parametrize("golden", DEFINITION.golden_requests, ids=lambda g: g.name)
def test_judge_answer_breaking_an_expectation_fails_and_names_it(golden):
    for expectation in golden.expect:
        prediction = passing_prediction(golden)
        if expectation.equals is not None:
            prediction[expectation.field] = f"not {expectation.equals}"
        else:
            prediction[expectation.field] = (
                expectation.value * (1 + expectation.tolerance) * 2 + 1 if expectation.value is not None
                else expectation.max * 10 if expectation.max is not None
                else expectation.min - 1 - abs(expectation.min))
        result = judge(DEFINITION, golden, VERSION, 200, answer(prediction))
        assert (result.passed, result.judged) == (False, True)
        assert len(result.problems) == 1 and result.problems[0].startswith(expectation.field)


def test_judge_clamped_answer_fails_on_the_output_guard_rail():
    raw = RAILS.output_max * 4
    body = answer(passing_prediction(), clamped=True, guard_rail={"field": RAILS.output_field, "raw": raw})
    result = judge(DEFINITION, GOLDEN, VERSION, 200, body)
    assert (result.passed, result.judged) == (False, True)
    assert result.problems == (RAILS.output_problem({RAILS.output_field: raw}),)


def test_judge_answer_from_another_version_is_not_judged():
    result = judge(DEFINITION, GOLDEN, VERSION, 200, answer(passing_prediction(), version="older"))
    assert (result.passed, result.judged, result.answered_version) == (False, False, "older")


@pytest.mark.parametrize("status, code, judged", [
    *[(500 if code != "unknown_version" else 404, code, True) for code in sorted(CANDIDATE_FAULTS)],
    (403, "version_header_disabled", False), (503, "model_disabled", False), (400, "invalid_input", False),
    (502, None, False), (None, None, False),
])
def test_judge_errors_blame_the_candidate_only_for_its_own_faults(status, code, judged):
    body = {"error": {"status": status, "code": code, "message": "m"}} if code else None
    result = judge(DEFINITION, GOLDEN, VERSION, status, body)
    assert (result.passed, result.judged) == (False, judged)


# -- events --------------------------------------------------------------------------------------------------------
BUCKET, PREFIX = "letgo-dev-models", "models/"


@pytest.mark.parametrize("kind", ["candidate", "current"])
def test_parse_event_pointer_key_names_the_model_and_which_pointer(kind):
    key = f"{PREFIX}price_suggestion/{kind}.json"
    assert parse_event(pointer_event(BUCKET, key), bucket=BUCKET, prefix=PREFIX) == PointerMoved(
        BUCKET, key, "price_suggestion", kind)


@pytest.mark.parametrize("event", [
    pointer_event(BUCKET, f"{PREFIX}price_suggestion/versions/v1/model.skops"),
    pointer_event(BUCKET, f"{PREFIX}price_suggestion/validated/v1.json"),
    pointer_event(BUCKET, f"{PREFIX}price_suggestion/rejected/v1.json"),
    pointer_event(BUCKET, f"{PREFIX}_validation/key.json"),
    pointer_event(BUCKET, f"{PREFIX}price_suggestion/pointer-log/x-v1.json"),
    pointer_event(BUCKET, "other/price_suggestion/current.json"),
    pointer_event(BUCKET, f"{PREFIX}a/b/current.json"),
    pointer_event("another-bucket", f"{PREFIX}price_suggestion/current.json"),
    pointer_event(BUCKET, f"{PREFIX}price_suggestion/current.json", detail_type="Object Deleted"),
    {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
], ids=["artefact", "marker", "rejected", "key", "log", "prefix", "nested", "bucket", "deleted", "schedule"])
def test_parse_event_anything_but_a_pointer_write_is_ignored_with_a_reason(event):
    assert isinstance(parse_event(event, bucket=BUCKET, prefix=PREFIX), str)


def test_settings_from_environ_require_bucket_and_url_and_read_the_rest():
    with pytest.raises(ConfigError) as refused:
        ValidatorSettings.from_environ({"MODELS_BUCKET": BUCKET})
    assert refused.value.where == "SERVING_URL"
    settings = ValidatorSettings.from_environ({"MODELS_BUCKET": BUCKET, "MODELS_PREFIX": "ml",
                                               "SERVING_URL": "https://serving.example", "SERVING_IAM_AUTH": "1",
                                               "AWS_REGION": "eu-central-1"})
    assert (settings.prefix, settings.iam_auth, settings.region, settings.iam_service) == ("ml/", True,
                                                                                           "eu-central-1",
                                                                                           "execute-api")
    assert settings.client().signer is not None
    assert settings.definitions_dir.name == "models"  # models/ beside handlers/ in the zip


def test_settings_give_each_model_its_serving_url():
    settings = ValidatorSettings.from_environ({
        "MODELS_BUCKET": BUCKET, "SERVING_URL": "https://fleet.example",
        "SERVING_URLS": '{"category_suggestion": "https://categories.example"}'})
    clients = settings.clients(["price_suggestion", "category_suggestion"])
    assert clients["price_suggestion"].base_url == "https://fleet.example"
    assert clients["category_suggestion"].base_url == "https://categories.example"
    for wrong in ('{"category_suggestion": "ftp://x"}', "[1]", "not json"):
        with pytest.raises(ConfigError) as refused:
            ValidatorSettings.from_environ({"MODELS_BUCKET": BUCKET, "SERVING_URL": "https://fleet.example",
                                            "SERVING_URLS": wrong})
        assert refused.value.where.startswith("SERVING_URLS")


def test_parse_event_reads_url_encoded_keys_as_s3_notifications_send_them():
    from handlers.ml.serving.validator import PointerMoved, parse_event

    event = {"source": "aws.s3", "detail-type": "Object Created",
             "detail": {"bucket": {"name": "models-b"}, "object": {"key": "models%2Fprice_suggestion%2Fcurrent.json"}}}
    assert parse_event(event, bucket="models-b", prefix="models/") == PointerMoved(
        "models-b", "models/price_suggestion/current.json", "price_suggestion", "current")
