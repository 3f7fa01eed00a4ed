"""The daemon against a simulated farm on loopback: real drivers, store, status, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from agent.commands.run import serve
from agent.commands.status import table
from agent.config import load_settings
from agent.simulator.farm import Farm
from agent.store import Store
from tests.conftest import REPO

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


async def _serve_for(settings, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop))
    await asyncio.sleep(seconds)
    stop.set()
    assert await asyncio.wait_for(task, 20) == 0


async def test_daemon_polls_the_farm_records_hung_miner_and_restarts(tmp_path: Path) -> None:
    farm = await _farm(tmp_path)
    try:
        farm.set_fault("s21-0001", {"connection": "hang"})
        settings = load_settings(tmp_path / "agent.toml")
        await _serve_for(settings, 3.5)
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
        await _serve_for(settings, 2.5)  # restart: same store, continues, the miner recovers
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
            sys.executable, "-m", "agent", "--log-level", "INFO", "run", "--config", cfg,
            cwd=REPO, env=env, stdout=pipe, stderr=pipe,
        )  # fmt: skip
        await asyncio.sleep(4.0)
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 25)
        assert proc.returncode == 0, err.decode()
        log = err.decode()
        assert "agent_started" in log
        assert "agent_stopped" in log
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "status", "--config", cfg,
            cwd=REPO, env=env, stdout=pipe, stderr=pipe,
        )  # fmt: skip
        out, err = await asyncio.wait_for(status.communicate(), 25)
        assert status.returncode == 0, err.decode()
        text = out.decode()
        assert text.splitlines()[0].split()[:3] == ["miner", "model", "state"]
        assert "5 miners, 5 up" in text
    finally:
        await farm.stop()
