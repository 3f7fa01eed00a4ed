"""Hidden per-unit parameter types, their population spreads, and the firmware V/f line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from agent.profiles import HardwareProfile

# --- silicon lottery and per-unit spreads ---------------------------------------------------
#: Per-chip hashrate spread (fraction of expected): ePIC S19 XP per-chip data, σ ≈ 16 %
#: (../shared/fixtures/asic-rs/epic/v1/chip_hashrates.json; landscape.md §8b).
CHIP_QUALITY_SIGMA = 0.16
#: Clip of per-chip quality: the same fixture ranges 63–155 % of expected.
CHIP_QUALITY_MIN, CHIP_QUALITY_MAX = 0.60, 1.55
#: Per-board hashrate bin spread. Engineering assumption: S19 Pro nameplate 110 TH ±3 %
#: (landscape.md §8a) read as ±2σ.
BOARD_BIN_SIGMA = 0.015
#: Per-unit spread of dynamic power. Engineering assumption: S19 Pro nameplate W ±5 % as ±~2σ.
UNIT_POWER_SIGMA = 0.025
#: Per-unit log-normal spread of leakage. Engineering assumption (leakage varies more than
#: switching power between dies).
UNIT_LEAK_SIGMA = 0.15
#: Per-fan full-speed rpm spread between fans of one unit (S19 Pro fixture fans read
#: 5040–6000 rpm at one PWM). Engineering assumption for σ.
FAN_RPM_SIGMA = 0.03
#: Per-unit thermal-resistance spread per board. Engineering assumption.
R_TH_SIGMA = 0.05

# --- voltage / stability -------------------------------------------------------------------
#: Mean and spread of how far a unit's median chip's minimum stable voltage sits below the
#: firmware's default V/f curve. Engineering assumption: firmware tables keep margin, and
#: tuners win by stepping voltage down until weak chips fail (landscape.md §8b, Hiveon).
VMIN_MARGIN_MEAN_V, VMIN_MARGIN_SIGMA_V = 0.20, 0.05

# --- firmware power estimate and ambient -------------------------------------------------------
#: Firmware/nameplate power differs from real draw by 5–20 % (Foreman, landscape.md §2).
POWER_BIAS_MIN, POWER_BIAS_MAX = 0.05, 0.20
#: Room temperature baseline across a farm (mean, σ) and day/night swing (min, max), °C.
#: Engineering assumption (no telemetry time series exist in ../shared/data).
AMBIENT_BASE_MEAN_C, AMBIENT_BASE_SIGMA_C = 24.0, 2.0
AMBIENT_SWING_MIN_C, AMBIENT_SWING_MAX_C = 3.0, 8.0
#: Hour (UTC) of the daily ambient peak, mean and σ. Engineering assumption (afternoon).
AMBIENT_PEAK_HOUR, AMBIENT_PEAK_SIGMA_H = 15.0, 1.0
#: Per-model slope of the firmware V/f line where a real firmware publishes one, V/MHz.
#: s19xp: ePIC "Voltage Estimator" Slope 0.0041 (epic/v1/capabilities.json; landscape.md
#: §8b). Other models use the profile's default→max line (S19k Pro: 0.006, the LuxOS table).
VF_SLOPE_V_PER_MHZ = {"s19xp": 0.0041}


class ModelCoeffs(NamedTuple):
    """Per-model physics fitted once from the profile (and a real table where one exists)."""

    k: float  #: W per (V²·MHz), whole unit
    a: float  #: W per MHz, whole unit (V-independent switching, e.g. I/O and clock tree)
    leak_w: float  #: leakage at default voltage and reference chip temperature, whole unit
    t_ref_chip_c: float  #: chip temperature at which ``leak_w`` holds
    r_th: float  #: °C per W per board at 100 % airflow (hottest board sensor over ambient)
    chip_over_board_c: float
    p_board_ref_w: float  #: per-board heat at rated power (scales chip-over-board)
    fan_rpm_max: float
    fan_w_max: float
    fit_max_rel_err: float  #: worst relative error of the fit on its calibration points


@dataclass(frozen=True, eq=False)
class UnitParams:
    """Hidden, seeded per-unit physics. Never visible through any protocol."""

    profile_id: str
    seed: int
    boards: int
    chips_per_board: int
    hashes_per_clock: float
    #: float32 (boards, chips) per-chip hashrate multipliers, read-only
    chip_quality: np.ndarray
    board_bin: tuple[float, ...]
    #: the median chip's minimum stable voltage sits this far below the firmware V/f curve
    vmin_margin_v: float
    k_w: float
    a_w: float
    leak_w: float
    r_th: tuple[float, ...]
    fan_rpm_max: tuple[float, ...]
    #: firmware power estimate = true · (1 + power_bias)
    power_bias: float
    ambient_base_c: float
    ambient_swing_c: float
    ambient_peak_hour: float
    coeffs: ModelCoeffs
    # copied from the profile so physics never needs it again
    f_default: float
    v_default: float
    v_min: float
    v_max: float
    vf_slope: float
    board_target_c: float

    @property
    def fans(self) -> int:
        """Number of fans."""
        return len(self.fan_rpm_max)

    def ambient_at(self, t: float, offset_c: float = 0.0) -> float:
        """Room temperature at simulated epoch ``t``: baseline + day/night swing + offset."""
        hour = (t % 86400.0) / 3600.0
        swing = self.ambient_swing_c * math.cos(
            2 * math.pi * (hour - self.ambient_peak_hour) / 24.0
        )
        return self.ambient_base_c + swing + offset_c


def firmware_voltage(profile: HardwareProfile, freq_mhz: float | np.ndarray) -> np.ndarray:
    """Return the firmware's default ("safe") board voltage for a clock (the profile V/f line).

    Linear through (f_default, V_default) with the slope to (f_max, V_max), clamped to the
    profile's voltage range — the LuxOS S19k Pro shape (11.88 V floor to ~315 MHz, then
    +0.006 V/MHz; landscape.md §8b).
    """
    c = profile.clock
    v = c.voltage_v_default + vf_slope(profile) * (
        np.asarray(freq_mhz, dtype=float) - c.freq_mhz_default
    )
    return np.clip(v, c.voltage_v_min, c.voltage_v_max)


def vf_slope(profile: HardwareProfile) -> float:
    """Slope of the firmware V/f line, V/MHz (published value, else default→max line)."""
    c = profile.clock
    if profile.id in VF_SLOPE_V_PER_MHZ:
        return VF_SLOPE_V_PER_MHZ[profile.id]
    return (c.voltage_v_max - c.voltage_v_default) / (c.freq_mhz_max - c.freq_mhz_default)


def build_params(
    profile: HardwareProfile,
    coeffs: ModelCoeffs,
    *,
    seed: int,
    chip_quality: np.ndarray,
    board_bin: tuple[float, ...],
    vmin_margin_v: float,
    power_scale: float,
    leak_scale: float,
    r_scale: tuple[float, ...],
    fan_scale: tuple[float, ...],
    power_bias: float,
    ambient: tuple[float, float, float],
) -> UnitParams:
    """Assemble a unit's parameters from the model coefficients and its per-unit draws."""
    clk = profile.clock
    return UnitParams(
        profile_id=profile.id,
        seed=seed,
        boards=profile.hardware.boards,
        chips_per_board=profile.hardware.chips_per_board,
        hashes_per_clock=_hashes_per_clock(profile),
        chip_quality=chip_quality,
        board_bin=board_bin,
        vmin_margin_v=vmin_margin_v,
        k_w=coeffs.k * power_scale,
        a_w=coeffs.a * power_scale,
        leak_w=coeffs.leak_w * leak_scale,
        r_th=tuple(coeffs.r_th * s for s in r_scale),
        fan_rpm_max=tuple(coeffs.fan_rpm_max * s for s in fan_scale),
        power_bias=power_bias,
        ambient_base_c=ambient[0],
        ambient_swing_c=ambient[1],
        ambient_peak_hour=ambient[2],
        coeffs=coeffs,
        f_default=clk.freq_mhz_default,
        v_default=clk.voltage_v_default,
        v_min=clk.voltage_v_min,
        v_max=clk.voltage_v_max,
        vf_slope=vf_slope(profile),
        board_target_c=profile.thermal.board_temp_target_c,
    )


def _hashes_per_clock(profile: HardwareProfile) -> float:
    """Cores per chip from the profile, else derived so the default clock gives rated TH/s."""
    hw = profile.hardware
    if hw.hashes_per_clock is not None:
        return hw.hashes_per_clock
    return profile.rated.hashrate_ths / (
        profile.expected_chips * profile.clock.freq_mhz_default * 1e-6
    )
