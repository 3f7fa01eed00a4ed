"""Whole-driver reads over loopback fakes: every snapshot field asserted against the fixtures."""

from __future__ import annotations

import copy
import json

import pytest

from agent.errors import MinerConnectionError, MinerTimeoutError
from agent.snapshot import MinerSnapshot
from tests.wire.conftest import FAST
from tests.wire.fakes import braiins_rpc, fixtures
from tests.wire.fakes.rpc_server import FakeRpcServer
from tests.wire.helpers import antminer, braiins_driver, closing, whatsminer_v2, whatsminer_v3

approx = pytest.approx


def boards(snap: MinerSnapshot) -> list[tuple]:
    return [
        (
            b.slot,
            b.hashrate_ths,
            b.board_temp_c,
            b.chip_temp_c,
            b.chips,
            b.expected_chips,
            b.freq_mhz,
        )
        for b in snap.boards or ()
    ]


def roundtrip(snap: MinerSnapshot) -> None:
    """The JSON contract: to_dict() is JSON-serialisable and from_dict() restores it."""
    data = json.loads(json.dumps(snap.to_dict()))
    assert MinerSnapshot.from_dict(data) == snap


async def test_antminer_s19pro_read() -> None:
    async with antminer() as (driver, rpc, _web):
        snap = await driver.read()
    assert (snap.make, snap.model, snap.firmware) == (
        "antminer",
        "Antminer S19 Pro",
        "Tue Dec 6 16:12:30 CST 2022",
    )
    assert snap.hashrate_ths == approx(110.56689)  # GHS 5s
    assert snap.hashrate_avg_ths == approx(111.83485)
    assert snap.expected_hashrate_ths == approx(110.0)
    assert (snap.power_w, snap.power_limit_w, snap.env_temp_c) == (None, None, None)
    assert snap.power_mode == "normal"
    assert snap.fans_rpm == (6000, 5880, 5040, 5040)
    assert (snap.uptime_s, snap.is_mining, snap.hw_errors) == (50474, True, 562)
    assert (snap.accepted, snap.rejected) == (4057, 11)
    assert snap.error_codes == ("temp:341",)
    assert boards(snap) == [
        (0, approx(37.6033), 73.0, 78.0, 114, 114, 525.0),
        (1, approx(35.53622), 66.0, 71.0, 114, 114, 525.0),
        (2, approx(37.42738), 64.0, 69.0, 114, 114, 525.0),
    ]
    assert len(snap.pools) == 3
    assert snap.pools[0].accepted == 4057
    assert rpc.requests == [{"command": "version+summary+stats+pools"}]
    assert driver.capabilities.reports_power is False
    roundtrip(snap)


async def test_antminer_one_bad_field_does_not_abort_the_read() -> None:
    stats = json.loads(fixtures.replies("antminer/v2020")["stats"])
    stats["STATS"][1]["chain_rate2"] = "n/a"  # garbled on one board only
    stats["STATS"][1]["fan_num"] = "four"
    async with antminer(rpc_kw={"handlers": {"stats": lambda _r: stats}}) as (driver, _, _w):
        snap = await driver.read()
    assert [b.hashrate_ths for b in snap.boards] == [approx(37.6033), None, approx(37.42738)]
    assert snap.boards[1].chips == 114
    assert snap.fans_rpm == (6000, 5880, 5040, 5040)  # from the web stats fallback
    assert snap.hashrate_ths == approx(110.56689)


async def test_antminer_read_survives_dead_web_ui() -> None:
    async with antminer(web_kw={"password": "not-root"}) as (driver, _, web):
        snap = await driver.read()
    assert snap.hashrate_ths == approx(110.56689)
    assert snap.power_mode is None
    assert snap.error_codes is None  # the web summary (their only source) was not read
    assert all(not authed for _, _, authed in web.requests)


async def test_antminer_rpc_down_but_web_up_reads_from_web() -> None:
    async with antminer(rpc_kw={"mode": "close"}) as (driver, _, _w):
        snap = await driver.read()
    assert snap.hashrate_ths == approx(110.56689)  # web summary rate_5s
    assert len(snap.boards) == 3
    assert snap.boards[0].chips == 114
    assert snap.pools is None  # only the RPC has pools: not read, not "no pools"


async def test_antminer_everything_down_is_an_error_not_zeros() -> None:
    async with antminer(rpc_kw={"mode": "silent"}, web_kw={"slow_s": 5}) as (driver, _, _w):
        with pytest.raises(MinerTimeoutError):
            await driver.read()


