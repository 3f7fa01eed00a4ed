"""``hashpilot-agent status --config agent.toml``: the fleet table, read from the store.

Reads the store the daemon writes (read-only; works while the daemon runs) and prints one
line per miner: model, availability, hashrate against expected, power, efficiency (measured,
or ``~`` estimated from the hardware profile when the firmware reports no power), hottest
chip and the last error. Missing readings print as ``-``, never as ``0``. The age column
says how long ago the miner last answered; a miner the daemon last saw up but that has not
answered for ``STALE_AFTER_INTERVALS`` poll intervals (the daemon stopped, or its writes
fail) shows as ``stale``. Figures are shown only for miners up now: for any other state
they are ``-`` (the age column says when the last good reading was).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.store import FleetRow

NAME = "status"
HELP = "Print the fleet (miner, model, state, TH/s vs expected, W, J/TH, max chip °C, last error)."
DEFAULT_CONFIG = Path("/etc/hashpilot/agent.toml")
#: Last-error column width: enough for the class and the firmware's reason.
ERROR_WIDTH = 60
#: A reading older than this many poll intervals is not "current": one missed cycle is
#: jitter or a slow miner, three mean the daemon is not polling (or not storing) it.
STALE_AFTER_INTERVALS = 3
HEADER = ("miner", "model", "state", "age", "TH/s (exp)", "W", "J/TH", "chip °C", "last error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--config``."""
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="agent TOML file")


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def state_of(r: FleetRow, now: float, poll_interval_s: float) -> str:
    """Return the stored state, or ``stale`` for an ``up`` miner whose last success is old."""
    if r.state == "up" and (
        r.last_success is None or now - r.last_success > STALE_AFTER_INTERVALS * poll_interval_s
    ):
        return "stale"
    return r.state


def row(r: FleetRow, now: float | None = None, poll_interval_s: float = 30.0) -> tuple[str, ...]:
    """Format one miner's line (strings; ``-`` for a missing or not-current reading)."""
    now = time.time() if now is None else now
    state = state_of(r, now, poll_interval_s)
    age = _age(None if r.last_success is None else now - r.last_success)
    if state != "up":
        error = "" if r.last_error_class is None else f"{r.last_error_class}: {r.last_error or ''}"
        return (r.miner_id, r.model or "-", state, age, "-", "-", "-", "-", error[:ERROR_WIDTH])
    ths = _num(r.hashrate_ths, ".1f")
    if r.expected_ths:
        ths += f" ({r.expected_ths:.0f})"
    if r.power_w is not None and r.hashrate_ths:
        jth = f"{r.power_w / r.hashrate_ths:.1f}"
    elif r.rated_power_w and r.hashrate_ths:
        chip_frac = (r.chips / r.expected_chips) if r.chips and r.expected_chips else 1.0
        jth = f"~{r.rated_power_w * chip_frac / r.hashrate_ths:.1f}"
    else:
        jth = "-"
    error = (
        ""
        if r.last_error_class is None or r.state == "up"
        else f"{r.last_error_class}: {r.last_error or ''}"
    )
    return (
        r.miner_id,
        r.model or "-",
        state,
        age,
        ths,
        _num(r.power_w, ".0f"),
        jth,
        _num(r.chip_temp_max_c, ".0f"),
        error[:ERROR_WIDTH],
    )


def table(rows: list[FleetRow], now: float | None = None, poll_interval_s: float = 30.0) -> str:
    """Format the whole table with aligned columns and a summary line."""
    now = time.time() if now is None else now
    lines = [HEADER, *(row(r, now, poll_interval_s) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    current = [r for r in rows if state_of(r, now, poll_interval_s) == "up"]
    up = len(current)
    total_ths = sum(r.hashrate_ths or 0.0 for r in current)
    text.append(
        f"{len(rows)} miners, {up} up, {len(rows) - up} not up; {total_ths:.1f} TH/s from miners up"
    )
    return "\n".join(text)


def run(args: argparse.Namespace) -> int:
    """Open the store read-only and print the table."""
    from agent.config import load_settings
    from agent.store import Store

    settings = load_settings(args.config)
    store = Store(settings.store_path, readonly=True, check=False)
    try:
        rows = store.fleet()
    finally:
        store.close()
    sys.stdout.write(table(rows, time.time(), settings.poll_interval_s) + "\n")
    return 0
