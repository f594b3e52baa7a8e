"""The production entry point: ``gunicorn handlers.search.wsgi:app`` configured by the environment alone.

The module reads its configuration when it is imported, so each case runs in a fresh interpreter (the
test process's own environment and Sentry client stay untouched); the last test runs the real gunicorn on
a free 127.0.0.1 port over an index directory the embedded engine wrote, as the local stage does.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from handlers.search.tantivy_backend import TantivyBackend
from letgo.services import free_port, wait_until
from tests.search_api_kit import call
from tests.search_kit import CORPUS, in_language

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
KEEP = ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")  # everything else comes from the case


def clean_env(**values: str) -> dict[str, str]:
    """This machine's basics, no AWS credentials from anywhere (no files, no instance metadata), then ``values``."""
    return {**{k: os.environ[k] for k in KEEP if k in os.environ}, "PYTHONPATH": str(REPO),
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull, **values}


BAD_ENVIRONMENTS = [
    ({}, "LETGO_SEARCH_BACKEND"),
    ({"LETGO_SEARCH_BACKEND": "solr"}, "LETGO_SEARCH_BACKEND"),
    ({"LETGO_SEARCH_BACKEND": "tantivy"}, "LETGO_SEARCH_PATH"),
    ({"LETGO_SEARCH_BACKEND": "opensearch"}, "LETGO_OPENSEARCH_URL"),
    ({"LETGO_SEARCH_BACKEND": "opensearch", "LETGO_OPENSEARCH_URL": "vpc-search.eu-west-1.es.amazonaws.com"},
     "LETGO_OPENSEARCH_URL"),
    ({"LETGO_SEARCH_BACKEND": "opensearch", "LETGO_OPENSEARCH_URL": "https://h",
      "LETGO_OPENSEARCH_NAMESPACE": "Bad Name"}, "LETGO_OPENSEARCH_NAMESPACE"),
    ({"LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": "{tmp}", "SEARCH_MAX_REQUEST_SECONDS": "soon"},
     "SEARCH_MAX_REQUEST_SECONDS"),
    ({"LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": "{tmp}", "SEARCH_DEFAULT_COUNTRY": "Spain"},
     "SEARCH_DEFAULT_COUNTRY"),
    ({"LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": "{tmp}", "SEARCH_SERVE_PAGE": "perhaps"},
     "SEARCH_SERVE_PAGE"),
    ({"LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": "{tmp}", "SEARCH_CORS_ORIGINS": "letgo.example/app"},
     "SEARCH_CORS_ORIGINS"),
]

# Imports the entry point once per environment in one interpreter, as a fresh worker would, and reports what
# stopped it (or what it built).
PROBE = textwrap.dedent("""
    import importlib, json, os, sys
    from handlers.core.config import ConfigError
    base = dict(os.environ)
    for env in json.loads(sys.argv[1]):
        os.environ.clear(); os.environ.update(base); os.environ.update(env)
        sys.modules.pop("handlers.search.wsgi", None)
        try:
            module = importlib.import_module("handlers.search.wsgi")
        except ConfigError as exc:
            print(json.dumps({"setting": exc.where, "message": str(exc)}))
        else:
            backend = module.app.extensions["letgo_search"].backend
            config = module.app.extensions["letgo_search"].config
            opensearch = getattr(backend, "config", None)
            print(json.dumps({"backend": backend.name, "country": config.default_country,
                              "url": opensearch and opensearch.url,
                              "sigv4_region": opensearch and opensearch.aws_region}))
""")


def probe(environments: list[dict[str, str]]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(environments)], env=clean_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_wsgi_import_fails_fast_naming_the_variable(tmp_path: Path) -> None:
    environments = [{k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()} for env, _ in BAD_ENVIRONMENTS]

    outcomes = probe(environments)

    assert [o.get("setting") for o in outcomes] == [variable for _, variable in BAD_ENVIRONMENTS]
    assert all(o["message"].startswith(o["setting"] + ": ") for o in outcomes)


