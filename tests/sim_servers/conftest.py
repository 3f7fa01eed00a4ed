"""Helpers for the simulator's protocol-server tests: a frozen-clock farm and raw clients."""

from __future__ import annotations

import asyncio
import json
import random
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from agent.simulator.clock import SimClock
from agent.simulator.farm import Farm
from agent.simulator.servers.device import SimDevice

#: Generous bound for one loopback exchange in tests.
IO_TIMEOUT_S = 5.0


async def rpc_raw(device: SimDevice, payload: bytes, port: int | None = None) -> bytes:
    """One 4028-style exchange: write, read to EOF."""
    reader, writer = await asyncio.open_connection(device.host, port or device.ports.rpc)
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(IO_TIMEOUT_S):
            return await reader.read()
    finally:
        writer.close()


async def rpc(device: SimDevice, command: str, **extra: Any) -> dict[str, Any]:
    """A JSON command on 4028, parsed (trailing NUL stripped)."""
    raw = await rpc_raw(device, json.dumps({"command": command, **extra}).encode())
    return json.loads(raw.rstrip(b"\x00"))


class V3Client:
    """A minimal persistent Whatsminer V3 client (length-prefixed JSON)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, device: SimDevice) -> V3Client:
        reader, writer = await asyncio.open_connection(device.host, device.ports.v3)
        return cls(reader, writer)

    async def send(self, obj: Any) -> dict[str, Any]:
        body = json.dumps(obj).encode()
        self.writer.write(struct.pack("<I", len(body)) + body)
        await self.writer.drain()
        async with asyncio.timeout(IO_TIMEOUT_S):
            n = struct.unpack("<I", await self.reader.readexactly(4))[0]
            return json.loads(await self.reader.readexactly(n))

    def close(self) -> None:
        self.writer.close()


async def wait_until(check: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Poll ``check`` until true (listener reopen after a reboot etc.)."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - the state lives in another component
            await asyncio.sleep(0.02)


async def refused(device: SimDevice, port: int) -> bool:
    """Whether a connection to the port is refused."""
    try:
        _r, w = await asyncio.open_connection(device.host, port)
    except ConnectionRefusedError:
        return True
    w.close()
    return False


FarmFactory = Callable[..., Awaitable[Farm]]


def assert_no_handler_errors(farm: Farm) -> None:
    """Fail when a connection handler raised: a simulator bug, not a network fault."""
    errors = farm.handler_errors
    assert errors.count == 0, (
        f"{errors.count} simulator handler failure(s), last on {errors.last_unit}:\n"
        f"{errors.last_traceback}"
    )


@pytest.fixture
async def make_farm(tmp_path) -> AsyncIterator[FarmFactory]:
    """Start farms in ports mode on a frozen clock; all are stopped after the test.

    Teardown fails the test if any connection handler raised (``Farm.handler_errors``).
    """
    farms: list[Farm] = []

    async def make(mix: dict[str, int], **kwargs: Any) -> Farm:
        kwargs.setdefault("ports_mode", True)
        kwargs.setdefault("clock", SimClock(speed=0))
        kwargs.setdefault("state_dir", tmp_path / f"sim{len(farms)}")
        farm = Farm(mix, **kwargs)
        farms.append(farm)
        await farm.start()
        return farm

    yield make
    for farm in farms:
        await farm.stop()
    for farm in farms:
        assert_no_handler_errors(farm)


def random_loopback_base() -> str:
    """A random 127.a.b.1 base so concurrent test runs never share addresses."""
    rng = random.SystemRandom()
    return f"127.{rng.randint(16, 254)}.{rng.randint(1, 254)}.1"
