"""Server side of the btminer V2 privileged API, written from protocols.md §3.2 for tests.

Deliberately independent of the agent's client code: md5-crypt comes from passlib, AES
from ``cryptography`` directly. Tokens expire after ``token_ttl_s``; one client may hold
``max_tokens`` at once; write access can be disabled (Code 45).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from passlib.hash import md5_crypt

SALT = "BQ5hoXV9"  # the device's fixed password salt (8 chars, as captured replies show)


def _hash_part(password: str, salt: str) -> str:
    return md5_crypt.using(salt=salt).hash(password).split("$")[3]


def _flat(status: str, code: int, msg: Any) -> dict[str, Any]:
    return {"STATUS": status, "When": int(time.time()), "Code": code, "Msg": msg, "Description": ""}


class V2Privileged:
    """Token issuing, envelope verification and a little state for privileged commands."""

    def __init__(
        self,
        password: str,
        *,
        token_ttl_s: float = 1800.0,
        max_tokens: int = 32,
        write_enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.password = password
        self.clock = clock  # token ages; a test may pass a hand-advanced clock
        self.token_ttl_s = token_ttl_s
        self.max_tokens = max_tokens
        self.write_enabled = write_enabled
        self.tokens: dict[str, float] = {}  # sign -> issued (monotonic)
        self.tokens_issued = 0
        self.executed: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {
            "power_limit": 3300,
            "mode": "normal",
            "mineroff": False,
            "percent": 100,
            "pools": [],
        }

    def _key(self) -> bytes:
        return hashlib.sha256(_hash_part(self.password, SALT).encode()).digest()

    def invalidate_tokens(self) -> None:
        """Forget every issued token (as a btminer restart does)."""
        self.tokens.clear()

    def get_token(self) -> bytes:
        """Answer `get_token` with time/salt/newsalt and remember the sign it implies."""
        now = self.clock()
        self.tokens = {s: t for s, t in self.tokens.items() if now - t < self.token_ttl_s}
        if len(self.tokens) >= self.max_tokens:
            return json.dumps(_flat("E", 136, "token over max times")).encode()
        when = int(time.time())
        token_time = str(when)[-4:]
        newsalt = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(8))
        sign = _hash_part(_hash_part(self.password, SALT) + token_time, newsalt)
        self.tokens[sign] = now
        self.tokens_issued += 1
        reply = _flat("S", 134, {"time": token_time, "salt": SALT, "newsalt": newsalt})
        return json.dumps(reply).encode()

    def handle_encrypted(self, request: dict[str, Any]) -> bytes:
        """Decrypt, verify the sign, run the command, encrypt the reply."""
        key = self._key()
        try:
            raw = base64.b64decode(request["data"])
        except (KeyError, ValueError):
            return json.dumps(_flat("E", 137, "base64 decode error")).encode()
        dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
        plain = (dec.update(raw) + dec.finalize()).rstrip(b"\x00")
        try:
            command = json.loads(plain)
        except ValueError:
            return json.dumps(_flat("E", 23, "enc json load err")).encode()
        issued = self.tokens.get(command.get("token", ""))
        if issued is None or self.clock() - issued >= self.token_ttl_s:
            return json.dumps(_flat("E", 135, "check token err")).encode()
        if not self.write_enabled:
            return json.dumps(_flat("E", 45, "can't access write cmd")).encode()
        self.executed.append(command)
        reply = self._execute(command)
        enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        body = json.dumps(reply).encode()
        body += b"\x00" * (-len(body) % 16)
        return json.dumps(
            {"enc": base64.b64encode(enc.update(body) + enc.finalize()).decode()}
        ).encode()

    def _execute(self, command: dict[str, Any]) -> dict[str, Any]:
        cmd = command.get("cmd")
        s = self.state
        if cmd == "adjust_power_limit":
            s["power_limit"] = int(command["power_limit"])
        elif cmd in ("set_power_pct", "set_power_pct_v2"):
            s["percent"] = int(command["percent"])
        elif cmd in ("set_low_power", "set_normal_power", "set_high_power"):
            s["mode"] = cmd.split("_")[1]
        elif cmd == "power_off":
            s["mineroff"] = True
        elif cmd == "power_on":
            s["mineroff"] = False
        elif cmd == "update_pools":
            s["pools"] = [command.get(f"pool{i}") for i in (1, 2, 3) if command.get(f"pool{i}")]
        else:
            return _flat("E", 14, "invalid cmd")
        return _flat("S", 131, "API command OK")
