"""Whatsminer API V3 on 4433: framing, persistence, tokens, writes; and the broken 4028."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.simulator.servers import whatsminer_v3
from tests.sim_servers.conftest import V3Client, rpc, wait_until


@pytest.fixture
async def v3(make_farm):
    farm = await make_farm({"m60s/whatsminer_v3": 1})
    dev = farm.device("m60s-0001")
    client = await V3Client.connect(dev)
    yield farm, dev, client
    client.close()


def signed(cmd: str, password: str, salt: str, param=None, ts: int | str | None = None) -> dict:
    ts = int(time.time()) if ts is None else ts
    digest = hashlib.sha256(f"{cmd}{password}{salt}{ts}".encode()).digest()
    token = base64.b64encode(digest).decode()[:8]
    return {"cmd": cmd, "param": param, "ts": ts, "account": "super", "token": token}


async def salt_of(client: V3Client) -> str:
    return (await client.send({"cmd": "get.device.info", "param": "salt"}))["msg"]["salt"]


async def test_persistent_connection_and_heartbeat(v3):
    _farm, _dev, client = v3
    first = await client.send({"cmd": "get.device.info", "param": "salt"})
    client.writer.write(b"\x00\x00\x00\x00")  # heartbeat: no reply
    second = await client.send({"cmd": "get.miner.status", "param": "summary+edevs+pools"})
    assert first["code"] == 0
    assert set(first["msg"]) == {"salt"}
    assert first["desc"] == "get.device.info"
    assert set(second["msg"]) == {"summary", "edevs", "pools"}
    assert second["msg"]["summary"]["hash-realtime"] > 100  # TH/s


async def test_length_prefix_is_little_endian(v3):
    _farm, dev, _client = v3
    reader, writer = await asyncio.open_connection(dev.host, dev.ports.v3)
    body = b'{"cmd":"get.miner.setting"}'
    writer.write(len(body).to_bytes(4, "little") + body)
    await writer.drain()
    n = struct.unpack("<I", await reader.readexactly(4))[0]
    reply = json.loads(await reader.readexactly(n))
    writer.close()
    assert reply["code"] == 0
    assert reply["msg"]["power-mode"] == "normal"


async def test_write_with_valid_token(v3):
    farm, dev, client = v3
    salt = await salt_of(client)
    watts = int(dev.profile.power.max_w * 0.9)
    reply = await client.send(signed("set.miner.power_limit", dev.password, salt, watts))
    assert reply["code"] == 0
    await wait_until(lambda: not dev.listeners["v3"].is_open)  # the device restarts
    assert dev.unit.settings["power_limit_w"] == watts
    farm.clock.advance(700)
    dev.changed()
    await wait_until(lambda: dev.listeners["v3"].is_open)
    again = await V3Client.connect(dev)
    try:
        summary = await again.send({"cmd": "get.miner.status", "param": "summary"})
    finally:
        again.close()
    assert summary["msg"]["summary"]["power-limit"] == watts


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda r: r.update(token="AAAAAAAA"), -4),
        (lambda r: r.update(account="user1"), -4),
        (lambda r: r.pop("ts"), -3),
        (lambda r: r.update(cmd="set.miner.nonsense"), -4),  # token binds the cmd
    ],
)
async def test_write_refusals(v3, mutate, code):
    _farm, dev, client = v3
    request = signed("set.miner.power_mode", dev.password, await salt_of(client), "low")
    mutate(request)
    assert (await client.send(request))["code"] == code
    assert dev.unit.settings["power_mode"] == "normal"


async def test_invalid_command_and_item(v3):
    _farm, dev, client = v3
    assert (await client.send({"cmd": "get.nothing"}))["code"] == -2
    assert (await client.send({"cmd": "get.miner.status", "param": "bogus"}))["code"] == -3
    salt = await salt_of(client)
    assert (await client.send(signed("set.miner.unknown", dev.password, salt, 1)))["code"] == -2
    bad = signed("set.miner.power_percent", dev.password, salt, {"percent": 0, "mode": "fast"})
    assert (await client.send(bad))["code"] == -3


async def test_write_disabled_or_default_password_is_no_permission(v3):
    _farm, dev, client = v3
    salt = await salt_of(client)
    dev.write_api = False
    assert (await client.send(signed("set.system.led", dev.password, salt, "auto")))["code"] == -4
    dev.write_api = True
    dev.set_password("super")
    assert (await client.send(signed("set.system.led", "super", salt, "auto")))["code"] == -4


async def test_mode_percent_service_led(v3):
    _farm, dev, client = v3
    salt = await salt_of(client)
    pw = dev.password
    assert (await client.send(signed("set.miner.power_mode", pw, salt, "low")))["code"] == 0
    assert dev.unit.settings["power_mode"] == "low"
    pct = {"percent": 90, "mode": "fast"}
    assert (await client.send(signed("set.miner.power_percent", pw, salt, pct)))["code"] == 0
    assert dev.unit.settings["power_percent"] == 90
    assert (await client.send(signed("set.system.led", pw, salt, [{"color": "red"}])))["code"] == 0
    info = await client.send({"cmd": "get.device.info", "param": "system"})
    assert info["msg"]["system"]["ledstatus"] == "manual"
    assert (await client.send(signed("set.miner.service", pw, salt, "stop")))["code"] == 0
    info = await client.send({"cmd": "get.device.info", "param": "miner,error-code"})
    assert info["msg"]["miner"]["working"] == "false"
    assert info["msg"]["error-code"] == "btminer process is down err"


def _encrypted_pools(key: bytes, pools: list[dict], pad: str) -> str:
    """Base64(AES-256-ECB(JSON)) padded with NULs (btminer, asic-rs) or PKCS#7."""
    text = json.dumps(pools).encode()
    if pad == "nul":
        plain = text + b"\x00" * (-len(text) % 16)
    else:
        padder = padding.PKCS7(128).padder()
        plain = padder.update(text) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


