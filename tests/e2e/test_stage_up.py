"""`letgo stage up` for real, in its own process: the three consumers run side by side (one lane per mapping,
as AWS runs one event source mapping per function), other commands find it, `letgo stage down` stops it.

The stage lives in a private folder (``LETGO_STAGE_DIR``), so a developer's running stage is not touched.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import boto3
import orjson
import psycopg
import pytest

from letgo.producer import put_records
from letgo.traffic import generate
from tests.stage_kit import private_tmp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]


def _until(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_stage_up_consumes_counts_and_indexes_side_by_side_then_stops():
    with private_tmp("letgo-stage-up-") as directory:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_", "SENTRY_"))}
        env["LETGO_STAGE_DIR"] = str(directory)
        process = subprocess.Popen([sys.executable, "-m", "letgo", "stage", "up"], cwd=REPO, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output: list[str] = []
        threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
        try:
            stage_file = directory / "stage.json"
            info = orjson.loads(_until(lambda: stage_file.exists() and stage_file.read_bytes(), 180, "stage.json"))
            aws = info["env"]
            kinesis = boto3.client("kinesis", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=aws["AWS_REGION"],
                                   aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"])
            plan = generate(600, seed=31, now=datetime.now(timezone.utc))
            put_records(kinesis, info["stream"], ((r.partition_key, r.data) for r in plan.records))

            def delivered() -> bool:
                with psycopg.connect(aws["DATABASE_URL"]) as conn:
                    return conn.execute("SELECT count(*) FROM events").fetchone()[0] == plan.expected_valid
            _until(delivered, 120, "every valid event in PostgreSQL")

            def listings() -> int:
                with urllib.request.urlopen(f"{info['search_api']}/search?q=&country=ES", timeout=10) as answer:
                    return orjson.loads(answer.read())["total"]
            assert _until(listings, 60, "listings in the search API") > 0  # the indexer's lane ran beside

            recover = subprocess.run([sys.executable, "-m", "letgo", "recover", "--dry-run"], cwd=REPO,
                                     env=env, capture_output=True, text=True, timeout=120)
            assert recover.returncode == 0, recover.stdout + recover.stderr
            assert "consumer: 0 on-failure messages" in recover.stdout  # it found this stage, and nothing failed
        finally:
            down = subprocess.run([sys.executable, "-m", "letgo", "stage", "down"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=120)
            try:
                process.wait(60)
            finally:
                if process.poll() is None:
                    process.kill()
        assert down.returncode == 0 and "local stage stopped" in down.stdout, down.stdout + down.stderr
        assert process.returncode == 0, "".join(output)[-3000:]
        assert not (directory / "stage.json").exists()
