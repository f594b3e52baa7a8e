"""The shape of handlers/ml: modules a person can read in one sitting, each saying what it is for.

Read from the source (nothing is imported). The import circles of the whole of handlers/ are
tests/unit/test_import_graph.py's business.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "handlers" / "ml"
MAX_LINES = 500
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_no_module_over_500_lines():
    long = {str(path.relative_to(PACKAGE)): n for path in MODULES
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_every_module_says_what_it_is_for():
    silent = [str(path.relative_to(PACKAGE)) for path in MODULES
              if path.read_text(encoding="utf-8").strip() and not ast.get_docstring(ast.parse(path.read_text()))]
    assert not silent, silent


def test_the_definition_types_do_not_need_the_yaml_reader():
    """Most code (training, serving, guards, validator) imports the types; the loader is for whoever loads."""
    tree = ast.parse((PACKAGE / "definition_types.py").read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name == "yaml" or name.startswith("handlers.ml.definition")}, imported