#: PKCS#7 pad length → a pool URL whose request JSON needs it. 9, 10 and 13 pad bytes are
#: tab, newline and carriage return, which JSON would read as whitespace; 16 is a whole block.
POOL_URLS = {
    5: "stratum+tcp://v3.example:3333",
    9: "stratum+tcp://poolaaaaaaaaaa.example:3333",
    10: "stratum+tcp://poolaaaaaaaaa.example:3333",
    13: "stratum+tcp://poolaaaaaa.example:3333",
    16: "stratum+tcp://poolaaa.example:3333",
}


@pytest.mark.parametrize("pkcs7_len", sorted(POOL_URLS))
@pytest.mark.parametrize(("pad", "code"), [("nul", 0), ("pkcs7", -3)])
async def test_set_pools_takes_only_nul_padded_params(v3, pkcs7_len, pad, code):
    _farm, dev, client = v3
    url = POOL_URLS[pkcs7_len]
    before = [p.url for p in dev.pools]
    salt = await salt_of(client)
    ts = int(time.time())
    key = hashlib.sha256(f"set.miner.pools{dev.password}{salt}{ts}".encode()).digest()
    pools = [{"pool": url, "worker": "w.9", "passwd": "x"}]
    param = _encrypted_pools(key, pools, pad)
    if pad == "pkcs7":
        assert len(json.dumps(pools)) % 16 == (16 - pkcs7_len) % 16
    reply = await client.send(signed("set.miner.pools", dev.password, salt, param, ts))
    assert reply["code"] == code
    status = await client.send({"cmd": "get.miner.status", "param": "pools"})
    assert [p["url"] for p in status["msg"]["pools"]] == ([url] if code == 0 else before)


@pytest.mark.parametrize(
    ("stamp", "code"),
    [
        ("host", 0),  # what real clients send: their own (NTP) clock
        ("sim", 0),  # the unit's own clock, as ``when`` shows it
        ("host_str", 0),  # a string of digits is an epoch too
        ("stale", -1),  # a replay from ten minutes ago
        ("future", -1),
        ("millis", -1),  # a client stamping milliseconds
        ("text", -3),
    ],
)
async def test_write_ts_must_be_fresh(v3, stamp, code):
    _farm, dev, client = v3
    salt = await salt_of(client)
    now = int(time.time())
    window = int(whatsminer_v3.TS_WINDOW_S)
    ts = {
        "host": now,
        "sim": int(dev.now()),
        "host_str": str(now),
        "stale": now - 2 * window,
        "future": now + 2 * window,
        "millis": now * 1000,
        "text": "yesterday",
    }[stamp]
    assert abs(dev.now() - now) > 10 * window  # the frozen simulated clock is far from ours
    reply = await client.send(signed("set.miner.power_mode", dev.password, salt, "low", ts))
    assert reply["code"] == code
    assert dev.unit.settings["power_mode"] == ("low" if code == 0 else "normal")


async def test_at_most_ten_clients(v3):
    _farm, dev, _client = v3
    others = [await V3Client.connect(dev) for _ in range(whatsminer_v3.MAX_CLIENTS - 1)]
    await others[-1].send({"cmd": "get.miner.setting"})  # all ten are being served
    eleventh = await V3Client.connect(dev)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await eleventh.send({"cmd": "get.miner.setting"})
    for other in others:
        other.close()
    eleventh.close()


async def test_idle_connections_are_closed(v3, monkeypatch):
    _farm, dev, _client = v3
    monkeypatch.setattr(whatsminer_v3, "IDLE_CLOSE_S", 0.3)
    client = await V3Client.connect(dev)
    assert (await client.send({"cmd": "get.miner.setting"}))["code"] == 0
    async with asyncio.timeout(3):
        assert await client.reader.read() == b""  # closed by the server after 0.3 s idle
    client.close()


async def test_port_4028_answers_like_v2_but_broken(v3):
    _farm, dev, _client = v3
    version = await rpc(dev, "get_version")
    assert version["Msg"]["fw_ver"].startswith("2025")  # clients pick V3 from this date
    devs = await rpc(dev, "devs")
    assert devs["DEVS"] == []
    summary = (await rpc(dev, "summary"))["SUMMARY"][0]
    assert "Power" not in summary
    assert "Power Limit" not in summary
    assert summary["MHS av"] > 0
    model = (await rpc(dev, "devdetails"))["DEVDETAILS"][0]["Model"]
    assert model == "M60S_VK40"
    priv = await rpc(dev, "x", enc=1, data="AAAA")
    assert priv["Code"] == 14
