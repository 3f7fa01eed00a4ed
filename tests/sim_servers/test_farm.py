"""The farm: inventory and secrets, per-unit loopback addresses, admin endpoint, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import tomllib

import httpx
import pytest

from agent.credentials import load_credentials
from agent.simulator.cli import parse_mix, scale_mix
from tests.conftest import REPO
from tests.sim_servers.conftest import random_loopback_base, refused, rpc, wait_until


async def test_inventory_secrets_and_known_hosts(make_farm, tmp_path):
    farm = await make_farm({"s19jpro": 1, "m30s": 1, "m60s/whatsminer_v3": 1, "s21/braiins": 1})
    path = farm.write_inventory(tmp_path / "farm.toml")
    inv = tomllib.loads(path.read_text())
    secrets = inv["secrets_dir"]
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o700
    by_id = {m["id"]: m for m in inv["miners"]}
    assert set(by_id) == set(farm.units)
    am, wm2, wm3, bos = (by_id[k] for k in ("s19jpro-0001", "m30s-0001", "m60s-0001", "s21-0001"))
    assert am["driver"] == "antminer"
    assert set(am["ports"]) == {"rpc", "web"}
    assert wm2["driver"] == "whatsminer"
    assert wm2["api"] == "v2"
    assert wm2["model"] == "M30S_V10"
    assert wm3["api"] == "v3"
    assert set(wm3["ports"]) == {"rpc", "v3"}
    assert bos["driver"] == "braiins"
    assert "ssh-rsa" in (farm.state_dir / "known_hosts").read_text()
    assert bos["known_hosts"] == str((farm.state_dir / "known_hosts").resolve())
    for miner in inv["miners"]:
        dev = farm.device(miner["id"])
        assert miner["host"] == dev.host
        assert miner["ports"] == dev.ports.as_dict()
        secret = os.path.join(secrets, miner["credentials"])
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
        creds = load_credentials(miner["credentials"], type(path)(secrets), miner["driver"])
        assert (creds.username, creds.password) == (dev.username, dev.password)
    assert farm.device("m30s-0001").password != "admin"  # writes need a changed password
    assert "password" not in repr(
        load_credentials(wm2["credentials"], type(path)(secrets), "whatsminer")
    )


async def test_per_unit_loopback_addresses_with_real_ports(make_farm):
    base = random_loopback_base().rsplit(".", 1)[0] + ".253"
    farm = await make_farm({"s19jpro": 2, "m30s": 1}, ports_mode=False, base_address=base)
    hosts = [d.host for d in farm.units.values()]
    prefix = base.rsplit(".", 2)[0]
    third = int(base.split(".")[2])
    assert hosts == [base, f"{base[:-4]}.254", f"{prefix}.{third + 1}.1"]  # skips .255 and .0
    dev = farm.device("s19jpro-0002")
    assert dev.ports.as_dict() == {"rpc": 4028, "web": 80}
    assert (await rpc(dev, "version"))["VERSION"][0]["Type"] == "Antminer S19j Pro"


async def test_admin_endpoint(make_farm):
    farm = await make_farm({"s19jpro": 1, "m30s": 1}, admin_port=0)
    base = f"http://127.0.0.1:{farm.admin_port}"
    dev = farm.device("m30s-0001")
    async with httpx.AsyncClient(base_url=base) as client:
        units = (await client.get("/units")).json()
        assert [u["id"] for u in units] == ["s19jpro-0001", "m30s-0001"]
        truth = (await client.get("/units/m30s-0001/truth")).json()
        assert truth["up"]
        assert truth["reading"]["power_true_w"] > 0
        assert len(truth["reading"]["boards"]) == 3
        assert "password" not in truth
        assert (await client.get("/units/nope/truth")).status_code == 404
        bad = await client.post("/units/m30s-0001/fault", json={"connection": "boom"})
        assert bad.status_code == 400
        ok = await client.post("/units/m30s-0001/fault", json={"connection": "refuse"})
        assert ok.json()["connection"] == "refuse"
        await wait_until(lambda: not dev.listeners["rpc"].is_open)
        await client.post("/units/m30s-0001/fault", json={"clear": True})
        await wait_until(lambda: dev.listeners["rpc"].is_open)
        event = await client.post("/units/m30s-0001/event", json={"kind": "reboot"})
        assert event.json()["ok"]
        await wait_until(lambda: not dev.listeners["rpc"].is_open)
        assert await refused(dev, dev.ports.rpc)
        now = (await client.post("/clock/advance", json={"seconds": 400})).json()["now"]
        assert now == pytest.approx(farm.clock.now())
        await wait_until(lambda: dev.listeners["rpc"].is_open)
        missing = await client.post(
            "/units/m30s-0001/event", json={"kind": "fail_fan", "params": {"index": 7}}
        )
        assert missing.status_code == 400


def test_mix_parsing_and_scaling():
    mix = parse_mix("s19jpro:50,s19xp:50,s21:20,m30s:40,m50:20,m60s:20")
    assert sum(mix.values()) == 200
    assert scale_mix(mix, 200) == mix
    scaled = scale_mix({"a": 1, "b": 1, "c": 1}, 10)
    assert sum(scaled.values()) == 10
    assert sorted(scaled.values()) == [3, 3, 4]


async def test_cli_runs_until_sigterm(tmp_path):
    inventory = tmp_path / "farm.toml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.simulator",
        "--ports-mode",
        "--miners",
        "3",
        "--mix",
        "s19jpro:1,m30s:1,s21:1",
        "--seed",
        "7",
        "--speed",
        "0",
        "--inventory",
        str(inventory),
        "--admin-port",
        "0",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()
        ready = json.loads(line)
        assert ready["ready"]
        assert ready["units"] == 3
        assert ready["inventory"] == str(inventory)
        inv = tomllib.loads(inventory.read_text())
        miner = next(m for m in inv["miners"] if m["driver"] == "whatsminer")
        reader, writer = await asyncio.open_connection(miner["host"], miner["ports"]["rpc"])
        writer.write(b'{"command":"devdetails"}')
        await writer.drain()
        reply = json.loads(await reader.read())
        writer.close()
        assert reply["DEVDETAILS"][0]["Model"] == "M30S_V10"
        async with httpx.AsyncClient() as client:
            assert len((await client.get(f"{ready['admin']}/units")).json()) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
    assert code == 0
    assert await proc.stdout.read() == b""  # exactly one line on stdout
