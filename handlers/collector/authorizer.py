"""Lambda REQUEST authorizer of the collector API: the Segment write key, sent as the HTTP Basic user name.

Unmodified Segment SDKs authenticate with ``Authorization: Basic base64("<write key>:")``. The write keys
live in a Secrets Manager secret (``WRITE_KEYS_SECRET_ARN``) whose SecretString is a JSON list of keys or
``{"keys": [...]}``; it is read lazily and kept for 5 minutes, so a rotation takes effect within minutes
(plus API Gateway's own 300 s cache of each decision) without a deployment.

The answer is an IAM policy on ``execute-api:Invoke`` for the whole stage (API Gateway caches it per
``Authorization`` header and reuses it on every route), with ``usageIdentifierKey`` = the write key: the
API's key source is AUTHORIZER, so the usage plan throttles and meters each source by its own write key.

Pure core (``write_key_from_header``, ``is_known``, ``parse_keys``, ``decide``) — no I/O, errors as types —
and a thin ``handler`` that injects the Secrets Manager loader. The key itself is never logged: only a
short fingerprint (``principalId``) that tells sources apart in the logs.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping

CACHE_SECONDS = 300.0
DENIED_PRINCIPAL = "denied"

log = logging.getLogger("letgo.collector.authorizer")
log.setLevel(logging.INFO)


# -- errors -------------------------------------------------------------------------------------------
class Denied(Exception):
    """The request does not carry a known write key (the answer is a Deny policy). ``reason`` is loggable."""

    reason = "denied"


class MissingCredentials(Denied):
    reason = "missing_authorization"


class UnsupportedScheme(Denied):
    reason = "not_basic_auth"


class MalformedCredentials(Denied):
    reason = "malformed_basic_auth"


class UnknownWriteKey(Denied):
    reason = "unknown_write_key"


class KeySourceError(Exception):
    """The write keys could not be read (secret missing, unreadable or of the wrong shape). Raised, not
    turned into a Deny: API Gateway answers 500 and the SDK retries, instead of dropping the batch."""


class BadMethodArn(Exception):
    """The event's methodArn is not an execute-api method ARN."""


# -- pure core ----------------------------------------------------------------------------------------
def write_key_from_header(header: str | None) -> str:
    """The user name of an HTTP Basic ``Authorization`` header (the password, empty for Segment, is ignored)."""
    if not header or not header.strip():
        raise MissingCredentials()
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise UnsupportedScheme()
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise MalformedCredentials() from None
    user = decoded.split(":", 1)[0]
    if not user:
        raise MalformedCredentials()
    return user


def is_known(candidate: str, keys: Collection[str]) -> bool:
    """Constant-time membership: every key is compared in full, whatever matches (no early exit)."""
    given = candidate.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode("utf-8"))
    return found


def parse_keys(secret_string: str) -> frozenset[str]:
    """SecretString -> keys: a JSON list of strings, or an object ``{"keys": [...]}``."""
    try:
        document = json.loads(secret_string)
    except (TypeError, ValueError):
        raise KeySourceError("the write-keys secret is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else document
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise KeySourceError('the write-keys secret must be a JSON list of non-empty strings or {"keys": [...]}')
    return frozenset(keys)


def fingerprint(write_key: str) -> str:
    """Tells sources apart in logs and metrics without revealing the key."""
    return "wk-" + hashlib.sha256(write_key.encode("utf-8")).hexdigest()[:12]


def stage_scope(method_arn: str) -> str:
    """``arn:…:execute-api:region:account:api/stage/METHOD/path`` -> ``arn:…:api/stage/*``: the decision is
    cached per header and reused on every route, so it must cover the stage, not one method."""
    parts = method_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "execute-api":
        raise BadMethodArn(method_arn)
    api_stage = parts[5].split("/")
    if len(api_stage) < 2 or not api_stage[0] or not api_stage[1]:
        raise BadMethodArn(method_arn)
    return ":".join(parts[:5]) + f":{api_stage[0]}/{api_stage[1]}/*"


def policy(principal: str, effect: str, resource: str, usage_key: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]},
    }
    if usage_key is not None:
        answer["usageIdentifierKey"] = usage_key
        answer["context"] = {"writeKeyId": principal}
    return answer


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """HTTP header names are case-insensitive; API Gateway passes them as the client spelled them."""
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if key.lower() == wanted:
            return value
    return None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    principal: str
    response: dict[str, Any]


def decide(event: Mapping[str, Any], keys: Callable[[], Collection[str]]) -> Decision:
    """The authorizer's answer to one REQUEST event. ``keys`` is called only when a key must be checked."""
    scope = stage_scope(event.get("methodArn", ""))
    try:
        write_key = write_key_from_header(header(event.get("headers"), "Authorization"))
        if not is_known(write_key, keys()):
            raise UnknownWriteKey()
    except Denied as denied:
        return Decision(False, denied.reason, DENIED_PRINCIPAL, policy(DENIED_PRINCIPAL, "Deny", scope))
    principal = fingerprint(write_key)
    return Decision(True, "allowed", principal, policy(principal, "Allow", scope, usage_key=write_key))


class KeyCache:
    """Keys from ``loader``, reloaded after ``ttl`` seconds. If a reload fails while keys are cached, the
    stale keys keep serving (the failure is logged) and the next call retries."""

    def __init__(self, loader: Callable[[], frozenset[str]], ttl: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._loader, self._ttl, self._clock = loader, ttl, clock
        self._keys: frozenset[str] | None = None
        self._loaded_at = 0.0

    def __call__(self) -> frozenset[str]:
        now = self._clock()
        if self._keys is None or now - self._loaded_at >= self._ttl:
            try:
                self._keys = self._loader()
                self._loaded_at = now
            except KeySourceError:
                if self._keys is None:
                    raise
                log.exception("reloading the write keys failed; serving the cached ones")
        return self._keys


# -- Lambda entry point -------------------------------------------------------------------------------
def secrets_manager_loader(secret_arn: str, client: Any = None) -> Callable[[], frozenset[str]]:
    def load() -> frozenset[str]:
        if not secret_arn:
            log.warning("WRITE_KEYS_SECRET_ARN is empty: every request is denied")
            return frozenset()
        nonlocal client
        if client is None:
            import boto3  # provided by the Lambda runtime

            client = boto3.client("secretsmanager")
        try:
            secret = client.get_secret_value(SecretId=secret_arn)
        except Exception as error:  # botocore's ClientError and connection errors alike
            raise KeySourceError(f"cannot read the write-keys secret: {type(error).__name__}") from None
        return parse_keys(secret.get("SecretString"))

    return load


_keys: KeyCache | None = None


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    global _keys
    if _keys is None:
        _keys = KeyCache(secrets_manager_loader(os.environ.get("WRITE_KEYS_SECRET_ARN", "")))
    decision = decide(event, _keys)
    log.info(json.dumps({"decision": "allow" if decision.allowed else "deny", "reason": decision.reason,
                         "principal": decision.principal, "requestId": (event.get("requestContext") or {})
                         .get("requestId"), "path": event.get("path")}))
    return decision.response
