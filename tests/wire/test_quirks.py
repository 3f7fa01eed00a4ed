"""Every JSON repair in protocols/quirks.py, each on the raw bytes that need it."""

from __future__ import annotations

import json

import pytest

from agent.errors import MinerResponseError
from agent.protocols import quirks
from tests.wire.fakes.fixtures import FIXTURES

STATS = (FIXTURES / "antminer/v2020/stats.json").read_bytes()


def _compact(path: str) -> bytes:
    return json.dumps(json.loads((FIXTURES / path).read_bytes()), separators=(",", ":")).encode()


# (raw bytes as a firmware sends them, repair expected, check on the decoded dict)
CASES = {
    "trailing_nul": (
        _compact("antminer/v2020/summary.json") + b"\x00",
        lambda d: d["SUMMARY"][0]["GHS 5s"] == 110566.89,
    ),
    "objects_without_comma": (
        _compact("antminer/v2020/stats.json").replace(b'"},{"Calls"', b'"}{"Calls"'),
        lambda d: len(d["STATS"]) == 2 and d["STATS"][1]["chain_acn1"] == 114,
    ),
    "leading_comma_in_list": (
        b'{"STATUS":[,{"STATUS":"S","Code":7}],"POOLS":[,{"URL":"stratum+tcp://a:1"}]}',
        lambda d: d["POOLS"][0]["URL"] == "stratum+tcp://a:1",
    ),
    "trailing_comma": (
        b'{"STATUS":"S","Code":131,"Msg":{"api_ver":"2.0.5","fw_ver":"20230803.11.REL",},}',
        lambda d: d["Msg"]["fw_ver"] == "20230803.11.REL",
    ),
    "missing_comma_before_temp0": (
        b'{"Msg":{"name":"P222B""temp0":"31.5"},"Code":131}',
        lambda d: d["Msg"]["temp0"] == "31.5" and d["Msg"]["name"] == "P222B",
    ),
    "error_code_list_as_dict": (
        b'{"STATUS":"S","Code":131,"Msg":{"error_code":["110":"2021-03-22 10:00:00",'
        b'"600":"2021-03-22 10:01:00"]}}',
        lambda d: (
            d["Msg"]["error_code"] == {"110": "2021-03-22 10:00:00", "600": "2021-03-22 10:01:00"}
        ),
    ),
    "raw_newlines": (
        b'{"STATUS":"S","Code":131,"Msg":{"hostname":"Whats\nMiner","ledstat":"auto"}}',
        lambda d: d["Msg"]["hostname"] == "WhatsMiner",
    ),
    "non_utf8": (
        b'{"STATUS":"S","Code":131,"Msg":{"model":"P21\xaa-12"}}',
        lambda d: d["Msg"]["model"] == "P21\ufffd-12",
    ),
    "duplicate_keys": (
        b'{"STATS":[{"temp1":61,"temp1":62,"temp1":63,"temp1":64}]}',
        lambda d: d["STATS"][0]["temp1"] == 64,
    ),
}


def test_every_repair_has_a_case() -> None:
    names = {r.name for r in quirks.REPAIRS} | {
        quirks.TRAILING_NUL,
        quirks.NON_UTF8,
        quirks.DUPLICATE_KEYS,
    }
    assert names == set(CASES)
    assert all(r.firmware for r in quirks.REPAIRS), "each repair must name its firmware"


@pytest.mark.parametrize("name", sorted(CASES))
def test_repair(name: str) -> None:
    raw, check = CASES[name]
    if name not in (quirks.TRAILING_NUL, quirks.NON_UTF8, quirks.DUPLICATE_KEYS):
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)  # the raw bytes really are broken
    decoded = quirks.decode(raw, "127.0.0.1")
    assert name in decoded.repairs
    assert check(decoded.data)


def test_clean_reply_needs_no_repair() -> None:
    assert quirks.decode(STATS, "h").repairs == ()


def test_combined_bmminer_defects() -> None:
    raw = _compact("antminer/v2020/stats.json").replace(b'"},{"Calls"', b'"}{"Calls"') + b"\x00"
    decoded = quirks.decode(raw, "h")
    assert decoded.repairs == ("trailing_nul", "objects_without_comma")
    assert decoded.data["STATS"][1]["GHS 5s"] == 110566.89


@pytest.mark.parametrize(
    "raw",
    [
        b'{"STATUS":[{"STATUS":"S"',  # truncated
        b"<html>not json</html>",
        b"",
        b'["a list", "not an object"]',
    ],
)
def test_unrepairable_raises_with_excerpt(raw: bytes) -> None:
    with pytest.raises(MinerResponseError) as info:
        quirks.decode(raw, "127.0.0.9")
    assert info.value.excerpt == raw[:200]
    assert info.value.host == "127.0.0.9"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("37603.30", 37603.3),
        ("", None),
        (None, None),
        (525, 525.0),
        (0.0, 0.0),
        (True, None),
    ],
)
def test_number_accepts_strings(value: object, expected: float | None) -> None:
    assert quirks.number(value) == expected


def test_number_rejects_text() -> None:
    with pytest.raises(ValueError, match="could not convert"):
        quirks.number("fast")


def test_unquote_firmware_version() -> None:
    assert quirks.unquote("'20210322.22.REL'") == "20210322.22.REL"
