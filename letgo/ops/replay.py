"""``letgo metrics replay --stage S``: replay a deployed stage's statistics from T after a bug.

The procedure of :mod:`letgo.replay` on AWS. An event source mapping's starting position cannot be changed in
place, and a mapping recreated behind CloudFormation's back would make the stack drift; so after disabling the
mapping and deleting the rows from T, the statistics layer is redeployed (``humilis update``, through
``deploy/humilis_run.py`` in humilis's own virtualenv) with its ``replay_from`` parameter set to T —
CloudFormation replaces the mapping, which reads from T (no maximum record age) and the Lambda replays by
itself. Keep that value in ``environments/parameters.yaml`` afterwards. Beyond the stream's retention this
refuses: replay that part from the raw archive first (``replay_local`` against the production database).
"""
from __future__ import annotations

import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from handlers.statistics.sink import MetricSink
from letgo import REPO_ROOT
from letgo.replay import ReplayReport, align

PARAMETERS = REPO_ROOT / "environments" / "parameters.yaml"
HUMILIS_PYTHON = REPO_ROOT / ".venv-humilis" / "bin" / "python"
HUMILIS_RUN = REPO_ROOT / "deploy" / "humilis_run.py"


def statistics_function(stage: str) -> str:
    return f"letgo-statistics-{stage.lower()}"


def redeploy_from(stage: str, at: datetime, *, parameters: Path = PARAMETERS,
                  run: Callable[..., Any] = subprocess.run) -> None:
    """``humilis update`` of the stage with ``statistics_replay_from`` = ``at`` (a copy of the parameters file)."""
    import yaml

    values = yaml.safe_load(Path(parameters).read_text())
    values.setdefault(stage.upper(), {})["statistics_replay_from"] = int(at.timestamp())
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as changed:
        yaml.safe_dump(values, changed)
    run([str(HUMILIS_PYTHON), str(HUMILIS_RUN), "update", "--stage", stage, "--parameters", changed.name],
        check=True)


def replay_aws(lambda_client: Any, *, function_name: str, since: datetime, sink: MetricSink, window_seconds: int,
               retention: timedelta, deploy: Callable[[datetime], None], metric: str | None = None,
               now: datetime | None = None, wait: Callable[[float], None] | None = None,
               timeout_seconds: float = 300) -> ReplayReport:
    """Stop the statistics mapping, delete rows from T, redeploy it at AT_TIMESTAMP T through CloudFormation.

    An event source mapping's starting position cannot be changed in place, and a mapping recreated behind
    CloudFormation's back would make the stack drift; so ``deploy(T)`` runs ``humilis update`` with the
    statistics layer's ``replay_from`` set to T — CloudFormation replaces the mapping, which reads from T
    (with no maximum record age). Beyond the stream's retention this refuses: replay from the archive first.
    """
    wait = wait or time.sleep
    since = align(since, window_seconds)
    now = now or datetime.now(timezone.utc)
    if since < now - retention:
        raise ValueError(f"{since:%Y-%m-%dT%H:%M}Z is beyond the stream's retention ({retention}); replay that part "
                         f"from the raw archive (replay_local with the production database), then from the stream")
    report = ReplayReport(since, "kinesis")
    function_arn = lambda_client.get_function_configuration(FunctionName=function_name)["FunctionArn"]
    mappings = lambda_client.list_event_source_mappings(FunctionName=function_arn)["EventSourceMappings"]
    if not mappings:
        raise ValueError(f"{function_name} has no event source mapping to replay")
    for mapping in mappings:
        lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    deadline = time.monotonic() + timeout_seconds
    while any(lambda_client.get_event_source_mapping(UUID=m["UUID"])["State"] not in ("Disabled", "Deleted")
              for m in mappings):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the statistics mapping of {function_name} did not stop within {timeout_seconds:.0f} s;"
                               f" nothing was deleted")
        wait(2)
    report.notes.append(f"{len(mappings)} mapping(s) of {function_name} disabled")
    report.rows_deleted = sink.delete_from(since, metric)
    deploy(since)
    report.notes.append("statistics layer redeployed with replay_from: its mapping now reads from there")
    return report


def replay_stage(stage: str, *, since: datetime, dsn: str, lambda_client: Any, window_seconds: int,
                 retention: timedelta, metric: str | None = None) -> ReplayReport:
    """The whole procedure on a deployed stage: its statistics function's mapping, its metrics database."""
    return replay_aws(lambda_client, function_name=statistics_function(stage), since=since, sink=MetricSink(dsn),
                      window_seconds=window_seconds, retention=retention, metric=metric,
                      deploy=lambda at: redeploy_from(stage, at))
