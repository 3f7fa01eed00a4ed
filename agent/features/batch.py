"""The same features from a pandas DataFrame of history (the central trainer's path).

Vectorised throughout: the signal formulas run on whole columns (``signals.derive`` with
numpy), and every window is a pandas rolling aggregation whose bounds come from
:class:`BucketWindowIndexer`, the exact bucket-aligned time window the streaming path uses.
Features are evaluated at every row, as the streaming path would report them right after
adding that row. This module is the only one that imports pandas; the daemon never does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api.indexers import BaseIndexer

from agent.features.extract import FeatureSchema
from agent.features.signals import FLAT_FIELDS, SIGNALS, VECTOR, derive
from agent.features.windows import MS_PER_HOUR, WINDOW_BUCKETS


class BucketWindowIndexer(BaseIndexer):
    """Rows ``j <= i`` whose bucket id is within the last ``k`` buckets of row ``i``'s."""

    def __init__(self, bucket_ids: np.ndarray, k: int) -> None:
        """``bucket_ids`` is non-decreasing (``t_ms // width``), one per row."""
        super().__init__(window_size=0)
        self.bucket_ids = bucket_ids
        self.k = k

    def get_window_bounds(
        self,
        num_values: int = 0,
        min_periods: int | None = None,
        center: bool | None = None,
        closed: str | None = None,
        step: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Start (inclusive) and end (exclusive) row of each row's window."""
        b = self.bucket_ids[:num_values]
        start = np.searchsorted(b, b - self.k, side="right").astype(np.int64)
        end = np.arange(1, num_values + 1, dtype=np.int64)
        return start, end


def _epoch_seconds(ts: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(ts):
        as_utc = ts.dt.tz_convert("UTC") if ts.dt.tz is not None else ts
        return (as_utc - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy(float)
    return ts.to_numpy(float)


def miner_features(
    history: pd.DataFrame, schema: FeatureSchema, poll_interval_s: float
) -> pd.DataFrame:
    """Features of one miner at each row of its history (columns ``FLAT_FIELDS``).

    Rows must be in time order; a row not strictly later than the rows before it is dropped,
    as the streaming path drops it. Gaps are simply absent rows; ``NaN`` cells are missing
    readings. The result has one column per feature, indexed like the kept rows.
    """
    missing = [f for f in FLAT_FIELDS if f not in history.columns]
    if missing:
        raise ValueError(f"history lacks columns {missing}")
    t_s = _epoch_seconds(history["ts"])
    t_ms = np.rint(t_s * 1000.0).astype(np.int64)
    running = np.maximum.accumulate(np.concatenate(([np.iinfo(np.int64).min], t_ms[:-1])))
    keep = t_ms > running
    frame = history.loc[keep]
    t_ms = t_ms[keep]
    cur = {f: frame[f].to_numpy(dtype=float, na_value=np.nan) for f in FLAT_FIELDS if f != "ts"}
    cur["ts"] = t_s[keep]
    prev = {f: np.concatenate(([np.nan], v[:-1])) for f, v in cur.items()}
    signals = {
        s.name: pd.Series(v, dtype=float)
        for s, v in zip(SIGNALS, derive(cur, prev, VECTOR), strict=True)
    }
    # Hours from the first sample, as the streaming windows measure time for slopes.
    t_h = pd.Series((t_ms - (t_ms[0] if len(t_ms) else 0)) / MS_PER_HOUR)
    out: dict[str, np.ndarray] = {}
    for window in schema.windows:
        width = window.width_ms
        bucket = t_ms // width
        indexer = BucketWindowIndexer(bucket, WINDOW_BUCKETS)
        covered = (t_ms - (bucket - WINDOW_BUCKETS + 1) * width) / (poll_interval_s * 1000.0)
        for f in (f for f in schema.features if f.window == window.name):
            x = signals[f.signal]
            roll = x.rolling(indexer, min_periods=1)
            if f.stat == "count":
                value = roll.count()
            elif f.stat == "coverage":
                value = np.minimum(1.0, roll.count() / covered)
            elif f.stat == "mean":
                value = roll.mean()
            elif f.stat == "std":
                value = roll.std(ddof=1)
            elif f.stat == "min":
                value = roll.min()
            elif f.stat == "max":
                value = roll.max()
            elif f.stat == "sum":
                value = roll.sum()
            elif f.stat == "slope":
                value = _slope(x, t_h, indexer, window.span_s / 3600.0)
            else:  # pragma: no cover - the schema only produces the stats above
                raise ValueError(f"unknown statistic {f.stat!r}")
            out[f.name] = np.asarray(value, dtype=float)
    return pd.DataFrame(out, index=frame.index, columns=list(schema.names))


#: Running sums lose accuracy on a window whose samples are bunched in time relative to the
#: span they have travelled (error ~ eps * span^2 / M2_t): an outage of just under the span,
#: then two polls 30 s apart, costs pandas' slope 2e-8 relative. Windows past this estimated
#: relative error are recomputed exactly.
SLOPE_RECOMPUTE_ABOVE = 1e-13
#: Padded-gather chunk for the exact recompute (rows x window length elements).
RECOMPUTE_CHUNK_ELEMENTS = 2_000_000


def _slope(x: pd.Series, t_h: pd.Series, indexer: BucketWindowIndexer, span_h: float) -> pd.Series:
    """Least-squares slope per hour: cov(t, x) / var(t) over the rows where x is present."""
    t = t_h.where(x.notna())
    # Centre both series: the rolling covariance is a difference of means of products, so
    # small magnitudes keep it accurate (the statistic itself is shift-invariant).
    tc = t - t.mean()
    xc = x - x.mean()
    cov = xc.rolling(indexer, min_periods=2).cov(tc, ddof=1)
    var = tc.rolling(indexer, min_periods=2).var(ddof=1)
    count = x.rolling(indexer, min_periods=1).count().to_numpy()
    slope = (cov / var.where(var > 0)).to_numpy(copy=True)
    m2t = var.to_numpy() * (count - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        risk = np.finfo(float).eps * span_h**2 * np.sqrt(max(len(x), 1)) / m2t
    redo = np.flatnonzero((count >= 2) & ~(risk <= SLOPE_RECOMPUTE_ABOVE))
    if len(redo):
        start, end = indexer.get_window_bounds(len(x))
        slope[redo] = _exact_slopes(x.to_numpy(float), t_h.to_numpy(float), start[redo], end[redo])
    return pd.Series(slope, index=x.index)


def _exact_slopes(x: np.ndarray, t: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Two-pass slope of each window ``[start, end)``, time measured from the window's end."""
    out = np.empty(len(start))
    longest = int((end - start).max())
    step = max(1, RECOMPUTE_CHUNK_ELEMENTS // max(longest, 1))
    for lo in range(0, len(start), step):
        s, e = start[lo : lo + step], end[lo : lo + step]
        idx = s[:, None] + np.arange(longest)[None, :]
        inside = idx < e[:, None]
        idx = np.minimum(idx, len(x) - 1)
        xs = np.where(inside, x[idx], np.nan)
        ts = t[idx] - t[e - 1][:, None]
        m = ~np.isnan(xs)
        n = m.sum(axis=1)
        mt = np.where(m, ts, 0.0).sum(axis=1) / np.maximum(n, 1)
        mx = np.where(m, xs, 0.0).sum(axis=1) / np.maximum(n, 1)
        dt = np.where(m, ts - mt[:, None], 0.0)
        dx = np.where(m, xs - mx[:, None], 0.0)
        m2t = (dt * dt).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[lo : lo + step] = np.where(
                (n >= 2) & (m2t > 0), (dt * dx).sum(axis=1) / m2t, np.nan
            )
    return out


def fleet_features(
    history: pd.DataFrame, schema: FeatureSchema, poll_interval_s: float
) -> pd.DataFrame:
    """Features for a multi-miner history with a ``miner_id`` column (sorted by time per miner)."""
    parts = [
        miner_features(group, schema, poll_interval_s).assign(miner_id=miner_id, ts=group["ts"])
        for miner_id, group in history.groupby("miner_id", sort=False)
    ]
    if not parts:
        return pd.DataFrame(columns=[*schema.names, "miner_id", "ts"])
    return pd.concat(parts)
