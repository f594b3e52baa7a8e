"""Our humilis plugins (letgo/ops/humilis_*.py): the artefact reference, the stage check, the layer folders.

humilis imports them inside its own virtualenv (PyYAML 5, no project dependencies): they must load with the
standard library alone, and every entry point pyproject.toml declares must name something that exists.
"""
from __future__ import annotations

import ast
import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from letgo.ops import humilis_artefacts, humilis_checks

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ("humilis_artefacts", "humilis_checks", "humilis_layers")
STDLIB = {"__future__", "hashlib", "json", "os", "pathlib", "re", "typing", "humilis.reference"}


@pytest.mark.parametrize("module", PLUGINS)
def test_each_plugin_imports_only_the_standard_library(module):
    tree = ast.parse((ROOT / "letgo" / "ops" / f"{module}.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= STDLIB, imported - STDLIB


def test_every_humilis_entry_point_names_an_existing_callable():
    import importlib

    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for group in ("humilis.reference_parsers", "humilis.jinja2_filters", "humilis.layers"):
        assert groups[group], group
        for name, target in groups[group].items():
            module, _, attribute = target.partition(":")
            assert callable(getattr(importlib.import_module(module), attribute)), (group, name)


def built(folder: Path, packages: dict[str, bytes]) -> Path:
    dist = folder / "dist"
    dist.mkdir()
    manifest = {}
    for name, content in packages.items():
        digest = hashlib.sha256(content).hexdigest()
        (dist / f"{name}-{digest[:12]}.zip").write_bytes(content)
        manifest[name] = {"file": f"{name}-{digest[:12]}.zip", "sha256": digest}
    (dist / "manifest.json").write_text(json.dumps(manifest))
    (folder / "environments").mkdir()
    return folder / "environments"


def test_artefact_found_by_name_relative_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("LETGO_DIST", raising=False)
    environments = built(tmp_path, {"consumer": b"zip bytes", "search-api": b"bundle"})
    path = humilis_artefacts.find("search-api", environments)
    assert path.parent == tmp_path / "dist" and path.name.startswith("search-api-") and path.read_bytes() == b"bundle"


@pytest.mark.parametrize(("name", "damage", "says"), [
    ("serving", None, "artefact 'serving' is not in"),
    ("consumer", "tamper", "changed since `make package`"),
    ("consumer", "delete", "is listed in"),
    ("consumer", "no-manifest", "does not exist — build the packages first"),
    (None, None, "needs a name"),
])
def test_artefact_missing_or_changed_is_named(tmp_path, monkeypatch, name, damage, says):
    monkeypatch.delenv("LETGO_DIST", raising=False)
    environments = built(tmp_path, {"consumer": b"zip bytes"})
    [zipped] = (tmp_path / "dist").glob("consumer-*.zip")
    if damage == "tamper":
        zipped.write_bytes(b"other bytes")
    elif damage == "delete":
        zipped.unlink()
    elif damage == "no-manifest":
        (tmp_path / "dist" / "manifest.json").unlink()
    with pytest.raises(humilis_artefacts.ArtefactError, match=says):
        humilis_artefacts.find(name, environments)


def test_artefact_dist_can_be_pointed_elsewhere(tmp_path, monkeypatch):
    built(tmp_path, {"consumer": b"x"})
    monkeypatch.setenv("LETGO_DIST", str(tmp_path / "dist"))
    assert humilis_artefacts.find("consumer", "/nowhere").parent == tmp_path / "dist"


SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:letgo/sentry-AbCdEf"


def test_stage_ready_names_every_missing_or_malformed_value_at_once():
    with pytest.raises(humilis_checks.StageNotReady) as raised:
        humilis_checks.stage_ready({"sentry_dsn_secret_arn": "", "segment_write_keys_secret_arn": "letgo/keys",
                                    "alarm_emails": "ops@letgo.example, nobody",
                                    "search_admin_principal_arns": "arn:aws:iam::123456789012:role/ops"}, "prod")
    problems = raised.value.problems
    assert [p.split(":")[0] for p in problems] == ["sentry_dsn_secret_arn", "segment_write_keys_secret_arn",
                                                   "alarm_emails"]
    assert "empty" in problems[0] and "not a Secrets Manager secret ARN" in problems[1] and "nobody" in problems[2]
    assert str(raised.value).startswith("PROD cannot be rendered or deployed without")


def test_stage_ready_passes_complete_values_and_ignores_a_stage_that_is_not_real():
    assert humilis_checks.stage_ready({"sentry_dsn_secret_arn": SECRET}, "PROD", True) == ""
    assert humilis_checks.stage_ready({"sentry_dsn_secret_arn": ""}, "DEV", False) == ""
    with pytest.raises(ValueError, match="no rule for"):  # a value the environment passes must have a rule
        humilis_checks.stage_ready({"sentry_dns_secret_arn": SECRET}, "PROD", True)
