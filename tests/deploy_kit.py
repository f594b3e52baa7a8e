"""Helpers for the deployment tests: run humilis (its own virtualenv) and read rendered templates."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
HUMILIS_PY = REPO / ".venv-humilis" / "bin" / "python"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
STAGES = ("LOCAL", "DEV", "PROD")
LAYERS = ("storage", "vpc", "aurora", "kinesis", "statistics", "elasticsearch", "search-indexer", "search-api",
          "batch", "model-serving", "model-validator", "redshift", "jupyterhub", "api-gateway")  # in order
# moto's CloudFormation models neither RDS clusters nor OpenSearch domains (nor the search API on top), nor
# Redshift's managed password;
# the notebooks (jupyterhub) need the redshift layer
DISABLED = {"LOCAL": {"aurora", "elasticsearch", "search-indexer", "search-api", "batch", "model-serving",
                      "model-validator", "redshift", "jupyterhub"}}


PARAMETERS = REPO / "environments" / "parameters.yaml"
# What an operator writes into parameters.yaml for a real stage (require_real_values): ARNs of the right shape
REAL_VALUES = {
    "sentry_dsn_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:letgo/sentry-AbCdEf",
    "segment_write_keys_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:letgo/segment-AbCdEf",
    "alarm_emails": "oncall@letgo.example, data-platform@letgo.example",
    "search_admin_principal_arns": "arn:aws:iam::123456789012:role/letgo-search-admins",
}


def parameters_file(path: Path, overrides: dict[str, dict[str, Any]] | None = None, *,
                    real_values: bool = True) -> Path:
    """A copy of environments/parameters.yaml at ``path``: PROD's real values filled in (unless not wanted),
    then ``overrides`` ({STAGE: {name: value}}) applied."""
    import yaml

    values = yaml.safe_load(PARAMETERS.read_text())
    if real_values:
        values.setdefault("PROD", {}).update(REAL_VALUES)
    for stage, changes in (overrides or {}).items():
        values.setdefault(stage, {}).update(changes)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def render(stage: str, out: Path, overrides: dict[str, dict[str, Any]] | None = None,
           env: dict[str, str] | None = None) -> Path:
    """Every layer of ``stage`` rendered into ``out/<STAGE>/`` (a real stage with its real values filled in)."""
    out.mkdir(parents=True, exist_ok=True)
    beside = out.with_name(out.name + "-parameters")  # not inside out/: checkov scans that folder
    beside.mkdir(exist_ok=True)
    parameters = parameters_file(beside / f"{stage}.yaml", overrides)
    humilis("render", "--stage", stage, "--out", str(out), "--parameters", str(parameters), env=env)
    return out / stage.upper()


@dataclass(frozen=True)
class CheckovRun:
    """What checkov found in a folder of templates: failed checks, how many passed, and the skipped ones."""

    failed: list[tuple[str, str, str]]  # (check id, file, resource)
    passed: int
    skipped: list[dict[str, Any]]

    def unjustified_skips(self) -> list[dict[str, Any]]:
        """Skips without a real reason in the resource's Metadata (more than a few words)."""
        return [c for c in self.skipped if len((c.get("check_result") or {}).get("suppress_comment") or "") <= 20]


def checkov(folder: Path) -> CheckovRun:
    """Every check of open-source checkov over the CloudFormation templates of ``folder`` (offline: no severities,
    so the deployment tests require no failed check at all)."""
    done = subprocess.run([str(CHECKOV), "-d", str(folder), "--framework", "cloudformation", "-o", "json",
                           "--skip-download"], capture_output=True, text=True,
                          env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}, timeout=600)
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return CheckovRun(
        failed=[(c["check_id"], c["file_path"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]],
        passed=sum(r["summary"]["passed"] for r in reports),
        skipped=[c for r in reports for c in r["results"]["skipped_checks"]])

def humilis(*args: str, env: dict[str, str] | None = None, timeout: int = 600,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """deploy/humilis_run.py in humilis's virtualenv; a failure raises AssertionError with its output (check)."""
    done = subprocess.run([str(HUMILIS_PY), str(REPO / "deploy" / "humilis_run.py"), *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO)
    if done.returncode and check:
        raise AssertionError(f"humilis {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every policy statement of a template: IAM roles/policies, bucket, queue, topic and key policies."""
    for name, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        documents = [p.get("PolicyDocument") for p in props.get("Policies", [])]
        documents += [props.get(key) for key in ("PolicyDocument", "AssumeRolePolicyDocument", "KeyPolicy")]
        for document in documents:
            if isinstance(document, dict):
                for statement in document.get("Statement", []):
                    yield name, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@contextlib.contextmanager
def moto_server(folder: Path) -> Iterator[dict[str, str]]:
    """A moto server (the patched launcher) with this process's AWS variables pointing at it meanwhile."""
    from letgo.services.moto import FAKE_CREDENTIALS, MotoServer

    with MotoServer(folder / "moto.log") as moto:
        env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": moto.url}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def client(service: str, aws: dict[str, str]) -> Any:
    import boto3

    return boto3.client(service, region_name=aws["AWS_REGION"], endpoint_url=aws["AWS_ENDPOINT_URL"])


def stacks(aws: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {s["StackName"]: s for s in client("cloudformation", aws).describe_stacks()["Stacks"]
            if s["StackStatus"] != "DELETE_COMPLETE"}
