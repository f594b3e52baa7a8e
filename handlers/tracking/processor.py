"""The processing core: Kinesis records in, good events and rejections out. Pure — no I/O.

Per record: base64 (gzip and a UTF-8 BOM tolerated) -> size guard -> JSON -> Segment normalisation (a record
may hold a ``{"batch": [...]}`` of many events) -> envelope checks -> the event type's compiled property checks ->
timestamp checks against the record's *arrival* time (so that a retried batch gives the same
answer) -> in-batch de-duplication on ``messageId``.

Every input unit (an event, or a record that never became one) ends in exactly one bucket of the
returned :class:`BatchResult`: ``events``, ``rejections`` or ``duplicates``, identified by (shard, sequence
number, ``index``). The sinks and the conservation report rely on that. No exception escapes
:meth:`Processor.process`: whatever goes wrong on one unit (a RecursionError, a MemoryError, a bug in a
check) quarantines that unit alone as ``internal_error`` — each event of a Segment batch is its own unit —
and the batch goes on.

Clean native events first try :mod:`fastpath` (msgspec decodes and validates in C); whatever it does not
accept takes the generic path described above, which alone decides rejections.
"""
from __future__ import annotations

import binascii
import traceback
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import msgspec
import orjson

from handlers.core.kinesis import RawRecord
from handlers.schema.event_types import Catalog
from handlers.schema.fields import canonical_timestamp, sanitise_string
from handlers.tracking.errors import Invalid, Reason, Rejection
from handlers.tracking.fastpath import FastDecoder, to_builtins
from handlers.tracking.json_errors import explain_bad_json
from handlers.tracking.settings import Settings

SEGMENT_CALLS = frozenset({"track", "screen", "identify", "page", "group", "alias"})
_SEGMENT_TYPES = {"screen": "Screen", "identify": "Identify", "page": "Page", "group": "Group", "alias": "Alias"}
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark: RFC 8259 lets a parser ignore it, orjson refuses it
_MAX_EXCEPTION_CHARS = 8000  # Rejection.exception: the traceback's end (the innermost frames and the message)


_json = msgspec.json.Encoder()


