"""Errors as types.

Two families live here:

* :class:`Rejection` — *data* about a bad input record. It is not raised across the batch: the
  processing core returns it so the record goes to the quarantine and the batch goes on.
* the sink errors — *exceptions*. A sink failure makes the batch (or some of its records) fail so the
  event source retries them.

A broken definition file raises :class:`handlers.schema.errors.DefinitionError` (the definition language's
error); :class:`Invalid` and :class:`Reason` are what the compiled field checks of :mod:`handlers.schema.fields`
raise on a bad value.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from handlers.core.failures import Unavailable


class Reason(str, enum.Enum):
    """Machine-readable reason codes for quarantined records (stable: dashboards and alerts key on them)."""

    NOT_JSON = "not_json"
    INVALID_UTF8 = "invalid_utf8"
    NOT_AN_OBJECT = "not_an_object"
    RECORD_TOO_LARGE = "record_too_large"
    BAD_COMPRESSION = "bad_compression"
    NON_FINITE_NUMBER = "non_finite_number"
    TOO_DEEP = "too_deep"
    MISSING_FIELD = "missing_field"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNKNOWN_PROPERTY = "unknown_property"
    INVALID_TYPE = "invalid_type"
    OUT_OF_RANGE = "out_of_range"
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    PATTERN_MISMATCH = "pattern_mismatch"
    NOT_IN_ENUM = "not_in_enum"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    # the core itself failed on this unit (a bug, RecursionError, MemoryError): the unit is quarantined alone, the
    # batch goes on; Rejection.exception holds the exception for Sentry
    INTERNAL_ERROR = "internal_error"
    SINK_REJECTED = "sink_rejected"  # a sink refused this event's values (e.g. a PostgreSQL data exception)


class Invalid(Exception):
    """Raised inside the core by a field validator; caught per record and turned into a Rejection."""

    __slots__ = ("reason", "field", "message")

    def __init__(self, reason: Reason, field: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message


@dataclass(slots=True, frozen=True)
class Rejection:
    """A record (or one event of a Segment batch record) that could not be accepted, and why."""

    reason: Reason
    field: str | None
    message: str
    sequence_number: str
    index: int  # position of the event inside its Kinesis record (0 unless the record held a batch)
    event_type: str | None
    app_version: str | None
    raw: bytes  # exactly what we could not accept: the record's bytes, or the event's JSON
    # Only for Reason.INTERNAL_ERROR: the exception the core raised on this unit, formatted with its traceback
    # (type, message, where), for the Sentry report. Like ``message`` it may quote the input: scrub it as such.
    exception: str | None = None

    def describe(self) -> str:
        where = f"record {self.sequence_number}" + (f" event #{self.index}" if self.index else "")
        field = f" field '{self.field}'" if self.field else ""
        kind = f" ({self.event_type})" if self.event_type else ""
        return f"{where}{kind}{field}: [{self.reason.value}] {self.message}"


class SinkError(Exception):
    """A sink could not take (part of) a batch; the event source must retry the named records."""

    def __init__(self, sink: str, message: str, failed_sequence_numbers: frozenset[str] | None = None):
        self.sink = sink
        self.detail = message
        # None means "the whole batch": the failure is not attributable to individual records.
        self.failed_sequence_numbers = failed_sequence_numbers
        Exception.__init__(self, f"{sink}: {message}")


class SinkUnavailable(SinkError, Unavailable):
    """Infrastructure, not data: the sink cannot be reached or cannot take anything right now.

    Connection refused or reset, a timeout, throttling, a 5xx, a database in recovery or shutting down. The
    whole batch waits and is retried with backoff — never bisected, never quarantined, never dropped.
    """

    def __init__(self, sink: str, message: str) -> None:
        SinkError.__init__(self, sink, message, None)
        self.dependency = sink
