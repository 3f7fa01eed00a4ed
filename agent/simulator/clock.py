"""Simulated time: the shared clock, and closed-form integrals over piecewise time segments.

Simulated time runs ``speed`` times faster than the host's monotonic clock; ``speed == 0``
freezes it so tests and benchmarks move it only with :meth:`SimClock.advance`, which makes a
run fully deterministic for a given start and seed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Ramp:
    """Hashrate multiplier: 0 until ``t_up``, then linear from ``frac0`` to 1 over ``ramp_s``."""

    t_up: float
    ramp_s: float
    frac0: float

    def at(self, t: float) -> float:
        """Multiplier at ``t``."""
        if t < self.t_up:
            return 0.0
        if self.ramp_s <= 0 or t >= self.t_up + self.ramp_s:
            return 1.0
        return self.frac0 + (1.0 - self.frac0) * (t - self.t_up) / self.ramp_s

    def integral(self, t: float) -> float:
        """∫ multiplier from -∞ to t (closed form)."""
        x = t - self.t_up
        if x <= 0:
            return 0.0
        d = self.ramp_s
        if d <= 0:
            return x
        if x <= d:
            return self.frac0 * x + (1.0 - self.frac0) * x * x / (2 * d)
        return self.frac0 * d + (1.0 - self.frac0) * d / 2 + (x - d)


@dataclass(frozen=True)
class Segment:
    """Constant steady rates between two state changes, modulated by a ramp."""

    t0: float
    ramp: Ramp
    board_ths: tuple[float, ...]
    board_hw: tuple[float, ...]

    def hash_s(self, a: float, b: float) -> float:
        """Multiplier-seconds over [a, b] ∩ [t0, ∞)."""
        a = max(a, self.t0)
        return max(0.0, self.ramp.integral(b) - self.ramp.integral(a)) if b > a else 0.0


def gaussian_noise(seed: int, tick: int, stream: int) -> float:
    """Deterministic standard normal for (seed, tick, stream) via splitmix64 + Box-Muller."""

    def mix(z: int) -> int:
        z = (z + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    h = mix(mix(mix(seed & 0xFFFFFFFFFFFFFFFF) ^ tick) ^ stream)
    u1 = ((h >> 11) + 1) / (2.0**53 + 1)
    u2 = (mix(h) >> 11) / 2.0**53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)
