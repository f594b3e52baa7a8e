"""The processing core: Kinesis records in, good events and rejections out. Pure — no I/O.

Per record: base64 (gzip tolerated) -> size guard -> JSON -> Segment normalisation (a record may hold a
``{"batch": [...]}`` of many events) -> envelope checks -> the event type's compiled property checks ->
timestamp checks against the record's *arrival* time (so that a retried batch gives the same
answer) -> in-batch de-duplication on ``messageId``.

Every input unit (an event, or a record that never became one) ends in exactly one bucket of the
returned :class:`BatchResult`: ``events``, ``rejections`` or ``duplicates``. The sinks and the
conservation report rely on that.

Clean native events first try :mod:`fastpath` (msgspec decodes and validates in C); whatever it does not
accept takes the generic path described above, which alone decides rejections.
"""
from __future__ import annotations

import binascii
import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import msgspec
import orjson

from handlers.tracking.errors import Invalid, Reason, Rejection
from handlers.tracking.event_types import Catalog
from handlers.tracking.fastpath import FastDecoder, to_builtins
from handlers.tracking.fields import canonical_timestamp, format_timestamp, sanitise_string
from handlers.tracking.settings import Settings

SEGMENT_CALLS = frozenset({"track", "screen", "identify", "page", "group", "alias"})
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(slots=True, frozen=True)
class RawRecord:
    """A Kinesis record as every event source hands it over: base64 data plus its coordinates."""

    sequence_number: str
    partition_key: str
    data: str  # base64, exactly as delivered (archived as is)
    arrival: float  # approximate arrival timestamp, epoch seconds
    shard_id: str = "shardId-000000000000"


_json = msgspec.json.Encoder()


class Event:
    """A validated, normalised event ready for the sinks.

    ``context`` and ``properties`` are plain dicts to readers. Events from the fast path hold msgspec
    Structs underneath and serialise them directly (no intermediate dicts on the hot path); the dicts
    are built only if someone reads them.
    """

    __slots__ = ("message_id", "type", "version", "timestamp", "epoch", "received_at", "sent_at", "user_id",
                 "anonymous_id", "_context", "_properties", "sequence_number")

    def __init__(self, message_id: str, type: str, version: int, timestamp: str, epoch: float, received_at: str,
                 sent_at: str | None, user_id: str | None, anonymous_id: str | None, context: Any, properties: Any,
                 sequence_number: str) -> None:
        self.message_id, self.type, self.version = message_id, type, version
        self.timestamp, self.epoch, self.received_at, self.sent_at = timestamp, epoch, received_at, sent_at
        self.user_id, self.anonymous_id = user_id, anonymous_id
        self._context, self._properties = context, properties  # dicts, or Structs from the fast path
        self.sequence_number = sequence_number

    @property
    def context(self) -> dict[str, Any]:
        if type(self._context) is not dict:
            self._context = to_builtins(self._context)
        return self._context

    @property
    def properties(self) -> dict[str, Any]:
        if type(self._properties) is not dict:
            self._properties = to_builtins(self._properties)
        return self._properties

    def to_document(self) -> dict[str, Any]:
        """The platform's envelope, as written to Firehose / S3 and handed to other systems."""
        return {
            "messageId": self.message_id, "type": self.type, "version": self.version,
            "timestamp": self.timestamp, "receivedAt": self.received_at, "sentAt": self.sent_at,
            "userId": self.user_id, "anonymousId": self.anonymous_id,
            "context": self._context, "properties": self._properties,
        }

    def to_json(self) -> bytes:
        """The document as one JSON line's bytes (no newline)."""
        return _json.encode(self.to_document())

    def context_json(self) -> str:
        return _json.encode(self._context).decode()

    def properties_json(self) -> str:
        return _json.encode(self._properties).decode()


@dataclass(slots=True)
class Duplicate:
    message_id: str
    sequence_number: str


@dataclass
class BatchResult:
    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)

    @property
    def units(self) -> int:
        return len(self.events) + len(self.rejections) + len(self.duplicates)


