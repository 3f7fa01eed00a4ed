"""Braiins OS (BOSminer): cgminer-compatible RPC on 4028 and the virtual /etc/bosminer.toml.

RPC shapes follow captured BOSminer 0.2.0 replies (version "BOSminer versions", fans Code
202, temps Code 201) and a third-party field list for BOS+ (devs ``Nominal MHS``, devdetails
``Chips``, tunerstatus ``PowerLimit``/``ApproximateMinerPowerConsumption``; unverified).
The power target lives in ``/etc/bosminer.toml``: ``[autotuning] enabled, mode =
"power_target", power_target`` on current firmware, ``psu_power_limit`` on BOS <= 21.x;
each firmware rejects the other's key (hass-miner #380, protocols.md §2). ``bosminer start``
applies the target through ``SimUnit.set_power_limit``.
"""

from __future__ import annotations

import tomllib
from typing import Any

from agent.simulator.servers import cgminer
from agent.simulator.servers.cgminer import Reply, Request
from agent.simulator.servers.device import SimDevice
from agent.simulator.servers.readings import counters, fans, live_boards, mhs

#: Banner of a captured BOSminer reply; clients detect Braiins by "BOSMINER" in it.
BOSMINER_VERSION = "0.2.0-d360818"
DESCRIPTION = f"BOSminer {BOSMINER_VERSION}"
API_VERSION = "3.7"
#: Config file path and schemas.
CONFIG_PATH = "/etc/bosminer.toml"
SCHEMA_NEW = "new"
SCHEMA_OLD = "old"
#: Commands BOSminer answers (read-only cgminer subset plus its extensions).
COMMANDS = ("version", "summary", "devs", "devdetails", "pools", "fans", "temps", "tunerstatus")
#: Message code of tunerstatus (not in our captures; unverified).
TUNERSTATUS_CODE = 203


def state(device: SimDevice) -> dict[str, Any]:
    """Return the unit's bosminer state: config text, schema (created on first use)."""
    bos = device.state.get("bosminer")
    if bos is None:
        schema = str(device.state.get("bos_schema", SCHEMA_NEW))
        target = round(
            float(device.unit.settings.get("power_limit_w") or device.profile.rated.power_w)
        )
        bos = device.state["bosminer"] = {
            "schema": schema,
            "text": default_config(device, schema, target),
        }
        device.state["bosminer_running"] = True
    return bos


def default_config(device: SimDevice, schema: str, target_w: int) -> str:
    """Render a bosminer.toml as the firmware writes it."""
    version = "2.0" if schema == SCHEMA_NEW else "1.2+"
    lines = [
        "[format]",
        f'version = "{version}"',
        f'model = "{device.model}"',
        f'generator = "{DESCRIPTION}"',
        f"timestamp = {device.when()}",
        "",
        "[[group]]",
        'name = "Default"',
        "quota = 1",
    ]
    for pool in device.pools:
        lines += [
            "",
            "[[group.pool]]",
            "enabled = true",
            f'url = "{pool.url}"',
            f'user = "{pool.user}"',
            f'password = "{pool.password}"',
        ]
    lines += ["", "[autotuning]", "enabled = true"]
    if schema == SCHEMA_NEW:
        lines += ['mode = "power_target"', f"power_target = {target_w}"]
    else:
        lines += [f"psu_power_limit = {target_w}"]
    return "\n".join(lines) + "\n"


def boot(device: SimDevice) -> None:
    """Power-on: bosminer reads its config and applies the power target (no restart)."""
    bos = state(device)
    target, _pools = parse_target(device, bos["text"])
    if target is not None:
        bounds = device.profile.power
        device.unit.set_power_limit(min(max(float(target), bounds.min_w), bounds.max_w))


class ConfigError(ValueError):
    """bosminer refuses to start with this configuration."""


def parse_target(device: SimDevice, text: str) -> tuple[int | None, list[tuple[str, str, str]]]:
    """Validate a bosminer.toml for this unit's schema; (power target or None, pools)."""
    schema = state(device)["schema"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"invalid TOML: {err}") from err
    tuning = data.get("autotuning", {})
    if not isinstance(tuning, dict):
        raise ConfigError("[autotuning] must be a table")
    if schema == SCHEMA_NEW and "psu_power_limit" in tuning:
        raise ConfigError("unknown field `psu_power_limit` in [autotuning]")
    if schema == SCHEMA_OLD and ("power_target" in tuning or "mode" in tuning):
        raise ConfigError("unknown field `power_target` in [autotuning]")
    target = None
    if tuning.get("enabled", False):
        raw = tuning.get("power_target" if schema == SCHEMA_NEW else "psu_power_limit")
        if raw is not None:
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                raise ConfigError("power target must be a number")
            target = int(raw)
    pools = []
    for group in data.get("group", []) or []:
        for pool in group.get("pool", []) or []:
            pools.append(
                (str(pool.get("url", "")), str(pool.get("user", "")), str(pool.get("password", "")))
            )
    return target, pools


