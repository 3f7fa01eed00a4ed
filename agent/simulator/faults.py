"""Per-unit fault injection for the simulated farm: JSON quirks, connection faults, events.

Every behaviour here reproduces something real firmware does (protocols.md §1.1, §3.1, §7).
Faults are plain data on each unit, settable before ``Farm.start()`` and at run time from the
Python API (``device.faults.update(...)``) or the admin endpoint (``POST /units/{id}/fault``).
Events are one-shot actions (``apply_event``): a reboot, a password change, a failed fan ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.simulator.servers.device import SimDevice

#: JSON quirks real firmware emits, each with where it was seen (protocols.md section).
JSON_QUIRKS: dict[str, str] = {
    "trailing_nul": "one NUL byte after the reply (stock bmminer/cgminer, §1.1)",
    "missing_comma": "`}{` with no comma between STATS elements (bmminer 1.0.0, §1.1)",
    "trailing_comma": "`,}` before a closing brace (btminer, §3.1)",
    "duplicate_keys": "temp1..temp4 repeated in one stats object (Hammer D10 capture, §1.1)",
    "non_utf8": "a 0xAA byte inside a string value (pyasic PR #383, §1.1)",
    "numbers_as_strings": 'hashrates as strings, e.g. "GHS 5s": "110566.89" (§1.1)',
    "error_code_dict_list": "API 2.0.4 error_code list written like a dict (§3.1)",
    "missing_comma_temp0": 'no comma before "temp0" in get_psu (btminer 2023-01-06, §3.1)',
    "raw_newline": "a raw newline inside a JSON string (btminer, §3.1)",
    "s9_chain_numbering": "stats chains numbered 6..8 instead of 1..3 (S9-era bmminer, §1.2)",
    "fans_5_8": "stats fans populated in fan5..fan8 instead of fan1..fan4 (§1.2, §7)",
}

#: Connection-level faults (protocols.md §7 "slow/hung/closed-early and garbage-reply modes").
CONNECTION_FAULTS: dict[str, str] = {
    "hang": "accept and read the request, never answer",
    "refuse": "close the listening socket (connection refused)",
    "trickle": "send the reply a few bytes at a time",
    "reset": "send part of the reply, then reset the connection (RST)",
    "garbage": "answer with random bytes of the same length",
    "oversize": "make the reply very large (hundreds of error codes on btminer)",
}

#: The protocol endpoints a connection fault can target.
PROTOCOLS = ("rpc", "web", "v3", "ssh")

#: Trickle defaults: 16 bytes every 0.5 s turns a 4 KiB reply into a > 2 min read,
#: beyond every client read timeout we know of (pyasic 100 s, protocols.md §4.5).
TRICKLE_CHUNK_BYTES = 16
TRICKLE_DELAY_S = 0.5
#: Oversize default: 2 MiB, beyond the 4-64 KiB buffers naive clients read into and beyond
#: a 1 MiB reply cap, so both the truncation and the cap paths of a client get exercised.
OVERSIZE_BYTES = 2 << 20
#: Reset default: send this fraction of the reply before the RST.
RESET_FRACTION = 0.5

#: Quirks a firmware shows by default because the real firmware always does them.
DEFAULT_QUIRKS: dict[str, frozenset[str]] = {
    "antminer": frozenset({"trailing_nul"}),
    "whatsminer_v2": frozenset(),
    "whatsminer_v3": frozenset(),
    "braiins": frozenset(),
}

#: One-shot events the admin endpoint and the Python API accept.
EVENTS = (
    "reboot",
    "restart_process",
    "password_change",
    "write_api",
    "fail_fan",
    "lose_board",
    "degrade_chips",
    "ambient_offset",
    "set_power_limit",
    "set_power_mode",
    "set_mining",
)


class FaultError(ValueError):
    """A fault or event specification is invalid."""


@dataclass
class Faults:
    """The fault state of one simulated unit; mutable at run time."""

    quirks: set[str] = field(default_factory=set)
    connection: str | None = None
    #: Which endpoints the connection fault hits; empty means all of them.
    scope: set[str] = field(default_factory=set)
    trickle_chunk_bytes: int = TRICKLE_CHUNK_BYTES
    trickle_delay_s: float = TRICKLE_DELAY_S
    oversize_bytes: int = OVERSIZE_BYTES
    reset_fraction: float = RESET_FRACTION
    #: Antminer: `+` multi-commands answered with "Invalid command" (pyasic issue #57).
    reject_multicommand: bool = False
    #: Whatsminer: port 4028 answers like V2 but broken/partial (V3 firmware, issue #363).
    v2_broken: bool = False
    #: Antminer web: set_miner_conf applies, then drops the HTTP response (field reports).
    drop_set_conf_response: bool = False
    #: Antminer web: set_miner_conf restarts the miner process for this many seconds.
    set_conf_restart_s: float = 0.0

    def connection_for(self, proto: str) -> str | None:
        """Return the connection fault active for one endpoint, if any."""
        if self.connection is None:
            return None
        if self.scope and proto not in self.scope:
            return None
        return self.connection

    def update(self, spec: dict[str, Any]) -> None:
        """Apply a partial fault specification (the admin endpoint's JSON body)."""
        for key, value in spec.items():
            if key == "quirks":
                self.quirks = _quirk_set(value)
            elif key == "add_quirks":
                self.quirks |= _quirk_set(value)
            elif key == "remove_quirks":
                self.quirks -= _quirk_set(value)
            elif key == "connection":
                if value is not None and value not in CONNECTION_FAULTS:
                    raise FaultError(f"unknown connection fault {value!r}")
                self.connection = value
            elif key == "scope":
                scope = {value} if isinstance(value, str) else set(value or ())
                if not scope <= set(PROTOCOLS):
                    raise FaultError(f"scope must be a subset of {PROTOCOLS}")
                self.scope = scope
            elif key in _NUMERIC:
                self._set_number(key, value)
            elif key in _FLAGS:
                setattr(self, key, bool(value))
            else:
                raise FaultError(f"unknown fault field {key!r}")

    def _set_number(self, key: str, value: Any) -> None:
        kind, low = _NUMERIC[key]
        try:
            number = kind(value)
        except (TypeError, ValueError) as err:
            raise FaultError(f"{key} must be a number") from err
        if number < low:
            raise FaultError(f"{key} must be >= {low}")
        setattr(self, key, number)

    def clear(self, firmware: str) -> None:
        """Back to the firmware's normal behaviour."""
        fresh = Faults.for_firmware(firmware)
        self.__dict__.update(fresh.__dict__)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly view."""
        return {
            "quirks": sorted(self.quirks),
            "connection": self.connection,
            "scope": sorted(self.scope),
            "trickle_chunk_bytes": self.trickle_chunk_bytes,
            "trickle_delay_s": self.trickle_delay_s,
            "oversize_bytes": self.oversize_bytes,
            "reset_fraction": self.reset_fraction,
            "reject_multicommand": self.reject_multicommand,
            "v2_broken": self.v2_broken,
            "drop_set_conf_response": self.drop_set_conf_response,
            "set_conf_restart_s": self.set_conf_restart_s,
        }

    @classmethod
    def for_firmware(cls, firmware: str) -> Faults:
        """Build the default (fault-free, but realistic) state for a firmware."""
        return cls(
            quirks=set(DEFAULT_QUIRKS.get(firmware, frozenset())),
            v2_broken=firmware == "whatsminer_v3",
        )


_NUMERIC: dict[str, tuple[type, float]] = {
    "trickle_chunk_bytes": (int, 1),
    "trickle_delay_s": (float, 0.0),
    "oversize_bytes": (int, 1),
    "reset_fraction": (float, 0.0),
    "set_conf_restart_s": (float, 0.0),
}
_FLAGS = ("reject_multicommand", "v2_broken", "drop_set_conf_response")


def _quirk_set(value: Any) -> set[str]:
    quirks = {value} if isinstance(value, str) else set(value or ())
    unknown = quirks - set(JSON_QUIRKS)
    if unknown:
        raise FaultError(f"unknown JSON quirks {sorted(unknown)}")
    return quirks


def apply_event(device: SimDevice, kind: str, params: dict[str, Any] | None = None) -> None:
    """Apply one event to a unit (physics through ``SimUnit``, credentials on the device)."""
    params = params or {}
    unit = device.unit
    try:
        if kind == "reboot":
            unit.reboot()
        elif kind == "restart_process":
            down = params.get("down_s")
            unit.restart_process(None if down is None else float(down))
        elif kind == "password_change":
            device.set_password(str(params["password"]))
        elif kind == "write_api":
            device.write_api = bool(params.get("enabled", True))
        elif kind == "fail_fan":
            unit.fail_fan(int(params.get("index", 0)))
        elif kind == "lose_board":
            unit.lose_board(int(params.get("index", 0)))
        elif kind == "degrade_chips":
            unit.degrade_chips(int(params.get("board", 0)), int(params.get("n", 1)))
        elif kind == "ambient_offset":
            unit.set_ambient_offset(float(params["delta_c"]))
        elif kind == "set_power_limit":
            unit.set_power_limit(float(params["watts"]))
        elif kind == "set_power_mode":
            unit.set_power_mode(str(params["mode"]))
        elif kind == "set_mining":
            unit.set_mining(bool(params["on"]))
        else:
            raise FaultError(f"unknown event {kind!r}; known: {', '.join(EVENTS)}")
    except KeyError as err:
        raise FaultError(f"event {kind!r} needs parameter {err.args[0]!r}") from err
    except (TypeError, ValueError) as err:
        if isinstance(err, FaultError):
            raise
        raise FaultError(f"event {kind!r}: {err}") from err
    device.changed()
