"""Edit the power target in a Braiins OS ``bosminer.toml`` without disturbing anything else.

Two schemas exist (protocols.md §2; hass-miner #380): BOS ≤ 21.x uses
``[autotuning] psu_power_limit = W``; newer firmware uses ``mode = "power_target"`` and
``power_target = W``, and each rejects the other's key. The schema is taken from the keys
already present, else from ``[format] version`` (1.x files are the old generation). The
file is edited line by line so comments, pools and every other table survive byte for
byte, and the result is re-parsed to prove the edit says what was meant.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any, Literal

from agent.errors import MinerResponseError

Schema = Literal["old", "new"]
SECTION = "autotuning"
_HEADER = re.compile(r"^\s*\[\s*autotuning\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")


def detect_schema(data: dict[str, Any]) -> Schema:
    """Which key generation this parsed file uses."""
    tuning = data.get(SECTION) or {}
    if "psu_power_limit" in tuning:
        return "old"
    if "power_target" in tuning or "mode" in tuning:
        return "new"
    version = str((data.get("format") or {}).get("version", "2"))
    return "old" if version.startswith("1") else "new"


def power_target_w(text: str, host: str = "") -> float | None:
    """Return the configured power target (either schema), or ``None`` if none is set."""
    tuning = _parse(text, host).get(SECTION) or {}
    value = tuning.get("psu_power_limit", tuning.get("power_target"))
    return float(value) if isinstance(value, int | float) else None


def set_power_target(text: str, watts: int, host: str = "") -> tuple[str, Schema]:
    """Return ``text`` with the power target set to ``watts`` and the schema used."""
    data = _parse(text, host)
    schema = detect_schema(data)
    values: dict[str, Any] = {"enabled": True}
    values |= (
        {"psu_power_limit": watts}
        if schema == "old"
        else {"mode": "power_target", "power_target": watts}
    )
    current = data.get(SECTION) or {}
    # keys that already hold the wanted value are left untouched, quoting and all
    wanted = {k: _literal(v) for k, v in values.items() if current.get(k) != v}
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _HEADER.match(line)), None)
    if start is None:
        lines += ["", f"[{SECTION}]"] + [f"{k} = {v}" for k, v in wanted.items()]
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines)
        )
        insert_at = start + 1
        for i in range(start + 1, end):
            if lines[i].strip() and not lines[i].lstrip().startswith("#"):
                insert_at = i + 1
        for key, value in wanted.items():
            pattern = re.compile(rf"^(\s*){re.escape(key)}\s*=")
            for i in range(start + 1, end):
                match = pattern.match(lines[i])
                if match:
                    lines[i] = f"{match.group(1)}{key} = {value}"
                    break
            else:
                lines.insert(insert_at, f"{key} = {value}")
                insert_at += 1
                end += 1
    new_text = "\n".join(lines) + "\n"
    got = power_target_w(new_text, host)
    tuning = _parse(new_text, host).get(SECTION) or {}
    if (
        got != float(watts)
        or tuning.get("enabled") is not True
        or (schema == "new" and tuning.get("mode") != "power_target")
    ):
        raise MinerResponseError(host, "bosminer.toml could not be edited safely", new_text)
    return new_text, schema


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _parse(text: str, host: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MinerResponseError(host, f"bosminer.toml is not valid TOML: {err}", text) from err
