"""What every transport shares: the close contract, timeouts, and OS-error classification.

A transport moves bytes and turns every I/O failure into an ``agent.errors`` type at the
source. Two private-but-public subclasses tell the retry loop (``protocols.base``) whether a
request could have reached the miner: ``MinerConnectError`` means it certainly did not.
"""

from __future__ import annotations

import abc
import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from agent.errors import (
    AgentError,
    ConfigError,
    MinerCommandError,
    MinerConnectionError,
    MinerTimeoutError,
)

#: A LAN miner accepts within milliseconds; 3 s also covers an ARP miss and a busy
#: controller (pyasic's detection uses 3 s) while keeping a dead unit from stalling a poll.
#: Shared by the raw TCP transports and HTTP, whose peers answer on the same LAN.
LAN_CONNECT_TIMEOUT_S = 3.0
#: asyncio's default ``StreamReader`` limit: the most one ``readuntil`` buffers.
STREAM_LIMIT_BYTES = 64 * 1024


class MinerConnectError(MinerConnectionError):
    """No connection was opened, so the request never left this host (always safe to retry)."""


class MinerConnectTimeoutError(MinerConnectError, MinerTimeoutError):
    """Connecting took longer than the connect timeout; nothing was sent."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-transport timeout overrides in seconds; ``None`` keeps the transport's default."""

    connect_s: float | None = None
    read_s: float | None = None
    deadline_s: float | None = None

    def resolve(
        self, connect_s: float, read_s: float, deadline_s: float
    ) -> tuple[float, float, float]:
        """``(connect, read, deadline)``: each override, or the given transport default."""
        return (
            self.connect_s if self.connect_s is not None else connect_s,
            self.read_s if self.read_s is not None else read_s,
            self.deadline_s if self.deadline_s is not None else deadline_s,
        )


class Transport(abc.ABC):
    """A byte channel to one miner endpoint; must be closed when no longer needed."""

    host: str
    port: int

    @abc.abstractmethod
    async def close(self) -> None:
        """Release sockets and background tasks; safe to call twice."""

    async def reset(self) -> None:
        """Drop any persistent connection so the next request starts afresh."""
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.host}:{self.port})"


#: errno values meaning "the peer or its network is not there" (nothing was delivered).
_UNREACHABLE_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.EADDRNOTAVAIL}
)


def connect_error(host: str, err: OSError) -> MinerConnectError:
    """Classify an ``OSError`` raised while opening a connection."""
    if isinstance(err, ConnectionRefusedError):
        return MinerConnectError(host, "connection refused (nothing listening on the port)")
    if isinstance(err, socket.gaierror):
        return MinerConnectError(host, f"cannot resolve host name: {err}")
    if err.errno in _UNREACHABLE_ERRNOS:
        return MinerConnectError(host, f"host unreachable: {err.strerror or err}")
    return MinerConnectError(host, f"connect failed: {err.strerror or err!r}")


def io_error(host: str, err: OSError) -> MinerConnectionError:
    """Classify an ``OSError`` raised after the connection was open (request may be delivered)."""
    if isinstance(err, ConnectionResetError):
        return MinerConnectionError(host, "connection reset by the miner")
    if isinstance(err, BrokenPipeError):
        return MinerConnectionError(host, "connection closed by the miner while sending")
    return MinerConnectionError(host, f"I/O error: {err.strerror or err!r}")


async def open_tcp(
    host: str,
    port: int,
    connect_timeout_s: float,
    *,
    tls: ssl.SSLContext | None = None,
    limit: int = STREAM_LIMIT_BYTES,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TCP (or TLS) connection within ``connect_timeout_s``; any failure is a connect error.

    ``limit`` bounds what one ``readuntil`` may buffer (a response head, a chunk-size line).
    """
    try:
        async with asyncio.timeout(connect_timeout_s):
            return await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=host if tls else None, limit=limit
            )
    except TimeoutError as err:
        raise MinerConnectTimeoutError(
            host, f"port {port}: connect timed out after {connect_timeout_s:g} s"
        ) from err
    except OSError as err:
        raise connect_error(host, err) from err


def deadline_error(
    host: str, where: str, deadline_s: float, started: float, awaited: str = "complete reply"
) -> MinerTimeoutError:
    """Build the error for a request that outlived its deadline (``started``: monotonic s)."""
    return MinerTimeoutError(
        host,
        f"{where}: no {awaited} within the {deadline_s:g} s deadline "
        f"(gave up after {time.monotonic() - started:.2f} s)",
    )


#: A client library's exception base class (httpx ``Exception``, asyncssh ``BaseException``).
E = TypeVar("E", bound=BaseException)


def map_library_error(
    host: str,
    err: BaseException,
    table: Mapping[type[E], tuple[type[AgentError], str]],
    *,
    library: str,
    code: Callable[[BaseException], int | str | None],
) -> AgentError:
    """Return our error for ``err``: the entry of the first class in its MRO that ``table`` lists.

    ``code`` gives a ``MinerCommandError``'s status; ``TypeError`` if no class is listed.
    """
    for cls in type(err).__mro__:
        if cls in table:
            kind, meaning = table[cls]
            detail = f"{meaning}: {err}" if str(err) else meaning
            if issubclass(kind, MinerCommandError):
                return kind(host, code(err), detail)
            if issubclass(kind, ConfigError):
                return kind(f"{host}: {detail}")
            return kind(host, detail)
    raise TypeError(f"unmapped {library} exception {type(err).__name__}")
