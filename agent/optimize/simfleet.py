"""A small simulated fleet for ``optimize --sim`` and the benchmarks (in-process, no sockets).

The mix covers every firmware knob the optimiser handles: Whatsminer power limits (which
restart the miner), Braiins power targets, and stock Antminer work modes. Every third unit
sits in a hot aisle so the thermal constraints bind somewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.profiles import load_profiles

if TYPE_CHECKING:
    from agent.simulator.clock import SimClock
    from agent.simulator.unit import SimUnit

#: (profile id, firmware) in the order units are handed out.
FLEET_MIX: tuple[tuple[str, str], ...] = (
    ("m50", "whatsminer_v3"),
    ("s19kpro", "braiins"),
    ("m60s", "whatsminer_v3"),
    ("s19xp", "braiins"),
    ("m30s", "whatsminer_v2"),
    ("s21", "braiins"),
    ("s19jpro", "braiins"),
    ("s19pro", "braiins"),
    ("s19", "braiins"),
    ("s19jpro", "antminer"),
)

#: Every HOT_EVERY-th unit runs this much above its room's ambient (a hot aisle or a blocked
#: intake; the simulator's ``set_ambient_offset`` fault). Engineering choice for the test mix.
HOT_EVERY = 3
HOT_OFFSET_C = 6.0


@dataclass(frozen=True, slots=True)
class SimUnitSpec:
    """How to (re)build one simulated unit identically."""

    unit_id: str
    profile_id: str
    firmware: str
    seed: int
    ambient_offset_c: float = 0.0


def fleet_specs(n: int, seed: int = 1) -> list[SimUnitSpec]:
    """``n`` unit specs cycling through :data:`FLEET_MIX` with distinct seeds."""
    out = []
    for i in range(n):
        pid, fw = FLEET_MIX[i % len(FLEET_MIX)]
        hot = HOT_OFFSET_C if i % HOT_EVERY == HOT_EVERY - 1 else 0.0
        out.append(SimUnitSpec(f"sim-{i:03d}-{pid}", pid, fw, seed * 10_007 + i, hot))
    return out


def make_unit(spec: SimUnitSpec, clock: SimClock) -> SimUnit:
    """Build the simulated unit a spec describes on ``clock``."""
    from agent.simulator.unit import SimUnit  # the daemon never needs the simulator

    unit = SimUnit(spec.unit_id, load_profiles()[spec.profile_id], spec.firmware, spec.seed, clock)
    if spec.ambient_offset_c:
        unit.set_ambient_offset(spec.ambient_offset_c)
    return unit
