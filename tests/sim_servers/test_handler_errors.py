"""A simulator bug in a connection handler is recorded on the farm, not passed off as a fault.

The bug is injected by replacing one server function with one that raises; everything else
(sockets, farm, clients) is real.
"""

from __future__ import annotations

import asyncio
import tomllib

import asyncssh
import pytest

from agent.simulator.servers import braiins, cgminer, ssh, whatsminer_v3
from tests.sim_servers.conftest import IO_TIMEOUT_S, V3Client, assert_no_handler_errors, rpc_raw


class SimulatorBug(RuntimeError):
    """Stands for any bug in the simulator's own code."""


def _raise(*_args, **_kwargs):
    raise SimulatorBug("injected simulator bug")


def _check_recorded(farm, unit_id: str, count: int = 1) -> None:
    errors = farm.handler_errors
    assert errors.count == count
    assert errors.last_unit == unit_id
    assert "SimulatorBug: injected simulator bug" in errors.last_traceback
    with pytest.raises(AssertionError, match="simulator handler failure"):
        assert_no_handler_errors(farm)  # what every simulator fixture checks in teardown
    errors.clear()  # injected on purpose: let this test's own teardown pass


async def test_rpc_handler_bug_is_recorded(make_farm, monkeypatch):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    monkeypatch.setattr(cgminer, "parse_request", _raise)
    for _ in range(2):
        try:
            reply = await rpc_raw(dev, b'{"command":"summary"}')
        except ConnectionError:
            reply = b""
        assert reply == b""  # the client still only sees a dropped connection ...
    _check_recorded(farm, dev.unit_id, count=2)  # ... but the farm knows it was a bug


async def test_v3_handler_bug_is_recorded(make_farm, monkeypatch):
    farm = await make_farm({"m60s/whatsminer_v3": 1})
    dev = farm.device("m60s-0001")
    monkeypatch.setattr(whatsminer_v3, "handle", _raise)
    client = await V3Client.connect(dev)
    try:
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
            await client.send({"cmd": "get.miner.setting"})
    finally:
        client.close()
    _check_recorded(farm, dev.unit_id)


async def test_ssh_handler_bug_is_recorded_and_exits_as_internal_error(
    make_farm, monkeypatch, tmp_path
):
    farm = await make_farm({"s19jpro/braiins": 1})
    dev = farm.device("s19jpro-0001")
    entry = tomllib.loads(farm.write_inventory(tmp_path / "farm.toml").read_text())["miners"][0]
    monkeypatch.setattr(braiins, "state", _raise)
    async with (
        asyncio.timeout(IO_TIMEOUT_S),
        asyncssh.connect(
            dev.host,
            port=dev.ports.ssh,
            username=dev.username,
            password=dev.password,
            known_hosts=entry["known_hosts"],
            client_keys=None,
        ) as conn,
    ):
        result = await conn.run(f"cat {braiins.CONFIG_PATH}")
    assert result.exit_status == ssh.EXIT_SIMULATOR_BUG
    _check_recorded(farm, dev.unit_id)


async def test_peer_failures_are_not_simulator_bugs(make_farm):
    farm = await make_farm({"s19jpro": 1, "m60s/whatsminer_v3": 1})
    am, wm = farm.device("s19jpro-0001"), farm.device("m60s-0001")
    for host, port, data in (
        (am.host, am.ports.rpc, b'{"command":"sum'),  # half a request, then a reset
        (am.host, am.ports.web, b"GET /cgi-bin/summary.cgi HTTP/1.1\r\n"),
        (wm.host, wm.ports.v3, b"\x40\x00\x00\x00{"),  # a frame header and one byte
    ):
        _reader, writer = await asyncio.open_connection(host, port)
        writer.write(data)
        await writer.drain()
        writer.transport.abort()
    await asyncio.sleep(0.2)  # let the handlers see the resets
    assert farm.handler_errors.count == 0
