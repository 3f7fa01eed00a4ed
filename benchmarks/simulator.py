"""Benchmark: memory and CPU of the simulated farm at 1,000 and 5,000 miners.

Each size runs in its own subprocess (clean RSS): build the farm, start every listener,
measure RSS and CPU while idle, then under a read load from a simple in-process client
(``summary`` on 4028, alternating with ``stats``/``devs`` per firmware, bounded concurrency).
The client shares the process, so CPU under load includes the client's share.
Budget: 5,000 units in one process within 1.5 GB RSS (the simulator brief).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/simulator.py [--quick]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

#: RSS budget for 5,000 units in one process (simulator brief).
RSS_BUDGET_MB = 1536.0
#: Fleet mix of the brief's CLI example (per 200 units), scaled to each size.
MIX = {"s19jpro": 50, "s19xp": 50, "s21": 20, "m30s": 40, "m50": 20, "m60s": 20}
#: Concurrent client connections during the load phase (a poller's typical bound).
CONCURRENCY = 100
SIZES = (1000, 5000)
#: One-at-a-time requests measured before the load (latency without queueing).
SEQUENTIAL_REQUESTS = 200


def scaled_mix(total: int) -> dict[str, int]:
    from agent.simulator.cli import scale_mix

    return scale_mix(MIX, total)


async def _one(host: str, port: int, payload: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return time.perf_counter() - started, len(data)


async def child(size: int, idle_s: float, rounds: int) -> dict[str, Any]:
    import psutil
    import structlog

    from agent.simulator.clock import SimClock
    from agent.simulator.farm import Farm

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    proc = psutil.Process()

    def rss() -> float:
        return proc.memory_info().rss / 2**20

    def cpu() -> float:
        t = proc.cpu_times()
        return t.user + t.system

    rss_import = rss()
    root = os.geteuid() == 0
    base = f"127.{random.SystemRandom().randint(16, 250)}.0.1"
    t0 = time.perf_counter()
    farm = Farm(
        scaled_mix(size), seed=1, clock=SimClock(speed=60.0), base_address=base, ports_mode=not root
    )
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await farm.start()
    start_s = time.perf_counter() - t0
    try:
        c0, w0 = cpu(), time.perf_counter()
        await asyncio.sleep(idle_s)
        idle_cpu_pct = 100.0 * (cpu() - c0) / (time.perf_counter() - w0)
        rss_idle = rss()
        devices = list(farm.units.values())
        payloads = []
        for r in range(rounds):
            for d in devices:
                second = (
                    b'{"command":"stats"}' if d.firmware == "antminer" else b'{"command":"devs"}'
                )
                payloads.append(
                    (d.host, d.ports.rpc, b'{"command":"summary"}' if r % 2 == 0 else second)
                )
        sem = asyncio.Semaphore(CONCURRENCY)

        async def bounded(item: tuple[str, int, bytes]) -> tuple[float, int]:
            async with sem:
                return await _one(*item)

        sequential = sorted(
            [(await _one(*payloads[i % len(payloads)]))[0] for i in range(SEQUENTIAL_REQUESTS)]
        )
        c0, w0 = cpu(), time.perf_counter()
        results = await asyncio.gather(*(bounded(p) for p in payloads))
        wall = time.perf_counter() - w0
        load_cpu = cpu() - c0
        latencies = sorted(r[0] for r in results)
        failures = sum(1 for r in results if r[1] == 0)
        return {
            "units": len(devices),
            "listeners": sum(len(d.listeners) for d in devices),
            "per_unit_addresses": root,
            "build_s": round(build_s, 2),
            "start_s": round(start_s, 2),
            "rss_import_mb": round(rss_import, 1),
            "rss_idle_mb": round(rss_idle, 1),
            "rss_per_unit_kb": round((rss_idle - rss_import) * 1024 / len(devices), 1),
            "idle_cpu_pct": round(idle_cpu_pct, 2),
            "load_requests": len(payloads),
            "load_failures": failures,
            "load_req_per_s": round(len(payloads) / wall, 1),
            "load_cpu_pct": round(100.0 * load_cpu / wall, 1),
            "load_cpu_ms_per_request": round(1000.0 * load_cpu / len(payloads), 3),
            "sequential_p50_ms": round(1000 * statistics.median(sequential), 3),
            "latency_p50_ms": round(1000 * statistics.median(latencies), 2),
            "latency_p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 2),
            "rss_after_load_mb": round(rss(), 1),
            "rss_budget_ratio": round(rss() / RSS_BUDGET_MB, 3),
        }
    finally:
        await farm.stop()


def run_size(size: int, quick: bool) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", str(size)] + (["--quick"] if quick else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"size {size} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short windows (< 1 min total)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    idle_s, rounds = (2.0, 1) if args.quick else (10.0, 4)
    if args.child is not None:
        result = asyncio.run(child(args.child, idle_s, rounds))
        print(json.dumps(result))
        return 0
    started = time.perf_counter()
    results = {}
    for size in SIZES:
        results[str(size)] = run_size(size, args.quick)
        r = results[str(size)]
        print(
            f"{size:>5} units: idle RSS {r['rss_idle_mb']} MB ({r['rss_per_unit_kb']} KB/unit), "
            f"idle CPU {r['idle_cpu_pct']} %, load {r['load_req_per_s']} req/s at "
            f"{r['load_cpu_pct']} % CPU, p95 {r['latency_p95_ms']} ms, "
            f"sequential p50 {r['sequential_p50_ms']} ms"
        )
    big = results[str(SIZES[-1])]
    summary = {
        "benchmark": "simulator",
        "quick": args.quick,
        "sizes": results,
        "rss_5000_mb": big["rss_after_load_mb"],
        "rss_budget_mb": RSS_BUDGET_MB,
        "within_budget": big["rss_after_load_mb"] <= RSS_BUDGET_MB,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
