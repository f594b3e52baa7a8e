"""Problem reports to Sentry: one issue per (event type, problem), not one per event.

Rejections of a batch are aggregated by (event type, reason, field) and sent as one message each, with an
explicit fingerprint that leaves the app release out — so one broken app release makes one Sentry issue
whose events carry counts, the app versions seen (as a tag and in the extras) and one scrubbed sample.
Personal data never leaves: fields the event types mark ``pii`` are replaced before sending, and
``before_send`` scrubs again with sentry-sdk's own EventScrubber.

Without a DSN (the local stage), :class:`LocalFileTransport` stores the envelopes as JSON lines so that
``letgo alerts`` can list them grouped for triage.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
from sentry_sdk.transport import Transport

SCRUBBED = "[scrubbed]"


class LocalFileTransport(Transport):
    """Stores every Sentry envelope item of type ``event`` as one JSON line in ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__({"dsn": None})
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            if item.type == "event" and item.payload.json is not None:
                with self._lock, self.path.open("ab") as out:
                    out.write(orjson.dumps(item.payload.json, default=str) + b"\n")

    def flush(self, timeout: float, callback: Any = None) -> None:  # writes are synchronous
        return None

    def kill(self) -> None:
        return None


def init_sentry(stage: str, *, dsn: str | None = None, local_path: Path | None = None,
                release: str | None = None) -> None:
    """DSN from the argument, ``SENTRY_DSN``, or the Secrets Manager secret ``SENTRY_DSN_SECRET_ARN`` names (how
    every deployed function and service gets it: the DSN is never in a template); otherwise the local file
    transport (argument or ``SENTRY_LOCAL_PATH``); otherwise reporting is off."""
    dsn = dsn if dsn is not None else os.environ.get("SENTRY_DSN") or None
    if dsn is None and os.environ.get("SENTRY_DSN_SECRET_ARN"):
        from handlers.core.secrets import secret_string

        dsn = secret_string(os.environ["SENTRY_DSN_SECRET_ARN"])
    if local_path is None and os.environ.get("SENTRY_LOCAL_PATH"):
        local_path = Path(os.environ["SENTRY_LOCAL_PATH"])
    options: dict[str, Any] = dict(
        environment=stage, release=release or os.environ.get("RELEASE"),  # PII is off by default
        event_scrubber=EventScrubber(denylist=DEFAULT_DENYLIST + ["email", "phone", "ip", "userId",
                                                                  "anonymousId", "advertisingId"]),
        max_breadcrumbs=20, default_integrations=True,
    )
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # inside Lambda: function errors and timeouts reach Sentry too
        from sentry_sdk.integrations.aws_lambda import AwsLambdaIntegration

        options["integrations"] = [AwsLambdaIntegration(timeout_warning=True)]
    if dsn:
        sentry_sdk.init(dsn=dsn, **options)
    elif local_path is not None:
        sentry_sdk.init(transport=LocalFileTransport(local_path), **options)
    else:
        sentry_sdk.init(**options)  # no DSN and nowhere to store: reporting is off


ENVELOPE_KEYS = frozenset({"type", "event", "name", "messageId", "timestamp", "originalTimestamp", "sentAt",
                           "version", "receivedAt"})


def public_paths(properties: dict[str, dict[str, Any]], prefix: str = "") -> set[str]:
    """Dotted paths of declared fields that are not personal data (a pii object hides all it contains)."""
    found = set()
    for name, spec in properties.items():
        if spec.get("pii"):
            continue
        found.add(prefix + name)
        if spec.get("type") == "object":
            found |= public_paths(spec.get("properties", {}), f"{prefix}{name}.")
    return found


MAX_SAMPLE_DEPTH = 12  # a sample nested deeper is cut (a rejected record may be nested 1,000 deep)


def redact(value: Any, allowed: frozenset[str], path: str, depth: int = 0) -> Any:
    """Keep the structure; keep a value only where its dotted path is declared and not personal data."""
    if depth >= MAX_SAMPLE_DEPTH and isinstance(value, (dict, list)):
        return "[nested too deep, withheld]"
    if isinstance(value, dict):
        return {k: redact(v, allowed, f"{path}.{k}" if path else k, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, allowed, path, depth + 1) for v in value]
    return value if path in allowed else SCRUBBED


