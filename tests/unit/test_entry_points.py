"""Entry points stay entry points: no system builds on another system's Lambda handler, and the deployed code
never imports the local tooling. Read from the source (tests/unit/test_import_graph.py's graph)."""
from __future__ import annotations

import ast

import pytest

from tests.unit.test_import_graph import GRAPH, MODULES

pytestmark = pytest.mark.unit


def _system(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else module


def test_no_system_imports_another_systems_lambda_entry_point():
    entry_points = {name for name in MODULES if name.rpartition(".")[2].startswith("lambda_")}
    assert {"handlers.tracking.lambda_consumer", "handlers.statistics.lambda_statistics",
            "handlers.search.lambda_indexer"} <= entry_points
    crossing = sorted((name, target) for name, targets in GRAPH.items() for target in targets & entry_points
                      if _system(name) != _system(target))
    assert crossing == []


def test_deployed_code_never_imports_the_local_tooling():
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [(name, m) for m in modules if m.split(".")[0] in ("letgo", "deploy", "tests", "bench")]
    assert offenders == []


def test_no_deployed_module_over_500_lines():
    """Files with one job: the deployed code's modules stay readable (letgo/ and deploy/: tests/unit/test_layout.py)."""
    long = sorted((name, n) for name, path in MODULES.items()
                  if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500)
    assert long == []
