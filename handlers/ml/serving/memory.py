"""The change limit's memory: what was last served for an input, shared by every serving process of a stage.

The max-change guard rail (:mod:`handlers.ml.serving.guards`) needs, per model and normalised input, the value
last served, when, and by which version. Kept in one process, the rail leaks: each worker of each instance has
its own memory (a user asking twice may meet two workers), it is lost on restart and evicted under load. So the
memory lives in a small store the stage already has:

* :class:`PostgresMemory` — the local stage's PostgreSQL (``CHANGE_MEMORY=postgresql://…``): one upsert per
  answer, the limit computed *inside* the statement (``INSERT … ON CONFLICT DO UPDATE … RETURNING``), so two
  processes answering the same input at once are serialised by the row lock and neither can overshoot; commits
  do not wait for the WAL flush (``synchronous_commit = off``: a crash forgets at most the last moment's entries);
* :class:`DynamoMemory` — AWS (``CHANGE_MEMORY=dynamodb:<table>``): a consistent read and a conditional write
  (optimistic: retried when another process wrote in between), items expire through the table's TTL;
* :class:`LocalMemory` — one process (tests, a single worker, and the fallback below).

The rule itself is :func:`slew` — a *sliding* limit, not a window that opens and closes: the served value may
move from the last served one by at most a factor ``(1 + max_relative)`` per ``window``, pro rata to the time
since (``factor ** (elapsed / window)``). Steps compound exactly, so over *any* window the answer moves by at
most the factor either way, and there is no cliff where a fresh window lets the whole change through at once.
The entry's time never goes back: an answer stamped earlier than the entry (another host's clock, a request that
raced) gets no allowance, so interleaved processes cannot earn the same time twice.

**Rollback.** Each entry records the version that served it. Entries of a version that was rolled back
(rejected in the store) are ignored — the next answer comes from the good version unlimited — and deleted where
the store can (PostgreSQL); a bad answer does not linger behind the limit.

**Failure.** When the shared store cannot be reached, :class:`Resilient` answers from a per-process
:class:`LocalMemory` (the rail still holds within the process), reports it once and retries the shared store
every ``retry_seconds``; ``/health`` says ``degraded``. Serving does not stop because the memory did.
"""
from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable, Protocol

log = logging.getLogger(__name__)


class MemoryUnavailable(Exception):
    """The shared memory could not be asked (connection refused, timeout, throttled)."""


def slew(previous: float, value: float, elapsed: float, factor: float, window: float) -> float:
    """``value`` limited to ``previous × factor^(±min(1, elapsed / window))``; unlimited when either is not a
    positive finite number (the rule is relative) or the factor does not limit."""
    if not (previous > 0 and value > 0 and math.isfinite(previous) and math.isfinite(value)) or factor <= 1:
        return value
    share = 1.0 if window <= 0 else min(1.0, max(0.0, elapsed / window))
    step = factor ** share
    return min(max(value, previous / step), previous * step)


class ChangeMemory(Protocol):
    kind: str

    def step(self, model: str, key: bytes, value: float, version: str, *, now: float, factor: float,
             window: float, ignore: frozenset[str]) -> tuple[float, float | None]:
        """Serve ``value`` within the limit of what was last served for ``key``; remember what is served.
        Returns (served, previous served value or None)."""

    def forget(self, model: str, versions: Iterable[str]) -> None:
        """Drop what ``versions`` served (they were rolled back)."""

    def expire(self, model: str, before: float) -> None:
        """Drop entries last served before ``before`` (clock seconds)."""


class LocalMemory:
    """One process's memory, least recently used entries dropped beyond ``capacity``."""

    kind = "local"

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, bytes], tuple[float, str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def step(self, model: str, key: bytes, value: float, version: str, *, now: float, factor: float,
             window: float, ignore: frozenset[str]) -> tuple[float, float | None]:
        with self._lock:
            entry = self._entries.get((model, key))
            previous = None if entry is None or entry[1] in ignore else entry
            served = value if previous is None else slew(previous[0], value, now - previous[2], factor, window)
            self._entries[(model, key)] = (served, version, max(now, previous[2]) if previous else now)
            self._entries.move_to_end((model, key))
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return served, previous[0] if previous else None

    def forget(self, model: str, versions: Iterable[str]) -> None:
        gone = set(versions)
        with self._lock:
            for entry_key in [k for k, (_, v, _) in self._entries.items() if k[0] == model and v in gone]:
                del self._entries[entry_key]

    def expire(self, model: str, before: float) -> None:
        with self._lock:
            for entry_key in [k for k, (_, _, at) in self._entries.items() if k[0] == model and at < before]:
                del self._entries[entry_key]


TABLE = "ml_change_memory"
_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    model text NOT NULL, key bytea NOT NULL, value double precision NOT NULL, version text NOT NULL,
    at double precision NOT NULL, PRIMARY KEY (model, key));