class Event:
    """A validated, normalised event ready for the sinks.

    ``context`` and ``properties`` are plain dicts to readers. Events from the fast path hold msgspec
    Structs underneath and serialise them directly (no intermediate dicts on the hot path); the dicts
    are built only if someone reads them.
    """

    __slots__ = ("message_id", "type", "version", "timestamp", "epoch", "received_at", "sent_at", "user_id",
                 "anonymous_id", "_context", "_properties", "sequence_number", "index")

    def __init__(self, message_id: str, type: str, version: int, timestamp: str, epoch: float, received_at: str,
                 sent_at: str | None, user_id: str | None, anonymous_id: str | None, context: Any, properties: Any,
                 sequence_number: str, index: int = 0) -> None:
        self.message_id, self.type, self.version = message_id, type, version
        self.timestamp, self.epoch, self.received_at, self.sent_at = timestamp, epoch, received_at, sent_at
        self.user_id, self.anonymous_id = user_id, anonymous_id
        self._context, self._properties = context, properties  # dicts, or Structs from the fast path
        self.sequence_number = sequence_number
        self.index = index  # position of the event inside its Kinesis record (0 unless the record held a batch)

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
    index: int = 0  # position of the event inside its Kinesis record (0 unless the record held a batch)


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
        """Never raises (but for KeyboardInterrupt / SystemExit): see the module docstring."""
        result = BatchResult()
        seen: set[str] = set()
        for record in records:
            try:  # free in CPython 3.11 while nothing raises
                self._process_record(record, result, seen)
            except Exception as exc:  # noqa: BLE001 - isolation: the record failed, the batch goes on
                # _process_record added nothing for this record (see there), so it is one unit: index 0
                self._internal_error(result, record, 0, exc, None)
        return result

    def _internal_error(self, result: BatchResult, record: RawRecord, index: int, exc: BaseException,
                        item: Any) -> None:
        """Quarantine one unit the core failed on: ``item`` is a batch item, or None for the whole record."""
        try:
            detail = str(exc)
        except Exception:  # noqa: BLE001 - an exception whose str() fails still names its type
            detail = "(no message)"
        name = type(exc).__name__
        message = f"the core failed on this {'event' if item is not None else 'record'}: {name}: {detail}"[:1000]
        try:
            formatted = "".join(traceback.format_exception(exc))[-_MAX_EXCEPTION_CHARS:]
        except Exception:  # noqa: BLE001 - formatting is best effort: the type and message are in `message`
            formatted = f"{name}: {detail}"[:_MAX_EXCEPTION_CHARS]
        event_type = app_version = None
        try:
            if item is None:
                raw = binascii.a2b_base64(record.data)
            else:
                raw = dumps_json(item)
                if type(item) is dict:
                    event_type = self._type_name(item)
                    app_version = _app_version(item)
        except Exception:  # noqa: BLE001 - the record's data as delivered, at worst
            raw = record.data.encode("ascii", "replace") if type(record.data) is str else b""
        result.rejections.append(Rejection(Reason.INTERNAL_ERROR, None, message, record.sequence_number, index,
                                           event_type, app_version, raw, formatted))

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
            if event is not None:  # _commit inlined: the hot path
                message_id = event.message_id
                if message_id in seen:
                    result.duplicates.append(Duplicate(message_id, record.sequence_number))
                else:
                    result.events.append(event)
                    try:
                        seen.add(message_id)
                    except BaseException:
                        result.events.pop()
                        raise
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
            if not items:  # no event in it: the record itself is the unit, or it would vanish from every bucket
                return self._reject(result, record, 0,
                                    Invalid(Reason.TOO_SHORT, "batch", "an empty Segment batch holds no event"), data)
            if len(items) > self.settings.max_batch_events:
                return self._reject(result, record, 0, Invalid(
                    Reason.TOO_LONG, "batch",
                    f"{len(items)} events in one batch, the limit is {self.settings.max_batch_events}"), data)
            defaults = {k: payload[k] for k in ("sentAt", "context") if k in payload}
            marks = len(result.events), len(result.rejections), len(result.duplicates)
            try:
                for index, item in enumerate(items):
                    try:  # each event of a batch is its own unit: a failure quarantines this item only
                        if type(item) is dict and defaults:
                            item = {**defaults, **item}
                        self._process_event(item, record, index, result, seen, None)
                    except Exception as exc:  # noqa: BLE001 - _process_event added nothing for this item
                        self._internal_error(result, record, index, exc, item)
            except BaseException:  # even quarantining failed (MemoryError...): undo the record, process() rejects it
                _rollback(result, seen, marks)
                raise
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
        if data[:3] == _BOM:
            data = data[3:]
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise explain_bad_json(data, exc) from None
        if type(payload) is not dict:
            kind = "array" if isinstance(payload, list) else type(payload).__name__
            raise Invalid(Reason.NOT_AN_OBJECT, None, f"the record is a JSON {kind}, not an object")
        return payload

    # -- event level --------------------------------------------------------------------------------
    def _process_event(self, obj: Any, record: RawRecord, index: int, result: BatchResult, seen: set[str],
                       raw: bytes | None) -> None:
        """Adds exactly one unit to ``result`` — or, if it raises, nothing (the caller quarantines the unit)."""
        try:
            if type(obj) is not dict:
                raise Invalid(Reason.NOT_AN_OBJECT, None, "a batch item is not a JSON object")
            event = self._build_event(obj, record, index)
        except Invalid as error:
            if raw is None:
                raw = dumps_json(obj)  # a batch item: it came from orjson, so it serialises back
            result.rejections.append(Rejection(
                error.reason, error.field, error.message, record.sequence_number, index,
                self._type_name(obj) if type(obj) is dict else None, _app_version(obj), raw))
            return
        _commit(result, seen, event, record)

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
        # a fast-path event is a whole record: index 0, the default
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
        """The event type a rejected object names, as ``_build_event`` reads it (for the quarantine and Sentry)."""
        kind = obj.get("type")
        if type(kind) is str and kind in SEGMENT_CALLS:
            kind = obj.get("event") if kind == "track" else _SEGMENT_TYPES[kind]
        return kind[:64] if type(kind) is str else None

    def _build_event(self, obj: dict[str, Any], record: RawRecord, index: int = 0) -> Event:
        settings = self.settings
        kind = obj.get("type")
        properties = obj.get("properties")
        if type(kind) is str and kind in SEGMENT_CALLS:  # an unmodified Segment SDK payload: normalise it
            if kind == "track":
                kind = obj.get("event")
                if kind is None:
                    raise Invalid(Reason.MISSING_FIELD, "event", "a Segment track call needs 'event'")
            elif kind == "screen":
                if not properties:  # None, or an empty {} / [] as some SDKs send
                    properties = {}
                if type(properties) is dict and obj.get("name") is not None:  # else: the type's check refuses it
                    properties = {**properties, "name": obj["name"]}
                kind = "Screen"
            elif kind == "identify":
                properties, kind = obj.get("traits"), "Identify"
            else:
                kind = _SEGMENT_TYPES[kind]
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
        message_id = sanitise_string(message_id)  # as user ids: control characters (a NUL) stripped, trimmed
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
                     sent_at, user_id, anonymous_id, context, properties, record.sequence_number, index)

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


