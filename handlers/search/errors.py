"""Errors of the search system, as types that carry data.

The search API translates them to HTTP in one place (``status_code`` + ``to_dict()``); the stream indexer
reads :class:`IndexingFailed` per item, so one listing the engine refuses does not hold back the others.
"""
from __future__ import annotations

from typing import Any

from handlers.core.failures import Unavailable


class SearchError(Exception):
    """Base of every error the search package raises on purpose."""

    status_code = 500

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": str(self)}


class InvalidRequest(SearchError):
    """A search or autocomplete request the caller must fix: names the field and why (an HTTP 400)."""

    status_code = 400

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"error": "invalid_request", "field": self.field, "reason": self.reason}


class InvalidAd(SearchError):
    """A listing that cannot be indexed as it is (bad or missing field); the indexer quarantines it."""

    status_code = 422

    def __init__(self, item_id: str | None, field: str, reason: str) -> None:
        self.item_id = item_id
        self.field = field
        self.reason = reason
        super().__init__(f"ad {item_id or '?'}: {field}: {reason}")


class IndexingFailed(SearchError):
    """The engine refused some listings of a bulk; the others were written. ``failures`` = (item_id, reason)."""

    def __init__(self, failures: tuple[tuple[str, str], ...], indexed: int) -> None:
        self.failures = failures
        self.indexed = indexed
        first = "; ".join(f"{item}: {why}" for item, why in failures[:3])
        super().__init__(f"{len(failures)} listing(s) refused, {indexed} written ({first})")


class BackendUnavailable(SearchError, Unavailable):
    """The search engine cannot be reached or answered with a server error (an HTTP 503; retry later).

    An outage, not bad data: the stream indexer waits it out and hands its batch back whole."""

    status_code = 503

    def __init__(self, backend: str, detail: str) -> None:
        Unavailable.__init__(self, backend, detail)
        self.backend = backend
