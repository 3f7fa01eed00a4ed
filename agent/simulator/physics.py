"""Hidden physics of a simulated miner: per-chip work and the steady-state operating point.

Model (landscape.md §8b):
- hashrate is linear in clock: TH/s = Σ_chips hashes_per_clock · f · quality · (1 - error share);
- a chip whose board voltage is below its own minimum stable voltage makes hardware errors and
  loses that share of its work;
- wall power = k·V²·f + a·f (dynamic, fitted per model) + leakage(V, T) + fans + control board;
- each board's hottest sensor sits at ambient + P_board·R/airflow^0.8, and a fan loop picks the
  airflow that holds the profile's board target temperature (fans saturate at 100 %).

Everything is computed on request from (params, settings, ambient); nothing ticks. Per unit the
only arrays are a float32 chip-quality matrix (≤ ~2 KB), so 5,000 units stay in a few MB.

The pieces live beside this module and are re-exported here: parameter types, spreads and the
V/f line in :mod:`agent.simulator.params`, board power and thermals in
:mod:`agent.simulator.thermals`, the per-model fit and per-unit draw in
:mod:`agent.simulator.calibration`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.simulator.calibration import (
    CALIBRATION_POINTS,
    CHIP_OVER_BOARD_C,
    FAN_AT_RATED,
    FAN_RPM_MAX,
    FAN_W_MAX,
    LEAK_FRACTION,
    T_REF_AMBIENT_C,
    draw_params,
    mean_unit_params,
    model_coeffs,
)
from agent.simulator.params import (
    AMBIENT_BASE_MEAN_C,
    AMBIENT_BASE_SIGMA_C,
    AMBIENT_PEAK_HOUR,
    AMBIENT_PEAK_SIGMA_H,
    AMBIENT_SWING_MAX_C,
    AMBIENT_SWING_MIN_C,
    BOARD_BIN_SIGMA,
    CHIP_QUALITY_MAX,
    CHIP_QUALITY_MIN,
    CHIP_QUALITY_SIGMA,
    FAN_RPM_SIGMA,
    POWER_BIAS_MAX,
    POWER_BIAS_MIN,
    R_TH_SIGMA,
    UNIT_LEAK_SIGMA,
    UNIT_POWER_SIGMA,
    VF_SLOPE_V_PER_MHZ,
    VMIN_MARGIN_MEAN_V,
    VMIN_MARGIN_SIGMA_V,
    ModelCoeffs,
    UnitParams,
    firmware_voltage,
    vf_slope,
)
from agent.simulator.thermals import (
    AIRFLOW_EXPONENT,
    CONTROL_W,
    FAN_MIN_FRACTION,
    INLET_RISE_FRACTION,
    LEAK_DOUBLING_C,
    NATURAL_AIRFLOW,
    THERMAL_ITERATIONS,
    BoardThermals,
    board_thermals,
)

__all__ = [
    "AIRFLOW_EXPONENT",
    "AMBIENT_BASE_MEAN_C",
    "AMBIENT_BASE_SIGMA_C",
    "AMBIENT_PEAK_HOUR",
    "AMBIENT_PEAK_SIGMA_H",
    "AMBIENT_SWING_MAX_C",
    "AMBIENT_SWING_MIN_C",
    "BASE_HW_ERROR_RATE",
    "BOARD_BIN_SIGMA",
    "CALIBRATION_POINTS",
    "CHIP_OK_MAX_ERROR",
    "CHIP_OVER_BOARD_C",
    "CHIP_QUALITY_MAX",
    "CHIP_QUALITY_MIN",
    "CHIP_QUALITY_SIGMA",
    "CHIP_V_PER_SIGMA",
    "CONTROL_W",
    "DV_FAIL_V",
    "FAN_AT_RATED",
    "FAN_MIN_FRACTION",
    "FAN_RPM_MAX",
    "FAN_RPM_SIGMA",
    "FAN_W_MAX",
    "INLET_RISE_FRACTION",
    "LEAK_DOUBLING_C",
    "LEAK_FRACTION",
    "NATURAL_AIRFLOW",
    "POWER_BIAS_MAX",
    "POWER_BIAS_MIN",
    "R_TH_SIGMA",
    "THERMAL_ITERATIONS",
    "T_REF_AMBIENT_C",
    "UNIT_LEAK_SIGMA",
    "UNIT_POWER_SIGMA",
    "VF_SLOPE_V_PER_MHZ",
    "VMIN_MARGIN_MEAN_V",
    "VMIN_MARGIN_SIGMA_V",
    "BoardThermals",
    "ModelCoeffs",
    "OperatingPoint",
    "UnitParams",
    "board_thermals",
    "chip_work",
    "draw_params",
    "firmware_voltage",
    "idle_point",
    "mean_unit_params",
    "model_coeffs",
    "steady_state",
    "vf_slope",
]

#: Extra voltage a chip needs per σ of weakness (weak = low quality). Engineering assumption:
#: the weakest of ~330 chips (≈2.5σ) then needs ~0.125 V more, about one LuxOS 0.15 V step.
CHIP_V_PER_SIGMA = 0.05
#: Voltage deficit over which a chip goes from first hardware errors to no valid work.
#: Engineering assumption: one LuxOS profile step (0.15 V, landscape.md §8c).
DV_FAIL_V = 0.15
#: A chip counts as "ok" (``o`` in chain_acs) while below this error share.
CHIP_OK_MAX_ERROR = 0.5
#: Baseline hardware-error share of diff-1 work: S19 Pro fixture, 562 HW errors over
#: 50474 s at 111.8 TH/s ≈ 1.31e9 diff-1 shares (../shared/fixtures/asic-rs/antminer/v2020).
BASE_HW_ERROR_RATE = 4.3e-7


@dataclass(frozen=True, eq=False)
class OperatingPoint:
    """Steady state of one unit at one (f, V, ambient, health)."""

    freq_mhz: float
    voltage_v: float
    ambient_c: float
    hashrate_ths: float
    power_w: float
    power_reported_w: float
    hw_error_rate: float
    fan_fraction: float
    fans_rpm: tuple[int, ...]
    board_hashrate_ths: tuple[float, ...]
    board_power_w: tuple[float, ...]
    board_temp_c: tuple[float, ...]
    chip_temp_c: tuple[float, ...]
    inlet_temp_c: tuple[float, ...]
    outlet_temp_c: tuple[float, ...]
    board_chips_ok: tuple[int, ...]
    board_alive: tuple[bool, ...]
    #: bool (boards, chips): chip alive and below CHIP_OK_MAX_ERROR error share
    chip_ok: np.ndarray
    board_hw_error_rate: tuple[float, ...]
    #: firmware over-temperature protection lowered the clock to reach this point
    throttled: bool = False
    #: not hashing (sleep, mining off, over-temperature shutdown): only idle draw
    idle: bool = False

    @property
    def j_per_th(self) -> float | None:
        """True efficiency, or None when not hashing."""
        return self.power_w / self.hashrate_ths if self.hashrate_ths > 0 else None


def chip_work(
    params: UnitParams,
    freq_mhz: np.ndarray | float,
    voltage_v: np.ndarray | float,
    alive: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-board (good, ideal) TH/s, shape (n, B), and per-chip error share (n, B, C).

    A chip needs ``V_line(f) - margin + CHIP_V_PER_SIGMA·weakness`` volts, where V_line is the
    firmware V/f line left unclamped (the physics has no floor) and weakness is how many σ
    the chip's quality sits below 1. Below that it makes errors, linearly to all-bad over
    DV_FAIL_V.
    """
    f = np.atleast_1d(np.asarray(freq_mhz, dtype=float))[:, None, None]
    v = np.atleast_1d(np.asarray(voltage_v, dtype=float))[:, None, None]
    q = params.chip_quality
    v_line = params.v_default + params.vf_slope * (f - params.f_default)
    v_req = v_line - params.vmin_margin_v + CHIP_V_PER_SIGMA * ((1.0 - q) / CHIP_QUALITY_SIGMA)
    err = np.clip((v_req - v) / DV_FAIL_V, 0.0, 1.0)
    per_clock = q * np.asarray(params.board_bin)[:, None]
    if alive is not None:
        per_clock = per_clock * alive
    ideal = params.hashes_per_clock * 1e-6 * f * per_clock
    good = ideal * (1.0 - err)
    return good.sum(axis=2), ideal.sum(axis=2), err


