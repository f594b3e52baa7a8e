"""Embedded stand-ins for the local stage: a moto server and a PostgreSQL cluster in a project folder.

Each binds 127.0.0.1 on a free port (two runs on one machine never collide) and is stopped by its
context manager even when the run fails.
"""
import socket
import time
from typing import Callable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f}s")
