"""A whole farm of simulated miners on loopback, in one asyncio process.

By default every unit gets its own loopback address (127.0.x.y, counting up from
``base_address``) with the REAL ports (4028, 4433, 80, 22), so unmodified clients such as
pyasic work; binding 80/22 needs root. ``ports_mode=True`` puts every unit on 127.0.0.1
with ephemeral ports instead, for unprivileged runs and tests. ``write_inventory`` writes
the agent's inventory TOML plus a 0700 secrets directory (one TOML file per credential name)
and, for Braiins units, a known_hosts file pinning the simulator's SSH host keys.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import resource
import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from agent.profiles import HardwareProfile, load_profiles
from agent.simulator.servers import (
    antminer,
    antminer_web,
    braiins,
    cgminer,
    whatsminer_v2,
    whatsminer_v3,
)
from agent.simulator.servers.device import ENDPOINTS, FIRMWARES, REAL_PORTS, Ports, SimDevice
from agent.simulator.servers.listeners import (
    Connections,
    HandlerErrors,
    Listener,
    Supervisor,
    stream_starter,
)

log = structlog.get_logger(__name__)

#: Listeners opened concurrently at start (bounded so 10k binds do not flood the loop).
OPEN_BATCH = 256
#: Default first loopback address: 127.0.0.1 stays free for the agent and other tools.
DEFAULT_BASE_ADDRESS = "127.0.1.1"
#: Whatsminer passwords: writes need a non-default one (protocols.md §3.4), at most 8
#: characters (update_pwd limit, §3.3).
WM_PASSWORD_LEN = 8

UnitFactory = Callable[[str, HardwareProfile, str, int, Any], Any]


def default_firmware(make: str, rng: random.Random, braiins: float, wm_v3: float) -> str:
    """Pick a firmware for one unit of a make, by the configured fractions."""
    if make == "antminer":
        return "braiins" if rng.random() < braiins else "antminer"
    return "whatsminer_v3" if rng.random() < wm_v3 else "whatsminer_v2"


def _addresses(base: str) -> Any:
    """Yield loopback addresses from ``base`` up, skipping .0 and .255 host octets."""
    ip = ipaddress.IPv4Address(base)
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    while True:
        if ip not in loopback:
            raise ValueError(f"ran out of loopback addresses at {ip}")
        if ip.packed[-1] not in (0, 255):
            yield str(ip)
        ip += 1


class Farm:
    """Many simulated miners served from one event loop."""

    def __init__(
        self,
        mix: dict[str, int],
        seed: int = 1,
        speed: float = 1.0,
        base_address: str = DEFAULT_BASE_ADDRESS,
        *,
        ports_mode: bool = False,
        braiins_fraction: float = 0.0,
        whatsminer_v3_fraction: float = 0.0,
        bos_old_schema_fraction: float = 0.0,
        clock: Any = None,
        start_time: float | None = None,
        profiles: dict[str, HardwareProfile] | None = None,
        unit_factory: UnitFactory | None = None,
        faults: dict[str, dict[str, Any]] | None = None,
        state_dir: Path | None = None,
        admin_port: int | None = None,
        admin_host: str = "127.0.0.1",
    ) -> None:
        """``mix`` maps profile id (optionally ``id/firmware``) to a unit count."""
        if clock is None:
            from agent.simulator.clock import SimClock

            clock = SimClock(speed=speed, start=start_time)
        if unit_factory is None:
            from agent.simulator.unit import SimUnit

            unit_factory = SimUnit
        self.clock = clock
        self.seed = seed
        self.ports_mode = ports_mode
        self.base_address = base_address
        self.admin_host = admin_host
        self.admin_port = admin_port
        self._state_dir = state_dir
        self.connections = Connections()
        self.units: dict[str, SimDevice] = {}
        self._listeners: list[Listener] = []
        self._supervisor = Supervisor(self.units)
        self._admin: Any = None
        self._host_keys: Any = None
        self._started = False
        profiles = profiles if profiles is not None else load_profiles()
        rng = random.Random(seed)
        pw_chars = string.ascii_letters + string.digits
        self.passwords = {
            "whatsminer_v2": "".join(rng.choices(pw_chars, k=WM_PASSWORD_LEN)),
            "whatsminer_v3": "".join(rng.choices(pw_chars, k=WM_PASSWORD_LEN)),
        }
        hosts = _addresses(base_address)
        counters: dict[str, int] = {}
        for key, count in mix.items():
            profile_id, _, forced = key.partition("/")
            if profile_id not in profiles:
                raise ValueError(
                    f"unknown hardware profile {profile_id!r}; known: {', '.join(sorted(profiles))}"
                )
            if forced and forced not in FIRMWARES:
                raise ValueError(f"unknown firmware {forced!r} in mix key {key!r}")
            profile = profiles[profile_id]
            for _ in range(int(count)):
                firmware = forced or default_firmware(
                    profile.make, rng, braiins_fraction, whatsminer_v3_fraction
                )
                counters[profile_id] = counters.get(profile_id, 0) + 1
                unit_id = f"{profile_id}-{counters[profile_id]:04d}"
                unit_seed = seed * 1_000_003 + len(self.units)
                unit = unit_factory(unit_id, profile, firmware, unit_seed, clock)
                host = "127.0.0.1" if ports_mode else next(hosts)
                ports = Ports(
                    **{p: (0 if ports_mode else REAL_PORTS[p]) for p in ENDPOINTS[firmware]}
                )
                device = SimDevice(
                    unit_id,
                    unit,
                    profile,
                    firmware,
                    host,
                    ports,
                    password=self.passwords.get(firmware),
                    seed=unit_seed,
                    credential_name=f"sim-{firmware.replace('_', '-')}",
                )
                if firmware == "braiins":
                    old = rng.random() < bos_old_schema_fraction
                    device.state["bos_schema"] = braiins.SCHEMA_OLD if old else braiins.SCHEMA_NEW
                    braiins.boot(device)
                device.on_change(self._supervisor.notify)
                self.units[unit_id] = device
        for unit_id, spec in (faults or {}).items():
            self.device(unit_id).faults.update(spec)

    # -- lookup -----------------------------------------------------------------------------

    def device(self, unit_id: str) -> SimDevice:
        """One unit by id (KeyError names the unknown id)."""
        try:
            return self.units[unit_id]
        except KeyError:
            raise KeyError(f"unknown unit {unit_id!r}") from None

    @property
    def state_dir(self) -> Path:
        """Where the simulator writes secrets, host keys and known_hosts."""
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="hashpilot-sim-"))
        self._state_dir.mkdir(parents=True, exist_ok=True)
        return self._state_dir

    @property
    def handler_errors(self) -> HandlerErrors:
        """Simulator bugs caught in connection handlers (count, last unit and traceback)."""
        return self.connections.errors

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every unit's endpoints, start the supervisor and the admin endpoint."""
        if self._started:
            return
        raise_fd_limit()
        if any(d.firmware == "braiins" for d in self.units.values()):
            from agent.simulator.servers.ssh import HostKeys

            self._host_keys = await asyncio.to_thread(HostKeys)
            self._host_keys.write(self.state_dir)
        for device in self.units.values():
            for proto, port in device.ports.as_dict().items():
                listener = Listener(device, proto, device.host, port, self._starter(device, proto))
                device.listeners[proto] = listener
                self._listeners.append(listener)
        try:
            for i in range(0, len(self._listeners), OPEN_BATCH):
                batch = self._listeners[i : i + OPEN_BATCH]
                await asyncio.gather(
                    *(lst.open() for lst in batch if lst.device.endpoint_up(lst.proto))
                )
        except OSError:
            await self.stop()
            raise
        for device in self.units.values():
            for proto, listener in device.listeners.items():
                setattr(device.ports, proto, listener.port)
        self._supervisor.start()
        self._started = True
        if self.admin_port is not None:
            from agent.simulator.admin import AdminServer

            self._admin = AdminServer(self, self.admin_host, self.admin_port)
            await self._admin.start()
            self.admin_port = self._admin.port
        log.info(
            "sim_farm_started",
            units=len(self.units),
            listeners=len(self._listeners),
            ports_mode=self.ports_mode,
        )

    async def stop(self) -> None:
        """Close every listener and connection; idempotent."""
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        await self._supervisor.stop()
        for i in range(0, len(self._listeners), OPEN_BATCH):
            await asyncio.gather(*(lst.close() for lst in self._listeners[i : i + OPEN_BATCH]))
        await self.connections.cancel_all()
        self._started = False
        log.info(
            "sim_farm_stopped", units=len(self.units), handler_errors=self.handler_errors.count
        )

    async def __aenter__(self) -> Farm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _starter(self, device: SimDevice, proto: str) -> Any:
        if proto == "ssh":
            from agent.simulator.servers.ssh import create_server

            keys = self._host_keys
            errors = self.connections.errors

            async def start_ssh(host: str, port: int) -> Any:
                return await create_server(device, host, port, keys, errors)

            return start_ssh
        if proto == "web":
            return stream_starter(device, antminer_web.serve_connection, self.connections)
        if proto == "v3":
            return stream_starter(device, whatsminer_v3.serve_connection, self.connections)
        dispatch = {
            "antminer": antminer.dispatch,
            "whatsminer_v2": whatsminer_v2.dispatch,
            "whatsminer_v3": whatsminer_v2.dispatch,
            "braiins": braiins.dispatch,
        }[device.firmware]

        async def rpc(
            dev: SimDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await cgminer.serve_connection(dev, reader, writer, dispatch)

        return stream_starter(device, rpc, self.connections)

    # -- faults -----------------------------------------------------------------------------

    def set_fault(self, unit_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Update one unit's faults (``{"clear": true}`` resets them); returns the new state."""
        device = self.device(unit_id)
        spec = dict(spec)
        if spec.pop("clear", False):
            device.faults.clear(device.firmware)
        device.faults.update(spec)
        device.changed()
        return device.faults.to_dict()

    # -- inventory --------------------------------------------------------------------------

    def write_inventory(self, path: Path, secrets_dir: Path | None = None) -> Path:
        """Write the agent inventory TOML, the secrets directory and known_hosts."""
        if not self._started:
            raise RuntimeError("start() the farm first: ports are known only once bound")
        path = Path(path)
        secrets = Path(secrets_dir) if secrets_dir is not None else self.state_dir / "secrets"
        secrets.mkdir(parents=True, exist_ok=True)
        secrets.chmod(0o700)
        written: set[str] = set()
        known_hosts = self.state_dir / "known_hosts"
        kh_lines: list[str] = []
        out = [f"secrets_dir = {_toml_str(str(secrets.resolve()))}", ""]
        for device in self.units.values():
            name = device.credential_name
            if name not in written:
                _write_secret(secrets / name, device.username, device.initial_password)
                written.add(name)
            out.append("[[miners]]")
            out.append(f"id = {_toml_str(device.unit_id)}")
            out.append(f"host = {_toml_str(device.host)}")
            out.append(f"driver = {_toml_str(device.driver)}")
            if device.driver == "whatsminer":
                api = "v3" if device.firmware == "whatsminer_v3" else "v2"
                out.append(f"api = {_toml_str(api)}")
            out.append(f"model = {_toml_str(device.model)}")
            out.append(f"credentials = {_toml_str(name)}")
            ports = ", ".join(f"{k} = {v}" for k, v in device.ports.as_dict().items())
            out.append(f"ports = {{ {ports} }}")
            if device.firmware == "braiins" and self._host_keys is not None:
                out.append(f"known_hosts = {_toml_str(str(known_hosts.resolve()))}")
                kh_lines += self._host_keys.known_hosts_lines(device.host, device.ports.ssh)
            out.append("")
        if kh_lines:
            known_hosts.write_text("\n".join(kh_lines) + "\n", encoding="utf-8")
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("\n".join(out), encoding="utf-8")
        os.replace(tmp, path)
        return path


def _toml_str(value: str) -> str:
    """Quote a TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(value)


def _write_secret(path: Path, username: str, password: str) -> None:
    """One credential file, 0600 from creation (never world-readable even briefly)."""
    text = f"username = {_toml_str(username)}\npassword = {_toml_str(password)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    path.chmod(0o600)


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard limit (two sockets per unit and more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
