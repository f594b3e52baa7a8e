"""Alternating best-of-N timing: every round runs each variant once, in a rotated order."""
from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Callable

Variant = Callable[[int], int]  # (round index) -> units processed


def progress(message: str) -> None:
    print(f"  .. {message}", flush=True)


def pin_to_one_core() -> int | None:
    """Pin this process (not later-started servers) to one CPU; returns it, or None where unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1]
    os.sched_setaffinity(0, {cpu})
    return cpu


def alternate(label: str, variants: dict[str, Variant], rounds: int, expected: int,
              before_each: Callable[[str, int], None] | None = None) -> dict[str, dict[str, object]]:
    """Time ``rounds`` passes of every variant; round r starts at variant r (mod n) so none always goes first."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    units: dict[str, int] = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            progress(f"{label}: round {r + 1}/{rounds}, {name}")
            if before_each is not None:
                before_each(name, r)
            gc.collect()
            start = time.perf_counter()
            n = variants[name](r)
            elapsed = time.perf_counter() - start
            if n != expected:  # every variant must have done the whole job, in every round
                raise AssertionError(f"{label}/{name}: round {r + 1} processed {n} of {expected} units")
            units[name] = n
            times[name].append(elapsed)
    return {name: {"units": units[name], "seconds": times[name], "best_seconds": min(times[name]),
                   "median_seconds": statistics.median(times[name]),
                   "best_per_second": units[name] / min(times[name]),
                   "median_per_second": units[name] / statistics.median(times[name])}
            for name in names}


class unpinned:
    """Temporarily allow every CPU again, e.g. while starting a server that should not share our core."""

    def __init__(self, cpus: set[int]) -> None:
        self.cpus = cpus
        self.saved: set[int] | None = None

    def __enter__(self) -> "unpinned":
        if hasattr(os, "sched_setaffinity"):
            self.saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, self.cpus)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            os.sched_setaffinity(0, self.saved)
