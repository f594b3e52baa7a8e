"""Secrets Manager, read in one place: cached per ARN, re-read after a while (rotation) or on demand.

Deployed functions get secrets as ARNs in their environment, never values (the Sentry DSN, Aurora's
RDS-managed credentials, the Segment write keys). Aurora's credentials rotate: a cached value is re-read
after ``ttl_seconds``, and a caller whose login was refused can ``forget`` it to read the new one at once.

The deployed applications log in to Aurora as their own database users with IAM authentication
(``DATABASE_IAM_USER``, roles made by migrations/postgres/0004_application_roles.sql): the password is a
15-minute token signed with the function's own credentials, made afresh at every connect — no secret, nothing
to rotate. The master secret (``DATABASE_SECRET_ARN``) remains for operators' tools.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable
from urllib.parse import quote

import orjson

from handlers.core.config import ConfigError, Env


class Secrets:
    def __init__(self, *, ttl_seconds: float = 300.0, client: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds, self.clock = ttl_seconds, clock
        self._client = client
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def _secretsmanager(self) -> Any:
        if self._client is not None:
            return self._client()
        from handlers.core.aws import client

        return client("secretsmanager")

    def get(self, arn: str) -> str:
        now = self.clock()
        with self._lock:
            cached = self._cache.get(arn)
            if cached is not None and now - cached[0] < self.ttl_seconds:
                return cached[1]
        value = self._secretsmanager().get_secret_value(SecretId=arn)["SecretString"]
        with self._lock:
            self._cache[arn] = (now, value)
        return value

    def forget(self, arn: str | None = None) -> None:
        with self._lock:
            if arn is None:
                self._cache.clear()
            else:
                self._cache.pop(arn, None)


SECRETS = Secrets()


def secret_string(arn: str) -> str:
    return SECRETS.get(arn)


class DatabaseUrl:
    """The database's DSN for a long-lived connection, re-read when a login is refused.

    Aurora rotates its RDS-managed password; a consumer keeps its connection, and on the next (re)connect the
    password it cached may be stale. A sink calls :meth:`refused` after a failed connection: the secret is then
    read again on the next call (at most once every ``min_interval`` seconds, so an outage does not turn into a
    Secrets Manager call per retry).
    """

    def __init__(self, env: Env, secrets: Secrets = SECRETS, *, min_interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.env, self.secrets, self.min_interval, self.clock = env, secrets, min_interval, clock
        self._last_forgotten = float("-inf")

    def __call__(self) -> str:
        url = database_url(self.env, self.secrets)
        if url is None:
            raise ConfigError("DATABASE_URL", "is not set, nor DATABASE_SECRET_ARN")
        return url

    def refused(self) -> None:
        """A refused login: read the secret again (an IAM token is made afresh at every connect anyway)."""
        arn = self.env.optional("DATABASE_SECRET_ARN")
        now = self.clock()
        if arn is not None and now - self._last_forgotten >= self.min_interval:
            self._last_forgotten = now
            self.secrets.forget(arn)


def database_dsn(env: Env) -> str | DatabaseUrl | None:
    """What a long-lived sink connects with: ``DATABASE_URL`` as is, else a :class:`DatabaseUrl` (an IAM token
    or the secret, asked at every connect), else None."""
    direct = env.optional("DATABASE_URL")
    if direct is not None:
        return direct
    if env.optional("DATABASE_IAM_USER") or env.optional("DATABASE_SECRET_ARN"):
        return DatabaseUrl(env)
    return None


def iam_auth_token(host: str, port: int, user: str) -> str:
    """A 15-minute IAM authentication token for ``user`` (signed locally with this process's credentials; the
    caller's role needs rds-db:connect on that database user)."""
    from handlers.core.aws import client

    return client("rds").generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)


def database_url(env: Env, secrets: Secrets = SECRETS) -> str | None:
    """``DATABASE_URL``; else, with ``DATABASE_IAM_USER``, that application user with a fresh IAM token at
    ``DATABASE_HOST`` / ``DATABASE_PORT`` / ``DATABASE_NAME``; else one built from Aurora's RDS-managed secret
    (``DATABASE_SECRET_ARN``: username, password) and the endpoint (the secret's own ``host`` / ``port`` /
    ``dbname`` win when present). None when none of them."""
    direct = env.optional("DATABASE_URL")
    if direct is not None:
        return direct
    sslmode = env.optional("DATABASE_SSLMODE", "require")  # TLS to Aurora (IAM authentication requires it)
    user = env.optional("DATABASE_IAM_USER")
    if user:
        host = env.required("DATABASE_HOST", "the database endpoint (IAM authentication)")
        port = int(env.optional("DATABASE_PORT") or 5432)
        name = env.optional("DATABASE_NAME") or "events"
        token = iam_auth_token(host, port, user)
        return (f"postgresql://{quote(user, safe='')}:{quote(token, safe='')}@{host}:{port}/{name}"
                f"?sslmode={sslmode}")
    arn = env.optional("DATABASE_SECRET_ARN")
    if arn is None:
        return None
    secret = orjson.loads(secrets.get(arn))
    host = secret.get("host") or env.optional("DATABASE_HOST")
    if not host:
        raise ConfigError("DATABASE_HOST", "is not set, and DATABASE_SECRET_ARN's secret names no host")
    port = secret.get("port") or env.optional("DATABASE_PORT") or 5432
    name = secret.get("dbname") or env.optional("DATABASE_NAME") or "events"
    return (f"postgresql://{quote(secret['username'], safe='')}:{quote(secret['password'], safe='')}"
            f"@{host}:{port}/{name}?sslmode={sslmode}")
