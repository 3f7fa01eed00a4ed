"""The agent's drivers against the independently written simulator (agent/simulator), ports mode
on 127.0.0.1, frozen clock advanced by hand: reads of every model, every control round-trip.

The simulator's server-side crypto (btminer V2 token/AES, V3 salted token, digest auth, SSH
host keys) was written separately from the agent's client code, so these tests are the
cross-check the fixture fakes cannot be.
"""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.credentials import Credentials, load_credentials
from agent.drivers.base import DriverConfig, MinerDriver, PoolConfig
from agent.drivers.factory import identify, make_driver
from agent.errors import (
    MinerAuthError,
    MinerConnectionError,
    MinerError,
    PartialApplyError,
    UnsupportedMinerError,
)
from agent.profiles import load_profiles
from agent.simulator.clock import SimClock
from agent.simulator.farm import Farm
from agent.snapshot import Settings
from tests.wire.conftest import FAST, QUICK_RETRY

#: Every shipped hardware profile once on its default firmware, plus the other firmwares.
EVERY_MODEL = {pid: 1 for pid in sorted(load_profiles())} | {
    "s19jpro/braiins": 1,
    "s19xp/braiins": 1,
    "m60s/whatsminer_v3": 1,
    "m50/whatsminer_v3": 1,
}
#: Simulated seconds that cover any restart or ramp (Whatsminer power-limit restart, BOS).
SETTLE_S = 900.0


