"""Whatsminer API V2 on 4028: reads, multi-commands and the privileged token + AES flow.

The privileged client below is written from protocols.md §3.2 with passlib's md5-crypt, so
it shares no code with the server (which has its own md5-crypt).
"""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.simulator.servers import whatsminer_v2
from agent.simulator.servers.wmcrypto import md5_crypt as server_md5_crypt
from tests.sim_servers.conftest import refused, rpc, rpc_raw, wait_until

with warnings.catch_warnings():
    # passlib imports the stdlib ``crypt`` module, deprecated in 3.11 (not our code).
    warnings.simplefilter("ignore", DeprecationWarning)
    from passlib.hash import md5_crypt


def _aes(key: bytes):
    return Cipher(algorithms.AES(key), modes.ECB())


class PrivClient:
    """Minimal V2 privileged client (protocols.md §3.2 steps 1-8)."""

    def __init__(self, device, password: str) -> None:
        self.device = device
        self.password = password

    async def token(self) -> tuple[bytes, str]:
        msg = (await rpc(self.device, "get_token"))["Msg"]
        hashed = md5_crypt.using(salt=msg["salt"]).hash(self.password).split("$")[3]
        sign = md5_crypt.using(salt=msg["newsalt"]).hash(hashed + msg["time"]).split("$")[3]
        return hashlib.sha256(hashed.encode()).digest(), sign

    def envelope(self, key: bytes, command: dict[str, Any]) -> bytes:
        plain = json.dumps(command).encode()
        plain += b"\x00" * (-len(plain) % 16)
        enc = _aes(key).encryptor()
        data = base64.b64encode(enc.update(plain) + enc.finalize()).decode()
        return json.dumps({"enc": 1, "data": data}).encode()

    async def send(self, cmd: str, **params: Any) -> dict[str, Any]:
        key, sign = await self.token()
        raw = await rpc_raw(self.device, self.envelope(key, {"cmd": cmd, **params, "token": sign}))
        reply = json.loads(raw)
        if "enc" not in reply:
            return reply  # refusals come back in the clear
        dec = _aes(key).decryptor()
        plain = dec.update(base64.b64decode(reply["enc"])) + dec.finalize()
        return json.loads(plain.rstrip(b"\x00"))


@pytest.fixture
async def wm(make_farm):
    farm = await make_farm({"m30s": 1})
    return farm, farm.device("m30s-0001")


def test_server_md5_crypt_matches_passlib():
    for password, salt in [("admin", "BQ5hoXV9"), ("", "x"), ("p" * 30, "saltsalt")]:
        assert server_md5_crypt(password, salt) == md5_crypt.using(salt=salt).hash(password)


async def test_cmd_and_command_keys(wm):
    _farm, dev = wm
    a = json.loads(await rpc_raw(dev, b'{"cmd":"get_version"}'))
    b = await rpc(dev, "get_version")
    assert a["Msg"] == b["Msg"]
    assert a["Code"] == 131
    assert a["Msg"]["fw_ver"] == "20230803.11.REL"


async def test_multicommand_for_cgminer_style_only(wm):
    _farm, dev = wm
    reply = await rpc(dev, "summary+devs+pools")
    assert set(reply) == {"summary", "devs", "pools", "id"}
    assert len(reply["devs"][0]["DEVS"]) == 3
    bad = await rpc(dev, "summary+get_version")
    assert bad["STATUS"] == "E"
    assert bad["Code"] == 14


async def test_unknown_command(wm):
    _farm, dev = wm
    reply = await rpc(dev, "stats")
    assert reply == {
        "STATUS": "E",
        "When": dev.when(),
        "Code": 14,
        "Msg": "invalid cmd",
        "Description": "",
    }


async def test_devdetails_identifies_btminer(wm):
    _farm, dev = wm
    reply = await rpc(dev, "devdetails")
    assert reply["DEVDETAILS"][0]["Driver"] == "bitmicro"
    assert reply["DEVDETAILS"][0]["Model"] == "M30S_V10"


async def test_get_token_shape(wm):
    _farm, dev = wm
    reply = await rpc(dev, "get_token")
    msg = reply["Msg"]
    assert reply["Code"] == 134
    assert msg["time"] == str(dev.when())[-4:]
    assert len(msg["salt"]) == 8
    assert len(msg["newsalt"]) == 8


async def test_adjust_power_limit_restarts_and_applies(wm):
    farm, dev = wm
    reply = await PrivClient(dev, dev.password).send("adjust_power_limit", power_limit="3000")
    assert reply["Code"] == 131
    assert reply["Msg"] == "API command OK"
    assert dev.unit.settings["power_limit_w"] == 3000.0
    await wait_until(lambda: not dev.listeners["rpc"].is_open)
    assert await refused(dev, dev.ports.rpc)
    farm.clock.advance(600)
    dev.changed()
    await wait_until(lambda: dev.listeners["rpc"].is_open)
    summary = (await rpc(dev, "summary"))["SUMMARY"][0]
    assert summary["Power Limit"] == 3000


