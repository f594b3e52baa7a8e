"""What the generator produces: units (events before rendering), records (bytes on the stream + what the consumer
must make of them) and the plan, plus the users and listings the sessions act on."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from letgo.traffic.data import Market


@dataclass
class User:
    key: str  # partition key: userId, or anonymousId for a logged-out visitor
    user_id: str | None
    anonymous_id: str | None
    market: Market
    city: str
    lat: float
    lon: float
    context: dict[str, Any]
    segment_context: dict[str, Any]


@dataclass
class Item:
    item_id: str
    seller_id: str
    title: str
    category: str
    price: float
    market: Market
    listed_epoch: float


@dataclass(frozen=True)
class Unit:
    """One event before rendering: what happened, when, to whom, and in which wire format."""

    event_type: str
    epoch: float
    properties: dict[str, Any]
    user: User
    segment: bool  # render as an unmodified Segment SDK call instead of the platform envelope


@dataclass(frozen=True)
class TrafficRecord:
    """One Kinesis record and what the consumer must make of it."""

    partition_key: str
    data: bytes  # exactly the bytes to put on the stream
    units: int  # input units it carries: events of a Segment batch, 1 otherwise
    expected: dict[str, int]  # {"valid": n} | {"duplicate": 1} | {"rejected:<reason>": 1}


@dataclass
class TrafficPlan:
    records: list[TrafficRecord] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(r.units for r in self.records)

    @property
    def expected_valid(self) -> int:
        return sum(r.expected.get("valid", 0) for r in self.records)

    @property
    def expected_duplicates(self) -> int:
        return sum(r.expected.get("duplicate", 0) for r in self.records)

    @property
    def expected_rejected_by_reason(self) -> dict[str, int]:
        """Reason code (as ``Reason.value``) -> count."""
        counts: Counter[str] = Counter()
        for record in self.records:
            for key, n in record.expected.items():
                if key.startswith("rejected:"):
                    counts[key[len("rejected:"):]] += n
        return dict(sorted(counts.items()))
