"""Windowed aggregation of events into metric rows, with a state that fits Lambda's tumbling windows.

Lambda hands every invocation of a tumbling window the ``state`` the previous one returned and, on the
final invocation, we turn that state into rows for the sink. So the state must be plain JSON, must survive
any split of the window's records into invocations (the rows are the same however the batches fall), and
must stay under Lambda's 1 MB per shard — a larger state ends the window early and splits the numbers.

State layout (format 1)::

    {"format": 1, "hll_p": 10, "events": 812, "duplicates": 3, "dedup": "<base64 of packed uint64>",
     "dedup_dropped": false, "arrival": [first, last] | null,
     "metrics": {"leads_per_category:v1": {"[\\"bikes\\"]": [count, sum, min, max] | [count] |
                                             [count, "<base64 HyperLogLog>"]}}}

* Groups are keyed by the canonical JSON list of their ``group_by`` values (``dims_key``; a missing value
  is ``null``). Count metrics keep ``[count]``; sum/min/max/avg keep all four (avg = sum / count, and
  sub-windows add up); distinct_users keep the event count and a HyperLogLog of ``user_id or
  anonymous_id``. Field metrics only count events that carry a finite number in the field.
* Segment SDKs retry, and Kinesis redelivers: an event whose ``message_id`` was already counted in this
  window (this invocation or an earlier one) is skipped. The window remembers 64-bit blake2b hashes of
  the message ids, packed and base64-encoded (≈ 11 bytes per event).

Size policy — when the encoded state would exceed ``max_state_bytes`` (default 900 000, headroom under
1 MB), in this order, each step only if still needed:

1. fold every HyperLogLog one precision step down (exact folding; error grows by √2), down to p = 6;
2. drop the message-id set and set ``"dedup_dropped": true`` (counts of the rest of the window may then
   include retried duplicates; every row says so in ``MetricRow.dedup_dropped``). Step 1 is there to
   keep this set: if even p = 6 sketches would not make room for it (the set alone takes ~11 bytes per
   event, so some 80k events fill 900 kB), the set goes first and sketches fold only as far as then needed;
3. merge the smallest groups (by count) of the metric taking most space into one group whose every
   dimension is ``"__other__"`` — totals stay exact, only the breakdown is coarser — until it fits.

Size is measured as ``json.dumps(state)`` with default separators and ASCII escapes: an upper bound of
how the runtime serialises it.
"""
from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from handlers.statistics.definitions import MetricDefinition, MetricSet
from handlers.statistics.hll import DEFAULT_PRECISION, HyperLogLog, hash64

STATE_FORMAT = 1
MIN_FOLD_PRECISION = 6
OTHER = "__other__"
DEFAULT_MAX_STATE_BYTES = 900_000


class EventLike(Protocol):
    """What the aggregator reads of :class:`handlers.tracking.processor.Event`."""

    type: str
    user_id: str | None
    anonymous_id: str | None
    message_id: str

    @property
    def properties(self) -> dict[str, Any]: ...

    @property
    def context(self) -> dict[str, Any]: ...


class StateTooLarge(ValueError):
    """Even one group per metric does not fit ``max_state_bytes`` (only with an absurdly small limit)."""


@dataclass(frozen=True)
class MetricRow:
    """One group of one metric in one stream window (and shard): what the sink stores."""

    metric: str
    version: int
    dims: dict[str, Any]
    dims_key: str  # canonical JSON of the group_by values, in group_by order
    count: int
    sum: float | None
    min: float | None
    max: float | None
    distinct: int | None
    value: float  # the metric's aggregation: count, sum, min, max, avg or the distinct estimate
    dedup_dropped: bool = False  # the window outgrew its de-duplication set: retries may be counted


def dims_key(values: Iterable[Any]) -> str:
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def state_bytes(state: dict[str, Any]) -> int:
    """The state's JSON size (default separators, ASCII escapes: an upper bound of Lambda's encoding)."""
    return len(json.dumps(state))


