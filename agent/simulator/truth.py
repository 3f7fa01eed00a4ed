"""Ground truth for benchmarks: what a simulated unit really does, outside any protocol.

Benchmarks compare the agent's choices with these answers; the agent itself must never
import this module (it reads hidden parameters no real miner exposes).
"""

from __future__ import annotations

import numpy as np

from agent.simulator.physics import OperatingPoint, board_thermals, chip_work, idle_point
from agent.simulator.unit import SimUnit, pick_highest_fitting

#: Power-limit grid step for the brute-force optimum, W. Finer than any firmware's
#: useful resolution (the tuner grid is 5 MHz ≈ 20–30 W).
POWER_STEP_W = 10.0
#: Clock grid for the brute-force optimum: 5 MHz × 0.025 V.
CLOCK_STEP_MHZ = 5.0
VOLTAGE_STEP_V = 0.025
#: Rows per vectorised chunk of the clock grid (bounds memory to ~chunk × chips × 8 B × 3).
CLOCK_CHUNK = 512
KNOBS = ("power_limit", "power_mode", "clock")
_FIRMWARE_KEYS = ("power_limit_w", "power_mode", "power_percent")


def merged_settings(unit: SimUnit, settings: dict) -> dict:
    """Overlay ``settings`` on the unit's current configuration, as the firmware would read it.

    A dict with ``freq_mhz`` and ``voltage_v`` and none of the power keys (or with
    ``clock_manual=True``) means a direct V/f setting; otherwise the firmware resolves the
    clock from power limit, mode and percent. ``power_limit_w=None`` removes the operator's
    limit (a Whatsminer then regulates to its stock limit, the profile's maximum).
    """
    base = unit.settings
    base["limit_active"] = unit.limit_active
    merged = dict(base, **settings)
    if "power_limit_w" in settings:
        merged["limit_active"] = settings["power_limit_w"] is not None
        if settings["power_limit_w"] is not None:
            p = unit.profile.power
            if not p.min_w <= settings["power_limit_w"] <= p.max_w:
                raise ValueError(f"power limit outside [{p.min_w}, {p.max_w}] W")
    manual = settings.get("clock_manual")
    if manual is None:
        if any(k in settings for k in _FIRMWARE_KEYS):
            manual = False
        elif "freq_mhz" in settings and "voltage_v" in settings:
            manual = True
        else:
            manual = base["clock_manual"]  # nothing about the clock asked: keep the unit's
    merged["clock_manual"] = bool(manual)
    return merged


def true_operating_point(unit: SimUnit, settings: dict, t: float | None = None) -> OperatingPoint:
    """Steady operating point the unit settles at for ``settings`` (now, or at ``t``).

    Includes the firmware's tuner and over-temperature protection and the unit's current
    faults and ambient; excludes ramps. Not hashing (sleep, off, over-temperature shutdown)
    gives the idle point.
    """
    t = unit.clock.now() if t is None else t
    freq, volt, hashing = unit.resolve(merged_settings(unit, settings), t)
    if not hashing:
        return idle_point(unit.params, unit.ambient_c(t), unit.faults().fans_ok)
    op, _ = unit.protected_point(freq, volt, t)
    if op is None:
        return idle_point(unit.params, unit.ambient_c(t), unit.faults().fans_ok)
    return op


def profit_usd_per_day(
    op: OperatingPoint, hashprice_usd_per_th_day: float, electricity_usd_per_kwh: float
) -> float:
    """Profit/day = TH/s × hashprice − kW × 24 h × price (true wall power)."""
    return op.hashrate_ths * hashprice_usd_per_th_day - op.power_w / 1000.0 * 24.0 * (
        electricity_usd_per_kwh
    )


def _feasible(unit: SimUnit, op: OperatingPoint) -> bool:
    """Whether a steady point respects the profile's thermal limits (idle always does)."""
    th = unit.profile.thermal
    if op.idle:
        return True
    return max(op.chip_temp_c) <= th.chip_temp_max_c and max(op.board_temp_c) <= th.board_temp_max_c


