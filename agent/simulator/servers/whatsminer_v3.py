"""Whatsminer API V3 on TCP 4433 (firmware after 2024-11), protocols.md §3.5.

Framing: every message both ways is a 4-byte little-endian length plus that many bytes of
JSON; connections persist; four zero bytes are a heartbeat; idle connections close after
300 s; at most 10 clients. Writes carry ``ts``/``account``/``token`` where token = first 8
Base64 chars of SHA-256(cmd + password + salt + ts); the full digest is the AES key for
commands with encrypted params (``set.miner.pools``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import string
import time
from typing import Any

import structlog

from agent.simulator.servers import whatsminer_replies as wm
from agent.simulator.servers import wire, wmcrypto
from agent.simulator.servers.device import DEFAULT_LOGIN, Pool, SimDevice
from agent.simulator.servers.readings import fans, live_boards, mean
from agent.simulator.unit import UnsupportedControl

log = structlog.get_logger(__name__)

#: Vendor V3 doc: idle connections are closed after 300 s (protocols.md §3.5).
IDLE_CLOSE_S = 300.0
#: Vendor V3 doc: at most 10 concurrent clients.
MAX_CLIENTS = 10
#: Largest request frame accepted; real requests are < 1 KiB.
MAX_FRAME_BYTES = 64 * 1024
#: Body bytes must follow their length header promptly.
FRAME_BODY_TIMEOUT_S = 10.0
#: Response codes (V3 doc): 0 ok, -1 fail, -2 invalid command, -3 invalid json item,
#: -4 no permission. Message texts are ours (unverified).
OK, FAIL, INVALID_COMMAND, INVALID_ITEM, NO_PERMISSION = 0, -1, -2, -3, -4
_MSG = {
    FAIL: "fail",
    INVALID_COMMAND: "invalid command",
    INVALID_ITEM: "invalid json item",
    NO_PERMISSION: "no permission",
}
#: Largest distance of a write's ``ts`` from the unit's clock, s; a staler (replayed) or
#: future stamp is refused with code -1. Engineering assumption: neither the V3 doc excerpt
#: (protocols.md §3.5) nor pyasic/asic-rs give a window; clients stamp ``ts`` with their own
#: clock (asic-rs ``Utc::now()``, the agent ``time.time()``), which NTP keeps within seconds
#: of the unit's. Five minutes is the usual clock-skew allowance (Kerberos' default).
TS_WINDOW_S = 300.0
#: Accounts of API V3 (``admin`` is deprecated, §3.5); the sim authenticates ``super``.
WRITE_ACCOUNT = "super"
DEFAULT_PASSWORD = DEFAULT_LOGIN["whatsminer_v3"][1]
#: V3 API version of the captured unit (fixtures whatsminer/v3/get_device_info.json).
API_V3 = "3.0.2"
#: PSU identity of the captured V3 unit.
PSU_MODEL = "P221B"
PSU_HW = "RT0159"
PSU_SW = "230224.220429"
#: Hash-board code and chip data of the captured unit (copied as-is: identifiers, not data).
HASH_BOARD = "K40"
_SALT_CHARS = string.ascii_letters + string.digits
#: Status sections ``get.miner.status`` can join with ``+``.
STATUS_SECTIONS = ("summary", "edevs", "pools")
DEVICE_SECTIONS = ("network", "miner", "power", "system", "salt", "error-code")


def device_salt(device: SimDevice) -> str:
    """Return the unit's V3 salt (``get.device.info`` ``salt``)."""
    salt = device.state.get("v3_salt")
    if salt is None:
        salt = device.state["v3_salt"] = "".join(device.rng.choices(_SALT_CHARS, k=8))
    return str(salt)


def frame(payload: bytes) -> bytes:
    """Length-prefix one message."""
    return len(payload).to_bytes(4, "little") + payload


