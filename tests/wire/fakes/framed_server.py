"""A btminer API V3 server on 127.0.0.1: 4-byte little-endian framing, persistent connections.

Reads answer from real fixture bytes keyed by ``(cmd, param)`` (a `get.miner.status` param
joined with ``+`` merges those sections' fixtures, as the firmware combines them); ``set.*``
commands verify the salted token (written from protocols.md §3.5, independently of the
agent) and update a little state. Faults: ``close_after`` (N replies, then close on the
next request), ``silent``, ``bad_length``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.wire.fakes.loopback import LoopbackServer

_HEADER = struct.Struct("<I")


def _reply(code: int, msg: Any, desc: str) -> dict[str, Any]:
    return {"code": code, "when": int(time.time()), "msg": msg, "desc": desc}


class FakeV3Server(LoopbackServer):
    """Serve V3 reads from fixtures and verify V3 writes."""

    CLIENT_GONE = (*LoopbackServer.CLIENT_GONE, ValueError)  # junk frames end the connection

    def __init__(
        self,
        replies: dict[Any, bytes] | None = None,
        *,
        password: str = "super",
        account: str = "super",
        salt: str = "uhCiDyVj",
        write_enabled: bool = True,
        echo_heartbeat: bool = False,
        mode: str = "normal",
        close_after: int | None = None,
    ) -> None:
        super().__init__()
        self.replies = {k: v for k, v in (replies or {}).items() if isinstance(k, tuple)}
        self.password = password
        self.account = account
        self.salt = salt
        self.write_enabled = write_enabled
        self.echo_heartbeat = echo_heartbeat
        self.mode = mode
        self.close_after = close_after
        self.requests: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.state: dict[str, Any] = {
            "power_limit": 3600,
            "power_mode": "normal",
            "service": "start",
            "percent": None,
            "pools": None,
        }

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            (length,) = _HEADER.unpack(await reader.readexactly(4))
            if length == 0:
                self.heartbeats += 1
                if self.echo_heartbeat:
                    writer.write(b"\x00\x00\x00\x00")
                continue
            request = json.loads(await reader.readexactly(length))
            self.requests.append(request)
            if self.close_after is not None and served >= self.close_after:
                return
            if self.mode == "silent":
                await asyncio.sleep(3600)
            if self.mode == "bad_length":
                writer.write(_HEADER.pack(0x7FFFFFFF) + b"{}")
                await writer.drain()
                continue
            body = self.reply_for(request)
            writer.write(_HEADER.pack(len(body)) + body)
            await writer.drain()
            served += 1

    def reply_for(self, request: dict[str, Any]) -> bytes:
        """Bytes of the reply frame body for one request."""
        cmd = request.get("cmd")
        if not isinstance(cmd, str):
            return json.dumps(_reply(-3, "invalid json item", "")).encode()
        if cmd.startswith("set."):
            return json.dumps(self._write(cmd, request)).encode()
        param = request.get("param")
        if cmd == "get.device.info" and param == "salt":
            return json.dumps(_reply(0, {"salt": self.salt}, cmd)).encode()
        if cmd == "get.miner.status" and isinstance(param, str) and "+" in param:
            return self._combined_status(cmd, param.split("+"))
        raw = self.replies.get((cmd, param))
        if raw is None:
            return json.dumps(_reply(-2, "invalid command", cmd)).encode()
        return raw

    def _combined_status(self, cmd: str, sections: list[str]) -> bytes:
        """`get.miner.status` for `summary+edevs+pools`: each section's fixture `msg` merged."""
        msg: dict[str, Any] = {}
        for name in sections:
            raw = self.replies.get((cmd, name))
            if raw is None:
                return json.dumps(_reply(-3, "invalid json item", cmd)).encode()
            msg[name] = json.loads(raw)["msg"][name]
        return json.dumps(_reply(0, msg, cmd)).encode()

    def _write(self, cmd: str, request: dict[str, Any]) -> dict[str, Any]:
        ts = request.get("ts")
        digest = hashlib.sha256(f"{cmd}{self.password}{self.salt}{ts}".encode()).digest()
        if (
            request.get("account") != self.account
            or request.get("token") != base64.b64encode(digest).decode()[:8]
            or not self.write_enabled
        ):
            return _reply(-4, "no permission", cmd)
        param = request.get("param")
        s = self.state
        if cmd == "set.miner.power_limit":
            s["power_limit"] = int(param)
        elif cmd == "set.miner.power_percent":
            s["percent"] = (int(param["percent"]), param["mode"])
        elif cmd == "set.miner.power_mode":
            s["power_mode"] = param
        elif cmd == "set.miner.service":
            s["service"] = param
        elif cmd == "set.miner.pools":
            dec = Cipher(algorithms.AES(digest), modes.ECB()).decryptor()
            plain = dec.update(base64.b64decode(param)) + dec.finalize()
            s["pools"] = json.loads(plain.rstrip(b"\x00"))
        else:
            return _reply(-2, "invalid command", cmd)
        return _reply(0, "ok", cmd)