def start(device: SimDevice) -> str | None:
    """``/etc/init.d/bosminer start``: apply the config; an error message if it fails."""
    from agent.simulator.servers.device import Pool

    bos = state(device)
    try:
        target, pools = parse_target(device, bos["text"])
    except ConfigError as err:
        device.state["bosminer_running"] = False
        device.changed()
        return str(err)
    bounds = device.profile.power
    watts = device.profile.rated.power_w if target is None else target
    device.unit.set_power_limit(min(max(float(watts), bounds.min_w), bounds.max_w))
    if pools:
        device.pools = [Pool(u, w, p) for u, w, p in pools]
    device.unit.set_mining(True)  # after a stop this restarts the process (physics ramp)
    device.state["bosminer_running"] = True
    device.changed()
    return None


def stop(device: SimDevice) -> None:
    """``/etc/init.d/bosminer stop``: the miner stops hashing and its API goes away."""
    state(device)
    device.state["bosminer_running"] = False
    device.unit.set_mining(False)
    device.changed()


# -- RPC ------------------------------------------------------------------------------------


def dispatch(device: SimDevice, request: Request, peer: str) -> Reply:
    """Answer one 4028 request like BOSminer."""
    state(device)
    when = device.when()
    names = cgminer.split_multi(request.command)
    reading = device.reading()
    if len(names) > 1:
        return Reply(obj=cgminer.multi({n: _single(device, n, reading, when) for n in names}))
    return Reply(obj=_single(device, names[0] if names else "", reading, when))


def _single(device: SimDevice, name: str, reading: Any, when: int) -> dict[str, Any]:
    if name == "version":
        item = {"API": API_VERSION, "BOSminer": BOSMINER_VERSION}
        return cgminer.envelope("VERSION", [item], 22, "BOSminer versions", DESCRIPTION, when)
    if name == "summary":
        return _summary(device, reading, when)
    if name == "devs":
        return _devs(device, reading, when)
    if name == "devdetails":
        return _devdetails(device, reading, when)
    if name == "pools":
        return _pools(device, reading, when)
    if name == "fans":
        speeds = fans(reading)
        fan_items: list[dict[str, Any]] = [
            {"FAN": i, "ID": i, "RPM": s, "Speed": 100 if s else 0} for i, s in enumerate(speeds)
        ]
        return cgminer.envelope(
            "FANS", fan_items, 202, f"{len(fan_items)} Fan(s)", DESCRIPTION, when
        )
    if name == "temps":
        items = [
            {
                "TEMP": i,
                "ID": int(b.index) + 1,
                "Board": round(float(b.board_temp_c), 1),
                "Chip": round(float(b.chip_temp_c), 1),
            }
            for i, b in enumerate(live_boards(reading))
        ]
        return cgminer.envelope("TEMPS", items, 201, f"{len(items)} Temp(s)", DESCRIPTION, when)
    if name == "tunerstatus":
        return _tunerstatus(device, reading, when)
    return cgminer.invalid_command(DESCRIPTION, when)


