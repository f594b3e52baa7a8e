"""Lazily created boto3 clients, one per service and thread-agnostic.

Handlers never build clients at import time: moto, the local stage and tests point them elsewhere through
``AWS_ENDPOINT_URL`` (honoured by boto3 itself) before the first call. Retries use boto's standard mode.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

# Short timeouts on purpose: a hung dependency must fail an attempt quickly so the consumers' own backoff
# (which waits out outages for as long as they last) stays in charge, within a Lambda invocation's time.
_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=10)


@lru_cache(maxsize=None)
def client(service: str, endpoint_url: str | None = None) -> Any:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"
    return boto3.session.Session().client(service, region_name=region, config=_CONFIG,
                                          endpoint_url=endpoint_url or None)


def reset_clients() -> None:
    """Forget cached clients (tests and the local stage call this after changing the endpoint)."""
    client.cache_clear()
