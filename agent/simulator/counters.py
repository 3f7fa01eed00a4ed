"""Cumulative hash, hardware-error and share counters as closed-form integrals over segments."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from agent.simulator.clock import Segment

#: Pool share difficulty: ePIC S19 XP fixture session difficulty 262144 (epic/v1/summary.json).
POOL_DIFFICULTY = 262144.0
#: Rejected share fraction: S19 Pro fixture, 11 rejected of 4068 (antminer/v2020/summary.json).
REJECT_FRACTION = 0.0027
#: Relative change of the protected steady hashrate that starts a new counter segment.
#: Small enough to follow a 25 MHz throttle step (~4–10 %), large enough to ignore the
#: sub-percent leakage drift of the day/night swing.
RESEGMENT_TOLERANCE = 0.01
#: Window of the ``hashrate_30m`` reading, s.
WINDOW_30M_S = 1800.0
#: Closed segments older than this are folded into totals and dropped.
SEGMENT_KEEP_S = WINDOW_30M_S
_DIFF1_HASHES = 2.0**32


class CounterTotals(NamedTuple):
    """Counters since the mining process started, at one instant."""

    board_ths_s: np.ndarray  #: (B,) TH/s·s hashed per board
    board_hw_errors: np.ndarray  #: (B,) hardware errors per board, in diff-1 shares (float)
    accepted: int
    rejected: int


class HashCounters:
    """Per-board work since process start: closed segments folded into totals, plus one running.

    Nothing ticks: the running :class:`~agent.simulator.clock.Segment` is integrated in closed
    form whenever a reading asks, and closed segments are kept only as long as the 30-minute
    window needs them.
    """

    def __init__(self, boards: int, segment: Segment) -> None:
        #: the running segment; replace it only right after :meth:`close`
        self.segment = segment
        self._closed_board = np.zeros(boards)
        self._closed_hw = np.zeros(boards)
        self._recent: list[tuple[Segment, float]] = []  # closed (segment, t_end) within 30 min

    def rate_at(self, t: float) -> float:
        """Hashrate of the running segment at ``t`` (steady rate times its ramp)."""
        return sum(self.segment.board_ths) * self.segment.ramp.at(t)

    def close(self, t_end: float) -> None:
        """Fold the running segment up to ``t_end`` into the totals."""
        seg = self.segment
        ms = seg.hash_s(seg.t0, t_end)
        ths = np.asarray(seg.board_ths)
        self._closed_board += ths * ms
        self._closed_hw += ths * np.asarray(seg.board_hw) * ms
        self._recent.append((seg, t_end))
        self._recent = [(s, e) for s, e in self._recent if e > t_end - SEGMENT_KEEP_S]

    def reset(self) -> None:
        """Zero every total (the mining process restarted)."""
        self._closed_board[:] = 0.0
        self._closed_hw[:] = 0.0
        self._recent.clear()

    def totals(self, t: float) -> CounterTotals:
        """Per-board work and errors, and pool shares, from process start to ``t``."""
        seg = self.segment
        ms = seg.hash_s(seg.t0, t)
        ths = np.asarray(seg.board_ths)
        board_ths_s = self._closed_board + ths * ms
        board_hw_hashes = (
            (self._closed_hw + ths * np.asarray(seg.board_hw) * ms) * 1e12 / _DIFF1_HASHES
        )
        diff1 = board_ths_s.sum() * 1e12 / _DIFF1_HASHES
        shares = diff1 / POOL_DIFFICULTY
        accepted = int(shares * (1.0 - REJECT_FRACTION))
        rejected = int(shares * REJECT_FRACTION)
        return CounterTotals(board_ths_s, board_hw_hashes, accepted, rejected)

    def hashrate_30m(self, t: float, since: float) -> float:
        """Mean hashrate over the last WINDOW_30M_S before ``t``, not reaching before ``since``."""
        seg = self.segment
        lo = max(t - WINDOW_30M_S, since)
        win = sum(sum(s.board_ths) * s.hash_s(lo, min(e, t)) for s, e in self._recent if e > lo)
        win += sum(seg.board_ths) * seg.hash_s(lo, t)
        return win / (t - lo) if t > lo else 0.0
