"""Stock Antminer replies → snapshot fields (pure functions over decoded JSON, no I/O).

Sources: RPC ``version``/``summary``/``stats``/``pools`` (protocols.md §1.2) and web CGI
``get_system_info``/``summary``/``stats``/``get_miner_conf`` (§1.4). Real shapes are in
``shared/fixtures/asic-rs/antminer/v2020``.
"""

from __future__ import annotations

from typing import Any

from agent.drivers.common import Fields, first
from agent.protocols.quirks import integer, number
from agent.snapshot import BoardReading

#: Hashrate unit → TH/s factor (bmminer `rate_unit` "GH", web "GH/s"; scrypt units in MH).
UNIT_TO_THS = {"H": 1e-12, "KH": 1e-9, "MH": 1e-6, "GH": 1e-3, "TH": 1.0, "PH": 1e3}
#: `bitmain-work-mode` (read) / `miner-mode` (write): protocols.md §1.5. 2 is unmapped.
WORK_MODE_BY_VALUE = {"0": "normal", "1": "sleep", "3": "low"}
WORK_MODE_VALUES = {name: int(value) for value, name in WORK_MODE_BY_VALUE.items()}
#: Highest chain index scanned: S9-era firmware numbers chains from 6 (protocols.md §1.2).
MAX_CHAIN_INDEX = 16
#: Highest fan index scanned (`fan1`…`fan8`, only a window populated).
MAX_FAN_INDEX = 8


def unit_factor(unit: Any, default: str = "GH") -> float:
    """TH/s per unit for a bmminer/web `rate_unit` such as "GH" or "GH/s"."""
    text = str(unit or default).upper().removesuffix("/S").strip()
    return UNIT_TO_THS[text]


def section(reply: dict[str, Any] | None, key: str, index: int = 0) -> dict[str, Any]:
    """``reply[key][index]`` as a dict (raises ``LookupError``/``TypeError`` if absent)."""
    if reply is None:
        raise LookupError(f"no reply for {key}")
    value = reply[key]
    if isinstance(value, dict):
        return value
    item = value[index]
    if not isinstance(item, dict):
        raise TypeError(f"{key}[{index}] is {type(item).__name__}")
    return item


def stats_data(stats: dict[str, Any]) -> dict[str, Any]:
    """Return the `stats` element holding chain/fan keys (element 1 of the classic two)."""
    for item in stats["STATS"]:
        if isinstance(item, dict) and any(k.startswith("chain_acn") for k in item):
            return item
    raise LookupError("no STATS element with chain_acn keys")


def summary_rate_ths(summary: dict[str, Any], window: str) -> float | None:
    """`GHS 5s`/`GHS av` (or `MHS …` on MH-reporting firmware) in TH/s."""
    for prefix, unit in (("GHS", "GH"), ("MHS", "MH"), ("THS", "TH")):
        value = number(summary.get(f"{prefix} {window}"))
        if value is not None:
            return value * UNIT_TO_THS[unit]
    return None


def _dash_max(value: Any) -> float | None:
    """Max of a dash-joined sensor string like "73-45-64-65"; all-zero means absent."""
    if value in (None, ""):
        return None
    temps = [float(t) for t in str(value).split("-") if t.strip()]
    hottest = max(temps) if temps else None
    return hottest if hottest else None


def _nonzero(value: Any) -> float | None:
    """Return ``value`` as a number unless it is absent or zero (bmminer's "no reading")."""
    num = number(value)
    return num if num else None


def rpc_boards(
    data: dict[str, Any], expected_chips: int | None, f: Fields | None = None
) -> tuple[BoardReading, ...]:
    """Hashboards from classic `stats` chain keys; absent chains (no chips, no rate) skipped.

    Each reading is parsed on its own: a garbled value makes that reading ``None`` only.
    """
    f = f or Fields("")
    factor = unit_factor(data.get("rate_unit"))
    boards = (_rpc_chain(data, n, factor, expected_chips, f) for n in range(1, MAX_CHAIN_INDEX + 1))
    return tuple(b for b in boards if b is not None)


