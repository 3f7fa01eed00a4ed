"""Every injectable fault produces its exact wire behaviour."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from agent.simulator.faults import JSON_QUIRKS, FaultError, Faults, apply_event
from tests.sim_servers.conftest import refused, rpc_raw, wait_until


@pytest.fixture
async def units(make_farm):
    farm = await make_farm({"s19jpro": 1, "m30s": 1})
    return farm, farm.device("s19jpro-0001"), farm.device("m30s-0001")


def pyasic_repairs(text: str) -> str:
    """The repairs pyasic 0.79.0 applies (protocols.md §1.1), to prove each quirk is fixable."""
    text = text.rstrip("\x00").replace(",}", "}").replace("\n", "").replace("}{", "},{")
    text = text.replace('""temp0', '","temp0')
    if re.search(r"\"error_code\":\[\".+\"\]", text):
        text = text.replace("[", "{").replace("]", "}")
    return text


async def quirk_reply(farm, dev, quirk: str, payload: bytes) -> bytes:
    farm.set_fault(dev.unit_id, {"add_quirks": [quirk]})
    return await rpc_raw(dev, payload)


async def test_trailing_nul_can_be_added_and_removed(units):
    farm, am, wm = units
    assert (await rpc_raw(wm, b'{"command":"summary"}')).endswith(b"}")
    assert (await quirk_reply(farm, wm, "trailing_nul", b'{"command":"summary"}')).endswith(
        b"}\x00"
    )
    farm.set_fault(am.unit_id, {"remove_quirks": ["trailing_nul"]})
    assert (await rpc_raw(am, b'{"command":"summary"}')).endswith(b"}")


async def test_missing_comma_between_stats_elements(units):
    farm, am, _wm = units
    raw = (await quirk_reply(farm, am, "missing_comma", b'{"command":"stats"}')).decode()
    assert raw.count('}{"STATS":0,') == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw.rstrip("\x00"))
    assert len(json.loads(pyasic_repairs(raw))["STATS"]) == 2


async def test_trailing_comma(units):
    farm, _am, wm = units
    raw = (await quirk_reply(farm, wm, "trailing_comma", b'{"command":"summary"}')).decode()
    assert '"cgminer 4.9.2",}' in raw
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert json.loads(pyasic_repairs(raw))["SUMMARY"][0]["Elapsed"] >= 0


async def test_duplicate_keys(units):
    farm, am, _wm = units
    raw = (await quirk_reply(farm, am, "duplicate_keys", b'{"command":"stats"}')).decode()
    pairs: list[tuple[str, object]] = []

    def hook(items):
        pairs.extend(items)
        return dict(items)

    json.loads(raw.rstrip("\x00"), object_pairs_hook=hook)
    temp1 = [v for k, v in pairs if k == "temp1"]
    assert len(temp1) == 4
    assert temp1[:3] == [0, 0, 0]
    assert temp1[3] > 0
    assert json.loads(raw.rstrip("\x00"))["STATS"][1]["temp1"] == temp1[3]  # last one wins


async def test_non_utf8_byte(units):
    farm, _am, wm = units
    raw = await quirk_reply(farm, wm, "non_utf8", b'{"command":"pools"}')
    assert b"\xaa" in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert json.loads(raw.decode("utf-8", errors="replace"))["POOLS"]


async def test_numbers_as_strings(units):
    farm, am, _wm = units
    raw = await quirk_reply(farm, am, "numbers_as_strings", b'{"command":"summary"}')
    summary = json.loads(raw.rstrip(b"\x00"))["SUMMARY"][0]
    assert isinstance(summary["GHS 5s"], str)
    assert float(summary["GHS 5s"]) > 0
    assert re.fullmatch(r"\d+\.\d\d", summary["GHS av"])


async def test_error_code_list_shaped_like_dict(units):
    farm, _am, wm = units
    wm.unit.fail_fan(0)
    raw = (
        await quirk_reply(farm, wm, "error_code_dict_list", b'{"command":"get_error_code"}')
    ).decode()
    assert re.search(r"\"error_code\":\[\"110\":\"[0-9: -]+\"", raw)
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert "110" in json.loads(pyasic_repairs(raw))["Msg"]["error_code"]


async def test_missing_comma_before_temp0(units):
    farm, _am, wm = units
    raw = (await quirk_reply(farm, wm, "missing_comma_temp0", b'{"command":"get_psu"}')).decode()
    assert '""temp0":' in raw
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert "temp0" in json.loads(pyasic_repairs(raw))["Msg"]


async def test_raw_newline_inside_string(units):
    farm, _am, wm = units
    raw = (await quirk_reply(farm, wm, "raw_newline", b'{"command":"summary"}')).decode()
    assert '"Msg":"Summary\n"' in raw
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert json.loads(pyasic_repairs(raw))["STATUS"][0]["Msg"] == "Summary"


async def test_s9_chain_numbering_and_high_fans(units):
    farm, am, _wm = units
    farm.set_fault(am.unit_id, {"add_quirks": ["s9_chain_numbering", "fans_5_8"]})
    stats = json.loads((await rpc_raw(am, b'{"command":"stats"}')).rstrip(b"\x00"))["STATS"][1]
    assert "chain_acn1" not in stats
    assert stats["chain_acn6"] == 126
    assert stats["chain_acn9"] == 0
    assert [stats[f"fan{i}"] for i in range(1, 5)] == [0, 0, 0, 0]
    assert all(stats[f"fan{i}"] > 0 for i in range(5, 9))


async def test_hang_accepts_and_never_answers(units):
    farm, am, _wm = units
    farm.set_fault(am.unit_id, {"connection": "hang", "scope": ["rpc"]})
    reader, writer = await asyncio.open_connection(am.host, am.ports.rpc)
    writer.write(b'{"command":"summary"}')
    await writer.drain()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await reader.read(1)
    writer.close()


async def test_refuse_closes_the_listener_and_clear_reopens(units):
    farm, am, _wm = units
    farm.set_fault(am.unit_id, {"connection": "refuse", "scope": "web"})
    await wait_until(lambda: not am.listeners["web"].is_open)
    assert await refused(am, am.ports.web)
    assert not await refused(am, am.ports.rpc)  # scope: only the web endpoint
    farm.set_fault(am.unit_id, {"clear": True})
    await wait_until(lambda: am.listeners["web"].is_open)
    assert not await refused(am, am.ports.web)


async def test_trickle_sends_small_chunks_slowly(units):
    farm, _am, wm = units
    farm.set_fault(
        wm.unit_id, {"connection": "trickle", "trickle_chunk_bytes": 64, "trickle_delay_s": 0.02}
    )
    reader, writer = await asyncio.open_connection(wm.host, wm.ports.rpc)
    writer.write(b'{"command":"get_version"}')
    await writer.drain()
    started = time.monotonic()
    first = await reader.read(4096)
    rest = await reader.read()
    writer.close()
    assert len(first) <= 64
    data = first + rest
    assert json.loads(data)["Code"] == 131
    assert time.monotonic() - started >= (len(data) // 64 - 1) * 0.02


async def test_reset_mid_reply(units):
    farm, am, _wm = units
    full = await rpc_raw(am, b'{"command":"stats"}')
    farm.set_fault(am.unit_id, {"connection": "reset", "reset_fraction": 0.5})
    reader, writer = await asyncio.open_connection(am.host, am.ports.rpc)
    writer.write(b'{"command":"stats"}')
    await writer.drain()
    got = bytearray()

    async def read_all() -> None:
        while chunk := await reader.read(65536):
            got.extend(chunk)

    with pytest.raises(ConnectionResetError):
        await read_all()
    writer.close()
    assert len(got) < len(full)


async def test_garbage_has_the_reply_length_but_is_not_json(units):
    farm, _am, wm = units
    normal = await rpc_raw(wm, b'{"command":"get_miner_info"}')
    farm.set_fault(wm.unit_id, {"connection": "garbage"})
    junk = await rpc_raw(wm, b'{"command":"get_miner_info"}')
    assert len(junk) == len(normal)
    assert junk != normal
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        json.loads(junk)


async def test_oversize_error_code_list_and_padding(units):
    farm, am, wm = units
    farm.set_fault(wm.unit_id, {"connection": "oversize", "oversize_bytes": 200_000})
    raw = await rpc_raw(wm, b'{"command":"get_error_code"}')
    assert len(raw) >= 200_000
    assert len(json.loads(raw)["Msg"]["error_code"]) > 5000  # hundreds and more, real data
    farm.set_fault(am.unit_id, {"connection": "oversize", "oversize_bytes": 100_000})
    padded = await rpc_raw(am, b'{"command":"summary"}')
    assert len(padded) >= 100_000
    assert json.loads(padded.rstrip(b"\x00"))["SUMMARY"]


async def test_v2_broken_toggle_on_v2_firmware(units):
    farm, _am, wm = units
    farm.set_fault(wm.unit_id, {"v2_broken": True})
    devs = json.loads(await rpc_raw(wm, b'{"command":"devs"}'))
    assert devs["DEVS"] == []


async def test_password_change_invalidates_v2_writes(units):
    from tests.sim_servers.test_whatsminer_v2 import PrivClient

    _farm, _am, wm = units
    old = wm.password
    apply_event(wm, "password_change", {"password": "Zz9new00"})
    assert (await PrivClient(wm, old).send("set_led", param="auto"))["Code"] == 135
    assert (await PrivClient(wm, "Zz9new00").send("set_led", param="auto"))["Code"] == 131


def test_fault_spec_validation():
    faults = Faults()
    with pytest.raises(FaultError):
        faults.update({"connection": "explode"})
    with pytest.raises(FaultError):
        faults.update({"quirks": ["not_a_quirk"]})
    with pytest.raises(FaultError):
        faults.update({"scope": ["ftp"]})
    with pytest.raises(FaultError):
        faults.update({"trickle_delay_s": -1})
    faults.update({"quirks": sorted(JSON_QUIRKS), "connection": "hang", "scope": ["rpc"]})
    assert faults.connection_for("rpc") == "hang"
    assert faults.connection_for("web") is None


async def test_events(units):
    _farm, am, wm = units
    with pytest.raises(FaultError):
        apply_event(am, "meteor")
    with pytest.raises(FaultError):
        apply_event(am, "lose_board", {"index": 9})
    apply_event(am, "lose_board", {"index": 1})
    apply_event(wm, "ambient_offset", {"delta_c": 5})
    apply_event(wm, "degrade_chips", {"board": 0, "n": 10})
    assert [b.alive for b in am.reading().boards] == [True, False, True]
    assert wm.reading().boards[0].chips_ok == wm.profile.hardware.chips_per_board - 10


async def test_silent_client_is_disconnected(units, monkeypatch):
    from agent.simulator.servers import cgminer

    _farm, _am, wm = units
    monkeypatch.setattr(cgminer, "RPC_IDLE_TIMEOUT_S", 0.2)
    reader, writer = await asyncio.open_connection(wm.host, wm.ports.rpc)
    async with asyncio.timeout(3):
        assert await reader.read() == b""  # closed without a reply
    writer.close()


async def test_persistent_v3_connection_dies_with_a_restart(make_farm):
    from tests.sim_servers.conftest import V3Client

    farm = await make_farm({"m60s/whatsminer_v3": 1})
    dev = farm.device("m60s-0001")
    client = await V3Client.connect(dev)
    assert (await client.send({"cmd": "get.miner.setting"}))["code"] == 0
    dev.unit.reboot()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await client.send({"cmd": "get.miner.setting"})
    client.close()
