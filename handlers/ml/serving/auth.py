"""Who may ask the serving fleet for a version that is not live: the validator, by signed request.

Users must never get a candidate (not yet validated) or a rolled-back version, so the *public* routes answer
from the live pointer only and refuse ``X-Model-Version``. The validator still has to ask a candidate its golden
requests on the real fleet before it goes live; it does so on an internal route
(``/internal/validate/<model>/<version>/<endpoint>``) with a header that proves it holds the model store's
**validation key** (``<prefix>_validation/key.json``, created by the validator, readable by whoever can read the
model store)::

    X-Letgo-Validation: t=<unix seconds>,sig=<hex HMAC-SHA256(key, "letgo-validation-v1\\n<t>\\n<METHOD>\\n<path>
                                                                  \\n<query>\\n<sha256 hex of the body>")>

Why a key in the store and not IAM or a header: on AWS the serving API is IAM-authorised for every caller (IAM
cannot filter headers, and HTTP APIs have no resource policies), so anyone allowed to call it could otherwise
pin any version. Holding the key requires read access to the model store — and whoever has that can already
download and run any artefact, so the signature grants nothing new. The signature binds method, path (model and
version), query and body, and expires after :data:`MAX_SKEW_SECONDS`: a captured request cannot be replayed for
another version or input, nor later. Verification is a constant-time comparison (microseconds); the key is read
once and again at most every ``refresh_seconds`` when a signature does not match (a key created or rotated after
the process started).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from typing import Callable

HEADER = "X-Letgo-Validation"
SCHEME = b"letgo-validation-v1"
MAX_SKEW_SECONDS = 300
_VALUE = re.compile(r"^t=(\d{1,12}),sig=([0-9a-f]{64})$")


class AuthFailed(Exception):
    """The internal request carries no valid signature; ``reason`` says which check failed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def canonical(method: str, path: str, query: str, body: bytes, timestamp: int) -> bytes:
    return b"\n".join([SCHEME, str(timestamp).encode(), method.upper().encode(), path.encode("utf-8"),
                       query.encode("utf-8"), hashlib.sha256(body).hexdigest().encode()])


def sign(key: bytes, method: str, path: str, body: bytes = b"", *, query: str = "",
         now: float | None = None) -> str:
    """The header value that authenticates this exact request (the validator's side)."""
    timestamp = int(time.time() if now is None else now)
    digest = hmac.new(key, canonical(method, path, query, body, timestamp), hashlib.sha256).hexdigest()
    return f"t={timestamp},sig={digest}"


class Verifier:
    """Checks :data:`HEADER` against the store's key (the serving side). ``read_key`` returns the key or None."""

    def __init__(self, read_key: Callable[[], bytes | None], *, clock: Callable[[], float] = time.time,
                 refresh_seconds: float = 10.0) -> None:
        self.read_key, self.clock, self.refresh_seconds = read_key, clock, refresh_seconds
        self._key: bytes | None = None
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def _current_key(self, *, again: bool) -> bytes | None:
        with self._lock:
            stale = self._read_at is None or (again and self.clock() - self._read_at >= self.refresh_seconds)
            if stale:
                self._read_at = self.clock()
                try:
                    self._key = self.read_key() or self._key
                except Exception:  # noqa: BLE001 - the store unreachable: keep the key we had (or none)
                    pass
            return self._key

    def verify(self, value: str | None, method: str, path: str, query: str, body: bytes) -> None:
        """Return when the signature is valid; :class:`AuthFailed` otherwise."""
        if not value:
            raise AuthFailed(f"the {HEADER} header is required on internal routes")
        match = _VALUE.match(value.strip())
        if match is None:
            raise AuthFailed(f"the {HEADER} header is not t=<unix seconds>,sig=<64 hex>")
        timestamp, signature = int(match.group(1)), match.group(2)
        if abs(self.clock() - timestamp) > MAX_SKEW_SECONDS:
            raise AuthFailed(f"the signature is older (or newer) than {MAX_SKEW_SECONDS} s")
        message = canonical(method, path, query, body, timestamp)
        for again in (False, True):
            key = self._current_key(again=again)
            if key is not None and hmac.compare_digest(hmac.new(key, message, hashlib.sha256).hexdigest(), signature):
                return
        raise AuthFailed("the signature does not match this request and the model store's validation key")
