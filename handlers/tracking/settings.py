"""Consumer settings from YAML, validated once at the edge.

The caller names the file (a deployed consumer: its ``TRACKING_CONFIG`` variable, read by
:class:`~handlers.tracking.consumer.ConsumerConfig`); without one, the packaged ``config/tracking.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.core.config import PACKAGE_ROOT
from handlers.schema.errors import DefinitionError
from handlers.schema.rules import duration, read_yaml

DEFAULT_SETTINGS = PACKAGE_ROOT / "config" / "tracking.yaml"


@dataclass(frozen=True)
class Settings:
    max_future_seconds: float = 86400
    max_past_seconds: float = 30 * 86400
    max_record_bytes: int = 1048576
    max_depth: int = 8
    max_batch_events: int = 1000
    max_message_id_length: int = 128
    max_user_id_length: int = 256
    firehose_max_attempts: int = 4
    firehose_backoff_seconds: float = 0.2


def load_settings(path: Path | None = None) -> Settings:
    path = Path(path or DEFAULT_SETTINGS)
    name = path.name
    doc = read_yaml(path) or {}
    known = {"checks": {"max_future", "max_past"},
             "limits": {"max_record_bytes", "max_depth", "max_batch_events", "max_message_id_length",
                        "max_user_id_length"},
             "sinks": {"firehose_max_attempts", "firehose_backoff_seconds"}}
    values: dict[str, Any] = {}
    for section, section_doc in doc.items():
        if section not in known or not isinstance(section_doc, dict):
            raise DefinitionError(name, section, f"unknown section; expected one of {sorted(known)}")
        for key, value in section_doc.items():
            if key not in known[section]:
                raise DefinitionError(name, f"{section}.{key}", f"unknown key; expected {sorted(known[section])}")
            if key in ("max_future", "max_past"):
                values[f"{key}_seconds"] = duration(value, name, f"{section}.{key}", minimum=0)
            elif key == "firehose_backoff_seconds":
                if not isinstance(value, (int, float)) or value < 0:
                    raise DefinitionError(name, f"{section}.{key}", "must be a non-negative number")
                values[key] = float(value)
            else:
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise DefinitionError(name, f"{section}.{key}", "must be a positive integer")
                values[key] = value
    return Settings(**values)
