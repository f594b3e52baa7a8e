"""A Segment-compatible HTTP collector on 127.0.0.1: the local twin of the API Gateway → Kinesis route.

Unmodified Segment SDKs post to ``/v1/batch`` (and ``/v1/track``, ``/v1/identify``, ``/v1/screen``,
``/v1/page``…) with HTTP Basic auth, the write key as user name. Like the API Gateway service integration
the collector does not validate events — it puts each request body on the stream as one record (the
consumer normalises and validates) and answers ``{"success": true}``.
"""
from __future__ import annotations

import base64
import hmac
import uuid
from typing import Any

import orjson
from flask import Flask, Response, jsonify, request

from letgo.services import BackgroundServer

CALLS = ("track", "identify", "screen", "page", "group", "alias")
MAX_BODY = 1024 * 1024  # a Kinesis record's limit; Segment batches are at most 500 KB


def partition_key(body: bytes) -> str:
    """The (first) event's user, as the API Gateway route does: one user's events stay on one shard."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return str(uuid.uuid4())  # gzipped or broken: any shard (the consumer sorts it out)
    if isinstance(payload, dict):
        first = payload["batch"][0] if isinstance(payload.get("batch"), list) and payload["batch"] else payload
        if isinstance(first, dict):
            for key in ("userId", "anonymousId"):
                if isinstance(first.get(key), str) and first[key]:
                    return first[key][:256]
    return str(uuid.uuid4())


def create_app(kinesis: Any, stream: str, write_keys: set[str]) -> Flask:
    app = Flask("letgo-collector")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    def authorised() -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            return False
        return any(hmac.compare_digest(user, key) for key in write_keys)

    def put(body: bytes, partition_key: str) -> Response:
        kinesis.put_record(StreamName=stream, Data=body, PartitionKey=partition_key)
        return jsonify(success=True)

    @app.post("/v1/batch")
    @app.post("/v1/import")
    def batch() -> Any:
        if not authorised():
            return jsonify(error="invalid write key"), 401
        body = request.get_data()
        return put(body, partition_key(body))

    @app.post("/v1/<call>")
    def single(call: str) -> Any:
        if call not in CALLS:
            return jsonify(error=f"unknown call {call!r}"), 404
        if not authorised():
            return jsonify(error="invalid write key"), 401
        body = request.get_data()
        try:  # the SDK's per-call endpoints may omit "type": it is implied by the path
            payload = orjson.loads(body)
            if isinstance(payload, dict) and "type" not in payload:
                payload["type"] = call
                body = orjson.dumps(payload)
        except orjson.JSONDecodeError:
            pass  # forwarded as is: the consumer quarantines it with reason not_json
        return put(body, partition_key(body))

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="ok")

    return app


class Collector(BackgroundServer):
    """Runs the collector app on a free loopback port in a background thread."""

    def __init__(self, kinesis: Any, stream: str, write_keys: set[str]) -> None:
        super().__init__(create_app(kinesis, stream, write_keys))
