"""Rolling features: incremental windows vs recomputing with pandas vs a per-row loop.

Scenario (issue 4): 1,000 miners x 1,000 polls 30 s apart (8.3 h of history, so every
window up to 7 d holds the whole history), the default schema (5 windows, 145 features).
After each poll each method must have that miner's current feature vector:

* incremental: ``MinerFeatures.add`` (O(1)) + ``vector()`` (read every feature);
* pandas: ``features.batch.miner_features`` over the miner's history so far, last row;
* rowloop: the old pipeline's shape -- ``iterrows`` over the history, filtering each
  window by time in Python -- computing only the newest row (generous to it).

The incremental path runs every (miner, poll) of the scenario (``--quick``: a subset of
miners). The baselines are timed on polls sampled evenly over history lengths 1..1,000 and
their mean cost per update is multiplied out, since running them on all 10^6 updates
would take hours. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from agent.features.batch import miner_features
from agent.features.extract import FeatureSchema, MinerFeatures
from agent.features.signals import FLAT_FIELDS, SIGNALS, VECTOR, derive

POLL_S = 30.0
T0 = 1_750_000_000.0


def history(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """One miner's flat records: noisy telemetry, 5 % gaps, occasional missing readings."""
    ts = T0 + np.cumsum(
        rng.choice([POLL_S, POLL_S, POLL_S, 2 * POLL_S], size=n) + rng.uniform(-1, 1, n)
    )
    temp = 75 + np.cumsum(rng.normal(0, 0.1, n))
    hr = 100 + rng.normal(0, 2, n)

    def holes(x: np.ndarray, p: float) -> np.ndarray:
        return np.where(rng.random(n) < p, np.nan, x)

    return pd.DataFrame(
        {
            "ts": ts,
            "hashrate_ths": holes(hr, 0.01),
            "expected_ths": np.full(n, 104.0),
            "power_w": holes(3000 + rng.normal(0, 15, n), 0.02),
            "rated_power_w": np.full(n, 3068.0),
            "chip_temp_max_c": holes(temp + 5, 0.02),
            "chip_temp_mean_c": holes(temp, 0.02),
            "board_temp_max_c": holes(temp - 10, 0.02),
            "board_temp_mean_c": holes(temp - 12, 0.02),
            "chips": np.full(n, 378.0),
            "expected_chips": np.full(n, 378.0),
            "boards_hashing": np.full(n, 3.0),
            "expected_boards": np.full(n, 3.0),
            "fans_ok": np.full(n, 4.0),
            "expected_fans": np.full(n, 4.0),
            "fan_rpm_mean": 5000 + rng.normal(0, 50, n),
            "hw_errors": np.cumsum(rng.integers(0, 3, n)).astype(float),
            "accepted": np.cumsum(rng.integers(5, 30, n)).astype(float),
            "rejected": np.cumsum(rng.integers(0, 2, n)).astype(float),
            "uptime_s": ts - T0 + 1000,
            "is_mining": np.ones(n),
        }
    )


def run_incremental(
    frames: list[pd.DataFrame], schema: FeatureSchema
) -> tuple[float, float, list[MinerFeatures]]:
    """Feed every poll of every miner in time order; returns (add s, read s, states)."""
    records = [f[list(FLAT_FIELDS)].to_dict("records") for f in frames]
    states = [MinerFeatures(schema, POLL_S) for _ in frames]
    add_s = read_s = 0.0
    n = len(records[0])
    for i in range(n):
        t0 = time.perf_counter()
        for state, recs in zip(states, records, strict=True):
            state.add(recs[i])
        t1 = time.perf_counter()
        for state in states:
            state.vector()
        add_s += t1 - t0
        read_s += time.perf_counter() - t1
    return add_s, read_s, states


