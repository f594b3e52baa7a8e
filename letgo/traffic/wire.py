"""How a unit looks on the wire: the platform's envelope, or an unmodified Segment SDK call; gzip as apps send it."""
from __future__ import annotations

import zlib
from datetime import datetime, timezone
from typing import Any

from letgo.traffic.marketplace import Marketplace
from letgo.traffic.model import Unit


def iso_z(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_offset(epoch: float) -> str:
    """Segment analytics-python: ``datetime.isoformat()`` - microseconds and ``+00:00``."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="microseconds")


def gzip(data: bytes) -> bytes:
    """gzip with a zero mtime (deterministic bytes), as the consumer accepts it."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


def render(place: Marketplace, unit: Unit, *, in_batch: bool = False) -> dict[str, Any]:
    """The event as JSON: a Segment call (``track``/``screen``/``identify``) or the platform's envelope."""
    if unit.segment or in_batch:
        return _segment_call(place, unit)
    user = unit.user
    obj = {"messageId": place.message_id(), "type": unit.event_type, "timestamp": iso_z(unit.epoch),
           "sentAt": iso_z(unit.epoch + place.rng.uniform(0.05, 3.0)), "context": user.context,
           "properties": unit.properties}
    if user.user_id is not None:
        obj["userId"] = user.user_id
    else:
        obj["anonymousId"] = user.anonymous_id
    return obj


def _segment_call(place: Marketplace, unit: Unit) -> dict[str, Any]:
    user = unit.user
    obj: dict[str, Any] = {"integrations": {}, "anonymousId": user.anonymous_id,
                           "timestamp": iso_offset(unit.epoch), "context": user.segment_context,
                           "userId": user.user_id, "messageId": place.message_id()}
    if unit.event_type == "Screen":
        obj.update(type="screen", name=unit.properties["name"],
                   properties={k: v for k, v in unit.properties.items() if k != "name"})
    elif unit.event_type == "Identify":
        obj.update(type="identify", traits=unit.properties)
    else:
        obj.update(type="track", event=unit.event_type, properties=unit.properties)
    return obj
