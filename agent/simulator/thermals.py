"""Steady-state board power and temperatures: temperature-dependent leakage, fan loop, airflow."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from agent.simulator.params import UnitParams

#: Leakage doubles every this many °C of chip temperature. Engineering assumption (CMOS
#: sub-threshold leakage, order of magnitude).
LEAK_DOUBLING_C = 30.0
#: Control board and PSU housekeeping draw, W. Engineering assumption.
CONTROL_W = 15.0
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
#: Fixed-point iterations for the leakage ↔ temperature coupling (converges in 2–3).
THERMAL_ITERATIONS = 4


class BoardThermals(NamedTuple):
    """Board-level power and temperatures for n candidate operating points (rows)."""

    power_w: np.ndarray  #: (n,) true wall power
    board_power_w: np.ndarray  #: (n, B)
    board_temp_c: np.ndarray  #: (n, B) hottest PCB sensor = board exhaust
    chip_temp_c: np.ndarray  #: (n, B)
    inlet_temp_c: np.ndarray  #: (n, B)
    fan_fraction: np.ndarray  #: (n,) commanded fan speed 0..1


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