def _summary(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    el = device.elapsed(reading)
    c = counters(reading, el)
    item = {
        "Accepted": int(reading.accepted),
        "Best Share": c["best_share"],
        "Device Hardware%": c["hw_pct"],
        "Device Rejected%": c["rejected_pct"],
        "Difficulty Accepted": c["diff_accepted"],
        "Difficulty Rejected": c["diff_rejected"],
        "Difficulty Stale": 0.0,
        "Discarded": 0,
        "Elapsed": el,
        "Found Blocks": 0,
        "Get Failures": 0,
        "Getworks": c["getworks"],
        "Hardware Errors": int(reading.hw_errors),
        "Last getwork": when,
        "Local Work": c["local_work"],
        "MHS 15m": mhs(reading.hashrate_avg_ths),
        "MHS 1m": mhs(reading.hashrate_5s_ths),
        "MHS 24h": mhs(reading.hashrate_30m_ths),
        "MHS 5m": mhs(reading.hashrate_avg_ths),
        "MHS 5s": mhs(reading.hashrate_5s_ths),
        "MHS av": mhs(reading.hashrate_avg_ths),
        "Network Blocks": c["network_blocks"],
        "Pool Rejected%": c["rejected_pct"],
        "Pool Stale%": 0.0,
        "Rejected": int(reading.rejected),
        "Remote Failures": 0,
        "Stale": 0,
        "Total MH": c["total_mh"],
        "Utility": c["utility"],
        "Work Utility": c["work_utility"],
    }
    return cgminer.envelope("SUMMARY", [item], 11, "Summary", DESCRIPTION, when)


def _devs(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    el = device.elapsed(reading)
    n = max(device.profile.hardware.boards, 1)
    nominal = mhs(float(reading.expected_hashrate_ths) / n)
    items = []
    for b in live_boards(reading):
        rate = mhs(b.hashrate_ths)
        items.append(
            {
                "ASC": int(b.index),
                "Name": "BC5",
                "ID": int(b.index) + 1,
                "Enabled": "Y",
                "Status": "Alive",
                "Temperature": round(float(b.board_temp_c), 1),
                "MHS av": rate,
                "MHS 5s": rate,
                "MHS 1m": rate,
                "MHS 5m": rate,
                "MHS 15m": rate,
                "Nominal MHS": nominal,
                "Accepted": int(reading.accepted / n),
                "Rejected": int(reading.rejected / n),
                "Hardware Errors": int(b.hw_errors),
                "Diff1 Work": 0,
                "Device Elapsed": el,
            }
        )
    return cgminer.envelope("DEVS", items, 9, f"{len(items)} ASC(s)", DESCRIPTION, when)


def _devdetails(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    items = [
        {
            "DEVDETAILS": int(b.index),
            "Name": "BC5",
            "ID": int(b.index) + 1,
            "Driver": "BitmainBC5",
            "Kernel": "",
            "Model": device.model,
            "Device Path": "",
            "Chips": int(b.chips_ok),
            "Frequency": round(float(b.freq_mhz), 1),
            "Voltage": round(float(b.voltage_v), 2),
        }
        for b in live_boards(reading)
    ]
    return cgminer.envelope("DEVDETAILS", items, 69, "Device Details", DESCRIPTION, when)


def _pools(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    c = counters(reading, device.elapsed(reading))
    items = []
    for i, pool in enumerate(device.pools):
        first = i == 0
        items.append(
            {
                "Accepted": int(reading.accepted) if first else 0,
                "AsicBoost": True,
                "Best Share": c["best_share"] if first else 0,
                "Difficulty Accepted": c["diff_accepted"] if first else 0.0,
                "Difficulty Rejected": c["diff_rejected"] if first else 0.0,
                "Difficulty Stale": 0.0,
                "Get Failures": 0,
                "Getworks": c["getworks"] if first else 0,
                "Has GBT": False,
                "Has Stratum": True,
                "Last Share Time": when if first else 0,
                "Long Poll": "N",
                "POOL": i,
                "Pool Rejected%": c["rejected_pct"] if first else 0.0,
                "Pool Stale%": 0.0,
                "Priority": i,
                "Proxy": "",
                "Proxy Type": "",
                "Quota": 1,
                "Rejected": int(reading.rejected) if first else 0,
                "Remote Failures": 0,
                "Stale": 0,
                "Status": "Alive",
                "Stratum Active": first and bool(reading.is_mining),
                "URL": pool.url,
                "User": pool.user,
            }
        )
    return cgminer.envelope("POOLS", items, 7, f"{len(items)} Pool(s)", DESCRIPTION, when)


def _tunerstatus(device: SimDevice, reading: Any, when: int) -> dict[str, Any]:
    limit = round(float(reading.power_limit_w or device.profile.rated.power_w))
    power = reading.power_reported_w
    watts = round(float(power)) if power is not None else 0
    boards = live_boards(reading)
    per_board = watts // max(len(boards), 1)
    chains = [
        {
            "HashchainIndex": int(b.index) + 1,
            "Iteration": 0,
            "LoadedProfile": True,
            "PowerLimitWatt": limit // max(len(boards), 1),
            "ApproximatePowerConsumptionWatt": per_board,
            "StageElapsed": device.elapsed(reading),
            "Status": "Stable",
            "TunerRunning": False,
        }
        for b in boards
    ]
    item = {
        "ApproximateChainPowerConsumption": per_board * len(boards),
        "ApproximateMinerPowerConsumption": watts,
        "DynamicPowerScaling": "Disabled",
        "PowerLimit": limit,
        "TunerChainStatus": chains,
        "TunerMode": "PowerTarget",
    }
    return cgminer.envelope(
        "TUNERSTATUS", [item], TUNERSTATUS_CODE, "Tuner Status", DESCRIPTION, when
    )
