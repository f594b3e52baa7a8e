"""Progress for long commands: a live line on a terminal, a line every few seconds in logs and CI."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int | None = None, *, every: float = 2.0, stream=sys.stdout) -> None:
        self.label, self.total, self.every, self.stream = label, total, every, stream
        self.tty = stream.isatty()
        self.started = self.last = time.monotonic()
        self.done = 0
        self.shown = -1

    def __call__(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.tty or now - self.last >= self.every:
            self.last = now
            self._show(end="\r" if self.tty else "\n")
            self.shown = done

    def _show(self, end: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
        self.stream.write(f"  {self.label}: {self.done:,}{of}{pct}  ({self.done / elapsed:,.0f}/s){' ' * 8}{end}")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty or self.shown != self.done:
            self._show(end="\n")
