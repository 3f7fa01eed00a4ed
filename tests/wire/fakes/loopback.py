"""What the loopback fake servers share: an ephemeral 127.0.0.1 port, tracked connections."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self


class LoopbackServer:
    """An asyncio TCP server on 127.0.0.1; a subclass serves one connection in ``_serve``."""

    #: Errors that only mean the client went away (or sent junk): the connection just ends.
    CLIENT_GONE: tuple[type[Exception], ...] = (ConnectionError, asyncio.IncompleteReadError)

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> Self:
        """Listen on 127.0.0.1 with an ephemeral port."""
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def drop_connections(self) -> None:
        """Close every open connection (as a miner does to idle clients)."""
        for task in list(self._tasks):
            task.cancel()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            with contextlib.suppress(*self.CLIENT_GONE):  # the client's test decides
                await self._serve(reader, writer)
        finally:
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until it is done; ``CLIENT_GONE`` errors end it quietly."""
        raise NotImplementedError
