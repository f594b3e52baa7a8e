"""Helpers for the deployment tests: run humilis (its own virtualenv) and read rendered templates."""
from __future__ import annotations

import json
import os
import subprocess
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


def humilis(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(HUMILIS_PY), str(REPO / "deploy" / "humilis_run.py"), *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO)
    if done.returncode:
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
