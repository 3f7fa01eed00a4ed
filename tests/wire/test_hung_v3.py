"""A hung Whatsminer V3 (accepts, never answers) costs one bounded timeout, not one per command.

The V3 transport shares one connection under a lock; the deadline must include the wait for
it, and the driver must stop at the first timeout instead of queueing every read behind it.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from agent.errors import MinerTimeoutError
from agent.transports.base import Timeouts
from agent.transports.tcp_framed import TcpFramedTransport
from tests.wire.conftest import FAST, QUICK_RETRY
from tests.wire.fakes import fixtures
from tests.wire.fakes.framed_server import FakeV3Server
from tests.wire.helpers import HOST, whatsminer_v3

#: Scheduling slack on a loaded 2-core box.
SLACK_S = 0.4


async def test_queued_requests_give_up_at_their_own_deadline() -> None:
    timeouts = Timeouts(connect_s=0.5, read_s=0.5, deadline_s=0.8)
    request = json.dumps({"cmd": "get.miner.status", "param": "summary"}).encode()
    async with FakeV3Server(fixtures.replies("whatsminer/v3"), mode="silent") as srv:
        t = TcpFramedTransport(HOST, srv.port, timeouts=timeouts, heartbeat_interval_s=None)
        started = time.monotonic()
        try:
            results = await asyncio.gather(
                *(t.send(request) for _ in range(3)), return_exceptions=True
            )
        finally:
            await t.close()
        elapsed = time.monotonic() - started
    assert all(isinstance(r, MinerTimeoutError) for r in results), results
    # one after another each would take its own 0.5 s read timeout (1.5 s for the third)
    assert elapsed < timeouts.deadline_s + SLACK_S
    assert "turn on the connection" in str(results[2])


async def test_hung_v3_read_is_one_commands_retries() -> None:
    async with whatsminer_v3(mode="silent") as (driver, srv):
        started = time.monotonic()
        with pytest.raises(MinerTimeoutError):
            await driver.read()
        elapsed = time.monotonic() - started
    assert FAST.read_s is not None
    bound = QUICK_RETRY.attempts * FAST.read_s + QUICK_RETRY.delay(1)
    assert bound * 0.9 <= elapsed < bound + SLACK_S
    # the first command's attempts, nothing queued behind them
    assert [r["cmd"] for r in srv.requests] == ["get.miner.status"] * QUICK_RETRY.attempts
    assert srv.requests[0]["param"] == "summary+edevs+pools"