class Processor:
    """Holds the compiled catalog and settings; ``process`` is called once per batch."""

    def __init__(self, catalog: Catalog, settings: Settings, *, fast_path: bool = True) -> None:
        self.catalog = catalog
        self.settings = settings
        self.fast = FastDecoder(catalog, catalog.context_properties, max_message_id=settings.max_message_id_length,
                                max_user_id=settings.max_user_id_length) if fast_path else None

    # -- record level -------------------------------------------------------------------------------
    def process(self, records: Iterable[RawRecord]) -> BatchResult:
        result = BatchResult()
        seen: set[str] = set()
        for record in records:
            self._process_record(record, result, seen)
        return result

    def _reject(self, result: BatchResult, record: RawRecord, index: int, error: Invalid, raw: bytes,
                event_type: str | None = None, app_version: str | None = None) -> None:
        result.rejections.append(Rejection(error.reason, error.field, error.message, record.sequence_number,
                                           index, event_type, app_version, raw))

    def _process_record(self, record: RawRecord, result: BatchResult, seen: set[str]) -> None:
        try:
            data = binascii.a2b_base64(record.data)
        except (binascii.Error, ValueError):
            raw = record.data.encode("ascii", "replace")
            return self._reject(result, record, 0, Invalid(Reason.NOT_JSON, None, "data is not valid base64"), raw)
        fast = self.fast
        if fast is not None and len(data) <= self.settings.max_record_bytes and fast.eligible(data):
            event = self._fast_event(fast, data, record)
            if event is not None:
                if event.message_id in seen:
                    result.duplicates.append(Duplicate(event.message_id, record.sequence_number))
                else:
                    seen.add(event.message_id)
                    result.events.append(event)
                return None
        try:
            payload = self.decode(data)
        except Invalid as error:
            return self._reject(result, record, 0, error, data)

        if "batch" in payload and "type" not in payload:
            items = payload["batch"]
            if type(items) is not list:
                return self._reject(result, record, 0,
                                    Invalid(Reason.INVALID_TYPE, "batch", "a Segment batch must be a list"), data)
            if len(items) > self.settings.max_batch_events:
                return self._reject(result, record, 0, Invalid(
                    Reason.TOO_LONG, "batch",
                    f"{len(items)} events in one batch, the limit is {self.settings.max_batch_events}"), data)
            defaults = {k: payload[k] for k in ("sentAt", "context") if k in payload}
            for index, item in enumerate(items):
                if type(item) is dict and defaults:
                    item = {**defaults, **item}
                self._process_event(item, record, index, result, seen, None)
        else:
            self._process_event(payload, record, 0, result, seen, data)

    def decode(self, data: bytes) -> dict[str, Any]:
        """bytes -> JSON object, with a specific reason for each way it can fail."""
        limit = self.settings.max_record_bytes
        if len(data) > limit:
            raise Invalid(Reason.RECORD_TOO_LARGE, None, f"{len(data)} bytes, the limit is {limit}")
        if data[:2] == _GZIP_MAGIC:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                data = inflater.decompress(data, limit + 1)
            except zlib.error as exc:
                raise Invalid(Reason.BAD_COMPRESSION, None, f"gzip data is corrupt: {exc}") from None
            if len(data) > limit or inflater.unconsumed_tail:
                raise Invalid(Reason.RECORD_TOO_LARGE, None, f"decompresses to more than {limit} bytes")
            if not inflater.eof:
                raise Invalid(Reason.BAD_COMPRESSION, None, "gzip data is truncated")
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise self._explain_bad_json(data, exc) from None
        if type(payload) is not dict:
            kind = "array" if isinstance(payload, list) else type(payload).__name__
            raise Invalid(Reason.NOT_AN_OBJECT, None, f"the record is a JSON {kind}, not an object")
        return payload

    @staticmethod
    def _explain_bad_json(data: bytes, exc: orjson.JSONDecodeError) -> Invalid:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Invalid(Reason.INVALID_UTF8, None, f"invalid UTF-8 at byte {bad.start}: {bad.reason}")
        if "recursion" in str(exc).lower():
            return Invalid(Reason.TOO_DEEP, None, "JSON nesting exceeds the parser's limit")
        try:  # the standard library accepts the NaN / Infinity literals that JSON (and orjson) do not
            json.loads(text)
        except ValueError:
            return Invalid(Reason.NOT_JSON, None, f"not JSON: {exc}")
        return Invalid(Reason.NON_FINITE_NUMBER, None, "NaN or Infinity is not a valid JSON number")

    # -- event level --------------------------------------------------------------------------------
    def _process_event(self, obj: Any, record: RawRecord, index: int, result: BatchResult, seen: set[str],
                       raw: bytes | None) -> None:
        event_type = app_version = None
        try:
            if type(obj) is not dict:
                raise Invalid(Reason.NOT_AN_OBJECT, None, "a batch item is not a JSON object")
            context = obj.get("context")
            if type(context) is dict:
                app = context.get("app")
                if type(app) is dict and type(app.get("version")) is str:
                    app_version = app["version"]
            event = self._build_event(obj, record)
            event_type = event.type
        except Invalid as error:
            if event_type is None and type(obj) is dict:
                event_type = self._type_name(obj)
            if raw is None:
                raw = orjson.dumps(obj)  # a batch item: it came from orjson, so it serialises back
            result.rejections.append(Rejection(error.reason, error.field, error.message, record.sequence_number,
                                               index, event_type, app_version, raw))
            return
        if event.message_id in seen:
            result.duplicates.append(Duplicate(event.message_id, record.sequence_number))
            return
        seen.add(event.message_id)
        result.events.append(event)

    def _fast_event(self, fast: FastDecoder, data: bytes, record: RawRecord) -> Event | None:
        """The fast path's event, or None: then the generic path decides (and explains any rejection)."""
        envelope = fast.decode(data)
        if envelope is None or (envelope.userId is None and envelope.anonymousId is None):
            return None
        try:
            timestamp, epoch = canonical_timestamp(envelope.timestamp, "timestamp")
            self._check_time(timestamp, epoch, record.arrival)
            sent_at = envelope.sentAt
            if sent_at is not None:
                sent_at = canonical_timestamp(sent_at, "sentAt")[0]
        except Invalid:
            return None
        name, version = fast.versions[type(envelope)]
        context = envelope.context if envelope.context is not None else {}
        properties = envelope.properties if envelope.properties is not None else {}
        return Event(envelope.messageId, name, version, timestamp, epoch, format_timestamp_epoch(record.arrival),
                     sent_at, envelope.userId, envelope.anonymousId, context, properties, record.sequence_number)

    def _check_time(self, timestamp: str, epoch: float, arrival: float) -> None:
        settings = self.settings
        if epoch > arrival + settings.max_future_seconds:
            raise Invalid(Reason.TIMESTAMP_IN_FUTURE, "timestamp",
                          f"{timestamp} is {(epoch - arrival) / 3600:.1f} h after arrival "
                          f"(limit {settings.max_future_seconds / 3600:g} h)")
        if epoch < arrival - settings.max_past_seconds:
            raise Invalid(Reason.TIMESTAMP_TOO_OLD, "timestamp",
                          f"{timestamp} is {(arrival - epoch) / 86400:.1f} days before arrival "
                          f"(limit {settings.max_past_seconds / 86400:g} days)")

    @staticmethod
    def _type_name(obj: dict[str, Any]) -> str | None:
        kind = obj.get("type")
        if kind == "track":
            kind = obj.get("event")
        elif kind == "screen":
            return "Screen"
        elif kind == "identify":
            return "Identify"
        return kind[:64] if type(kind) is str else None

    def _build_event(self, obj: dict[str, Any], record: RawRecord) -> Event:
        settings = self.settings
        kind = obj.get("type")
        properties = obj.get("properties")
        if kind in SEGMENT_CALLS:  # an unmodified Segment SDK payload: normalise to our envelope
            if kind == "track":
                kind = obj.get("event")
                if kind is None:
                    raise Invalid(Reason.MISSING_FIELD, "event", "a Segment track call needs 'event'")
            elif kind == "screen":
                properties = dict(properties or {})
                if obj.get("name") is not None:
                    properties["name"] = obj["name"]
                kind = "Screen"
            elif kind == "identify":
                properties, kind = obj.get("traits"), "Identify"
            else:
                kind = kind.capitalize()
        if kind is None:
            raise Invalid(Reason.MISSING_FIELD, "type", "every event needs 'type'")
        if type(kind) is not str:
            raise Invalid(Reason.INVALID_TYPE, "type", "'type' must be a string")
        event_type = self.catalog.types.get(kind)
        if event_type is None:
            raise Invalid(Reason.UNKNOWN_EVENT_TYPE, "type",
                          f"{kind[:64]!r} has no definition in event_types/ (add {kind[:64]}.yaml, then re-drive)")

        message_id = obj.get("messageId")
        if message_id is None:
            raise Invalid(Reason.MISSING_FIELD, "messageId", "every event needs a unique 'messageId'")
        if type(message_id) is not str:
            raise Invalid(Reason.INVALID_TYPE, "messageId", "'messageId' must be a string")
        message_id = message_id.strip()
        if not message_id:
            raise Invalid(Reason.MISSING_FIELD, "messageId", "'messageId' is empty")
        if len(message_id) > settings.max_message_id_length:
            raise Invalid(Reason.TOO_LONG, "messageId",
                          f"{len(message_id)} characters, the limit is {settings.max_message_id_length}")

        user_id = self._identity(obj, "userId")
        anonymous_id = self._identity(obj, "anonymousId")
        if user_id is None and anonymous_id is None:
            raise Invalid(Reason.MISSING_FIELD, "userId", "every event needs 'userId' or 'anonymousId'")

        stamp = obj.get("timestamp")
        if stamp is None:
            stamp = obj.get("originalTimestamp")  # Segment: the device clock, before server correction
            if stamp is None:
                raise Invalid(Reason.MISSING_FIELD, "timestamp", "every event needs 'timestamp'")
        timestamp, epoch = canonical_timestamp(stamp, "timestamp")
        self._check_time(timestamp, epoch, record.arrival)
        sent_at = obj.get("sentAt")
        if sent_at is not None:
            sent_at = canonical_timestamp(sent_at, "sentAt")[0]

        context = obj.get("context")
        context = self.catalog.context_check(context) if context is not None else {}
        properties = event_type.check(properties if properties is not None else {})
        return Event(message_id, kind, event_type.version, timestamp, epoch, format_timestamp_epoch(record.arrival),
                     sent_at, user_id, anonymous_id, context, properties, record.sequence_number)

    def _identity(self, obj: dict[str, Any], key: str) -> str | None:
        value = obj.get(key)
        if value is None:
            return None
        if type(value) is int:
            value = str(value)
        elif type(value) is not str:
            raise Invalid(Reason.INVALID_TYPE, key, f"'{key}' must be a string")
        value = sanitise_string(value)
        if len(value) > self.settings.max_user_id_length:
            raise Invalid(Reason.TOO_LONG, key, f"{len(value)} characters, the limit is "
                                                f"{self.settings.max_user_id_length}")
        return value or None


_second_prefix: dict[int, str] = {}


def format_timestamp_epoch(epoch: float) -> str:
    """Canonical form of an epoch (arrival times): the per-second prefix is formatted once and cached."""
    second = int(epoch // 1)
    micros = round((epoch - second) * 1_000_000)  # as datetime.fromtimestamp rounds, then truncate to ms
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    millis = micros // 1000
    prefix = _second_prefix.get(second)
    if prefix is None:
        if len(_second_prefix) > 65536:
            _second_prefix.clear()
        prefix = _second_prefix[second] = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{millis:03d}Z"
