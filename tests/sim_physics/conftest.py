"""Fixtures for the simulator physics tests: shipped profiles, a frozen clock, unit factory."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.profiles import HardwareProfile, load_profiles
from agent.simulator.clock import SimClock
from agent.simulator.unit import SimUnit

#: Ids the simulator CLI's --mix uses; every one must ship.
EXPECTED_IDS = ("s19", "s19pro", "s19jpro", "s19kpro", "s19xp", "s21", "m30s", "m50", "m60s")
#: A frozen clock start at local noon-ish UTC (2025-06-15 12:00), so ambient is mid-swing.
NOON = 1_749_988_800.0


@pytest.fixture(scope="session")
def profiles() -> dict[str, HardwareProfile]:
    """All shipped hardware profiles by id."""
    return load_profiles()


@pytest.fixture
def clock() -> SimClock:
    """A frozen simulated clock that only moves through advance()."""
    return SimClock(speed=0, start=NOON)


@pytest.fixture
def make_unit(profiles, clock) -> Callable[..., SimUnit]:
    """Factory: make_unit("m60s", "whatsminer_v3", seed=1)."""

    def make(pid: str, firmware: str | None = None, seed: int = 1) -> SimUnit:
        prof = profiles[pid]
        fw = firmware or ("antminer" if prof.make == "antminer" else "whatsminer_v3")
        return SimUnit(f"{pid}-{seed}", prof, fw, seed, clock)

    return make
