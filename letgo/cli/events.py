"""``letgo events validate | send FILE``: say what is wrong with each event of a file; put a file on a stream."""
from __future__ import annotations

import argparse
import base64
import time
from pathlib import Path
from typing import Any, Iterator

import orjson

from letgo import REPO_ROOT


def register(sub: Any) -> None:
    events = sub.add_parser("events", help="validate or send a file of events (JSON lines or a JSON array)")
    events.add_argument("action", choices=["validate", "send"])
    events.add_argument("file")
    events.add_argument("--event-types", default=str(REPO_ROOT / "event_types"))
    events.add_argument("--stream", help="stream name (default: the running local stage's)")
    events.set_defaults(func=lambda a: cmd_validate(a) if a.action == "validate" else cmd_send(a))


def events_from_file(path: Path) -> Iterator[tuple[int, bytes]]:
    """A JSON array, or JSON lines (one event per line). Yields (line or position, raw bytes).

    Each line is handed over as is (the processing core explains what is wrong with it). An array must parse
    as a whole first: if it does not, SystemExit says why in one line (exit status 1, no traceback).
    """
    from handlers.tracking.processor import dumps_json

    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark, as some editors write
        data = data[3:]
    if data.lstrip().startswith(b"["):
        try:
            items = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SystemExit(f"{path}: not a JSON array of events (nor JSON lines): {exc}") from None
        if type(items) is not list:
            raise SystemExit(f"{path}: starts with '[' but is not a JSON array")
        for index, item in enumerate(items, 1):
            yield index, dumps_json(item)  # orjson writes 254 levels at most; dumps_json any depth
        return
    for number, line in enumerate(data.splitlines(), 1):
        if line.strip():
            yield number, line


def cmd_validate(args: argparse.Namespace) -> int:
    from handlers.core.config import Env
    from handlers.core.kinesis import RawRecord
    from handlers.schema.event_types import load_catalog
    from handlers.tracking.processor import Processor
    from handlers.tracking.settings import DEFAULT_SETTINGS, load_settings

    settings = load_settings(Env().path("TRACKING_CONFIG", DEFAULT_SETTINGS))  # the stage's file, as deployed
    processor = Processor(load_catalog(Path(args.event_types), max_depth=settings.max_depth), settings)
    now = time.time()
    bad = total = 0
    try:
        events = list(events_from_file(Path(args.file)))
    except SystemExit as exc:  # the file is not JSON lines and not a JSON array: one line says why
        print(exc.code)
        return 1
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror or exc}")
        return 1
    for where, raw in events:
        result = processor.process([RawRecord(str(where), "file", base64.b64encode(raw).decode(), now)])
        total += result.units
        for rejection in result.rejections:
            bad += 1
            event = f" ({rejection.event_type})" if rejection.event_type else ""
            field = f"field '{rejection.field}'" if rejection.field else "record"
            item = f" event #{rejection.index}" if rejection.index else ""
            print(f"{args.file}:{where}{item}{event}: {field}: [{rejection.reason.value}] {rejection.message}")
        for duplicate in result.duplicates:
            print(f"{args.file}:{where}: duplicate messageId {duplicate.message_id}")
    print(f"{total - bad} valid, {bad} invalid of {total} events")
    return 1 if bad else 0


def cmd_send(args: argparse.Namespace) -> int:
    from handlers.core.aws import client
    from letgo.producer import put_records
    from letgo.stage_control import stage_info

    stream = args.stream or stage_info("(or pass --stream)")["stream"]
    sent = put_records(client("kinesis"), stream, ((f"file-{where}", raw) for where, raw in
                                                   events_from_file(Path(args.file))))
    print(f"sent {sent} events to {stream}")
    return 0
