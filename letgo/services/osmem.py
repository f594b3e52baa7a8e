"""osmem-server: an in-memory, OpenSearch-compatible server, so the OpenSearch backend is tested without a JVM.

Why it and not a real OpenSearch: these machines have no Docker and no Java; osmem is one Go binary in a
pip wheel that answers the REST API with OpenSearch's shapes and errors. It is a test double, not the
engine: where it differs (see the gaps listed in ``tests/functional/test_search_contract.py``), the
production query stays as it is and only the affected contract case is skipped on osmem. The same suite
runs against a real cluster when ``LETGO_OPENSEARCH_URL`` names one.

Started like the moto server: on a free port of 127.0.0.1, waited for, and stopped by its context manager
even when the run fails. Its stdin is a pipe we hold and it gets our pid (``--parent-pid``), so it also
exits if this process dies without cleaning up.
"""
from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from letgo.services import free_port, wait_until


class OsmemServer:
    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.version: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def _up(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"osmem-server exited with {self._process.returncode} before it was up")
        try:
            with urllib.request.urlopen(self.url, timeout=1) as response:
                self.version = json.loads(response.read())["version"]["number"]
                return True
        except (OSError, ValueError, KeyError):
            return False

    def start(self) -> "OsmemServer":
        from osmem_server import resolve_binary  # test-only dependency: imported when a server is wanted

        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - closed in stop()
        log = self._log or subprocess.DEVNULL
        self._process = subprocess.Popen(
            [resolve_binary(), "-addr", f"127.0.0.1:{self.port}", "-parent-pid", str(os.getpid()), "-no-ja"],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._up, 30, f"osmem-server on {self.url}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            if process.stdin:
                process.stdin.close()  # osmem exits when its stdin closes
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "OsmemServer":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()
