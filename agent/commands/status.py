"""``hashpilot-agent status --config agent.toml``: the fleet table, read from the store.

Reads the store the daemon writes (read-only; works while the daemon runs) and prints one
line per miner: model, availability, hashrate against expected, power, efficiency (measured,
or ``~`` estimated from the hardware profile when the firmware reports no power), hottest
chip and the last error. Missing readings print as ``-``, never as ``0``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.store import FleetRow

NAME = "status"
HELP = "Print the fleet (miner, model, state, TH/s vs expected, W, J/TH, max chip °C, last error)."
DEFAULT_CONFIG = Path("/etc/hashpilot/agent.toml")
#: Last-error column width: enough for the class and the firmware's reason.
ERROR_WIDTH = 60
HEADER = ("miner", "model", "state", "TH/s (exp)", "W", "J/TH", "chip °C", "last error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--config``."""
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="agent TOML file")


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def row(r: FleetRow) -> tuple[str, ...]:
    """Format one miner's line (strings; ``-`` for a missing reading)."""
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
        r.state,
        ths,
        _num(r.power_w, ".0f"),
        jth,
        _num(r.chip_temp_max_c, ".0f"),
        error[:ERROR_WIDTH],
    )


def table(rows: list[FleetRow]) -> str:
    """Format the whole table with aligned columns and a summary line."""
    lines = [HEADER, *(row(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    up = sum(r.state == "up" for r in rows)
    total_ths = sum(r.hashrate_ths or 0.0 for r in rows if r.state == "up")
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
    sys.stdout.write(table(rows) + "\n")
    return 0
