"""Stock Antminer (bmminer) replies on TCP 4028, shaped like fixtures/asic-rs/antminer/v2020.

Group-A access (``api-groups "A:stats:pools:devs:summary:version"``) makes the port read-only:
anything else is "Access denied" (protocols.md §1.3). ``stats`` comes in the classic
two-element form and in the ``new_api`` form (the web ``stats.cgi`` shape, §1.2).
"""

from __future__ import annotations

from typing import Any

from agent.simulator.servers import cgminer
from agent.simulator.servers.cgminer import Reply, Request
from agent.simulator.servers.device import SimDevice
from agent.simulator.servers.readings import (
    chip_string,
    counters,
    fans,
    ghs,
    grouped,
    mean,
)

#: Firmware identity of the captured S19 Pro (fixtures antminer/v2020/version.json).
BMMINER_VERSION = "1.0.0"
API_VERSION = "3.1"
MINER_VERSION = "49.0.1.3"
COMPILE_TIME = "Tue Dec  6 16:12:30 CST 2022"
DESCRIPTION = "cgminer 1.0.0"
#: Kernel and filesystem strings of the captured S21 (fixtures antminer/v2020/system_info.json).
KERNEL_VERSION = "Linux 4.9.113 #1 SMP PREEMPT Thu Oct 9 18:55:45 CST 2025"
FILESYSTEM_VERSION = "FR-1.12(251009-S21)"
#: Web API envelope version (captured S23 Hyd. stats.cgi / summary.cgi).
WEB_API_VERSION = "1.0.0"
#: Commands group A may run (stock api-groups, protocols.md §1.3).
ALLOWED = ("version", "summary", "stats", "pools", "devs")
#: Chain slots in classic stats: the S19 Pro capture lists 4 slots for 3 boards.
MIN_CHAIN_SLOTS = 4
#: Fan slots scanned by clients (fan1..fan4, or fan5..fan8 on some builds, §1.2).
FAN_SLOTS = 4
#: bmminer groups chain_acs in threes (capture); the web ``asic`` string in elevens (S23 Hyd.).
RPC_CHIP_GROUP = 3
WEB_CHIP_GROUP = 11
#: Sensor layout derived from the S19 Pro capture: temp_pcb "73-45-64-65" = outlet, inlet,
#: two mid-board sensors; temp_pic is 10 °C below temp_pcb; temp_chip = pcb + (chip - board).
PIC_OFFSET_C = 10


def dispatch(device: SimDevice, request: Request, peer: str) -> Reply:
    """Answer one 4028 request like stock bmminer."""
    when = device.when()
    names = cgminer.split_multi(request.command)
    if len(names) > 1:
        if device.faults.reject_multicommand:
            return Reply(obj=cgminer.invalid_command(DESCRIPTION, when))
        reading = device.reading()
        return Reply(obj=cgminer.multi({n: _single(device, n, request, reading) for n in names}))
    name = names[0] if names else ""
    if name not in ALLOWED:
        return Reply(obj=cgminer.access_denied(name, DESCRIPTION, when))
    return Reply(obj=_single(device, name, request, device.reading()))


def _single(device: SimDevice, name: str, request: Request, reading: Any) -> dict[str, Any]:
    when = device.when()
    if name == "version":
        return version(device, when)
    if name == "summary":
        return summary(device, reading, when)
    if name == "stats":
        if request.body.get("new_api"):
            return web_stats(device, reading, when)
        return stats(device, reading, when)
    if name == "pools":
        return pools(device, reading, when)
    if name == "devs":
        return devs(device, reading, when)
    return cgminer.access_denied(name, DESCRIPTION, when)


def identity(device: SimDevice) -> dict[str, Any]:
    """``VERSION[0]`` / ``STATS[0]`` identity block."""
    return {
        "BMMiner": BMMINER_VERSION,
        "API": API_VERSION,
        "Miner": MINER_VERSION,
        "CompileTime": COMPILE_TIME,
        "Type": device.model,
    }


def version(device: SimDevice, when: int) -> dict[str, Any]:
    """``version`` (Code 22)."""
    return cgminer.envelope(
        "VERSION", [identity(device)], 22, "CGMiner versions", DESCRIPTION, when
    )