def true_optimum(
    unit: SimUnit,
    hashprice_usd_per_th_day: float,
    electricity_usd_per_kwh: float,
    knob: str = "power_limit",
    t: float | None = None,
) -> tuple[dict, float]:
    """Brute-force the most profitable feasible setting of one knob; (settings, profit/day).

    knob "power_limit" scans the profile's power envelope (firmware must offer a limit);
    "power_mode" tries every mode the firmware offers; "clock" scans f × V directly
    (feasible only where no protection would act: boards ≤ hot, chips ≤ chip max).
    """
    if knob not in KNOBS:
        raise ValueError(f"knob must be one of {KNOBS}")
    t = unit.clock.now() if t is None else t
    if knob == "power_limit":
        return _best_power_limit(unit, hashprice_usd_per_th_day, electricity_usd_per_kwh, t)
    if knob == "power_mode":
        best: tuple[dict, float] | None = None
        for mode in unit.knobs.power_modes:
            op = true_operating_point(unit, {"power_mode": mode}, t)
            if not _feasible(unit, op):
                continue
            val = profit_usd_per_day(op, hashprice_usd_per_th_day, electricity_usd_per_kwh)
            if best is None or val > best[1]:
                best = ({"power_mode": mode}, val)
        if best is None:
            raise ValueError(f"no feasible power mode for {unit.unit_id}")
        return best
    return _best_clock(unit, hashprice_usd_per_th_day, electricity_usd_per_kwh, t)


def _best_power_limit(unit: SimUnit, hp: float, price: float, t: float) -> tuple[dict, float]:
    if not unit.knobs.power_limit:
        raise ValueError(f"{unit.firmware} on {unit.profile.id} offers no power limit")
    p = unit.profile.power
    limits = np.arange(p.min_w, p.max_w + 1e-9, POWER_STEP_W)
    mode = unit.settings["power_mode"]
    if mode == "sleep":
        mode = "normal"
    mode = unit.active_mode(mode, t)
    pct = unit.settings["power_percent"]
    grid, volts, reported = unit.tuner_table(unit.tuner_cap(mode, True), t)
    picks = [pick_highest_fitting(reported, lim * pct / 100.0) for lim in limits]
    cache: dict[int, tuple[float, bool]] = {}
    best: tuple[dict, float] | None = None
    for lim, i in zip(limits, picks, strict=True):
        if i not in cache:
            op, _ = unit.protected_point(float(grid[i]), float(volts[i]), t)
            if op is None:
                cache[i] = (0.0, False)
            else:
                cache[i] = (profit_usd_per_day(op, hp, price), _feasible(unit, op))
        val, ok = cache[i]
        if ok and (best is None or val > best[1]):
            best = ({"power_limit_w": float(lim)}, val)
    if best is None:
        raise ValueError(f"no feasible power limit for {unit.unit_id}")
    return best


def _best_clock(unit: SimUnit, hp: float, price: float, t: float) -> tuple[dict, float]:
    c, th_prof = unit.profile.clock, unit.profile.thermal
    fs = np.arange(c.freq_mhz_min, c.freq_mhz_max + 1e-9, CLOCK_STEP_MHZ)
    vs = np.arange(c.voltage_v_min, c.voltage_v_max + 1e-9, VOLTAGE_STEP_V)
    ff, vv = (x.ravel() for x in np.meshgrid(fs, vs, indexing="ij"))
    amb = unit.ambient_c(t)
    faults = unit.faults()
    active = unit.board_active()
    alive = faults.alive_chips
    best_val, best_i = -np.inf, -1
    for lo in range(0, ff.size, CLOCK_CHUNK):
        f, v = ff[lo : lo + CLOCK_CHUNK], vv[lo : lo + CLOCK_CHUNK]
        th = board_thermals(unit.params, f, v, amb, active, np.asarray(faults.fans_ok))
        ok = (th.board_temp_c.max(axis=1) <= th_prof.board_temp_hot_c) & (
            th.chip_temp_c.max(axis=1) <= th_prof.chip_temp_max_c
        )
        good, _, _ = chip_work(unit.params, f, v, alive)
        val = good.sum(axis=1) * hp - th.power_w / 1000.0 * 24.0 * price
        val = np.where(ok, val, -np.inf)
        j = int(np.argmax(val))
        if val[j] > best_val:
            best_val, best_i = float(val[j]), lo + j
    if best_i < 0:
        raise ValueError(f"no feasible clock for {unit.unit_id}")
    return {"freq_mhz": float(ff[best_i]), "voltage_v": float(vv[best_i]), "clock_manual": True}, (
        best_val
    )
