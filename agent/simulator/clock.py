"""Simulated wall clock shared by every fake miner of one simulator run.

Simulated time runs ``speed`` times faster than the host's monotonic clock; ``speed == 0``
freezes it so tests and benchmarks move it only with :meth:`SimClock.advance`, which makes a
run fully deterministic for a given start and seed.
"""

from __future__ import annotations

import threading
import time

#: Start of simulated time for a frozen clock when none is given: a fixed epoch (2025-06-15
#: 00:00 UTC) so manual runs are reproducible; a running clock starts at the host's time.
DEFAULT_MANUAL_START = 1_749_945_600.0


class SimClock:
    """Simulated epoch seconds: ``start + elapsed_host_seconds * speed + advanced``."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed < 0:
            raise ValueError("clock speed must be >= 0")
        self.speed = float(speed)
        if start is None:
            start = DEFAULT_MANUAL_START if self.speed == 0 else time.time()
        self.start = float(start)
        self._t0 = time.monotonic()
        self._advanced = 0.0
        self._lock = threading.Lock()

    @property
    def manual(self) -> bool:
        """Whether time only moves through :meth:`advance`."""
        return self.speed == 0

    def now(self) -> float:
        """Return the current simulated epoch seconds."""
        running = (time.monotonic() - self._t0) * self.speed if self.speed else 0.0
        return self.start + running + self._advanced

    def advance(self, seconds: float) -> float:
        """Move simulated time forward by ``seconds`` (any mode) and return the new now()."""
        if seconds < 0:
            raise ValueError("simulated time never runs backwards")
        with self._lock:
            self._advanced += float(seconds)
        return self.now()

    def __repr__(self) -> str:
        return f"SimClock(speed={self.speed}, now={self.now():.1f})"
