"""``make package``: deterministic Lambda deployment packages with Lambda-platform wheels.

humilis's own ``$lambda`` packaging pip-installs with the deploying machine's interpreter and platform and
zips with a random suffix (HUMILIS.md), so we build the zips ourselves:

* dependencies from ``requirements.txt`` as ``manylinux2014_x86_64`` / cp311 binary wheels (``--only-binary``),
  minus boto3/botocore which the Lambda runtime provides;
* our code (``handlers/``) plus the data it reads at start-up (``event_types/``, ``config/``, ``metrics/``);
* for ``statistics``: the metrics must load, and their stream window (the gcd of the metric windows) must equal
  the statistics layer's ``TumblingWindowInSeconds`` (``tumbling_window_seconds`` in its ``meta.yaml``) —
  otherwise the build stops before anything ships;
* every entry with a fixed timestamp and permissions, in sorted order — the same inputs give the same bytes,
  and the file name carries the content hash, so an unchanged package never redeploys a function.

Writes ``dist/<name>-<sha12>.zip`` and ``dist/manifest.json`` (name -> file, sha256).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "dist"
PROVIDED_BY_RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
PACKAGES = {
    "consumer": {"code": ["handlers"], "data": ["event_types", "config"]},
    # the tumbling-window handler: same requirements as the consumer (it runs the tracking core too)
    "statistics": {"code": ["handlers"], "data": ["event_types", "config", "metrics"]},
    # stdlib + the runtime's boto3 only: no wheels, just the modules it imports
    "authorizer": {"code": ["handlers/__init__.py", "handlers/collector"], "data": [], "requirements": False},
    # the search indexer: the tracking core (it validates first) + the OpenSearch client
    "indexer": {"code": ["handlers"], "data": ["event_types", "config"],
                "requirements": ["requirements.txt", "requirements-search.txt"]},
    # the model validator: golden requests against the serving API; no numpy/scikit-learn (it rebuilds no
    # model and computes no metric); the definitions ride along under models/
    "validator": {"code": ["handlers"], "data": ["models"],
                  "requirements": ["requirements.txt"]},
    # Beanstalk source bundles (not Lambda): the search API on the Python platform — a Procfile and the
    # vendored wheels its requirements.txt installs offline — and the model serving API on the Docker platform
    "search-api": {"code": ["handlers"], "data": ["event_types", "config"],
                   "bundle": {"python": ["requirements-search.txt", "requirements.txt"],
                              # workers, threads, limits: measured and explained in handlers/search/gunicorn_conf.py
                              "Procfile": "web: gunicorn -c handlers/search/gunicorn_conf.py "
                                          "handlers.search.wsgi:app\n"}},
    "serving": {"code": ["handlers"], "data": ["models", "requirements.txt"], "requirements": False,
                "bundle": {"files": {"Dockerfile": "handlers/ml/Dockerfile.serving"}}},
    # the warehouse loader: the runtime's boto3 only (Redshift Data API, S3)
    "warehouse": {"code": ["handlers/__init__.py", "handlers/core/__init__.py", "handlers/core/aws.py",
                           "handlers/core/config.py", "handlers/warehouse"], "data": [], "requirements": False},
}
SKIP_PARTS = {"__pycache__", ".pytest_cache"}


def lambda_requirements(files: list[str] | tuple[str, ...] = ("requirements.txt",), *,
                        keep_runtime: bool = False) -> list[str]:
    """Requirement specs of ``files`` (``path:name1,name2`` keeps only those), minus what Lambda provides."""
    wanted = []
    for entry in files:
        path, _, only = entry.partition(":")
        names = {n.strip().lower() for n in only.split(",") if n.strip()}
        for line in (REPO / path).read_text().splitlines():
            spec = line.split("#", 1)[0].strip()
            if not spec or spec.startswith("-"):
                continue
            name = spec.split("[", 1)[0].split(">", 1)[0].split("=", 1)[0].split("<", 1)[0].strip().lower()
            if (keep_runtime or name not in PROVIDED_BY_RUNTIME) and (not names or name in names):
                wanted.append(spec)
    return wanted


def download_wheels(target: Path, requirements: list[str]) -> None:
    """Every wheel the requirements need, for Beanstalk's Amazon Linux 2023 x86_64 / CPython 3.11."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(target),
                    "--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.11",
                    "--only-binary=:all:", *requirements], check=True)


def add_text(archive: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, text.encode())


