"""Small builders shared by the wire tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.credentials import Credentials
from agent.drivers.antminer import AntminerDriver
from agent.drivers.base import DriverConfig, MinerDriver
from agent.drivers.braiins import BraiinsDriver
from agent.drivers.whatsminer import WhatsminerDriver
from tests.wire.conftest import (
    ANTMINER_CREDS,
    FAST,
    QUICK_RETRY,
    V3_CREDS,
    WHATSMINER_CREDS,
)
from tests.wire.fakes import fixtures
from tests.wire.fakes.framed_server import FakeV3Server
from tests.wire.fakes.rpc_server import ANTMINER_ALLOWED, FakeRpcServer
from tests.wire.fakes.sockets import closed_port
from tests.wire.fakes.web_server import FakeAntminerWeb

HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def closing(driver: MinerDriver) -> AsyncIterator[Any]:
    """Yield ``driver`` and close it afterwards."""
    try:
        yield driver
    finally:
        await driver.close()


@contextlib.asynccontextmanager
async def antminer(
    *,
    rpc_kw: dict[str, Any] | None = None,
    web_kw: dict[str, Any] | None = None,
    creds: Credentials = ANTMINER_CREDS,
    **driver_kw: Any,
) -> AsyncIterator[tuple[AntminerDriver, FakeRpcServer, FakeAntminerWeb]]:
    """A stock S19 Pro: fixture RPC (with trailing NUL, stock access groups) + CGI fake."""
    sysinfo = fixtures.load(fixtures.FIXTURES / "antminer/v2020/system_info.json")
    sysinfo["minertype"] = "Antminer S19 Pro"  # the capture is from an S21; keep one model
    rpc_kw = {"trailing_nul": True, "allowed": ANTMINER_ALLOWED, **(rpc_kw or {})}
    async with (
        FakeRpcServer(fixtures.replies("antminer/v2020"), **rpc_kw) as rpc,
        FakeAntminerWeb(system_info=sysinfo, **(web_kw or {})) as web,
    ):
        config = DriverConfig(HOST, "antminer", ports={"rpc": rpc.port, "web": web.port})
        driver = AntminerDriver(config, creds, timeouts=FAST, retry=QUICK_RETRY, **driver_kw)
        async with closing(driver):
            yield driver, rpc, web


@contextlib.asynccontextmanager
async def whatsminer_v2(
    set_name: str,
    *,
    variant: str | None = None,
    privileged: Any = None,
    model: str | None = None,
    creds: Credentials = WHATSMINER_CREDS,
    rpc_handlers: dict[str, Any] | None = None,
    **driver_kw: Any,
) -> AsyncIterator[tuple[WhatsminerDriver, FakeRpcServer]]:
    """A Whatsminer on API V2 answering from a fixture set (``rpc_handlers`` override)."""
    async with FakeRpcServer(
        fixtures.replies(set_name, variant=variant), privileged=privileged, handlers=rpc_handlers
    ) as rpc:
        config = DriverConfig(
            HOST, "whatsminer", ports={"rpc": rpc.port, "v3": closed_port()}, model=model
        )
        driver = WhatsminerDriver(config, creds, timeouts=FAST, retry=QUICK_RETRY, **driver_kw)
        async with closing(driver):
            yield driver, rpc


@contextlib.asynccontextmanager
async def whatsminer_v3(
    *,
    variant: str | None = None,
    api: str | None = "v3",
    creds: Credentials = V3_CREDS,
    **server_kw: Any,
) -> AsyncIterator[tuple[WhatsminerDriver, FakeV3Server]]:
    """A Whatsminer on API V3 answering from the v3 fixture set."""
    server_kw.setdefault("password", creds.password)
    async with FakeV3Server(fixtures.replies("whatsminer/v3", variant=variant), **server_kw) as srv:
        config = DriverConfig(
            HOST, "whatsminer", ports={"rpc": closed_port(), "v3": srv.port}, api=api
        )
        driver = WhatsminerDriver(config, creds, timeouts=FAST, retry=QUICK_RETRY)
        async with closing(driver):
            yield driver, srv


def braiins_driver(
    rpc_port: int,
    ssh_port: int | None = None,
    known_hosts: Path | None = None,
    creds: Credentials = ANTMINER_CREDS,
) -> BraiinsDriver:
    """A Braiins driver pointed at loopback fakes."""
    ports = {"rpc": rpc_port} | ({"ssh": ssh_port} if ssh_port else {})
    return BraiinsDriver(
        DriverConfig(HOST, "braiins", ports=ports),
        creds,
        known_hosts,
        timeouts=FAST,
        retry=QUICK_RETRY,
    )