async def test_out_of_range_limit_is_a_command_error(wm):
    _farm, dev = wm
    reply = await PrivClient(dev, dev.password).send("adjust_power_limit", power_limit="99999")
    assert reply["Code"] == 132
    assert reply["STATUS"] == "E"


async def test_power_off_respbefore_and_mode_commands(wm):
    farm, dev = wm
    client = PrivClient(dev, dev.password)
    assert (await client.send("power_off", respbefore="true"))["Code"] == 131
    assert dev.unit.settings["mining"] is False
    status = (await rpc(dev, "status"))["Msg"]
    assert status["mineroff"] == "true"
    assert (await client.send("power_on"))["Code"] == 131
    await wait_until(lambda: not dev.listeners["rpc"].is_open)  # btminer restarts
    farm.clock.advance(600)
    dev.changed()
    await wait_until(lambda: dev.listeners["rpc"].is_open)
    assert (await client.send("set_low_power"))["Code"] == 131
    assert dev.unit.settings["power_mode"] == "low"
    assert (await client.send("set_power_pct", percent="80"))["Code"] == 131
    assert dev.unit.settings["power_percent"] == 80
    assert (await client.send("set_led", param="auto"))["Code"] == 131
    assert (await client.send("no_such_cmd"))["Code"] == 14  # encrypted, authenticated


async def test_wrong_password_is_135(wm):
    _farm, dev = wm
    reply = await PrivClient(dev, "not-it").send("reboot")
    assert reply == {
        "STATUS": "E",
        "When": dev.when(),
        "Code": 135,
        "Msg": "check token error",
        "Description": "",
    }


async def test_default_password_or_disabled_api_is_45(wm):
    _farm, dev = wm
    dev.write_api = False
    assert (await PrivClient(dev, dev.password).send("reboot"))["Code"] == 45
    dev.write_api = True
    dev.set_password("admin")
    reply = await PrivClient(dev, "admin").send("reboot")
    assert reply["Code"] == 45
    assert reply["Msg"] == "can't access write cmd"


async def test_bad_envelope_23_and_bad_base64_137(wm):
    _farm, dev = wm
    bad = json.loads(await rpc_raw(dev, b'{"enc":1}'))
    assert bad["Code"] == 23
    assert bad["STATUS"] == "E"
    b64 = json.loads(await rpc_raw(dev, b'{"enc":1,"data":"%%%notbase64"}'))
    assert b64["Code"] == 137


async def test_token_expires_after_30_minutes_of_sim_time(wm):
    farm, dev = wm
    client = PrivClient(dev, dev.password)
    key, sign = await client.token()
    farm.clock.advance(whatsminer_v2.TOKEN_TTL_S + 1)
    raw = await rpc_raw(
        dev, client.envelope(key, {"cmd": "set_led", "param": "auto", "token": sign})
    )
    assert json.loads(raw)["Code"] == 135


async def test_token_valid_within_lifetime_and_stale_sign_rejected(wm):
    farm, dev = wm
    client = PrivClient(dev, dev.password)
    key, sign = await client.token()
    farm.clock.advance(60)
    ok = await rpc_raw(
        dev, client.envelope(key, {"cmd": "set_led", "param": "auto", "token": sign})
    )
    assert "enc" in json.loads(ok)
    forged = await rpc_raw(dev, client.envelope(key, {"cmd": "set_led", "token": "x" * 22}))
    assert json.loads(forged)["Code"] == 135


async def test_32_tokens_per_ip(wm):
    _farm, dev = wm
    for _ in range(whatsminer_v2.MAX_TOKENS_PER_IP):
        assert (await rpc(dev, "get_token"))["Code"] == 134
    over = await rpc(dev, "get_token")
    assert over["Code"] == 136
    assert over["STATUS"] == "E"


async def test_api_204_rejects_205_commands(wm):
    _farm, dev = wm
    dev.state["wm_api"] = "2.0.4"
    reply = await PrivClient(dev, dev.password).send("adjust_power_limit", power_limit="3000")
    assert reply["Code"] == 14
    assert "Error Code Count" not in (await rpc(dev, "summary"))["SUMMARY"][0]


async def test_old_api_keeps_error_codes_in_summary(wm):
    _farm, dev = wm
    dev.state["wm_api"] = "whatsminer v1.4.0"  # fixtures whatsminer/v1
    dev.unit.fail_fan(1)
    summary = (await rpc(dev, "summary"))["SUMMARY"][0]
    codes = [summary[f"Error Code {i}"] for i in range(summary["Error Code Count"])]
    assert 111 in codes
    assert codes == [int(c) for c in dev.reading().error_codes]


async def test_update_pools(wm):
    _farm, dev = wm
    reply = await PrivClient(dev, dev.password).send(
        "update_pools", pool1="stratum+tcp://p.example:3333", worker1="w.1", passwd1="x"
    )
    assert reply["Code"] == 131
    pools = (await rpc(dev, "pools"))["POOLS"]
    assert [p["URL"] for p in pools] == ["stratum+tcp://p.example:3333"]