CREATE INDEX IF NOT EXISTS {TABLE}_at ON {TABLE} (model, at)"""
# The limit inside the upsert (mirrors slew(); tests hold the two equal): the row lock serialises processes.
_STEP = f"""
INSERT INTO {TABLE} AS m (model, key, value, version, at)
VALUES (%(model)s, %(key)s, %(value)s, %(version)s, %(now)s)
ON CONFLICT (model, key) DO UPDATE SET
    value = CASE WHEN m.version = ANY(%(ignore)s::text[]) OR m.value <= 0 OR EXCLUDED.value <= 0
                      OR %(factor)s <= 1 THEN EXCLUDED.value
            ELSE LEAST(GREATEST(EXCLUDED.value, m.value / power(%(factor)s, CASE WHEN %(window)s <= 0 THEN 1.0
                                ELSE LEAST(1.0, GREATEST(0.0, (EXCLUDED.at - m.at) / %(window)s)) END)),
                       m.value * power(%(factor)s, CASE WHEN %(window)s <= 0 THEN 1.0
                                ELSE LEAST(1.0, GREATEST(0.0, (EXCLUDED.at - m.at) / %(window)s)) END)) END,
    version = EXCLUDED.version, at = GREATEST(m.at, EXCLUDED.at)
RETURNING value"""


class PostgresMemory:
    """The memory in PostgreSQL (one table, created if missing); one round trip per answer."""

    kind = "postgresql"

    def __init__(self, dsn: str, *, connect_timeout: float = 3.0) -> None:
        self.dsn, self.connect_timeout = dsn, connect_timeout
        self._connection: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        import psycopg

        connection = psycopg.connect(self.dsn, autocommit=True, connect_timeout=int(max(1, self.connect_timeout)))
        connection.execute(_CREATE)
        # a crash may lose the last fraction of a second of entries (those answers then start a fresh limit);
        # waiting for the WAL flush on every answer would cost more than the rest of the answer
        connection.execute("SET synchronous_commit = off")
        return connection

    def _run(self, sql: str, params: dict[str, Any]) -> Any:
        import psycopg

        with self._lock:
            for attempt in (1, 2):  # one reconnect: a connection dropped since the last answer
                try:
                    if self._connection is None or self._connection.closed:
                        self._connection = self._connect()
                    return self._connection.execute(sql, params, prepare=True).fetchone() if "RETURNING" in sql else \
                        self._connection.execute(sql, params)
                except psycopg.Error as exc:
                    self.close_quietly()
                    if attempt == 2:
                        raise MemoryUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    def close_quietly(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._connection = None

    def step(self, model: str, key: bytes, value: float, version: str, *, now: float, factor: float,
             window: float, ignore: frozenset[str]) -> tuple[float, float | None]:
        row = self._run(_STEP, {"model": model, "key": key, "value": float(value), "version": version, "now": now,
                                "factor": float(factor), "window": float(window), "ignore": sorted(ignore)})
        return float(row[0]), None  # the previous value is not read back: one statement, one round trip

    def forget(self, model: str, versions: Iterable[str]) -> None:
        self._run(f"DELETE FROM {TABLE} WHERE model = %(model)s AND version = ANY(%(versions)s::text[])",
                  {"model": model, "versions": sorted(set(versions))})

    def expire(self, model: str, before: float) -> None:
        self._run(f"DELETE FROM {TABLE} WHERE model = %(model)s AND at < %(before)s", {"model": model,
                                                                                       "before": before})


class DynamoMemory:
    """The memory in a DynamoDB table (partition key ``pk``, TTL attribute ``expires_at``): read, then a
    conditional write that fails if another process wrote in between (then read again after a few jittered
    milliseconds, at most ``ATTEMPTS`` times: one input answered at the same moment by many processes)."""

    ATTEMPTS = 10

    kind = "dynamodb"

    def __init__(self, table: str, *, client: Any = None, ttl_seconds: float = 7 * 86400) -> None:
        self.table, self._client, self.ttl_seconds = table, client, ttl_seconds

    @property
    def client(self) -> Any:
        if self._client is None:
            from handlers.core.aws import client

            self._client = client("dynamodb")
        return self._client

    def step(self, model: str, key: bytes, value: float, version: str, *, now: float, factor: float,
             window: float, ignore: frozenset[str]) -> tuple[float, float | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        pk = {"S": f"{model}#{key.hex()}"}
        for attempt in range(self.ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.002 * attempt))
            try:
                item = self.client.get_item(TableName=self.table, Key={"pk": pk}, ConsistentRead=True).get("Item")
                usable = item is not None and item["version"]["S"] not in ignore
                previous = float(item["value"]["N"]) if usable else None
                served = value if previous is None else slew(previous, value, now - float(item["at"]["N"]), factor,
                                                             window)
                condition = ({"ConditionExpression": "attribute_not_exists(pk)"} if item is None else
                             {"ConditionExpression": "#at = :at", "ExpressionAttributeNames": {"#at": "at"},
                              "ExpressionAttributeValues": {":at": item["at"]}})
                at = max(now, float(item["at"]["N"])) if usable else now  # time never goes back (clock skew)
                self.client.put_item(TableName=self.table, Item={
                    "pk": pk, "value": {"N": repr(float(served))}, "version": {"S": version},
                    "at": {"N": repr(float(at))}, "expires_at": {"N": str(int(time.time() + self.ttl_seconds))}},
                    **condition)
                return served, previous
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise MemoryUnavailable(f"DynamoDB: {exc}") from None
            except BotoCoreError as exc:
                raise MemoryUnavailable(f"DynamoDB: {exc}") from None
        raise MemoryUnavailable(f"DynamoDB: the entry kept changing under {self.ATTEMPTS} attempts")

    def forget(self, model: str, versions: Iterable[str]) -> None:
        """Nothing to do: entries of rolled-back versions are ignored on read, and expire through the TTL."""

    def expire(self, model: str, before: float) -> None:
        """Nothing to do: the table's TTL expires entries."""


