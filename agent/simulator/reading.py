"""What a simulated firmware reports at one instant: reading records and how they are built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from agent.profiles import HardwareProfile
from agent.simulator.physics import CONTROL_W, FAN_MIN_FRACTION, OperatingPoint, UnitParams

#: Relative noise of the 5-second hashrate: fixtures show 5 s vs average −1.1 % (S19 Pro,
#: antminer/v2020) and −1.8 % (S19k Pro, luxminer/v1).
HASHRATE_5S_NOISE = 0.015
#: Relative noise of the firmware power reading. Engineering assumption.
POWER_READING_NOISE = 0.005


@dataclass(frozen=True, eq=False)
class FaultState:
    """Injected hardware faults of one unit (a snapshot)."""

    boards_ok: tuple[bool, ...]
    #: bool (boards, chips)
    dead_chips: np.ndarray
    fans_ok: tuple[bool, ...]
    ambient_offset_c: float

    @property
    def alive_chips(self) -> np.ndarray:
        """Bool (boards, chips): chip present, powered and not dead."""
        return np.asarray(self.boards_ok)[:, None] & ~self.dead_chips


@dataclass(frozen=True)
class BoardState:
    """One hashboard as firmware would report it."""

    index: int
    hashrate_ths: float
    chips_total: int
    chips_ok: int
    chip_status: str
    freq_mhz: float
    voltage_v: float
    board_temp_c: float
    chip_temp_c: float
    inlet_temp_c: float
    outlet_temp_c: float
    hw_errors: int
    alive: bool


@dataclass(frozen=True)
class UnitReading:
    """Everything a firmware could report at one instant."""

    ts: float
    elapsed_s: int
    is_mining: bool
    power_mode: str
    power_limit_w: float | None
    hashrate_5s_ths: float
    hashrate_avg_ths: float
    hashrate_30m_ths: float
    expected_hashrate_ths: float
    power_true_w: float
    power_reported_w: float
    env_temp_c: float
    fans_rpm: tuple[int, ...]
    boards: tuple[BoardState, ...]
    accepted: int
    rejected: int
    hw_errors: int
    error_codes: tuple[str, ...]
    throttled: bool


def chip_status(ok: np.ndarray) -> str:
    """Antminer chain_acs style: groups of three, ``o`` ok, ``x`` bad (' ooo ooo xoo')."""
    n = len(ok)
    groups = (n + 2) // 3
    buf = np.full(n + groups, ord(" "), dtype=np.uint8)
    idx = np.arange(n)
    buf[idx + idx // 3 + 1] = np.where(ok, ord("o"), ord("x"))
    return buf.tobytes().decode("ascii")


class Observed(NamedTuple):
    """Physical state the firmware sees at one instant (before counters and noise)."""

    power_w: float  #: true wall power
    fans_rpm: tuple[int, ...]
    #: per-board (board, chip, inlet, outlet) temperatures, °C
    temps: list[tuple[float, ...]]
    board_hashrate_ths: list[float]
    #: bool (boards, chips): chip counted as ok
    chip_ok: np.ndarray


def observe(
    params: UnitParams,
    op: OperatingPoint | None,
    ramp_frac: float,
    amb: float,
    up: bool,
    boards_ok: np.ndarray,
    dead: np.ndarray,
    fans_ok: np.ndarray,
) -> Observed:
    """Blend idle draw and the steady point ``op`` by the ramp fraction (``op`` None: idle).

    Power and hashrate follow the ramp (hashrate may overshoot during a retune ramp);
    temperatures warm up with it, capped at the steady value. While the mining process is
    down (``up`` False) fans stop and only the control board draws.
    """
    m = ramp_frac
    nb = params.boards
    idle_rpm = tuple(
        round(FAN_MIN_FRACTION * r) if ok else 0
        for r, ok in zip(params.fan_rpm_max, fans_ok, strict=True)
    )
    idle_w = CONTROL_W + (
        fans_ok.sum() * params.coeffs.fan_w_max * FAN_MIN_FRACTION**3 if up else 0.0
    )
    if op is not None:
        warm = min(m, 1.0)
        power = idle_w + (op.power_w - idle_w) * m
        fans = op.fans_rpm
        temps = [
            tuple(amb + (x - amb) * warm for x in arr)
            for arr in (op.board_temp_c, op.chip_temp_c, op.inlet_temp_c, op.outlet_temp_c)
        ]
        board_h = [h * m for h in op.board_hashrate_ths]
        chip_ok = op.chip_ok
    else:
        power, fans = idle_w, idle_rpm if up else (0,) * params.fans
        temps = [(amb,) * nb] * 4
        board_h = [0.0] * nb
        chip_ok = boards_ok[:, None] & ~dead
    return Observed(power, fans, temps, board_h, chip_ok)


def board_states(
    profile: HardwareProfile,
    op: OperatingPoint | None,
    freq: float,
    volt: float,
    hashing: bool,
    obs: Observed,
    boards_ok: np.ndarray,
    board_hw_errors: np.ndarray,
) -> tuple[BoardState, ...]:
    """Per-board records: a lost board reads dead (no chips, clock or voltage)."""
    board_h, temps, chip_ok = obs.board_hashrate_ths, obs.temps, obs.chip_ok
    return tuple(
        BoardState(
            index=i,
            hashrate_ths=board_h[i],
            chips_total=profile.hardware.chips_per_board,
            chips_ok=int(chip_ok[i].sum()) if boards_ok[i] else 0,
            chip_status=chip_status(chip_ok[i]) if boards_ok[i] else "",
            freq_mhz=float(op.freq_mhz)
            if op is not None and boards_ok[i]
            else (float(freq) if hashing and boards_ok[i] else 0.0),
            voltage_v=float(volt) if hashing and boards_ok[i] else 0.0,
            board_temp_c=temps[0][i],
            chip_temp_c=temps[1][i],
            inlet_temp_c=temps[2][i],
            outlet_temp_c=temps[3][i],
            hw_errors=int(board_hw_errors[i]),
            alive=bool(boards_ok[i]),
        )
        for i in range(profile.hardware.boards)
    )
