"""Whatsminer replies (API V2 and V3) → snapshot fields; pure functions, no I/O.

Field names: protocols.md §3.1 (V2) and §3.5 (V3); real shapes in
``shared/fixtures/asic-rs/whatsminer/{v1,v2,v3}``. V2 hashrates are MH/s, V3 TH/s.
"""

from __future__ import annotations

from typing import Any

from agent.drivers.common import MHS_TO_THS, Fields, first, positive
from agent.protocols.quirks import integer, number, unquote
from agent.snapshot import BoardReading, PoolReading

GHS_TO_THS = 1e-3
#: pyasic picks API V3 for firmware dated after 2024-11-00 (protocols.md §3.5,
#: pyasic backends/btminer.py); earlier firmware speaks V2.
V3_FIRST_FIRMWARE = (2024, 11, 1)


def api_for_firmware(fw_ver: str | None) -> str | None:
    """``"v3"``/``"v2"`` from a firmware string starting YYYYMMDD, else ``None``."""
    text = unquote(fw_ver) or ""
    try:
        date = (int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None
    return "v3" if date >= V3_FIRST_FIRMWARE else "v2"


def msg(reply: dict[str, Any] | None) -> dict[str, Any]:
    """Return the ``Msg`` (V2) or ``msg`` (V3) object of a MicroBT-style reply."""
    if reply is None:
        raise LookupError("no reply")
    value = reply.get("Msg", reply.get("msg"))
    if not isinstance(value, dict):
        raise TypeError(f"Msg is {type(value).__name__}")
    return value


def _flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


# --- V2 -------------------------------------------------------------------------------


def v2_hashrate_ths(summary: dict[str, Any]) -> float | None:
    """Return the hashrate: `MHS 1m` (pyasic's choice), else 5 s, real-time, average."""
    value = first(*(number(summary.get(k)) for k in ("MHS 1m", "MHS 5s", "HS RT", "MHS av")))
    return None if value is None else value * MHS_TO_THS


def v2_boards(
    devs: dict[str, Any], expected_chips: int | None, f: Fields | None = None
) -> tuple[BoardReading, ...]:
    """Hashboards from `devs`/`edevs` (one entry per board); a garbled reading is ``None``."""
    f = f or Fields("")
    entries = devs.get("DEVS") or devs.get("EDEVS") or ()
    return tuple(_v2_board(d, i, expected_chips, f) for i, d in enumerate(entries))


def _v2_board(d: dict[str, Any], i: int, expected_chips: int | None, f: Fields) -> BoardReading:
    slot = integer(first(d.get("Slot"), d.get("ASC"), d.get("ID"), i))
    slot = i if slot is None else slot
    rate = f.get(
        f"board{slot}.rate",
        lambda: first(*(number(d.get(k)) for k in ("MHS 1m", "MHS 5s", "MHS av"))),
    )
    return BoardReading(
        slot=slot,
        hashrate_ths=None if rate is None else rate * MHS_TO_THS,
        board_temp_c=f.get(f"board{slot}.temp", lambda: number(d.get("Temperature"))),
        chip_temp_c=f.get(
            f"board{slot}.chip_temp",
            lambda: number(first(d.get("Chip Temp Max"), d.get("Chip Temp Avg"))),
        ),
        chips=f.get(f"board{slot}.chips", lambda: integer(d.get("Effective Chips"))),
        expected_chips=expected_chips,
        freq_mhz=f.get(
            f"board{slot}.freq",
            lambda: positive(first(d.get("Chip Frequency"), d.get("Frequency"))),
        ),
    )


def v2_error_codes(
    error_reply: dict[str, Any] | None, summary: dict[str, Any]
) -> tuple[str, ...] | None:
    """Return error codes: `get_error_code`, else the pre-2.0.4 `Error Code N` of `summary`.

    `get_error_code` holds a list of {code: time} (a dict after the API 2.0.4 repair).
    ``None`` when neither source was read (newer summaries carry no `Error Code Count`).
    """
    if error_reply is not None:
        codes = msg(error_reply)["error_code"]
        if isinstance(codes, dict):
            return tuple(str(k) for k in codes)
        return tuple(str(k) for item in codes for k in item if k != "reason")
    count = integer(summary.get("Error Code Count"))
    if count is None:
        return None
    return tuple(str(summary[f"Error Code {i}"]) for i in range(count))


def v2_power_w(summary: dict[str, Any]) -> float | None:
    """Measured power; btminer reports -1 when it does not know."""
    return positive(first(summary.get("Power"), summary.get("Power_RT")))


def v2_power_mode(summary: dict[str, Any], status: dict[str, Any] | None) -> str | None:
    """`Power Mode` ("Normal"/"Low"/"High") from summary, else `status` `power_mode`."""
    value = first(summary.get("Power Mode"), (msg(status) if status else {}).get("power_mode"))
    return str(value).strip().lower() if value else None


def v2_is_mining(status: dict[str, Any] | None, hashrate: float | None) -> bool | None:
    """Return False if `status` says the miner or btminer is off, else whether it hashes."""
    if status is not None:
        m = msg(status)
        if _flag(m.get("mineroff")) or _flag(m.get("btmineroff")):
            return False
    return None if hashrate is None else hashrate > 0


def v2_firmware(
    version: dict[str, Any] | None, status: dict[str, Any] | None, summary: dict[str, Any]
) -> str | None:
    """`get_version` fw_ver, else the quoted `Firmware Version` of status/summary."""
    fw = None
    if version is not None:
        m = version.get("Msg")
        fw = m.get("fw_ver") if isinstance(m, dict) else None
    if fw is None and status is not None:
        sm = msg(status)
        fw = first(sm.get("Firmware Version"), sm.get("FirmwareVersion"))
    return unquote(first(fw, summary.get("Firmware Version")))


# --- V3 -------------------------------------------------------------------------------


def v3_boards(
    edevs: dict[str, Any],
    summary: dict[str, Any],
    expected_chips: int | None,
    f: Fields | None = None,
) -> tuple[BoardReading, ...]:
    """Hashboards from `get.miner.status` edevs; board temps from summary `board-temperature`."""
    f = f or Fields("")
    temps = summary.get("board-temperature") or []
    entries = msg(edevs)["edevs"]
    return tuple(_v3_board(d, i, temps, expected_chips, f) for i, d in enumerate(entries))


def _v3_board(
    d: dict[str, Any], i: int, temps: list[Any], expected_chips: int | None, f: Fields
) -> BoardReading:
    slot = integer(first(d.get("id"), i))
    slot = i if slot is None else slot
    return BoardReading(
        slot=slot,
        hashrate_ths=f.get(
            f"board{slot}.rate",
            lambda: number(first(d.get("hash-realtime"), d.get("hash-average"))),
        ),
        board_temp_c=f.get(
            f"board{slot}.temp", lambda: number(temps[slot]) if slot < len(temps) else None
        ),
        chip_temp_c=f.get(
            f"board{slot}.chip_temp",
            lambda: number(first(d.get("chip-temp-max"), d.get("chip-temp-avg"))),
        ),
        chips=f.get(f"board{slot}.chips", lambda: integer(d.get("effective-chips"))),
        expected_chips=expected_chips,
        freq_mhz=f.get(f"board{slot}.freq", lambda: positive(d.get("freq"))),
    )


def v3_pools(pools: dict[str, Any]) -> tuple[PoolReading, ...]:
    """Pools from `get.miner.status` pools (no share counters in V3)."""
    return tuple(
        PoolReading(url=str(p["url"]), user=str(p.get("account", "")), status=p.get("status"))
        for p in msg(pools)["pools"]
    )


def v3_error_codes(info: dict[str, Any]) -> tuple[str, ...]:
    """`error-code` list of {code: time, reason} — or a plain string when btminer is down.

    A `get.device.info` that was read but has no `error-code` means none (the healthy M60S
    capture in shared/fixtures/asic-rs/whatsminer/v3 omits the key).
    """
    codes = info.get("error-code")
    if not codes:
        return ()
    if isinstance(codes, str):
        return (codes,)
    return tuple(str(k) for item in codes for k in item if k != "reason")
