"""The error of the definition language: a broken definition file stops start-up naming the file, the field and
why — ``<file>: <field>: <why>`` — whether it declares event types, metrics, models or settings."""
from __future__ import annotations


class DefinitionError(Exception):
    """An event-type, metric, model or configuration file is broken: names the file, the field and why."""

    def __init__(self, filename: str, field: str | None, message: str) -> None:
        self.filename = filename
        self.field = field
        self.message = message
        where = f"{filename}: {field}: " if field else f"{filename}: "
        super().__init__(where + message)
