"""Incremental rolling statistics over bucket-aligned time windows: O(1) per sample.

A window of span ``S`` is cut into ``k`` aligned buckets of width ``w = S // k`` (bucket id
``t_ms // w``). At time ``t`` the window holds every sample whose bucket id lies in
``(bucket(t) - k, bucket(t)]``: the last ``S`` milliseconds with the trailing edge moved to a
bucket boundary. Statistics are *exact* statistics of those samples; the buckets only bound
memory to ``k + 1`` partial aggregates per window whatever the poll rate (a 7-day window of
30 s polls would otherwise keep 20,160 samples per signal per miner).

:class:`RollingWindows` keeps several windows of many signals that share sample times (all
signals of one miner), as numpy arrays shaped (window, bucket slot, signal):

* adding a sample is one Welford update of every window's open bucket (slot ``k``) and, when
  a bucket boundary passes, one row copy into the ring: O(1), no loop over samples;
* reading combines the at most ``k + 1`` live bucket summaries exactly: count and sum add;
  mean is the count-weighted mean; ``M2`` (for the standard deviation) and the time/value
  co-moment (for the least-squares slope) use the two-level decomposition
  ``M2 = Σ M2_b + Σ n_b (mean_b - mean)²`` (Chan et al.), so nothing is ever subtracted
  from a running total and rounding cannot drift however long the daemon runs;
* minimum and maximum reduce the live buckets' extremes.

A missing reading is ``NaN`` and is not added: the count says how much data a statistic
rests on, and a statistic of no samples is ``NaN``, never ``0``. ``agent.features.batch``
computes the same windows from a DataFrame; a property test holds the two together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Buckets per window. Bounds memory to k + 1 partial aggregates per window independent of
#: the poll rate, while the trailing edge stays within 1/30 of the span (10 s of a 5-minute
#: window, 5.6 h of a 7-day one). Measured: ~78 KiB of state per miner with the default
#: schema, ~155 MB for 2,000 miners (benchmarks/features.py).
WINDOW_BUCKETS = 30

#: Milliseconds per hour: slopes are reported per hour, the unit operators read trends in.
MS_PER_HOUR = 3_600_000.0

_NO_BUCKET = np.iinfo(np.int64).min // 2


def to_ms(t_s: float) -> int:
    """Epoch seconds to integer milliseconds, rounded half-to-even like ``numpy.rint``."""
    return round(t_s * 1000.0)


def bucket_width_ms(span_s: float, buckets: int = WINDOW_BUCKETS) -> int:
    """Width of one bucket of a window of ``span_s`` seconds (the span rounds down to k·w)."""
    width = round(span_s * 1000.0) // buckets
    if width < 1:
        raise ValueError(f"window of {span_s} s is too short for {buckets} buckets")
    return width


class RollingWindows:
    """Exact rolling count, sum, mean, std, slope, min and max over several time windows."""

    STATS = ("count", "sum", "mean", "std", "slope", "min", "max")

    def __init__(
        self,
        spans_s: Sequence[float],
        n_signals: int,
        *,
        spread: Sequence[int] = (),
        slope: Sequence[int] = (),
        minimum: Sequence[int] = (),
        maximum: Sequence[int] = (),
        total: Sequence[int] = (),
        origin_ms: int | None = None,
        buckets: int = WINDOW_BUCKETS,
    ) -> None:
        """Track ``n_signals`` signals; the optional statistics only for the listed indexes."""
        self.k = buckets
        self.n_signals = n_signals
        self.widths = np.array([bucket_width_ms(s, buckets) for s in spans_s], dtype=np.int64)
        self._widths = [int(w) for w in self.widths]
        n_win = len(self._widths)
        shape = (n_win, buckets + 1)
        self._sp = np.asarray(spread, dtype=np.intp)
        self._sl = np.asarray(slope, dtype=np.intp)
        self._lo = np.asarray(minimum, dtype=np.intp)
        self._hi = np.asarray(maximum, dtype=np.intp)
        self._tot = np.asarray(total, dtype=np.intp)
        #: Slopes measure time in hours from here (default: the first sample), keeping the
        #: time moments small; epoch hours (~486,000) would cost eight digits of the slope.
        self._origin_ms: int | None = origin_ms
        # Slot k of each window is its open bucket; slots 0..k-1 a ring of closed buckets.
        self._ids = np.full(shape, _NO_BUCKET, dtype=np.int64)
        self._open: list[int | None] = [None] * n_win
        self._last_ms: int | None = None
        self.n = np.zeros((*shape, n_signals))
        self.mean = np.zeros((*shape, n_signals))
        self.m2 = np.zeros((*shape, len(self._sp)))
        self.mt = np.zeros((*shape, len(self._sl)))
        self.m2t = np.zeros((*shape, len(self._sl)))
        self.ctx = np.zeros((*shape, len(self._sl)))
        self.lo = np.full((*shape, len(self._lo)), np.nan)
        self.hi = np.full((*shape, len(self._hi)), np.nan)
        self.tot = np.zeros((*shape, len(self._tot)))
        self._arrays = (self.n, self.mean, self.m2, self.mt, self.m2t, self.ctx, self.tot)

    # -- updates ------------------------------------------------------------------------

    def add(self, t_ms: int, x: np.ndarray) -> None:
        """Add one sample at ``t_ms``; ``NaN`` entries of ``x`` are missing and skipped."""
        if self._last_ms is not None and t_ms < self._last_ms:
            raise ValueError("samples must arrive in time order")
        self._last_ms = t_ms
        if self._origin_ms is None:
            self._origin_ms = t_ms
        k = self.k
        for w, width in enumerate(self._widths):
            b = t_ms // width
            if b != self._open[w]:
                if self._open[w] is not None:
                    self._close(w)
                self._open[w] = b
                self._ids[w, k] = b
        present = x == x
        if not present.any():
            return
        xs = np.where(present, x, 0.0)
        n = self.n[:, k]
        mean = self.mean[:, k]
        n_new = n + present
        d = (xs - mean) * present
        mean_new = mean + d / np.maximum(n_new, 1.0)
        if len(self._sp):
            sp = self._sp
            self.m2[:, k] += d[:, sp] * (xs[sp] - mean_new[:, sp])
        if len(self._sl):
            sl = self._sl
            p = present[sl]
            t_h = (t_ms - self._origin_ms) / MS_PER_HOUR
            mt = self.mt[:, k]
            dt = (t_h - mt) * p
            mt_new = mt + dt / np.maximum(n_new[:, sl], 1.0)
            self.m2t[:, k] += dt * (t_h - mt_new)
            # Co-moment: C_n = C_{n-1} + (t - mean_t_{n-1}) (x - mean_x_n).
            self.ctx[:, k] += dt * (xs[sl] - mean_new[:, sl])
            self.mt[:, k] = mt_new
        if len(self._lo):
            self.lo[:, k] = np.fmin(self.lo[:, k], x[self._lo])
        if len(self._hi):
            self.hi[:, k] = np.fmax(self.hi[:, k], x[self._hi])
        if len(self._tot):
            self.tot[:, k] += xs[self._tot]
        self.n[:, k] = n_new
        self.mean[:, k] = mean_new

    def _close(self, w: int) -> None:
        """Move window ``w``'s open bucket into its ring slot and start an empty one."""
        k = self.k
        b = self._open[w]
        assert b is not None
        slot = b % k
        for arr in self._arrays:
            arr[w, slot] = arr[w, k]
            arr[w, k] = 0.0
        for arr in (self.lo, self.hi):
            arr[w, slot] = arr[w, k]
            arr[w, k] = np.nan
        self._ids[w, slot] = b
        self._ids[w, k] = _NO_BUCKET

    # -- queries --------------------------------------------------------------------------

    def summary(self, t_ms: int) -> dict[str, np.ndarray]:
        """Each statistic as a (window, signal) array for the windows ending at ``t_ms``.

        ``t_ms`` must not precede the newest sample. Undefined statistics are ``NaN``: every
        one with no samples, ``std`` and ``slope`` with fewer than two, and those of signals
        the statistic was not requested for.
        """
        if self._last_ms is not None and t_ms < self._last_ms:
            raise ValueError("cannot read a window before its newest sample")
        b_now = t_ms // self.widths
        live = (self._ids > (b_now - self.k)[:, None]) & (self._ids <= b_now[:, None])
        v = live[:, :, None]
        nk = self.n * v
        n = nk.sum(axis=1)
        safe = np.maximum(n, 1.0)
        mean_k = self.mean
        mean = (nk * mean_k).sum(axis=1) / safe
        shape = n.shape
        out = {
            "count": n,
            "mean": np.where(n > 0, mean, np.nan),
            "sum": np.full(shape, np.nan),
            "std": np.full(shape, np.nan),
            "slope": np.full(shape, np.nan),
            "min": np.full(shape, np.nan),
            "max": np.full(shape, np.nan),
        }
        with np.errstate(invalid="ignore", divide="ignore"):
            if len(self._sp):
                sp = self._sp
                dev = mean_k[:, :, sp] - mean[:, None, sp]
                m2 = (self.m2 * v).sum(axis=1) + (nk[:, :, sp] * dev * dev).sum(axis=1)
                ns = n[:, sp]
                out["std"][:, sp] = np.where(
                    ns > 1, np.sqrt(np.maximum(m2, 0.0) / np.maximum(ns - 1, 1.0)), np.nan
                )
            if len(self._sl):
                sl = self._sl
                ns_k = nk[:, :, sl]
                ns = n[:, sl]
                mt = (ns_k * self.mt).sum(axis=1) / np.maximum(ns, 1.0)
                dt = self.mt - mt[:, None, :]
                dx = mean_k[:, :, sl] - mean[:, None, sl]
                m2t = (self.m2t * v).sum(axis=1) + (ns_k * dt * dt).sum(axis=1)
                ctx = (self.ctx * v).sum(axis=1) + (ns_k * dt * dx).sum(axis=1)
                ok = (ns > 1) & (m2t > 0)
                out["slope"][:, sl] = np.where(ok, ctx / np.where(ok, m2t, 1.0), np.nan)
            if len(self._lo):
                out["min"][:, self._lo] = np.fmin.reduce(np.where(v, self.lo, np.nan), axis=1)
            if len(self._hi):
                out["max"][:, self._hi] = np.fmax.reduce(np.where(v, self.hi, np.nan), axis=1)
            if len(self._tot):
                tot = (self.tot * v).sum(axis=1)
                out["sum"][:, self._tot] = np.where(n[:, self._tot] > 0, tot, np.nan)
        return out

    def covered_ms(self, t_ms: int) -> np.ndarray:
        """Per window, the milliseconds it spans when ending at ``t_ms``."""
        b_now = t_ms // self.widths
        return t_ms - (b_now - self.k + 1) * self.widths

    def nbytes(self) -> int:
        """Bytes held by the numpy state (for memory budgets)."""
        arrays = (*self._arrays, self.lo, self.hi, self._ids)
        return sum(a.nbytes for a in arrays)
