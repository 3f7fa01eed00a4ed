"""A tiny cgminer/btminer TCP 4028 server on 127.0.0.1 answering from real fixture bytes.

One request per connection, reply, close — like the firmware. Switchable faults (``mode``):
``silent`` (accept, never answer), ``trickle`` (one byte per interval, forever), ``reset``
(half a reply then RST), ``oversize``, ``garbage``, ``close`` (close without replying),
``raw`` (send ``raw_reply`` verbatim). Btminer privileged commands are delegated to a
:class:`tests.wire.fakes.whatsminer_v2.V2Privileged` when one is attached.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from tests.wire.fakes.loopback import LoopbackServer

INVALID_COMMAND = 14
ACCESS_DENIED = 45
#: Stock Antminer api-groups (protocols.md §1.3): remote clients may run only these.
ANTMINER_ALLOWED = frozenset({"stats", "pools", "devs", "summary", "version"})


def status_reply(letter: str, code: int, msg: str, description: str = "cgminer 1.0.0") -> dict:
    """A cgminer-style reply with only a STATUS section."""
    return {
        "STATUS": [
            {
                "STATUS": letter,
                "When": int(time.time()),
                "Code": code,
                "Msg": msg,
                "Description": description,
            }
        ],
        "id": 1,
    }


class FakeRpcServer(LoopbackServer):
    """Serve ``replies`` (command → bytes or callable) on an ephemeral loopback port."""

    def __init__(
        self,
        replies: dict[Any, bytes] | None = None,
        *,
        trailing_nul: bool = False,
        multicommand: bool = True,
        allowed: frozenset[str] | None = None,
        privileged: Any = None,
        mode: str = "normal",
        raw_reply: bytes = b"",
        trickle_interval_s: float = 0.05,
        oversize_bytes: int = 0,
        handlers: dict[str, Callable[[dict], dict]] | None = None,
    ) -> None:
        super().__init__()
        self.replies = {k: v for k, v in (replies or {}).items() if isinstance(k, str)}
        self.trailing_nul = trailing_nul
        self.multicommand = multicommand
        self.allowed = allowed
        self.privileged = privileged
        self.mode = mode
        self.raw_reply = raw_reply
        self.trickle_interval_s = trickle_interval_s
        self.oversize_bytes = oversize_bytes
        self.handlers = handlers or {}
        self.requests: list[dict[str, Any]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await self._read_request(reader)
        if request is None:
            return
        self.requests.append(request)
        await self._respond(request, writer)

    async def _read_request(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        buf = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return None
            buf += chunk
            try:
                value = json.loads(buf)
            except ValueError:
                continue
            return value if isinstance(value, dict) else {"_raw": value}

    async def _respond(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        if self.mode == "silent":
            await asyncio.sleep(3600)
        if self.mode == "close":
            return
        if self.mode == "trickle":
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(self.trickle_interval_s)
        if self.mode == "garbage":
            writer.write(b"\x16\x03\x01 this is not json <html>")
            return
        if self.mode == "oversize":
            writer.write(b'{"STATUS":"' + b"x" * self.oversize_bytes + b'"}')
            await writer.drain()
            return
        if self.mode == "raw":
            writer.write(self.raw_reply)
            return
        body = self.reply_for(request)
        if self.mode == "reset":
            writer.write(body[: len(body) // 2])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        writer.write(body + (b"\x00" if self.trailing_nul else b""))
        await writer.drain()

    def reply_for(self, request: dict[str, Any]) -> bytes:
        """The bytes the firmware would send for one request."""
        if "enc" in request and self.privileged is not None:
            return self.privileged.handle_encrypted(request)
        cmd = request.get("command", request.get("cmd"))
        if not isinstance(cmd, str):
            return json.dumps(status_reply("E", 23, "Invalid JSON")).encode()
        if cmd == "get_token" and self.privileged is not None:
            return self.privileged.get_token()
        if "+" in cmd:
            if not self.multicommand:
                return json.dumps(status_reply("E", INVALID_COMMAND, "Invalid command")).encode()
            out: dict[str, Any] = {}
            for part in dict.fromkeys(cmd.split("+")):
                out[part] = [json.loads(self._single(part, request))]
            out["id"] = 1
            return json.dumps(out).encode()
        return self._single(cmd, request)

    def _single(self, cmd: str, request: dict[str, Any]) -> bytes:
        if self.allowed is not None and cmd not in self.allowed:
            return json.dumps(
                status_reply("E", ACCESS_DENIED, f"Access denied to '{cmd}' command")
            ).encode()
        if cmd in self.handlers:
            return json.dumps(self.handlers[cmd](request)).encode()
        reply = self.replies.get(cmd)
        if reply is None:
            return json.dumps(status_reply("E", INVALID_COMMAND, "Invalid command")).encode()
        return reply
