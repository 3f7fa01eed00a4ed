r"""``hashpilot-sim``: run a simulated farm on loopback until SIGINT/SIGTERM.

Example::

    hashpilot-sim --miners 200 --mix s19jpro:50,s19xp:50,s21:20,m30s:40,m50:20,m60s:20 \\
        --seed 1 --speed 60 --inventory farm.toml --admin-port 8099

Prints one JSON line on stdout when every unit is listening and the inventory is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from agent.simulator.farm import DEFAULT_BASE_ADDRESS, Farm


def parse_mix(text: str) -> dict[str, int]:
    """``s19jpro:50,m30s:40`` -> {"s19jpro": 50, "m30s": 40} (a key may be ``id/firmware``)."""
    mix: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, count = part.rpartition(":")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"mix entry {part!r} must be id:count")
        try:
            mix[name] = mix.get(name, 0) + int(count)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"mix entry {part!r}: count must be an int") from err
    if not mix:
        raise argparse.ArgumentTypeError("empty mix")
    return mix


def scale_mix(mix: dict[str, int], total: int) -> dict[str, int]:
    """Scale weights to exactly ``total`` units (largest remainder)."""
    weight = sum(mix.values())
    if weight <= 0:
        raise ValueError("mix weights must be positive")
    exact = {k: v * total / weight for k, v in mix.items()}
    out = {k: int(v) for k, v in exact.items()}
    short = total - sum(out.values())
    for k in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[:short]:
        out[k] += 1
    return {k: v for k, v in out.items() if v > 0}


def parse_fault(text: str) -> tuple[str, str, Any]:
    """``unit-id:key=value`` -> (unit, key, value); value parsed as JSON when possible."""
    unit, sep, rest = text.partition(":")
    key, eq, raw = rest.partition("=")
    if not sep or not eq or not unit or not key:
        raise argparse.ArgumentTypeError(f"fault {text!r} must be UNIT:KEY=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return unit, key, value


def fraction(text: str) -> float:
    """Parse a number in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the simulator's command line."""
    p = argparse.ArgumentParser(
        prog="hashpilot-sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--miners",
        type=int,
        default=None,
        help="total units; the mix is scaled to it (default: the mix's sum)",
    )
    p.add_argument(
        "--mix",
        type=parse_mix,
        default=None,
        help="profile:count list, e.g. s19jpro:50,m30s:40 (ids of hardware_profiles)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second (0 freezes the clock)",
    )
    p.add_argument("--inventory", type=Path, required=True, help="inventory TOML to write")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where secrets, host keys and known_hosts go (default: beside the "
        "inventory, <name>-sim/)",
    )
    p.add_argument(
        "--ports-mode",
        action="store_true",
        help="all units on 127.0.0.1 with ephemeral ports (no root needed)",
    )
    p.add_argument(
        "--base-address",
        default=DEFAULT_BASE_ADDRESS,
        help="first per-unit loopback address (default %(default)s)",
    )
    p.add_argument("--admin-port", type=int, default=None, help="admin HTTP port (0 = any)")
    p.add_argument(
        "--braiins-fraction",
        type=fraction,
        default=0.0,
        help="share of Antminer units running Braiins OS",
    )
    p.add_argument(
        "--bos-old-schema-fraction",
        type=fraction,
        default=0.0,
        help="share of Braiins units with the <=21.x psu_power_limit schema",
    )
    p.add_argument(
        "--whatsminer-v3-fraction",
        type=fraction,
        default=0.0,
        help="share of Whatsminer units on firmware newer than 2024-11 (API V3)",
    )
    p.add_argument(
        "--fault",
        type=parse_fault,
        action="append",
        default=[],
        help='UNIT:KEY=VALUE fault at start, e.g. m30s-0001:connection="hang"',
    )
    p.add_argument("--log-level", default="WARNING")
    return p


async def run(args: argparse.Namespace) -> int:
    """Start the farm, announce readiness, wait for a signal, stop cleanly."""
    mix = args.mix
    if mix is None:
        from agent.profiles import load_profiles

        mix = {pid: 1 for pid in load_profiles()}
    if args.miners is not None:
        mix = scale_mix(mix, args.miners)
    faults: dict[str, dict[str, Any]] = {}
    for unit, key, value in args.fault:
        faults.setdefault(unit, {})[key] = value
    inventory: Path = args.inventory
    state_dir: Path = args.state_dir
    if not args.ports_mode and os.geteuid() != 0:
        sys.stderr.write("hashpilot-sim: real ports (80, 22) need root; use --ports-mode\n")
        return 2
    farm = Farm(
        mix,
        seed=args.seed,
        speed=args.speed,
        base_address=args.base_address,
        ports_mode=args.ports_mode,
        braiins_fraction=args.braiins_fraction,
        whatsminer_v3_fraction=args.whatsminer_v3_fraction,
        bos_old_schema_fraction=args.bos_old_schema_fraction,
        faults=faults,
        state_dir=state_dir,
        admin_port=args.admin_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await farm.start()
    try:
        farm.write_inventory(inventory)
        ready = {
            "ready": True,
            "units": len(farm.units),
            "inventory": str(inventory),
            "state_dir": str(state_dir),
            "ports_mode": args.ports_mode,
            "admin": f"http://{farm.admin_host}:{farm.admin_port}"
            if farm.admin_port is not None
            else None,
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await farm.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hashpilot-sim`` and ``python -m agent.simulator``."""
    args = build_parser().parse_args(argv)
    args.inventory = args.inventory.resolve()
    if args.state_dir is None:
        args.state_dir = args.inventory.parent / f"{args.inventory.stem}-sim"
    args.state_dir = args.state_dir.resolve()
    from agent import logs

    logs.configure(args.log_level)
    try:
        return asyncio.run(run(args))
    except (ValueError, KeyError, OSError) as err:
        sys.stderr.write(f"hashpilot-sim: {err}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
