"""Whatsminer (btminer) read replies on TCP 4028, shaped like fixtures/asic-rs/whatsminer/v1,v2.

Two envelopes exist (protocols.md §3.1): cgminer-style for summary/devs/edevs/pools/devdetails
(``STATUS`` list + section + id) and MicroBT-style for ``get_*``/``status``/``get_token``
(flat ``STATUS``/``When``/``Code``/``Msg``/``Description``).
"""

from __future__ import annotations

from typing import Any

from agent.simulator.servers import cgminer
from agent.simulator.servers.device import SimDevice
from agent.simulator.servers.readings import counters, fans, fmt_time, live_boards, mean, mhs

#: cgminer-style Description of the captured units (fixtures whatsminer/v1, v2).
CGMINER_DESCRIPTION = "cgminer 4.9.2"
#: Firmware identity, V2 firmware (fixtures whatsminer/v2/get_version.json).
API_VERSION = "2.0.5"
FW_VERSION_V2 = "20230803.11.REL"
#: Firmware identity, V3 firmware (fixtures whatsminer/v3/get_device_info.json).
FW_VERSION_V3 = "20251209.16.Rel2"
PLATFORM = "H616"
CONTROL_BOARD = "CB6V10"
#: PSU identity of the captured 2.0.5 unit (fixtures whatsminer/v2/get_psu.json).
PSU_NAME = "P222B"
PSU_SW_VERSION = "230208.220429"
#: MicroBT message codes (vendor V2.0.5 doc, protocols.md §3.2).
CODE_OK = 131
CODE_TOKEN = 134
CODE_INVALID = 14
#: Commands that use the cgminer envelope and may be joined with ``+`` (§3.1).
CGMINER_STYLE = ("summary", "devs", "edevs", "pools", "devdetails")


def microbt(code: int, msg: Any, when: int, ok: bool = True) -> dict[str, Any]:
    """Build the flat MicroBT envelope (key order as in a captured reply, libbtctools #8)."""
    return {"STATUS": "S" if ok else "E", "When": when, "Code": code, "Msg": msg, "Description": ""}


def invalid_cmd(when: int) -> dict[str, Any]:
    """Btminer's unknown-command reply (captured: Code 14 "invalid cmd", libbtctools #8)."""
    return microbt(CODE_INVALID, "invalid cmd", when, ok=False)


def fw_version(device: SimDevice) -> str:
    """Return the firmware build string (its date decides V2 vs V3 in clients, §3.5)."""
    return FW_VERSION_V3 if device.firmware == "whatsminer_v3" else FW_VERSION_V2


def api_version(device: SimDevice) -> str:
    """Return the V2 API version this unit emulates ("2.0.5"; "2.0.4" for old firmware)."""
    return str(device.state.get("wm_api", API_VERSION))


def api_at_least(device: SimDevice, version: str) -> bool:
    """Whether the emulated API version is ``version`` or newer (numeric comparison)."""
    return _numeric(api_version(device)) >= _numeric(version)


def _numeric(version: str) -> tuple[int, ...]:
    digits = "".join(ch for ch in version if ch.isdigit() or ch == ".")
    return tuple(int(p) for p in digits.split(".") if p)


def error_codes(device: SimDevice, reading: Any) -> list[tuple[str, str]]:
    """(code, first-seen time) for the active error codes; oversize adds hundreds more."""
    seen: dict[str, float] = device.state.setdefault("error_seen", {})
    now = device.now()
    active = [str(c) for c in reading.error_codes]
    for code in active:
        seen.setdefault(code, now)
    for code in list(seen):
        if code not in active:
            del seen[code]
    out = [(code, fmt_time(seen[code])) for code in active]
    if device.faults.connection_for("rpc") == "oversize":
        # Bugged units return hundreds of codes (§3.1); ~28 bytes per entry.
        n = device.faults.oversize_bytes // 28 + 1
        out += [(str(100 + i % 900), fmt_time(now)) for i in range(n)]
    return out


def power_mode_label(device: SimDevice) -> str:
    """``Power Mode`` as btminer capitalises it."""
    return str(device.unit.settings.get("power_mode", "normal")).capitalize()


def _reported_power(reading: Any) -> int:
    power = reading.power_reported_w
    return -1 if power is None else round(power)


