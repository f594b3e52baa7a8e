"""The packaging <-> environment contract, on the DEV and PROD renders with the real ``make package`` artefacts.

LOCAL disables most layers, so a package only DEV/PROD deploy (search-api, serving, ...) was once referenced by a
name ``make package`` never wrote, and nothing noticed. Here every S3 key a rendered template points at must be a
package of ``dist/manifest.json``, unchanged since it was built; every Lambda handler must be a function defined in
its zip; every Beanstalk bundle must hold what its Procfile or Dockerfile runs and copies, and a Python bundle a
wheel for each requirement (it installs offline). And the other way round: a package that was not built, or a
real stage without the values it needs, stops the render with a message naming each.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.deploy_kit import REAL_VALUES, REPO, humilis, load, parameters_file, render

pytestmark = pytest.mark.functional
DIST = REPO / "dist"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("contract")
    return {stage: render(stage, out) for stage in ("DEV", "PROD")}


def manifest() -> dict[str, dict[str, str]]:
    return json.loads((DIST / "manifest.json").read_text())


def referenced(folder: Path):
    """(template, logical id, kind, S3 key, properties) of every code package a rendered stage points at."""
    for path in sorted(folder.glob("*.json")):
        for name, resource in load(path)["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::Lambda::Function" and "S3Key" in props.get("Code", {}):
                yield path.stem, name, "function", props["Code"]["S3Key"], props
            elif resource["Type"] == "AWS::ElasticBeanstalk::ApplicationVersion":
                yield path.stem, name, "bundle", props["SourceBundle"]["S3Key"], props


def defines(source: bytes, attribute: str) -> bool:
    """A module-level function, class or assignment named ``attribute`` (or a module ``__getattr__``, which
    builds attributes on first access: gunicorn's ``getattr(module, "app")`` reaches it)."""
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in (attribute,
                                                                                                     "__getattr__"):
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == attribute for t in node.targets):
            return True
    return False


def module_source(archive: zipfile.ZipFile, dotted: str) -> bytes | None:
    path = dotted.replace(".", "/")
    for candidate in (f"{path}.py", f"{path}/__init__.py"):
        if candidate in archive.namelist():
            return archive.read(candidate)
    return None


def check_wsgi_target(archive: zipfile.ZipFile, text: str, where: str) -> None:
    targets = re.findall(r"gunicorn\b.*?\s([A-Za-z_][\w.]*):([A-Za-z_]\w*)", text)
    assert targets, f"{where}: no gunicorn module:app to run"
    for module, attribute in targets:
        source = module_source(archive, module)
        assert source is not None, f"{where}: {module} is not in the bundle"
        assert defines(source, attribute), f"{where}: {module} defines no {attribute}"


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@pytest.mark.parametrize("stage", ["DEV", "PROD"])
def test_every_package_a_template_references_was_built_and_holds_what_it_runs(rendered, stage):
    built = {entry["file"]: (name, entry["sha256"]) for name, entry in manifest().items()}
    seen = set()
    for layer, logical, kind, key, props in referenced(rendered[stage]):
        file_name = key.rsplit("/", 1)[-1]
        assert key.startswith(f"humilis/letgo/{stage}/{layer}/"), (layer, logical, key)
        assert file_name in built, f"{layer}/{logical} points at {file_name}, which `make package` did not build"
        package, sha256 = built[file_name]
        assert hashlib.sha256((DIST / file_name).read_bytes()).hexdigest() == sha256, f"{file_name} changed"
        seen.add(package)
        with zipfile.ZipFile(DIST / file_name) as archive:
            if kind == "function":
                module, _, attribute = props["Handler"].rpartition(".")
                source = module_source(archive, module)
                assert source is not None, f"{layer}/{logical}: {module} is not in {file_name}"
                assert defines(source, attribute), f"{layer}/{logical}: {module} defines no {attribute}"
                continue
            names = set(archive.namelist())
            if "Procfile" in names:  # Beanstalk's Python platform: Procfile + requirements from bundled wheels
                check_wsgi_target(archive, archive.read("Procfile").decode(), f"{file_name}:Procfile")
                requirements = [line.split(";")[0].strip() for line in archive.read("requirements.txt").decode()
                                .splitlines() if line.strip() and not line.startswith("-")]
                wheels = {normalised(n.split("/")[-1].split("-")[0]) for n in names
                          if n.startswith("wheels/") and n.endswith(".whl")}
                for requirement in requirements:
                    name = re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0]
                    assert normalised(name) in wheels, f"{file_name}: no wheel for {requirement} (installs offline)"
            else:  # Beanstalk's Docker platform: the Dockerfile builds from the bundle alone
                assert "Dockerfile" in names, f"{file_name}: neither a Procfile nor a Dockerfile"
                dockerfile = archive.read("Dockerfile").decode()
                for source in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+\s*$", dockerfile, re.M):
                    folder = source.rstrip("/") + "/"
                    assert source in names or any(n.startswith(folder) for n in names), \
                        f"{file_name}: the Dockerfile copies {source}, which the bundle lacks"
                check_wsgi_target(archive, dockerfile, f"{file_name}:Dockerfile")
    expected = {"consumer", "statistics", "indexer", "search-api", "serving", "validator", "warehouse", "authorizer"}
    assert expected <= seen, f"{stage} references none of {sorted(expected - seen)}"


