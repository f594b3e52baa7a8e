"""No import circle among the deployed code's modules (handlers/): each module can be read after what it imports.

Read from the source with ``ast`` (nothing is imported). Every ``import`` counts — also those inside
functions and under ``if TYPE_CHECKING:``: a circle through a lazy or a type-only import is still a circle a
reader has to untangle. ``from package import name`` is an import of the module ``package.name`` when there is
one (``from handlers.ml import artifacts``), else of the package's ``__init__`` (a name it defines or
re-exports). The ``__init__`` a submodule import runs first is not an edge of its own: every submodule import
runs it, and it is the package's own business what it imports.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "handlers"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The modules of handlers/ that ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
    return {t for t in targets if t in MODULES and t != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _path(start: str, goal: str) -> list[str] | None:
    """The modules from ``start`` to ``goal`` along imports (breadth first: the shortest), or None."""
    previous: dict[str, str] = {}
    todo, seen = [start], {start}
    while todo:
        current = todo.pop(0)
        for nxt in sorted(GRAPH[current]):
            if nxt in seen:
                continue
            previous[nxt] = current
            if nxt == goal:
                chain = [goal]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return chain[::-1]
            seen.add(nxt)
            todo.append(nxt)
    return None


def test_the_graph_sees_the_imports():
    """Guards the reader: a rule that finds no edges would find no circles either."""
    assert "handlers.ml.errors" in GRAPH["handlers.ml.store"]
    assert "handlers.ml.artifacts" in GRAPH["handlers.ml.store"]  # imported inside a method
    # `from handlers.schema import fields`: the module, not the package
    assert "handlers.schema.fields" in GRAPH["handlers.schema.codegen"]


def test_no_import_circle_in_handlers():
    circles = set()
    for module, targets in GRAPH.items():
        for target in targets:
            back = _path(target, module)
            if back is not None:
                circles.add(" -> ".join([module, *back]))
    assert not circles, "import circles:\n" + "\n".join(sorted(circles))
