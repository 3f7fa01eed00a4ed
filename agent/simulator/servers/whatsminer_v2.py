"""Whatsminer API V2 on TCP 4028: reads, and the token + AES privileged flow (protocols.md §3.2).

Privileged flow, server side: ``get_token`` hands out (time, salt, newsalt); the client sends
``{"enc": 1, "data": base64(AES-256-ECB(json + NUL padding))}`` keyed by SHA-256 of the
md5-crypt of the admin password with ``salt``, carrying ``token`` = md5-crypt(hash + time,
newsalt). Replies to accepted commands are ``{"enc": base64(...)}``; refusals come back in
the clear with codes 23/45/135/136/137.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import string
from dataclasses import dataclass
from typing import Any

from agent.simulator.servers import cgminer, wmcrypto
from agent.simulator.servers import whatsminer_replies as wm
from agent.simulator.servers.cgminer import Reply, Request
from agent.simulator.servers.device import DEFAULT_LOGIN, Pool, SimDevice

#: Tokens one client IP may hold at once (vendor V2.0.5 doc, protocols.md §3.1).
MAX_TOKENS_PER_IP = 32
#: Token lifetime on the simulated clock (vendor doc: 30 minutes, §3.2).
TOKEN_TTL_S = 30 * 60.0
#: With respbefore=false the reply waits until the boards are powered down; a short delay
#: on the wall clock stands for that so clients can tell the two orders apart.
POWER_OFF_SETTLE_S = 0.2
#: Writes are refused while the factory password is set (protocols.md §3.4).
DEFAULT_PASSWORD = DEFAULT_LOGIN["whatsminer_v2"][1]
#: Message codes (vendor V2.0.5 doc, §3.2).
CODE_BAD_JSON = 23
CODE_DENIED = 45
CODE_CMD_ERROR = 132
CODE_BAD_TOKEN = 135
CODE_TOO_MANY_TOKENS = 136
CODE_BASE64 = 137
#: Commands that exist only from API 2.0.5 on (§3.3).
API_205_ONLY = frozenset(
    {"adjust_power_limit", "set_power_pct_v2", "adjust_upfreq_speed", "set_temp_offset"}
)
_SALT_CHARS = string.ascii_letters + string.digits


@dataclass
class Token:
    """One issued token."""

    time: str
    newsalt: str
    issued: float


def device_salt(device: SimDevice) -> str:
    """Return the unit's fixed md5-crypt salt (the salt of its stored password hash)."""
    salt = device.state.get("v2_salt")
    if salt is None:
        salt = device.state["v2_salt"] = "".join(device.rng.choices(_SALT_CHARS, k=8))
    return str(salt)


def _tokens(device: SimDevice, peer: str) -> list[Token]:
    table: dict[str, list[Token]] = device.state.setdefault("v2_tokens", {})
    now = device.now()
    live = [t for t in table.get(peer, []) if now - t.issued < TOKEN_TTL_S]
    table[peer] = live
    return live


def dispatch(device: SimDevice, request: Request, peer: str) -> Reply | Any:
    """Answer one 4028 request like btminer with API V2."""
    when = device.when()
    broken = device.faults.v2_broken
    if "enc" in request.body:
        return privileged(device, request.body, peer, broken)
    command = request.command
    names = cgminer.split_multi(command)
    if len(names) > 1:
        if any(n not in wm.CGMINER_STYLE for n in names):
            return Reply(obj=wm.invalid_cmd(when))
        reading = device.reading()
        return Reply(obj=cgminer.multi({n: _read(device, n, reading, when, broken) for n in names}))
    name = names[0] if names else ""
    if name == "get_token":
        return Reply(obj=get_token(device, peer, when))
    if name in READS:
        return Reply(obj=_read(device, name, device.reading(), when, broken))
    return Reply(obj=wm.invalid_cmd(when))


READS = (
    "summary",
    "devs",
    "edevs",
    "pools",
    "devdetails",
    "get_psu",
    "get_version",
    "get_miner_info",
    "status",
    "get_error_code",
)


def _read(device: SimDevice, name: str, reading: Any, when: int, broken: bool) -> dict[str, Any]:
    if name == "summary":
        return wm.summary(device, reading, when, broken)
    if name in ("devs", "edevs"):
        return wm.devs(device, reading, when, broken)
    if name == "pools":
        return wm.pools(device, reading, when)
    if name == "devdetails":
        return wm.devdetails(device, reading, when)
    if name == "get_psu":
        return wm.get_psu(device, reading, when)
    if name == "get_version":
        return wm.get_version(device, when)
    if name == "get_miner_info":
        return wm.get_miner_info(device, when)
    if name == "status":
        return wm.status(device, reading, when, broken)
    if name == "get_error_code":
        return wm.get_error_code(device, reading, when)
    return wm.invalid_cmd(when)


def get_token(device: SimDevice, peer: str, when: int) -> dict[str, Any]:
    """Issue a token: Code 134 with a 4-character time and 8-character salts (§3.2 step 1)."""
    tokens = _tokens(device, peer)
    if len(tokens) >= MAX_TOKENS_PER_IP:
        return wm.microbt(CODE_TOO_MANY_TOKENS, "token over max times", when, ok=False)
    time_str = str(when)[-4:]
    newsalt = "".join(device.rng.choices(_SALT_CHARS, k=8))
    tokens.append(Token(time_str, newsalt, device.now()))
    return wm.microbt(
        wm.CODE_TOKEN, {"time": time_str, "salt": device_salt(device), "newsalt": newsalt}, when
    )


