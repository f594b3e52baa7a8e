"""A small HTTP client for the serving API: the validator's one way to ask it something.

The validator depends on the :class:`ServingClient` protocol only — ``request(method, path, body, headers)``
returning an :class:`HttpAnswer` — so tests point it at a local server (or anything else) and the Lambda
points it at the serving URL. :class:`HttpClient` is the real one, on the standard library's urllib (no
extra dependency in the Lambda zip). Two signatures, for two gates: on AWS every route of the serving API is
IAM-authorised, so the client signs with SigV4 (:class:`SigV4Signer`: botocore's ``SigV4Auth`` over the exact
bytes sent, credentials of the Lambda's role, service ``execute-api`` for API Gateway); and the fleet's internal
route, where a version that is not live can be asked, also wants the model store's validation key
(``validation_key``: an HMAC header, :mod:`handlers.ml.serving.auth`) — which callers of the API do not have.

An HTTP error status is an answer (the validator reads the JSON error's ``code``); only "no answer at all"
— refused connection, timeout, DNS — raises :class:`~handlers.ml.serving.errors.ServingUnreachable`.
"""
from __future__ import annotations

import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import orjson

from handlers.ml.serving import auth
from handlers.ml.serving.errors import ServingUnreachable


@dataclass(frozen=True)
class HttpAnswer:
    """One HTTP answer: the status and the JSON body (None when the body was not JSON)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class ServingClient(Protocol):
    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
                headers: Mapping[str, str] | None = None, validation_key: bytes | None = None) -> HttpAnswer: ...


class Signer(Protocol):
    def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]: ...


class SigV4Signer:
    """Adds AWS Signature Version 4 headers for ``service`` in ``region`` (credentials lazily from boto3)."""

    def __init__(self, region: str, *, service: str = "execute-api", credentials: Any = None) -> None:
        self.region, self.service, self._credentials = region, service, credentials

    def _frozen(self) -> Any:
        if self._credentials is None:
            import boto3

            self._credentials = boto3.session.Session().get_credentials()
            if self._credentials is None:
                raise ServingUnreachable("(signing)", "no AWS credentials to sign the request with")
        return self._credentials.get_frozen_credentials() if hasattr(self._credentials, "get_frozen_credentials") \
            else self._credentials

    def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        signed = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(self._frozen(), self.service, self.region).add_auth(signed)
        return dict(signed.headers.items())


class HttpClient:
    """The serving API at ``base_url`` over urllib; JSON in and out; optionally SigV4-signed."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, signer: Signer | None = None) -> None:
        self.base_url, self.timeout, self.signer = base_url.rstrip("/"), timeout, signer

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
                headers: Mapping[str, str] | None = None, validation_key: bytes | None = None) -> HttpAnswer:
        """One request; ``validation_key`` signs it for the fleet's internal route (:mod:`.auth`)."""
        url = self.base_url + path
        data, query = b"", ""
        if method == "GET" and body:
            query = urllib.parse.urlencode({k: v for k, v in body.items() if v is not None})
            url += "?" + query
        elif body is not None:
            data = orjson.dumps(dict(body))
        all_headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if data else {}),
                       **dict(headers or {})}
        if validation_key is not None:
            all_headers[auth.HEADER] = auth.sign(validation_key, method, path, data, query=query)
        if self.signer is not None:
            all_headers = self.signer.sign(method, url, all_headers, data)
        prepared = urllib.request.Request(url, data=data or None, headers=all_headers, method=method)
        try:
            with urllib.request.urlopen(prepared, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                return HttpAnswer(response.status, _json(response.read()), dict(response.headers.items()))
        except urllib.error.HTTPError as error:
            with error:
                return HttpAnswer(error.code, _json(error.read()), dict(error.headers.items()))
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise ServingUnreachable(url, f"{type(error).__name__}: {reason}") from None


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
