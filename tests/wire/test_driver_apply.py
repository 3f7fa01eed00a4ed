"""Controls over loopback: Antminer mode via the CGI, Whatsminer V2/V3 privileged writes,
Braiins power target over SSH with a pinned host key."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import asyncssh
import pytest

from agent.drivers.base import PoolConfig
from agent.errors import (
    ConfigError,
    MinerAuthError,
    MinerCommandError,
    UnsafeSettingsError,
    UnsupportedMinerError,
)
from agent.snapshot import Settings
from tests.wire.fakes import braiins_rpc
from tests.wire.fakes.rpc_server import FakeRpcServer
from tests.wire.fakes.ssh_server import NEW_TOML, OLD_TOML, FakeBosminerSsh
from tests.wire.fakes.web_server import MINER_CONF
from tests.wire.fakes.whatsminer_v2 import V2Privileged
from tests.wire.helpers import antminer, braiins_driver, closing, whatsminer_v2, whatsminer_v3

#: An auth failure is answered at once and never retried: well under a second on loopback.
FAULT_BOUND_S = 0.5

# --- Antminer ------------------------------------------------------------------------------


async def test_antminer_sleep_is_read_modify_write_and_verified() -> None:
    async with antminer() as (driver, _, web):
        result = await driver.apply(Settings(power_mode="sleep"))
        snap = await driver.read()
    assert result.accepted
    assert result.restarted
    assert web.conf["bitmain-work-mode"] == "1"
    (body,) = web.posts
    assert body["miner-mode"] == 1
    assert body["pools"] == MINER_CONF["pools"]  # the rest of the config preserved
    assert (body["bitmain-fan-ctrl"], body["bitmain-fan-pwm"], body["freq-level"]) == (
        False,
        "100",
        "100",
    )
    assert (snap.power_mode, snap.is_mining) == ("sleep", False)


async def test_antminer_mining_true_wakes_and_noop_is_not_sent() -> None:
    async with antminer() as (driver, _, web):
        web.conf["bitmain-work-mode"] = "1"
        woke = await driver.apply(Settings(mining=True))
        again = await driver.apply(Settings(power_mode="normal"))
    assert woke.accepted
    assert web.conf["bitmain-work-mode"] == "0"
    assert again.detail == "already normal"
    assert len(web.posts) == 1


async def test_antminer_reply_dropped_by_restart_is_verified_by_read_back() -> None:
    async with antminer(web_kw={"drop_set_reply": True}) as (driver, _, web):
        result = await driver.apply(Settings(mining=False))
    assert result.accepted
    assert web.conf["bitmain-work-mode"] == "1"
    assert len(web.posts) == 1  # not re-sent


async def test_antminer_bounds_and_capabilities_from_profile() -> None:
    async with antminer() as (driver, _, web):
        await driver.read()  # learns the model: S19 Pro profile offers normal/sleep only
        caps = driver.capabilities
        assert caps.knob("power_mode").choices == ("normal", "sleep")
        with pytest.raises(UnsafeSettingsError):
            await driver.apply(Settings(power_mode="low"))
        with pytest.raises(UnsupportedMinerError):
            await driver.apply(Settings(power_limit_w=3000))
    assert web.posts == []


async def test_antminer_wrong_web_password_is_auth_error() -> None:
    async with antminer(web_kw={"password": "changed"}) as (driver, _, web):
        started = time.monotonic()
        with pytest.raises(MinerAuthError, match="401"):
            await driver.apply(Settings(power_mode="sleep"))
        assert time.monotonic() - started < FAULT_BOUND_S
    assert web.posts == []


async def test_antminer_set_pools_keeps_mode() -> None:
    async with antminer() as (driver, _, web):
        web.conf["bitmain-work-mode"] = "1"
        await driver.set_pools([PoolConfig("stratum+tcp://a.example:3333", "w1", "pw")])
    assert web.conf["pools"] == [
        {"url": "stratum+tcp://a.example:3333", "user": "w1", "pass": "pw"}
    ]
    assert web.posts[0]["miner-mode"] == 1


# --- Whatsminer V2 -----------------------------------------------------------------------


async def test_whatsminer_v2_every_control_round_trips() -> None:
    priv = V2Privileged("s3cret-pw")
    async with whatsminer_v2("whatsminer/v2", privileged=priv) as (driver, _):
        await driver.read()  # learns API 2.0.5
        limit = await driver.apply(Settings(power_limit_w=3000))
        pct = await driver.apply(Settings(power_percent=80))
        modes = [await driver.apply(Settings(power_mode=m)) for m in ("low", "high", "normal")]
        off = await driver.apply(Settings(mining=False))
        on = await driver.apply(Settings(mining=True))
        await driver.set_pools([PoolConfig("stratum+tcp://p.example:3333", "w", "x")])
    assert limit.restarted
    assert not pct.restarted
    assert all(m.accepted for m in modes)
    assert off.accepted
    assert on.accepted
    assert [c["cmd"] for c in priv.executed] == [
        "adjust_power_limit",
        "set_power_pct_v2",
        "set_low_power",
        "set_high_power",
        "set_normal_power",
        "power_off",
        "power_on",
        "update_pools",
    ]
    assert priv.executed[0]["power_limit"] == "3000"
    assert priv.executed[5]["respbefore"] == "true"
    assert priv.state["pools"] == ["stratum+tcp://p.example:3333"]
    assert priv.tokens_issued == 1  # one cached token served all eight writes


async def test_whatsminer_v2_restart_causing_steps_go_last() -> None:
    priv = V2Privileged("s3cret-pw")
    async with whatsminer_v2("whatsminer/v2", privileged=priv) as (driver, _):
        await driver.read()  # learns API 2.0.5
        await driver.apply(Settings(power_limit_w=3000, power_mode="low", mining=True))
        await driver.apply(Settings(power_mode="high", power_percent=80))
        with pytest.raises(UnsupportedMinerError, match="power_percent"):
            await driver.apply(Settings(power_limit_w=3100, power_percent=90))
    # kept running first (percent, live mode switch), then power on, the limit, and stop
    assert [c["cmd"] for c in priv.executed] == [
        "set_low_power",
        "power_on",
        "adjust_power_limit",
        "set_power_pct_v2",
        "set_high_power",
    ]
    assert priv.state["power_limit"] == 3000  # the refused request sent nothing


@pytest.mark.parametrize("api", ["v2", "v3"])
@pytest.mark.parametrize(
    ("settings", "knob"),
    [
        (Settings(mining=True), "mining"),
        (Settings(mining=False), "mining"),
        (Settings(power_limit_w=3000), "power_limit_w"),
        (Settings(power_percent=80), "power_percent"),
        (Settings(power_mode="low"), "power_mode"),
    ],
    ids=["start", "stop", "limit", "percent", "mode"],
)
async def test_whatsminer_restarted_whenever_a_restarting_step_ran(
    api: str, settings: Settings, knob: str
) -> None:
    if api == "v2":
        priv = V2Privileged("s3cret-pw")
        async with whatsminer_v2("whatsminer/v2", privileged=priv) as (driver, _):
            result = await driver.apply(settings)
            restarts = driver.capabilities.knob(knob).restarts
    else:
        async with whatsminer_v3() as (driver, _):
            result = await driver.apply(settings)
            restarts = driver.capabilities.knob(knob).restarts
    assert result.restarted == restarts
    assert restarts == (knob != "power_percent")  # power_on restarts btminer too


async def test_whatsminer_v2_wrong_password_is_auth_error_not_retried() -> None:
    priv = V2Privileged("the-real-password")
    async with whatsminer_v2("whatsminer/v2", privileged=priv) as (driver, rpc):
        started = time.monotonic()
        with pytest.raises(MinerAuthError, match="password"):
            await driver.apply(Settings(power_limit_w=3000))
        assert time.monotonic() - started < FAULT_BOUND_S
    assert priv.executed == []
    assert priv.tokens_issued == 1
    assert [r.get("cmd", "enc") for r in rpc.requests if "get_version" != r.get("cmd")] == [
        "get_token",
        "enc",
    ]


async def test_whatsminer_v2_write_api_disabled_is_auth_error() -> None:
    priv = V2Privileged("s3cret-pw", write_enabled=False)
    async with whatsminer_v2("whatsminer/v2", privileged=priv) as (driver, _):
        with pytest.raises(MinerAuthError, match="write"):
            await driver.apply(Settings(mining=False))


async def test_whatsminer_v2_token_expired_on_the_miner_is_refetched() -> None:
    priv = V2Privileged("s3cret-pw")
    async with whatsminer_v2("whatsminer/v2", privileged=priv) as (driver, _):
        await driver.apply(Settings(power_percent=90))
        priv.invalidate_tokens()  # btminer restarted: every token it issued is gone
        started = time.monotonic()
        result = await driver.apply(Settings(power_percent=70))
        assert time.monotonic() - started < FAULT_BOUND_S
    assert result.accepted
    assert priv.tokens_issued == 2
    assert [c["percent"] for c in priv.executed] == ["90", "70"]


class HandClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_whatsminer_v2_token_cache_expiry_is_honoured() -> None:
    clock = HandClock()  # shared by the client's cache and the fake's token expiry
    priv = V2Privileged("s3cret-pw", token_ttl_s=1800, clock=clock)
    async with whatsminer_v2(
        "whatsminer/v2",
        privileged=priv,
        token_lifetime_s=1800,
        token_refresh_margin_s=60,
        monotonic=clock,
    ) as (driver, _):
        await driver.apply(Settings(power_percent=90))
        clock.now += 1739.5  # inside lifetime - margin (1740 s): the cached token is used
        await driver.apply(Settings(power_percent=91))
        issued_while_fresh = priv.tokens_issued
        clock.now += 0.5  # lifetime - margin reached: a fresh token before the miner's expiry
        await driver.apply(Settings(power_percent=92))
    assert (issued_while_fresh, priv.tokens_issued) == (1, 2)
    assert [c["percent"] for c in priv.executed] == ["90", "91", "92"]


async def test_whatsminer_v2_token_limit_on_the_miner() -> None:
    priv = V2Privileged("s3cret-pw", max_tokens=1)
    async with whatsminer_v2("whatsminer/v2", privileged=priv) as (driver, _):
        await driver.apply(Settings(power_percent=90))
        await driver.v2.reset_session()
        with pytest.raises(MinerCommandError) as info:
            await driver.apply(Settings(power_percent=80))
    assert info.value.code == 136


async def test_whatsminer_v2_client_never_asks_for_a_33rd_token() -> None:
    priv = V2Privileged("s3cret-pw", max_tokens=100)
    async with whatsminer_v2("whatsminer/v2", privileged=priv) as (driver, _):
        for _ in range(32):
            await driver.v2.reset_session()
            await driver.apply(Settings(power_percent=90))
        await driver.v2.reset_session()
        with pytest.raises(MinerCommandError, match="refusing"):
            await driver.apply(Settings(power_percent=90))
    assert priv.tokens_issued == 32


async def test_whatsminer_bounds_from_profile() -> None:
    priv = V2Privileged("s3cret-pw")
    async with whatsminer_v2("whatsminer/v2", privileged=priv, model="M60S_VK40") as (d, _):
        knob = d.capabilities.knob("power_limit_w")
        assert (knob.min, knob.max, knob.restarts, knob.restart_s) == (1030.0, 3600.0, True, 480.0)
        with pytest.raises(UnsafeSettingsError):
            await d.apply(Settings(power_limit_w=5000))
        with pytest.raises(UnsafeSettingsError):
            await d.apply(Settings(power_percent=150))
    assert priv.executed == []


# --- Whatsminer V3 -----------------------------------------------------------------------


async def test_whatsminer_v3_every_control_round_trips() -> None:
    async with whatsminer_v3() as (driver, srv):
        limit = await driver.apply(Settings(power_limit_w=3200))
        await driver.apply(Settings(power_percent=75))
        await driver.apply(Settings(power_mode="low"))
        await driver.apply(Settings(mining=False))
        stopped = srv.state["service"]
        await driver.apply(Settings(mining=True))
        await driver.set_pools([PoolConfig("stratum+tcp://p.example:3333", "w", "x")])
    assert limit.restarted
    assert srv.state["power_limit"] == 3200
    assert srv.state["percent"] == (75, "normal")
    assert srv.state["power_mode"] == "low"
    assert (stopped, srv.state["service"]) == ("stop", "start")
    assert srv.state["pools"] == [
        {"pool": "stratum+tcp://p.example:3333", "worker": "w", "passwd": "x"}
    ]
    writes = [r for r in srv.requests if r["cmd"].startswith("set.")]
    assert all(r["account"] == "super" and len(r["token"]) == 8 for r in writes)
    assert isinstance(writes[-1]["param"], str)  # pools travel encrypted
    assert srv.connections == 1


async def test_whatsminer_v3_wrong_password_is_auth_error() -> None:
    async with whatsminer_v3(password="something-else") as (driver, srv):
        started = time.monotonic()
        with pytest.raises(MinerAuthError, match="no permission"):
            await driver.apply(Settings(power_limit_w=3200))
        assert time.monotonic() - started < FAULT_BOUND_S
    assert srv.state["power_limit"] == 3600


async def test_whatsminer_v3_changed_salt_is_refetched_once() -> None:
    async with whatsminer_v3() as (driver, srv):
        await driver.apply(Settings(power_mode="low"))
        srv.salt = "newSalt1"  # password reset on the unit
        await driver.apply(Settings(power_mode="high"))
    salts = [r for r in srv.requests if r.get("param") == "salt"]
    assert len(salts) == 2
    assert srv.state["power_mode"] == "high"


# --- Braiins over SSH --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml_text", "schema", "key"),
    [
        (OLD_TOML, "old", "psu_power_limit"),
        (NEW_TOML, "new", "power_target"),
    ],
)
async def test_braiins_power_target_over_ssh(
    tmp_path: Path, toml_text: str, schema: str, key: str
) -> None:
    async with FakeRpcServer(braiins_rpc.replies()) as rpc, FakeBosminerSsh(toml_text) as ssh:
        known = ssh.write_known_hosts(tmp_path / "known_hosts")
        async with closing(braiins_driver(rpc.port, ssh.port, known)) as driver:
            await driver.read()
            result = await driver.apply(Settings(power_limit_w=2500))
    assert result.accepted
    assert result.restarted
    assert schema in result.detail
    data = tomllib.loads(ssh.config_text)
    assert data["autotuning"][key] == 2500
    assert ssh.restarts == 1
    assert ssh.commands[0] == "cat /etc/bosminer.toml"
    assert ssh.commands[-1] == "/etc/init.d/bosminer restart"
    # everything else survives byte for byte
    changed = [
        (a, b)
        for a, b in zip(toml_text.splitlines(), ssh.config_text.splitlines(), strict=True)
        if a != b
    ]
    assert len(changed) == 1
    assert key in changed[0][0]


async def test_braiins_wrong_host_key_is_refused(tmp_path: Path) -> None:
    async with FakeRpcServer(braiins_rpc.replies()) as rpc, FakeBosminerSsh(NEW_TOML) as ssh:
        impostor = asyncssh.generate_private_key("ssh-ed25519")
        known = tmp_path / "known_hosts"
        known.write_text(ssh.known_hosts_line(impostor))
        async with closing(braiins_driver(rpc.port, ssh.port, known)) as driver:
            with pytest.raises(MinerAuthError, match="host key"):
                await driver.apply(Settings(power_limit_w=2500))
    assert ssh.commands == []
    assert ssh.restarts == 0


async def test_braiins_wrong_password(tmp_path: Path) -> None:
    from agent.credentials import Credentials

    async with FakeRpcServer(braiins_rpc.replies()) as rpc, FakeBosminerSsh(NEW_TOML) as ssh:
        known = ssh.write_known_hosts(tmp_path / "known_hosts")
        driver = braiins_driver(rpc.port, ssh.port, known, creds=Credentials("root", "nope"))
        async with closing(driver):
            with pytest.raises(MinerAuthError, match="credentials"):
                await driver.apply(Settings(power_limit_w=2500))
    assert ssh.commands == []


async def test_braiins_without_known_hosts_refuses_to_connect() -> None:
    async with FakeRpcServer(braiins_rpc.replies()) as rpc:
        async with closing(braiins_driver(rpc.port, 22)) as driver:
            with pytest.raises(ConfigError, match="known_hosts"):
                await driver.apply(Settings(power_limit_w=2500))


async def test_braiins_bounds_from_profile() -> None:
    async with FakeRpcServer(braiins_rpc.replies()) as rpc:
        async with closing(braiins_driver(rpc.port)) as driver:
            await driver.read()  # model S19 XP → profile bounds
            knob = driver.capabilities.knob("power_limit_w")
            assert knob.min is not None
            assert knob.max is not None
            assert knob.restarts
            with pytest.raises(UnsafeSettingsError):
                await driver.apply(Settings(power_limit_w=knob.max + 1))


async def test_braiins_cut_short_write_is_never_loaded(tmp_path: Path) -> None:
    from agent.errors import ApplyVerificationError

    async with (
        FakeRpcServer(braiins_rpc.replies()) as rpc,
        FakeBosminerSsh(NEW_TOML, truncate_writes=True) as ssh,
    ):
        known = ssh.write_known_hosts(tmp_path / "known_hosts")
        async with closing(braiins_driver(rpc.port, ssh.port, known)) as driver:
            with pytest.raises(ApplyVerificationError, match="not restarting"):
                await driver.apply(Settings(power_limit_w=2500))
    assert ssh.restarts == 0