def steady_state(
    params: UnitParams,
    freq_mhz: float,
    voltage_v: float,
    ambient_c: float,
    healthy_boards: tuple[bool, ...] | None = None,
    dead_chips: np.ndarray | None = None,
    fans_ok: tuple[bool, ...] | None = None,
) -> OperatingPoint:
    """Steady operating point at a clock and board voltage.

    ``healthy_boards`` marks boards that are present (a lost board draws and hashes nothing);
    ``dead_chips`` is a bool (boards, chips) mask of chips that no longer work at all.
    """
    nb, nc = params.boards, params.chips_per_board
    alive_b = (
        np.ones(nb, dtype=bool)
        if healthy_boards is None
        else np.asarray(healthy_boards, dtype=bool)
    )
    alive = np.repeat(alive_b[:, None], nc, axis=1)
    if dead_chips is not None:
        alive &= ~np.asarray(dead_chips, dtype=bool)
    active = alive.mean(axis=1)
    th = board_thermals(
        params,
        freq_mhz,
        voltage_v,
        ambient_c,
        active,
        None if fans_ok is None else np.asarray(fans_ok),
    )

    good_b, ideal_b, err = chip_work(params, freq_mhz, voltage_v, alive)
    good_b, ideal_b, err = good_b[0], ideal_b[0], err[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        hw_b = np.where(ideal_b > 0, 1.0 - good_b / ideal_b, 0.0) + BASE_HW_ERROR_RATE
    total_ideal = ideal_b.sum()
    hw = (1.0 - good_b.sum() / total_ideal + BASE_HW_ERROR_RATE) if total_ideal > 0 else 0.0
    chip_ok = alive & (err < CHIP_OK_MAX_ERROR)
    ok = np.ones(params.fans, dtype=bool) if fans_ok is None else np.asarray(fans_ok, dtype=bool)
    u = float(th.fan_fraction[0])
    rpm = tuple(round(u * m) if o else 0 for m, o in zip(params.fan_rpm_max, ok, strict=True))
    power = float(th.power_w[0])
    return OperatingPoint(
        freq_mhz=float(freq_mhz),
        voltage_v=float(voltage_v),
        ambient_c=float(ambient_c),
        hashrate_ths=float(good_b.sum()),
        power_w=power,
        power_reported_w=power * (1.0 + params.power_bias),
        hw_error_rate=float(hw),
        fan_fraction=u,
        fans_rpm=rpm,
        board_hashrate_ths=tuple(float(x) for x in good_b),
        board_power_w=tuple(float(x) for x in th.board_power_w[0]),
        board_temp_c=tuple(float(x) for x in th.board_temp_c[0]),
        chip_temp_c=tuple(float(x) for x in th.chip_temp_c[0]),
        inlet_temp_c=tuple(float(x) for x in th.inlet_temp_c[0]),
        outlet_temp_c=tuple(float(x) for x in th.board_temp_c[0]),
        board_chips_ok=tuple(int(x) for x in chip_ok.sum(axis=1)),
        board_alive=tuple(bool(x) for x in alive_b),
        chip_ok=chip_ok,
        board_hw_error_rate=tuple(float(x) for x in hw_b),
    )


def idle_point(
    params: UnitParams, ambient_c: float, fans_ok: tuple[bool, ...] | None = None
) -> OperatingPoint:
    """Return the draw of a unit that is powered but not hashing (fans at minimum)."""
    nb, nf = params.boards, params.fans
    ok = (True,) * nf if fans_ok is None else tuple(bool(x) for x in fans_ok)
    fan_w = sum(ok) * params.coeffs.fan_w_max * FAN_MIN_FRACTION**3
    power = CONTROL_W + fan_w
    amb = (float(ambient_c),) * nb
    return OperatingPoint(
        freq_mhz=0.0,
        voltage_v=0.0,
        ambient_c=float(ambient_c),
        hashrate_ths=0.0,
        power_w=power,
        power_reported_w=power * (1.0 + params.power_bias),
        hw_error_rate=0.0,
        fan_fraction=FAN_MIN_FRACTION,
        fans_rpm=tuple(
            round(FAN_MIN_FRACTION * m) if o else 0
            for m, o in zip(params.fan_rpm_max, ok, strict=True)
        ),
        board_hashrate_ths=(0.0,) * nb,
        board_power_w=(0.0,) * nb,
        board_temp_c=amb,
        chip_temp_c=amb,
        inlet_temp_c=amb,
        outlet_temp_c=amb,
        board_chips_ok=(0,) * nb,
        board_alive=(True,) * nb,
        chip_ok=np.zeros((nb, params.chips_per_board), dtype=bool),
        board_hw_error_rate=(0.0,) * nb,
        idle=True,
    )
