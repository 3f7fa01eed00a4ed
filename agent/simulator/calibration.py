"""Per-model coefficients fitted to real tuning tables, and units made from them (mean or drawn)."""

from __future__ import annotations

import json
import zlib

import numpy as np

from agent.profiles import HardwareProfile
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
    VMIN_MARGIN_MEAN_V,
    VMIN_MARGIN_SIGMA_V,
    ModelCoeffs,
    UnitParams,
    build_params,
)
from agent.simulator.thermals import AIRFLOW_EXPONENT, board_thermals

#: Leakage share of wall power at the default point and reference temperature. Engineering
#: assumption: Braiins/YDminer show power rising with temperature at fixed V/f but the
#: slopes are only in images (landscape.md §8b).
LEAK_FRACTION = 0.06
#: Ambient at which models are calibrated and designed, °C. Engineering assumption.
T_REF_AMBIENT_C = 25.0
#: Fan fraction that holds the board target at rated power and reference ambient.
#: Engineering assumption; the S19 Pro fixture runs fans at 82–98 % of 6150 rpm and the
#: M60S fixture at ~74 % of ~7250 rpm (antminer/v2020/stats.json, whatsminer/v3).
FAN_AT_RATED = 0.8
#: Full-speed rpm per make: Antminer S19 Pro fan 6150 rpm (landscape.md §8a); MicroBT fans
#: 7,000–7,500 rpm (landscape.md §8a, MicroBT after-sales).
FAN_RPM_MAX = {"antminer": 6150.0, "whatsminer": 7250.0}
#: Electrical power of one fan at 100 %, W: Antminer fan 12 V × 1.65 A (landscape.md §8a);
#: MicroBT fans up to 108 W each (landscape.md §8a).
FAN_W_MAX = {"antminer": 19.8, "whatsminer": 108.0}
#: Chip temperature above the hottest board sensor at rated per-board power, °C.
#: Antminer: "other firmwares estimate chip as board + ~15 °C" (landscape.md §2/§8b).
#: m60s: fixture chip-temp-avg 75.5 vs boards 40.1–41.5 (whatsminer/v3) → 34.4.
#: m30s: M3x-era fixture chip avg 84.1 vs boards ~70.3 (whatsminer/v1) → 13.6.
#: m50: engineering assumption between the two Whatsminer fixtures.
CHIP_OVER_BOARD_C = {"antminer": 15.0, "m30s": 13.6, "m50": 25.0, "m60s": 34.4}

#: Real tuning tables the per-model power coefficients are fitted to, as (MHz, V, W):
#: - s19kpro: LuxOS profiles of a real S19k Pro
#:   (../shared/data/asic_tuning_luxos_s19kpro_profiles.csv)
#: - s19xp: ePIC tune presets of a real S19 XP
#:   (../shared/fixtures/asic-rs/epic/v1/capabilities.json)
#: Firmware estimates, not wall measurements (landscape.md §9). tests/sim_physics reads the
#: real files and checks the simulator against them.
CALIBRATION_POINTS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "s19kpro": (
        (190, 11.88, 784),
        (215, 11.88, 879),
        (240, 11.88, 978),
        (265, 11.88, 1080),
        (290, 11.88, 1188),
        (315, 11.88, 1299),
        (340, 12.0, 1414),
        (365, 12.15, 1533),
        (390, 12.3, 1657),
        (415, 12.45, 1785),
        (440, 12.6, 1916),
        (465, 12.75, 2052),
        (490, 12.9, 2192),
        (515, 13.05, 2336),
        (540, 13.2, 2485),
        (565, 13.35, 2637),
        (590, 13.5, 2794),
        (615, 13.65, 2954),
        (640, 13.8, 3119),
        (665, 13.95, 3288),
        (690, 14.1, 3461),
        (715, 14.25, 3638),
        (740, 14.4, 3820),
        (765, 14.55, 4005),
        (790, 14.7, 4195),
    ),
    "s19xp": (
        (272, 12.3, 1700),
        (337, 12.5, 2200),
        (407, 12.6, 2700),
        (482, 12.9, 3350),
        (525, 13.1, 3850),
        (575, 13.5, 4400),
    ),
}


def _make_key(profile: HardwareProfile) -> str:
    return profile.make


def _chip_offset(profile: HardwareProfile) -> float:
    return CHIP_OVER_BOARD_C.get(
        profile.id, CHIP_OVER_BOARD_C["antminer"] if profile.make == "antminer" else 20.0
    )


_COEFFS: dict[str, ModelCoeffs] = {}


def model_coeffs(profile: HardwareProfile) -> ModelCoeffs:
    """Per-model coefficients, fitted on first use and cached per profile content."""
    key = (
        profile.id
        + ":"
        + str(zlib.crc32(json.dumps(profile.model_dump(mode="json"), sort_keys=True).encode()))
    )
    if key not in _COEFFS:
        _COEFFS[key] = _fit_model(profile)
    return _COEFFS[key]


