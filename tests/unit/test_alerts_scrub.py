"""Problem reports: personal data is scrubbed from samples, and rejections are grouped into few Sentry events."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import sentry_sdk

from handlers.core.alerts import SCRUBBED, ProblemReporter, init_sentry, read_local_alerts
from handlers.schema.event_types import load_catalog
from handlers.tracking.errors import Reason, Rejection

pytestmark = pytest.mark.unit

EVENT_TYPES = Path(__file__).resolve().parents[2] / "event_types"
EMAIL, IP, TRAIT_EMAIL = "alice.pii@example.com", "203.0.113.77", "bob.pii@example.org"
SECRETS = (EMAIL, IP, TRAIT_EMAIL, "u-secret-1", "anon-secret-2", "DEV-SECRET-3")


def signed_up(**properties) -> dict:
    return {"type": "track", "event": "UserSignedUp", "messageId": "m-1", "userId": "u-secret-1",
            "anonymousId": "anon-secret-2", "timestamp": "2026-11-26T10:00:00Z",
            "context": {"ip": IP, "app": {"version": "4.12.0"}, "device": {"id": "DEV-SECRET-3", "model": "Pixel"},
                        "traits": {"email": TRAIT_EMAIL}},
            "properties": {"method": "email", "email": EMAIL, "country": "ES", "language": "es", **properties}}


def rejection(raw: bytes, *, event_type="UserSignedUp", reason=Reason.MISSING_FIELD, field="properties.language",
              app_version="4.12.0", seq="1") -> Rejection:
    return Rejection(reason, field, "required but missing", seq, 0, event_type, app_version, raw)


@pytest.fixture(scope="module")
def reporter():
    catalog = load_catalog(EVENT_TYPES)
    return ProblemReporter.for_catalog("test", catalog)


def test_sample_user_signed_up_contains_no_personal_data(reporter):
    sample = reporter.sample(rejection(orjson.dumps(signed_up())))
    text = orjson.dumps(sample)
    for secret in SECRETS:
        assert secret.encode() not in text
    assert sample["properties"]["country"] == "ES" and sample["context"]["app"]["version"] == "4.12.0"


def test_sample_identify_traits_scrubbed(reporter):
    raw = orjson.dumps({"type": "identify", "userId": "u-secret-1", "traits": {"email": EMAIL}})
    sample = reporter.sample(rejection(raw, event_type="Identify"))
    assert sample["traits"] == {"email": SCRUBBED} and EMAIL.encode() not in orjson.dumps(sample)


def test_sample_unknown_event_type_still_scrubs_context(reporter):
    sample = reporter.sample(rejection(orjson.dumps(signed_up()), event_type="NoSuchType"))
    assert sample["context"]["ip"] == SCRUBBED and sample["userId"] == SCRUBBED


def test_sample_non_json_raw_gives_placeholder_without_bytes(reporter):
    raw = b"\x1f\x8b not json " + EMAIL.encode()
    sample = reporter.sample(rejection(raw, event_type=None, reason=Reason.NOT_JSON, field=None))
    assert sample == f"<{len(raw)} bytes that are not JSON>"
    assert EMAIL not in sample


@pytest.fixture
def sentry_file(tmp_path):
    path = tmp_path / "s.jsonl"
    init_sentry("test", local_path=path)
    yield path
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def test_report_groups_rejections_into_one_event_per_problem(reporter, sentry_file):
    rejections = [rejection(orjson.dumps(signed_up(referral_code=f"r{i}")), seq=str(i),
                            app_version="4.12.0" if i % 5 else "4.13.0") for i in range(50)]
    rejections += [rejection(orjson.dumps(signed_up()), reason=Reason.NOT_IN_ENUM, field="properties.method",
                             app_version="4.13.0", seq=f"x{i}") for i in range(3)]
    assert reporter.report(rejections) == 2
    sentry_sdk.flush()

    content = sentry_file.read_bytes()
    assert len(content.splitlines()) == 2
    for secret in SECRETS:
        assert secret.encode() not in content
    issues = read_local_alerts(sentry_file)
    assert [(issue["events"], issue["count"]) for issue in issues] == [(1, 50), (1, 3)]
    big, small = issues
    assert big["fingerprint"] == ["tracking-rejection", "UserSignedUp", "missing_field", "properties.language"]
    assert dict(big["app_versions"]) == {"4.12.0": 40, "4.13.0": 10}
    assert big["tags"]["app_version"] == "4.12.0" and big["tags"]["stage"] == "test"
    assert dict(small["app_versions"]) == {"4.13.0": 3}
    assert big["sample"]["properties"]["email"] == big["sample"]["context"]["ip"] == SCRUBBED
    assert small["fingerprint"][2:] == ["not_in_enum", "properties.method"]


def test_report_same_problem_other_release_shares_fingerprint(reporter, sentry_file):
    raw = orjson.dumps(signed_up())
    reporter.report([rejection(raw, app_version="4.12.0")])
    reporter.report([rejection(raw, app_version="5.0.0")])
    sentry_sdk.flush()
    [issue] = read_local_alerts(sentry_file)
    assert (issue["events"], issue["count"]) == (2, 2)
    assert dict(issue["app_versions"]) == {"4.12.0": 1, "5.0.0": 1}


def test_sample_hides_undeclared_fields_where_broken_apps_put_personal_data(catalog):
    """Allow-list: an undeclared property, an unknown type's properties, undeclared context keys."""
    reporter = ProblemReporter.for_catalog("test", catalog)
    leaky = [
        {"type": "Lead", "messageId": "m", "properties": {"item_id": "it-1", "buyer_email": "john@x.com"}},
        {"type": "ItemTeleported", "messageId": "m", "properties": {"phone": "+34 600 000 000"}},
        {"type": "Lead", "messageId": "m", "context": {"email": "john@x.com", "app": {"version": "4.1"}}},
        {"type": "alias", "messageId": "m", "previousId": "john@x.com"},
    ]
    for document, event_type in zip(leaky, ["Lead", "ItemTeleported", "Lead", None]):
        rejection = Rejection(Reason.UNKNOWN_PROPERTY, None, "x", "1", 0, event_type, None, orjson.dumps(document))
        text = orjson.dumps(reporter.sample(rejection)).decode()
        assert "john@x.com" not in text and "600 000" not in text, text
    kept = reporter.sample(Rejection(Reason.UNKNOWN_PROPERTY, None, "x", "1", 0, "Lead", None, orjson.dumps(leaky[0])))
    assert kept["properties"]["item_id"] == "it-1" and kept["type"] == "Lead"  # declared, not personal: kept