class SimFarm:
    """A started farm plus what the agent needs to reach each unit (from its inventory)."""

    def __init__(self, farm: Farm, inventory: dict[str, Any]) -> None:
        self.farm = farm
        self.secrets = Path(inventory["secrets_dir"])
        self.entries = {m["id"]: m for m in inventory["miners"]}

    def config(self, unit_id: str) -> DriverConfig:
        m = self.entries[unit_id]
        return DriverConfig(
            host=m["host"],
            driver=m["driver"],
            ports=dict(m["ports"]),
            api=m.get("api"),
            model=m.get("model"),
            credentials=m["credentials"],
            miner_id=unit_id,
        )

    def credentials(self, unit_id: str) -> Credentials:
        m = self.entries[unit_id]
        return load_credentials(m["credentials"], self.secrets, m["driver"])

    def driver(self, unit_id: str, credentials: Credentials | None = None) -> MinerDriver:
        m = self.entries[unit_id]
        known = Path(m["known_hosts"]) if "known_hosts" in m else None
        return make_driver(
            self.config(unit_id),
            credentials or self.credentials(unit_id),
            known,
            timeouts=FAST,
            retry=QUICK_RETRY,
        )

    @contextlib.asynccontextmanager
    async def driving(
        self, unit_id: str, credentials: Credentials | None = None
    ) -> AsyncIterator[MinerDriver]:
        """A driver for ``unit_id``, closed when the block ends."""
        driver = self.driver(unit_id, credentials)
        try:
            yield driver
        finally:
            await driver.close()

    async def settle(self, unit_id: str) -> None:
        """Advance simulated time past restarts and wait for the unit's API to listen again."""
        device = self.farm.device(unit_id)
        self.farm.clock.advance(SETTLE_S)
        device.changed()
        async with asyncio.timeout(3.0):
            while not all(lst.is_open for lst in device.listeners.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.02)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: start a farm in ports mode on a frozen clock; stopped after the test."""
    farms: list[Farm] = []

    async def start(mix: dict[str, int], **kw: Any) -> SimFarm:
        farm = Farm(
            mix,
            seed=7,
            ports_mode=True,
            clock=SimClock(speed=0),
            state_dir=tmp_path / f"sim{len(farms)}",
            **kw,
        )
        farms.append(farm)
        await farm.start()
        inventory = farm.write_inventory(tmp_path / f"inventory{len(farms)}.toml")
        return SimFarm(farm, tomllib.loads(inventory.read_text()))

    yield start
    for farm in farms:
        await farm.stop()
        assert farm.handler_errors.count == 0, farm.handler_errors.last_traceback


async def test_reads_and_identify_every_model(sim) -> None:
    s = await sim(EVERY_MODEL)
    assert len(s.entries) == len(EVERY_MODEL)
    for unit_id, entry in s.entries.items():
        device = s.farm.device(unit_id)
        truth = device.reading()
        driver = s.driver(unit_id)
        try:
            snap = await driver.read()
        finally:
            await driver.close()
        profile = device.profile
        expected_make = "braiins" if device.firmware == "braiins" else profile.make
        assert (snap.make, snap.model) == (expected_make, device.model), unit_id
        assert snap.firmware, unit_id
        assert snap.hashrate_ths == pytest.approx(truth.hashrate_5s_ths, rel=0.02), unit_id
        assert snap.hashrate_avg_ths == pytest.approx(truth.hashrate_avg_ths, rel=0.02), unit_id
        assert len(snap.boards) == profile.hardware.boards, unit_id
        assert all(
            b.chips == b.expected_chips == profile.hardware.chips_per_board for b in snap.boards
        ), unit_id
        assert len(snap.fans_rpm) == len(truth.fans_rpm), unit_id
        assert snap.is_mining is True, unit_id
        assert (snap.uptime_s or 0) > 0, unit_id
        assert len(snap.pools) == 3, unit_id
        if device.firmware == "antminer":
            assert snap.power_w is None  # stock firmware does not report power
            assert snap.power_mode == "normal"
        else:
            assert (snap.power_w or 0) > 0, unit_id
            assert snap.power_limit_w is not None, unit_id
        config = await identify(entry["host"], dict(entry["ports"]))
        assert config.driver == entry["driver"], unit_id
        assert config.api == entry.get("api"), unit_id


@pytest.mark.parametrize(
    ("firmware", "limit_w", "percent", "respbefore"),
    [("whatsminer_v2", 3000, 80, True), ("whatsminer_v3", 3100, 85, False)],
    ids=["v2", "v3"],
)
async def test_whatsminer_controls(
    sim, firmware: str, limit_w: int, percent: int, respbefore: bool
) -> None:
    s = await sim({f"m60s/{firmware}": 1})
    unit_id = "m60s-0001"
    unit = s.farm.device(unit_id).unit
    async with s.driving(unit_id) as driver:
        assert (await driver.apply(Settings(power_limit_w=limit_w))).restarted
        await s.settle(unit_id)
        assert (await driver.read()).power_limit_w == limit_w
        await driver.apply(Settings(power_percent=percent))
        assert unit.settings["power_percent"] == percent
        for mode in ("low", "high", "normal"):
            await driver.apply(Settings(power_mode=mode))
            assert (await driver.read()).power_mode == mode
        await driver.apply(Settings(mining=False))
        if respbefore:
            await asyncio.sleep(0.05)  # V2 power_off acts just after its reply (respbefore)
            assert unit.settings["mining"] is False
        else:
            await s.settle(unit_id)
        assert (await driver.read()).is_mining is False
        await driver.apply(Settings(mining=True))
        await s.settle(unit_id)
        assert (await driver.read()).is_mining is True
        await driver.set_pools([PoolConfig("stratum+tcp://sim.example:3333", "hp.w1", "x")])
        assert [p.url for p in (await driver.read()).pools] == ["stratum+tcp://sim.example:3333"]


async def test_whatsminer_v2_percent_with_limit_is_refused_before_sending(sim) -> None:
    s = await sim({"m60s/whatsminer_v2": 1})
    unit_id = "m60s-0001"
    unit = s.farm.device(unit_id).unit
    before = dict(unit.settings)
    async with s.driving(unit_id) as driver:
        with pytest.raises(UnsupportedMinerError, match="power_percent"):
            await driver.apply(Settings(power_limit_w=3000, power_percent=80))
    assert unit.settings == before  # nothing half-applied


async def test_whatsminer_v2_partial_apply_names_what_was_applied(sim) -> None:
    s = await sim({"m60s/whatsminer_v2": 1})
    unit_id = "m60s-0001"
    unit = s.farm.device(unit_id).unit
    limit_before = unit.settings["power_limit_w"]
    async with s.driving(unit_id) as driver:
        await driver.apply(Settings(mining=False))
        await asyncio.sleep(0.05)  # power_off acts just after its reply (respbefore)
        # power_on restarts btminer; the limit that follows meets the restart's outage
        with pytest.raises(PartialApplyError) as info:
            await driver.apply(Settings(mining=True, power_limit_w=3000))
    err = info.value
    assert (err.applied_steps, err.failed_step) == (("start",), "power_limit=3000")
    assert isinstance(err.__cause__, MinerConnectionError)
    assert unit.settings["mining"] is True
    assert unit.settings["power_limit_w"] == limit_before


@pytest.mark.parametrize(
    ("model", "credentials", "settings"),
    [
        ("m30s/whatsminer_v2", Credentials("admin", "wrongpw1"), Settings(power_percent=90)),
        ("m50/whatsminer_v3", Credentials("super", "wrongpw1"), Settings(power_mode="low")),
        ("s19pro", Credentials("root", "not-root"), Settings(power_mode="sleep")),
    ],
    ids=["whatsminer_v2", "whatsminer_v3", "antminer_web"],
)
async def test_wrong_password_is_auth_error(
    sim, model: str, credentials: Credentials, settings: Settings
) -> None:
    s = await sim({model: 1})
    unit_id = model.split("/")[0] + "-0001"
    async with s.driving(unit_id, credentials) as driver:
        with pytest.raises(MinerAuthError):
            await driver.apply(settings)


async def test_antminer_modes_via_web(sim) -> None:
    s = await sim({"s19jpro": 1})
    unit_id = "s19jpro-0001"
    async with s.driving(unit_id) as driver:
        for mode, mining in (("sleep", False), ("low", True), ("normal", True)):
            result = await driver.apply(Settings(power_mode=mode))
            assert result.accepted
            assert result.restarted
            await s.settle(unit_id)
            snap = await driver.read()
            assert (snap.power_mode, snap.is_mining) == (mode, mining)
        pools = [PoolConfig("stratum+tcp://sim.example:3333", "hp.w1", "x")]
        await driver.set_pools(pools)
        assert (await driver.read()).pools[0].url == "stratum+tcp://sim.example:3333"


@pytest.mark.parametrize(("old_fraction", "key"), [(0.0, "power_target"), (1.0, "psu_power_limit")])
async def test_braiins_power_target_over_ssh(sim, old_fraction: float, key: str) -> None:
    s = await sim({"s19xp/braiins": 1}, bos_old_schema_fraction=old_fraction)
    unit_id = "s19xp-0001"
    assert "known_hosts" in s.entries[unit_id]  # the host key is pinned, never skipped
    async with s.driving(unit_id) as driver:
        result = await driver.apply(Settings(power_limit_w=2600))
        assert result.restarted
        await s.settle(unit_id)
        snap = await driver.read()
    assert snap.power_limit_w == 2600
    from agent.simulator.servers import braiins

    text = braiins.state(s.farm.device(unit_id))["text"]
    assert tomllib.loads(text)["autotuning"][key] == 2600


# --- physical effects through the drivers (B2) ----------------------------------------------


async def settled(s: SimFarm, unit_id: str, driver: MinerDriver) -> Any:
    """Read after simulated time has passed every restart and ramp."""
    await s.settle(unit_id)
    return await driver.read()


@pytest.mark.parametrize(
    "model", ["m60s/whatsminer_v2", "m60s/whatsminer_v3", "s19xp/braiins"], ids=lambda m: m
)
async def test_lower_power_limit_lowers_power_and_hashrate(sim, model: str) -> None:
    s = await sim({model: 1})
    unit_id = model.split("/")[0] + "-0001"
    bounds = s.farm.device(unit_id).profile.power
    async with s.driving(unit_id) as driver:
        before = await settled(s, unit_id, driver)
        assert before.power_w is not None
        limit = int(max(bounds.min_w, 0.8 * before.power_w))
        await driver.apply(Settings(power_limit_w=limit))
        after = await settled(s, unit_id, driver)
    assert after.power_limit_w == limit
    assert after.power_w is not None
    assert after.power_w < before.power_w
    assert after.power_w <= limit * 1.02
    assert after.hashrate_ths is not None
    assert before.hashrate_ths is not None
    assert after.hashrate_ths < before.hashrate_ths


@pytest.mark.parametrize("firmware", ["whatsminer_v2", "whatsminer_v3"])
async def test_lower_power_percent_lowers_power(sim, firmware: str) -> None:
    s = await sim({f"m60s/{firmware}": 1})
    unit_id = "m60s-0001"
    async with s.driving(unit_id) as driver:
        before = await settled(s, unit_id, driver)
        await driver.apply(Settings(power_percent=80))
        after = await settled(s, unit_id, driver)
    assert before.power_w is not None
    assert after.power_w is not None
    assert after.power_w < before.power_w


async def test_antminer_sleep_stops_hashing_while_the_web_ui_answers(sim) -> None:
    import httpx

    s = await sim({"s19jpro": 1})
    unit_id = "s19jpro-0001"
    config, creds = s.config(unit_id), s.credentials(unit_id)
    async with s.driving(unit_id) as driver:
        assert (await settled(s, unit_id, driver)).hashrate_ths
        await driver.apply(Settings(power_mode="sleep"))
        snap = await settled(s, unit_id, driver)
    assert snap.hashrate_ths == 0
    assert snap.boards, "a sleeping unit still lists its boards"
    assert all(b.hashrate_ths == 0 for b in snap.boards)
    url = f"http://{config.host}:{config.ports['web']}/cgi-bin/get_system_info.cgi"
    auth = httpx.DigestAuth(creds.username, creds.password)
    async with httpx.AsyncClient(auth=auth, timeout=2.0) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.json()["minertype"]


@pytest.mark.parametrize("firmware", ["whatsminer_v2", "whatsminer_v3"])
async def test_whatsminer_modes_order_hashrate(sim, firmware: str) -> None:
    s = await sim({f"m60s/{firmware}": 1})
    unit_id = "m60s-0001"
    rate: dict[str, float] = {}
    async with s.driving(unit_id) as driver:
        for mode in ("normal", "low", "high"):
            await driver.apply(Settings(power_mode=mode))
            snap = await settled(s, unit_id, driver)
            assert snap.power_mode == mode
            assert snap.hashrate_ths is not None
            rate[mode] = snap.hashrate_ths
    assert rate["low"] < rate["normal"]
    assert rate["high"] > rate["normal"]


# --- every simulator JSON quirk through driver.read() (SF5) ---------------------------------


def _essentials(snap: Any) -> dict[str, Any]:
    """What a quirk must not change once repaired (board slots may be renumbered by S9 chains)."""
    boards = snap.boards or ()
    return {
        "hashrate_ths": snap.hashrate_ths,
        "hashrate_avg_ths": snap.hashrate_avg_ths,
        "power_w": snap.power_w,
        "uptime_s": snap.uptime_s,
        "is_mining": snap.is_mining,
        "fans_rpm": snap.fans_rpm,
        "error_codes": snap.error_codes,
        "boards": [(b.hashrate_ths, b.chips, b.chip_temp_c, b.freq_mhz) for b in boards],
        "pools": None if snap.pools is None else [p.url for p in snap.pools],
    }


async def test_every_json_quirk_is_repaired_through_driver_read(sim) -> None:
    from agent.simulator.faults import JSON_QUIRKS

    s = await sim({"s19pro": 1, "m30s/whatsminer_v2": 1})
    broken: list[str] = []
    for unit_id in ("s19pro-0001", "m30s-0001"):
        device = s.farm.device(unit_id)
        async with s.driving(unit_id) as driver:
            clean = _essentials(await driver.read())
            assert None not in (clean["boards"], clean["fans_rpm"], clean["pools"]), unit_id
            for quirk in JSON_QUIRKS:
                s.farm.set_fault(unit_id, {"quirks": [quirk]})
                try:
                    got = _essentials(await driver.read())
                except MinerError as err:  # collected: the assertion below lists every one
                    broken.append(f"{unit_id} {quirk}: {type(err).__name__}: {err}")
                    continue
                finally:
                    s.farm.set_fault(unit_id, {"clear": True})
                if got != clean:
                    diff = {k: (clean[k], got[k]) for k in clean if got[k] != clean[k]}
                    broken.append(f"{unit_id} {quirk}: {diff}")
        assert device.faults.quirks == set(device.faults.for_firmware(device.firmware).quirks)
    assert broken == [], "\n".join(broken)