def _getter(path: str) -> Callable[[Any], Any]:
    if path == "type":
        return lambda event: event.type
    root, *rest = path.split(".")

    def get(event: Any) -> Any:
        value = event.properties if root == "properties" else event.context
        for part in rest:
            if type(value) is not dict:
                return None
            value = value.get(part)
        return value

    return get


def _number(value: Any) -> float | None:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return None


class _Compiled:
    """A metric definition turned into getters, built once per aggregator."""

    __slots__ = ("metric", "key", "where", "dims", "field", "distinct", "keys")

    def __init__(self, metric: MetricDefinition) -> None:
        self.metric = metric
        self.key = metric.key
        self.where = tuple((_getter(path), values) for path, values in metric.where)
        self.dims = tuple(_getter(path) for path in metric.group_by)
        self.field = _getter(metric.field) if metric.field else None
        self.distinct = metric.aggregation == "distinct_users"
        self.keys: dict[tuple[Any, ...], str] = {}  # dims tuple -> dims_key (json.dumps is the slow part)

    def group_key(self, event: Any) -> str:
        dims = tuple(get(event) for get in self.dims)
        try:
            key = self.keys.get(dims)
        except TypeError:  # an unhashable value cannot come from a validated scalar field, but be safe
            return dims_key(dims)
        if key is None:
            key = self.keys[dims] = dims_key(dims)
        return key


class _Work:
    """The state decoded for work: accumulators as lists, sketches as objects, message-id hashes as a set."""

    __slots__ = ("p", "groups", "dedup", "dedup_dropped", "events", "duplicates", "arrival")

    def __init__(self, p: int = DEFAULT_PRECISION) -> None:
        self.p = p
        self.groups: dict[str, dict[str, list[Any]]] = {}
        self.dedup: set[int] | None = set()
        self.dedup_dropped = False
        self.events = 0
        self.duplicates = 0
        self.arrival: list[float] | None = None


def _merge_into(target: list[Any], source: list[Any]) -> None:
    target[0] += source[0]
    if len(target) == 4:
        target[1] += source[1]
        target[2] = min(target[2], source[2])
        target[3] = max(target[3], source[3])
    elif len(target) == 2:
        target[1].merge(source[1])


