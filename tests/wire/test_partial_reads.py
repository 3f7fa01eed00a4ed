"""Partial failures over loopback fakes: a summary that cannot be read fails the poll, and a
list whose command failed reads ``None`` ("not read"), never ``()`` ("read, none")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.drivers.base import DriverConfig
from agent.drivers.whatsminer import WhatsminerDriver
from agent.errors import MinerResponseError
from agent.snapshot import MinerSnapshot
from tests.wire.conftest import FAST, QUICK_RETRY, V3_CREDS, WHATSMINER_CREDS
from tests.wire.fakes import fixtures
from tests.wire.fakes.framed_server import FakeV3Server
from tests.wire.fakes.rpc_server import FakeRpcServer, status_reply
from tests.wire.fakes.sockets import closed_port
from tests.wire.helpers import HOST, antminer, closing

#: A reply whose STATUS says success but whose SUMMARY section is empty.
EMPTY_SUMMARY = {**status_reply("S", 11, "Summary"), "SUMMARY": []}


def v2_driver(port: int) -> WhatsminerDriver:
    config = DriverConfig(HOST, "whatsminer", ports={"rpc": port, "v3": closed_port()}, api="v2")
    return WhatsminerDriver(config, WHATSMINER_CREDS, timeouts=FAST, retry=QUICK_RETRY)


def v3_driver(port: int) -> WhatsminerDriver:
    config = DriverConfig(HOST, "whatsminer", ports={"rpc": closed_port(), "v3": port}, api="v3")
    return WhatsminerDriver(config, V3_CREDS, timeouts=FAST, retry=QUICK_RETRY)


def v3_status(summary: Any) -> bytes:
    return json.dumps({"code": 0, "msg": {"summary": summary}, "desc": "get.miner.status"}).encode()


async def test_whatsminer_v2_unreadable_summary_fails_the_poll() -> None:
    replies = fixtures.replies("whatsminer/v2") | {"summary": json.dumps(EMPTY_SUMMARY).encode()}
    async with FakeRpcServer(replies) as rpc, closing(v2_driver(rpc.port)) as driver:
        with pytest.raises(MinerResponseError, match="summary"):
            await driver.read()


async def test_whatsminer_v2_failed_secondary_commands_read_none() -> None:
    replies = fixtures.replies("whatsminer/v2")
    for cmd in ("devs", "pools", "get_error_code"):  # the fake answers "invalid command"
        del replies[cmd]
    async with FakeRpcServer(replies) as rpc, closing(v2_driver(rpc.port)) as driver:
        snap = await driver.read()
    assert snap.hashrate_ths == pytest.approx(124.5)  # the summary still reads
    assert snap.fans_rpm == (5400, 5280)
    assert (snap.boards, snap.pools, snap.error_codes) == (None, None, None)
    data = json.loads(json.dumps(snap.to_dict()))
    assert (data["boards"], data["pools"], data["error_codes"]) == (None, None, None)  # not []
    assert MinerSnapshot.from_dict(data) == snap  # null comes back as None, not ()


async def test_whatsminer_v2_old_summary_error_count_zero_reads_empty() -> None:
    replies = fixtures.replies("whatsminer/v1")  # summary carries "Error Code Count": 0
    async with FakeRpcServer(replies) as rpc, closing(v2_driver(rpc.port)) as driver:
        snap = await driver.read()
    assert snap.error_codes == ()


@pytest.mark.parametrize("summary", ["n/a", None, []], ids=["text", "null", "list"])
async def test_whatsminer_v3_unreadable_summary_fails_the_poll(summary: Any) -> None:
    replies = fixtures.replies("whatsminer/v3")
    replies[("get.miner.status", "summary")] = v3_status(summary)
    async with FakeV3Server(replies, password=V3_CREDS.password) as srv:
        async with closing(v3_driver(srv.port)) as driver:
            with pytest.raises(MinerResponseError, match="summary"):
                await driver.read()


async def test_whatsminer_v3_failed_device_info_leaves_error_codes_unread() -> None:
    replies = fixtures.replies("whatsminer/v3", variant="with_errors")
    del replies[("get.device.info", None)]  # the fake answers -2 "invalid command"
    async with FakeV3Server(replies, password=V3_CREDS.password) as srv:
        async with closing(v3_driver(srv.port)) as driver:
            snap = await driver.read()
    assert snap.hashrate_ths == pytest.approx(171.259)
    assert snap.error_codes is None
    assert snap.firmware is None
    assert len(snap.boards or ()) == 3


async def test_antminer_unreadable_summaries_fail_the_poll() -> None:
    handlers = {"summary": lambda _r: EMPTY_SUMMARY}
    async with antminer(rpc_kw={"handlers": handlers}) as (driver, _rpc, web):
        web.pages["summary"] = {"STATUS": {"STATUS": "S"}, "SUMMARY": "garbled"}
        with pytest.raises(MinerResponseError, match="summary"):
            await driver.read()


async def test_antminer_one_readable_summary_is_enough() -> None:
    handlers = {"summary": lambda _r: EMPTY_SUMMARY}
    async with antminer(rpc_kw={"handlers": handlers}) as (driver, _rpc, _web):
        snap = await driver.read()
    assert snap.hashrate_ths == pytest.approx(110.56689)  # web summary rate_5s
    assert snap.accepted is None  # only the RPC summary has share counts


async def test_antminer_unread_stats_leave_boards_and_fans_unread() -> None:
    handlers = {"stats": lambda _r: status_reply("E", 14, "Invalid command")}
    async with antminer(rpc_kw={"handlers": handlers}) as (driver, _rpc, web):
        web.pages["stats"] = {"STATUS": {"STATUS": "S"}, "STATS": []}
        snap = await driver.read()
    assert (snap.boards, snap.fans_rpm) == (None, None)
    assert snap.error_codes == ("temp:341",)
