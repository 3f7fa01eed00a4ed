"""kill -9 inside a cycle's transaction: nothing acknowledged is lost, nothing half-written.

The writer child announces ``begin <n>`` right before each cycle's transaction; the parent
kills it a small random delay after reading that line, so every kill interrupts cycle ``n``
in flight (asserted: no ``committed n`` was printed). Cycle ``n`` must then be absent or
complete, never partial; every acknowledged cycle must be there unchanged. Finally the real
daemon (``agent.commands.run.serve``) opens the killed file and continues the sequence.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from agent.commands.run import serve
from agent.config import AgentSettings, MinerEntry
from agent.store import Store
from tests.backbone.conftest import FakeDriver, healthy
from tests.conftest import REPO

MINERS = 400
KILLS = 6
#: The daemon gets this long to commit its cycles on a loaded 2-core machine.
DAEMON_DEADLINE_S = 60.0


def _start(db: Path, cycles: int | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.backbone._writer_child", str(db), str(MINERS)]
    if cycles is not None:
        args.append(str(cycles))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)


def _parse(lines: list[str]) -> tuple[dict[int, tuple[int, int]], list[int]]:
    acks, begun = {}, []
    for line in lines:
        tag, *rest = line.split()
        if tag == "begin":
            begun.append(int(rest[0]))
        else:
            assert tag == "committed", line
            cid, ok, gaps = map(int, rest)
            acks[cid] = (ok, gaps)
    return acks, begun


def _kill_in_flight(
    db: Path, rng: random.Random, min_acks: int
) -> tuple[dict[int, tuple[int, int]], int]:
    """Kill the writer inside a transaction; return its acknowledged cycles and the victim."""
    child = _start(db)
    assert child.stdout is not None
    lines: list[str] = []
    began = 0.0
    spans: list[float] = []  # begin -> committed, as the parent sees it, per acked cycle
    while True:
        line = child.stdout.readline()
        assert line, "child died early"
        lines.append(line)
        if line.startswith("committed"):
            spans.append(time.monotonic() - began)
        elif len(spans) >= min_acks:
            break
        else:
            began = time.monotonic()
    # Anywhere inside the transaction: up to 90 % of the fastest write seen so far.
    time.sleep(rng.uniform(0.0, 0.9 * min(spans)))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    lines += child.stdout.readlines()
    assert child.returncode == -signal.SIGKILL
    acks, begun = _parse(lines)
    victim = begun[-1]
    assert victim not in acks, f"kill landed after cycle {victim} committed, not in flight"
    assert lines[-1].split() == ["begin", str(victim)]
    return acks, victim


def _check(
    db: Path, acked: dict[int, tuple[int, int]], writer_upto: int | None = None
) -> dict[int, tuple[int, int]]:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    cycles = {cid: (ok, gaps) for cid, ok, gaps in conn.execute("SELECT id, ok, gaps FROM cycles")}
    for cid, (ok, gaps) in acked.items():
        assert cycles.get(cid) == (ok, gaps), f"acknowledged cycle {cid} lost or changed"
    # Atomicity: every cycle is complete or absent, none is half-written (no orphan rows).
    per_cycle = dict(conn.execute("SELECT cycle_id, count(*) FROM snapshots GROUP BY cycle_id"))
    gap_rows = dict(conn.execute("SELECT cycle_id, count(*) FROM gaps GROUP BY cycle_id"))
    assert set(per_cycle) <= set(cycles), "snapshots of a cycle that was never committed"
    assert set(gap_rows) <= set(cycles), "gaps of a cycle that was never committed"
    boards = conn.execute("SELECT count(*) FROM boards").fetchone()[0]
    for cid, (ok, gaps) in cycles.items():
        assert per_cycle.get(cid, 0) == ok, f"cycle {cid} partial: snapshots"
        assert gap_rows.get(cid, 0) == gaps, f"cycle {cid} partial: gaps"
        if writer_upto is None or cid <= writer_upto:  # the writer polls all MINERS each cycle
            assert ok + gaps == MINERS, f"cycle {cid} partial: {ok} + {gaps} of {MINERS}"
    assert boards == 3 * sum(per_cycle.values())
    conn.close()
    return cycles


def test_kill_9_mid_transaction_loses_nothing_and_daemon_continues(tmp_path: Path) -> None:
    db = tmp_path / "hashpilot.db"
    rng = random.Random(11)
    acked: dict[int, tuple[int, int]] = {}
    for _ in range(KILLS):
        new, victim = _kill_in_flight(db, rng, min_acks=2)
        assert new, "no cycle was acknowledged"
        assert min(new) > max(acked, default=0)  # the restarted writer continued the sequence
        acked |= new
        cycles = _check(db, acked)
        assert victim not in cycles or cycles[victim][0] + cycles[victim][1] == MINERS
        Store(db).close()  # the agent's own open path accepts the file (quick_check, schema)
    before = max(_check(db, acked))
    asyncio.run(_daemon_continues(tmp_path, db, before))
    _check(db, acked, writer_upto=before)


async def _daemon_continues(state: Path, db: Path, before: int) -> None:
    """Run the real daemon on the killed file with fake drivers until it commits 2 cycles."""
    ids = [f"m{i:04d}" for i in range(5)]
    settings = AgentSettings(
        state_dir=state,
        poll_interval_s=1.0,
        poll_timeout_s=0.5,
        jitter_s=0.0,
        secrets_dir=None,
        miners=[MinerEntry(id=i, host="127.0.0.1", driver="antminer") for i in ids],
    )
    assert settings.store_path == db

    def make_driver(config, _creds, _hosts):  # type: ignore[no-untyped-def]
        return FakeDriver(config.miner_id, healthy(config.miner_id))

    async def never(*_a):  # type: ignore[no-untyped-def]
        raise AssertionError("every miner is configured; nothing to identify")

    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, make_driver=make_driver, identify=never, stop=stop))
    reader = Store(db, readonly=True, check=False)
    try:
        deadline = time.monotonic() + DAEMON_DEADLINE_S
        new: list[int] = []
        while len(new) < 2:
            assert time.monotonic() < deadline, f"daemon committed only {new}"
            assert not task.done(), task
            await asyncio.sleep(0.2)
            new = [
                r[0] for r in reader.conn.execute("SELECT id FROM cycles WHERE id > ?", (before,))
            ]
    finally:
        reader.close()
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    assert new[:2] == [before + 1, before + 2]
