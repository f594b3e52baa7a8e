"""The shape of the deploy-time and local code (letgo/, deploy/): small modules, no import circle, layers apart.

Read from the source with ``ast`` (nothing is imported): every ``import`` counts, also those inside functions —
a circle through a lazy import is still a circle a reader has to untangle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("letgo", "deploy")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The modules of letgo/ and deploy/ that ``name`` imports (a package import counts as its ``__init__``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets.add(base)
            targets |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {t for t in targets if t in MODULES and t != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _reaches(start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_no_module_over_500_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text(encoding="utf-8").splitlines()))
            > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_no_import_circle():
    circles = sorted(f"{a} <-> {b}" for a in GRAPH for b in GRAPH[a] if _reaches(b, a) and not b.startswith(a + "."))
    assert not circles, circles


def test_the_local_stage_never_imports_the_aws_operations_or_the_cli():
    local = {name for name in GRAPH if name.startswith("letgo")
             and not name.startswith(("letgo.ops", "letgo.cli", "letgo.__main__"))}
    offenders = {name: sorted(t for t in GRAPH[name] if t.startswith(("letgo.ops", "letgo.cli"))) for name in local}
    assert not {name: targets for name, targets in offenders.items() if targets}


def test_the_humilis_layer_plugin_loads_without_the_project_installed():
    """humilis imports it from its own virtualenv: only the standard library (the packages' ``__init__``s too)."""
    for name in ("letgo", "letgo.ops", "letgo.ops.humilis_layers"):
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert imported <= {"pathlib", "__future__"}, (name, imported)


def test_the_cli_modules_stay_thin():
    """Each command group parses its arguments and calls the layer that does the work."""
    long = {name: n for name, path in MODULES.items() if name.startswith("letgo.cli")
            and (n := len(path.read_text(encoding="utf-8").splitlines())) > 150}
    assert not long, long


def test_the_humilis_entry_points_name_existing_layers():
    import tomllib

    from letgo.ops import humilis_layers

    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["humilis.layers"]
    assert entry_points
    for layer_type, target in entry_points.items():
        module, _, attribute = target.partition(":")
        assert module == "letgo.ops.humilis_layers", target
        assert Path(getattr(humilis_layers, attribute)()).joinpath("meta.yaml").is_file(), layer_type