def _rpc_chain(
    data: dict[str, Any], n: int, factor: float, expected_chips: int | None, f: Fields
) -> BoardReading | None:
    """One chain's board, or ``None`` when the slot is absent (no chips and no rate)."""
    if f"chain_acn{n}" not in data:
        return None
    chips = f.get(f"chain{n}.chips", lambda: integer(data.get(f"chain_acn{n}")))
    rate = f.get(f"chain{n}.rate", lambda: number(data.get(f"chain_rate{n}")))
    if not chips and rate is None:
        return None
    pcb, temp = data.get(f"temp_pcb{n}"), data.get(f"temp{n}")
    chip, temp2 = data.get(f"temp_chip{n}"), data.get(f"temp2_{n}")
    return BoardReading(
        slot=n - 1,
        hashrate_ths=rate * factor if rate is not None else None,
        board_temp_c=f.get(f"chain{n}.board_temp", lambda: first(_dash_max(pcb), _nonzero(temp))),
        chip_temp_c=f.get(f"chain{n}.chip_temp", lambda: first(_dash_max(chip), _nonzero(temp2))),
        chips=chips,
        expected_chips=expected_chips,
        freq_mhz=f.get(f"chain{n}.freq", lambda: _nonzero(data.get(f"freq{n}"))),
    )


def rpc_fans(data: dict[str, Any]) -> tuple[int, ...]:
    """Fan RPMs from `fan1..8`, taking `fan_num` slots from the first populated one."""
    slots = [
        (i, integer(data.get(f"fan{i}"))) for i in range(1, MAX_FAN_INDEX + 1) if f"fan{i}" in data
    ]
    count = integer(data.get("fan_num"))
    if count is None:
        return tuple(v for _, v in slots if v)
    start = next((pos for pos, (_, v) in enumerate(slots) if v), 0)
    return tuple(v or 0 for _, v in slots[start : start + count])


def web_boards(stats: dict[str, Any], expected_chips: int | None) -> tuple[BoardReading, ...]:
    """Hashboards from the web `stats.cgi` `chain` list (newer firmware)."""
    data = section(stats, "STATS")
    factor = unit_factor(data.get("rate_unit"))
    boards = []
    for chain in data["chain"]:
        pcb = [t for t in (number(v) for v in chain.get("temp_pcb") or ()) if t]
        chip = [t for t in (number(v) for v in chain.get("temp_chip") or ()) if t]
        rate = number(chain.get("rate_real"))
        boards.append(
            BoardReading(
                slot=int(chain["index"]),
                hashrate_ths=rate * factor if rate is not None else None,
                board_temp_c=max(pcb) if pcb else None,
                chip_temp_c=max(chip) if chip else None,
                chips=integer(chain.get("asic_num")),
                expected_chips=expected_chips,
                freq_mhz=_nonzero(chain.get("freq_avg")),
            )
        )
    return tuple(boards)


def web_fans(stats: dict[str, Any]) -> tuple[int, ...]:
    """Fan RPMs from the web `stats.cgi` `fan` list (empty on hydro models)."""
    return tuple(int(number(v) or 0) for v in section(stats, "STATS")["fan"])


def web_error_codes(summary: dict[str, Any]) -> tuple[str, ...] | None:
    """Non-OK entries of the web `summary.cgi` status list, as `type:code` strings.

    ``None`` when the reply has no status list (firmware without it reports no codes).
    """
    entries = section(summary, "SUMMARY").get("status")
    if entries is None:
        return None
    return tuple(
        f"{e.get('type')}:{e.get('code')}"
        for e in entries
        if str(e.get("status", "")).lower() not in ("s", "")
    )


def work_mode(conf: dict[str, Any]) -> str | None:
    """Power mode from `get_miner_conf` `bitmain-work-mode` ("0"/"1"/"3", int or string)."""
    value = conf.get("bitmain-work-mode")
    if value is None or value == "":
        return None
    return WORK_MODE_BY_VALUE[str(int(value))]


def set_conf_body(
    conf: dict[str, Any], mode: str | None = None, pools: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """Build a `set_miner_conf` body changing only ``mode``/``pools``, the rest as read.

    The key set is pyasic's ``as_am_modern`` (the known-accepted write form): fan control,
    `freq-level`, `miner-mode` and the pool list.
    """
    current = conf.get("bitmain-work-mode")
    mode_value = WORK_MODE_VALUES[mode] if mode is not None else int(current or 0)
    if pools is None:
        pools = [
            {
                "url": str(p.get("url", "")),
                "user": str(p.get("user", "")),
                "pass": str(p.get("pass", "")),
            }
            for p in conf.get("pools", [])
        ]
    return {
        "bitmain-fan-ctrl": conf.get("bitmain-fan-ctrl", False),
        "bitmain-fan-pwm": conf.get("bitmain-fan-pwm", "100"),
        "freq-level": conf.get("bitmain-freq-level") or "100",
        "miner-mode": mode_value,
        "pools": pools,
    }
