"""A one-line progress bar on stderr, quiet when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``Progress(total, "steps")``; call ``update(done, note="")``, then ``close()``.

    Redraws at most every 0.1 s: ``[#####.....] 1200/2000 steps  6.1s  eta 4.0s  note``
    (``eta -`` until something is done).
    """

    def __init__(self, total: int, unit: str, stream: TextIO | None = None, enabled: bool | None = None):
        self.total = max(total, 1)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.1 and done < self.total:
            return
        self._last_draw = now
        elapsed = now - self.start
        # nothing done yet (a resumed sweep's first draw): no rate to estimate from
        eta = f"eta {elapsed / done * (self.total - done):.1f}s" if done else "eta -"
        filled = int(30 * done / self.total)
        bar = "#" * filled + "." * (30 - filled)
        line = f"\r[{bar}] {done}/{self.total} {self.unit}  {elapsed:.1f}s  {eta}  {note}"
        self.stream.write(line.ljust(100)[:120])
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
