"""The simulator's admin HTTP endpoint: ground truth and fault injection (not a miner API).

``GET /units``, ``GET /units/{id}``, ``GET /units/{id}/truth`` (true power, hashrate and
temperatures from ``SimUnit.reading()``), ``POST /units/{id}/fault`` (a fault spec, see
``agent.simulator.faults``), ``POST /units/{id}/event`` (``{"kind": ..., "params": {...}}``),
``GET /clock`` and ``POST /clock/advance`` (``{"seconds": n}``). Runs inside the farm's
event loop on its own port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn
from fastapi import Body, FastAPI, HTTPException

from agent.simulator.faults import FaultError, apply_event

if TYPE_CHECKING:
    from agent.simulator.farm import Farm

log = structlog.get_logger(__name__)

#: How long start() waits for uvicorn to report it is serving.
STARTUP_TIMEOUT_S = 10.0
#: How long stop() waits for uvicorn to finish open requests.
SHUTDOWN_TIMEOUT_S = 5.0
#: Poll interval while waiting for uvicorn's ``started`` flag.
STARTUP_POLL_S = 0.02


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and numpy scalars to JSON-friendly values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def create_app(farm: Farm) -> FastAPI:
    """Build the admin API bound to one farm.

    Handlers are ``async`` so they run on the farm's event loop, never in a worker thread
    next to the protocol servers.
    """
    app = FastAPI(title="hashpilot-sim admin", docs_url=None, redoc_url=None)

    def unit(unit_id: str) -> Any:
        try:
            return farm.device(unit_id)
        except KeyError as err:
            raise HTTPException(status_code=404, detail=str(err)) from err

    @app.get("/units")
    async def list_units() -> list[dict[str, Any]]:
        """Every unit with its endpoints and faults."""
        return [d.summary() for d in farm.units.values()]

    @app.get("/units/{unit_id}")
    async def get_unit(unit_id: str) -> dict[str, Any]:
        """One unit."""
        return dict(unit(unit_id).summary())

    @app.get("/units/{unit_id}/truth")
    async def truth(unit_id: str) -> dict[str, Any]:
        """Ground truth: the physics reading, settings and availability."""
        device = unit(unit_id)
        reading = _plain(device.reading())
        return {
            "id": device.unit_id,
            "up": bool(device.unit.is_up()),
            "web_up": bool(device.unit.web_up()),
            "settings": _plain(device.unit.settings),
            "reading": reading,
        }

    @app.post("/units/{unit_id}/fault")
    async def fault(unit_id: str, spec: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        """Change the unit's faults; returns the new fault state."""
        unit(unit_id)
        try:
            return farm.set_fault(unit_id, spec)
        except FaultError as err:
            raise HTTPException(status_code=400, detail=str(err)) from err

    @app.post("/units/{unit_id}/event")
    async def event(unit_id: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        """Apply one event (reboot, password_change, fail_fan, lose_board, ...)."""
        device = unit(unit_id)
        kind = str(body.get("kind", body.get("event", "")))
        try:
            apply_event(device, kind, body.get("params") or {})
        except FaultError as err:
            raise HTTPException(status_code=400, detail=str(err)) from err
        return {"id": unit_id, "event": kind, "ok": True}

    @app.get("/clock")
    async def clock() -> dict[str, Any]:
        """Report simulated time."""
        return {"now": farm.clock.now(), "speed": getattr(farm.clock, "speed", None)}

    @app.post("/clock/advance")
    async def advance(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        """Move simulated time forward."""
        try:
            seconds = float(body["seconds"])
            now = farm.clock.advance(seconds)
        except (KeyError, TypeError, ValueError) as err:
            raise HTTPException(status_code=400, detail=f"bad seconds: {err}") from err
        for device in farm.units.values():
            device.changed()
        return {"now": now}

    return app


class _Server(uvicorn.Server):
    """uvicorn inside someone else's loop: the host process owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave SIGINT/SIGTERM to the simulator CLI."""
        yield


class AdminServer:
    """Runs the admin app with uvicorn on the farm's event loop."""

    def __init__(self, farm: Farm, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._farm = farm
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind (port 0 picks a free one) and serve in the background."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self._farm),
            log_config=None,  # leave the process's logging setup alone
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="sim-admin")
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("admin server exited during startup")
                await asyncio.sleep(STARTUP_POLL_S)
        log.info("sim_admin_started", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Ask uvicorn to exit and wait for it."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            self._task.cancel()
        self._server = None
        self._task = None
