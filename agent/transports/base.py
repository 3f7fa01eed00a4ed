"""What every transport shares: the close contract, timeouts, and OS-error classification.

A transport moves bytes and turns every I/O failure into an ``agent.errors`` type at the
source. Two private-but-public subclasses tell the retry loop (``protocols.base``) whether a
request could have reached the miner: ``MinerConnectError`` means it certainly did not.
"""

from __future__ import annotations

import abc
import errno
import socket
from dataclasses import dataclass

from agent.errors import MinerConnectionError, MinerTimeoutError


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
