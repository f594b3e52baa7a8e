"""Re-drive the quarantine after an event type was fixed.

For every quarantined line that the *current* event types accept, the original payload goes back on the
stream, so it flows like a new event (archive, checks, sinks — idempotent on messageId, so re-driving twice
is harmless). Lines still invalid stay in the quarantine under the same key; an object whose lines all
went back is deleted. Re-put first, rewrite second: a crash in between only causes a harmless re-send.
Counts are of distinct units (shard, sequence number, index), whatever objects hold them.
"""
from __future__ import annotations

import base64
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from handlers.core.kinesis import RawRecord
from handlers.tracking.processor import Processor
from handlers.tracking.sinks.s3objects import Quarantine
from letgo.producer import put_records


@dataclass
class RedriveReport:
    objects: int = 0
    redriven: int = 0
    still_invalid: int = 0
    still_invalid_by_reason: dict[str, int] = field(default_factory=dict)


def redrive(quarantine: Quarantine, processor: Processor, kinesis: Any, stream: str,
            progress: Callable[[int], None] | None = None) -> RedriveReport:
    report = RedriveReport()
    reasons: Counter[str] = Counter()
    seen: set[tuple[str, str, int]] = set()  # objects written before per-record keys may repeat a line
    for key in list(quarantine.keys()):
        report.objects += 1
        lines = quarantine.read(key)
        keep, resend = [], []
        for line in lines:
            unit = (line["shardId"], line["sequenceNumber"], line["index"])
            if unit in seen:
                continue  # counted (and re-sent, if it could be) from its first copy
            seen.add(unit)
            # judged as it will be once back on the stream: it arrives anew, now
            record = RawRecord(line["sequenceNumber"], "redrive", line["raw"], time.time(), line["shardId"])
            result = processor.process([record])
            if result.rejections:
                current = result.rejections[0]  # today's verdict replaces the old one (the YAML changed)
                keep.append({**line, "reason": current.reason.value, "field": current.field,
                             "message": current.message, "eventType": current.event_type})
                reasons.update(r.reason.value for r in result.rejections)
            else:
                resend.append((line["sequenceNumber"], base64.b64decode(line["raw"])))
        if resend:
            put_records(kinesis, stream, resend)
            report.redriven += len(resend)
        if resend or keep != lines:
            quarantine.rewrite(key, keep)
        report.still_invalid += len(keep)
        if progress:
            progress(report.objects)
    report.still_invalid_by_reason = dict(reasons)
    return report