def test_wsgi_import_builds_the_app_the_environment_names(tmp_path: Path) -> None:
    outcomes = probe([{"LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": str(tmp_path / "index"),
                       "SEARCH_DEFAULT_COUNTRY": "nl"}])

    assert outcomes == [{"backend": "tantivy", "country": "NL", "url": None, "sigv4_region": None}]


def test_wsgi_reads_the_beanstalk_layers_opensearch_variables_and_signs_only_for_aws_endpoints() -> None:
    aws = "https://vpc-letgo-search.eu-west-1.es.amazonaws.com"
    local = "http://127.0.0.1:9"  # nothing listens: start-up must survive an unreachable engine

    outcomes = probe([{"LETGO_SEARCH_BACKEND": "opensearch", "LETGO_OPENSEARCH_URL": aws,
                       "LETGO_OPENSEARCH_AWS_REGION": "eu-west-1"},
                      {"LETGO_SEARCH_BACKEND": "opensearch", "LETGO_OPENSEARCH_URL": local}])

    assert outcomes == [{"backend": "opensearch", "country": None, "url": aws, "sigv4_region": "eu-west-1"},
                        {"backend": "opensearch", "country": None, "url": local, "sigv4_region": None}]


def test_wsgi_import_fails_in_a_fresh_worker_with_the_variable_in_the_message() -> None:
    done = subprocess.run([sys.executable, "-c", "import handlers.search.wsgi"], env=clean_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode != 0
    assert "ConfigError: LETGO_SEARCH_BACKEND: required" in done.stderr


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    """An index directory written by the engine, closed before the server opens it (as the indexer does)."""
    path = tmp_path / "search-index"
    backend = TantivyBackend(path)
    backend.setup()
    backend.index(CORPUS)
    backend.close()
    return path


@pytest.fixture
def gunicorn(index_dir: Path) -> Iterator[str]:
    port = free_port()
    env = clean_env(LETGO_SEARCH_BACKEND="tantivy", LETGO_SEARCH_PATH=str(index_dir), SEARCH_DEFAULT_COUNTRY="PT",
                    LOG_LEVEL="WARNING", SEARCH_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2")
    # the Procfile's command line (deploy/package.py), the bind address from the environment
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "handlers/search/gunicorn_conf.py",
                                "handlers.search.wsgi:app"],
                               env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {process.stderr.read()[-2000:]}")
        try:
            return call(url, "/health").status == 200
        except OSError:
            return False

    try:
        wait_until(up, 30, "gunicorn handlers.search.wsgi:app")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # graceful: the arbiter stops its workers
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        process.stderr.close()


def test_gunicorn_serves_the_app_over_the_index_directory(gunicorn: str) -> None:
    portuguese = in_language(CORPUS, "pt")

    health = call(gunicorn, "/health")
    results = call(gunicorn, "/search", {"page_size": 1})  # no language signal: SEARCH_DEFAULT_COUNTRY=PT
    spec = call(gunicorn, "/openapi.json")

    assert health.body == {"backend": "tantivy", "ok": True, "took_ms": health.body["took_ms"]}
    assert results.status == 200 and results.body["total"] == len(portuguese)
    assert results.body["language"] == {"language": "pt", "reason": "country", "requested": None,
                                        "source": "default_country", "country": None}
    assert spec.status == 200 and spec.body["paths"]


@pytest.mark.parametrize("url_bytes, by", [(5_000, "the app"), (9_000, "gunicorn itself")])
def test_a_url_too_long_gets_the_apis_json_414_not_an_html_page(gunicorn: str, url_bytes: int, by: str) -> None:
    reply = call(gunicorn, "/search", {"q": "bici", "pad": "x" * url_bytes})

    assert reply.status == 414, by
    assert reply.headers["Content-Type"].startswith("application/json"), reply.body
    error = reply.body["error"]
    assert error["status"] == 414 and error["code"] == "uri_too_long" and error["request_id"]
    assert reply.headers["X-Request-Id"] == error["request_id"]
