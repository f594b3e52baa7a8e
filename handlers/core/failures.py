"""Infrastructure or data? The one place that tells a dependency's outage from a record it refuses.

"Nothing lost" hinges on this: an outage (connection refused or reset, a timeout, throttling, a 5xx, a
database in recovery) is not the records' fault, so the batch waits and is retried whole — never bisected,
never quarantined. Only an error a dependency attributes to the data it was sent (a PostgreSQL data
exception, say) may lead to a record being set aside. Anything we cannot classify counts as
infrastructure: waiting on a bug is recoverable (fix, redeploy, the shard resumes), quarantining good
events for it is not.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


class Unavailable(Exception):
    """A dependency cannot take anything right now (an outage, throttling, a 5xx): wait, retry the batch whole.

    Every system's sink errors of this kind derive from it, so the entry points wait them out the same way.
    """

    def __init__(self, dependency: str, detail: str) -> None:
        self.dependency, self.detail = dependency, detail
        super().__init__(f"{dependency}: {detail}")

# botocore ClientError codes that mean "try again later", whatever the service.
RETRYABLE_AWS_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "LimitExceededException",
    "RequestLimitExceeded", "SlowDown", "ServiceUnavailable", "ServiceUnavailableException", "InternalError",
    "InternalFailure", "InternalServerError", "InternalServiceError", "RequestTimeout", "RequestTimeoutException",
    "PriorRequestNotComplete", "KMSThrottlingException", "KMSInternalException", "EC2ThrottledException",
    "ExpiredTokenException", "ExpiredToken", "RequestExpired", "IDPCommunicationError",
})

# PostgreSQL SQLSTATE classes that are about the server, the connection or concurrency, not the rows:
# 08 connection exception, 40 transaction rollback (serialization, deadlock), 53 insufficient resources,
# 57 operator intervention (admin shutdown, cannot connect now = in recovery), 58 system error, XX internal.
POSTGRES_UNAVAILABLE_CLASSES = frozenset({"08", "40", "53", "57", "58", "XX"})
# ... and the classes that name the data: 22 data exception, 23 integrity constraint violation, 54 program
# limit exceeded (a value too large to index, say). Everything else (42 undefined table…) is a deployment
# problem: it waits for a fix like an outage does.
POSTGRES_DATA_CLASSES = frozenset({"22", "23", "54"})


def aws_unavailable(exc: BaseException) -> bool:
    """True when a boto3 call failed for reasons that are not the request's content."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error.get("Code") in RETRYABLE_AWS_CODES or int(status) >= 500 or int(status) == 429
    # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError, … and any other
    # failure below the API (no answer at all) is infrastructure.
    return isinstance(exc, (BotoCoreError, ConnectionError, TimeoutError, OSError))


def postgres_data_error(exc: BaseException) -> bool:
    """True only when PostgreSQL refused the data itself (SQLSTATE class 22, 23 or 54) — or psycopg refused to
    send a value at all (a ``DataError`` without SQLSTATE: a NUL character in a text value, say)."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in POSTGRES_DATA_CLASSES
    import psycopg

    return isinstance(exc, psycopg.DataError)


def describe(exc: BaseException) -> str:
    """A one-line, secret-free description: the exception type and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def backoff_delays(first: float = 0.5, cap: float = 20.0, factor: float = 2.0) -> Iterator[float]:
    """Capped exponential backoff: first, first*factor, … up to cap, forever."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


def wait_out(attempt: Callable[[], T], *, budget_seconds: float, on_wait: Callable[[Unavailable, float, int], None],
             first_delay: float = 0.5, max_delay: float = 20.0, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> T:
    """Call ``attempt`` until it does not raise :class:`Unavailable`, backing off, within ``budget_seconds``.

    ``on_wait(error, delay, retry_number)`` is told before each sleep (the console, the log). When the next
    sleep would overrun the budget the last :class:`Unavailable` propagates: the caller then hands the whole
    batch back to its event source, which retries it later (never bisected, never quarantined).
    """
    deadline = clock() + budget_seconds
    delays = backoff_delays(first_delay, max_delay)
    retry = 0
    while True:
        try:
            return attempt()
        except Unavailable as error:
            delay = next(delays)
            if clock() + delay > deadline:
                raise
            retry += 1
            on_wait(error, delay, retry)
            sleep(delay)
