"""Benchmark: the search API under 16 concurrent clients, over the same index and queries as the in-process run.

Why: the in-process figures (``bench/search_bench.py``) say what one search costs; a buyer meets the API, where
gunicorn's layout decides what that cost becomes under load. The API runs as deployed — ``gunicorn -c
handlers/search/gunicorn_conf.py handlers.search.wsgi:app`` — over the 100k-ad tantivy index the in-process run
built, in each of these layouts, one after the other:

* ``2x1``: 2 workers (this machine's cores), 1 thread each — the shipped setting;
* ``2x4``: 2 workers, 4 threads each — the Procfile before issue 13.

16 client threads send the text + facets + geo queries of the in-process run (HTTP/1.1, a new connection per
request, as through a load balancer) for a fixed number of requests. Reported per layout: requests/s, the
client's latency p50/p99 (what a buyer waits, queueing included) and the server's ``took_ms`` p50/p99 (time
inside the app, which threads inflate when they share the GIL). The clients run in this (pinned) process; the
server gets every core. On a 2-core machine clients and server compete, so the absolute numbers are a floor;
the comparison between layouts is the point.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench.timing import progress, unpinned
from letgo import REPO_ROOT
from letgo.services import free_port, wait_until

CLIENTS = 16
REQUESTS = 1600  # per layout (100 per client)
LAYOUTS = {"2x1": (2, 1), "2x4": (2, 4)}


def _percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2)}


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _serve(directory: Path, workers: int, threads: int, cpus: set[int]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": str(directory),
           "LETGO_SEARCH_SETUP": "0", "SEARCH_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers),
           "SEARCH_THREADS": str(threads), "SEARCH_MAX_REQUEST_SECONDS": "0", "LOG_LEVEL": "WARNING",
           "SEARCH_SERVE_PAGE": "0"}
    with unpinned(cpus):  # the server gets every core, as a server would
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "handlers/search/gunicorn_conf.py",
                                    "handlers.search.wsgi:app"], cwd=REPO_ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            return _get(port, "/health")[0] == 200
        except OSError:
            return False

    wait_until(up, 60, "the search API under gunicorn")
    return process, port


def _load(port: int, paths: list[str]) -> dict[str, Any]:
    client_ms: list[float] = []
    server_ms: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    per_client = len(paths) // CLIENTS

    def client(offset: int) -> None:
        mine_client, mine_server = [], []
        for i in range(per_client):
            path = paths[(offset * per_client + i) % len(paths)]
            start = time.perf_counter()
            try:
                status, body = _get(port, path)
            except OSError as exc:
                failures.append(str(exc))
                continue
            mine_client.append((time.perf_counter() - start) * 1000)
            if status != 200:
                failures.append(f"{status} {body}")
                continue
            mine_server.append(float(body["took_ms"]))
        with lock:
            client_ms.extend(mine_client)
            server_ms.extend(mine_server)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return {"requests": len(client_ms), "requests_per_second": round(len(client_ms) / elapsed, 1),
            "client": _percentiles(client_ms), "server": _percentiles(server_ms)}


def run(directory: Path, requests: list[Any], cpus: set[int], n_requests: int = REQUESTS) -> dict[str, Any]:
    """Each layout over the index in ``directory`` with these SearchRequests (cycled) as query strings."""
    paths = []
    for request in requests:
        params = {"q": request.text, "language": request.language, "lat": request.lat, "lon": request.lon,
                  "radius_km": request.radius_km}
        paths.append("/search?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None}))
    paths = (paths * (n_requests // max(1, len(paths)) + 1))[:n_requests]
    report: dict[str, Any] = {"clients": CLIENTS, "layouts": {}}
    for name, (workers, threads) in LAYOUTS.items():
        progress(f"API under {CLIENTS} clients: gunicorn {workers} workers x {threads} threads, "
                 f"{len(paths)} requests")
        process, port = _serve(directory, workers, threads, cpus)
        try:
            for path in paths[:CLIENTS * 2]:  # warm both workers' caches
                _get(port, path)
            report["layouts"][name] = {"workers": workers, "threads": threads, **_load(port, paths)}
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    shipped, before = report["layouts"]["2x1"], report["layouts"]["2x4"]
    report["ratios"] = {"server_p50_2x4/2x1": round(before["server"]["p50_ms"] / shipped["server"]["p50_ms"], 2),
                        "client_p99_2x4/2x1": round(before["client"]["p99_ms"] / shipped["client"]["p99_ms"], 2)}
    return report
