"""TCP 4028: one request per connection, the reply is everything up to EOF (cgminer/btminer V2).

The miner reads one request, writes one reply and closes (cgminer API-README; protocols.md
§1.1, §3.1), so there is no framing: we read to EOF under a size cap, a per-read timeout
(a silent miner) and a total deadline (a miner that trickles bytes forever).
"""

from __future__ import annotations

import asyncio
import time

import structlog

from agent.errors import MinerConnectionError, MinerResponseError, MinerTimeoutError
from agent.transports.base import (
    LAN_CONNECT_TIMEOUT_S,
    Timeouts,
    Transport,
    deadline_error,
    io_error,
    open_tcp,
)

log = structlog.get_logger(__name__)

#: cgminer/bmminer/btminer API port.
DEFAULT_PORT = 4028
#: The miner is on the LAN: see ``LAN_CONNECT_TIMEOUT_S`` (pyasic's 3 s detection bound).
CONNECT_TIMEOUT_S = LAN_CONNECT_TIMEOUT_S
#: Longest silence allowed between reply chunks. Whatsminer privileged commands are given
#: 10 s by pyasic (protocols.md §4.5); a healthy bmminer answers `stats` in well under that.
READ_TIMEOUT_S = 10.0
#: Whole exchange (connect + send + read). pyasic's 100 s default let one hung miner stall a
#: whole fleet poll (pyasic #48, #65); 15 s bounds a slow trickle without cutting real replies.
DEADLINE_S = 15.0
#: Largest reply accepted. Real replies are a few KB (S19 `stats` ~4 KB); buggy Whatsminers
#: return hundreds of error codes (protocols.md §3.1), still far below 1 MiB.
MAX_REPLY_BYTES = 1024 * 1024
#: Bytes requested per read call.
READ_CHUNK_BYTES = 65536


class TcpJsonTransport(Transport):
    """Send one request per TCP connection and return every byte the miner wrote before EOF."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        timeouts: Timeouts | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s, self.read_timeout_s, self.deadline_s = (
            timeouts or Timeouts()
        ).resolve(CONNECT_TIMEOUT_S, READ_TIMEOUT_S, DEADLINE_S)
        self.max_reply_bytes = max_reply_bytes

    async def send(self, payload: bytes) -> bytes:
        """Connect, send ``payload``, read the reply to EOF, close; raise typed errors."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.deadline_s):
                reader, writer = await open_tcp(self.host, self.port, self.connect_timeout_s)
                try:
                    writer.write(payload)
                    await writer.drain()
                    reply = await self._read_to_eof(reader)
                except BaseException:
                    writer.transport.abort()  # never leak a socket on error or cancellation
                    raise
                writer.close()
                return reply
        except (MinerConnectionError, MinerResponseError):
            raise
        except TimeoutError as err:
            raise deadline_error(self.host, f"port {self.port}", self.deadline_s, started) from err
        except OSError as err:
            raise io_error(self.host, err) from err

    async def close(self) -> None:
        """Nothing persistent to close: every request has its own connection."""
        return None

    async def _read_to_eof(self, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        total = 0
        loop = asyncio.get_running_loop()
        # one idle timer pushed back as bytes arrive (a task per read via wait_for cost more
        # than the read itself at fleet scale)
        idle = asyncio.timeout(self.read_timeout_s)
        try:
            async with idle:
                while chunk := await reader.read(READ_CHUNK_BYTES):
                    idle.reschedule(loop.time() + self.read_timeout_s)
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > self.max_reply_bytes:
                        raise MinerResponseError(
                            self.host,
                            f"reply exceeds {self.max_reply_bytes} bytes",
                            excerpt=b"".join(chunks),
                        )
        except TimeoutError as err:
            raise MinerTimeoutError(
                self.host,
                f"port {self.port}: silent for {self.read_timeout_s:g} s after {total} bytes",
            ) from err
        except OSError as err:
            raise io_error(self.host, err) from err
        if not chunks:
            raise MinerConnectionError(
                self.host, f"port {self.port}: connection closed without a reply"
            )
        return b"".join(chunks)