def _plain_error(code: int, msg: str, when: int) -> Reply:
    return Reply(obj=wm.microbt(code, msg, when, ok=False))


def privileged(device: SimDevice, body: dict[str, Any], peer: str, broken: bool) -> Reply:
    """Check and run one encrypted command; refusals are unencrypted (§3.2)."""
    when = device.when()
    data = body.get("data")
    if str(body.get("enc")) != "1" or not isinstance(data, str):
        return _plain_error(CODE_BAD_JSON, "enc json load err", when)
    if broken:
        return Reply(obj=wm.invalid_cmd(when))
    if not device.write_api or device.password == DEFAULT_PASSWORD:
        return _plain_error(CODE_DENIED, "can't access write cmd", when)
    try:
        cipher = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return _plain_error(CODE_BASE64, "base64 decode error", when)
    salt = device_salt(device)
    key = wmcrypto.v2_aes_key(device.password, salt)
    try:
        plain = wmcrypto.strip_padding(wmcrypto.aes_ecb_decrypt(key, cipher))
        command = json.loads(plain.decode("utf-8"))
        if not isinstance(command, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError):
        # A wrong password yields a wrong key, hence undecodable bytes (§7: 135).
        return _plain_error(CODE_BAD_TOKEN, "check token error", when)
    sign = command.get("token")
    valid = [
        t
        for t in _tokens(device, peer)
        if sign == wmcrypto.v2_sign(device.password, salt, t.time, t.newsalt)
    ]
    if not valid:
        return _plain_error(CODE_BAD_TOKEN, "check token error", when)
    reply = run_command(device, command, when)
    encrypted = {"enc": base64.b64encode(wmcrypto.aes_ecb_encrypt(key, _json(reply.obj))).decode()}
    return Reply(obj=encrypted, before=reply.before, after=reply.after)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _ok(when: int) -> dict[str, Any]:
    return wm.microbt(wm.CODE_OK, "API command OK", when)


def _error(when: int, msg: str = "command error") -> dict[str, Any]:
    return wm.microbt(CODE_CMD_ERROR, msg, when, ok=False)


def run_command(device: SimDevice, command: dict[str, Any], when: int) -> Reply:
    """Execute one authenticated privileged command."""
    name = str(command.get("cmd", command.get("command", "")))
    unit = device.unit
    if name in API_205_ONLY and not wm.api_at_least(device, "2.0.5"):
        return Reply(obj=wm.invalid_cmd(when))
    knobs = device.profile.firmware.get("whatsminer")
    try:
        if name == "adjust_power_limit":
            watts = int(float(command["power_limit"]))
            bounds = device.profile.power
            if not bounds.min_w <= watts <= bounds.max_w:
                return Reply(obj=_error(when))
            return Reply(obj=_ok(when), after=_then(device, lambda: unit.set_power_limit(watts)))
        if name in ("set_power_pct", "set_power_pct_v2"):
            pct = int(float(command["percent"]))
            if not 0 < pct <= 100:
                return Reply(obj=_error(when))
            unit.set_power_percent(pct)
            return Reply(obj=_ok(when))
        if name in ("set_low_power", "set_normal_power", "set_high_power"):
            mode = name[len("set_") : -len("_power")]
            if knobs is not None and knobs.power_modes and mode not in knobs.power_modes:
                return Reply(obj=_error(when))
            unit.set_power_mode(mode)
            return Reply(obj=_ok(when))
        if name == "power_off":
            action = _then(device, lambda: unit.set_mining(False))
            if str(command.get("respbefore", "true")).lower() == "false":
                return Reply(obj=_ok(when), before=_settled(action))
            return Reply(obj=_ok(when), after=action)
        if name == "power_on":
            return Reply(obj=_ok(when), after=_then(device, lambda: unit.set_mining(True)))
        if name == "reboot":
            return Reply(obj=_ok(when), after=_then(device, unit.reboot))
        if name == "restart_btminer":
            return Reply(obj=_ok(when), after=device.restart_process)
        if name == "set_led":
            device.led_on = str(command.get("param", "")) != "auto"
            return Reply(obj=_ok(when))
        if name == "update_pools":
            pools = []
            for i in (1, 2, 3):
                url = command.get(f"pool{i}")
                if url:
                    pools.append(
                        Pool(
                            str(url),
                            str(command.get(f"worker{i}", "")),
                            str(command.get(f"passwd{i}", "")),
                        )
                    )
            if not pools:
                return Reply(obj=_error(when))
            device.pools = pools
            return Reply(obj=_ok(when))
    except (KeyError, TypeError, ValueError):
        return Reply(obj=_error(when))
    return Reply(obj=wm.invalid_cmd(when))


def _then(device: SimDevice, action: Any) -> Any:
    """Wrap a physics action so the listener supervisor hears about it."""

    def run() -> None:
        action()
        device.changed()

    return run


def _settled(action: Any) -> Any:
    async def run() -> None:
        action()
        await asyncio.sleep(POWER_OFF_SETTLE_S)

    return run
