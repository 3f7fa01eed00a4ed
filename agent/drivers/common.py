"""Helpers every driver shares: tolerant field extraction, capability building, bound checks."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from agent.errors import MinerResponseError, UnsafeSettingsError, UnsupportedMinerError
from agent.profiles import FirmwareKnobs, HardwareProfile, find_profile
from agent.protocols.quirks import integer, number
from agent.snapshot import Capabilities, Knob, PoolReading, Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Exceptions a field parser may raise on an odd reply; anything else is a bug and propagates.
FIELD_ERRORS = (LookupError, TypeError, ValueError, AttributeError, ZeroDivisionError)

#: Firmware power limits are integer watts (btminer `power_limit`, bosminer `power_target`).
POWER_LIMIT_STEP_W = 1.0
#: Whatsminer `set_power_pct` / V3 `power_percent` accept integers 0-100 (protocols.md §3.3).
POWER_PERCENT_MIN = 0.0
POWER_PERCENT_MAX = 100.0
POWER_PERCENT_STEP = 1.0
#: cgminer-style `MHS …` fields (btminer V2, bosminer) are MH/s.
MHS_TO_THS = 1e-6
#: Choices of the on/off knob (`Settings.mining` as text).
MINING_CHOICES = ("true", "false")
#: Identity replies (model name, firmware build, API version) change only with a firmware
#: upgrade, and an upgrade restarts the miner: they are re-read hourly and after any restart
#: (uptime went backwards), not on every poll, where they cost a request each.
IDENTITY_REFRESH_S = 3600.0


class Fields:
    """Extract snapshot fields one by one; a field that cannot be read becomes ``None``."""

    def __init__(self, host: str) -> None:
        self.host = host
        #: Names of fields that failed to parse in this read (for tests and diagnostics).
        self.failed: list[str] = []

    def get(self, name: str, parse: Callable[[], T | None]) -> T | None:
        """Return ``parse()``, or ``None`` (logged at debug) if the reply lacks or garbles it."""
        try:
            return parse()
        except FIELD_ERRORS as err:
            self.failed.append(name)
            log.debug("field_unreadable", host=self.host, field=name, error=repr(err))
            return None


def primary_section(host: str, what: str, reply: Any, extract: Callable[[], Any]) -> dict[str, Any]:
    """Return the section a snapshot is built from, or raise ``MinerResponseError``.

    A secondary reply that cannot be parsed leaves its fields ``None``; the primary one
    (the summary) failing means the poll learned nothing trustworthy, so it is a failure,
    never a snapshot of ``None``s that looks like a healthy miner.
    """
    try:
        section = extract()
    except FIELD_ERRORS as err:
        raise MinerResponseError(host, f"{what}: unreadable ({err!r})", _excerpt(reply)) from err
    if not isinstance(section, dict):
        raise MinerResponseError(
            host, f"{what}: a {type(section).__name__}, not an object", _excerpt(reply)
        )
    return section


def _excerpt(reply: Any) -> str:
    """Render a reply as compact JSON for an error excerpt (``repr`` if not serialisable)."""
    try:
        return json.dumps(reply, separators=(",", ":"), default=repr)
    except ValueError:
        return repr(reply)


class IdentityReply:
    """A rarely changing reply (identity), re-read every ``refresh_s`` or after a restart.

    The last good value stays available (a fallback source) while a refresh is due; a failed
    refresh leaves it due, so the next poll asks again.
    """

    def __init__(
        self, refresh_s: float = IDENTITY_REFRESH_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.refresh_s = refresh_s
        self._clock = clock
        self.value: dict[str, Any] | None = None
        self._fetched_at = -math.inf
        self._uptime_s: int | None = None

    def due(self) -> bool:
        """Whether the next poll should read the reply again."""
        return self._clock() - self._fetched_at >= self.refresh_s

    def store(self, value: dict[str, Any] | None) -> None:
        """Keep a freshly read reply (``None``: the read failed, so it stays due)."""
        if value is not None:
            self.value = value
            self._fetched_at = self._clock()

    def saw_uptime(self, uptime_s: int | None) -> None:
        """Note the miner's uptime; if it went backwards the miner restarted: refresh."""
        if uptime_s is None:
            return
        if self._uptime_s is not None and uptime_s < self._uptime_s:
            self._fetched_at = -math.inf
        self._uptime_s = uptime_s