def test_internal_error_reaches_sentry_with_frames_but_not_the_values_its_message_quoted(reporter, sentry_file):
    import traceback

    try:
        {}[EMAIL]  # an exception whose message quotes a record's value
    except KeyError as exc:
        formatted = "".join(traceback.format_exception(exc))
    internal = Rejection(Reason.INTERNAL_ERROR, None, f"the core failed on this record: KeyError: '{EMAIL}'", "9", 0,
                         "UserSignedUp", "4.12.0", orjson.dumps(signed_up()), formatted)
    assert reporter.report([internal]) == 1
    text = sentry_file.read_text()
    [issue] = read_local_alerts(sentry_file)
    assert issue["tags"]["reason"] == "internal_error"
    event = orjson.loads(text.splitlines()[0])
    assert "test_alerts_scrub.py" in event["extra"]["exception"] and "KeyError" in event["extra"]["exception"]
    assert event["extra"]["message"] == "the core failed on this record: KeyError"
    assert EMAIL not in text and all(secret not in text for secret in SECRETS)


def test_sample_of_a_deeply_nested_record_is_cut_not_a_recursion_error(reporter):
    deep = b'{"type":"Lead","properties":{"item_id":' + b"[" * 900 + b"]" * 900 + b"}}"
    sample = reporter.sample(rejection(deep, event_type="Lead", reason=Reason.TOO_DEEP, field=None))
    assert "withheld" in orjson.dumps(sample).decode()


def test_inside_lambda_function_errors_are_captured_by_sentrys_lambda_integration(monkeypatch, tmp_path):
    from sentry_sdk.integrations.aws_lambda import AwsLambdaIntegration

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "letgo-consumer-dev")
    init_sentry("test", local_path=tmp_path / "s.jsonl")
    try:
        assert sentry_sdk.get_client().get_integration(AwsLambdaIntegration) is not None
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def test_a_postgresql_refusal_reaches_sentry_without_the_value_it_quoted(reporter, sentry_file):
    refused = Rejection(Reason.SINK_REJECTED, None, f'PostgreSQL refused the row: column context: invalid input '
                        f'syntax for type json: "{EMAIL}" (SQLSTATE 22P02)', "9", 0, "UserSignedUp", "4.12.0",
                        orjson.dumps(signed_up()))
    reporter.report([refused])
    event = orjson.loads(sentry_file.read_text().splitlines()[0])
    assert event["extra"]["message"] == "PostgreSQL refused the row: column context (SQLSTATE 22P02)"
    assert EMAIL not in sentry_file.read_text()
