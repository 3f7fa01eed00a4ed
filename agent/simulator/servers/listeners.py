"""Listening sockets, one per unit and endpoint, that can be closed (refused) and reopened.

A unit that is rebooting, whose mining process restarts, or that has the "refuse" fault
has its listener closed so clients see a real ECONNREFUSED. The ``Supervisor`` reopens it
when the unit says it is back; it watches units that changed plus a slow sweep of all.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from agent.simulator.servers.device import SimDevice

log = structlog.get_logger(__name__)

#: Pending connections per listener; a farm poller opens a handful per unit at once.
LISTEN_BACKLOG = 64
#: How often units that recently changed are re-checked (reboots last seconds to minutes).
WATCH_INTERVAL_S = 0.25
#: How often every unit is re-checked, catching physics that changed on its own.
SWEEP_INTERVAL_S = 5.0
#: Time allowed for in-flight connections to finish when the farm stops.
STOP_GRACE_S = 2.0

StreamHandler = Callable[[SimDevice, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Starter = Callable[[str, int], Awaitable[Any]]


@dataclass
class HandlerErrors:
    """Failures of the simulator's own connection handlers: simulator bugs, not network faults.

    Every handler catches what a peer can cause (reset, EOF, timeout, bad input) itself, so
    an exception that reaches the listener is a bug in the simulator. The connection is
    still aborted (one bug must not take the farm down), but the failure is counted here so
    tests can fail on it instead of reading it as a flaky network.
    """

    count: int = 0
    last_unit: str | None = None
    last_traceback: str | None = None

    def record(self, unit_id: str, err: BaseException) -> None:
        """Count one handler failure and keep its traceback."""
        self.count += 1
        self.last_unit = unit_id
        self.last_traceback = "".join(traceback.format_exception(err))
        log.error(
            "sim_handler_failed",
            unit=unit_id,
            error=repr(err),
            failures=self.count,
            traceback=self.last_traceback,
        )

    def clear(self) -> None:
        """Forget the recorded failures (after a test that injected one on purpose)."""
        self.count, self.last_unit, self.last_traceback = 0, None, None


class Connections:
    """Every live connection task of the farm, so stop() can end them."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.errors = HandlerErrors()

    def track(self) -> None:
        """Register the current task (called at the top of each connection handler)."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def cancel_all(self) -> None:
        """Cancel every connection and wait for them to unwind."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)


class Listener:
    """One endpoint of one unit: a server that can be opened and closed repeatedly."""

    def __init__(self, device: SimDevice, proto: str, host: str, port: int, starter: Starter):
        self.device = device
        self.proto = proto
        self.host = host
        self.port = port
        self._starter = starter
        self._server: Any = None

    @property
    def is_open(self) -> bool:
        """Whether the socket is listening."""
        return self._server is not None

    async def open(self) -> None:
        """Bind and listen (the port is fixed after the first bind, also in ports mode)."""
        if self._server is not None:
            return
        self._server = await self._starter(self.host, self.port)
        if self.port == 0:
            self.port = _bound_port(self._server)

    async def close(self) -> None:
        """Stop listening; established connections are left alone (like a dying process)."""
        server, self._server = self._server, None
        if server is not None:
            # close() shuts the listening socket at once; wait_closed() would also wait for
            # every open connection (a hung client could hold the supervisor), so it is not
            # awaited here: Connections.cancel_all() ends them when the farm stops.
            server.close()


def _bound_port(server: Any) -> int:
    if hasattr(server, "get_port"):
        return int(server.get_port())
    return int(server.sockets[0].getsockname()[1])


def stream_starter(device: SimDevice, handler: StreamHandler, connections: Connections) -> Starter:
    """Make a starter for an asyncio stream server running ``handler`` per connection."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.track()
        try:
            await handler(device, reader, writer)
        except Exception as err:  # a simulator bug must not take the farm down
            connections.errors.record(device.unit_id, err)
            writer.transport.abort()

    async def start(host: str, port: int) -> Any:
        return await asyncio.start_server(
            on_connect, host, port, reuse_address=True, backlog=LISTEN_BACKLOG
        )

    return start


class Supervisor:
    """Keeps each listener's open/closed state in line with its unit's availability."""

    def __init__(self, devices: dict[str, SimDevice]) -> None:
        self._devices = devices
        self._watch: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def notify(self, device: SimDevice) -> None:
        """Re-check a unit that changed (reboot, restart, fault) soon and until stable."""
        self._watch.add(device.unit_id)

    async def sync(self, device: SimDevice) -> bool:
        """Open/close one unit's listeners; True when every listener is where it should be."""
        settled = True
        for proto, listener in device.listeners.items():
            want = device.endpoint_up(proto)
            if want and not listener.is_open:
                try:
                    await listener.open()
                except OSError as err:
                    log.warning(
                        "listener_reopen_failed", unit=device.unit_id, proto=proto, error=str(err)
                    )
                    settled = False
            elif not want and listener.is_open:
                await listener.close()
            if not want:
                settled = False  # keep watching until it comes back
        return settled

    def start(self) -> None:
        """Run the watch loop in the background."""
        self._task = asyncio.create_task(self._run(), name="sim-listener-supervisor")

    async def stop(self) -> None:
        """Stop the watch loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # A plain sleep keeps cancellation clean; in 3.11 an asyncio.timeout() whose expiry
        # races a cancel() can swallow the cancel and keep this loop alive forever.
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + SWEEP_INTERVAL_S
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if loop.time() >= next_sweep:
                self._watch.update(self._devices)
                next_sweep = loop.time() + SWEEP_INTERVAL_S
            for unit_id in list(self._watch):
                device = self._devices.get(unit_id)
                if device is None or await self.sync(device):
                    self._watch.discard(unit_id)