def rowloop_last(hist: pd.DataFrame, schema: FeatureSchema) -> dict[str, float]:
    """The old pipeline's shape: iterrows over the history, filter each window in Python."""
    cur = {f: hist[f].to_numpy(float) for f in FLAT_FIELDS}
    prev = {f: np.concatenate(([np.nan], v[:-1])) for f, v in cur.items()}
    frame = hist.assign(
        **{s.name: v for s, v in zip(SIGNALS, derive(cur, prev, VECTOR), strict=True)}
    )
    t_now = float(hist["ts"].iloc[-1])
    out: dict[str, float] = {}
    for window in schema.windows:
        picked: dict[str, list[tuple[float, float]]] = {s.name: [] for s in SIGNALS}
        for _, row in frame.iterrows():
            if row["ts"] > t_now - window.span_s:
                for s in SIGNALS:
                    v = row[s.name]
                    if not math.isnan(v):
                        picked[s.name].append((row["ts"], v))
        for f in (f for f in schema.features if f.window == window.name):
            pts = picked[f.signal]
            vals = [v for _, v in pts]
            if f.stat in ("count", "coverage"):
                out[f.name] = len(vals)
            elif not vals:
                out[f.name] = math.nan
            elif f.stat == "mean":
                out[f.name] = statistics.fmean(vals)
            elif f.stat == "std":
                out[f.name] = statistics.stdev(vals) if len(vals) > 1 else math.nan
            elif f.stat == "min":
                out[f.name] = min(vals)
            elif f.stat == "max":
                out[f.name] = max(vals)
            elif f.stat == "sum":
                out[f.name] = sum(vals)
            elif f.stat == "slope":
                out[f.name] = (
                    statistics.linear_regression([t for t, _ in pts], vals).slope * 3600
                    if len(vals) > 1
                    else math.nan
                )
    return out


def time_sampled(fn, frames: list[pd.DataFrame], lengths: list[int]) -> float:
    """Mean seconds of ``fn(history[:length])`` over the sampled (miner, length) pairs."""
    times = []
    for k, length in enumerate(lengths):
        hist = frames[k % len(frames)].iloc[:length]
        t0 = time.perf_counter()
        fn(hist)
        times.append(time.perf_counter() - t0)
    return statistics.fmean(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="under a minute: fewer miners run")
    parser.add_argument("--miners", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    run_miners = 20 if args.quick else args.miners
    n_pandas = 20 if args.quick else 100
    n_rowloop = 3 if args.quick else 20
    rng = np.random.default_rng(42)
    schema = FeatureSchema()
    frames = [history(rng, args.samples) for _ in range(run_miners)]

    add_s, read_s, states = run_incremental(frames, schema)
    # Memory in a separate, untimed pass: tracemalloc slows every allocation several-fold.
    mem_miners = min(5, run_miners)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = run_incremental(frames[:mem_miners], schema)[2]
    state_bytes = (tracemalloc.get_traced_memory()[0] - before) / mem_miners
    tracemalloc.stop()
    del kept
    updates = run_miners * args.samples
    inc_us = (add_s + read_s) / updates * 1e6

    # Check the incremental state against the batch path on the final row (it must agree).
    last = miner_features(frames[0], schema, POLL_S).iloc[-1].to_numpy()
    mine = states[0].vector()
    agree = bool(np.allclose(mine, last, rtol=1e-9, atol=1e-9, equal_nan=True))

    lengths_p = np.linspace(1, args.samples, n_pandas).astype(int).tolist()
    lengths_r = np.linspace(1, args.samples, n_rowloop).astype(int).tolist()
    pandas_us = (
        time_sampled(lambda h: miner_features(h, schema, POLL_S).iloc[-1], frames, lengths_p) * 1e6
    )
    rowloop_us = time_sampled(lambda h: rowloop_last(h, schema), frames, lengths_r) * 1e6
    total = args.miners * args.samples
    result = {
        "benchmark": "features",
        "miners": args.miners,
        "samples": args.samples,
        "features": len(schema),
        "windows": [w.name for w in schema.windows],
        "incremental_miners_run": run_miners,
        "incremental_add_us": round(add_s / updates * 1e6, 1),
        "incremental_read_us": round(read_s / updates * 1e6, 1),
        "incremental_us_per_update": round(inc_us, 1),
        "pandas_us_per_update": round(pandas_us, 1),
        "rowloop_us_per_update": round(rowloop_us, 1),
        "incremental_total_s": round(inc_us * total / 1e6, 1),
        "pandas_total_s_est": round(pandas_us * total / 1e6, 1),
        "rowloop_total_s_est": round(rowloop_us * total / 1e6, 1),
        "speedup_vs_pandas": round(pandas_us / inc_us, 1),
        "speedup_vs_rowloop": round(rowloop_us / inc_us, 1),
        "state_kib_per_miner": round(state_bytes / 1024, 1),
        "incremental_matches_batch": agree,
        "baseline_samples": {"pandas": n_pandas, "rowloop": n_rowloop},
        "quick": args.quick,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
