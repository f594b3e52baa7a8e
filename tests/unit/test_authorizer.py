"""The collector's REQUEST authorizer: Basic-auth write key against the keys of a secret (no I/O: the key
loader and the clock are injected)."""
from __future__ import annotations

import base64

import pytest

from handlers.collector import authorizer
from handlers.collector.authorizer import (KeyCache, KeySourceError, MalformedCredentials, MissingCredentials,
                                           UnsupportedScheme, decide, parse_keys, write_key_from_header)

pytestmark = pytest.mark.unit

METHOD_ARN = "arn:aws:execute-api:eu-west-1:123456789012:abc123/v1/POST/v1/batch"
STAGE_SCOPE = "arn:aws:execute-api:eu-west-1:123456789012:abc123/v1/*"
KEYS = frozenset({"wk-live-1", "wk-live-2"})


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def event(authorization: str | None, header_name: str = "Authorization") -> dict:
    headers = {} if authorization is None else {header_name: authorization}
    return {"type": "REQUEST", "methodArn": METHOD_ARN, "headers": headers, "path": "/v1/batch",
            "requestContext": {"requestId": "r-1"}}


def statement(response: dict) -> dict:
    [only] = response["policyDocument"]["Statement"]
    return only


def test_a_known_write_key_is_allowed_on_the_whole_stage_with_the_key_as_usage_identifier():
    decision = decide(event(basic("wk-live-2")), lambda: KEYS)
    assert decision.allowed
    assert statement(decision.response) == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": STAGE_SCOPE}
    assert decision.response["usageIdentifierKey"] == "wk-live-2"
    assert "wk-live-2" not in decision.response["principalId"]  # principalId lands in logs: a fingerprint only


def test_the_header_name_is_case_insensitive_and_the_password_ignored():
    assert decide(event(basic("wk-live-1", "x"), header_name="authorization"), lambda: KEYS).allowed


@pytest.mark.parametrize("authorization, reason", [
    (basic("wk-wrong"), "unknown_write_key"),
    (basic("wk-live-1x"), "unknown_write_key"),
    (None, "missing_authorization"),
    ("", "missing_authorization"),
    ("Basic !!!not-base64!!!", "malformed_basic_auth"),
    ("Basic " + base64.b64encode(b"\xff\xfe:").decode(), "malformed_basic_auth"),
    (basic(""), "malformed_basic_auth"),
    ("Bearer wk-live-1", "not_basic_auth"),
    ("Bearer " + base64.b64encode(b"wk-live-1:").decode(), "not_basic_auth"),
])
def test_anything_but_a_known_write_key_is_denied(authorization, reason):
    decision = decide(event(authorization), lambda: KEYS)
    assert not decision.allowed and decision.reason == reason
    assert statement(decision.response)["Effect"] == "Deny"
    assert statement(decision.response)["Resource"] == STAGE_SCOPE
    assert "usageIdentifierKey" not in decision.response


def test_header_parsing_raises_typed_errors():
    assert write_key_from_header(basic("k")) == "k"
    assert write_key_from_header("basic " + base64.b64encode(b"k").decode()) == "k"  # no colon: all of it is the user
    with pytest.raises(MissingCredentials):
        write_key_from_header(None)
    with pytest.raises(UnsupportedScheme):
        write_key_from_header("Digest k")
    with pytest.raises(MalformedCredentials):
        write_key_from_header("Basic a")


def test_a_non_ascii_key_is_compared_not_crashed_on():
    assert not decide(event(basic("clé")), lambda: KEYS).allowed
    assert decide(event(basic("clé")), lambda: frozenset({"clé"})).allowed


def test_keys_are_not_loaded_for_a_request_without_credentials():
    def boom():
        raise AssertionError("loaded")

    assert not decide(event(None), boom).allowed


@pytest.mark.parametrize("secret, keys", [
    ('["a", "b"]', {"a", "b"}),
    ('{"keys": ["a"]}', {"a"}),
    ("[]", set()),
])
def test_the_secret_is_a_list_or_an_object_with_keys(secret, keys):
    assert parse_keys(secret) == keys


@pytest.mark.parametrize("secret", ["not json", '{"key": "a"}', '"a"', '[1]', '[""]', None])
def test_a_secret_of_another_shape_is_a_key_source_error(secret):
    with pytest.raises(KeySourceError):
        parse_keys(secret)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keys_are_loaded_lazily_and_cached_for_five_minutes():
    clock, loads, current = Clock(), [], {"keys": frozenset({"old"})}

    def loader():
        loads.append(clock.now)
        return current["keys"]

    cache = KeyCache(loader, clock=clock)
    assert loads == []  # nothing at construction (cold start)
    assert decide(event(basic("old")), cache).allowed
    current["keys"] = frozenset({"new"})  # rotated in the secret
    clock.now += 299
    assert decide(event(basic("old")), cache).allowed and not decide(event(basic("new")), cache).allowed
    assert len(loads) == 1
    clock.now += 1  # 300 s after the first load
    assert decide(event(basic("new")), cache).allowed and not decide(event(basic("old")), cache).allowed
    assert len(loads) == 2


def test_a_failed_reload_keeps_the_cached_keys_and_a_failed_first_load_raises():
    clock, state = Clock(), {"fail": False}

    def loader():
        if state["fail"]:
            raise KeySourceError("secret unreadable")
        return frozenset({"k"})

    cache = KeyCache(loader, clock=clock)
    assert cache() == {"k"}
    state["fail"] = True
    clock.now += 301
    assert cache() == {"k"}
    with pytest.raises(KeySourceError):  # raised, not denied: API Gateway answers 500 and the SDK retries
        KeyCache(loader, clock=clock)()


class FakeSecretsManager:
    def __init__(self, secret_string: str) -> None:
        self.secret_string, self.calls = secret_string, []

    def get_secret_value(self, SecretId: str) -> dict:
        self.calls.append(SecretId)
        return {"SecretString": self.secret_string}


def test_the_secrets_manager_loader_reads_the_secret_and_an_empty_arn_denies_everything():
    client = FakeSecretsManager('{"keys": ["k1"]}')
    assert authorizer.secrets_manager_loader("arn:secret", client)() == {"k1"}
    assert client.calls == ["arn:secret"]
    assert authorizer.secrets_manager_loader("", client)() == frozenset()


def test_the_handler_never_logs_the_key(monkeypatch, caplog):
    monkeypatch.setattr(authorizer, "_keys", KeyCache(lambda: frozenset({"wk-secret-value"})))
    with caplog.at_level("INFO", logger="letgo.collector.authorizer"):
        allowed = authorizer.handler(event(basic("wk-secret-value")))
        denied = authorizer.handler(event(basic("wk-secret-valuf")))
    assert statement(allowed)["Effect"] == "Allow" and statement(denied)["Effect"] == "Deny"
    assert caplog.records and "wk-secret-val" not in caplog.text
