"""Helpers every driver shares: tolerant field extraction, capability building, bound checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog

from agent.errors import UnsafeSettingsError, UnsupportedMinerError
from agent.profiles import FirmwareKnobs, HardwareProfile, find_profile
from agent.snapshot import Capabilities, Knob, Settings

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
