"""Whatsminer btminer API V3 on TCP 4433 (firmware newer than 2024-11), protocols.md §3.5.

Reads: ``{"cmd": "get.<area>.<item>", "param": ...}``. Writes (``set.*``) add ``ts``,
``account`` and ``token`` = the first 8 characters of base64(SHA-256(cmd + password + salt +
ts)); the salt comes from ``get.device.info`` with param ``"salt"``. For commands whose
parameters are secret, the param JSON is AES-256-ECB encrypted with the full digest as key.
Replies are ``{"code", "when", "msg", "desc"}`` with code 0 for success.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from typing import Any

import structlog

from agent.errors import (
    MinerAuthError,
    MinerCommandError,
    MinerConnectionError,
    MinerError,
    MinerResponseError,
)
from agent.protocols import quirks
from agent.protocols.base import (
    BaseProtocol,
    RetryPolicy,
    SessionExpiredError,
    coded_error,
    never_sent,
)
from agent.protocols.btminer_v2 import encrypt
from agent.transports.tcp_framed import TcpFramedTransport

log = structlog.get_logger(__name__)

#: V3 accounts are `super` and `user1..3`; `admin` is deprecated (protocols.md §3.5).
DEFAULT_ACCOUNT = "super"
#: Token length: the first 8 base64 characters of the digest.
TOKEN_CHARS = 8
#: Commands whose `param` travels encrypted (V3 doc). Padding follows asic-rs (NUL bytes,
#: as in V2); one third-party V3 tool uses PKCS#7 instead — unverified on hardware.
ENCRYPTED_PARAM_COMMANDS = frozenset({"set.miner.pools", "set.user.change_passwd"})

#: V3 reply codes (protocols.md §3.5) → (error type, meaning).
CODE_OK = 0
CODE_NO_PERMISSION = -4
CODE_ERRORS: dict[int, tuple[type[MinerError], str]] = {
    -1: (MinerCommandError, "command failed"),
    -2: (MinerCommandError, "invalid command"),
    -3: (MinerCommandError, "invalid JSON item"),
    -4: (
        MinerAuthError,
        "no permission: enable the write API and set a non-default password, "
        "or check the account password",
    ),
    -5: (MinerCommandError, "out of memory"),
}


def v3_token(cmd: str, password: str, salt: str, ts: int) -> tuple[str, bytes]:
    """Return ``(token, digest)`` for one V3 write; the digest doubles as the AES key."""
    digest = hashlib.sha256(f"{cmd}{password}{salt}{ts}".encode()).digest()
    return base64.b64encode(digest).decode("ascii")[:TOKEN_CHARS], digest


class BtminerV3Protocol(BaseProtocol):
    """Whatsminer API V3: framed JSON reads and salted-token writes on one connection."""

    def __init__(
        self,
        transport: TcpFramedTransport,
        password: str,
        account: str = DEFAULT_ACCOUNT,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(transport.host, retry)
        self.transport = transport
        self.account = account
        self._password = password
        self._salt: str | None = None
        self._salt_lock = asyncio.Lock()

    async def command(self, cmd: str, param: Any = None) -> dict[str, Any]:
        """Run one read command and return the whole reply after the code check."""
        request: dict[str, Any] = {"cmd": cmd}
        if param is not None:
            request["param"] = param
        payload = json.dumps(request, separators=(",", ":")).encode()

        async def op() -> dict[str, Any]:
            return self.check_code(await self.exchange(payload), cmd)

        return await self.query(op, what=cmd)

    async def write(self, cmd: str, param: Any = None) -> dict[str, Any]:
        """Run one ``set.*`` command; never re-sent once it may have reached the miner."""
        return await self.query(lambda: self._write_once(cmd, param), what=cmd, idempotent=False)

    async def exchange(self, payload: bytes) -> dict[str, Any]:
        """Send one frame and decode the reply (no code check, no retry)."""
        return quirks.decode(await self.transport.send(payload), self.host).data

    async def reset_session(self) -> None:
        """Forget the cached salt (it changes if the password or device is reset)."""
        self._salt = None

    def check_code(self, reply: dict[str, Any], cmd: str) -> dict[str, Any]:
        """Return ``reply`` if ``code`` is 0, else raise the typed error for its code."""
        code = reply.get("code")
        if code == CODE_OK:
            return reply
        if not isinstance(code, int):
            raise MinerResponseError(self.host, f"{cmd}: reply has no integer code", str(reply))
        msg = reply.get("msg")
        text = msg if isinstance(msg, str) else json.dumps(msg)
        raise coded_error(
            self.host, cmd, code, CODE_ERRORS.get(code, (MinerCommandError, "error")), text
        )

    async def _write_once(self, cmd: str, param: Any) -> dict[str, Any]:
        salt, cached = await self._ensure_salt()
        ts = int(time.time())
        token, digest = v3_token(cmd, self._password, salt, ts)
        request: dict[str, Any] = {"cmd": cmd, "ts": ts, "account": self.account, "token": token}
        if param is not None:
            if cmd in ENCRYPTED_PARAM_COMMANDS:
                param = encrypt(digest, json.dumps(param, separators=(",", ":")).encode())
            request["param"] = param
        reply = await self.exchange(json.dumps(request, separators=(",", ":")).encode())
        try:
            return self.check_code(reply, cmd)
        except MinerAuthError as err:
            if cached and reply.get("code") == CODE_NO_PERMISSION:
                raise SessionExpiredError(self.host, f"{cmd}: refused with cached salt") from err
            raise

    async def _ensure_salt(self) -> tuple[str, bool]:
        async with self._salt_lock:
            if self._salt is not None:
                return self._salt, True
            request = json.dumps({"cmd": "get.device.info", "param": "salt"}).encode()
            try:
                reply = self.check_code(await self.exchange(request), "get.device.info")
            except MinerConnectionError as err:
                raise never_sent(self.host, "salt", err) from err
            msg = reply.get("msg")
            salt = msg.get("salt") if isinstance(msg, dict) else None
            if not isinstance(salt, str) or not salt:
                raise MinerResponseError(self.host, "get.device.info: no salt", str(reply))
            self._salt = salt
            return salt, False
