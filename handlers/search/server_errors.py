"""Errors gunicorn answers itself, before the app sees the request, in the API's one JSON error shape.

Why: gunicorn refuses a request line over ``limit_request_line`` (414), too many or too large headers (431) or a
malformed request (400) with its own little HTML page — a client of a JSON API then gets HTML it cannot parse.
gunicorn writes those pages through one function, ``gunicorn.util.write_error``; :func:`install` (run by
``gunicorn_conf.py`` in the master, before the workers fork) replaces it with :func:`write_json_error`, which
answers ``{"error": {"status", "code", "message", "request_id"}}`` like every error of the app
(:mod:`handlers.search.api`) and sets ``X-Request-Id``. The app itself answers 414 for URLs over
:data:`handlers.search.api.MAX_URL_BYTES` (gunicorn's limit is set higher, to its maximum), so this is the last
line for what gunicorn cannot even parse.
"""
from __future__ import annotations

import json
import re
import uuid
from typing import Any

CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
         431: "request_header_fields_too_large", 500: "internal_error", 501: "not_implemented"}


def body(status: int, reason: str, message: str, request_id: str) -> bytes:
    code = CODES.get(status) or re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_") or "error"
    return json.dumps({"error": {"status": status, "code": code, "message": message or reason,
                                 "request_id": request_id}}).encode()


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error`` signature, answering JSON instead of HTML."""
    from gunicorn.util import write_nonblock

    request_id = uuid.uuid4().hex
    payload = body(status_int, reason, mesg[:300], request_id)
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"X-Request-Id: {request_id}\r\nX-Content-Type-Options: nosniff\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n")
    write_nonblock(sock, head.encode("latin-1") + payload)


def install() -> None:
    import gunicorn.util

    gunicorn.util.write_error = write_json_error