def first(*values: Any) -> Any:
    """Return the first value that is neither ``None`` nor an empty string."""
    return next((v for v in values if v is not None and v != ""), None)


def positive(value: Any) -> float | None:
    """Return ``value`` as a number if it is above zero (firmware sends 0 or -1 for unknown)."""
    num = number(value)
    return num if num is not None and num > 0 else None


def mhs_ths(*values: Any) -> float | None:
    """Return the first numeric value of several MH/s fields, in TH/s."""
    num = next((n for n in (number(v) for v in values) if n is not None), None)
    return None if num is None else num * MHS_TO_THS


def cgminer_pools(pools: dict[str, Any]) -> tuple[PoolReading, ...]:
    """Pools from a cgminer-style `pools` reply (bmminer, btminer V2, bosminer)."""
    return tuple(
        PoolReading(
            url=str(p["URL"]),
            user=str(p.get("User", "")),
            status=p.get("Status"),
            accepted=integer(p.get("Accepted")),
            rejected=integer(p.get("Rejected")),
        )
        for p in pools["POOLS"]
    )


def profile_for(model: str | None, make: str) -> HardwareProfile | None:
    """Return the hardware profile for a firmware-reported model string, if shipped."""
    return find_profile(model, make)


def firmware_knobs(profile: HardwareProfile | None, driver: str) -> FirmwareKnobs | None:
    """Return the profile's knob table for one driver family, if it has one."""
    if profile is None:
        return None
    return next((fk for fk in profile.firmware.values() if fk.driver == driver), None)


def power_limit_knob(
    profile: HardwareProfile | None,
    fk: FirmwareKnobs | None,
    restarts: bool,
) -> Knob:
    """Build a power-limit knob bounded by the profile's safe envelope when known."""
    return Knob(
        name="power_limit_w",
        kind="continuous",
        min=profile.power.min_w if profile else None,
        max=profile.power.max_w if profile else None,
        step=POWER_LIMIT_STEP_W,
        restarts=fk.restarts_on_power_limit if fk else restarts,
        restart_s=fk.restart_s if fk else 0.0,
    )


def power_mode_knob(fk: FirmwareKnobs | None, default_modes: tuple[str, ...]) -> Knob:
    """Build the work-mode knob: the profile's modes, else the driver's defaults.

    A mode change re-tunes the boards (and may restart the mining process), so it is
    counted as a restart to stay conservative.
    """
    modes = tuple(fk.power_modes) if fk and fk.power_modes else default_modes
    return _restarting_choice("power_mode", modes, fk)


def mining_knob(fk: FirmwareKnobs | None) -> Knob:
    """Build the mining on/off knob; stopping and starting the miner counts as a restart."""
    return _restarting_choice("mining", MINING_CHOICES, fk)


def _restarting_choice(name: str, choices: tuple[str, ...], fk: FirmwareKnobs | None) -> Knob:
    """Build a discrete knob whose change costs the profile's restart time."""
    return Knob(
        name, "discrete", choices=choices, restarts=True, restart_s=fk.restart_s if fk else 0.0
    )


def check_settings(host: str, caps: Capabilities, settings: Settings) -> None:
    """Raise unless every requested field is a knob this unit offers, within its bounds."""
    for name, value in settings.changed_fields().items():
        knob = caps.knob(name)
        if knob is None:
            raise UnsupportedMinerError(host, f"this miner offers no {name!r} control")
        if knob.kind == "discrete":
            text = str(value).lower()
            if knob.choices and text not in knob.choices:
                raise UnsafeSettingsError(f"{host}: {name}={value!r} not in {knob.choices}")
            continue
        if (knob.min is not None and value < knob.min) or (
            knob.max is not None and value > knob.max
        ):
            raise UnsafeSettingsError(
                f"{host}: {name}={value} outside the safe range [{knob.min}, {knob.max}]"
            )
