"""``letgo metrics replay --stage S``: replay a deployed stage's statistics from T, in CloudFormation's real order.

The procedure of :mod:`letgo.replay` on AWS. A mapping's starting position cannot change in place, and Lambda
allows one mapping per (stream, function): when a template changes it, CloudFormation creates the replacement
*before* deleting the old one, Lambda answers "provided mapping already exists" and the update rolls back. The
procedure used to delete the rows first and then deploy that one update — which failed, leaving the mapping
disabled and the rows gone. So, in an order where every step can fail and a rerun resumes from what AWS shows:

1. **stop** — disable the function's mappings (writes stop at once; the update below takes minutes);
2. **remove** — ``humilis update`` with the statistics layer's ``mapping: false``: CloudFormation deletes it;
3. **delete** — the rows from T, only now that nothing can write them (one transaction);
4. **persist** — ``statistics_replay_from: T`` under the stage in ``environments/parameters.yaml`` (a textual edit:
   the comments stay), so that later deploys keep the mapping where it is — commit it;
5. **add** — ``humilis update`` with that file: the mapping is created reading AT_TIMESTAMP T, no maximum record
   age, and the function recomputes every window from T by itself.

Resuming: a mapping already reading at T — one exists, AT_TIMESTAMP, and the statistics stack says T (its
``StartingPosition`` output: Lambda's own ``StartingPositionTimestamp`` is not in every API answer, moto's
included) — means the replay is done (its windows are being rewritten: deleting rows again would lose them); no
mapping means steps 1-2 are done (nothing writes), so it goes on at 3; any other mapping starts at 1. Beyond
the stream's retention this refuses: replay that part from the raw archive first (``replay_local`` against the
production database).
"""
from __future__ import annotations

import re
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
Deploy = Callable[[dict[str, Any]], None]  # humilis update of the stage with these parameter overrides


class ReplayIncomplete(RuntimeError):
    """A step did not reach the state it must leave; rerunning the same command resumes from what AWS shows."""


def statistics_function(stage: str) -> str:
    return f"letgo-statistics-{stage.lower()}"


