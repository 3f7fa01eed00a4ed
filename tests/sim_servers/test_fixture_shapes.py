"""The simulator's replies look like the real captured ones: same envelopes, keys, value types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.sim_servers.conftest import V3Client, rpc


def load(rel: str) -> dict[str, Any]:
    return json.loads((FIXTURES / rel).read_text())


def kind(value: Any) -> str:
    """JSON type name, telling ints from floats (a real difference on the wire)."""
    if isinstance(value, bool):
        return "bool"
    return type(value).__name__


def assert_same_shape(sim: Any, real: Any, path: str = "", exact_keys: bool = True) -> None:
    """Recursively: same value types; dicts with the same keys (or a superset)."""
    assert kind(sim) == kind(real), f"{path}: {kind(sim)} != {kind(real)} ({sim!r} vs {real!r})"
    if isinstance(real, dict):
        missing = set(real) - set(sim)
        assert not missing, f"{path}: keys missing {sorted(missing)}"
        if exact_keys:
            extra = set(sim) - set(real)
            assert not extra, f"{path}: extra keys {sorted(extra)}"
        for key in real:
            assert_same_shape(sim[key], real[key], f"{path}.{key}", exact_keys)
    elif isinstance(real, list) and real and sim:
        for i, item in enumerate(sim):
            assert_same_shape(item, real[min(i, len(real) - 1)], f"{path}[{i}]", exact_keys)


@pytest.mark.parametrize("command", ["version", "summary", "stats", "pools", "devs"])
async def test_antminer_rpc_matches_capture(make_farm, command):
    farm = await make_farm({"s19pro": 1})
    sim = await rpc(farm.device("s19pro-0001"), command)
    assert_same_shape(sim, load(f"antminer/v2020/{command}.json"))


async def test_antminer_web_system_info_matches_capture(make_farm):
    import httpx

    farm = await make_farm({"s21": 1})
    dev = farm.device("s21-0001")
    async with httpx.AsyncClient(auth=httpx.DigestAuth("root", "root")) as client:
        reply = await client.get(f"http://{dev.host}:{dev.ports.web}/cgi-bin/get_system_info.cgi")
    assert_same_shape(reply.json(), load("antminer/v2020/system_info.json"))


@pytest.mark.parametrize(
    ("command", "fixture", "exact"),
    [
        ("summary", "whatsminer/v2/summary.json", False),
        ("devs", "whatsminer/v2/devs.json", False),
        ("devs", "whatsminer/v1/devs.json", False),
        ("pools", "whatsminer/v1/pools.json", True),
        ("get_version", "whatsminer/v2/get_version.json", True),
        ("get_psu", "whatsminer/v2/get_psu.json", True),
        ("status", "whatsminer/v2/status.json", True),
        ("get_error_code", "whatsminer/v2/get_error_code.json", True),
        ("get_miner_info", "whatsminer/v2/get_miner_info.json", False),
    ],
)
async def test_whatsminer_v2_matches_capture(make_farm, command, fixture, exact):
    farm = await make_farm({"m30s": 1})
    sim = await rpc(farm.device("m30s-0001"), command)
    assert_same_shape(sim, load(fixture), exact_keys=exact)


async def test_whatsminer_v2_summary_shares_v1_value_types(make_farm):
    """Keys present in both the 2021 capture and our reply have the same JSON types."""
    farm = await make_farm({"m30s": 1})
    sim = (await rpc(farm.device("m30s-0001"), "summary"))["SUMMARY"][0]
    real = load("whatsminer/v1/summary.json")["SUMMARY"][0]
    common = set(sim) & set(real)
    assert len(common) > 40
    for key in common:
        assert kind(sim[key]) == kind(real[key]), key


async def test_whatsminer_error_codes_match_capture_shape(make_farm):
    farm = await make_farm({"m30s": 1})
    dev = farm.device("m30s-0001")
    dev.unit.fail_fan(0)
    dev.unit.lose_board(2)
    sim = await rpc(dev, "get_error_code")
    real = load("whatsminer/v2/get_error_code_with_errors.json")
    assert set(sim) == set(real)
    assert set(sim["Msg"]) == set(real["Msg"])
    for entry in sim["Msg"]["error_code"]:  # one-key objects {"<code>": "YYYY-mm-dd HH:MM:SS"}
        ((code, when),) = entry.items()
        assert code.isdigit()
        assert len(when) == len("2024-06-15 10:30:00")
    codes = [next(iter(e)) for e in sim["Msg"]["error_code"]]
    assert "110" in codes
    assert "532" in codes


@pytest.mark.parametrize(
    ("param", "fixture", "key"),
    [
        ("summary", "whatsminer/v3/get_miner_status_summary.json", "summary"),
        ("edevs", "whatsminer/v3/get_miner_status_edevs.json", "edevs"),
        ("pools", "whatsminer/v3/get_miner_status_pools.json", "pools"),
    ],
)
async def test_whatsminer_v3_status_matches_capture(make_farm, param, fixture, key):
    farm = await make_farm({"m60s/whatsminer_v3": 1})
    client = await V3Client.connect(farm.device("m60s-0001"))
    try:
        sim = await client.send({"cmd": "get.miner.status", "param": param})
    finally:
        client.close()
    assert_same_shape(sim, load(fixture))


async def test_whatsminer_v3_device_info_matches_capture(make_farm):
    farm = await make_farm({"m60s/whatsminer_v3": 1})
    client = await V3Client.connect(farm.device("m60s-0001"))
    try:
        sim = await client.send({"cmd": "get.device.info"})
    finally:
        client.close()
    real = load("whatsminer/v3/get_device_info.json")
    # our miner section also carries power-limit-set (protocols.md §3.5) but no chip data
    for section in ("network", "power", "system"):
        assert_same_shape(sim["msg"][section], real["msg"][section], section)
    assert set(sim["msg"]["miner"]) >= set(real["msg"]["miner"]) - {
        "chipdata0",
        "chipdata1",
        "chipdata2",
        "detect-hash-rate",
    }
    assert sim["msg"]["miner"]["type"] == "M60S_VK40"
    assert isinstance(sim["msg"]["salt"], str)
    assert len(sim["msg"]["salt"]) == 8


def test_fixtures_present():
    assert Path(FIXTURES).is_dir()
