"""humilis Jinja filter ``letgo_stage_ready``: a real stage refuses to render without the values it cannot run on.

PROD used to render — and deploy — with empty secret ARNs: the collector's authorizer then denied every request
and Sentry (the upstream data alerts included) was silently off. The environment file hands the filter the
values a real stage needs; with ``enforce`` (``require_real_values`` in ``parameters.yaml``, true on PROD) every
missing or malformed one is named in one error, with why the stage needs it — not the first one only, so one
edit of ``parameters.yaml`` fixes them all.

Registered as the ``humilis.jinja2_filters`` entry point; humilis adds those filters to the Jinja environment it
renders environment files with. A filter cannot stop a render by returning something: it raises. Runs inside
humilis's own virtualenv: standard library only.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
IAM_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[A-Za-z0-9/_+=,.@-]+$")
EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


def _secret(value: str) -> str | None:
    return None if SECRET_ARN.match(value) else "not a Secrets Manager secret ARN"


def _principals(value: str) -> str | None:
    bad = [v for v in (p.strip() for p in value.split(",")) if not IAM_ARN.match(v)]
    return f"not IAM role or user ARNs: {', '.join(bad)}" if bad else None


def _emails(value: str) -> str | None:
    bad = [v for v in (p.strip() for p in value.split(",")) if not EMAIL.match(v)]
    return f"not e-mail addresses: {', '.join(bad)}" if bad else None


# parameter -> (how its value is checked, why a real stage cannot run without it)
REQUIRED: dict[str, tuple[Callable[[str], str | None], str]] = {
    "sentry_dsn_secret_arn": (_secret, "the Secrets Manager secret holding the Sentry DSN; without it no error, "
                                       "rejection or upstream data alert reaches anyone"),
    "segment_write_keys_secret_arn": (_secret, "the Secrets Manager secret holding the Segment write keys; without it "
                                               "the collector's authorizer denies every request"),
    "alarm_emails": (_emails, "who the stage's alerts topic notifies; without a subscriber every alarm is "
                              "raised to no one"),
    "search_admin_principal_arns": (_principals, "the IAM roles or users allowed to assume the search domain's admin "
                                                 "role (`letgo search setup`); nobody else may"),
}


class StageNotReady(ValueError):
    """A real stage lacks values it cannot run without; the message names each one and why."""

    def __init__(self, stage: str, problems: list[str]) -> None:
        self.stage, self.problems = stage, problems
        super().__init__(f"{stage} cannot be rendered or deployed without these values in environments/"
                         f"parameters.yaml (ARNs and addresses only, never secret values):\n  - "
                         + "\n  - ".join(problems))


def stage_ready(values: Mapping[str, Any], stage: str, enforce: Any = True) -> str:
    """The filter: raise :class:`StageNotReady` naming every missing or malformed value; '' when all are fine."""
    unknown = sorted(set(values) - set(REQUIRED))
    if unknown:
        raise ValueError(f"letgo_stage_ready: no rule for {unknown} (letgo/ops/humilis_checks.py REQUIRED)")
    if not enforce or str(enforce).lower() in ("false", "0", "no"):
        return ""
    problems = []
    for name, value in values.items():
        check, why = REQUIRED[name]
        text = "" if value is None else str(value).strip()
        problem = "empty" if not text else check(text)
        if problem:
            problems.append(f"{name}: {problem} — {why}")
    if problems:
        raise StageNotReady(str(stage).upper(), problems)
    return ""
