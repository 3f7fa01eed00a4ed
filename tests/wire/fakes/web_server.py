"""A stock-Antminer web CGI on 127.0.0.1: HTTP/1.1 keep-alive with RFC 7616 digest auth (MD5).

``get_system_info`` comes from the real fixture; ``summary``/``stats``/``get_miner_conf`` are
synthetic (no capture exists in shared/fixtures) with the shapes of protocols.md §1.4 and
values consistent with the S19 Pro fixture. ``set_miner_conf`` updates the config; with
``drop_set_reply`` it applies the change and closes without answering (firmware that
restarts bmminer first). ``slow_s`` delays every reply.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import secrets
from typing import Any

from tests.wire.fakes.loopback import LoopbackServer

REALM = "antMiner Configuration"

#: Synthetic `get_miner_conf` (keys per protocols.md §1.4; pools as in the S19 Pro fixture).
MINER_CONF: dict[str, Any] = {
    "pools": [
        {
            "url": "stratum+tcp://btc.global.luxor.tech:700",
            "user": "satokierepair.H04YK",
            "pass": "x",
        },
        {
            "url": "stratum+tcp://btc.global.luxor.tech:700",
            "user": "satokierepair.H04YK",
            "pass": "x",
        },
        {
            "url": "stratum+tcp://btc.global.luxor.tech:700",
            "user": "satokierepair.H04YK",
            "pass": "x",
        },
    ],
    "api-listen": True,
    "api-network": True,
    "api-groups": "A:stats:pools:devs:summary:version",
    "api-allow": "A:0/0,W:*",
    "bitmain-fan-ctrl": False,
    "bitmain-fan-pwm": "100",
    "bitmain-use-vil": True,
    "bitmain-freq": "675",
    "bitmain-voltage": "1400",
    "bitmain-ccdelay": "0",
    "bitmain-pwth": "0",
    "bitmain-work-mode": "0",
    "bitmain-freq-level": "100",
}

#: Synthetic web `summary.cgi` (object STATUS, status list), S19 Pro fixture numbers.
WEB_SUMMARY: dict[str, Any] = {
    "STATUS": {"STATUS": "S", "when": 1755615295, "Msg": "summary", "api_version": "1.0.0"},
    "INFO": {
        "miner_version": "49.0.1.3",
        "CompileTime": "Tue Dec  6 16:12:30 CST 2022",
        "type": "Antminer S19 Pro",
    },
    "SUMMARY": [
        {
            "elapsed": 50474,
            "rate_5s": 110566.89,
            "rate_30m": 111878.26,
            "rate_avg": 111834.85,
            "rate_ideal": 110000.0,
            "rate_unit": "GH/s",
            "hw_all": 562,
            "bestshare": 12904207043,
            "status": [
                {"type": "rate", "status": "s", "code": 0, "msg": ""},
                {"type": "network", "status": "s", "code": 0, "msg": ""},
                {"type": "fans", "status": "s", "code": 0, "msg": ""},
                {"type": "temp", "status": "w", "code": 341, "msg": "temperature high"},
            ],
        }
    ],
}

#: Synthetic web `stats.cgi` chain list, S19 Pro fixture numbers.
WEB_STATS: dict[str, Any] = {
    "STATUS": {"STATUS": "S", "when": 1755615295, "Msg": "stats", "api_version": "1.0.0"},
    "INFO": {
        "miner_version": "49.0.1.3",
        "CompileTime": "Tue Dec  6 16:12:30 CST 2022",
        "type": "Antminer S19 Pro",
    },
    "STATS": [
        {
            "elapsed": 50474,
            "rate_5s": 110566.89,
            "rate_avg": 111834.63,
            "rate_30m": 111878.26,
            "rate_ideal": 110000.0,
            "rate_unit": "GH/s",
            "chain_num": 3,
            "fan_num": 4,
            "fan": [6000, 5880, 5040, 5040],
            "hwp_total": 0.0,
            "chain": [
                {
                    "index": i,
                    "freq_avg": 525,
                    "rate_ideal": 36666.67,
                    "rate_real": rate,
                    "asic_num": 114,
                    "asic": "oooo",
                    "temp_pic": pic,
                    "temp_pcb": pcb,
                    "temp_chip": chip,
                    "hw": hw,
                    "eeprom_loaded": True,
                    "sn": f"SN{i}",
                }
                for i, rate, pcb, chip, pic, hw in (
                    (0, 37603.30, [73, 45, 64, 65], [78, 50, 69, 70], [63, 35, 54, 55], 183),
                    (1, 35536.22, [47, 50, 65, 66], [52, 55, 70, 71], [37, 40, 55, 56], 195),
                    (2, 37427.38, [46, 44, 64, 63], [51, 49, 69, 68], [36, 34, 54, 53], 184),
                )
            ],
        }
    ],
}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class FakeAntminerWeb(LoopbackServer):
    """The CGI endpoints a stock X19 web UI serves, behind digest auth."""

    CLIENT_GONE = (*LoopbackServer.CLIENT_GONE, asyncio.LimitOverrunError)

    def __init__(
        self,
        *,
        system_info: dict[str, Any] | None = None,
        username: str = "root",
        password: str = "root",
        drop_set_reply: bool = False,
        slow_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.drop_set_reply = drop_set_reply
        self.slow_s = slow_s
        self.pages: dict[str, Any] = {
            "get_system_info": system_info or {"minertype": "Antminer S19 Pro"},
            "summary": copy.deepcopy(WEB_SUMMARY),
            "stats": copy.deepcopy(WEB_STATS),
        }
        self.conf = copy.deepcopy(MINER_CONF)
        self.posts: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, bool]] = []  # method, path, authenticated
        self._nonces: set[str] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if self.slow_s:
                await asyncio.sleep(self.slow_s)
            keep = await self._handle(method, path, headers, body, writer)
            if not keep:
                return

    async def _handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        authed = self._authorized(method, path, headers.get("authorization", ""))
        self.requests.append((method, path, authed))
        if not authed:
            nonce = secrets.token_hex(16)
            self._nonces.add(nonce)
            challenge = f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'
            await self._send(
                writer,
                401,
                b"<html>401 Unauthorized</html>",
                {"WWW-Authenticate": challenge},
                "text/html",
            )
            return True
        name = path.removeprefix("/cgi-bin/").removesuffix(".cgi")
        if method == "POST" and name == "set_miner_conf":
            request = json.loads(body)
            self.posts.append(request)
            mode = request.get("miner-mode")
            if mode is not None:
                self.conf["bitmain-work-mode"] = str(mode)
            if "pools" in request:
                self.conf["pools"] = request["pools"]
            if self.drop_set_reply:
                return False
            await self._send(
                writer, 200, json.dumps({"stats": "success", "code": "M000", "msg": "OK!"}).encode()
            )
            return True
        if method == "GET" and name == "get_miner_conf":
            await self._send(writer, 200, json.dumps(self.conf).encode())
            return True
        if method == "GET" and name in self.pages:
            await self._send(writer, 200, json.dumps(self.pages[name]).encode())
            return True
        await self._send(writer, 404, b"not found", content_type="text/plain")
        return True

    def _authorized(self, method: str, uri: str, header: str) -> bool:
        if not header.lower().startswith("digest "):
            return False
        fields: dict[str, str] = {}
        for part in header[7:].split(","):
            if "=" in part:
                k, v = part.strip().split("=", 1)
                fields[k] = v.strip('"')
        if fields.get("nonce") not in self._nonces or fields.get("username") != self.username:
            return False
        ha1 = _md5(f"{self.username}:{REALM}:{self.password}")
        ha2 = _md5(f"{method}:{fields.get('uri', uri)}")
        expected = _md5(
            f"{ha1}:{fields['nonce']}:{fields.get('nc')}:{fields.get('cnonce')}:"
            f"{fields.get('qop')}:{ha2}"
        )
        return fields.get("response") == expected

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status]
        head = [
            f"HTTP/1.1 {status} {reason}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Connection: keep-alive",
        ]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