def install_wheels(target: Path, requirements: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(target),
                    "--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.11",
                    "--only-binary=:all:", *requirements], check=True)
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: useless on Lambda, machine-specific


def add_tree(archive: zipfile.ZipFile, root: Path, base: Path) -> None:
    """A folder (recursively) or a single file, stored under its path relative to ``base``."""
    for path in [root] if root.is_file() else sorted(root.rglob("*")):
        if path.is_dir() or SKIP_PARTS & set(path.parts) or path.suffix == ".pyc":
            continue
        info = zipfile.ZipInfo(str(path.relative_to(base)), date_time=FIXED_TIME)
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, path.read_bytes())


STATISTICS_META = REPO / "layers" / "statistics" / "meta.yaml"


class PackageError(Exception):
    """A package whose contents contradict the deployment: nothing is built."""


def check_statistics_window(repo: Path = REPO, meta: Path = STATISTICS_META) -> int:
    """The metrics' stream window (gcd of their windows) == the layer's default TumblingWindowInSeconds.

    Loads the metrics with our own handlers code (this interpreter is the project venv's), exactly as the
    statistics function does at cold start; returns the window in seconds.
    """
    import yaml

    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from handlers.schema.errors import DefinitionError
    from handlers.schema.event_types import load_catalog
    from handlers.statistics.definitions import load_metrics
    from handlers.tracking.settings import load_settings

    try:
        settings = load_settings(repo / "config" / "tracking.yaml")
        catalog = load_catalog(repo / "event_types", max_depth=settings.max_depth)
        stream_window = load_metrics(repo / "metrics", catalog).stream_window_seconds
    except DefinitionError as exc:
        raise PackageError(f"statistics: the metric definitions do not load: {exc}") from None
    parameters = (yaml.safe_load(meta.read_text()) or {}).get("meta", {}).get("parameters", {})
    configured = (parameters.get("tumbling_window_seconds") or {}).get("value")
    if configured != stream_window:
        shown = meta.relative_to(repo) if meta.is_relative_to(repo) else meta
        raise PackageError(
            f"statistics: the metrics in metrics/ need a {stream_window} s stream window (the gcd of their "
            f"windows), but {shown} sets tumbling_window_seconds to {configured!r}; the mapping "
            f"would cut windows the metrics cannot be summed from. Set its value to {stream_window} (or change "
            f"the metric windows).")
    return stream_window


def build(name: str, out: Path = DIST, site: Path | None = None) -> Path:
    spec = PACKAGES[name]
    if name == "statistics":
        check_statistics_window()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"package-{name}-") as tmp:
        staging = Path(site) if site else Path(tmp) / "site"
        bundle = spec.get("bundle") or {}
        with_requirements = spec.get("requirements", not bundle)  # False: a package of our code only
        if site is None and with_requirements:
            files = with_requirements if isinstance(with_requirements, list) else ["requirements.txt"]
            install_wheels(staging, lambda_requirements(files))
        wheels = Path(tmp) / "wheels"
        python_requirements = lambda_requirements(bundle["python"], keep_runtime=True) if "python" in bundle else []
        if python_requirements:
            download_wheels(wheels, python_requirements)
        partial = Path(tmp) / f"{name}.zip"
        with zipfile.ZipFile(partial, "w") as archive:
            if with_requirements:
                add_tree(archive, staging, staging)
            for folder in spec["code"] + spec["data"]:
                add_tree(archive, REPO / folder, REPO)
            if python_requirements:  # installed offline on the instance from the bundled wheels
                add_tree(archive, wheels, Path(tmp))
                add_text(archive, "requirements.txt", "--no-index\n--find-links wheels\n"
                         + "".join(f"{r}\n" for r in python_requirements))
            if "Procfile" in bundle:
                add_text(archive, "Procfile", bundle["Procfile"])
            for arcname, source in (bundle.get("files") or {}).items():
                add_text(archive, arcname, (REPO / source).read_text())
        digest = hashlib.sha256(partial.read_bytes()).hexdigest()
        for old in out.glob(f"{name}-*.zip"):
            old.unlink()
        final = out / f"{name}-{digest[:12]}.zip"
        shutil.move(partial, final)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = {"file": final.name, "sha256": digest}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=sorted(PACKAGES))
    args = parser.parse_args()
    for name in args.names:
        try:
            path = build(name)
        except PackageError as exc:
            sys.exit(f"make package: {exc}")
        print(f"{path.relative_to(REPO)}  {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    main()
