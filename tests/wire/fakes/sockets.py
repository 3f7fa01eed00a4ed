"""Loopback socket tricks for fault tests: a closed port and a listener whose backlog is full."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def full_backlog_port() -> Iterator[int]:
    """A listening loopback port that never accepts and whose accept queue is full.

    Linux drops further SYNs while the queue is full, so a connect hangs until its timeout
    without leaving 127.0.0.1.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.05)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()
