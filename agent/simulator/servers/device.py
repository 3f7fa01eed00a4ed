"""One simulated miner as the network sees it: identity, credentials, configuration, endpoints.

The physics lives in ``SimUnit`` (agent/simulator/unit.py); this object holds what a real
controller board holds besides physics: serial numbers and MAC, the admin password, the pool
list, the LED and API switches. Whether the mining process runs is physics (``SimUnit``).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.simulator.faults import Faults

if TYPE_CHECKING:
    from agent.profiles import HardwareProfile

#: Firmware flavours a unit can run.
FIRMWARES = ("antminer", "whatsminer_v2", "whatsminer_v3", "braiins")
#: The agent driver that speaks each firmware (inventory ``driver`` field).
DRIVER_OF = {
    "antminer": "antminer",
    "whatsminer_v2": "whatsminer",
    "whatsminer_v3": "whatsminer",
    "braiins": "braiins",
}
#: Factory-default logins per firmware (protocols.md §1.4, §2, §3.4, §3.5).
DEFAULT_LOGIN = {
    "antminer": ("root", "root"),
    "whatsminer_v2": ("admin", "admin"),
    "whatsminer_v3": ("super", "super"),
    "braiins": ("root", "root"),
}
#: Whatsminer variant codes per profile id, chosen so pyasic 0.79.0's per-variant chip count
#: equals the profile's chips_per_board (M30SV10 148, M50VH30 117) or taken from a capture
#: (M60S_VK40: fixtures whatsminer/v3, 75 effective chips per board).
WHATSMINER_VARIANT = {"m30s": "M30S_V10", "m50": "M50_VH30", "m60s": "M60S_VK40"}
#: Real ports per endpoint (protocols.md §1.1, §1.4, §2, §3.5).
REAL_PORTS = {"rpc": 4028, "web": 80, "v3": 4433, "ssh": 22}
#: Endpoints each firmware serves.
ENDPOINTS = {
    "antminer": ("rpc", "web"),
    "whatsminer_v2": ("rpc",),
    "whatsminer_v3": ("rpc", "v3"),
    "braiins": ("rpc", "ssh"),
}


@dataclass
class Ports:
    """The TCP port of each endpoint a unit serves (None = not served)."""

    rpc: int | None = None
    web: int | None = None
    v3: int | None = None
    ssh: int | None = None

    def as_dict(self) -> dict[str, int]:
        """Only the endpoints that exist."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Pool:
    """One configured pool."""

    url: str
    user: str
    password: str = "x"  # noqa: S105 - the conventional pool password, not a secret


@dataclass(frozen=True)
class Identity:
    """Serial numbers and network identity, deterministic per unit seed."""

    serial: str
    mac: str
    hostname: str
    board_serials: tuple[str, ...]
    psu_serial: str
    miner_id: str


def make_identity(rng: random.Random, firmware: str, boards: int) -> Identity:
    """Plausible, clearly synthetic identifiers (locally administered MAC, 02:...)."""
    upper = string.ascii_uppercase + string.digits
    mac = "02:" + ":".join(f"{rng.randrange(256):02X}" for _ in range(5))
    if firmware.startswith("whatsminer"):
        serial = "HTM3SIM" + "".join(rng.choices(string.digits, k=26))
        boards_sn = tuple("HKM3SIM" + "".join(rng.choices(upper, k=13)) for _ in range(boards))
        hostname = "WhatsMiner"
    else:
        serial = "SIM" + "".join(rng.choices(upper, k=14))
        boards_sn = tuple("SIM" + "".join(rng.choices(upper, k=14)) for _ in range(boards))
        hostname = "Antminer"
    return Identity(
        serial=serial,
        mac=mac,
        hostname=hostname,
        board_serials=boards_sn,
        psu_serial="SIM" + "".join(rng.choices(string.digits, k=12)),
        miner_id="".join(rng.choices("0123456789abcdef", k=16)),
    )


def default_pools(unit_id: str) -> list[Pool]:
    """Three pools like the captured replies (example.pool hosts, fixtures whatsminer/v2)."""
    user = f"hashpilot.{unit_id}"
    return [
        Pool("stratum+tcp://btc.example.pool:3333", user),
        Pool("stratum+tcp://btc2.example.pool:3333", user),
        Pool("stratum+tcp://btc3.example.pool:3333", user),
    ]


