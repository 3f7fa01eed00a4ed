"""Compiled (tl2cgen + ctypes) vs XGBoost inference on the same models, in one run.

Usage: python benchmarks/inference.py [--quick] [--bundle DIR]

Without --bundle, a bundle of fixed-parameter models the size of the trained ones (250 trees,
depth 4; real data and simulated telemetry) is built in a temporary directory. For every model:
single-row latency (compiled ctypes row vs ``Booster.inplace_predict`` on a 1-row array),
10,000-row batch throughput (compiled through the C shim, compiled through a Python loop,
XGBoost with one thread), and the max |compiled - XGBoost| on those 10,000 rows. Then the
RSS of a fresh agent process that loads every model through ``agent.inference`` and
predicts. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import xgboost as xgb

from agent.inference.bundle import open_bundle
from agent.inference.model import load_model
from central.compile import random_rows, split_thresholds

BATCH_ROWS = 10_000
AGENT_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from agent.inference.bundle import open_bundle
from agent.inference.hashprice import HashpriceForecaster
from agent.inference.miner import MinerResponseModel, profile_features
from agent.profiles import load_profiles
b = open_bundle(sys.argv[1])
fcs = [HashpriceForecaster(b, h) for h in (1, 7)]
miner = MinerResponseModel(b)
feats = {**profile_features(load_profiles()["s19jpro"]), "ambient_c": 25.0}
miner.predict(feats)
[fc.forecast({}, 0.05) for fc in fcs]
heavy = sorted({m.split(".")[0] for m in sys.modules} &
               {"xgboost", "sklearn", "pandas", "scipy", "treelite", "tl2cgen"})
# VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss across fork + exec.
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"rss_mb": int(status["VmHWM"].split()[0]) / 1024,
                  "startup_ms": (time.perf_counter() - t0) * 1000, "heavy_modules": heavy}))
"""


def _median_us(fn, calls: int, repeats: int) -> float:
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(calls)
        per_call.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(per_call)


def bench_model(bundle_dir: Path, name: str, quick: bool) -> dict[str, float]:
    """Latency, throughput and agreement of one model."""
    bundle = open_bundle(bundle_dir)
    entry = bundle.model(name)
    booster = xgb.Booster()
    booster.load_model(str(bundle_dir / entry.files["native"]))
    booster.set_param({"nthread": 1})
    reference = np.asarray([g.x for g in entry.golden], dtype=float)
    rows = random_rows(reference, BATCH_ROWS, seed=5, thresholds=split_thresholds(booster))
    as_lists = rows.tolist()
    compiled = load_model(bundle, name)
    looped = load_model(bundle, name, use_shim=False)
    repeats = 3 if quick else 7
    n_row, n_xgb = (1000, 150) if quick else (3000, 500)

    def run_compiled(n: int) -> None:
        for i in range(n):
            compiled.predict_row(as_lists[i])

    def run_xgb(n: int) -> None:
        for i in range(n):
            booster.inplace_predict(rows[i : i + 1])

    row_us = _median_us(run_compiled, n_row, repeats)
    xgb_us = _median_us(run_xgb, n_xgb, repeats)

    def rate(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return BATCH_ROWS / statistics.median(times)

    batch = rate(lambda: compiled.predict_batch(rows))
    loop = rate(lambda: looped.predict_batch(rows)) if not quick else float("nan")
    xgb_batch = rate(lambda: booster.inplace_predict(rows))
    diff = float(np.max(np.abs(compiled.predict_batch(rows) - booster.inplace_predict(rows))))
    return {
        "trees": booster.num_boosted_rounds(),
        "features": entry.num_feature,
        "single_row_us": row_us,
        "xgboost_single_row_us": xgb_us,
        "single_row_speedup": xgb_us / row_us,
        "batch_rows_per_s": batch,
        "batch_loop_rows_per_s": loop,
        "xgboost_batch_rows_per_s": xgb_batch,
        "max_abs_diff": diff,
    }


def agent_process(bundle_dir: Path) -> dict:
    """RSS and startup of a fresh agent process that loads every model and predicts."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    out = subprocess.run(
        [sys.executable, "-c", AGENT_CHILD, str(bundle_dir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 1 minute)")
    parser.add_argument("--bundle", type=Path, help="an existing bundle directory")
    args = parser.parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = args.bundle
        if bundle_dir is None:
            from central.fixed_bundle import build_fixed_bundle

            bundle_dir = build_fixed_bundle(Path(tmp) / "bundle", rounds=250, max_depth=4)
        build_s = time.perf_counter() - t0
        names = list(open_bundle(bundle_dir).manifest.models)
        per_model = {}
        for name in names:
            per_model[name] = bench_model(bundle_dir, name, args.quick)
            m = per_model[name]
            print(
                f"{name:16s} trees={m['trees']:4d} row {m['single_row_us']:6.1f} us vs "
                f"xgboost {m['xgboost_single_row_us']:6.1f} us ({m['single_row_speedup']:5.1f}x)"
                f" | batch {m['batch_rows_per_s']:9.0f} rows/s (loop "
                f"{m['batch_loop_rows_per_s']:7.0f}) vs xgboost "
                f"{m['xgboost_batch_rows_per_s']:9.0f} | max diff {m['max_abs_diff']:.1e}"
            )
        agent = agent_process(bundle_dir)
    med = {
        k: statistics.median(m[k] for m in per_model.values())
        for k in (
            "single_row_us",
            "xgboost_single_row_us",
            "batch_rows_per_s",
            "xgboost_batch_rows_per_s",
        )
    }
    result = {
        "single_row_us": round(med["single_row_us"], 2),
        "xgboost_single_row_us": round(med["xgboost_single_row_us"], 1),
        "single_row_speedup": round(med["xgboost_single_row_us"] / med["single_row_us"], 1),
        "batch_rows_per_s": round(med["batch_rows_per_s"]),
        "xgboost_batch_rows_per_s": round(med["xgboost_batch_rows_per_s"]),
        "max_abs_diff": max(m["max_abs_diff"] for m in per_model.values()),
        "agent_rss_mb": round(agent["rss_mb"], 1),
        "agent_startup_ms": round(agent["startup_ms"]),
        "agent_heavy_modules": agent["heavy_modules"],
        "models": len(per_model),
        "batch_rows": BATCH_ROWS,
        "bundle_build_s": round(build_s, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "quick": args.quick,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
