"""Stock Antminer: RPC on 4028 (group-A access, multi-command, text form) and the web CGI."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from agent.simulator.servers.http import parse_auth_params
from tests.sim_servers.conftest import refused, rpc, rpc_raw, wait_until


async def test_reply_then_nul_then_close(make_farm):
    farm = await make_farm({"s19jpro": 1})
    raw = await rpc_raw(farm.device("s19jpro-0001"), b'{"command":"summary"}')
    assert raw.endswith(b"}\x00")
    assert raw.count(b"\x00") == 1


@pytest.mark.parametrize("command", ["devdetails", "estats", "config", "addpool", "restart"])
async def test_everything_outside_group_a_is_denied(make_farm, command):
    farm = await make_farm({"s19jpro": 1})
    reply = await rpc(farm.device("s19jpro-0001"), command)
    status = reply["STATUS"][0]
    assert status["STATUS"] == "E"
    assert status["Code"] == 45
    assert status["Msg"] == f"Access denied to '{command}' command"


async def test_multicommand_and_its_rejected_mode(make_farm):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    reply = await rpc(dev, "summary+pools+summary+devdetails")
    assert set(reply) == {"summary", "pools", "devdetails", "id"}
    assert reply["summary"][0]["SUMMARY"][0]["GHS 5s"] > 0
    assert reply["devdetails"][0]["STATUS"][0]["Code"] == 45
    farm.set_fault(dev.unit_id, {"reject_multicommand": True})
    rejected = await rpc(dev, "summary+pools")
    assert rejected["STATUS"][0]["STATUS"] == "E"
    assert "SUMMARY" not in rejected
    single = await rpc(dev, "summary")  # single commands still work: clients fall back
    assert single["STATUS"][0]["STATUS"] == "S"


async def test_plain_text_request_gets_text_reply(make_farm):
    farm = await make_farm({"s19jpro": 1})
    raw = await rpc_raw(farm.device("s19jpro-0001"), b"version")
    text = raw.rstrip(b"\x00").decode()
    assert text.startswith("STATUS=S,When=")
    assert "|VERSION,BMMiner=1.0.0," in text
    assert "Type=Antminer S19j Pro" in text
    assert text.endswith("|")


async def test_stats_new_api_is_the_web_shape(make_farm):
    farm = await make_farm({"s19jpro": 1})
    reply = await rpc(farm.device("s19jpro-0001"), "stats", new_api=True)
    assert reply["STATUS"]["Msg"] == "stats"
    (stats,) = reply["STATS"]
    assert len(stats["chain"]) == 3
    assert stats["rate_unit"] == "GH/s"
    assert "watt" not in stats
    assert all(len(c["temp_pcb"]) == 4 for c in stats["chain"])


async def test_classic_stats_is_coherent_with_physics(make_farm):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    data = (await rpc(dev, "stats"))["STATS"][1]
    truth = dev.reading()
    assert data["chain_acn1"] == 126
    assert data["chain_acn4"] == 0
    assert data["chain_rate4"] == ""
    rates = sum(float(data[f"chain_rate{i}"]) for i in (1, 2, 3))
    assert rates == pytest.approx(sum(b.hashrate_ths for b in truth.boards) * 1000, rel=1e-3)
    assert [data[f"fan{i}"] for i in range(1, 5)] == list(truth.fans_rpm)
    assert data["temp_pcb1"].count("-") == 3
    assert data["total_rateideal"] > 0


# -- web ------------------------------------------------------------------------------------


def url(dev, name: str) -> str:
    return f"http://{dev.host}:{dev.ports.web}/cgi-bin/{name}.cgi"


async def test_unauthenticated_gets_401_with_antminer_realm(make_farm):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://{dev.host}:{dev.ports.web}/")
    assert reply.status_code == 401
    challenge = reply.headers["www-authenticate"]
    assert challenge.startswith('Digest realm="antMiner Configuration"')
    params = parse_auth_params(challenge.partition(" ")[2])
    assert params["qop"] == "auth"
    assert len(params["nonce"]) >= 16


async def test_digest_checks_password_and_response(make_farm):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "wrong")) as client:
        assert (await client.get(url(dev, "get_system_info"))).status_code == 401
    async with httpx.AsyncClient(auth=httpx.DigestAuth("admin", "root")) as client:
        assert (await client.get(url(dev, "get_system_info"))).status_code == 401
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root")) as client:
        reply = await client.get(url(dev, "get_system_info"))
    assert reply.status_code == 200
    assert reply.json()["minertype"] == "Antminer S19j Pro"


def _digest_header(challenge: str, uri: str, nc: str, password: str = "root") -> str:
    p = parse_auth_params(challenge.partition(" ")[2])

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    ha1 = md5(f"root:{p['realm']}:{password}")
    ha2 = md5(f"GET:{uri}")
    resp = md5(f"{ha1}:{p['nonce']}:{nc}:abcdef:auth:{ha2}")
    return (
        f'Digest username="root", realm="{p["realm"]}", nonce="{p["nonce"]}", uri="{uri}", '
        f'response="{resp}", qop=auth, nc={nc}, cnonce="abcdef", algorithm=MD5'
    )


async def test_digest_by_hand_rejects_replay_and_wrong_uri(make_farm):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    uri = "/cgi-bin/get_blink_status.cgi"
    async with httpx.AsyncClient() as client:
        challenge = (await client.get(url(dev, "get_blink_status"))).headers["www-authenticate"]
        header = _digest_header(challenge, uri, "00000001")
        ok = await client.get(url(dev, "get_blink_status"), headers={"Authorization": header})
        assert ok.status_code == 200
        assert ok.json() == {"blink": False}
        replay = await client.get(url(dev, "get_blink_status"), headers={"Authorization": header})
        assert replay.status_code == 401
        nc2 = _digest_header(challenge, uri, "00000002")
        assert (
            await client.get(url(dev, "get_blink_status"), headers={"Authorization": nc2})
        ).status_code == 200
        other = _digest_header(challenge, "/cgi-bin/reboot.cgi", "00000003")
        assert (
            await client.get(url(dev, "get_blink_status"), headers={"Authorization": other})
        ).status_code == 401
        forged = _digest_header(challenge.replace('nonce="', 'nonce="00'), uri, "00000004")
        stale = await client.get(url(dev, "get_blink_status"), headers={"Authorization": forged})
        assert stale.status_code == 401


async def test_every_page_answers_with_its_shape(make_farm):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root")) as client:
        net = (await client.get(url(dev, "get_network_info"))).json()
        summary = (await client.get(url(dev, "summary"))).json()
        stats = (await client.get(url(dev, "stats"))).json()
        pools = (await client.get(url(dev, "pools"))).json()
        conf = (await client.get(url(dev, "get_miner_conf"))).json()
        missing = await client.get(url(dev, "nope"))
        mara = await client.get(f"http://{dev.host}:{dev.ports.web}/kaonsu/v1/brief")
    assert net["ipaddress"] == dev.host
    assert "conf_hostname" in net
    assert summary["STATUS"]["STATUS"] == "S"
    assert summary["SUMMARY"][0]["rate_unit"] == "GH/s"
    assert [s["type"] for s in summary["SUMMARY"][0]["status"]] == [
        "rate",
        "network",
        "fans",
        "temp",
    ]
    assert len(stats["STATS"][0]["chain"]) == 3
    assert len(stats["STATS"][0]["fan"]) == 4
    assert [p["index"] for p in pools["POOLS"]] == [0, 1, 2]
    assert conf["bitmain-work-mode"] == "0"
    assert conf["api-groups"].startswith("A:")
    assert missing.status_code == 404
    assert mara.status_code == 404


@pytest.mark.parametrize(("mode", "expected", "setting"), [(1, "1", "sleep"), ("3", "3", "low")])
async def test_set_miner_conf_switches_mode(make_farm, mode, expected, setting):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root")) as client:
        conf = (await client.get(url(dev, "get_miner_conf"))).json()
        body = {
            "bitmain-fan-ctrl": False,
            "bitmain-fan-pwm": "100",
            "freq-level": "100",
            "miner-mode": mode,
            "pools": conf["pools"],
        }
        reply = (await client.post(url(dev, "set_miner_conf"), json=body)).json()
        assert reply == {"stats": "success", "code": "M000", "msg": "OK!"}
        farm.clock.advance(60)
        after = (await client.get(url(dev, "get_miner_conf"))).json()
    assert after["bitmain-work-mode"] == expected
    assert dev.unit.settings["power_mode"] == setting
    if setting == "sleep":
        assert dev.reading().hashrate_5s_ths == 0


async def test_low_power_mode_refused_where_not_offered(make_farm):
    farm = await make_farm({"s19xp": 1})
    dev = farm.device("s19xp-0001")
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root")) as client:
        reply = (await client.post(url(dev, "set_miner_conf"), json={"miner-mode": 3})).json()
    assert reply["stats"] == "error"
    assert reply["code"] == "M001"
    assert dev.unit.settings["power_mode"] == "normal"


async def test_blink_codes(make_farm):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root")) as client:
        on = (await client.post(url(dev, "blink"), json={"blink": "true"})).json()
        status = (await client.get(url(dev, "get_blink_status"))).json()
        off = (await client.post(url(dev, "blink"), content=b"blink=false")).json()
    assert on == {"code": "B000"}
    assert status == {"blink": True}
    assert off == {"code": "B100"}


async def test_reboot_takes_rpc_and_web_down_then_back(make_farm):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root")) as client:
        assert (await client.get(url(dev, "reboot"))).status_code == 200
    await wait_until(lambda: not dev.listeners["web"].is_open and not dev.listeners["rpc"].is_open)
    assert await refused(dev, dev.ports.rpc)
    assert await refused(dev, dev.ports.web)
    farm.clock.advance(200)  # reboots take 120-180 s (physics)
    dev.changed()
    await wait_until(lambda: dev.listeners["web"].is_open and dev.listeners["rpc"].is_open)
    reply = await rpc(dev, "summary")
    assert reply["SUMMARY"][0]["Elapsed"] < 200


async def test_set_conf_can_restart_process_and_drop_response(make_farm):
    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    farm.set_fault(dev.unit_id, {"drop_set_conf_response": True, "set_conf_restart_s": 30})
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root")) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(url(dev, "set_miner_conf"), json={"miner-mode": 0})
    await wait_until(lambda: not dev.listeners["rpc"].is_open)
    assert dev.listeners["web"].is_open
    farm.clock.advance(31)
    dev.changed()
    await wait_until(lambda: dev.listeners["rpc"].is_open)
    elapsed = (await rpc(dev, "summary"))["SUMMARY"][0]["Elapsed"]
    assert elapsed <= 1


async def test_password_change_event_locks_out_old_credentials(make_farm):
    from agent.simulator.faults import apply_event

    farm = await make_farm({"s19jpro": 1})
    dev = farm.device("s19jpro-0001")
    apply_event(dev, "password_change", {"password": "n3w-pass"})
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root")) as client:
        assert (await client.get(url(dev, "summary"))).status_code == 401
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "n3w-pass")) as client:
        assert (await client.get(url(dev, "summary"))).status_code == 200
    assert (await rpc(dev, "summary"))["STATUS"][0]["STATUS"] == "S"  # 4028 has no auth
