"""Whatsminer btminer API V2 on TCP 4028: reads, and privileged writes with token + AES.

Privileged procedure (protocols.md §3.2): ``get_token`` → ``{time, salt, newsalt}``; key =
SHA-256(md5crypt(password, salt) hash part) used as an AES-256-ECB key; sign =
md5crypt(hash part + time, newsalt) hash part; the command JSON with ``token: sign`` is
NUL-padded, encrypted, base64-encoded and sent as ``{"enc": 1, "data": ...}``. Replies are
``{"enc": base64}`` or an unencrypted error. A token lives 30 minutes and one IP may hold 32.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.errors import (
    MinerAuthError,
    MinerCommandError,
    MinerConnectionError,
    MinerError,
    MinerResponseError,
)
from agent.protocols import quirks
from agent.protocols.base import RetryPolicy, SessionExpiredError, coded_error, never_sent
from agent.protocols.cgminer import CgminerProtocol, Replies
from agent.protocols.md5crypt import md5_crypt_hash_part
from agent.transports.tcp_json import TcpJsonTransport

log = structlog.get_logger(__name__)

#: Vendor doc V2.0.5: a token stays valid for 30 minutes.
TOKEN_LIFETIME_S = 30 * 60.0
#: Fetch a fresh token this long before the vendor expiry, so a command sent with a token
#: never races its expiry on the miner's clock.
TOKEN_REFRESH_MARGIN_S = 60.0
#: Vendor doc V2.0.5: one client IP may hold at most 32 tokens (Code 136 beyond that).
MAX_TOKENS_PER_LIFETIME = 32
#: AES block size; btminer pads plaintext with NUL bytes to a multiple of it.
AES_BLOCK = 16

#: btminer message codes (vendor doc V2.0.5, protocols.md §3.2) → (error type, meaning).
CODE_OK = 131
CODE_TOKEN_OK = 134
CODE_ERRORS: dict[int, tuple[type[MinerError], str]] = {
    14: (MinerCommandError, "invalid API command or data"),
    23: (MinerCommandError, "invalid JSON message"),
    45: (
        MinerAuthError,
        "permission denied: enable the write API and change the default "
        "password with WhatsMinerTool",
    ),
    132: (MinerCommandError, "command error"),
    135: (MinerAuthError, "token check failed (wrong password?)"),
    136: (MinerCommandError, "token limit reached (32 per IP per 30 min)"),
    137: (MinerCommandError, "base64 decode error"),
}
#: Codes that, answering an encrypted command, mean the miner could not decrypt or verify
#: it: the key or sign was wrong — a stale token, or a wrong password.
CRYPTO_REJECTION_CODES = frozenset({23, 135})
#: Replies whose Msg says the write API is locked (pyasic special-cases this text).
WRITE_LOCKED_MSG = "can't access write cmd"
#: Commands btminer refuses inside a `+` multi-command (protocols.md §3.1).
NOT_COMBINABLE_PREFIX = "get_"
NOT_COMBINABLE = frozenset({"status"})


@dataclass(frozen=True, slots=True)
class Token:
    """Derived credentials for privileged commands; secrets never appear in a repr."""

    sign: str = field(repr=False)
    aes_key: bytes = field(repr=False)
    fetched_at: float


def derive_token(password: str, salt: str, newsalt: str, token_time: str) -> tuple[str, bytes]:
    """Return ``(sign, aes_key)`` for one ``get_token`` answer (protocols.md §3.2 steps 2-4)."""
    passwd_md5 = md5_crypt_hash_part(password, salt)
    aes_key = hashlib.sha256(passwd_md5.encode()).digest()
    sign = md5_crypt_hash_part(passwd_md5 + token_time, newsalt)
    return sign, aes_key


def encrypt(aes_key: bytes, plaintext: bytes) -> str:
    """NUL-pad to the AES block, AES-256-ECB encrypt, base64 encode (no newlines)."""
    padded = plaintext + b"\x00" * (-len(plaintext) % AES_BLOCK)
    enc = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()  # noqa: S305 - vendor protocol
    return base64.b64encode(enc.update(padded) + enc.finalize()).decode("ascii")


def decrypt(aes_key: bytes, data: str) -> bytes:
    """Inverse of :func:`encrypt` with trailing NULs stripped; ``ValueError`` if malformed."""
    try:
        raw = base64.b64decode(data, validate=False)
    except binascii.Error as err:
        raise ValueError(f"not base64: {err}") from err
    if not raw or len(raw) % AES_BLOCK:
        raise ValueError(f"ciphertext length {len(raw)} is not a multiple of {AES_BLOCK}")
    dec = Cipher(algorithms.AES(aes_key), modes.ECB()).decryptor()  # noqa: S305
    return (dec.update(raw) + dec.finalize()).rstrip(b"\x00")


class BtminerV2Protocol(CgminerProtocol):
    """Whatsminer API V2: cgminer-style reads plus token-authenticated encrypted writes."""

    COMMAND_KEY = "cmd"

    def __init__(
        self,
        transport: TcpJsonTransport,
        password: str,
        retry: RetryPolicy | None = None,
        *,
        token_lifetime_s: float = TOKEN_LIFETIME_S,
        token_refresh_margin_s: float = TOKEN_REFRESH_MARGIN_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(transport, retry)
        self._password = password
        self.token_lifetime_s = token_lifetime_s
        self.token_refresh_margin_s = token_refresh_margin_s
        #: Clock for token ages (seconds, monotonic); injectable so tests need not sleep.
        self.monotonic = monotonic
        self._token: Token | None = None
        self._token_lock = asyncio.Lock()
        self._fetch_times: deque[float] = deque()
        #: Number of tokens fetched by this client (observability and tests).
        self.tokens_fetched = 0

    async def multicommand(self, *cmds: str) -> Replies:
        """Combine what btminer allows with `+`; send `get_*` and `status` on their own."""
        alone = [c for c in cmds if c.startswith(NOT_COMBINABLE_PREFIX) or c in NOT_COMBINABLE]
        combinable = [c for c in cmds if c not in alone]
        parts = []
        if combinable:
            parts.append(super().multicommand(*combinable))
        if alone:
            parts.append(self.singles(*alone))
        merged = Replies()
        for part in await asyncio.gather(*parts):
            merged.ok.update(part.ok)
            merged.failed.update(part.failed)
        return merged

    async def write(self, cmd: str, **params: Any) -> dict[str, Any]:
        """Run one privileged command; never re-sent once it may have reached the miner."""
        return await self.query(lambda: self._write_once(cmd, params), what=cmd, idempotent=False)

    async def reset_session(self) -> None:
        """Drop the cached token so the next write fetches a new one."""
        self._token = None

    def error_for(self, cmd: str, code: Any, msg: str) -> MinerError:
        """Map btminer message codes to typed errors."""
        if WRITE_LOCKED_MSG in msg:
            return MinerAuthError(self.host, f"{cmd}: {msg} (write API locked)")
        if isinstance(code, int) and code in CODE_ERRORS:
            return coded_error(self.host, cmd, code, CODE_ERRORS[code], msg)
        return super().error_for(cmd, code, msg)

    async def _write_once(self, cmd: str, params: dict[str, Any]) -> dict[str, Any]:
        token, cached = await self._ensure_token()
        plaintext = json.dumps({"cmd": cmd, **params, "token": token.sign}).encode()
        envelope = json.dumps({"enc": 1, "data": encrypt(token.aes_key, plaintext)}).encode()
        raw = await self.transport.send(envelope)
        reply = quirks.decode(raw, self.host).data
        enc = reply.get("enc")
        if isinstance(enc, str):
            try:
                reply = quirks.decode(decrypt(token.aes_key, enc), self.host).data
            except ValueError as err:
                raise MinerResponseError(
                    self.host, f"{cmd}: undecryptable reply: {err}", raw
                ) from err
        try:
            return self.check_status(reply, cmd)
        except MinerError as err:
            code = reply.get("Code")
            if code in CRYPTO_REJECTION_CODES:
                if cached:
                    raise SessionExpiredError(self.host, f"{cmd}: cached token refused") from err
                raise MinerAuthError(
                    self.host,
                    f"{cmd}: the miner could not verify the request (code {code}); "
                    "check the Whatsminer admin password",
                ) from err
            raise

    async def _ensure_token(self) -> tuple[Token, bool]:
        """Return a valid token and whether it came from the cache."""
        async with self._token_lock:
            now = self.monotonic()
            token = self._token
            if token is not None and now - token.fetched_at < (
                self.token_lifetime_s - self.token_refresh_margin_s
            ):
                return token, True
            try:
                self._token = await self._fetch_token(now)
            except MinerConnectionError as err:
                # The privileged command itself was never sent: safe to retry.
                raise never_sent(self.host, "get_token", err) from err
            return self._token, False

    async def _fetch_token(self, now: float) -> Token:
        while self._fetch_times and now - self._fetch_times[0] >= self.token_lifetime_s:
            self._fetch_times.popleft()
        if len(self._fetch_times) >= MAX_TOKENS_PER_LIFETIME:
            raise MinerCommandError(
                self.host,
                136,
                f"refusing to request token {MAX_TOKENS_PER_LIFETIME + 1} within "
                f"{self.token_lifetime_s:g} s (the miner allows {MAX_TOKENS_PER_LIFETIME})",
            )
        self._fetch_times.append(now)
        reply = self.check_status(await self.exchange(self.encode("get_token")), "get_token")
        msg = reply.get("Msg")
        if not isinstance(msg, dict) or not {"salt", "newsalt", "time"} <= msg.keys():
            raise MinerResponseError(self.host, "get_token: no time/salt/newsalt", str(reply))
        salt, newsalt, token_time = str(msg["salt"]), str(msg["newsalt"]), str(msg["time"])
        sign, aes_key = derive_token(self._password, salt, newsalt, token_time)
        self.tokens_fetched += 1
        log.debug("token_fetched", host=self.host, count=self.tokens_fetched)
        return Token(sign=sign, aes_key=aes_key, fetched_at=now)