def test_a_package_that_was_not_built_fails_the_render_naming_it(tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    entries = manifest()
    for entry in entries.values():
        (dist / entry["file"]).symlink_to(DIST / entry["file"])
    del entries["search-api"]  # the package DEV/PROD deploy and LOCAL never does
    (dist / "manifest.json").write_text(json.dumps(entries))
    with pytest.raises(AssertionError) as failed:
        humilis("render", "--stage", "DEV", "--out", str(tmp_path / "out"), env={"LETGO_DIST": str(dist)})
    assert "artefact 'search-api' is not in" in str(failed.value) and "make package" in str(failed.value)


def test_a_package_changed_since_it_was_built_fails_the_render(tmp_path):
    dist = tmp_path / "dist"
    shutil.copytree(DIST, dist, ignore=shutil.ignore_patterns("*.zip"))
    entries = manifest()
    for name, entry in entries.items():
        if name == "consumer":
            (dist / entry["file"]).write_bytes((DIST / entry["file"]).read_bytes() + b"tampered")
        else:
            (dist / entry["file"]).symlink_to(DIST / entry["file"])
    with pytest.raises(AssertionError) as failed:
        humilis("render", "--stage", "LOCAL", "--out", str(tmp_path / "out"), env={"LETGO_DIST": str(dist)})
    assert "artefact 'consumer'" in str(failed.value) and "changed since" in str(failed.value)


def test_prod_refuses_to_render_without_its_real_values_naming_each(tmp_path):
    committed = tmp_path / "committed.yaml"
    shutil.copy(REPO / "environments" / "parameters.yaml", committed)
    with pytest.raises(AssertionError) as failed:
        humilis("render", "--stage", "PROD", "--out", str(tmp_path / "out"), "--parameters", str(committed))
    message = str(failed.value)
    assert "PROD cannot be rendered or deployed without" in message
    assert all(f"{name}: empty" in message for name in REAL_VALUES), message

    # one value given, one malformed: only the malformed one is named, with what is wrong with it
    half = parameters_file(tmp_path / "half.yaml", {"PROD": {"segment_write_keys_secret_arn": "letgo/segment"}},
                           real_values=False)
    with pytest.raises(AssertionError) as failed:
        humilis("render", "--stage", "PROD", "--out", str(tmp_path / "out"), "--parameters", str(half))
    message = str(failed.value)
    assert "segment_write_keys_secret_arn: not a Secrets Manager secret ARN" in message
    assert "sentry_dsn_secret_arn: empty" in message

    # DEV is not a real stage: it renders with the committed values
    humilis("render", "--stage", "DEV", "--out", str(tmp_path / "out"), "--parameters", str(committed))
