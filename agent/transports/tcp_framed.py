"""TCP 4433: persistent connection, 4-byte little-endian length prefix each way (btminer API V3).

protocols.md §3.5: connections may be reused, the miner closes idle ones after 300 s and
accepts a heartbeat of four zero bytes (an empty frame). One request is in flight at a
time; a dead connection is dropped and the next request reconnects (the protocol layer
decides whether to retry). Empty frames received are heartbeats and are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
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

#: btminer API V3 port.
DEFAULT_PORT = 4433
#: The miner is on the LAN: see ``LAN_CONNECT_TIMEOUT_S``.
CONNECT_TIMEOUT_S = LAN_CONNECT_TIMEOUT_S
#: Longest wait for a reply frame; V3 `set.*` commands answer before acting (restarts happen
#: after the reply), so 10 s is generous.
READ_TIMEOUT_S = 10.0
#: Whole request (reconnect + send + reply) bounded like tcp_json.
DEADLINE_S = 15.0
#: Largest frame accepted. Real V3 replies are a few KB; a bigger length prefix means a
#: desynchronised stream or garbage, and the connection is dropped.
MAX_FRAME_BYTES = 1024 * 1024
#: The miner closes connections idle for 300 s (protocols.md §3.5); a heartbeat every 60 s
#: keeps a polled connection open even if the poll interval is longer than that.
HEARTBEAT_INTERVAL_S = 60.0
#: The V3 heartbeat packet: a zero length prefix and no body.
HEARTBEAT = b"\x00\x00\x00\x00"
_HEADER = struct.Struct("<I")


class TcpFramedTransport(Transport):
    """A persistent, length-prefixed JSON channel with heartbeat and lazy reconnect."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        timeouts: Timeouts | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        heartbeat_interval_s: float | None = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s, self.read_timeout_s, self.deadline_s = (
            timeouts or Timeouts()
        ).resolve(CONNECT_TIMEOUT_S, READ_TIMEOUT_S, DEADLINE_S)
        self.max_frame_bytes = max_frame_bytes
        self.heartbeat_interval_s = heartbeat_interval_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last_io = 0.0
        #: Number of connections opened so far (observability and tests).
        self.connects = 0

    @property
    def connected(self) -> bool:
        """Whether a connection is open and the miner has not closed it."""
        return (
            self._writer is not None
            and self._reader is not None
            and not self._writer.is_closing()
            and not self._reader.at_eof()
        )

    async def send(self, payload: bytes) -> bytes:
        """Send one frame and return the next non-empty reply frame; raise typed errors."""
        if len(payload) > self.max_frame_bytes:
            raise MinerResponseError(self.host, "request exceeds the frame limit", payload)
        # The deadline starts before the wait for the connection: requests queued behind a
        # hung one give up on time instead of each starting a fresh deadline in turn.
        started = time.monotonic()
        holding = False
        try:
            async with asyncio.timeout(self.deadline_s):
                async with self._lock:
                    holding = True
                    try:
                        return await self._exchange(payload)
                    except BaseException:
                        self._drop()
                        raise
        except BaseException as err:
            if isinstance(err, MinerConnectionError | MinerResponseError):
                raise
            if isinstance(err, TimeoutError):
                awaited = "reply frame" if holding else "turn on the connection"
                raise deadline_error(
                    self.host, f"port {self.port}", self.deadline_s, started, awaited
                ) from err
            if isinstance(err, asyncio.IncompleteReadError):
                raise MinerConnectionError(
                    self.host,
                    f"port {self.port}: connection closed mid-frame "
                    f"({len(err.partial)} of {err.expected} bytes)",
                ) from err
            if isinstance(err, OSError):
                raise io_error(self.host, err) from err
            raise

    async def close(self) -> None:
        """Stop the heartbeat and close the connection."""
        task, self._heartbeat = self._heartbeat, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop()

    async def _exchange(self, payload: bytes) -> bytes:
        if not self.connected:
            self._drop()
            await self._open()
        reader, writer = self._reader, self._writer
        assert reader is not None
        assert writer is not None
        writer.write(_HEADER.pack(len(payload)) + payload)
        await writer.drain()
        self._last_io = time.monotonic()
        while True:
            header = await self._read_exactly(reader, _HEADER.size)
            (length,) = _HEADER.unpack(header)
            if length == 0:
                continue  # a heartbeat echoed by the miner
            if length > self.max_frame_bytes:
                raise MinerResponseError(
                    self.host, f"frame length {length} exceeds {self.max_frame_bytes}", header
                )
            body = await self._read_exactly(reader, length)
            self._last_io = time.monotonic()
            return body

    async def _read_exactly(self, reader: asyncio.StreamReader, n: int) -> bytes:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                return await reader.readexactly(n)
        except TimeoutError as err:
            raise MinerTimeoutError(
                self.host, f"port {self.port}: no reply frame for {self.read_timeout_s:g} s"
            ) from err

    async def _open(self) -> None:
        self._reader, self._writer = await open_tcp(self.host, self.port, self.connect_timeout_s)
        self.connects += 1
        self._last_io = time.monotonic()
        if self.heartbeat_interval_s and self._heartbeat is None:
            self._heartbeat = asyncio.create_task(
                self._heartbeat_loop(self.heartbeat_interval_s),
                name=f"hashpilot-heartbeat-{self.host}:{self.port}",
            )

    def _drop(self) -> None:
        """Abort the connection immediately (no await: safe during cancellation)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.transport.abort()

    async def _heartbeat_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if self._lock.locked() or time.monotonic() - self._last_io < interval_s:
                continue
            async with self._lock:
                writer = self._writer
                if writer is None or not self.connected:
                    continue
                try:
                    writer.write(HEARTBEAT)
                    await asyncio.wait_for(writer.drain(), self.read_timeout_s)
                    self._last_io = time.monotonic()
                except (OSError, TimeoutError) as err:
                    log.debug("heartbeat_failed", host=self.host, port=self.port, error=repr(err))
                    self._drop()