def set_stage_parameter(path: Path, stage: str, name: str, value: int | str) -> None:
    """``name: value`` under the ``STAGE:`` block of a parameters file, edited as text (comments are kept)."""
    lines = Path(path).read_text().splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if line.rstrip() == f"{stage.upper()}:"), None)
    if header is None:
        lines += ["\n" if lines and not lines[-1].endswith("\n") else "", f"{stage.upper()}:\n"]
        header = len(lines) - 1
    end = next((i for i in range(header + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
               len(lines))
    pattern = re.compile(rf"^(\s+){re.escape(name)}:[^#\n]*(#.*)?$")
    for i in range(header + 1, end):
        if (found := pattern.match(lines[i].rstrip("\n"))):
            comment = f"  {found.group(2)}" if found.group(2) else ""
            lines[i] = f"{found.group(1)}{name}: {value}{comment}\n"
            break
    else:  # indented like the block's first key (yaml.safe_dump writes 2 spaces, our file 4)
        indent = next((line[: len(line) - len(line.lstrip())] for line in lines[header + 1:end] if line.strip()),
                      "    ")
        lines.insert(header + 1, f"{indent}{name}: {value}\n")
    Path(path).write_text("".join(lines))


def redeploy(stage: str, overrides: dict[str, Any], *, parameters: Path = PARAMETERS,
             run: Callable[..., Any] = subprocess.run) -> None:
    """``humilis update`` of the stage (deploy/humilis_run.py in humilis's virtualenv) with ``overrides`` applied
    to the stage's values in a copy of the parameters file (the file itself is untouched)."""
    import yaml

    values = yaml.safe_load(Path(parameters).read_text())
    values.setdefault(stage.upper(), {}).update(overrides)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as changed:
        yaml.safe_dump(values, changed)
    try:
        run([str(HUMILIS_PYTHON), str(HUMILIS_RUN), "update", "--stage", stage, "--parameters", changed.name],
            check=True)
    finally:
        Path(changed.name).unlink(missing_ok=True)


def _mappings(lambda_client: Any, function_name: str) -> list[dict[str, Any]]:
    """The function's mappings, asked by name and by ARN (Lambda answers either; moto only as it was created)."""
    arn = lambda_client.get_function_configuration(FunctionName=function_name)["FunctionArn"]
    found = {m["UUID"]: m for key in dict.fromkeys((function_name, arn))
             for m in lambda_client.list_event_source_mappings(FunctionName=key)["EventSourceMappings"]}
    return [m for m in found.values() if m.get("State") not in ("Deleting", "Deleted")]


def reads_from(mapping: dict[str, Any], epoch: int, deployed_position: str | None) -> bool:
    """The mapping reads AT_TIMESTAMP ``epoch`` (its own timestamp when the API gives one, else the stack's)."""
    if mapping.get("StartingPosition") != "AT_TIMESTAMP":
        return False
    stamp = mapping.get("StartingPositionTimestamp")
    if stamp is not None:
        return int(stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)) == epoch
    return deployed_position == f"AT_TIMESTAMP:{epoch}"


def replay_aws(lambda_client: Any, *, function_name: str, since: datetime, sink: MetricSink, window_seconds: int,
               retention: timedelta, deploy: Deploy, persist: Callable[[int], None],
               deployed_position: Callable[[], str | None] = lambda: None, metric: str | None = None,
               now: datetime | None = None, wait: Callable[[float], None] | None = None,
               timeout_seconds: float = 600, say: Callable[[str], None] = print) -> ReplayReport:
    """The five steps of the module's docstring, resumed from what the function's mappings show."""
    wait = wait or time.sleep
    since = align(since, window_seconds)
    epoch = int(since.timestamp())
    now = now or datetime.now(timezone.utc)
    if since < now - retention:
        raise ValueError(f"{since:%Y-%m-%dT%H:%M}Z is beyond the stream's retention ({retention}); replay that part "
                         f"from the raw archive (replay_local with the production database), then from the stream")
    report = ReplayReport(since, "kinesis")

    def until(done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not done():
            if time.monotonic() > deadline:
                raise ReplayIncomplete(f"{what} did not happen within {timeout_seconds:.0f} s; run the same command "
                                       f"again to resume")
            wait(2)

    mappings = _mappings(lambda_client, function_name)
    if any(reads_from(m, epoch, deployed_position()) for m in mappings):
        report.notes.append(f"{function_name} already reads from {since:%Y-%m-%dT%H:%M:%SZ}: the replay is done "
                            f"(its windows are being recomputed), nothing deleted again")
        return report
    if mappings:
        for mapping in mappings:  # 1. stop
            if mapping.get("State") not in ("Disabled", "Disabling"):
                lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
        until(lambda: all(m.get("State") == "Disabled" for m in _mappings(lambda_client, function_name)),
              f"disabling the mappings of {function_name}")
        say(f"1/5 {len(mappings)} mapping(s) of {function_name} disabled")
        deploy({"statistics_mapping": False})  # 2. remove
        until(lambda: not _mappings(lambda_client, function_name), f"removing the mapping of {function_name}")
        say("2/5 statistics layer deployed without its mapping")
        report.notes.append(f"{len(mappings)} mapping(s) of {function_name} removed by a first update")
    else:
        say(f"1-2/5 {function_name} has no mapping: resuming at the deletion")
    report.rows_deleted = sink.delete_from(since, metric)  # 3. delete: nothing can write these rows now
    say(f"3/5 deleted {report.rows_deleted} rows from {since:%Y-%m-%dT%H:%M:%SZ}")
    persist(epoch)  # 4. persist
    say(f"4/5 statistics_replay_from: {epoch} written to the stage's parameters")
    deploy({"statistics_mapping": True, "statistics_replay_from": epoch})  # 5. add
    until(lambda: any(reads_from(m, epoch, deployed_position()) for m in _mappings(lambda_client, function_name)),
          f"creating the mapping of {function_name} at {epoch}")
    say(f"5/5 statistics layer deployed with its mapping reading from {since:%Y-%m-%dT%H:%M:%SZ}")
    report.notes.append("statistics layer redeployed with replay_from: its mapping now reads from there")
    return report


def stack_position(cloudformation: Any, stage: str) -> Callable[[], str | None]:
    """The statistics stack's ``StartingPosition`` output as deployed now (None without a mapping)."""
    from letgo.ops.stacks import stack_outputs

    return lambda: stack_outputs(cloudformation, "statistics", stage).get("StartingPosition")


def replay_stage(stage: str, *, since: datetime, dsn: str, lambda_client: Any, cloudformation: Any,
                 window_seconds: int, retention: timedelta, metric: str | None = None,
                 parameters: Path = PARAMETERS) -> ReplayReport:
    """The whole procedure on a deployed stage: its statistics function's mapping, its metrics database, and
    ``parameters`` (the committed file) holding the new starting position afterwards."""
    return replay_aws(lambda_client, function_name=statistics_function(stage), since=since, sink=MetricSink(dsn),
                      window_seconds=window_seconds, retention=retention, metric=metric,
                      deployed_position=stack_position(cloudformation, stage),
                      deploy=lambda overrides: redeploy(stage, overrides, parameters=parameters),
                      persist=lambda epoch: set_stage_parameter(parameters, stage, "statistics_replay_from", epoch))
