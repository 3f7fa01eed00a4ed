"""Frozen value types that cross layer boundaries: snapshots, settings, capabilities.

Units are in field names. A reading the firmware does not report is ``None``, never ``0``;
a list (``fans_rpm``, ``error_codes``, ``boards``, ``pools``) that was not read this poll is
``None``, and ``()`` means it was read and is empty.
``MinerSnapshot.to_dict()`` is a contract read by other tools (see README, "Snapshot JSON").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

Make = Literal["antminer", "whatsminer", "braiins"]
PowerMode = Literal["normal", "low", "high", "sleep"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BoardReading:
    """One hashboard at one instant."""

    slot: int
    hashrate_ths: float | None = None
    board_temp_c: float | None = None
    chip_temp_c: float | None = None
    chips: int | None = None
    expected_chips: int | None = None
    freq_mhz: float | None = None


@dataclass(frozen=True, slots=True)
class PoolReading:
    """One configured pool at one instant."""

    url: str
    user: str
    status: str | None = None
    accepted: int | None = None
    rejected: int | None = None


@dataclass(frozen=True, slots=True)
class MinerSnapshot:
    """Everything one successful poll learned about one miner."""

    miner_id: str
    host: str
    ts: datetime
    make: Make
    model: str | None = None
    firmware: str | None = None
    hashrate_ths: float | None = None
    hashrate_avg_ths: float | None = None
    expected_hashrate_ths: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    power_mode: str | None = None
    env_temp_c: float | None = None
    #: ``None``: not read this poll (its command failed); ``()``: read, no fans.
    fans_rpm: tuple[int, ...] | None = None
    uptime_s: int | None = None
    is_mining: bool | None = None
    hw_errors: int | None = None
    accepted: int | None = None
    rejected: int | None = None
    #: ``None``: not read this poll; ``()``: read, no active error codes.
    error_codes: tuple[str, ...] | None = None
    #: ``None``: not read this poll; ``()``: read, no boards reported.
    boards: tuple[BoardReading, ...] | None = None
    #: ``None``: not read this poll; ``()``: read, no pools configured.
    pools: tuple[PoolReading, ...] | None = None

    @property
    def max_chip_temp_c(self) -> float | None:
        """Hottest chip temperature over all boards, or ``None`` if none reported."""
        temps = [b.chip_temp_c for b in self.boards or () if b.chip_temp_c is not None]
        return max(temps) if temps else None

    @property
    def max_board_temp_c(self) -> float | None:
        """Hottest board temperature, or ``None`` if none reported."""
        temps = [b.board_temp_c for b in self.boards or () if b.board_temp_c is not None]
        return max(temps) if temps else None

    @property
    def efficiency_j_per_th(self) -> float | None:
        """Measured J/TH when both power and hashrate are reported and hashrate > 0."""
        if self.power_w is None or not self.hashrate_ths:
            return None
        return self.power_w / self.hashrate_ths

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready contract form (``ts`` as ISO 8601 UTC, unread lists ``None``)."""
        out = dataclasses.asdict(self)
        out["ts"] = self.ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
        for name in ("fans_rpm", "error_codes", "boards", "pools"):
            value = out[name]
            out[name] = None if value is None else list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MinerSnapshot:
        """Rebuild a snapshot from :meth:`to_dict` output."""
        d = dict(data)
        ts = d["ts"]
        if isinstance(ts, str):
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        d["ts"] = ts
        d["fans_rpm"] = _tuple(d.get("fans_rpm"), int)
        d["error_codes"] = _tuple(d.get("error_codes"), str)
        d["boards"] = _tuple(d.get("boards"), lambda b: BoardReading(**b))
        d["pools"] = _tuple(d.get("pools"), lambda p: PoolReading(**p))
        return cls(**d)


def _tuple(items: list[Any] | None, make: Callable[[Any], T]) -> tuple[T, ...] | None:
    """Convert a JSON list to a tuple of ``make(item)``; ``null`` (not read) stays ``None``."""
    return None if items is None else tuple(make(item) for item in items)


@dataclass(frozen=True, slots=True)
class Settings:
    """Operator-facing power settings; ``None`` means "leave as it is"."""

    power_limit_w: float | None = None
    power_mode: PowerMode | None = None
    power_percent: float | None = None
    mining: bool | None = None
    #: Direct board clock and voltage (Braiins-style manual tuning); only where a driver
    #: offers ``freq_mhz``/``voltage_v`` knobs, and always as a pair.
    freq_mhz: float | None = None
    voltage_v: float | None = None

    def changed_fields(self) -> dict[str, Any]:
        """Return only the fields this request sets."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class Knob:
    """One control a driver offers, with its bounds and its cost."""

    name: str
    kind: Literal["continuous", "discrete"]
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    restarts: bool = False
    #: Seconds of lost or ramping hashrate after applying (restart + ramp), if it restarts.
    restart_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a driver can read and control on this unit."""

    reports_power: bool
    knobs: tuple[Knob, ...] = ()

    def knob(self, name: str) -> Knob | None:
        """Return the knob called ``name``, if this unit offers it."""
        return next((k for k in self.knobs if k.name == name), None)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply did: the settings requested and what the miner reported after."""

    requested: Settings
    accepted: bool
    restarted: bool = False
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)
