"""moto in server mode: the local stage's AWS (S3, Kinesis, Firehose, SQS, CloudFormation…)."""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from letgo.services import free_port, wait_until

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1"}


class MotoServer:
    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def start(self) -> "MotoServer":
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - closed in stop()
        log = self._log or subprocess.DEVNULL
        env = {**os.environ, **FAKE_CREDENTIALS}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "letgo.services.moto_launcher", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_until(self._up, 60, f"moto server on {self.url}")
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()
