"""status: stale readings are not shown as current; unidentified miners are visible."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import structlog

from agent.commands.run import serve
from agent.commands.status import STALE_AFTER_INTERVALS, table
from agent.config import AgentSettings, MinerEntry
from agent.errors import MinerConnectionError
from agent.store import Store
from tests.backbone.conftest import FakeDriver, healthy, make_cycle

T0 = 1_750_000_000.0 - (1_750_000_000.0 % 300)


def _lines(text: str) -> dict[str, list[str]]:
    cells = [re.split(r"\s{2,}", line) for line in text.splitlines()[1:-1]]
    return {c[0]: c for c in cells}


def test_up_but_old_is_stale_with_its_age_and_no_current_figures(tmp_path: Path) -> None:
    store = Store(tmp_path / "hashpilot.db")
    store.write_cycle(make_cycle(T0, ["a", "b"], down={"b"}))
    rows = store.fleet()
    store.close()
    fresh = _lines(table(rows, now=T0 + 20, poll_interval_s=30))
    assert fresh["a"][2:4] == ["up", "20s"]
    assert fresh["a"][4] == "100.0"
    assert fresh["b"][2:4] == ["down", "-"]
    assert fresh["b"][4:8] == ["-", "-", "-", "-"]
    later = T0 + STALE_AFTER_INTERVALS * 30 + 60
    text = table(rows, now=later, poll_interval_s=30)
    old = _lines(text)
    assert old["a"][2:4] == ["stale", "2m"]
    assert old["a"][4:8] == ["-", "-", "-", "-"]  # a 2-minute-old hashrate is not current
    assert text.splitlines()[-1].startswith("2 miners, 0 up, 2 not up; 0.0 TH/s")


async def test_listed_miner_that_cannot_be_identified_is_recorded(tmp_path: Path) -> None:
    settings = AgentSettings(
        state_dir=tmp_path,
        poll_interval_s=1.0,
        poll_timeout_s=0.5,
        jitter_s=0.0,
        secrets_dir=None,
        miners=[
            MinerEntry(id="known", host="127.0.0.1", driver="antminer"),
            MinerEntry(id="mystery", host="127.0.0.2"),
        ],
    )

    def make_driver(config, _creds, _hosts):  # type: ignore[no-untyped-def]
        return FakeDriver(config.miner_id, healthy(config.miner_id))

    async def identify(host, _ports):  # type: ignore[no-untyped-def]
        raise MinerConnectionError(host, "connection refused")

    stop = asyncio.Event()
    with structlog.testing.capture_logs() as events:
        task = asyncio.create_task(
            serve(settings, make_driver=make_driver, identify=identify, stop=stop)
        )
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline
            assert not task.done(), task
            await asyncio.sleep(0.1)
            if settings.store_path.exists():
                reader = Store(settings.store_path, readonly=True, check=False)
                n = reader.conn.execute("SELECT count(*) FROM cycles").fetchone()[0]
                reader.close()
                if n:
                    break
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    store = Store(settings.store_path, readonly=True)
    rows = {r.miner_id: r for r in store.fleet()}
    store.close()
    assert rows["mystery"].state == "unidentified"
    assert rows["mystery"].last_error_class == "MinerConnectionError"
    assert "connection refused" in (rows["mystery"].last_error or "")
    line = _lines(table(list(rows.values())))["mystery"]
    assert line[2] == "unidentified"
    warned = [e for e in events if e["event"] == "miner_unidentified"]
    assert [e["log_level"] for e in warned] == ["warning"]
    assert warned[0]["miner"] == "mystery"
