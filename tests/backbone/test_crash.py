"""kill -9 during write-heavy polling: nothing acknowledged is lost, the file stays sound."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from agent.store import Store
from tests.conftest import REPO

MINERS = 400


def _start(db: Path, cycles: int | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.backbone._writer_child", str(db), str(MINERS)]
    if cycles is not None:
        args.append(str(cycles))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)


def _acks(lines: list[str]) -> dict[int, tuple[int, int]]:
    out = {}
    for line in lines:
        tag, cid, ok, gaps = line.split()
        assert tag == "committed"
        out[int(cid)] = (int(ok), int(gaps))
    return out


def _kill_mid_write(db: Path, rng: random.Random, min_acks: int) -> dict[int, tuple[int, int]]:
    child = _start(db)
    assert child.stdout is not None
    lines = []
    while len(lines) < min_acks:
        line = child.stdout.readline()
        assert line, "child died early"
        lines.append(line)
    time.sleep(rng.uniform(0.0, 0.12))  # land anywhere in a ~0.1 s cycle, often mid-transaction
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    lines += child.stdout.readlines()  # acknowledged before the kill, still in the pipe
    assert child.returncode == -signal.SIGKILL
    return _acks(lines)


def _check(db: Path, acked: dict[int, tuple[int, int]]) -> None:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    cycles = {cid: (ok, gaps) for cid, ok, gaps in conn.execute("SELECT id, ok, gaps FROM cycles")}
    for cid, (ok, gaps) in acked.items():
        assert cycles.get(cid) == (ok, gaps), f"acknowledged cycle {cid} lost or changed"
    # Atomicity: every committed cycle is complete, none is half-written.
    per_cycle = dict(conn.execute("SELECT cycle_id, count(*) FROM snapshots GROUP BY cycle_id"))
    gap_rows = dict(conn.execute("SELECT cycle_id, count(*) FROM gaps GROUP BY cycle_id"))
    boards = conn.execute("SELECT count(*) FROM boards").fetchone()[0]
    for cid, (ok, gaps) in cycles.items():
        assert per_cycle.get(cid, 0) == ok
        assert gap_rows.get(cid, 0) == gaps
    assert boards == 3 * sum(per_cycle.values())
    conn.close()


def test_kill_9_loses_no_acknowledged_cycle(tmp_path: Path) -> None:
    db = tmp_path / "hashpilot.db"
    rng = random.Random(11)
    acked: dict[int, tuple[int, int]] = {}
    for _ in range(5):  # ~30% of the child's time is inside a write transaction
        new = _kill_mid_write(db, rng, min_acks=4)
        assert new, "no cycle was acknowledged"
        assert min(new) > max(acked, default=0)  # the restarted writer continued the sequence
        acked |= new
        _check(db, acked)
        Store(db).close()  # the agent's own open path accepts the file (quick_check, schema)
    restarted = _start(db, cycles=3)
    out, _ = restarted.communicate(timeout=60)
    assert restarted.returncode == 0
    final = _acks(out.splitlines())
    assert len(final) == 3
    assert min(final) > max(acked)
    _check(db, acked | final)
