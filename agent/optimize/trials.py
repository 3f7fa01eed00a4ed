"""Trials loop on the simulator: propose → apply to the SimUnit → settle → observe → tell.

Used by benchmarks and tests only; it drives a :class:`agent.simulator.unit.SimUnit`
directly on its simulated clock (no sockets, no approval — nothing here reaches a real
miner). The daemon learns from polled snapshots instead (:func:`observation_from_snapshot`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agent.errors import ModelError, UnsafeSettingsError
from agent.optimize.optimizer import Observation
from agent.optimize.space import SearchSpace
from agent.snapshot import MinerSnapshot, Settings

if TYPE_CHECKING:
    from agent.simulator.unit import SimUnit, UnitReading

#: Wait after a change that does not restart the miner, s: Braiins retunes and stock
#: Antminer mode switches settle within about a minute (10–20 s switch plus ramp,
#: landscape.md §2); two minutes leaves the fans time to find their new speed.
SETTLE_NO_RESTART_S = 120.0

#: Extra wait after a restart's documented duration (``restart_s`` in the profile) so the
#: reading is taken at full hashrate rather than on the last metre of the ramp, s.
SETTLE_AFTER_RESTART_S = 60.0

#: Measurement window after settling and its sampling step, s. Five minutes is the
#: aggregation window of MOS and Foreman (landscape.md §2, "Poll and refresh cadences");
#: sixty 5-second samples cut the 5 s reading's noise (≈1.5 %) by √60 to ≈0.2 %.
MEASURE_WINDOW_S = 300.0
MEASURE_STEP_S = 5.0

#: Difficulty-1 work per TH (2^32 hashes per diff-1 share), for hardware-error shares.
DIFF1_PER_TH = 1e12 / 2.0**32

PowerSource = Literal["metered", "reported"]


class Asker(Protocol):
    """Anything that proposes settings and learns from observations."""

    def ask(self) -> Settings:
        """Next settings to try."""
        ...

    def tell(self, obs: Observation) -> None:
        """Learn from one trial."""
        ...


@dataclass(slots=True)
class TrialRecord:
    """One trial as run: settings, what was observed, and the truth for scoring."""

    index: int
    settings: Settings
    obs: Observation
    violated: bool
    t_end: float


@dataclass(slots=True)
class TrialLog:
    """Every trial of one unit."""

    miner_id: str
    records: list[TrialRecord] = field(default_factory=list)

    @property
    def violations(self) -> int:
        """Trials during which a thermal or hardware-error limit was crossed."""
        return sum(1 for r in self.records if r.violated)


def apply_to_unit(unit: SimUnit, settings: Settings) -> None:
    """Send settings to a simulated unit the way a driver would (no approval here)."""
    fields = settings.changed_fields()
    if fields.get("mining") is False:
        unit.set_mining(False)
        return
    if fields.get("mining") is True:
        unit.set_mining(True)
    if "power_mode" in fields:
        unit.set_power_mode(fields["power_mode"])
    if "power_limit_w" in fields:
        unit.set_power_limit(fields["power_limit_w"])
    if "power_percent" in fields:
        unit.set_power_percent(fields["power_percent"])
    if "freq_mhz" in fields:
        if "voltage_v" not in fields:
            raise UnsafeSettingsError("a clock setting needs both freq_mhz and voltage_v")
        unit.set_clock(fields["freq_mhz"], fields["voltage_v"])


def settle_seconds(space: SearchSpace) -> float:
    """How long to wait after applying a setting from ``space`` before measuring."""
    if space.restart_s > 0:
        return space.restart_s + SETTLE_AFTER_RESTART_S
    return SETTLE_NO_RESTART_S


def is_violation(reading: UnitReading, space: SearchSpace) -> bool:
    """Whether a reading crossed a thermal limit (or made the firmware protect itself)."""
    th = space.profile.thermal
    if reading.throttled:
        return True
    for b in reading.boards:
        if b.alive and (b.board_temp_c > th.board_temp_hot_c or b.chip_temp_c > th.chip_temp_max_c):
            return True
    return False


def measure(
    unit: SimUnit, settings: Settings, power_source: PowerSource = "metered"
) -> tuple[Observation, list[UnitReading]]:
    """Average readings over the measurement window starting now (advances the clock)."""
    readings: list[UnitReading] = []
    steps = max(1, int(MEASURE_WINDOW_S / MEASURE_STEP_S))
    for i in range(steps):
        if i:
            unit.clock.advance(MEASURE_STEP_S)
        readings.append(unit.reading())
    first, last = readings[0], readings[-1]
    hashrate = statistics.fmean(r.hashrate_5s_ths for r in readings)
    power = statistics.fmean(
        r.power_true_w if power_source == "metered" else r.power_reported_w for r in readings
    )
    alive = [b for b in last.boards if b.alive]
    work = hashrate * DIFF1_PER_TH * max(last.ts - first.ts, 1.0)
    errs = last.hw_errors - first.hw_errors
    share: float | None = (errs / work) if work > 0 and errs >= 0 else None
    if work <= 0 and any(r.is_mining for r in readings):
        share = 1.0  # powered and "mining" but no valid work at all: every hash failed
    obs = Observation(
        settings=settings,
        hashrate_ths=hashrate,
        power_w=power,
        chip_temp_c=max((b.chip_temp_c for b in alive), default=None),
        board_temp_c=max((b.board_temp_c for b in alive), default=None),
        env_temp_c=last.env_temp_c,
        hw_err_share=share,
        throttled=any(r.throttled for r in readings),
    )
    return obs, readings


def run_trials(
    unit: SimUnit,
    space: SearchSpace,
    asker: Asker,
    n: int,
    *,
    power_source: PowerSource = "metered",
    on_trial: Callable[[TrialRecord], Any] | None = None,
) -> TrialLog:
    """Run ``n`` trials on ``unit`` and return what happened (the asker learns as it goes)."""
    log = TrialLog(unit.unit_id)
    for i in range(n):
        settings = space.check(asker.ask())
        apply_to_unit(unit, settings)
        unit.clock.advance(settle_seconds(space))
        obs, readings = measure(unit, settings, power_source)
        violated = any(is_violation(r, space) for r in readings)
        asker.tell(obs)
        rec = TrialRecord(i, settings, obs, violated, unit.clock.now())
        log.records.append(rec)
        if on_trial is not None:
            on_trial(rec)
    return log


def observation_from_snapshot(settings: Settings, snap: MinerSnapshot) -> Observation:
    """Build an observation from a polled snapshot (the daemon's path; power as reported)."""
    if snap.hashrate_ths is None or snap.power_w is None:
        raise ModelError(f"{snap.miner_id}: snapshot lacks hashrate or power")
    return Observation(
        settings=settings,
        hashrate_ths=snap.hashrate_avg_ths or snap.hashrate_ths,
        power_w=snap.power_w,
        chip_temp_c=snap.max_chip_temp_c,
        board_temp_c=snap.max_board_temp_c,
        env_temp_c=snap.env_temp_c,
        hw_err_share=None,
        throttled=False,
    )
