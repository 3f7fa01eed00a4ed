"""Compiled (tl2cgen + ctypes) vs XGBoost inference on the same models, in one run.

Usage: python benchmarks/inference.py [--quick] [--bundle DIR]

Which bundle: ``--bundle DIR``; else ``$HASHPILOT_BUNDLE``; else the full training's bundle
at ``build/profit-models/bundle`` (``hashpilot-central train --out build/profit-models``);
else a ``--quick`` training cached at ``build/bench-quick/bundle`` (trained on first use,
about a minute, and reused). So the numbers are for the real trained models, not for
stand-ins. For every model: single-row latency (compiled ctypes row vs
``Booster.inplace_predict`` on a 1-row array), 10,000-row batch throughput (compiled through
the C shim, compiled through a Python loop, XGBoost with one thread), the speedups, and the
max |compiled - XGBoost| on those 10,000 rows. Then the RSS of a fresh agent process that
loads every model through ``agent.inference`` and predicts.

The last line is one JSON object. Its headline keys (``single_row_us`` ...
``xgboost_batch_rows_per_s``) all describe ONE model, the one with the worst single-row
speedup (``headline_model``), so each ratio compares like with like; every model's numbers
are under ``per_model`` and the worst single-row and batch speedups are named.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

from agent.errors import BundleError
from agent.inference.bundle import open_bundle
from agent.inference.model import load_model
from central.compile import random_rows, split_thresholds

REPO = Path(__file__).resolve().parent.parent
BATCH_ROWS = 10_000
#: Where the full training puts its bundle when run as the docstring says.
FULL_BUNDLE = REPO / "build" / "profit-models" / "bundle"
#: Where this benchmark caches the quick training it falls back to.
QUICK_DIR = REPO / "build" / "bench-quick"
#: A --quick training takes ~1 minute on an idle 2-core box; allow for a busy one.
TRAIN_TIMEOUT_S = 600
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
    loop = rate(lambda: looped.predict_batch(rows)) if not quick else None
    xgb_batch = rate(lambda: booster.inplace_predict(rows))
    diff = float(np.max(np.abs(compiled.predict_batch(rows) - booster.inplace_predict(rows))))
    return {
        "trees": booster.num_boosted_rounds(),
        "features": entry.num_feature,
        "batch_backend": compiled.batch_backend,
        "single_row_us": round(row_us, 2),
        "xgboost_single_row_us": round(xgb_us, 1),
        "single_row_speedup": round(xgb_us / row_us, 1),
        "batch_rows_per_s": round(batch),
        "batch_loop_rows_per_s": None if loop is None else round(loop),
        "xgboost_batch_rows_per_s": round(xgb_batch),
        "batch_speedup": round(batch / xgb_batch, 2),
        "max_abs_diff": diff,
    }


def _opens(bundle_dir: Path) -> bool:
    try:
        open_bundle(bundle_dir)
    except BundleError:
        return False
    return True


def find_bundle(arg: Path | None) -> tuple[Path, str]:
    """The bundle to measure and where it came from (see the module docstring)."""
    if arg is not None:
        return arg, "--bundle"
    env = os.environ.get("HASHPILOT_BUNDLE")
    if env:
        return Path(env), "HASHPILOT_BUNDLE"
    if _opens(FULL_BUNDLE):
        return FULL_BUNDLE, "full training (build/profit-models)"
    cached = QUICK_DIR / "bundle"
    if _opens(cached):
        return cached, "quick training (cached in build/bench-quick)"
    QUICK_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-quick-", dir=QUICK_DIR.parent))
    env_vars = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = ["-m", "central.cli", "--log-level", "WARNING", "train", "--out", str(tmp), "--quick"]
    subprocess.run(
        [sys.executable, *cmd],
        check=True,
        capture_output=True,
        timeout=TRAIN_TIMEOUT_S,
        env=env_vars,
        cwd=REPO,
    )
    if QUICK_DIR.exists():
        shutil.rmtree(QUICK_DIR)
    tmp.rename(QUICK_DIR)
    return cached, "quick training (trained now, cached in build/bench-quick)"


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
    bundle_dir, source = find_bundle(args.bundle)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    bundle = open_bundle(bundle_dir)
    names = list(bundle.manifest.models)
    per_model = {}
    for name in names:
        per_model[name] = bench_model(bundle_dir, name, args.quick)
        m = per_model[name]
        loop = m["batch_loop_rows_per_s"]
        print(
            f"{name:16s} trees={m['trees']:4d} row {m['single_row_us']:6.1f} us vs "
            f"xgboost {m['xgboost_single_row_us']:6.1f} us ({m['single_row_speedup']:5.1f}x)"
            f" | batch {m['batch_rows_per_s']:9d} rows/s (loop "
            f"{'-' if loop is None else loop}) vs xgboost "
            f"{m['xgboost_batch_rows_per_s']:9d} ({m['batch_speedup']:.2f}x)"
            f" | max diff {m['max_abs_diff']:.1e}"
        )
    agent = agent_process(bundle_dir)
    worst_row = min(per_model, key=lambda n: per_model[n]["single_row_speedup"])
    worst_batch = min(per_model, key=lambda n: per_model[n]["batch_speedup"])
    head = per_model[worst_row]
    result = {
        "headline_model": worst_row,
        "single_row_us": head["single_row_us"],
        "xgboost_single_row_us": head["xgboost_single_row_us"],
        "single_row_speedup": head["single_row_speedup"],
        "batch_rows_per_s": head["batch_rows_per_s"],
        "xgboost_batch_rows_per_s": head["xgboost_batch_rows_per_s"],
        "batch_speedup": head["batch_speedup"],
        "worst_single_row_speedup": {"model": worst_row, "value": head["single_row_speedup"]},
        "worst_batch_speedup": {
            "model": worst_batch,
            "value": per_model[worst_batch]["batch_speedup"],
        },
        "single_row_speedups": {n: m["single_row_speedup"] for n, m in per_model.items()},
        "batch_speedups": {n: m["batch_speedup"] for n, m in per_model.items()},
        "max_abs_diff": max(m["max_abs_diff"] for m in per_model.values()),
        "agent_rss_mb": round(agent["rss_mb"], 1),
        "agent_startup_ms": round(agent["startup_ms"]),
        "agent_heavy_modules": agent["heavy_modules"],
        "per_model": per_model,
        "models": len(per_model),
        "batch_rows": BATCH_ROWS,
        "bundle": str(bundle_dir),
        "bundle_id": bundle.manifest.bundle_id,
        "bundle_source": source,
        "bundle_build_s": round(build_s, 1),
        "bench_s": round(time.perf_counter() - t1, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "quick": args.quick,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
