"""The daemon against a simulated farm on loopback: real drivers, store, status, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from agent.commands.run import serve
from agent.commands.status import table
from agent.config import load_settings
from agent.errors import StoreError
from agent.simulator.farm import Farm
from agent.store import Store
from tests.conftest import REPO

#: Waiting for cycles on a loaded 2-core machine: one 1-s cycle is normal, a minute is a failure.
CYCLES_DEADLINE_S = 60.0
MIX = {"s19jpro": 2, "m50": 2, "s21": 1}
AGENT_TOML = (
    'state_dir = "state"\ninventory = "farm.toml"\n'
    "poll_interval_s = 1\npoll_timeout_s = 0.6\njitter_s = 0.1\n"
)


async def _farm(tmp: Path) -> Farm:
    farm = Farm(MIX, ports_mode=True, whatsminer_v3_fraction=0.5, state_dir=tmp / "sim")
    await farm.start()
    farm.write_inventory(tmp / "farm.toml")
    (tmp / "agent.toml").write_text(AGENT_TOML, encoding="utf-8")
    return farm


def _cycles_after(path: Path, after: int) -> int:
    """Cycles committed with an id above ``after`` (0 while the store does not exist yet)."""
    if not path.exists():
        return 0
    try:
        store = Store(path, readonly=True, check=False)
    except StoreError:  # created but not migrated yet
        return 0
    try:
        return int(
            store.conn.execute("SELECT count(*) FROM cycles WHERE id > ?", (after,)).fetchone()[0]
        )
    finally:
        store.close()


def _all_up(path: Path, count: int) -> bool:
    store = Store(path, readonly=True, check=False)
    try:
        rows = store.fleet()
    finally:
        store.close()
    return len(rows) == count and all(r.state == "up" for r in rows)


async def _serve_cycles(settings, cycles: int, after: int = 0) -> None:
    """Run the daemon until it has committed ``cycles`` new cycles (generous deadline)."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop))
    deadline = time.monotonic() + CYCLES_DEADLINE_S
    try:
        while _cycles_after(settings.store_path, after) < cycles:
            assert not task.done(), task
            assert time.monotonic() < deadline, f"fewer than {cycles} cycles in time"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


async def test_daemon_polls_the_farm_records_hung_miner_and_restarts(tmp_path: Path) -> None:
    farm = await _farm(tmp_path)
    try:
        farm.set_fault("s21-0001", {"connection": "hang"})
        settings = load_settings(tmp_path / "agent.toml")
        await _serve_cycles(settings, 3)
        store = Store(settings.store_path, readonly=True)
        rows = {r.miner_id: r for r in store.fleet()}
        assert set(rows) == {"s19jpro-0001", "s19jpro-0002", "m50-0001", "m50-0002", "s21-0001"}
        for mid in ("s19jpro-0001", "m50-0001"):
            assert rows[mid].state == "up"
            assert rows[mid].hashrate_ths
            assert rows[mid].hashrate_ths > 50
        assert rows["s21-0001"].state == "down"
        assert rows["s21-0001"].last_error_class == "MinerTimeoutError"
        gap_classes = {r[0] for r in store.conn.execute("SELECT DISTINCT error_class FROM gaps")}
        assert gap_classes == {"MinerTimeoutError"}
        first_max, first_count = store.conn.execute(
            "SELECT max(id), count(*) FROM cycles"
        ).fetchone()
        assert first_count >= 3
        # Cycles are bounded by the poll timeout even with a miner hung on every poll.
        longest = store.conn.execute("SELECT max(duration_s) FROM cycles").fetchone()[0]
        assert longest < settings.poll_timeout_s * 1.2 + settings.jitter_s
        text = table(store.fleet())
        assert "MinerTimeoutError" in text
        assert "s19jpro-0001" in text
        features = store.conn.execute("SELECT count(*) FROM features").fetchone()[0]
        assert features == 4  # flushed at stop; the hung miner never produced a sample
        store.close()

        farm.set_fault("s21-0001", {"clear": True})
        await _serve_cycles(
            settings, 2, after=first_max
        )  # restart: same store, continues, the miner recovers
        store = Store(settings.store_path, readonly=True)
        again = store.conn.execute(
            "SELECT min(id) FROM cycles WHERE id > ?", (first_max,)
        ).fetchone()
        assert again[0] == first_max + 1
        assert {r.miner_id: r.state for r in store.fleet()}["s21-0001"] == "up"
        store.close()
    finally:
        await farm.stop()


async def test_cli_run_stops_cleanly_on_sigterm_and_status_prints(tmp_path: Path) -> None:
    farm = await _farm(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cfg = str(tmp_path / "agent.toml")
    pipe = asyncio.subprocess.PIPE
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", cfg,
            cwd=REPO, env=env, stdout=pipe, stderr=pipe,
        )  # fmt: skip
        db = tmp_path / "state" / "hashpilot.db"
        deadline = time.monotonic() + CYCLES_DEADLINE_S
        while _cycles_after(db, 0) < 2 or not _all_up(db, 5):
            assert proc.returncode is None, (await proc.communicate())[1].decode()
            assert time.monotonic() < deadline, "the daemon did not bring 5 miners up in time"
            await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 25)
        assert proc.returncode == 0, err.decode()
        log = err.decode()
        assert "agent_started" in log
        assert "agent_stopped" in log  # INFO by default for run
        assert "executed successfully" not in log  # apscheduler's per-run INFO lines are off
        assert "Running job" not in log
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "status", "--config", cfg,
            cwd=REPO, env=env, stdout=pipe, stderr=pipe,
        )  # fmt: skip
        out, err = await asyncio.wait_for(status.communicate(), 25)
        assert status.returncode == 0, err.decode()
        assert err.decode() == ""  # one-shot commands stay at WARNING: nothing to report
        text = out.decode()
        assert text.splitlines()[0].split()[:3] == ["miner", "model", "state"]
        assert "5 miners, 5 up" in text
    finally:
        await farm.stop()


async def test_sigterm_during_startup_identification_exits_cleanly(tmp_path: Path) -> None:
    """A SIGTERM while a listed miner is still being identified stops start-up, exit 0."""
    probed = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, never answer: identify waits for its probe timeouts
        probed.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "agent.toml").write_text(
        'state_dir = "state"\n[[miners]]\nid = "slow"\nhost = "127.0.0.1"\n'
        f"ports = {{ rpc = {port}, web = {port}, v3 = {port}, ssh = {port} }}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pipe = asyncio.subprocess.PIPE
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "--log-level", "INFO", "run",
            "--config", str(tmp_path / "agent.toml"),
            cwd=REPO, env=env, stdout=pipe, stderr=pipe,
        )  # fmt: skip
        await asyncio.wait_for(probed.wait(), CYCLES_DEADLINE_S)
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert "agent_stopped_during_startup" in err.decode()
        assert "agent_started" not in err.decode()
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()
