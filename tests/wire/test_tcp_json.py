"""TCP 4028 transport and cgminer protocol against real loopback sockets: faults and timing."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.errors import (
    MinerConnectionError,
    MinerResponseError,
    MinerTimeoutError,
)
from agent.protocols.base import NO_RETRY
from agent.protocols.cgminer import CgminerProtocol
from agent.transports.base import MinerConnectError, MinerConnectTimeoutError, Timeouts
from agent.transports.tcp_json import TcpJsonTransport
from tests.wire.conftest import FAST
from tests.wire.fakes import fixtures
from tests.wire.fakes.rpc_server import FakeRpcServer
from tests.wire.fakes.sockets import closed_port, full_backlog_port

HOST = "127.0.0.1"
#: Scheduling slack allowed on top of a configured timeout on a loaded 2-core machine.
SLACK_S = 0.5


def proto(port: int, timeouts: Timeouts = FAST) -> CgminerProtocol:
    return CgminerProtocol(TcpJsonTransport(HOST, port, timeouts=timeouts), NO_RETRY)


async def timed(coro):
    started = time.monotonic()
    try:
        await coro
    except BaseException as err:
        return err, time.monotonic() - started
    pytest.fail("expected an error")


async def test_reads_fixture_over_loopback() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020"), trailing_nul=True) as srv:
        reply = await proto(srv.port).command("summary")
    assert reply["SUMMARY"][0]["GHS 5s"] == 110566.89
    assert srv.requests == [{"command": "summary"}]


async def test_refused_is_connect_error_immediately() -> None:
    err, elapsed = await timed(proto(closed_port()).command("summary"))
    assert isinstance(err, MinerConnectError)
    assert "refused" in str(err)
    assert elapsed < 0.2


async def test_connect_timeout_on_full_backlog() -> None:
    with full_backlog_port() as port:
        err, elapsed = await timed(proto(port).command("summary"))
    assert isinstance(err, MinerConnectTimeoutError)
    assert isinstance(err, TimeoutError)
    assert FAST.connect_s * 0.9 <= elapsed < FAST.connect_s + SLACK_S


async def test_read_timeout_on_silent_miner() -> None:
    async with FakeRpcServer(mode="silent") as srv:
        err, elapsed = await timed(proto(srv.port).command("summary"))
    assert isinstance(err, MinerTimeoutError)
    assert not isinstance(err, MinerConnectError)  # the request was sent
    assert "silent" in str(err)
    assert FAST.read_s * 0.9 <= elapsed < FAST.read_s + SLACK_S


async def test_slow_trickle_hits_the_deadline() -> None:
    async with FakeRpcServer(mode="trickle", trickle_interval_s=0.05) as srv:
        err, elapsed = await timed(proto(srv.port).command("summary"))
    assert isinstance(err, MinerTimeoutError)
    assert "deadline" in str(err)
    assert FAST.deadline_s * 0.9 <= elapsed < FAST.deadline_s + SLACK_S


async def test_reset_mid_reply() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020"), mode="reset") as srv:
        err, elapsed = await timed(proto(srv.port).command("stats"))
    assert type(err) is MinerConnectionError
    assert "reset" in str(err)
    assert elapsed < SLACK_S


async def test_oversize_reply() -> None:
    async with FakeRpcServer(mode="oversize", oversize_bytes=200_000) as srv:
        transport = TcpJsonTransport(HOST, srv.port, timeouts=FAST, max_reply_bytes=64 * 1024)
        err, elapsed = await timed(transport.send(b'{"command":"summary"}'))
    assert isinstance(err, MinerResponseError)
    assert "exceeds" in str(err)
    assert err.excerpt.startswith(b'{"STATUS":"xxx')
    assert elapsed < SLACK_S


async def test_garbage_reply() -> None:
    async with FakeRpcServer(mode="garbage") as srv:
        err, elapsed = await timed(proto(srv.port).command("summary"))
    assert isinstance(err, MinerResponseError)
    assert b"not json" in err.excerpt
    assert elapsed < SLACK_S


async def test_closed_without_reply() -> None:
    async with FakeRpcServer(mode="close") as srv:
        err, elapsed = await timed(proto(srv.port).command("summary"))
    assert type(err) is MinerConnectionError
    assert "without a reply" in str(err)
    assert elapsed < SLACK_S


async def test_cancellation_closes_the_socket() -> None:
    peer_closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # the request
        await reader.read(100)  # returns b"" (or raises) once the client is gone
        peer_closed.set()
        writer.close()

    server = await asyncio.start_server(handler, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    transport = TcpJsonTransport(HOST, port, timeouts=Timeouts(read_s=30, deadline_s=30))
    task = asyncio.create_task(transport.send(b'{"command":"summary"}'))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(peer_closed.wait(), 1.0)
    server.close()
    await server.wait_closed()


async def test_retry_recovers_from_one_refusal() -> None:
    """The protocol's retry loop re-sends a read after a refused connection."""
    from agent.protocols.base import RetryPolicy

    srv = FakeRpcServer(fixtures.replies("antminer/v2020"))
    port = closed_port()
    p = CgminerProtocol(
        TcpJsonTransport(HOST, port, timeouts=FAST), RetryPolicy(attempts=3, backoff_s=0.2)
    )

    async def start_later() -> None:
        await asyncio.sleep(0.05)
        srv._server = await asyncio.start_server(srv._on_connect, HOST, port)

    starter = asyncio.create_task(start_later())
    reply = await p.command("version")
    await starter
    await srv.close()
    assert reply["VERSION"][0]["Type"] == "Antminer S19 Pro"
    assert srv.connections == 1
