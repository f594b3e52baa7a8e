"""e2e helpers; the stage fixtures (one local stage per session, emptied per test) are in tests/conftest.py."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import orjson

from letgo.stage import LocalStage
from tests.stage_kit import inventory, quarantine_lines, send  # noqa: F401 - re-exported for the e2e modules


# -- helpers shared by the e2e modules -------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def native(event_type: str, properties: dict[str, Any], *, message_id: str | None = None,
           user_id: str = "u-1") -> bytes:
    return orjson.dumps({"type": event_type, "messageId": message_id or str(uuid.uuid4()), "userId": user_id,
                         "timestamp": now_iso(), "context": {"app": {"version": "4.12.0"}},
                         "properties": properties})


def lead_properties(**overrides: Any) -> dict[str, Any]:
    return {"item_id": "it-1", "seller_id": "u-2", "category": "bikes", "channel": "chat", **overrides}


def pg_rows(stage: LocalStage, where: str = "TRUE", params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(stage.postgres.dsn) as conn:
        return conn.execute(f"SELECT message_id, event_type, user_id, properties FROM events WHERE {where} "
                            f"ORDER BY message_id", params).fetchall()