class SimDevice:
    """A simulated miner's controller: everything but the physics."""

    def __init__(
        self,
        unit_id: str,
        unit: Any,
        profile: HardwareProfile,
        firmware: str,
        host: str,
        ports: Ports,
        *,
        password: str | None = None,
        seed: int = 0,
        credential_name: str = "default",
    ) -> None:
        if firmware not in FIRMWARES:
            raise ValueError(f"unknown firmware {firmware!r}")
        self.unit_id = unit_id
        self.unit = unit
        self.profile = profile
        self.firmware = firmware
        self.driver = DRIVER_OF[firmware]
        self.host = host
        self.ports = ports
        self.credential_name = credential_name
        self.rng = random.Random(seed)
        self.identity = make_identity(self.rng, firmware, profile.hardware.boards)
        self.username, default_password = DEFAULT_LOGIN[firmware]
        self.password = password if password is not None else default_password
        #: What the inventory's secrets file holds; a later password change is not reflected.
        self.initial_password = self.password
        self.faults = Faults.for_firmware(firmware)
        #: Whatsminer "API switch" for writes (WhatsMinerTool, protocols.md §3.4).
        self.write_api = True
        self.pools = default_pools(unit_id)
        self.led_on = False
        self.fan_ctrl = False
        self.fan_pwm = "100"
        #: Per-protocol state owned by the server modules (tokens, salts, configs).
        self.state: dict[str, Any] = {}
        self._on_change: Callable[[SimDevice], None] | None = None
        self.listeners: dict[str, Any] = {}

    # -- identity ---------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The model string this firmware reports (version Type / devdetails Model)."""
        return model_string(self.profile, self.firmware)

    @property
    def clock(self) -> Any:
        """The farm's simulated clock."""
        return self.unit.clock

    def now(self) -> float:
        """Return simulated epoch seconds."""
        return float(self.clock.now())

    def when(self) -> int:
        """Return the integer timestamp firmware puts in ``When``."""
        return int(self.now())

    def reading(self) -> Any:
        """One physics reading (computed lazily, once per request)."""
        return self.unit.reading()

    # -- state changes ----------------------------------------------------------------------

    def set_password(self, password: str) -> None:
        """Change the admin password (invalidates Whatsminer V2 tokens, like the real unit)."""
        self.password = password
        self.state.pop("v2_tokens", None)

    def on_change(self, callback: Callable[[SimDevice], None]) -> None:
        """Register the farm's listener supervisor."""
        self._on_change = callback

    def changed(self) -> None:
        """Tell the supervisor that availability may have changed."""
        if self._on_change is not None:
            self._on_change(self)

    def restart_process(self, seconds: float | None = None) -> None:
        """Restart the mining process (``SimUnit.restart_process``) and re-check the listeners.

        The API is down while the process is (``seconds``, default the firmware's own
        restart outage), then hashrate ramps back and counters and Elapsed restart.
        """
        self.unit.restart_process(seconds)
        self.changed()

    def elapsed(self, reading: Any) -> int:
        """Seconds since the mining process started (the physics' process uptime)."""
        return int(reading.elapsed_s)

    # -- availability -----------------------------------------------------------------------

    def endpoint_up(self, proto: str) -> bool:
        """Whether an endpoint's listening socket should be open right now."""
        if self.faults.connection_for(proto) == "refuse":
            return False
        if proto in ("rpc", "v3"):
            if not self.unit.is_up():
                return False
            return not (self.firmware == "braiins" and not self.state.get("bosminer_running", True))
        return bool(self.unit.web_up())

    def summary(self) -> dict[str, Any]:
        """Describe this unit for the admin endpoint."""
        return {
            "id": self.unit_id,
            "host": self.host,
            "firmware": self.firmware,
            "driver": self.driver,
            "profile": self.profile.id,
            "model": self.model,
            "ports": self.ports.as_dict(),
            "endpoints": {p: self.endpoint_up(p) for p in self.ports.as_dict()},
            "faults": self.faults.to_dict(),
        }


def model_string(profile: HardwareProfile, firmware: str) -> str:
    """Return the firmware's model string for a profile.

    Antminer and Braiins report the marketing name ("Antminer S19j Pro"); Whatsminer reports a
    variant code like "M30S+_VE40" (devdetails ``Model``, V3 ``miner.type``): from the table
    above, else a profile alias of that shape, else "<model>_V10".
    """
    if firmware.startswith("whatsminer"):
        if profile.id in WHATSMINER_VARIANT:
            return WHATSMINER_VARIANT[profile.id]
        for alias in profile.aliases:
            if alias.upper().startswith("M") and "_V" in alias.upper():
                return alias
        core = profile.name.replace("Whatsminer", "").replace("WhatsMiner", "").strip()
        return f"{core.replace(' ', '')}_V10"
    name = profile.name
    return name if name.lower().startswith("antminer") else f"Antminer {name}"