def summary(device: SimDevice, reading: Any, when: int, broken: bool = False) -> dict[str, Any]:
    """``summary`` (Code 11); ``broken`` drops power and limits like V3 firmware does."""
    el = device.elapsed(reading)
    c = counters(reading, el)
    boards = live_boards(reading)
    chip_temps = [float(b.chip_temp_c) for b in boards]
    speeds = fans(reading)
    power = _reported_power(reading)
    expected_ghs = round(float(reading.expected_hashrate_ths) * 1000.0)
    item: dict[str, Any] = {
        "Elapsed": el,
        "MHS av": mhs(reading.hashrate_avg_ths),
        "MHS 5s": mhs(reading.hashrate_5s_ths),
        "MHS 1m": mhs(reading.hashrate_avg_ths if el < 60 else reading.hashrate_5s_ths),
        "MHS 5m": mhs(reading.hashrate_avg_ths),
        "MHS 15m": mhs(reading.hashrate_30m_ths),
        "HS RT": mhs(reading.hashrate_avg_ths),
        "Accepted": int(reading.accepted),
        "Rejected": int(reading.rejected),
        "Total MH": c["total_mh"],
        "Temperature": round(max((float(b.board_temp_c) for b in boards), default=0.0), 2),
        "freq_avg": round(mean([float(b.freq_mhz) for b in boards])),
        "Fan Speed In": speeds[0] if speeds else 0,
        "Fan Speed Out": speeds[1] if len(speeds) > 1 else (speeds[0] if speeds else 0),
        "Uptime": int(reading.elapsed_s),
        "MAC": device.identity.mac,
    }
    if broken:
        return cgminer.envelope("SUMMARY", [item], 11, "Summary", CGMINER_DESCRIPTION, when)
    hashrate = float(reading.hashrate_avg_ths or 0.0)
    item.update(
        {
            "Found Blocks": 0,
            "Getworks": c["getworks"],
            "Discarded": c["discarded"],
            "Stale": 0,
            "Get Failures": 0,
            "Local Work": c["local_work"],
            "Remote Failures": 0,
            "Network Blocks": c["network_blocks"],
            "Hardware Errors": int(reading.hw_errors),
            "Utility": c["utility"],
            "Work Utility": c["work_utility"],
            "Difficulty Accepted": c["diff_accepted"],
            "Difficulty Rejected": c["diff_rejected"],
            "Difficulty Stale": 0.0,
            "Best Share": c["best_share"],
            "Device Hardware%": c["hw_pct"],
            "Device Rejected%": c["rejected_pct"],
            "Pool Rejected%": c["rejected_pct"],
            "Pool Stale%": 0.0,
            "Last getwork": 0,
            "Target Freq": round(float(device.unit.settings.get("freq_mhz") or 0)),
            "Target MHS": round(float(reading.expected_hashrate_ths) * 1e6),
            "Env Temp": round(float(reading.env_temp_c), 2),
            "Power": power,
            "Power_RT": power,
            "Power Current": round(power / max(_psu_volts(device), 1.0)) if power > 0 else 0,
            "Power Fanspeed": _psu_fan(reading),
            "Power Rate": round(power / hashrate, 2) if power > 0 and hashrate > 0 else 0.0,
            "Power Limit": round(float(reading.power_limit_w or 0)),
            "Power Mode": power_mode_label(device),
            "Chip Temp Min": round(min(chip_temps, default=0.0), 2),
            "Chip Temp Max": round(max(chip_temps, default=0.0), 2),
            "Chip Temp Avg": round(mean(chip_temps), 2),
            "Hash Stable": bool(reading.is_mining and el > 0),
            "Hash Stable Cost Seconds": min(el, 1538),
            "Hash Deviation%": 0.0,
            "Security Mode": 0,
            "Btminer Fast Boot": "disable",
            "Liquid Cooling": False,
            "Voltage": round(_psu_volts(device) * 100),
            "Factory GHS": expected_ghs,
            "Firmware Version": f"'{fw_version(device)}'",
            "CB Platform": PLATFORM,
            "CB Version": CONTROL_BOARD,
        }
    )
    if not api_at_least(device, "2.0.4"):
        codes = error_codes(device, reading)
        item["Error Code Count"] = len(codes)
        for i, (code, _t) in enumerate(codes):
            item[f"Error Code {i}"] = int(code) if code.isdigit() else code
        item["Factory Error Code Count"] = 0
    return cgminer.envelope("SUMMARY", [item], 11, "Summary", CGMINER_DESCRIPTION, when)


