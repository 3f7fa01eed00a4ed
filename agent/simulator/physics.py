"""Hidden physics of a simulated miner: per-unit parameters and the steady-state operating point.

Model (landscape.md §8b):
- hashrate is linear in clock: TH/s = Σ_chips hashes_per_clock · f · quality · (1 - error share);
- a chip whose board voltage is below its own minimum stable voltage makes hardware errors and
  loses that share of its work;
- wall power = k·V²·f + a·f (dynamic, fitted per model) + leakage(V, T) + fans + control board;
- each board's hottest sensor sits at ambient + P_board·R/airflow^0.8, and a fan loop picks the
  airflow that holds the profile's board target temperature (fans saturate at 100 %).

Everything is computed on request from (params, settings, ambient); nothing ticks. Per unit the
only arrays are a float32 chip-quality matrix (≤ ~2 KB), so 5,000 units stay in a few MB.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from agent.profiles import HardwareProfile

# --- silicon lottery -----------------------------------------------------------------------
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

# --- voltage / stability -------------------------------------------------------------------
#: Mean and spread of how far a unit's median chip's minimum stable voltage sits below the
#: firmware's default V/f curve. Engineering assumption: firmware tables keep margin, and
#: tuners win by stepping voltage down until weak chips fail (landscape.md §8b, Hiveon).
VMIN_MARGIN_MEAN_V, VMIN_MARGIN_SIGMA_V = 0.20, 0.05
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

# --- power ---------------------------------------------------------------------------------
#: Leakage share of wall power at the default point and reference temperature. Engineering
#: assumption: Braiins/YDminer show power rising with temperature at fixed V/f but the
#: slopes are only in images (landscape.md §8b).
LEAK_FRACTION = 0.06
#: Leakage doubles every this many °C of chip temperature. Engineering assumption (CMOS
#: sub-threshold leakage, order of magnitude).
LEAK_DOUBLING_C = 30.0
#: Control board and PSU housekeeping draw, W. Engineering assumption.
CONTROL_W = 15.0

# --- thermal -------------------------------------------------------------------------------
#: Ambient at which models are calibrated and designed, °C. Engineering assumption.
T_REF_AMBIENT_C = 25.0
#: Fan fraction that holds the board target at rated power and reference ambient.
#: Engineering assumption; the S19 Pro fixture runs fans at 82–98 % of 6150 rpm and the
#: M60S fixture at ~74 % of ~7250 rpm (antminer/v2020/stats.json, whatsminer/v3).
FAN_AT_RATED = 0.8
#: Heat transfer ∝ airflow^0.8 (forced-convection Nusselt scaling). Textbook exponent.
AIRFLOW_EXPONENT = 0.8
#: Lowest fan fraction: LuxOS fixture idles fans at PWM 20 % = 1920–2340 rpm ≈ 0.31–0.38 of
#: 6150 rpm (../shared/fixtures/asic-rs/luxminer/v1/fans.json).
FAN_MIN_FRACTION = 0.3
#: Airflow left when every fan has stopped (natural convection). Engineering assumption.
NATURAL_AIRFLOW = 0.05
#: Board intake sensor rise as a fraction of the exhaust (hottest) sensor's rise over
#: ambient. LuxOS S19k Pro fixture: intake 33–34 °C, exhaust 47 °C (temps.json); with an
#: assumed 25 °C room that is (34-25)/(47-25) ≈ 0.4.
INLET_RISE_FRACTION = 0.4
#: Full-speed rpm per make: Antminer S19 Pro fan 6150 rpm (landscape.md §8a); MicroBT fans
#: 7,000–7,500 rpm (landscape.md §8a, MicroBT after-sales).
FAN_RPM_MAX = {"antminer": 6150.0, "whatsminer": 7250.0}
#: Per-fan full-speed rpm spread between fans of one unit (S19 Pro fixture fans read
#: 5040–6000 rpm at one PWM). Engineering assumption for σ.
FAN_RPM_SIGMA = 0.03
#: Electrical power of one fan at 100 %, W: Antminer fan 12 V × 1.65 A (landscape.md §8a);
#: MicroBT fans up to 108 W each (landscape.md §8a).
FAN_W_MAX = {"antminer": 19.8, "whatsminer": 108.0}
#: Chip temperature above the hottest board sensor at rated per-board power, °C.
#: Antminer: "other firmwares estimate chip as board + ~15 °C" (landscape.md §2/§8b).
#: m60s: fixture chip-temp-avg 75.5 vs boards 40.1–41.5 (whatsminer/v3) → 34.4.
#: m30s: M3x-era fixture chip avg 84.1 vs boards ~70.3 (whatsminer/v1) → 13.6.
#: m50: engineering assumption between the two Whatsminer fixtures.
CHIP_OVER_BOARD_C = {"antminer": 15.0, "m30s": 13.6, "m50": 25.0, "m60s": 34.4}
#: Per-unit thermal-resistance spread per board. Engineering assumption.
R_TH_SIGMA = 0.05

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
#: Fixed-point iterations for the leakage ↔ temperature coupling (converges in 2–3).
THERMAL_ITERATIONS = 4

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


class BoardThermals(NamedTuple):
    """Board-level power and temperatures for n candidate operating points (rows)."""

    power_w: np.ndarray  #: (n,) true wall power
    board_power_w: np.ndarray  #: (n, B)
    board_temp_c: np.ndarray  #: (n, B) hottest PCB sensor = board exhaust
    chip_temp_c: np.ndarray  #: (n, B)
    inlet_temp_c: np.ndarray  #: (n, B)
    fan_fraction: np.ndarray  #: (n,) commanded fan speed 0..1


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


# ----------------------------------------------------------------------------------------
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


def _make_key(profile: HardwareProfile) -> str:
    return profile.make


def _chip_offset(profile: HardwareProfile) -> float:
    return CHIP_OVER_BOARD_C.get(
        profile.id, CHIP_OVER_BOARD_C["antminer"] if profile.make == "antminer" else 20.0
    )


def board_thermals(
    params: UnitParams,
    freq_mhz: np.ndarray | float,
    voltage_v: np.ndarray | float,
    ambient_c: float,
    board_active: np.ndarray | None = None,
    fans_ok: np.ndarray | None = None,
    target_c: float | None = None,
) -> BoardThermals:
    """Vectorised board-level power/thermal solve for n (f, V) rows (no per-chip work).

    ``board_active`` (B,) is the fraction of each board's chips that are powered (0 for a
    lost board); ``fans_ok`` (fans,) marks working fans.
    """
    c = params.coeffs
    f = np.atleast_1d(np.asarray(freq_mhz, dtype=float))[:, None]
    v = np.atleast_1d(np.asarray(voltage_v, dtype=float))[:, None]
    nb = params.boards
    active = np.ones(nb) if board_active is None else np.asarray(board_active, dtype=float)
    ok = np.ones(params.fans, dtype=bool) if fans_ok is None else np.asarray(fans_ok, dtype=bool)
    ok_frac = ok.mean() if ok.size else 0.0
    r = np.asarray(params.r_th)
    target = params.board_target_c if target_c is None else target_c

    p_dyn = (params.k_w * v * v * f + params.a_w * f) / nb * active  # (n, B)
    leak0 = params.leak_w / nb * active * (v / params.v_default) ** 2
    t_chip = np.full(p_dyn.shape, c.t_ref_chip_c)
    for _ in range(THERMAL_ITERATIONS):
        p_b = p_dyn + leak0 * np.exp2((t_chip - c.t_ref_chip_c) / LEAK_DOUBLING_C)
        load = (p_b * r).max(axis=1)  # (n,) hottest board's P·R
        headroom = target - ambient_c
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where(
                headroom > 0, (load / max(headroom, 1e-9)) ** (1 / AIRFLOW_EXPONENT), np.inf
            )
        if ok_frac > 0:
            u_cmd = np.clip(need / ok_frac, FAN_MIN_FRACTION, 1.0)
            u_eff = np.maximum(u_cmd * ok_frac, NATURAL_AIRFLOW)
        else:
            u_cmd = np.ones_like(need)
            u_eff = np.full_like(need, NATURAL_AIRFLOW)
        rise = p_b * r / (u_eff[:, None] ** AIRFLOW_EXPONENT)
        t_board = ambient_c + rise
        t_chip = t_board + c.chip_over_board_c * p_b / c.p_board_ref_w
    fan_w = ok.sum() * c.fan_w_max * u_cmd**3
    power = p_b.sum(axis=1) + fan_w + CONTROL_W
    return BoardThermals(power, p_b, t_board, t_chip, ambient_c + INLET_RISE_FRACTION * rise, u_cmd)


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


# ----------------------------------------------------------------------------------------
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
    return _params(
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


def _params(
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


def draw_params(profile: HardwareProfile, seed: int) -> UnitParams:
    """Draw one unit's hidden parameters; the same (profile, seed) always gives the same unit."""
    coeffs = model_coeffs(profile)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(profile.id.encode())])
    nb, nc, nf = profile.hardware.boards, profile.hardware.chips_per_board, profile.hardware.fans
    q = np.clip(rng.normal(1.0, CHIP_QUALITY_SIGMA, (nb, nc)), CHIP_QUALITY_MIN, CHIP_QUALITY_MAX)
    q = q.astype(np.float32)
    q.setflags(write=False)
    sign = rng.choice((-1.0, 1.0))
    return _params(
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


def mean_unit_params(profile: HardwareProfile) -> UnitParams:
    """Return the expected unit of a model (all draws at their means)."""
    return _mean_unit(profile, model_coeffs(profile))
