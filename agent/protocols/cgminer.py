"""cgminer-style RPC on TCP 4028: JSON requests, `+` multi-commands, STATUS → typed errors.

Request ``{"command": "<cmd>", "parameter": "<p>"}``; every reply carries a ``STATUS``
(protocols.md §1.1). A multi-command reply is keyed by command, each value a one-element
list. Firmware that rejects ``+`` (pyasic: stock S19, issue #57) gets single commands sent
concurrently instead, and the protocol remembers not to try ``+`` again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.errors import (
    MinerAuthError,
    MinerCommandError,
    MinerError,
    MinerResponseError,
)
from agent.protocols import quirks
from agent.protocols.base import BaseProtocol, RetryPolicy
from agent.transports.tcp_json import TcpJsonTransport

log = structlog.get_logger(__name__)

#: cgminer message ids (cgminer api.c): invalid command, access denied.
CODE_INVALID_COMMAND = 14
CODE_ACCESS_DENIED = 45
#: STATUS letters that mean the command ran: success, info, warning.
OK_STATUSES = frozenset({"S", "I", "W"})


@dataclass(slots=True)
class Replies:
    """Replies to several commands: each either succeeded or failed on its own."""

    ok: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, MinerError] = field(default_factory=dict)

    def get(self, cmd: str) -> dict[str, Any]:
        """Return the reply to ``cmd``, or raise the error that command got."""
        if cmd in self.ok:
            return self.ok[cmd]
        raise self.failed[cmd]

    def merge(self, other: Replies) -> None:
        """Add another batch of replies (later results win)."""
        self.ok.update(other.ok)
        self.failed.update(other.failed)

    def optional(self, cmd: str) -> dict[str, Any] | None:
        """Return the reply to ``cmd``, or ``None`` (logged at debug) if it failed."""
        if cmd in self.ok:
            return self.ok[cmd]
        err = self.failed.get(cmd)
        log.debug("command_unavailable", command=cmd, error=repr(err))
        return None

    @classmethod
    def gathered(
        cls, names: Sequence[str], results: Sequence[dict[str, Any] | BaseException]
    ) -> Replies:
        """File ``asyncio.gather(..., return_exceptions=True)`` results by command name.

        A ``MinerError`` is that command's failure; any other exception is re-raised.
        """
        replies = cls()
        for name, result in zip(names, results, strict=True):
            if isinstance(result, MinerError):
                replies.failed[name] = result
            elif isinstance(result, BaseException):
                raise result
            else:
                replies.ok[name] = result
        return replies


class CgminerProtocol(BaseProtocol):
    """The cgminer/bmminer/bosminer JSON API on one miner."""

    #: Request key naming the command (btminer's vendor docs use ``cmd``).
    COMMAND_KEY = "command"

    def __init__(self, transport: TcpJsonTransport, retry: RetryPolicy | None = None) -> None:
        super().__init__(transport.host, retry)
        self.transport = transport
        #: False once the miner rejected a `+` multi-command; then singles are sent directly.
        self.multicommand_supported = True

    def encode(self, cmd: str, parameter: Any = None, **extra: Any) -> bytes:
        """Serialise one request."""
        request: dict[str, Any] = {self.COMMAND_KEY: cmd}
        if parameter is not None:
            request["parameter"] = parameter
        request.update(extra)
        return json.dumps(request, separators=(",", ":")).encode()

    async def exchange(self, payload: bytes) -> dict[str, Any]:
        """Send raw request bytes once and decode the reply (no status check, no retry)."""
        raw = await self.transport.send(payload)
        return quirks.decode(raw, self.host).data

    async def command(
        self, cmd: str, parameter: Any = None, *, idempotent: bool = True, **extra: Any
    ) -> dict[str, Any]:
        """Run one command and return its reply after the status check."""
        payload = self.encode(cmd, parameter, **extra)

        async def op() -> dict[str, Any]:
            return self.check_status(await self.exchange(payload), cmd)

        return await self.query(op, what=cmd, idempotent=idempotent)

    async def multicommand(self, *cmds: str) -> Replies:
        """Run read commands together with `+`, falling back to concurrent single commands."""
        cmds = tuple(dict.fromkeys(cmds))
        if len(cmds) == 1 or not self.multicommand_supported:
            return await self.singles(*cmds)
        joined = "+".join(cmds)
        payload = self.encode(joined)
        try:
            reply = await self.query(lambda: self.exchange(payload), what=joined)
        except MinerResponseError as err:
            # One undecodable reply says nothing about `+` support: singles now, `+` next time.
            log.debug("multicommand_garbled", host=self.host, commands=joined, error=repr(err))
            return await self.singles(*cmds)
        try:
            replies, missing = self._split(reply, cmds)
        except (MinerCommandError, MinerResponseError) as err:
            # A decodable answer that is an error status, or has no command keys: no `+` here.
            self.multicommand_supported = False
            log.debug("multicommand_rejected", host=self.host, commands=joined, error=repr(err))
            return await self.singles(*cmds)
        if missing:
            extra = await self.singles(*missing)
            replies.ok.update(extra.ok)
            replies.failed.update(extra.failed)
        return replies

    async def singles(self, *cmds: str) -> Replies:
        """Run each command on its own connection, concurrently; collect each result."""
        results = await asyncio.gather(*(self.command(c) for c in cmds), return_exceptions=True)
        replies = Replies()
        for cmd, result in zip(cmds, results, strict=True):
            if isinstance(result, MinerError):
                replies.failed[cmd] = result
            elif isinstance(result, BaseException):
                raise result  # a bug or a cancellation, not a miner failure
            else:
                replies.ok[cmd] = result
        return replies

    def _split(self, reply: dict[str, Any], cmds: tuple[str, ...]) -> tuple[Replies, list[str]]:
        """Split a multi-command reply; raise if the miner rejected the whole request."""
        present = [c for c in cmds if c in reply]
        if not present:
            self.check_status(reply, "+".join(cmds))  # raises the miner's own error if any
            raise MinerResponseError(
                self.host, "multi-command reply has no command keys", str(reply)
            )
        replies = Replies()
        missing = []
        for cmd in cmds:
            value = reply.get(cmd)
            if value is None:
                missing.append(cmd)
                continue
            try:
                if not (isinstance(value, list) and value and isinstance(value[0], dict)):
                    raise MinerResponseError(
                        self.host, f"{cmd}: not a one-element list", str(value)
                    )
                replies.ok[cmd] = self.check_status(value[0], cmd)
            except MinerError as err:
                replies.failed[cmd] = err
        return replies, missing

    def check_status(self, reply: dict[str, Any], cmd: str) -> dict[str, Any]:
        """Return ``reply`` if its STATUS says the command ran; raise the typed error otherwise."""
        status = reply.get("STATUS")
        if isinstance(status, list) and status and isinstance(status[0], dict):
            letter, code, msg = status[0].get("STATUS"), status[0].get("Code"), status[0].get("Msg")
        elif isinstance(status, str):  # MicroBT-style flat envelope
            letter, code, msg = status, reply.get("Code"), reply.get("Msg")
        elif isinstance(status, dict):  # Antminer web CGI envelope
            letter, code, msg = status.get("STATUS"), status.get("Code"), status.get("Msg")
        else:
            raise MinerResponseError(self.host, f"{cmd}: reply has no STATUS", str(reply))
        if letter in OK_STATUSES:
            if letter == "W":
                log.debug("command_warning", host=self.host, command=cmd, code=code, msg=msg)
            return reply
        raise self.error_for(cmd, code, msg if isinstance(msg, str) else json.dumps(msg))

    def error_for(self, cmd: str, code: Any, msg: str) -> MinerError:
        """Map an error STATUS to a typed error (access denial is an auth error)."""
        if code == CODE_ACCESS_DENIED or "access denied" in msg.lower():
            return MinerAuthError(self.host, f"{cmd}: {msg} (API access group forbids it)")
        return MinerCommandError(self.host, code, f"{cmd}: {msg}")