class ProblemReporter:
    """Aggregates a batch's rejections and reports each (event type, reason, field) group once.

    Samples are redacted by *allow-list*: only fields an event type (or ``_context.yaml``) declares and does
    not mark ``pii`` keep their values. Anything undeclared — the very thing a broken app release tends to
    send — is replaced, so personal data cannot leak through a field nobody declared.
    """

    def __init__(self, stage: str, public_by_type: dict[str, frozenset[str]], public_context: frozenset[str]) -> None:
        self.stage = stage
        self.public_by_type = public_by_type
        self.public_context = frozenset(f"context.{p}" for p in public_context)

    @classmethod
    def for_catalog(cls, stage: str, catalog: Any) -> "ProblemReporter":
        return cls(stage, {name: frozenset(public_paths(t.properties)) for name, t in catalog.types.items()},
                   frozenset(public_paths(catalog.context_properties)))

    def sample(self, rejection: Any) -> Any:
        try:
            document = orjson.loads(rejection.raw)
        except orjson.JSONDecodeError:
            return f"<{len(rejection.raw)} bytes that are not JSON>"
        if not isinstance(document, dict):
            return f"<a JSON {type(document).__name__}, withheld>"
        if isinstance(document.get("batch"), list):
            return f"<a Segment batch of {len(document['batch'])} events, withheld>"
        properties = frozenset(f"properties.{p}" for p in self.public_by_type.get(rejection.event_type or "", ()))
        allowed = ENVELOPE_KEYS | properties | self.public_context
        return {key: redact(value, allowed, key) for key, value in document.items()}

    def report(self, rejections: Sequence[Any]) -> int:
        """Send one Sentry event per problem group; returns how many were sent. Never raises."""
        groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
        for rejection in rejections:
            groups[(rejection.event_type or "(none)", rejection.reason.value, rejection.field or "(record)")].append(
                rejection)
        for (event_type, reason, field), members in groups.items():
            try:
                versions = Counter(r.app_version or "unknown" for r in members)
                with sentry_sdk.new_scope() as scope:
                    scope.fingerprint = ["tracking-rejection", event_type, reason, field]
                    scope.set_tag("stage", self.stage)
                    scope.set_tag("event_type", event_type)
                    scope.set_tag("reason", reason)
                    scope.set_tag("field", field)
                    scope.set_tag("app_version", versions.most_common(1)[0][0])
                    scope.set_extra("count", len(members))
                    scope.set_extra("app_versions", dict(versions))
                    scope.set_extra("message", safe_message(reason, members[0]))
                    scope.set_extra("sample", self.sample(members[0]))
                    scope.set_extra("sequence_numbers", sorted({r.sequence_number for r in members})[:20])
                    exception = next((r.exception for r in members if getattr(r, "exception", None)), None)
                    if exception:  # internal_error: where the core failed — frames only, messages withheld
                        scope.set_extra("exception", traceback_frames(exception))
                    sentry_sdk.capture_message(f"{event_type}: {reason} on {field}", level="warning")
            except Exception:  # noqa: BLE001 - reporting must never fail the batch
                continue
        return len(groups)


class OutageReporter:
    """A dependency that is down is one Sentry issue per (service, dependency), not one event per retry.

    While a consumer waits, ``waiting`` sends at most one event per dependency every ``every_seconds`` (so a
    long outage stays visible without flooding); ``recovered`` (after a delivered batch) re-arms it.
    """

    def __init__(self, service: str, *, every_seconds: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service, self.every_seconds, self.clock = service, every_seconds, clock
        self._last: dict[str, float] = {}

    def waiting(self, problem: Any) -> bool:
        dependency = getattr(problem, "dependency", None) or "a sink"
        now = self.clock()
        last = self._last.get(dependency)
        if last is not None and now - last < self.every_seconds:
            return False
        self._last[dependency] = now
        try:
            with sentry_sdk.new_scope() as scope:
                scope.fingerprint = ["sink-unavailable", self.service, dependency]
                scope.set_tag("dependency", dependency)
                scope.set_extra("problem", str(problem))
                sentry_sdk.capture_message(f"{self.service}: waiting for {dependency} (records held, not dropped)",
                                           level="error")
        except Exception:  # noqa: BLE001 - reporting must never fail the batch
            return False
        return True

    def recovered(self) -> None:
        self._last.clear()


def traceback_frames(text: str) -> str:
    """A formatted traceback without its exception messages (they may quote a record's values): the frames,
    and each exception's type alone."""
    kept = []
    for line in text.splitlines():
        if line.startswith((" ", "Traceback", "During handling", "The above exception")) or not line.strip():
            kept.append(line)
        else:
            kept.append(line.split(":", 1)[0] + ": [message withheld]")
    return "\n".join(kept)


def safe_message(reason: str, rejection: Any) -> str:
    """A rejection's message as Sentry may see it. The core's own messages withhold personal data already;
    an exception's or PostgreSQL's text can quote any value, so for those only what failed is kept."""
    if reason == "internal_error":
        return rejection.message.split(": ")[0] + ": " + _exception_types(rejection)
    if reason == "sink_rejected":
        origin = re.search(r"\(SQLSTATE \w+\)|\(refused by the driver[^)]*\)", rejection.message)
        column = re.match(r"PostgreSQL refused the row: column (\w+):", rejection.message)
        return (f"PostgreSQL refused the row{': column ' + column.group(1) if column else ''} "
                f"{origin.group(0) if origin else '(no SQLSTATE)'}")
    return rejection.message


def _exception_types(rejection: Any) -> str:
    exception = getattr(rejection, "exception", None) or ""
    last = [line for line in exception.splitlines() if line and not line.startswith(" ")]
    return last[-1].split(":", 1)[0] if last else "an exception"


def read_local_alerts(path: Path) -> list[dict[str, Any]]:
    """Group locally stored Sentry events by fingerprint, the way Sentry groups issues."""
    if not Path(path).exists():
        return []
    issues: dict[tuple[str, ...], dict[str, Any]] = {}
    for line in Path(path).read_bytes().splitlines():
        event = orjson.loads(line)
        fingerprint = tuple(event.get("fingerprint") or [event.get("message") or "?"])
        extra = event.get("extra") or {}
        issue = issues.setdefault(fingerprint, {"fingerprint": list(fingerprint), "title": event.get("message") or
                                                (event.get("logentry") or {}).get("message"), "events": 0,
                                                "count": 0, "tags": event.get("tags") or {},
                                                "app_versions": Counter(), "sample": extra.get("sample"),
                                                "first_message": extra.get("message")})
        issue["events"] += 1
        issue["count"] += int(extra.get("count") or 1)
        issue["app_versions"].update(extra.get("app_versions") or {})
    return sorted(issues.values(), key=lambda i: -i["count"])