def _mean_unit(profile: HardwareProfile, coeffs: ModelCoeffs) -> UnitParams:
    """Build a unit with every random draw at its mean (for fitting and calibration)."""
    nb, nc = profile.hardware.boards, profile.hardware.chips_per_board
    q = np.ones((nb, nc), dtype=np.float32)
    q.setflags(write=False)
    return build_params(
        profile,
        coeffs,
        seed=-1,
        chip_quality=q,
        board_bin=(1.0,) * nb,
        vmin_margin_v=VMIN_MARGIN_MEAN_V,
        power_scale=1.0,
        leak_scale=1.0,
        r_scale=(1.0,) * nb,
        fan_scale=(1.0,) * profile.hardware.fans,
        power_bias=0.0,
        ambient=(T_REF_AMBIENT_C, 0.0, AMBIENT_PEAK_HOUR),
    )


def _fit_model(profile: HardwareProfile) -> ModelCoeffs:
    """Fit k (and a, where a real table exists) so the mean unit reproduces the table/rating."""
    hw, clk = profile.hardware, profile.clock
    make = _make_key(profile)
    p_board_ref = profile.rated.power_w / hw.boards
    target = profile.thermal.board_temp_target_c
    r_th = (target - T_REF_AMBIENT_C) * FAN_AT_RATED**AIRFLOW_EXPONENT / p_board_ref
    chip_off = _chip_offset(profile)
    points = CALIBRATION_POINTS.get(profile.id)
    if points is None:
        points = ((clk.freq_mhz_default, clk.voltage_v_default, profile.rated.power_w),)
    pts = np.asarray(points, dtype=float)
    f, v, p = pts[:, 0], pts[:, 1], pts[:, 2]
    p_def = float(np.interp(clk.freq_mhz_default, f, p)) if len(f) > 1 else float(p[0])
    leak_w = LEAK_FRACTION * p_def
    coeffs = ModelCoeffs(
        k=float(p_def / (clk.voltage_v_default**2 * clk.freq_mhz_default)),
        a=0.0,
        leak_w=leak_w,
        t_ref_chip_c=target + chip_off,
        r_th=r_th,
        chip_over_board_c=chip_off,
        p_board_ref_w=p_board_ref,
        fan_rpm_max=FAN_RPM_MAX[make],
        fan_w_max=FAN_W_MAX[make],
        fit_max_rel_err=0.0,
    )
    for _ in range(5):
        unit = _mean_unit(profile, coeffs)
        th = board_thermals(unit, f, v, T_REF_AMBIENT_C)
        dyn_now = coeffs.k * v * v * f + coeffs.a * f
        other = th.power_w - dyn_now  # leakage + fans + control at each point
        y = p - other
        if len(f) > 1:
            x = np.c_[v * v * f, f] / p[:, None]
            (k, a), *_ = np.linalg.lstsq(x, y / p, rcond=None)
            if a < 0:
                k, a = float(np.sum(v * v * f * y / p**2) / np.sum((v * v * f / p) ** 2)), 0.0
        else:
            k, a = float(y[0] / (v[0] ** 2 * f[0])), 0.0
        coeffs = coeffs._replace(k=float(k), a=float(a))
    th = board_thermals(_mean_unit(profile, coeffs), f, v, T_REF_AMBIENT_C)
    err = float(np.max(np.abs(th.power_w - p) / p))
    return coeffs._replace(fit_max_rel_err=err)


def draw_params(profile: HardwareProfile, seed: int) -> UnitParams:
    """Draw one unit's hidden parameters; the same (profile, seed) always gives the same unit."""
    coeffs = model_coeffs(profile)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(profile.id.encode())])
    nb, nc, nf = profile.hardware.boards, profile.hardware.chips_per_board, profile.hardware.fans
    q = np.clip(rng.normal(1.0, CHIP_QUALITY_SIGMA, (nb, nc)), CHIP_QUALITY_MIN, CHIP_QUALITY_MAX)
    q = q.astype(np.float32)
    q.setflags(write=False)
    sign = rng.choice((-1.0, 1.0))
    return build_params(
        profile,
        coeffs,
        seed=seed,
        chip_quality=q,
        board_bin=tuple(float(x) for x in rng.normal(1.0, BOARD_BIN_SIGMA, nb)),
        vmin_margin_v=float(max(0.0, rng.normal(VMIN_MARGIN_MEAN_V, VMIN_MARGIN_SIGMA_V))),
        power_scale=float(rng.normal(1.0, UNIT_POWER_SIGMA)),
        leak_scale=float(rng.lognormal(0.0, UNIT_LEAK_SIGMA)),
        r_scale=tuple(float(x) for x in rng.normal(1.0, R_TH_SIGMA, nb)),
        fan_scale=tuple(float(x) for x in rng.normal(1.0, FAN_RPM_SIGMA, nf)),
        power_bias=float(sign * rng.uniform(POWER_BIAS_MIN, POWER_BIAS_MAX)),
        ambient=(
            float(rng.normal(AMBIENT_BASE_MEAN_C, AMBIENT_BASE_SIGMA_C)),
            float(rng.uniform(AMBIENT_SWING_MIN_C, AMBIENT_SWING_MAX_C)),
            float(rng.normal(AMBIENT_PEAK_HOUR, AMBIENT_PEAK_SIGMA_H)),
        ),
    )


def mean_unit_params(profile: HardwareProfile) -> UnitParams:
    """Return the expected unit of a model (all draws at their means)."""
    return _mean_unit(profile, model_coeffs(profile))
