"""The driver interface: meaning on top of protocols. I/O happens only in async verbs."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.errors import UnsupportedMinerError
from agent.snapshot import ApplyResult, Capabilities, MinerSnapshot, Settings


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """How to reach one miner; found once by ``identify`` and cached (serialisable)."""

    host: str
    driver: str  # "antminer" | "whatsminer" | "braiins"
    #: Port overrides for unprivileged simulators: {"rpc": 4028, "web": 80, "v3": 4433, "ssh": 22}.
    ports: dict[str, int] = field(default_factory=dict)
    #: Whatsminer API generation ("v2" or "v3"), when known.
    api: str | None = None
    model: str | None = None
    firmware: str | None = None
    #: Name of a credential set in the agent's secrets, never the secret itself.
    credentials: str = "default"
    miner_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriverConfig:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)

    @property
    def id(self) -> str:
        """Stable miner id: explicit, else host plus non-default RPC port."""
        if self.miner_id:
            return self.miner_id
        port = self.ports.get("rpc") or self.ports.get("v3")
        return f"{self.host}:{port}" if port else self.host


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """One pool to configure on a miner; the password never appears in a repr."""

    url: str
    user: str
    password: str = field(default="x", repr=False)


class MinerDriver(abc.ABC):
    """One miner of one firmware family: read a snapshot, apply settings."""

    config: DriverConfig

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """Knobs and bounds this unit offers (cached; no I/O)."""

    @abc.abstractmethod
    async def read(self) -> MinerSnapshot:
        """Poll the miner once and return a snapshot, or raise a ``MinerError``."""

    @abc.abstractmethod
    async def apply(self, settings: Settings) -> ApplyResult:
        """Send settings to the miner, or raise a ``MinerError``/``ActionError``."""

    async def set_pools(self, pools: Sequence[PoolConfig]) -> ApplyResult:
        """Replace the miner's pool list (default: this driver cannot)."""
        raise UnsupportedMinerError(self.config.host, f"{self.config.driver}: cannot set pools")

    async def close(self) -> None:
        """Release pooled connections (default: nothing to release)."""
        return None