def _web_pages(web) -> list[str]:
    """The CGI pages the driver read (authorised requests, in order)."""
    return [path.removeprefix("/cgi-bin/") for _, path, authed in web.requests if authed]


async def test_antminer_reads_identity_once_and_web_stats_only_as_a_fallback() -> None:
    async with antminer() as (driver, _rpc, web):
        snaps = [await driver.read() for _ in range(3)]
    pages = _web_pages(web)
    assert pages.count("get_system_info.cgi") == 1
    assert pages.count("summary.cgi") == pages.count("get_miner_conf.cgi") == 3
    assert "stats.cgi" not in pages  # RPC `stats` gave boards and fans
    assert web.connections == 1  # the pages go one after another on one connection
    assert all(s.error_codes == ("temp:341",) and s.power_mode == "normal" for s in snaps)


async def test_antminer_identity_is_read_again_when_due_and_after_a_restart() -> None:
    summary = json.loads(fixtures.replies("antminer/v2020")["summary"])
    uptimes = iter([50474, 50504, 12, 42])

    def restarting(_request: dict) -> dict:
        reply = copy.deepcopy(summary)
        reply["SUMMARY"][0]["Elapsed"] = next(uptimes)
        return reply

    async with antminer(rpc_kw={"handlers": {"summary": restarting}}) as (driver, _, web):
        for _ in range(4):  # the third read sees uptime go backwards: bmminer restarted
            await driver.read()
    assert _web_pages(web).count("get_system_info.cgi") == 2  # reads 1 and 4
    async with antminer(identity_refresh_s=0.0) as (driver, _, web):
        for _ in range(2):
            await driver.read()
    assert _web_pages(web).count("get_system_info.cgi") == 2


async def test_antminer_identity_falls_back_to_the_cached_page() -> None:
    version = {"STATUS": [{"STATUS": "S", "Code": 22, "Msg": "CGMiner versions"}], "VERSION": [{}]}
    async with antminer(rpc_kw={"handlers": {"version": lambda _r: version}}) as (driver, _, _w):
        first = await driver.read()
        second = await driver.read()  # no new get_system_info: the cached one still answers
    assert first.model == second.model == "Antminer S19 Pro"
    assert first.firmware == second.firmware is not None


async def test_antminer_dead_web_ui_is_tried_once_per_poll() -> None:
    async with antminer(web_kw={"password": "not-root"}) as (driver, _, web):
        snap = await driver.read()
    assert snap.hashrate_ths == approx(110.56689)
    # the first page's refusal stands for the rest: one challenge and one answer, no more
    assert len(web.requests) == 2


@pytest.mark.parametrize("variant", [None, "with_errors"])
async def test_whatsminer_v1_firmware_read(variant: str | None) -> None:
    async with whatsminer_v2("whatsminer/v1", variant=variant) as (driver, rpc):
        snap = await driver.read()
    assert driver.api == "v2"  # fw 20210322 → API V2
    assert (snap.make, snap.model, snap.firmware) == ("whatsminer", None, "20210322.22.REL")
    assert snap.hashrate_ths == approx(67.43935249)
    assert snap.hashrate_avg_ths == approx(67.75325119)
    assert snap.expected_hashrate_ths == approx(68.796)
    assert (snap.power_w, snap.power_limit_w, snap.power_mode) == (3417, 3500, "normal")
    assert (snap.env_temp_c, snap.fans_rpm, snap.uptime_s) == (None, (6450, 6480), 10154)
    assert (snap.is_mining, snap.hw_errors, snap.accepted, snap.rejected) == (True, 69, 2338, 0)
    assert snap.error_codes == (("110", "600") if variant else ())
    assert boards(snap)[0] == (0, approx(22.10378984), 70.0, 90.0, 105, None, 650.0)
    assert len(snap.boards) == 3
    assert len(snap.pools) == 3
    assert {"cmd": "summary+devs+pools+devdetails"} in rpc.requests
    roundtrip(snap)


@pytest.mark.parametrize("variant", [None, "with_errors"])
async def test_whatsminer_v2_firmware_read(variant: str | None) -> None:
    async with whatsminer_v2("whatsminer/v2", variant=variant) as (driver, _):
        snap = await driver.read()
    assert driver.api == "v2"
    assert snap.firmware == "20230803.11.REL"
    assert snap.hashrate_ths == approx(124.5)
    assert (snap.power_w, snap.power_limit_w, snap.env_temp_c) == (3200, 3300, 28.5)
    assert snap.expected_hashrate_ths == approx(126.0)
    assert snap.fans_rpm == (5400, 5280)
    assert snap.error_codes == (("218", "110") if variant else ())
    assert [b.hashrate_ths for b in snap.boards] == [approx(41.5), approx(41.8), approx(41.7)]
    assert snap.is_mining is True


