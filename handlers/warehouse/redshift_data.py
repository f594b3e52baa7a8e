"""The one wrapper around the Redshift Data API: submit SQL, wait for it, turn failures into our errors.

Why the Data API and not a PostgreSQL driver: the cluster sits in private subnets with no public endpoint,
and the Data API reaches it through IAM (``redshift-data:*`` on the cluster) — no VPC attachment for the
loader, no password anywhere in a template or an environment variable. As whom (:class:`Target`): the loader
names its own database user (``DbUser``: the Data API gets temporary credentials for it with
``redshift:GetClusterCredentials``, which the loader's role may do for that user only); operators' tools
(``letgo warehouse migrate`` / ``load``) use the cluster's Secrets-Manager-managed master secret. Its calls
are asynchronous (a statement id to poll), so :meth:`run` and :meth:`run_transaction` wait here until the
statement finished and raise :class:`StatementFailed` with Redshift's own message when it did not.

``BatchExecuteStatement`` runs its statements in one transaction and one session (so a ``TEMP`` table
lives across them): that is how a load is atomic (:mod:`handlers.warehouse.loader`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from handlers.core import aws

DONE = "FINISHED"
FAILED = ("FAILED", "ABORTED")


class StatementFailed(Exception):
    """Redshift refused or aborted a statement; carries the statement id, its SQL (start) and the reason."""

    def __init__(self, statement_id: str, sql: str, error: str) -> None:
        self.statement_id, self.sql, self.error = statement_id, sql, error
        super().__init__(f"Redshift statement {statement_id} failed: {error} -- {sql[:200]}")


class StatementTimedOut(Exception):
    """The statement was still running after the wait budget (it may still finish; callers retry idempotently)."""


@dataclass(frozen=True)
class Target:
    """Which cluster and database, as whom: exactly one of ``db_user`` (an application's own user, temporary
    IAM credentials) or ``secret_arn`` (the Secrets Manager secret Redshift manages for its admin: operators)."""

    cluster_id: str
    database: str
    secret_arn: str | None = None
    db_user: str | None = None

    def __post_init__(self) -> None:
        if bool(self.secret_arn) == bool(self.db_user):
            raise ValueError("a Redshift Data API target needs exactly one of db_user and secret_arn")

    def credentials(self) -> dict[str, str]:
        return {"DbUser": self.db_user} if self.db_user else {"SecretArn": str(self.secret_arn)}


class RedshiftData:
    def __init__(self, target: Target, client: Any = None, *, poll_seconds: float = 0.5,
                 timeout_seconds: float = 600.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.target = target
        self._client = client
        self.poll_seconds, self.timeout_seconds, self._sleep = poll_seconds, timeout_seconds, sleep

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("redshift-data")
        return self._client

    def _where(self) -> dict[str, str]:
        return {"ClusterIdentifier": self.target.cluster_id, "Database": self.target.database,
                **self.target.credentials()}

    def run(self, sql: str) -> dict[str, Any]:
        """One statement, in its own implicit transaction (DDL that refuses a transaction block goes here)."""
        statement_id = self.client.execute_statement(Sql=sql, **self._where())["Id"]
        return self._wait(statement_id, sql)

    def run_transaction(self, statements: Sequence[str]) -> dict[str, Any]:
        """Several statements in one transaction and one session: all of them or none."""
        statement_id = self.client.batch_execute_statement(Sqls=list(statements), **self._where())["Id"]
        return self._wait(statement_id, ";\n".join(statements))

    def rows(self, sql: str) -> list[list[Any]]:
        """A query's rows as plain values (every page)."""
        statement_id = self.run(sql)["Id"]
        out: list[list[Any]] = []
        token: str | None = None
        while True:
            page = self.client.get_statement_result(Id=statement_id, **({"NextToken": token} if token else {}))
            out.extend([None if cell.get("isNull") else next(iter(cell.values())) for cell in record]
                       for record in page.get("Records", []))
            token = page.get("NextToken")
            if not token:
                return out

    def _wait(self, statement_id: str, sql: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            description = self.client.describe_statement(Id=statement_id)
            status = description["Status"]
            if status == DONE:
                return description
            if status in FAILED:
                raise StatementFailed(statement_id, sql, description.get("Error") or status)
            if time.monotonic() > deadline:
                try:  # a retry must not run beside it: stop it (a finished statement refuses; fine)
                    self.client.cancel_statement(Id=statement_id)
                except Exception:  # noqa: BLE001 - best effort; the timeout is what we report
                    pass
                raise StatementTimedOut(f"statement {statement_id} still {status} after {self.timeout_seconds} s")
            self._sleep(self.poll_seconds)