async def serve_connection(
    device: SimDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one persistent V3 connection."""
    clients = int(device.state.get("v3_clients", 0))
    if clients >= MAX_CLIENTS or not device.endpoint_up("v3"):
        wire.reset(writer)
        return
    device.state["v3_clients"] = clients + 1
    try:
        while True:
            try:
                async with asyncio.timeout(IDLE_CLOSE_S):
                    header = await reader.readexactly(4)
            except (TimeoutError, asyncio.IncompleteReadError):
                return
            length = int.from_bytes(header, "little")
            if length == 0:
                continue  # heartbeat
            if length > MAX_FRAME_BYTES:
                return
            async with asyncio.timeout(FRAME_BODY_TIMEOUT_S):
                body = await reader.readexactly(length)
            if not device.endpoint_up("v3"):
                wire.reset(writer)  # btminer restarted under this connection: it is gone
                device.changed()
                return
            if device.faults.connection_for("v3") == "hang":
                await wire.wait_for_eof(reader)
                return
            reply, after = handle(device, body)
            data = frame(wire.render(reply, device.faults.quirks - {"trailing_nul"}))
            if not await wire.send_reply(writer, data, device.faults, "v3", device.rng):
                return
            if after is not None:
                after()
    except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError) as err:
        log.debug("v3_peer_gone", unit=device.unit_id, error=str(err))
    finally:
        device.state["v3_clients"] = max(0, int(device.state.get("v3_clients", 1)) - 1)
        await wire.close(writer)


def _reply(device: SimDevice, cmd: str, code: int, msg: Any = None) -> dict[str, Any]:
    return {
        "code": code,
        "when": device.when(),
        "msg": _MSG.get(code, "ok") if msg is None else msg,
        "desc": cmd,
    }


def handle(device: SimDevice, body: bytes) -> tuple[dict[str, Any], Any]:
    """Answer one request frame; returns (reply, action to run after sending)."""
    try:
        request = json.loads(body.decode("utf-8"))
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            raise ValueError("no cmd")
    except (ValueError, UnicodeDecodeError):
        return _reply(device, "", INVALID_ITEM), None
    cmd = request["cmd"]
    param = request.get("param")
    if cmd.startswith("set."):
        return write(device, cmd, request)
    if cmd == "get.device.info":
        return _reply(device, cmd, OK, device_info(device, param)), None
    if cmd == "get.miner.status":
        names = [p for p in str(param or "summary").split("+") if p]
        if any(n not in STATUS_SECTIONS for n in names):
            return _reply(device, cmd, INVALID_ITEM), None
        reading = device.reading()
        return _reply(device, cmd, OK, {n: _status(device, n, reading) for n in names}), None
    if cmd == "get.miner.setting":
        return _reply(device, cmd, OK, miner_setting(device)), None
    return _reply(device, cmd, INVALID_COMMAND), None


def device_info(device: SimDevice, param: Any) -> dict[str, Any]:
    """``get.device.info``, optionally filtered by ``param`` (e.g. "salt", "miner,system")."""
    reading = device.reading()
    ident = device.identity
    settings = device.unit.settings
    boards = device.profile.hardware.boards
    codes = wm.error_codes(device, reading)
    sections: dict[str, Any] = {
        "network": {
            "ip": device.host,
            "proto": "dhcp",
            "netmask": "255.0.0.0",
            "dns": "",
            "gateway": "",
            "mac": ident.mac,
            "hostname": ident.hostname,
        },
        "miner": {
            "working": "true" if settings.get("mining", True) else "false",
            "type": device.model,
            "hash-board": HASH_BOARD,
            "miner-sn": ident.serial,
            "board-num": str(boards),
            "power-limit-set": str(round(float(reading.power_limit_w or 0))),
            "hash-percent": "0",
            "fast-boot": "disable",
            "pool-strategy": "FAILOVER",
            **{f"pcbsn{i}": sn for i, sn in enumerate(ident.board_serials)},
        },
        "power": {
            "type": PSU_MODEL,
            "mode": "1",
            "hwversion": PSU_HW,
            "swversion": PSU_SW,
            "model": PSU_MODEL,
            "sn": ident.psu_serial,
            "vendor": "1",
            "fanspeed": max(fans(reading), default=0),
        },
        "system": {
            "api": API_V3,
            "platform": wm.PLATFORM,
            "fwversion": wm.FW_VERSION_V3,
            "control-board-version": wm.CONTROL_BOARD,
            "ledstatus": "manual" if device.led_on else "auto",
            "apiswitch": "1" if device.write_api else "0",
        },
        "salt": device_salt(device),
    }
    if not settings.get("mining", True) and device.state.get("v3_service") == "stop":
        sections["error-code"] = "btminer process is down err"
    elif codes:
        sections["error-code"] = [{code: t, "reason": f"error {code}"} for code, t in codes]
    if param is None or param == "":
        return sections
    wanted = [p.strip() for p in str(param).replace("+", ",").split(",") if p.strip()]
    return {k: sections[k] for k in wanted if k in sections}


def _status(device: SimDevice, name: str, reading: Any) -> Any:
    if name == "summary":
        return summary(device, reading)
    if name == "edevs":
        return edevs(device, reading)
    return [
        {
            "url": p.url,
            "account": p.user,
            "status": "alive",
            "stratum-active": i == 0 and bool(reading.is_mining),
            "pool-priority": i,
        }
        for i, p in enumerate(device.pools)
    ]


def summary(device: SimDevice, reading: Any) -> dict[str, Any]:
    """``get.miner.status`` summary (fixtures whatsminer/v3): TH/s, W, °C, RPM."""
    boards = live_boards(reading)
    chips = [float(b.chip_temp_c) for b in boards]
    speeds = fans(reading)
    power = reading.power_reported_w
    power = float(power) if power is not None else 0.0
    hashrate = float(reading.hashrate_avg_ths or 0.0)
    return {
        "elapsed": device.elapsed(reading),
        "bootup-time": int(reading.elapsed_s),
        "freq-avg": round(mean([float(b.freq_mhz) for b in boards])),
        "factory-hash": round(float(reading.expected_hashrate_ths), 3),
        "hash-average": round(hashrate, 3),
        "hash-1min": round(float(reading.hashrate_5s_ths or 0.0), 3),
        "hash-15min": round(float(reading.hashrate_30m_ths or 0.0), 3),
        "hash-realtime": round(float(reading.hashrate_5s_ths or 0.0), 3),
        "power-rate": round(power / hashrate, 1) if hashrate > 0 else 0.0,
        "power-5min": round(power, 1),
        "power-realtime": round(power, 1),
        "power-limit": round(float(reading.power_limit_w or 0)),
        "environment-temperature": round(float(reading.env_temp_c), 1),
        "board-temperature": [round(float(b.board_temp_c), 1) for b in boards],
        "chip-temp-min": round(min(chips, default=0.0), 1),
        "chip-temp-avg": round(mean(chips), 1),
        "chip-temp-max": round(max(chips, default=0.0), 1),
        "up-freq-finish": 1 if reading.is_mining else 0,
        "fan-speed-in": speeds[0] if speeds else 0,
        "fan-speed-out": speeds[1] if len(speeds) > 1 else 0,
        "Debug": "",
    }


def edevs(device: SimDevice, reading: Any) -> list[dict[str, Any]]:
    """``get.miner.status`` edevs: one entry per live board."""
    n = max(device.profile.hardware.boards, 1)
    return [
        {
            "id": int(b.index),
            "status": "alive",
            "freq": round(float(b.freq_mhz), 1),
            "effective-chips": int(b.chips_ok),
            "factory-hash": round(float(reading.expected_hashrate_ths) / n, 2),
            "hash-average": round(float(b.hashrate_ths), 2),
            "hash-realtime": round(float(b.hashrate_ths), 2),
            "chip-temp-min": round(float(b.inlet_temp_c), 1),
            "chip-temp-avg": round(float(b.chip_temp_c), 1),
            "chip-temp-max": round(float(b.chip_temp_c) + 5.0, 1),
        }
        for b in live_boards(reading)
    ]


def miner_setting(device: SimDevice) -> dict[str, Any]:
    """``get.miner.setting`` (shape unverified beyond ``power-mode``, §3.5)."""
    settings = device.unit.settings
    return {
        "power-mode": str(settings.get("power_mode", "normal")),
        "power-limit": round(float(settings.get("power_limit_w") or 0)),
        "fast-boot": "disable",
    }


# -- writes ---------------------------------------------------------------------------------


def write(device: SimDevice, cmd: str, request: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Authenticate and run one ``set.*`` command."""
    ts, account, token = request.get("ts"), request.get("account"), request.get("token")
    stamp = _epoch(ts)
    if stamp is None or not isinstance(account, str) or not isinstance(token, str):
        return _reply(device, cmd, INVALID_ITEM), None
    if not device.write_api or device.password == DEFAULT_PASSWORD:
        return _reply(device, cmd, NO_PERMISSION), None
    salt = device_salt(device)
    expected = wmcrypto.v3_token(cmd, device.password, salt, str(ts))
    if account != WRITE_ACCOUNT or token != expected:
        return _reply(device, cmd, NO_PERMISSION), None
    if not ts_fresh(device, stamp):
        return _reply(device, cmd, FAIL, "ts out of range"), None
    param = request.get("param")
    try:
        return _run(device, cmd, param, wmcrypto.v3_digest(cmd, device.password, salt, str(ts)))
    except UnsupportedControl:
        return _reply(device, cmd, FAIL), None  # the firmware cannot do it on this model
    except (KeyError, TypeError, ValueError):
        return _reply(device, cmd, INVALID_ITEM), None


def _epoch(ts: Any) -> int | None:
    """Return a write's ``ts`` as epoch seconds (an integer or a string of digits), else None."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int):
        return ts
    if isinstance(ts, str) and ts.isascii() and ts.isdigit():
        return int(ts)
    return None


def ts_fresh(device: SimDevice, stamp: int) -> bool:
    """Whether ``stamp`` lies within TS_WINDOW_S of the unit's clock.

    A real unit and its clients share NTP time. The simulated clock runs at a speed factor,
    or stands still in tests, so the unit's clock is either the simulated one (what ``when``
    shows) or the host's (what every real client stamps): a stamp near either is fresh.
    """
    return any(abs(stamp - now) <= TS_WINDOW_S for now in (device.now(), time.time()))


def _run(device: SimDevice, cmd: str, param: Any, key: bytes) -> tuple[dict[str, Any], Any]:
    unit = device.unit
    knobs = device.profile.firmware.get("whatsminer")

    def then(action: Any) -> Any:
        def run() -> None:
            action()
            device.changed()

        return run

    if cmd == "set.miner.power_limit":
        watts = int(float(param))
        bounds = device.profile.power
        if not bounds.min_w <= watts <= min(99999, bounds.max_w):
            return _reply(device, cmd, INVALID_ITEM), None
        return _reply(device, cmd, OK), then(lambda: unit.set_power_limit(watts))
    if cmd == "set.miner.power_percent":
        pct = int(float(param["percent"] if isinstance(param, dict) else param))
        if not 0 < pct <= 100:
            return _reply(device, cmd, INVALID_ITEM), None
        unit.set_power_percent(pct)
        return _reply(device, cmd, OK), None
    if cmd == "set.miner.power_mode":
        mode = str(param)
        if mode not in ("low", "normal", "high") or (
            knobs is not None and knobs.power_modes and mode not in knobs.power_modes
        ):
            return _reply(device, cmd, INVALID_ITEM), None
        unit.set_power_mode(mode)
        return _reply(device, cmd, OK), None
    if cmd == "set.miner.service":
        action = str(param)
        if action == "stop":
            device.state["v3_service"] = "stop"
            return _reply(device, cmd, OK), then(lambda: unit.set_mining(False))
        if action == "start":
            device.state["v3_service"] = "start"
            return _reply(device, cmd, OK), then(lambda: unit.set_mining(True))
        if action == "restart":
            device.state["v3_service"] = "start"
            return _reply(device, cmd, OK), then(lambda: _restart_service(unit))
        if action in ("enable", "disable"):
            device.state["v3_service_enabled"] = action == "enable"
            return _reply(device, cmd, OK), None
        return _reply(device, cmd, INVALID_ITEM), None
    if cmd == "set.system.reboot":
        return _reply(device, cmd, OK), then(unit.reboot)
    if cmd == "set.system.led":
        device.led_on = param != "auto"
        return _reply(device, cmd, OK), None
    if cmd == "set.miner.pools":
        device.pools = _decrypt_pools(param, key)
        return _reply(device, cmd, OK), None
    return _reply(device, cmd, INVALID_COMMAND), None


def _restart_service(unit: Any) -> None:
    """``set.miner.service restart``: a stopped btminer starts, a running one restarts.

    Either way the process goes down and ramps back (``SimUnit`` restart physics).
    """
    if unit.settings.get("mining", True):
        unit.restart_process()
    else:
        unit.set_mining(True)


def _decrypt_pools(param: Any, key: bytes) -> list[Pool]:
    """Decrypt ``set.miner.pools`` params: Base64(AES-256-ECB(JSON list)), key = digest."""
    try:
        cipher = base64.b64decode(str(param).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as err:
        raise ValueError("param is not base64") from err
    items = json.loads(wmcrypto.strip_padding(wmcrypto.aes_ecb_decrypt(key, cipher)))
    if not isinstance(items, list) or not items:
        raise ValueError("pools must be a non-empty list")
    return [Pool(str(p["pool"]), str(p.get("worker", "")), str(p.get("passwd", ""))) for p in items]
