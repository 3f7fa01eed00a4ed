"""Find which driver speaks to a host (parallel probes, first valid answer wins) and build it.

Probes (pyasic's detection, protocols.md §4.2, minus its silent failures): cgminer
``version`` on the RPC port (bmminer → Antminer, bosminer → Braiins), btminer ``get_version``
(firmware date → V2/V3), V3 ``get.device.info`` on 4433, and the web root (a digest realm
``antMiner`` → stock Antminer). All run at once under one bound; the first probe that
recognises the device wins and the rest are cancelled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from agent.credentials import Credentials
from agent.drivers import whatsminer_parse
from agent.drivers.antminer import AntminerDriver
from agent.drivers.base import DriverConfig, MinerDriver
from agent.drivers.braiins import BraiinsDriver
from agent.drivers.whatsminer import WhatsminerDriver
from agent.errors import (
    ConfigError,
    MinerConnectionError,
    MinerError,
    UnsupportedMinerError,
)
from agent.protocols import quirks
from agent.protocols.base import RetryPolicy
from agent.transports.base import Timeouts
from agent.transports.http import HttpTransport
from agent.transports.tcp_framed import DEFAULT_PORT as V3_PORT
from agent.transports.tcp_framed import TcpFramedTransport
from agent.transports.tcp_json import DEFAULT_PORT as RPC_PORT
from agent.transports.tcp_json import TcpJsonTransport

log = structlog.get_logger(__name__)

WEB_PORT = 80
#: Whole identification. pyasic bounds detection by 3 s per step (protocols.md §4.5); one
#: bound of 5 s over all parallel probes covers a slow controller without stalling a scan.
IDENTIFY_TIMEOUT_S = 5.0
#: Each probe gets short timeouts: an answer that takes longer than this is not a miner we
#: can poll anyway, and the overall bound above still applies.
PROBE_TIMEOUTS = Timeouts(connect_s=2.0, read_s=3.0, deadline_s=4.0)
#: Realm of the stock Antminer digest challenge (protocols.md §1.4).
ANTMINER_REALM = 'realm="antminer'

DRIVERS: dict[str, Callable[..., MinerDriver]] = {
    "antminer": AntminerDriver,
    "whatsminer": WhatsminerDriver,
    "braiins": BraiinsDriver,
}

Probe = Callable[[], Coroutine[Any, Any, DriverConfig]]
#: Which port overrides each identified kind keeps in its ``DriverConfig``.
PORT_ROLES = {
    "antminer": ("rpc", "web"),
    "braiins": ("rpc", "ssh"),
    "whatsminer_v2": ("rpc",),
    "whatsminer_v3": ("v3",),
}


def make_driver(
    config: DriverConfig,
    credentials: Credentials,
    known_hosts: Path | None = None,
    *,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> MinerDriver:
    """Build the driver a (cached) ``DriverConfig`` names."""
    if config.driver not in DRIVERS:
        raise ConfigError(f"{config.host}: unknown driver {config.driver!r}")
    if config.driver == "braiins":
        return BraiinsDriver(config, credentials, known_hosts, timeouts=timeouts, retry=retry)
    return DRIVERS[config.driver](config, credentials, timeouts=timeouts, retry=retry)


async def identify(
    host: str,
    ports: dict[str, int] | None = None,
    *,
    timeout_s: float = IDENTIFY_TIMEOUT_S,
    probe_timeouts: Timeouts = PROBE_TIMEOUTS,
) -> DriverConfig:
    """Probe ``host`` in parallel and return the first recognised ``DriverConfig``.

    ``ports`` overrides default ports by role (``rpc``, ``v3``, ``web``). Raises
    ``MinerConnectionError`` when nothing answered and ``UnsupportedMinerError`` when
    something answered but no probe recognised it.
    """
    ports = dict(ports or {})
    rpc_port = ports.get("rpc", RPC_PORT)
    v3_port = ports.get("v3", V3_PORT)
    web_port = ports.get("web", WEB_PORT)
    rpc = TcpJsonTransport(host, rpc_port, timeouts=probe_timeouts)
    framed = TcpFramedTransport(host, v3_port, timeouts=probe_timeouts, heartbeat_interval_s=None)
    web = HttpTransport(host, web_port, timeouts=probe_timeouts)

    def cfg(driver: str, **kw: Any) -> DriverConfig:
        roles = PORT_ROLES["whatsminer_" + kw["api"] if driver == "whatsminer" else driver]
        kept = {k: v for k, v in ports.items() if k in roles}
        return DriverConfig(host=host, driver=driver, ports=kept, **kw)

    async def cgminer_version() -> DriverConfig:
        reply = await _ask(rpc, {"command": "version"})
        text = json.dumps(reply).lower()
        if "bosminer" in text or "boser" in text:
            return cfg("braiins", firmware=_version_field(reply, "BOSminer"))
        if "bmminer" in text or "antminer" in text:
            model = _version_field(reply, "Type")
            return cfg("antminer", model=model, firmware=_version_field(reply, "CompileTime"))
        raise UnsupportedMinerError(host, "cgminer `version` names no known firmware")

    async def btminer_version() -> DriverConfig:
        reply = await _ask(rpc, {"cmd": "get_version"})
        msg = reply.get("Msg")
        fw = msg.get("fw_ver") if isinstance(msg, dict) else None
        api = whatsminer_parse.api_for_firmware(fw)
        if api is None:
            raise UnsupportedMinerError(host, "`get_version` has no firmware date")
        return cfg("whatsminer", api=api, firmware=str(fw))

    async def btminer_v3() -> DriverConfig:
        raw = await framed.send(json.dumps({"cmd": "get.device.info"}).encode())
        reply = quirks.decode(raw, host).data
        info = reply.get("msg")
        if reply.get("code") != 0 or not isinstance(info, dict):
            raise UnsupportedMinerError(host, "4433 answered without device info")
        miner, system = info.get("miner") or {}, info.get("system") or {}
        return cfg(
            "whatsminer", api="v3", model=miner.get("type"), firmware=system.get("fwversion")
        )

    async def web_root() -> DriverConfig:
        response = await web.status_probe("/")
        challenge = response.headers.get("www-authenticate", "").lower()
        if response.status_code == 401 and ANTMINER_REALM in challenge:
            return cfg("antminer")
        raise UnsupportedMinerError(host, f"web root answered {response.status_code}")

    probes: dict[str, Probe] = {
        "cgminer_version": cgminer_version,
        "btminer_version": btminer_version,
        "btminer_v3": btminer_v3,
        "web_root": web_root,
    }
    try:
        return await _first_valid(host, probes, timeout_s)
    finally:
        await framed.close()
        await web.close()


async def _ask(rpc: TcpJsonTransport, request: dict[str, Any]) -> dict[str, Any]:
    raw = await rpc.send(json.dumps(request).encode())
    return quirks.decode(raw, rpc.host).data


def _version_field(reply: dict[str, Any], key: str) -> str | None:
    version = reply.get("VERSION")
    if isinstance(version, list) and version and isinstance(version[0], dict):
        value = version[0].get(key)
        return " ".join(str(value).split()) if value else None
    return None


async def _first_valid(host: str, probes: dict[str, Probe], timeout_s: float) -> DriverConfig:
    """Run every probe; return the first success, cancel the rest, classify total failure."""
    tasks: dict[asyncio.Task[DriverConfig], str] = {
        asyncio.create_task(p(), name=f"identify-{name}-{host}"): name for name, p in probes.items()
    }
    errors: dict[str, BaseException] = {}
    pending = set(tasks)
    try:
        async with asyncio.timeout(timeout_s):
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                winner: DriverConfig | None = None
                for task in done:  # retrieve every outcome, so none goes unobserved
                    err = task.exception()
                    if err is None:
                        winner = winner or task.result()
                    elif isinstance(err, MinerError):
                        errors[tasks[task]] = err
                    else:
                        raise err
                if winner is not None:
                    log.debug("identified", host=host, driver=winner.driver, api=winner.api)
                    return winner
    except TimeoutError as err:
        for task in pending:
            errors[tasks[task]] = err
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    summary = "; ".join(f"{name}: {type(e).__name__}" for name, e in sorted(errors.items()))
    if all(isinstance(e, MinerConnectionError | TimeoutError) for e in errors.values()):
        raise MinerConnectionError(host, f"no probe got an answer ({summary})")
    raise UnsupportedMinerError(host, f"no probe recognised the device ({summary})")
