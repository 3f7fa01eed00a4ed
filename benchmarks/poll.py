"""Poll cycle at fleet scale: hashpilot's poller vs pyasic on the same simulated farm.

A simulated farm (``hashpilot-sim``, its own process so its CPU is not counted) serves N
miners of mixed models on per-unit loopback addresses with the REAL ports, because pyasic
cannot be pointed at other ports. Then, each in its own subprocess (clean CPU and RSS):

* ours: the daemon's cycle -- ``Poller`` over drivers built from the simulator's inventory,
  every result committed to the SQLite store (one transaction, durable) and fed to the
  streaming features (``Backbone``) -- one warm-up cycle, then ``--cycles`` cycles;
* pyasic 0.79.0: ``get_miner`` per host once (identification, not timed), then cycles of
  ``get_data()`` for every miner under the same concurrency bound, no storage.

Then 10 % of the units are made to hang (accept, never answer) through the simulator's admin
endpoint and ours runs one more cycle: it must end within the poll timeout + 20 %.
CPU is user + system time of the polling process per cycle; ``cpu_ratio_vs_pyasic`` is
pyasic's CPU / ours (ours includes the store and the features, pyasic only reads).
Needs root (binding port 80 on 127.x addresses). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: Fleet mix of the simulator brief's example (stock firmware: pyasic reads all of them).
MIX = "s19jpro:50,s19xp:50,s21:20,m30s:40,m50:20,m60s:20"
#: Requests in flight for both clients (the agent's default bound).
CONCURRENCY = 256
HUNG_FRACTION = 0.10
#: pyasic's own per-miner bound, so one stuck miner cannot hold its cycle forever.
PYASIC_TIMEOUT_S = 30.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _sim_cpu(pid: int | None) -> float:
    """CPU seconds the simulator process has used (its own and its threads')."""
    if not pid:
        return 0.0
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


# -- workers (subprocesses) -----------------------------------------------------------------


async def worker_ours(args: argparse.Namespace) -> dict[str, Any]:
    from agent import logs
    from agent.commands.run import _Fleet
    from agent.config import load_settings
    from agent.drivers.factory import identify, make_driver
    from agent.features.extract import FeatureSchema, FleetFeatures
    from agent.poller import Poller
    from agent.profiles import find_profile
    from agent.scheduler import Backbone
    from agent.store import AsyncStore, Store

    logs.configure("ERROR")
    settings = load_settings(args.workdir / "agent.toml")
    coordinators = await _Fleet(settings, make_driver, identify).initial({})
    gc.freeze()  # as serve() does once the fleet is built
    poller = Poller(coordinators, max_in_flight=args.concurrency, jitter_s=0.0)
    store = AsyncStore(Store(settings.store_path, disk_cap_bytes=settings.disk_cap_bytes))
    features = FleetFeatures(
        FeatureSchema(settings.feature_windows),
        settings.poll_interval_s,
        lambda s: find_profile(s.model, s.make),
    )
    backbone = Backbone(poller, store, features, poll_interval_s=settings.poll_interval_s)
    sink = poller.sink
    sink_cpu = []

    async def timed_sink(report: Any) -> None:
        c0 = _cpu()
        assert sink is not None
        await sink(report)
        sink_cpu.append(_cpu() - c0)

    poller.sink = timed_sink
    cycles = []
    for i in range(args.cycles + 1):
        # Cycles run back to back here; in the daemon they are 30 s apart and every healthy
        # miner is due. Make every miner due so each measured cycle polls the whole fleet.
        for c in coordinators:
            c.next_due = float("-inf")
        sim0 = _sim_cpu(args.sim_pid)
        c0, t0 = _cpu(), time.perf_counter()
        stats = await poller.run_cycle()
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        assert stats is not None
        if i:  # the first cycle warms connections, caches and imports
            sim = _sim_cpu(args.sim_pid) - sim0
            cycles.append(
                {"wall": wall, "cpu": cpu, "ok": stats.ok, "gaps": stats.gaps, "sim_cpu": sim}
            )
    hung_cycles = []
    if args.admin:
        hung = await asyncio.to_thread(hang_units, args.admin, args.inventory, HUNG_FRACTION)
        for c in coordinators:
            c.next_due = float("-inf")
        t0 = time.perf_counter()
        stats = await poller.run_cycle()
        assert stats is not None
        hung_cycles.append(
            {"wall": time.perf_counter() - t0, "ok": stats.ok, "gaps": stats.gaps, "hung": hung}
        )
    out = {
        "miners": len(coordinators),
        "cycles": cycles,
        "hung_cycles": hung_cycles,
        "store_features_cpu_s": statistics.median(sink_cpu[1:]),
        "rss_mb": _rss_mb(),
        "last_cycle_id": backbone.last_cycle_id,
    }
    await poller.shutdown()
    await store.close()
    return out


async def worker_pyasic(args: argparse.Namespace) -> dict[str, Any]:
    import logging
    import tomllib
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    import pyasic

    inventory = tomllib.loads(args.inventory.read_text(encoding="utf-8"))
    hosts = [m["host"] for m in inventory["miners"]]
    gate = asyncio.Semaphore(args.concurrency)

    async def find(host: str, gate: asyncio.Semaphore) -> Any:
        async with gate:
            try:
                miner = await pyasic.get_miner(host)
            except Exception:  # pyasic raises assorted types while probing
                return None
        return None if miner is None or "Unknown" in type(miner).__name__ else miner

    # Identification is not timed; under a burst pyasic's 3 s probes give up on some units,
    # so retry those with less concurrency until pyasic knows the same fleet as ours.
    found: dict[str, Any] = {}
    for limit in (args.concurrency, 32, 8):
        todo = [h for h in hosts if h not in found]
        small = asyncio.Semaphore(limit)
        for host, miner in zip(
            todo, await asyncio.gather(*(find(h, small) for h in todo)), strict=True
        ):
            if miner is not None:
                found[host] = miner
    miners = list(found.values())

    async def read(miner: Any) -> bool:
        async with gate:
            try:
                data = await asyncio.wait_for(miner.get_data(), PYASIC_TIMEOUT_S)
            except Exception:  # pyasic raises assorted types; a failure is a failure
                return False
            return data is not None and data.hashrate is not None

    cycles = []
    for i in range(args.cycles + 1):
        sim0 = _sim_cpu(args.sim_pid)
        c0, t0 = _cpu(), time.perf_counter()
        results = await asyncio.gather(*(read(m) for m in miners))
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        if i:
            ok = sum(results)
            sim = _sim_cpu(args.sim_pid) - sim0
            cycles.append(
                {"wall": wall, "cpu": cpu, "ok": ok, "gaps": len(results) - ok, "sim_cpu": sim}
            )
    return {
        "miners": len(miners),
        "identified": len(miners),
        "hosts": len(hosts),
        "cycles": cycles,
        "rss_mb": _rss_mb(),
    }


# -- orchestration --------------------------------------------------------------------------


def run_worker(
    kind: str,
    inventory: Path,
    workdir: Path,
    cycles: int,
    timeout: float,
    sim_pid: int,
    admin: str | None = None,
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "agent.toml").write_text(
        f'state_dir = "{workdir / "state"}"\ninventory = "{inventory}"\n'
        f"poll_timeout_s = {timeout}\nmax_in_flight = {CONCURRENCY}\njitter_s = 0\n",
        encoding="utf-8",
    )
    cmd = [
        sys.executable, __file__, "--worker", kind, "--inventory", str(inventory),
        "--workdir", str(workdir), "--cycles", str(cycles), "--timeout", str(timeout),
        "--concurrency", str(CONCURRENCY), "--sim-pid", str(sim_pid),
    ]  # fmt: skip
    if admin:
        cmd += ["--admin", admin]
    print(f"running {kind} ...", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_farm(miners: int, workdir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    from agent.simulator.cli import parse_mix, scale_mix

    scale_mix(parse_mix(MIX), miners)  # validate early
    rng = random.SystemRandom()
    base = f"127.{rng.randint(16, 254)}.{rng.randint(1, 200)}.1"
    cmd = [
        sys.executable, "-m", "agent.simulator", "--miners", str(miners), "--mix", MIX,
        "--seed", "7", "--inventory", str(workdir / "farm.toml"), "--base-address", base,
        "--admin-port", "0",
    ]  # fmt: skip
    farm = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert farm.stdout is not None
    line = farm.stdout.readline()
    if not line:
        farm.wait()
        raise RuntimeError(f"simulator exited with {farm.returncode} (needs root for real ports)")
    return farm, json.loads(line)


def hang_units(admin: str, inventory: Path, fraction: float) -> int:
    import tomllib

    import httpx

    ids = [m["id"] for m in tomllib.loads(inventory.read_text(encoding="utf-8"))["miners"]]
    chosen = random.Random(5).sample(ids, int(len(ids) * fraction))
    with httpx.Client(base_url=admin, timeout=10) as client:
        for unit in chosen:
            client.post(f"/units/{unit}/fault", json={"connection": "hang"}).raise_for_status()
    return len(chosen)


def summarise(kind: dict[str, Any]) -> dict[str, float]:
    walls = [c["wall"] for c in kind["cycles"]]
    cpus = [c["cpu"] for c in kind["cycles"]]
    return {
        "cycle_s": statistics.median(walls),
        "cpu_s_per_cycle": statistics.median(cpus),
        "sim_cpu_s_per_cycle": statistics.median(c["sim_cpu"] for c in kind["cycles"]),
        "ok_per_cycle": min(c["ok"] for c in kind["cycles"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 miners, 5 s poll timeout: under a minute"
    )
    parser.add_argument("--miners", type=int, default=2000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument(
        "--timeout", type=float, default=None, help="poll timeout (default: the agent's)"
    )
    parser.add_argument("--worker", choices=["ours", "pyasic"])
    parser.add_argument("--inventory", type=Path)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--sim-pid", type=int, default=None)
    parser.add_argument("--admin", default=None, help="simulator admin URL: run the hang phase")
    args = parser.parse_args()
    if args.worker:
        fn = worker_ours if args.worker == "ours" else worker_pyasic
        print(json.dumps(asyncio.run(fn(args))))
        return

    from agent.config import POLL_TIMEOUT_S

    miners = 200 if args.quick else args.miners
    timeout = args.timeout or (5.0 if args.quick else POLL_TIMEOUT_S)
    workdir = Path(tempfile.mkdtemp(prefix="hashpilot-bench-poll-"))
    farm, ready = start_farm(miners, workdir)
    inventory = Path(ready["inventory"])
    try:
        theirs = run_worker("pyasic", inventory, workdir / "pyasic", args.cycles, timeout, farm.pid)
        # Ours last: its final phase makes 10 % of the units hang.
        ours = run_worker(
            "ours", inventory, workdir / "ours", args.cycles, timeout, farm.pid, ready["admin"]
        )
    finally:
        farm.terminate()
        farm.wait(timeout=60)
    o, p = summarise(ours), summarise(theirs)
    (hung_cycle,) = ours["hung_cycles"]
    result = {
        "benchmark": "poll",
        "miners": ours["miners"],
        "mix": MIX,
        "concurrency": CONCURRENCY,
        "cycles": args.cycles,
        "cycle_s": round(o["cycle_s"], 3),
        "cpu_s_per_cycle": round(o["cpu_s_per_cycle"], 3),
        "store_features_cpu_s_per_cycle": round(ours["store_features_cpu_s"], 3),
        "ok_per_cycle": o["ok_per_cycle"],
        "rss_mb": round(ours["rss_mb"], 1),
        "pyasic_miners": theirs["miners"],
        "pyasic_cycle_s": round(p["cycle_s"], 3),
        "pyasic_cpu_s_per_cycle": round(p["cpu_s_per_cycle"], 3),
        "pyasic_ok_per_cycle": p["ok_per_cycle"],
        "pyasic_rss_mb": round(theirs["rss_mb"], 1),
        "sim_cpu_s_per_cycle_ours": round(o["sim_cpu_s_per_cycle"], 3),
        "sim_cpu_s_per_cycle_pyasic": round(p["sim_cpu_s_per_cycle"], 3),
        "cpu_ratio_vs_pyasic": round(
            (p["cpu_s_per_cycle"] / max(theirs["miners"], 1))
            / (o["cpu_s_per_cycle"] / max(ours["miners"], 1)),
            2,
        ),
        "hung_miners": hung_cycle["hung"],
        "hung_cycle_s": round(hung_cycle["wall"], 3),
        "hung_cycle_gaps": hung_cycle["gaps"],
        "poll_timeout_s": timeout,
        "hung_within_timeout_plus_20pct": hung_cycle["wall"] <= timeout * 1.2,
        "quick": args.quick,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
