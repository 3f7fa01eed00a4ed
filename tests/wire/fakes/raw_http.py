"""An HTTP/1.1 server on 127.0.0.1 that answers each request with scripted raw bytes.

For the client's framing and fault handling: each reply is sent exactly as given (chunked,
close-delimited, malformed ...); ``close_after`` ends the connection once it is written.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tests.wire.fakes.loopback import LoopbackServer


@dataclass(frozen=True)
class Scripted:
    """One reply: raw bytes, then optionally close the connection."""

    raw: bytes
    close_after: bool = False


def reply(
    status: int = 200,
    body: bytes = b"{}",
    headers: dict[str, str] | None = None,
    *,
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    """Build a well-formed response (Content-Length unless ``length`` is false)."""
    lines = [f"{version} {status} Whatever"]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes, trailer: str = "") -> bytes:
    """A chunked 200 reply made of ``parts`` (with a chunk extension on the first)."""
    out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i, part in enumerate(parts):
        ext = ";name=value" if i == 0 else ""
        out.append(f"{len(part):x}{ext}\r\n".encode() + part + b"\r\n")
    out.append(b"0\r\n" + trailer.encode() + b"\r\n")
    return b"".join(out)


class RawHttpServer(LoopbackServer):
    """Answers the n-th request (over all connections) with ``replies[n]`` (the last repeats)."""

    def __init__(self, *replies: Scripted) -> None:
        super().__init__()
        self.replies = list(replies)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((lines[0], headers, body))
            scripted = self.replies[min(len(self.requests), len(self.replies)) - 1]
            writer.write(scripted.raw)
            await writer.drain()
            if scripted.close_after:
                writer.close()
                return