def summary(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    """``summary`` (Code 11), keys as the captured S19 Pro."""
    el = device.elapsed(reading)
    c = counters(reading, el)
    item = {
        "Elapsed": el,
        "GHS 5s": ghs(reading.hashrate_5s_ths),
        "GHS av": ghs(reading.hashrate_avg_ths),
        "GHS 30m": ghs(reading.hashrate_30m_ths),
        "Found Blocks": 0,
        "Getwork": c["getworks"],
        "Accepted": int(reading.accepted),
        "Rejected": int(reading.rejected),
        "Hardware Errors": int(reading.hw_errors),
        "Utility": c["utility"],
        "Discarded": c["discarded"],
        "Stale": 0,
        "Get Failures": 0,
        "Local Work": c["local_work"],
        "Remote Failures": 0,
        "Network Blocks": c["network_blocks"],
        "Total MH": c["total_mh"],
        "Work Utility": c["work_utility"],
        "Difficulty Accepted": c["diff_accepted"],
        "Difficulty Rejected": c["diff_rejected"],
        "Difficulty Stale": 0.0,
        "Best Share": c["best_share"],
        "Device Hardware%": c["hw_pct"],
        "Device Rejected%": c["rejected_pct"],
        "Pool Rejected%": c["rejected_pct"],
        "Pool Stale%": 0.0,
        "Last getwork": when,
    }
    return cgminer.envelope("SUMMARY", [item], 11, "Summary", DESCRIPTION, when)


def _sensors(board: Any) -> tuple[list[int], list[int], list[int]]:
    """(pcb, chip, pic) four-sensor lists for one board (see PIC_OFFSET_C)."""
    board_c = float(board.board_temp_c)
    pcb = [
        round(float(board.outlet_temp_c)),
        round(float(board.inlet_temp_c)),
        round(board_c),
        round(board_c) + 1,
    ]
    delta = round(float(board.chip_temp_c) - board_c)
    chip = [t + delta for t in pcb]
    pic = [t - PIC_OFFSET_C for t in pcb]
    return pcb, chip, pic


def stats(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    """Classic two-element ``stats`` (Code 70) with chain_*/temp*/fan* keys."""
    el = device.elapsed(reading)
    quirks = device.faults.quirks
    first = 6 if "s9_chain_numbering" in quirks else 1
    boards = {b.index: b for b in reading.boards}
    n_slots = max(MIN_CHAIN_SLOTS, device.profile.hardware.boards)
    live = [b for b in reading.boards if getattr(b, "alive", True)]
    freqs = [float(b.freq_mhz) for b in live]
    data: dict[str, Any] = {
        "STATS": 0,
        "ID": "BTM_SOC0",
        "Elapsed": el,
        "Calls": 0,
        "Wait": 0,
        "Max": 0,
        "Min": 99999999,
        "GHS 5s": ghs(reading.hashrate_5s_ths),
        "GHS av": ghs(reading.hashrate_avg_ths),
        "miner_count": len(live),
        "frequency": round(mean(freqs)),
        "fan_num": device.profile.hardware.fans,
    }
    speeds = fans(reading)
    fan_first = 5 if "fans_5_8" in quirks else 1
    for i in range(1, 2 * FAN_SLOTS + 1 if fan_first == 5 else FAN_SLOTS + 1):
        pos = i - fan_first
        data[f"fan{i}"] = speeds[pos] if 0 <= pos < len(speeds) else 0
    data["temp_num"] = len(live)
    per_slot: list[tuple[int, Any]] = [(first + i, boards.get(i)) for i in range(n_slots)]
    for slot, b in per_slot:
        if b is not None and getattr(b, "alive", True):
            data[f"temp{slot}"] = max(_sensors(b)[0])
    for slot, b in per_slot:
        if b is not None and getattr(b, "alive", True):
            data[f"temp2_{slot}"] = max(_sensors(b)[1])
    for key, idx in (("temp_pcb", 0), ("temp_chip", 1), ("temp_pic", 2)):
        for slot, b in per_slot:
            alive = b is not None and getattr(b, "alive", True)
            values = _sensors(b)[idx] if alive else [0, 0, 0, 0]
            data[f"{key}{slot}"] = "-".join(str(v) for v in values)
    data.update(
        {
            "total_rateideal": round(float(reading.expected_hashrate_ths) * 1000.0, 1),
            "rate_unit": "GH",
            "total_freqavg": round(mean(freqs)),
            "total_acn": sum(int(b.chips_ok) for b in live),
            "total rate": ghs(reading.hashrate_avg_ths),
            "rate_30m": ghs(reading.hashrate_30m_ths),
            "temp_max": 0,
            "no_matching_work": int(reading.hw_errors),
        }
    )
    for slot, b in per_slot:
        alive = b is not None and getattr(b, "alive", True)
        data[f"chain_acn{slot}"] = int(b.chips_ok) if alive else 0
        data[f"chain_acs{slot}"] = grouped(chip_string(b), RPC_CHIP_GROUP) if alive else ""
        data[f"chain_hw{slot}"] = int(b.hw_errors) if alive else 0
        data[f"chain_rate{slot}"] = f"{ghs(b.hashrate_ths):.2f}" if alive else ""
        data[f"freq{slot}"] = round(float(b.freq_mhz)) if alive else 0
    data["miner_version"] = MINER_VERSION
    data["miner_id"] = device.identity.miner_id
    data["Mode"] = 2
    ident = {k: v for k, v in identity(device).items() if k != "API"}
    return cgminer.envelope("STATS", [ident, data], 70, "CGMiner stats", DESCRIPTION, when)


def pools(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    """``pools`` (Code 7), with the real ``Pool Stale%%`` spelling."""
    el = device.elapsed(reading)
    c = counters(reading, el)
    items = []
    for i, pool in enumerate(device.pools):
        active = i == 0 and reading.is_mining
        items.append(
            {
                "POOL": i,
                "URL": pool.url,
                "Status": "Alive",
                "Priority": i,
                "Quota": 1,
                "Long Poll": "N",
                "Getworks": c["getworks"] if i == 0 else 0,
                "Accepted": int(reading.accepted) if i == 0 else 0,
                "Rejected": int(reading.rejected) if i == 0 else 0,
                "Discarded": c["discarded"] if i == 0 else 0,
                "Stale": 0,
                "Get Failures": 0,
                "Remote Failures": 0,
                "User": pool.user,
                "Last Share Time": "0:00:03" if active else "0",
                "Diff": "524K" if active else "",
                "Diff1 Shares": 0,
                "Proxy Type": "",
                "Proxy": "",
                "Difficulty Accepted": c["diff_accepted"] if i == 0 else 0.0,
                "Difficulty Rejected": c["diff_rejected"] if i == 0 else 0.0,
                "Difficulty Stale": 0.0,
                "Last Share Difficulty": 524288.0 if active else 0.0,
                "Has Stratum": True,
                "Stratum Active": active,
                "Stratum URL": pool.url.split("://")[-1].rsplit(":", 1)[0] if active else "",
                "Has GBT": False,
                "Best Share": float(c["best_share"]) if i == 0 else 0.0,
                "Pool Rejected%": c["rejected_pct"] if i == 0 else 0.0,
                "Pool Stale%%": 0.0,
            }
        )
    return cgminer.envelope("POOLS", items, 7, f"{len(items)} Pool(s)", DESCRIPTION, when)


def devs(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    """``devs``: stock X19 reports one zeroed ``BTM_SOC`` pseudo-device (§1.2)."""
    el = device.elapsed(reading)
    c = counters(reading, el)
    item = {
        "ASC": 0,
        "Name": "BTM_SOC",
        "ID": 0,
        "Enabled": "Y",
        "Status": "Alive",
        "Tenperature": 0.0,
        "MHS av": 0.0,
        "MHS 5s": 0.0,
        "Accepted": int(reading.accepted),
        "Rejected": int(reading.rejected),
        "Hardware Errors": 0,
        "Utility": 0.0,
        "Last Share Pool": 0,
        "Last Share Time": when,
        "Total MH": 0.0,
        "Diff1 Work": 0,
        "Difficulty Accepted": int(c["diff_accepted"]),
        "Difficulty Rejected": int(c["diff_rejected"]),
        "Last Share Difficulty": when,
        "Last Valid Work": when,
        "Device Hardware%": 0.0,
        "Device Rejected%": 0.0,
        "Device Elapsed": el,
    }
    return cgminer.envelope("DEVS", [item], 9, "1 ASC(s)", DESCRIPTION, when)


# -- the web/new_api shapes -----------------------------------------------------------------


def web_status(msg: str, when: int) -> dict[str, Any]:
    """Build the web API's object-shaped STATUS (captured S23 Hyd. stats.cgi)."""
    return {"STATUS": "S", "when": when, "Msg": msg, "api_version": WEB_API_VERSION}


def web_info(device: SimDevice) -> dict[str, Any]:
    """Build the web API's INFO block."""
    return {"miner_version": MINER_VERSION, "CompileTime": COMPILE_TIME, "type": device.model}


def web_stats(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    """``stats.cgi`` / ``stats`` with ``new_api``: chain list, fan list, rate_* in GH/s."""
    chains = []
    sns = device.identity.board_serials
    for b in reading.boards:
        if not getattr(b, "alive", True):
            continue
        pcb, chip, pic = _sensors(b)
        chips = chip_string(b)
        chains.append(
            {
                "index": int(b.index),
                "freq_avg": round(float(b.freq_mhz)),
                "rate_ideal": round(
                    float(reading.expected_hashrate_ths)
                    * 1000.0
                    / max(device.profile.hardware.boards, 1),
                    2,
                ),
                "rate_real": ghs(b.hashrate_ths),
                "asic_num": int(b.chips_ok),
                "asic": grouped(chips, WEB_CHIP_GROUP),
                "temp_pic": pic,
                "temp_pcb": pcb,
                "temp_chip": chip,
                "hw": int(b.hw_errors),
                "eeprom_loaded": True,
                "sn": sns[int(b.index)] if int(b.index) < len(sns) else "",
            }
        )
    speeds = fans(reading)
    item = {
        "elapsed": device.elapsed(reading),
        "rate_5s": ghs(reading.hashrate_5s_ths),
        "rate_avg": ghs(reading.hashrate_avg_ths),
        "rate_30m": ghs(reading.hashrate_30m_ths),
        "rate_ideal": round(float(reading.expected_hashrate_ths) * 1000.0, 2),
        "rate_unit": "GH/s",
        "chain_num": len(chains),
        "fan_num": len(speeds),
        "fan": speeds,
        "hwp_total": counters(reading, device.elapsed(reading))["hw_pct"],
        "chain": chains,
    }
    return {"STATUS": web_status("stats", when), "INFO": web_info(device), "STATS": [item]}