@pytest.mark.parametrize("variant", [None, "with_errors"])
async def test_whatsminer_v3_read(variant: str | None) -> None:
    async with whatsminer_v3(variant=variant) as (driver, srv):
        snap = await driver.read()
        snap2 = await driver.read()
    assert (snap.model, snap.firmware) == ("M60S_VK40", "20251209.16.Rel2")
    assert snap.hashrate_ths == approx(171.259)
    assert snap.hashrate_avg_ths == approx(170.8)
    assert snap.expected_hashrate_ths == approx(181.051)
    assert (snap.power_w, snap.power_limit_w, snap.env_temp_c) == (3156.0, 3600, 28.5)
    assert (snap.fans_rpm, snap.uptime_s, snap.is_mining) == ((5400, 5280), 50000, True)
    assert snap.error_codes == (("264", "265", "266", "267", "270") if variant else ())
    assert boards(snap) == [
        (0, 57.2, 41.1, 80.0, 75, 75, 625.0),
        (1, 57.0, 40.1, 82.0, 75, 75, 625.0),
        (2, 57.1, 41.5, 81.0, 75, 75, 625.0),
    ]
    assert [p.user for p in snap.pools] == ["asic-rs.test"] * 3
    assert snap2.hashrate_ths == snap.hashrate_ths
    assert srv.connections == 1  # persistent connection reused across reads
    roundtrip(snap)


async def test_whatsminer_v2_reads_identity_once_and_the_psu_only_without_power() -> None:
    async with whatsminer_v2("whatsminer/v2") as (driver, rpc):
        snaps = [await driver.read() for _ in range(3)]
    cmds = [r.get("cmd") for r in rpc.requests]
    assert cmds.count("get_version") == 1
    assert "get_psu" not in cmds  # `summary` has Power
    assert cmds.count("status") == cmds.count("get_error_code") == 3
    assert all(s.firmware == "20230803.11.REL" and s.power_w == 3200 for s in snaps)

    summary = json.loads(fixtures.replies("whatsminer/v1")["summary"])
    del summary["SUMMARY"][0]["Power"], summary["SUMMARY"][0]["Power_RT"]
    async with whatsminer_v2(
        "whatsminer/v1", identity_refresh_s=0.0, rpc_handlers={"summary": lambda _r: summary}
    ) as (driver, rpc):
        snaps = [await driver.read() for _ in range(2)]
    cmds = [r.get("cmd") for r in rpc.requests]
    assert cmds.count("get_psu") == 2  # the fallback source, read when needed
    assert cmds.count("get_version") == 3  # API detection, then due at every read
    assert snaps[0].firmware == "20210322.22.REL"


async def test_whatsminer_api_detected_from_v3_when_4028_is_closed() -> None:
    async with whatsminer_v3(api=None) as (driver, _):
        snap = await driver.read()
    assert driver.api == "v3"
    assert snap.hashrate_ths == approx(171.259)


async def test_whatsminer_unreachable_is_connection_error() -> None:
    async with whatsminer_v3(api=None) as (driver, srv):
        await srv.close()
        with pytest.raises(MinerConnectionError):
            await driver.read()


async def test_braiins_read() -> None:
    async with FakeRpcServer(braiins_rpc.replies()) as rpc:
        async with closing(braiins_driver(rpc.port)) as driver:
            snap = await driver.read()
    assert (snap.make, snap.model) == ("braiins", "Antminer S19 XP")
    assert snap.firmware == "2025-11-21-0-eb658dcd-25.11-plus"
    assert snap.hashrate_ths == approx(119.99500779)
    assert (snap.power_w, snap.power_limit_w) == (2472, 3031)
    assert snap.fans_rpm == braiins_rpc.FANS_RPM
    assert boards(snap)[0] == (0, approx(41.44365315), 56.5, 71.5, 110, 110, 406.25)
    assert snap.expected_hashrate_ths == approx(119.9678461)
    assert len(snap.pools) == 2
    assert snap.uptime_s == 20359
    roundtrip(snap)


async def test_timeouts_come_from_the_constructor() -> None:
    async with antminer() as (driver, _, _w):
        assert driver.rpc.transport.read_timeout_s == FAST.read_s
        assert driver.web.transport.deadline_s == FAST.deadline_s
