"""identify(): parallel probes on loopback, first valid answer wins, bounded total time."""

from __future__ import annotations

import time

import pytest

from agent.drivers.antminer import AntminerDriver
from agent.drivers.braiins import BraiinsDriver
from agent.drivers.factory import identify, make_driver
from agent.drivers.whatsminer import WhatsminerDriver
from agent.errors import MinerConnectionError, UnsupportedMinerError
from agent.transports.base import Timeouts
from tests.wire.conftest import ANTMINER_CREDS, WHATSMINER_CREDS
from tests.wire.fakes import braiins_rpc, fixtures
from tests.wire.fakes.framed_server import FakeV3Server
from tests.wire.fakes.rpc_server import ANTMINER_ALLOWED, FakeRpcServer
from tests.wire.fakes.sockets import closed_port, full_backlog_port
from tests.wire.fakes.web_server import FakeAntminerWeb

HOST = "127.0.0.1"
PROBE = Timeouts(connect_s=0.4, read_s=0.4, deadline_s=0.6)


def ports(rpc: int | None = None, v3: int | None = None, web: int | None = None) -> dict:
    return {"rpc": rpc or closed_port(), "v3": v3 or closed_port(), "web": web or closed_port()}


async def test_stock_antminer() -> None:
    async with (
        FakeRpcServer(
            fixtures.replies("antminer/v2020"), trailing_nul=True, allowed=ANTMINER_ALLOWED
        ) as rpc,
        FakeAntminerWeb() as web,
    ):
        config = await identify(HOST, ports(rpc=rpc.port, web=web.port), probe_timeouts=PROBE)
    assert config.driver == "antminer"
    assert config.ports == {"rpc": rpc.port, "web": web.port}
    assert config.model in (None, "Antminer S19 Pro")  # the web probe may win the race
    driver = make_driver(config, ANTMINER_CREDS)
    assert isinstance(driver, AntminerDriver)
    await driver.close()


async def test_antminer_by_rpc_alone_gives_model() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020"), trailing_nul=True) as rpc:
        config = await identify(HOST, ports(rpc=rpc.port), probe_timeouts=PROBE)
    assert (config.driver, config.model) == ("antminer", "Antminer S19 Pro")
    assert config.firmware == "Tue Dec 6 16:12:30 CST 2022"


@pytest.mark.parametrize(
    ("set_name", "fw"), [("whatsminer/v1", "20210322.22.REL"), ("whatsminer/v2", "20230803.11.REL")]
)
async def test_whatsminer_v2(set_name: str, fw: str) -> None:
    async with FakeRpcServer(fixtures.replies(set_name)) as rpc:
        config = await identify(HOST, ports(rpc=rpc.port), probe_timeouts=PROBE)
    assert (config.driver, config.api, config.firmware) == ("whatsminer", "v2", fw)
    assert config.ports == {"rpc": rpc.port}
    driver = make_driver(config, WHATSMINER_CREDS)
    assert isinstance(driver, WhatsminerDriver)
    assert driver.api == "v2"
    await driver.close()


async def test_whatsminer_v3_with_4028_closed() -> None:
    async with FakeV3Server(fixtures.replies("whatsminer/v3")) as srv:
        config = await identify(HOST, ports(v3=srv.port), probe_timeouts=PROBE)
    assert (config.driver, config.api, config.model) == ("whatsminer", "v3", "M60S_VK40")
    assert config.ports == {"v3": srv.port}


async def test_braiins() -> None:
    async with FakeRpcServer(braiins_rpc.replies()) as rpc:
        config = await identify(HOST, ports(rpc=rpc.port), probe_timeouts=PROBE)
    assert config.driver == "braiins"
    driver = make_driver(config, ANTMINER_CREDS)
    assert isinstance(driver, BraiinsDriver)
    await driver.close()


async def test_nothing_listening_is_a_connection_error_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(MinerConnectionError, match="no probe got an answer"):
        await identify(HOST, ports(), probe_timeouts=PROBE)
    assert time.monotonic() - started < 0.5


async def test_unrecognised_answer_is_unsupported() -> None:
    async with FakeRpcServer(
        mode="raw",
        raw_reply=b'{"STATUS":[{"STATUS":"S","Code":22,'
        b'"Msg":"versions","Description":"sgminer 5"}],"VERSION":[{}]}',
    ) as rpc:
        with pytest.raises(UnsupportedMinerError, match="no probe recognised"):
            await identify(HOST, ports(rpc=rpc.port), probe_timeouts=PROBE)


async def test_hung_host_is_bounded_by_the_total_timeout() -> None:
    with full_backlog_port() as port:
        started = time.monotonic()
        with pytest.raises(MinerConnectionError):
            await identify(
                HOST,
                {"rpc": port, "v3": port, "web": port},
                timeout_s=0.3,
                probe_timeouts=Timeouts(connect_s=5, read_s=5, deadline_s=5),
            )
        elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.8