def _psu_volts(device: SimDevice) -> float:
    """Board supply voltage in volts (the unit's voltage setting)."""
    return float(device.unit.settings.get("voltage_v") or device.profile.clock.voltage_v_default)


def _psu_fan(reading: Any) -> int:
    """PSU fan speed: follows the hashboard fans (no separate physics for it)."""
    speeds = fans(reading)
    return max(speeds) if speeds else 0


def devs(device: SimDevice, reading: Any, when: int, broken: bool = False) -> dict[str, Any]:
    """``devs``/``edevs`` (Code 9): one entry per live hashboard (dead boards disappear)."""
    if broken:
        return cgminer.envelope("DEVS", [], 9, "0 ASC(s)", CGMINER_DESCRIPTION, when)
    el = device.elapsed(reading)
    speeds = fans(reading)
    n_boards = max(device.profile.hardware.boards, 1)
    items = []
    for b in live_boards(reading):
        i = int(b.index)
        share = 1.0 / n_boards
        rate = mhs(b.hashrate_ths)
        items.append(
            {
                "ASC": i,
                "Slot": i,
                "Name": "SM",
                "ID": i,
                "Enabled": "Y",
                "Status": "Alive",
                "Temperature": round(float(b.board_temp_c), 2),
                "Chip Frequency": round(float(b.freq_mhz)),
                "Frequency": round(float(b.freq_mhz), 1),
                "Fan Speed In": speeds[0] if speeds else 0,
                "Fan Speed Out": speeds[1] if len(speeds) > 1 else 0,
                "MHS av": rate,
                "MHS 5s": rate,
                "MHS 1m": rate,
                "MHS 5m": rate,
                "MHS 15m": rate,
                "Accepted": int(reading.accepted * share),
                "Rejected": int(reading.rejected * share),
                "Hardware Errors": int(b.hw_errors),
                "Utility": round(reading.accepted * share / el * 60.0, 2) if el else 0.0,
                "Last Share Pool": 0,
                "Last Share Time": when,
                "Total MH": round(rate * el, 1),
                "Diff1 Work": 0,
                "Difficulty Accepted": 0.0,
                "Difficulty Rejected": 0.0,
                "Last Share Difficulty": 65536.0,
                "Last Valid Work": when,
                "Device Hardware%": 0.0,
                "Device Rejected%": 0.0,
                "Device Elapsed": el,
                "Upfreq Complete": 1,
                "Effective Chips": int(b.chips_ok),
                "PCB SN": device.identity.board_serials[i]
                if i < len(device.identity.board_serials)
                else "",
                "Chip Temp Min": round(float(b.inlet_temp_c), 2),
                "Chip Temp Max": round(float(b.chip_temp_c) + 5.0, 2),
                "Chip Temp Avg": round(float(b.chip_temp_c), 2),
                "Factory GHS": round(float(reading.expected_hashrate_ths) * 1000.0 * share),
            }
        )
    return cgminer.envelope("DEVS", items, 9, f"{len(items)} ASC(s)", CGMINER_DESCRIPTION, when)


