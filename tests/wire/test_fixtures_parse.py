"""Every real reply in shared/fixtures (antminer v2020, whatsminer v1/v2/v3), served over loopback
by the fixture-backed fakes, fetched by the real transport + protocol, parsed by the driver
parsers, with the expected values asserted. Adding a fixture file without expectations fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.drivers import antminer_parse as am
from agent.drivers import whatsminer_parse as wm
from agent.drivers.common import cgminer_pools
from agent.protocols.antminer_web import AntminerWebProtocol
from agent.protocols.btminer_v2 import BtminerV2Protocol
from agent.protocols.btminer_v3 import BtminerV3Protocol
from agent.protocols.cgminer import CgminerProtocol
from agent.transports.http import HttpTransport
from agent.transports.tcp_framed import TcpFramedTransport
from agent.transports.tcp_json import TcpJsonTransport
from tests.wire.conftest import ANTMINER_CREDS, FAST, QUICK_RETRY, WHATSMINER_CREDS
from tests.wire.fakes.fixtures import COMMAND_FOR_FILE, FIXTURES, all_fixture_files
from tests.wire.fakes.framed_server import FakeV3Server
from tests.wire.fakes.rpc_server import FakeRpcServer
from tests.wire.fakes.web_server import FakeAntminerWeb

HOST = "127.0.0.1"
approx = pytest.approx


def _boards(boards) -> list[tuple]:
    return [
        (b.slot, b.hashrate_ths, b.board_temp_c, b.chip_temp_c, b.chips, b.freq_mhz) for b in boards
    ]


def _pools(pools) -> list[tuple]:
    return [(p.url, p.user, p.status, p.accepted, p.rejected) for p in pools]


def check_am_stats(r: dict) -> None:
    data = am.stats_data(r)
    assert _boards(am.rpc_boards(data, 114)) == [
        (0, approx(37.6033), 73.0, 78.0, 114, 525.0),
        (1, approx(35.53622), 66.0, 71.0, 114, 525.0),
        (2, approx(37.42738), 64.0, 69.0, 114, 525.0),
    ]
    assert am.rpc_fans(data) == (6000, 5880, 5040, 5040)
    assert r["STATS"][0]["Type"] == "Antminer S19 Pro"


def check_am_summary(r: dict) -> None:
    s = am.section(r, "SUMMARY")
    assert am.summary_rate_ths(s, "5s") == approx(110.56689)
    assert am.summary_rate_ths(s, "av") == approx(111.83485)
    assert (s["Elapsed"], s["Hardware Errors"], s["Accepted"], s["Rejected"]) == (
        50474,
        562,
        4057,
        11,
    )


def check_am_pools(r: dict) -> None:
    pools = _pools(cgminer_pools(r))
    assert len(pools) == 3
    assert pools[0] == (
        "stratum+tcp://btc.global.luxor.tech:700",
        "satokierepair.H04YK",
        "Alive",
        4057,
        11,
    )


def check_am_version(r: dict) -> None:
    v = am.section(r, "VERSION")
    assert (v["Type"], v["API"]) == ("Antminer S19 Pro", "3.1")
    assert " ".join(v["CompileTime"].split()) == "Tue Dec 6 16:12:30 CST 2022"


def check_am_devs(r: dict) -> None:
    # stock X19 `devs` is one BTM_SOC pseudo-device with zero hash fields (protocols.md §1.2)
    dev = r["DEVS"][0]
    assert (dev["Name"], dev["MHS 5s"], dev["Tenperature"]) == ("BTM_SOC", 0.0, 0.0)


def check_am_system_info(r: dict) -> None:
    assert (r["minertype"], r["system_filesystem_version"]) == (
        "Antminer S21",
        "FR-1.12(251009-S21)",
    )


def check_v1_devs(r: dict) -> None:
    assert _boards(wm.v2_boards(r, None)) == [
        (0, approx(22.10378984), 70.0, 90.0, 105, 650.0),
        (1, approx(22.71979979), 69.5, 90.11, 105, 652.0),
        (2, approx(22.55473792), 71.5, 92.5, 105, 643.0),
    ]


def check_v1_summary(r: dict) -> None:
    s = r["SUMMARY"][0]
    assert wm.v2_hashrate_ths(s) == approx(67.43935249)
    assert (wm.v2_power_w(s), s["Power Limit"], wm.v2_power_mode(s, None)) == (3417, 3500, "normal")
    assert (s["Fan Speed In"], s["Fan Speed Out"], s["Factory GHS"]) == (6450, 6480, 68796)
    assert wm.v2_firmware(None, None, s) == "20210322.22.REL"
    assert wm.v2_error_codes(None, s) == ()


def check_v1_summary_errors(r: dict) -> None:
    assert wm.v2_error_codes(None, r["SUMMARY"][0]) == ("110", "600")


def check_v1_status(r: dict) -> None:
    assert wm.v2_is_mining(r, 67.4) is True
    assert wm.v2_firmware(None, r, {}) == "20220919.15.REL"


def check_v1_version(r: dict) -> None:
    assert wm.api_for_firmware(wm.msg(r)["fw_ver"]) == "v2"
    assert wm.v2_firmware(r, None, {}) == "20210322.22.REL"


def check_v1_psu(r: dict) -> None:
    assert wm.msg(r)["model"] == "P21-12-3600-E"


def check_v1_pools(r: dict) -> None:
    pools = _pools(cgminer_pools(r))
    assert pools[0] == ("stratum+tcp://btc.example.pool:3333", "asic-rs.test", "Alive", 2338, 0)
    assert len(pools) == 3


def check_v2_devs(r: dict) -> None:
    assert _boards(wm.v2_boards(r, 135)) == [
        (0, approx(41.5), 65.0, 80.0, 135, 600.0),
        (1, approx(41.8), 66.0, 81.0, 135, 600.0),
        (2, approx(41.7), 67.0, 81.0, 135, 600.0),
    ]


def check_v2_summary(r: dict) -> None:
    s = r["SUMMARY"][0]
    assert wm.v2_hashrate_ths(s) == approx(124.5)
    assert (wm.v2_power_w(s), s["Power Limit"], s["Env Temp"]) == (3200, 3300, 28.5)
    assert (s["Fan Speed In"], s["Fan Speed Out"], s["Factory GHS"]) == (5400, 5280, 126000)


def check_v2_status(r: dict) -> None:
    m = wm.msg(r)
    assert (m["power_mode"], m["power_limit_set"]) == ("low", "3600")
    assert wm.v2_is_mining(r, None) is None  # mineroff false and no hashrate given
    assert wm.v2_power_mode({}, r) == "low"


def check_v2_version(r: dict) -> None:
    m = wm.msg(r)
    assert (m["api_ver"], wm.api_for_firmware(m["fw_ver"])) == ("2.0.5", "v2")


def check_v2_errors_none(r: dict) -> None:
    assert wm.v2_error_codes(r, {}) == ()


def check_v2_errors(r: dict) -> None:
    assert wm.v2_error_codes(r, {}) == ("218", "110")


def check_v2_miner_info(r: dict) -> None:
    assert wm.msg(r)["mac"] == "D4:01:02:03:04:05"


def check_v2_psu(r: dict) -> None:
    assert wm.msg(r)["fan_speed"] == "6000"


def check_v2_pools(r: dict) -> None:
    pools = _pools(cgminer_pools(r))
    assert pools[0] == ("stratum+tcp://btc.example.pool:3333", "asic-rs.test", "Alive", 5412, 0)
    assert len(pools) == 3


def check_v3_info(r: dict) -> None:
    m = wm.msg(r)
    assert (m["miner"]["type"], m["system"]["fwversion"]) == ("M60S_VK40", "20251209.16.Rel2")
    assert wm.api_for_firmware(m["system"]["fwversion"]) == "v3"
    assert m["miner"]["working"] == "true"
    assert wm.v3_error_codes(m) == ()


def check_v3_info_errors(r: dict) -> None:
    assert wm.v3_error_codes(wm.msg(r)) == ("264", "265", "266", "267", "270")


def check_v3_summary(r: dict) -> None:
    s = wm.msg(r)["summary"]
    assert (s["hash-realtime"], s["power-realtime"], s["power-limit"]) == (171.259, 3156.0, 3600)
    assert (s["fan-speed-in"], s["fan-speed-out"], s["environment-temperature"]) == (
        5400,
        5280,
        28.5,
    )


def check_v3_edevs(r: dict) -> None:
    summary = {"board-temperature": [41.1, 40.1, 41.5]}
    assert _boards(wm.v3_boards(r, summary, 75)) == [
        (0, 57.2, 41.1, 80.0, 75, 625.0),
        (1, 57.0, 40.1, 82.0, 75, 625.0),
        (2, 57.1, 41.5, 81.0, 75, 625.0),
    ]


def check_v3_pools(r: dict) -> None:
    pools = _pools(wm.v3_pools(r))
    assert pools[0] == ("stratum+tcp://btc.example.pool:3333", "asic-rs.test", "alive", None, None)
    assert len(pools) == 3


EXPECTED: dict[str, Callable[[dict[str, Any]], None]] = {
    "antminer/v2020/devs.json": check_am_devs,
    "antminer/v2020/pools.json": check_am_pools,
    "antminer/v2020/stats.json": check_am_stats,
    "antminer/v2020/summary.json": check_am_summary,
    "antminer/v2020/system_info.json": check_am_system_info,
    "antminer/v2020/version.json": check_am_version,
    "whatsminer/v1/devs.json": check_v1_devs,
    "whatsminer/v1/get_psu.json": check_v1_psu,
    "whatsminer/v1/get_version.json": check_v1_version,
    "whatsminer/v1/pools.json": check_v1_pools,
    "whatsminer/v1/status.json": check_v1_status,
    "whatsminer/v1/summary.json": check_v1_summary,
    "whatsminer/v1/summary_with_errors.json": check_v1_summary_errors,
    "whatsminer/v2/devs.json": check_v2_devs,
    "whatsminer/v2/get_error_code.json": check_v2_errors_none,
    "whatsminer/v2/get_error_code_with_errors.json": check_v2_errors,
    "whatsminer/v2/get_miner_info.json": check_v2_miner_info,
    "whatsminer/v2/get_psu.json": check_v2_psu,
    "whatsminer/v2/get_version.json": check_v2_version,
    "whatsminer/v2/pools.json": check_v2_pools,
    "whatsminer/v2/status.json": check_v2_status,
    "whatsminer/v2/summary.json": check_v2_summary,
    "whatsminer/v3/get_device_info.json": check_v3_info,
    "whatsminer/v3/get_device_info_with_errors.json": check_v3_info_errors,
    "whatsminer/v3/get_miner_status_edevs.json": check_v3_edevs,
    "whatsminer/v3/get_miner_status_pools.json": check_v3_pools,
    "whatsminer/v3/get_miner_status_summary.json": check_v3_summary,
}

FILES = all_fixture_files()


def _rel(path: Path) -> str:
    return path.relative_to(FIXTURES).as_posix()


def test_every_fixture_file_has_expectations() -> None:
    assert {_rel(p) for p in FILES} == set(EXPECTED)


async def fetch(path: Path) -> dict[str, Any]:
    """Serve one file with the fake its firmware speaks and fetch it with the real client."""
    cmd = COMMAND_FOR_FILE[path.stem]
    raw = path.read_bytes()  # noqa: ASYNC240 - a few KB from local disk before any I/O
    if isinstance(cmd, tuple):
        async with FakeV3Server({cmd: raw}) as srv:
            transport = TcpFramedTransport(HOST, srv.port, timeouts=FAST)
            try:
                return await BtminerV3Protocol(transport, "pw", retry=QUICK_RETRY).command(*cmd)
            finally:
                await transport.close()
    if cmd.startswith("web:"):
        async with FakeAntminerWeb(system_info=json.loads(raw)) as srv:
            transport = HttpTransport(HOST, srv.port, credentials=ANTMINER_CREDS, timeouts=FAST)
            try:
                return await AntminerWebProtocol(transport, QUICK_RETRY).get(cmd[4:])
            finally:
                await transport.close()
    if _rel(path).startswith("antminer"):
        async with FakeRpcServer({cmd: raw}, trailing_nul=True) as srv:
            return await CgminerProtocol(
                TcpJsonTransport(HOST, srv.port, timeouts=FAST), QUICK_RETRY
            ).command(cmd)
    async with FakeRpcServer({cmd: raw}) as srv:
        p = BtminerV2Protocol(
            TcpJsonTransport(HOST, srv.port, timeouts=FAST), WHATSMINER_CREDS.password, QUICK_RETRY
        )
        reply = await p.command(cmd)
        assert srv.requests == [{"cmd": cmd}]
        return reply


@pytest.mark.parametrize("path", FILES, ids=_rel)
async def test_fixture_parses(path: Path) -> None:
    EXPECTED[_rel(path)](await fetch(path))