def _commit(result: BatchResult, seen: set[str], event: Event, record: RawRecord) -> None:
    """Add a built event as an event or a duplicate: all of it or, if this raises, nothing."""
    message_id = event.message_id
    if message_id in seen:
        result.duplicates.append(Duplicate(message_id, record.sequence_number, event.index))
        return
    result.events.append(event)
    try:
        seen.add(message_id)
    except BaseException:
        result.events.pop()
        raise


def _rollback(result: BatchResult, seen: set[str], marks: tuple[int, int, int]) -> None:
    """Undo what was added to ``result`` since ``marks`` (its list lengths then), messageIds included."""
    events, rejections, duplicates = marks
    for event in result.events[events:]:
        seen.discard(event.message_id)
    del result.events[events:], result.rejections[rejections:], result.duplicates[duplicates:]


def _app_version(obj: Any) -> str | None:
    if type(obj) is dict:
        context = obj.get("context")
        if type(context) is dict:
            app = context.get("app")
            if type(app) is dict and type(app.get("version")) is str:
                return app["version"]
    return None


class _Close:
    """A closing bracket (or the separator before the next item) waiting on ``dumps_json``'s stack."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text


def dumps_json(value: Any) -> bytes:
    """JSON bytes of a value that came from orjson (dicts, lists, str, int, float, bool, None), at any depth.

    orjson serialises 254 levels at most, but parses 1024: a batch item between the two is written by this
    explicit-stack encoder (no recursion), scalars still by orjson.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        pass
    out: list[bytes] = []
    stack: list[Any] = [value]
    comma = _Close(b",")
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is _Close:
            out.append(node.text)
        elif kind is dict:
            out.append(b"{")
            stack.append(_Close(b"}"))
            entries = list(node.items())
            for position in range(len(entries) - 1, -1, -1):  # pushed last to first: popped in order
                key, item = entries[position]
                stack.append(item)
                stack.append(_Close(orjson.dumps(key) + b":"))
                if position:
                    stack.append(comma)
        elif kind is list:
            out.append(b"[")
            stack.append(_Close(b"]"))
            for position in range(len(node) - 1, -1, -1):
                stack.append(node[position])
                if position:
                    stack.append(comma)
        else:
            out.append(orjson.dumps(node))
    return b"".join(out)


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
