"""TCP 4433 framed transport: framing, persistence, heartbeat, reconnect, limits, faults."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from typing import Any

import pytest

from agent.errors import MinerConnectionError, MinerResponseError, MinerTimeoutError
from agent.transports.base import MinerConnectError
from agent.transports.tcp_framed import HEARTBEAT, TcpFramedTransport
from tests.wire.conftest import FAST
from tests.wire.fakes import fixtures
from tests.wire.fakes.framed_server import FakeV3Server
from tests.wire.fakes.sockets import closed_port

HOST = "127.0.0.1"
SUMMARY_REQ = json.dumps({"cmd": "get.miner.status", "param": "summary"}).encode()


def v3(**kw) -> FakeV3Server:
    return FakeV3Server(fixtures.replies("whatsminer/v3"), **kw)


async def test_frames_are_little_endian_and_the_connection_is_reused() -> None:
    async with v3() as srv:
        t = TcpFramedTransport(HOST, srv.port, timeouts=FAST, heartbeat_interval_s=None)
        try:
            first = json.loads(await t.send(SUMMARY_REQ))
            second = json.loads(await t.send(SUMMARY_REQ))
        finally:
            await t.close()
    assert (
        first["msg"]["summary"]["hash-realtime"]
        == 171.259
        == second["msg"]["summary"]["hash-realtime"]
    )
    assert srv.connections == 1
    assert t.connects == 1


async def test_wire_bytes() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readexactly(4 + len(SUMMARY_REQ)))
        writer.write(struct.pack("<I", 2) + b"{}")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(handler, HOST, 0)
    t = TcpFramedTransport(
        HOST, server.sockets[0].getsockname()[1], timeouts=FAST, heartbeat_interval_s=None
    )
    assert await t.send(SUMMARY_REQ) == b"{}"
    await t.close()
    server.close()
    await server.wait_closed()
    assert seen == [len(SUMMARY_REQ).to_bytes(4, "little") + SUMMARY_REQ]


async def test_heartbeat_when_idle_and_echoes_are_skipped() -> None:
    async with v3(echo_heartbeat=True) as srv:
        t = TcpFramedTransport(HOST, srv.port, timeouts=FAST, heartbeat_interval_s=0.1)
        try:
            await t.send(SUMMARY_REQ)
            await asyncio.sleep(0.45)
            reply = json.loads(await t.send(SUMMARY_REQ))  # echoed heartbeats skipped
        finally:
            await t.close()
    assert srv.heartbeats >= 2
    assert reply["desc"] == "get.miner.status"
    assert HEARTBEAT == b"\x00" * 4


async def test_reconnects_after_the_miner_closed_an_idle_connection() -> None:
    async with v3() as srv:
        t = TcpFramedTransport(HOST, srv.port, timeouts=FAST, heartbeat_interval_s=None)
        try:
            await t.send(SUMMARY_REQ)
            srv.drop_connections()
            await asyncio.sleep(0.05)
            reply = json.loads(await t.send(SUMMARY_REQ))
        finally:
            await t.close()
    assert reply["code"] == 0
    assert t.connects == 2


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        # the miner closes right after reading the request
        ({"close_after": 0}, MinerConnectionError, None),
        # a length prefix over the frame limit
        ({"mode": "bad_length"}, MinerResponseError, "exceeds"),
    ],
    ids=["closed_mid_exchange", "oversize_frame"],
)
async def test_broken_exchange_drops_the_connection(
    fault: dict[str, Any], error: type[Exception], match: str | None
) -> None:
    async with v3(**fault) as srv:
        t = TcpFramedTransport(HOST, srv.port, timeouts=FAST, heartbeat_interval_s=None)
        try:
            with pytest.raises(error, match=match):
                await t.send(SUMMARY_REQ)
        finally:
            await t.close()
    assert not t.connected


async def test_silent_miner_times_out() -> None:
    async with v3(mode="silent") as srv:
        t = TcpFramedTransport(HOST, srv.port, timeouts=FAST, heartbeat_interval_s=None)
        started = time.monotonic()
        try:
            with pytest.raises(MinerTimeoutError):
                await t.send(SUMMARY_REQ)
        finally:
            await t.close()
    assert FAST.read_s * 0.9 <= time.monotonic() - started < FAST.read_s + 0.5


async def test_refused() -> None:
    t = TcpFramedTransport(HOST, closed_port(), timeouts=FAST)
    with pytest.raises(MinerConnectError):
        await t.send(SUMMARY_REQ)
    await t.close()
