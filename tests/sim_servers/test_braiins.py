"""Braiins OS units: BOSminer RPC and editing /etc/bosminer.toml over SSH (asyncssh client)."""

from __future__ import annotations

import tomllib

import asyncssh
import pytest

from agent.simulator.servers import braiins
from tests.sim_servers.conftest import refused, rpc, wait_until


@pytest.fixture
async def bos(make_farm, tmp_path):
    farm = await make_farm({"s19jpro/braiins": 1})
    inventory = farm.write_inventory(tmp_path / "farm.toml")
    entry = tomllib.loads(inventory.read_text())["miners"][0]
    return farm, farm.device("s19jpro-0001"), entry


async def connect(dev, entry, password: str = "root") -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        dev.host,
        port=dev.ports.ssh,
        username="root",
        password=password,
        known_hosts=entry["known_hosts"],
        client_keys=None,
    )


async def test_rpc_banner_and_tuner(bos):
    _farm, dev, _entry = bos
    version = await rpc(dev, "version")
    assert version["STATUS"][0]["Description"].startswith("BOSminer ")
    assert version["VERSION"][0]["API"] == "3.7"
    tuner = (await rpc(dev, "tunerstatus"))["TUNERSTATUS"][0]
    assert tuner["PowerLimit"] == round(dev.profile.rated.power_w)
    devs = (await rpc(dev, "devs"))["DEVS"]
    assert [d["ID"] for d in devs] == [1, 2, 3]
    assert all(d["Nominal MHS"] > 0 for d in devs)
    multi = await rpc(dev, "summary+temps+fans")
    assert set(multi) == {"summary", "temps", "fans", "id"}


async def test_edit_power_target_over_ssh(bos):
    farm, dev, entry = bos
    async with await connect(dev, entry) as conn:
        current = (await conn.run(f"cat {braiins.CONFIG_PATH}", check=True)).stdout
        config = tomllib.loads(current)
        assert config["autotuning"]["mode"] == "power_target"
        new = current.replace(
            f"power_target = {config['autotuning']['power_target']}", "power_target = 2500"
        )
        stop = await conn.run("/etc/init.d/bosminer stop")
        assert stop.exit_status == 0
        await wait_until(lambda: not dev.listeners["rpc"].is_open)
        assert await refused(dev, dev.ports.rpc)
        wrote = await conn.run(f"cat > {braiins.CONFIG_PATH}", input=new)
        assert wrote.exit_status == 0
        start = await conn.run("/etc/init.d/bosminer start")
        assert start.exit_status == 0
        back = (await conn.run(f"cat {braiins.CONFIG_PATH}")).stdout
    assert "power_target = 2500" in back
    assert dev.unit.settings["power_limit_w"] == 2500.0
    farm.clock.advance(120)
    dev.changed()
    await wait_until(lambda: dev.listeners["rpc"].is_open)
    assert (await rpc(dev, "tunerstatus"))["TUNERSTATUS"][0]["PowerLimit"] == 2500


async def test_pyasic_style_echo_and_old_key_rejected(bos):
    _farm, dev, entry = bos
    bad = "[autotuning]\nenabled = true\npsu_power_limit = 2000\n"
    async with await connect(dev, entry) as conn:
        await conn.run("/etc/init.d/bosminer stop")
        await conn.run(f"echo '{bad}' > {braiins.CONFIG_PATH}")
        result = await conn.run("/etc/init.d/bosminer start")
    assert result.exit_status == 1
    assert "psu_power_limit" in result.stderr
    assert dev.state["bosminer_running"] is False
    assert not dev.endpoint_up("rpc")


async def test_old_schema_unit_takes_psu_power_limit(make_farm, tmp_path):
    farm = await make_farm({"s19jpro/braiins": 1}, bos_old_schema_fraction=1.0)
    dev = farm.device("s19jpro-0001")
    entry = tomllib.loads(farm.write_inventory(tmp_path / "f.toml").read_text())["miners"][0]
    async with await connect(dev, entry) as conn:
        text = (await conn.run(f"cat {braiins.CONFIG_PATH}")).stdout
        assert "psu_power_limit" in text
        assert "power_target" not in text
        new = "[autotuning]\nenabled = true\npsu_power_limit = 2200\n"
        await conn.run(f"cat > {braiins.CONFIG_PATH}", input=new)
        result = await conn.run("/etc/init.d/bosminer restart")
    assert result.exit_status == 0
    assert dev.unit.settings["power_limit_w"] == 2200.0


async def test_ssh_rejects_wrong_password_and_unknown_commands(bos):
    _farm, dev, entry = bos
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(dev, entry, password="nope")
    async with await connect(dev, entry) as conn:
        result = await conn.run("rm -rf /")
    assert result.exit_status == 127


async def test_host_key_is_pinned(bos, tmp_path):
    _farm, dev, entry = bos
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[{dev.host}]:{dev.ports.ssh} {other}")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await asyncssh.connect(
            dev.host,
            port=dev.ports.ssh,
            username="root",
            password="root",
            known_hosts=str(wrong),
            client_keys=None,
        )
    known = open(entry["known_hosts"]).read()  # noqa: ASYNC230 - tiny local file in a test
    assert f"[{dev.host}]:{dev.ports.ssh} ssh-ed25519 " in known
