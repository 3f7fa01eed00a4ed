"""Per-sample signals: one formula per signal, evaluated on scalars (agent) or arrays (trainer).

A snapshot is first flattened to :data:`FLAT_FIELDS` (per-board detail reduced, the hardware
profile's expectations filled in). Each signal is then computed by :func:`derive` from the
current flat record and the previous one, through an ``ops`` namespace: :data:`SCALAR` for
the daemon's streaming path (floats, ``math``), :data:`VECTOR` for the batch path (numpy
arrays, the previous record being the frame shifted by one row). The formulas exist once.
Missing inputs give ``NaN``, never ``0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.profiles import HardwareProfile
from agent.snapshot import MinerSnapshot

NAN = float("nan")

#: The flat per-snapshot record: what the store keeps per row and the trainer's frame columns.
FLAT_FIELDS: tuple[str, ...] = (
    "ts",
    "hashrate_ths",
    "expected_ths",
    "power_w",
    "rated_power_w",
    "chip_temp_max_c",
    "chip_temp_mean_c",
    "board_temp_max_c",
    "board_temp_mean_c",
    "chips",
    "expected_chips",
    "boards_hashing",
    "expected_boards",
    "fans_ok",
    "expected_fans",
    "fan_rpm_mean",
    "hw_errors",
    "accepted",
    "rejected",
    "uptime_s",
    "is_mining",
)


def _num(value: float | int | bool | None) -> float:
    return NAN if value is None else float(value)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else NAN


def flatten(snap: MinerSnapshot, profile: HardwareProfile | None) -> dict[str, float]:
    """Reduce a snapshot to :data:`FLAT_FIELDS`; ``profile`` supplies expectations if known."""
    # A list not read this poll (None) contributes no values: its signals stay NaN (missing).
    boards = snap.boards or ()
    fans = snap.fans_rpm or ()
    chip_t = [b.chip_temp_c for b in boards if b.chip_temp_c is not None]
    board_t = [b.board_temp_c for b in boards if b.board_temp_c is not None]
    chips = [b.chips for b in boards if b.chips is not None]
    exp_chips = [b.expected_chips for b in boards if b.expected_chips is not None]
    board_hr = [b.hashrate_ths for b in boards if b.hashrate_ths is not None]
    expected_ths = snap.expected_hashrate_ths
    if expected_ths is None and profile is not None:
        expected_ths = profile.rated.hashrate_ths
    if exp_chips and len(exp_chips) == len(boards):
        expected_chip_total: float = float(sum(exp_chips))
    elif profile is not None:
        expected_chip_total = float(profile.expected_chips)
    else:
        expected_chip_total = NAN
    return {
        "ts": snap.ts.timestamp(),
        "hashrate_ths": _num(snap.hashrate_ths),
        "expected_ths": _num(expected_ths),
        "power_w": _num(snap.power_w),
        "rated_power_w": _num(profile.rated.power_w if profile else None),
        "chip_temp_max_c": max(chip_t) if chip_t else NAN,
        "chip_temp_mean_c": _mean(chip_t),
        "board_temp_max_c": max(board_t) if board_t else NAN,
        "board_temp_mean_c": _mean(board_t),
        "chips": float(sum(chips)) if chips else NAN,
        "expected_chips": expected_chip_total,
        "boards_hashing": float(sum(1 for h in board_hr if h > 0)) if board_hr else NAN,
        "expected_boards": _num(profile.hardware.boards if profile else None),
        "fans_ok": float(sum(1 for f in fans if f > 0)) if fans else NAN,
        "expected_fans": _num(profile.hardware.fans if profile else None),
        "fan_rpm_mean": _mean([float(f) for f in fans]),
        "hw_errors": _num(snap.hw_errors),
        "accepted": _num(snap.accepted),
        "rejected": _num(snap.rejected),
        "uptime_s": _num(snap.uptime_s),
        "is_mining": _num(snap.is_mining),
    }


@dataclass(frozen=True, slots=True)
class Signal:
    """One per-sample quantity the windows summarise."""

    name: str
    unit: str
    doc: str


#: Every signal, in the order :func:`derive` returns them.
SIGNALS: tuple[Signal, ...] = (
    Signal("present", "1", "1 for every successful poll (counts samples; gaps are absent)"),
    Signal("hashrate_ratio", "fraction", "hashrate / expected (firmware ideal, else rated)"),
    Signal("hashrate_ths", "TH/s", "reported hashrate"),
    Signal("power_w", "W", "measured wall power (missing where the firmware reports none)"),
    Signal(
        "efficiency_j_th",
        "J/TH",
        "measured power / hashrate; without a power reading, rated power x live chip "
        "fraction / hashrate (estimated from the hardware profile)",
    ),
    Signal("efficiency_estimated", "fraction", "1 where efficiency was estimated, 0 measured"),
    Signal("chip_temp_max_c", "°C", "hottest chip temperature over boards"),
    Signal("chip_temp_mean_c", "°C", "mean chip temperature over boards"),
    Signal("board_temp_max_c", "°C", "hottest board (PCB) temperature"),
    Signal("board_temp_mean_c", "°C", "mean board (PCB) temperature"),
    Signal("fan_ratio", "fraction", "spinning fans / fans the profile expects"),
    Signal("fan_rpm_mean", "rpm", "mean fan speed"),
    Signal("hw_error_rate", "1/h", "hardware errors per hour between consecutive polls"),
    Signal("reject_rate", "fraction", "rejected / (accepted + rejected) shares between polls"),
    Signal("hashing", "fraction", "1 if the miner was hashing (hashrate > 0), else 0"),
    Signal("board_loss", "boards", "expected boards minus boards reporting hashrate > 0"),
    Signal("chip_loss", "fraction", "1 - live chips / expected chips"),
    Signal("restart", "events", "1 where uptime went backwards since the previous poll"),
)

SIGNAL_INDEX = {s.name: i for i, s in enumerate(SIGNALS)}


class _ScalarOps:
    """Primitives on Python floats (the streaming path)."""

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        return a if cond else b

    @staticmethod
    def present(x: Any) -> Any:
        return x == x

    @staticmethod
    def both(a: Any, b: Any) -> Any:
        return bool(a) and bool(b)

    @staticmethod
    def clip(x: Any, lo: float, hi: float) -> Any:
        return x if x != x else min(max(x, lo), hi)

    @staticmethod
    def div(a: Any, b: Any) -> Any:
        return a / b if b > 0 and a == a else NAN

    @staticmethod
    def ones(like: Any) -> Any:
        return 1.0


class _VectorOps:
    """The same primitives on numpy arrays (the batch path)."""

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        return np.where(cond, a, b)

    @staticmethod
    def present(x: Any) -> Any:
        return ~np.isnan(x)

    @staticmethod
    def both(a: Any, b: Any) -> Any:
        return np.logical_and(a, b)

    @staticmethod
    def clip(x: Any, lo: float, hi: float) -> Any:
        return np.clip(x, lo, hi)

    @staticmethod
    def div(a: Any, b: Any) -> Any:
        ok = b > 0
        return np.where(ok, a / np.where(ok, b, 1.0), np.nan)

    @staticmethod
    def ones(like: Any) -> Any:
        return np.ones_like(like)


SCALAR = _ScalarOps()
VECTOR = _VectorOps()


def derive(cur: Any, prev: Any, x: Any) -> list[Any]:
    """Compute every signal (in :data:`SIGNALS` order) from a flat record and its predecessor.

    ``cur``/``prev`` map :data:`FLAT_FIELDS` to floats (``x = SCALAR``) or arrays
    (``x = VECTOR``); ``prev`` of the first sample is all ``NaN``.
    """
    h = cur["hashrate_ths"]
    power = cur["power_w"]
    chip_frac = x.div(cur["chips"], cur["expected_chips"])
    chip_frac = x.where(x.present(chip_frac), chip_frac, 1.0)
    est_power = cur["rated_power_w"] * chip_frac
    measured = x.present(power)
    eff = x.div(x.where(measured, power, est_power), h)
    eff_est = x.where(x.present(eff), x.where(measured, 0.0, 1.0), NAN)
    dt_h = (cur["ts"] - prev["ts"]) / 3600.0
    up, up_prev = cur["uptime_s"], prev["uptime_s"]
    restart = x.where(
        x.both(x.present(up), x.present(up_prev)), x.where(up < up_prev, 1.0, 0.0), NAN
    )
    no_restart = x.where(x.present(restart), restart == 0.0, True)
    d_hw = cur["hw_errors"] - prev["hw_errors"]
    hw_rate = x.where(x.both(no_restart, d_hw >= 0), x.div(d_hw, dt_h), NAN)
    d_acc = cur["accepted"] - prev["accepted"]
    d_rej = cur["rejected"] - prev["rejected"]
    shares_ok = x.both(x.both(no_restart, d_acc >= 0), d_rej >= 0)
    reject = x.where(shares_ok, x.div(d_rej, d_acc + d_rej), NAN)
    hashing = x.where(
        x.present(h),
        x.where(h > 0, 1.0, 0.0),
        x.where(x.present(cur["is_mining"]), cur["is_mining"], NAN),
    )
    board_loss = x.clip(cur["expected_boards"] - cur["boards_hashing"], 0.0, math.inf)
    chip_loss = x.clip(1.0 - x.div(cur["chips"], cur["expected_chips"]), 0.0, 1.0)
    return [
        x.ones(h),
        x.div(h, cur["expected_ths"]),
        h,
        power,
        eff,
        eff_est,
        cur["chip_temp_max_c"],
        cur["chip_temp_mean_c"],
        cur["board_temp_max_c"],
        cur["board_temp_mean_c"],
        x.div(cur["fans_ok"], cur["expected_fans"]),
        cur["fan_rpm_mean"],
        hw_rate,
        reject,
        hashing,
        board_loss,
        chip_loss,
        restart,
    ]