def pools(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    """``pools`` (Code 7), POOL numbered from 1 like btminer."""
    c = counters(reading, device.elapsed(reading))
    items = []
    for i, pool in enumerate(device.pools):
        first = i == 0
        items.append(
            {
                "POOL": i + 1,
                "URL": pool.url,
                "Status": "Alive",
                "Priority": i,
                "Quota": 1,
                "Long Poll": "N",
                "Getworks": c["getworks"] if first else 0,
                "Accepted": int(reading.accepted) if first else 0,
                "Rejected": int(reading.rejected) if first else 0,
                "Works": 0,
                "Discarded": c["discarded"] if first else 0,
                "Stale": 0,
                "Get Failures": 0,
                "Remote Failures": 0,
                "User": pool.user,
                "Last Share Time": when if first and reading.is_mining else 0,
                "Diff1 Shares": 0,
                "Proxy Type": "",
                "Proxy": "",
                "Difficulty Accepted": c["diff_accepted"] if first else 0.0,
                "Difficulty Rejected": c["diff_rejected"] if first else 0.0,
                "Difficulty Stale": 0.0,
                "Last Share Difficulty": 65536.0 if first else 0.0,
                "Work Difficulty": 0.0,
                "Has Stratum": True,
                "Stratum Active": first and bool(reading.is_mining),
                "Stratum URL": pool.url.split("://")[-1].rsplit(":", 1)[0],
                "Stratum Difficulty": 65536.0 if first else 0.0,
                "Has GBT": False,
                "Best Share": c["best_share"] if first else 0,
                "Pool Rejected%": c["rejected_pct"] if first else 0.0,
                "Pool Stale%": 0.0,
                "Bad Work": 0,
                "Current Block Height": 0,
                "Current Block Version": 536870912 if first else 0,
            }
        )
    return cgminer.envelope("POOLS", items, 7, f"{len(items)} Pool(s)", CGMINER_DESCRIPTION, when)


def devdetails(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    """``devdetails`` (captured 2024-09-30 reply in asic-rs: Driver "bitmicro", Model)."""
    items = [
        {
            "DEVDETAILS": i,
            "Name": "SM",
            "ID": i,
            "Driver": "bitmicro",
            "Kernel": "",
            "Model": device.model,
        }
        for i in range(device.profile.hardware.boards)
    ]
    return cgminer.envelope("DEVDETAILS", items, 69, "Device Details", CGMINER_DESCRIPTION, when)


def get_version(device: SimDevice, when: int) -> dict[str, Any]:
    """``get_version``: api_ver, fw_ver (its date selects V2/V3 in clients), platform."""
    return microbt(
        CODE_OK,
        {"api_ver": api_version(device), "fw_ver": fw_version(device), "platform": PLATFORM},
        when,
    )


def get_psu(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    """``get_psu``; the temp0 key exists only on the 2023-01-06 build (missing-comma quirk)."""
    msg: dict[str, Any] = {
        "name": PSU_NAME,
        "hw_version": "",
        "sw_version": PSU_SW_VERSION,
        "model": PSU_NAME,
        "fan_speed": str(_psu_fan(reading)),
    }
    if "missing_comma_temp0" in device.faults.quirks:
        msg["temp0"] = str(round(float(reading.env_temp_c) + 10.0, 1))
    return microbt(CODE_OK, msg, when)


def get_miner_info(device: SimDevice, when: int) -> dict[str, Any]:
    """``get_miner_info``: network identity, LED state, serial."""
    ident = device.identity
    return microbt(
        CODE_OK,
        {
            "ip": device.host,
            "proto": "dhcp",
            "netmask": "255.0.0.0",
            "gateway": "",
            "dns": "",
            "hostname": ident.hostname,
            "mac": ident.mac,
            "ledstat": "manual" if device.led_on else "auto",
            "minersn": ident.serial,
        },
        when,
    )


def status(device: SimDevice, reading: Any, when: int, broken: bool = False) -> dict[str, Any]:
    """``status``: mineroff, power mode, limit (fixtures whatsminer/v2/status.json)."""
    settings = device.unit.settings
    off = not settings.get("mining", True)
    msg: dict[str, Any] = {"mineroff": "true" if off else "false"}
    if broken:
        msg["FirmwareVersion"] = fw_version(device)
        return microbt(CODE_OK, msg, when)
    pct = settings.get("power_percent")
    msg.update(
        {
            "mineroff_reason": "api" if off else "",
            "mineroff_time": fmt_time(device.now()) if off else "",
            "FirmwareVersion": fw_version(device),
            "power_mode": str(settings.get("power_mode", "normal")),
            "hash_percent": str(int(pct)) if pct is not None and pct < 100 else "0",
            "power_limit_set": str(round(float(reading.power_limit_w or 0))),
        }
    )
    return microbt(CODE_OK, msg, when)


def get_error_code(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    """``get_error_code``: a list of one-key objects ``{"<code>": "<time>"}``."""
    codes = error_codes(device, reading)
    return microbt(CODE_OK, {"error_code": [{code: t} for code, t in codes]}, when)