class Resilient:
    """A shared memory, with a per-process :class:`LocalMemory` while the shared one cannot be asked."""

    def __init__(self, shared: Any, *, capacity: int = 50_000, retry_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_failure: Callable[[Exception], Any] = lambda exc: None) -> None:
        self.shared, self.local, self.retry_seconds, self.clock = shared, LocalMemory(capacity), retry_seconds, clock
        self.on_failure = on_failure
        self.kind = shared.kind
        self.failures = 0
        self.problem: str | None = None
        self._down_since: float | None = None

    def _use_shared(self) -> bool:
        return self._down_since is None or self.clock() - self._down_since >= self.retry_seconds

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.problem is None:
            log.error("the shared change memory (%s) failed: %s; limiting within this process meanwhile",
                      self.kind, exc)
            self.on_failure(exc)
        self.problem, self._down_since = str(exc), self.clock()

    def step(self, model: str, key: bytes, value: float, version: str, **kwargs: Any) -> tuple[float, float | None]:
        if self._use_shared():
            try:
                result = self.shared.step(model, key, value, version, **kwargs)
                self.problem = self._down_since = None
                return result
            except MemoryUnavailable as exc:
                self._failed(exc)
        return self.local.step(model, key, value, version, **kwargs)

    def forget(self, model: str, versions: Iterable[str]) -> None:
        versions = list(versions)
        self.local.forget(model, versions)
        try:
            self.shared.forget(model, versions)
        except MemoryUnavailable as exc:
            self._failed(exc)

    def expire(self, model: str, before: float) -> None:
        self.local.expire(model, before)
        try:
            self.shared.expire(model, before)
        except MemoryUnavailable as exc:
            self._failed(exc)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "state": "degraded" if self.problem else "ok", "problem": self.problem,
                "failures": self.failures}


def open_memory(spec: str, *, capacity: int = 50_000, ttl_seconds: float = 7 * 86400,
                on_failure: Callable[[Exception], Any] = lambda exc: None) -> Any:
    """``local`` (or empty), ``postgresql://…`` / ``postgres://…``, or ``dynamodb:<table>``; shared kinds are
    wrapped in :class:`Resilient`. Anything else is a ``ValueError`` naming the accepted forms."""
    spec = (spec or "").strip()
    if spec in ("", "local"):
        return LocalMemory(capacity)
    if spec.startswith(("postgresql://", "postgres://")):
        return Resilient(PostgresMemory(spec), capacity=capacity, on_failure=on_failure)
    if spec.startswith("dynamodb:") and len(spec) > len("dynamodb:"):
        return Resilient(DynamoMemory(spec[len("dynamodb:"):], ttl_seconds=ttl_seconds), capacity=capacity,
                         on_failure=on_failure)
    raise ValueError(f"{spec!r}: use local, postgresql://… or dynamodb:<table>")


def describe(memory: Any) -> dict[str, Any]:
    """What ``/health`` says about a memory (a shared one wrapped in :class:`Resilient` says whether it is up)."""
    if hasattr(memory, "describe"):
        return memory.describe()
    return {"kind": memory.kind, "state": "ok", **({"entries": len(memory)} if hasattr(memory, "__len__") else {})}