class WindowAggregator:
    """Folds events into a JSON state per (stream window, shard) and turns the state into rows."""

    def __init__(self, metric_set: MetricSet, max_state_bytes: int = DEFAULT_MAX_STATE_BYTES) -> None:
        self.metric_set = metric_set
        self.max_state_bytes = max_state_bytes
        self._compiled = tuple(_Compiled(m) for m in metric_set.metrics)
        self._by_key = {c.key: c for c in self._compiled}
        wildcard = tuple(c for c in self._compiled if c.metric.event_type == "*")
        self._wildcard = wildcard
        self._by_type: dict[str, tuple[_Compiled, ...]] = {}
        for c in self._compiled:
            if c.metric.event_type != "*":
                self._by_type.setdefault(c.metric.event_type, ())
        for name in self._by_type:
            self._by_type[name] = tuple(c for c in self._compiled if c.metric.event_type in (name, "*"))

    # -- folding events in --------------------------------------------------------------------------
    def add(self, state: dict[str, Any] | None, events: Iterable[EventLike],
            arrival_of: Callable[[EventLike], float] | None = None) -> dict[str, Any]:
        """Return the state after ``events`` (``state`` is not modified; ``{}`` starts a window).

        ``arrival_of``, if given, reads an event's arrival time: the state then keeps the window's first
        and last arrival, so the final invocation can report how late the window closed.
        """
        work = self._decode(state or {}, with_dedup=True)
        seen = work.dedup if work.dedup is not None else set()  # without a kept set, still dedup this batch
        by_type, wildcard, p = self._by_type, self._wildcard, work.p
        groups_of = {c.key: work.groups.setdefault(c.key, {}) for c in self._compiled}
        for event in events:
            message_id = event.message_id
            if message_id:
                h = hash64(message_id)
                if h in seen:
                    work.duplicates += 1
                    continue
                seen.add(h)
            work.events += 1
            if arrival_of is not None:
                at = float(arrival_of(event))
                if work.arrival is None:
                    work.arrival = [at, at]
                else:
                    work.arrival = [min(work.arrival[0], at), max(work.arrival[1], at)]
            user_hash: int | None = -1
            for c in by_type.get(event.type, wildcard):
                if c.where and not all(get(event) in allowed for get, allowed in c.where):
                    continue
                if c.field is not None:
                    value = _number(c.field(event))
                    if value is None:
                        continue
                    groups = groups_of[c.key]
                    key = c.group_key(event)
                    acc = groups.get(key)
                    if acc is None:
                        groups[key] = [1, value, value, value]
                    else:
                        acc[0] += 1
                        acc[1] += value
                        if value < acc[2]:
                            acc[2] = value
                        if value > acc[3]:
                            acc[3] = value
                    continue
                groups = groups_of[c.key]
                key = c.group_key(event)
                acc = groups.get(key)
                if c.distinct:
                    if acc is None:
                        acc = groups[key] = [0, HyperLogLog(p)]
                    acc[0] += 1
                    if user_hash == -1:
                        user = event.user_id or event.anonymous_id
                        user_hash = hash64(user) if user else None
                    if user_hash is not None:
                        acc[1].add_hash(user_hash)
                elif acc is None:
                    groups[key] = [1]
                else:
                    acc[0] += 1
        return self._fit(work)

    # -- reading rows -------------------------------------------------------------------------------
    def rows(self, state: dict[str, Any] | None) -> list[MetricRow]:
        """Every group of every metric, metrics in definition order, groups by ``dims_key``."""
        work = self._decode(state or {}, with_dedup=False)
        out = []
        for c in self._compiled:
            metric = c.metric
            for key, acc in sorted(work.groups.get(c.key, {}).items()):
                dims = dict(zip(metric.group_by, json.loads(key)))
                count = acc[0]
                total = low = high = None
                distinct = None
                if metric.aggregation == "distinct_users":
                    # a window cannot hold more distinct users than events: clamp the estimate's noise
                    distinct = min(count, round(acc[1].estimate()))
                    value = float(distinct)
                elif metric.aggregation == "count":
                    value = float(count)
                else:
                    total, low, high = acc[1], acc[2], acc[3]
                    value = {"sum": total, "min": low, "max": high, "avg": total / count}[metric.aggregation]
                out.append(MetricRow(metric=metric.name, version=metric.version, dims=dims, dims_key=key,
                                     count=count, sum=total, min=low, max=high, distinct=distinct, value=value,
                                     dedup_dropped=work.dedup_dropped))
        return out

    # -- state encoding -----------------------------------------------------------------------------
    def _decode(self, state: dict[str, Any], *, with_dedup: bool) -> _Work:
        if not state:
            return _Work()
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown statistics state format {state.get('format')!r}")
        work = _Work(int(state["hll_p"]))
        work.events, work.duplicates = int(state["events"]), int(state["duplicates"])
        work.dedup_dropped = bool(state["dedup_dropped"])
        work.arrival = list(state["arrival"]) if state.get("arrival") else None
        if work.dedup_dropped:
            work.dedup = None
        elif with_dedup:
            packed = base64.b64decode(state["dedup"])
            work.dedup = set(struct.unpack(f"<{len(packed) // 8}Q", packed))
        for key, groups in state["metrics"].items():
            if key not in self._by_key:
                continue  # a metric removed by a deploy in the middle of a window
            decoded = {}
            for dims, acc in groups.items():
                if len(acc) == 2:
                    acc = [acc[0], HyperLogLog.from_bytes(base64.b64decode(acc[1]))]
                else:
                    acc = list(acc)
                decoded[dims] = acc
            work.groups[key] = decoded
        return work

    @staticmethod
    def _encode_groups(groups: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {key: [acc[0], base64.b64encode(acc[1].to_bytes()).decode("ascii")] if len(acc) == 2 else list(acc)
                for key, acc in groups.items()}

    def _encode(self, work: _Work) -> dict[str, Any]:
        dedup = ""
        if work.dedup is not None:
            hashes = sorted(work.dedup)
            dedup = base64.b64encode(struct.pack(f"<{len(hashes)}Q", *hashes)).decode("ascii")
        return {
            "format": STATE_FORMAT, "hll_p": work.p, "events": work.events, "duplicates": work.duplicates,
            "dedup": dedup, "dedup_dropped": work.dedup_dropped, "arrival": work.arrival,
            "metrics": {c.key: self._encode_groups(work.groups.get(c.key, {})) for c in self._compiled},
        }

    def _fit(self, work: _Work) -> dict[str, Any]:
        """Encode, applying the size policy (module docstring) until the state fits."""
        limit = self.max_state_bytes
        state = self._encode(work)
        if state_bytes(state) > limit and work.dedup is not None and work.p > MIN_FOLD_PRECISION:
            # Folding sketches is worth its precision only if that saves the de-duplication set: when even
            # p=6 sketches leave no room for it (some 80k+ events in the window), give the set up first.
            coarsest = _Work(MIN_FOLD_PRECISION)
            coarsest.groups = {key: {dims: [acc[0], acc[1].fold(MIN_FOLD_PRECISION)] if len(acc) == 2 else acc
                                     for dims, acc in groups.items()} for key, groups in work.groups.items()}
            coarsest.dedup = work.dedup
            if state_bytes(self._encode(coarsest)) > limit:
                work.dedup, work.dedup_dropped = None, True
                state = self._encode(work)
        while state_bytes(state) > limit and work.p > MIN_FOLD_PRECISION:
            work.p -= 1
            for groups in work.groups.values():
                for acc in groups.values():
                    if len(acc) == 2 and acc[1].p > work.p:
                        acc[1] = acc[1].fold(work.p)
            state = self._encode(work)
        if state_bytes(state) > limit and work.dedup is not None:
            work.dedup, work.dedup_dropped = None, True
            state = self._encode(work)
        while (size := state_bytes(state)) > limit:
            self._merge_smallest(work, state, size - limit)
            state = self._encode(work)
        return state

    def _merge_smallest(self, work: _Work, state: dict[str, Any], excess: int) -> None:
        """Merge the smallest groups of the metric taking most space into its ``__other__`` group."""
        def entry_bytes(key: str, value: Any) -> int:
            return len(json.dumps(key)) + len(json.dumps(value)) + 4

        candidates = []
        for c in self._compiled:
            groups = work.groups.get(c.key, {})
            other = dims_key([OTHER] * len(c.metric.group_by))
            movable = [key for key in groups if key != other]
            if len(movable) >= 2 or (movable and other in groups):
                encoded = state["metrics"][c.key]
                size = sum(entry_bytes(key, value) for key, value in encoded.items())
                candidates.append((size, c.key, other, movable))
        if not candidates:
            raise StateTooLarge(f"the statistics state needs more than max_state_bytes={self.max_state_bytes} "
                                f"even with one group per metric")
        _, key, other, movable = max(candidates)
        groups, encoded = work.groups[key], state["metrics"][key]
        target = excess + max(256, self.max_state_bytes // 100)  # a little slack: fewer re-encodes
        movable.sort(key=lambda k: (groups[k][0], k))
        chosen, freed = [], 0
        for dims in movable:
            chosen.append(dims)
            freed += entry_bytes(dims, encoded[dims])
            if freed >= target and (len(chosen) >= 2 or other in groups):
                break
        merged = groups.pop(other, None)
        for dims in chosen:
            acc = groups.pop(dims)
            if merged is None:
                merged = acc
            else:
                _merge_into(merged, acc)
        assert merged is not None
        groups[other] = merged
