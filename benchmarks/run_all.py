"""Run every benchmark in this folder (``--quick`` by default) and collect their JSON lines.

Each benchmark prints one JSON object as its last line; this prints a summary table of the
keys that carry a ratio against the baseline measured in the same run, then all results as
one JSON object (the last line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Benchmarks in the order they run (cheap first).
ORDER = ("features", "inference", "simulator", "poll", "optimizer")
#: A benchmark that runs longer than this in --quick mode is reported as failed.
QUICK_TIMEOUT_S = 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="run without --quick")
    parser.add_argument("names", nargs="*", default=list(ORDER))
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results: dict[str, object] = {}
    failed = []
    for name in args.names:
        cmd = [sys.executable, str(HERE / f"{name}.py")] + ([] if args.full else ["--quick"])
        sys.stdout.write(f"== {name}: {' '.join(cmd[1:])}\n")
        sys.stdout.flush()
        t0 = time.monotonic()
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=env,
            timeout=None if args.full else QUICK_TIMEOUT_S,
        )
        lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
        try:
            result = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
        except json.JSONDecodeError:
            result = None
        if result is None:
            failed.append(name)
            sys.stdout.write(f"   FAILED (exit {proc.returncode})\n{proc.stderr[-2000:]}\n")
            continue
        results[name] = result
        ratios = {
            k: v for k, v in result.items() if "ratio" in k or "speedup" in k or "regret" in k
        }
        sys.stdout.write(f"   {time.monotonic() - t0:.0f} s  {json.dumps(ratios)}\n")
    sys.stdout.write(json.dumps({"results": results, "failed": failed}) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
