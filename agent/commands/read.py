"""``hashpilot-agent read HOST[:PORT]``: poll one miner once and print its snapshot."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

NAME = "read"
HELP = "Poll one miner once and print its snapshot."

DRIVERS = ("antminer", "whatsminer", "braiins")
#: Whole command (identify + one read), so an operator's terminal never hangs on a dead unit.
#: Identification is bounded by 5 s (``factory.IDENTIFY_TIMEOUT_S``); the slowest read that
#: fails is a hung Whatsminer V3 whose first command times out on every attempt: 3 attempts
#: × (3 s connect + 10 s read) + 1.5 s backoff ≈ 40.5 s (``transports.tcp_framed``,
#: ``protocols.base``). 60 s covers both with room for a slow unit that does answer.
READ_DEADLINE_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``read`` options."""
    parser.add_argument(
        "target",
        metavar="HOST[:PORT]",
        help="miner address; PORT = RPC port (the V3 port with --driver whatsminer --api v3)",
    )
    parser.add_argument("--driver", choices=DRIVERS, help="skip identification")
    parser.add_argument("--api", choices=("v2", "v3"), help="Whatsminer API generation")
    add_port_arguments(parser)
    parser.add_argument(
        "--credentials",
        default="default",
        help="credential name in $CREDENTIALS_DIRECTORY (default: factory)",
    )
    parser.add_argument("--json", action="store_true", help="print MinerSnapshot.to_dict() JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=READ_DEADLINE_S,
        metavar="S",
        help=f"give up after S seconds in all (default {READ_DEADLINE_S:g})",
    )


def add_port_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the port overrides ``read`` and ``identify`` share."""
    parser.add_argument("--web-port", type=int, help="web UI port (Antminer CGI)")
    parser.add_argument("--v3-port", type=int, help="Whatsminer API V3 port (default 4433)")


def parse_target(target: str) -> tuple[str, int | None]:
    """Split ``HOST[:PORT]`` (IPv6 in brackets) into host and optional port."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if target.count(":") == 1:
        host, port = target.split(":")
        return host, int(port)
    return target, None


def probe_ports(
    port: int | None,
    web_port: int | None,
    v3_port: int | None = None,
    *,
    port_is_v3: bool = False,
) -> dict[str, int]:
    """Port overrides by role: PORT is the RPC port, or the V3 port when ``port_is_v3``."""
    ports: dict[str, int] = {}
    if port is not None:
        ports["v3" if port_is_v3 else "rpc"] = port
    if v3_port is not None:
        ports["v3"] = v3_port
    if web_port is not None:
        ports["web"] = web_port
    return ports


def run(args: argparse.Namespace) -> int:
    """Identify (unless ``--driver``), read once, print."""
    snapshot = asyncio.run(_read_within(args, args.timeout))
    if args.json:
        sys.stdout.write(json.dumps(snapshot.to_dict(), indent=2, sort_keys=False) + "\n")
    else:
        sys.stdout.write(format_summary(snapshot.to_dict()))
    return 0


async def _read_within(args: argparse.Namespace, deadline_s: float) -> Any:
    """Identify and read under one overall deadline; past it, a ``MinerTimeoutError``."""
    from agent.errors import MinerTimeoutError

    host, _port = parse_target(args.target)
    try:
        async with asyncio.timeout(deadline_s):
            return await _read(args)
    except TimeoutError as err:
        if isinstance(err, MinerTimeoutError):
            raise
        raise MinerTimeoutError(host, f"no snapshot within {deadline_s:g} s") from err


async def _read(args: argparse.Namespace) -> Any:
    from agent.credentials import load_credentials, secrets_dir_from_env
    from agent.drivers.base import DriverConfig
    from agent.drivers.factory import identify, make_driver

    host, port = parse_target(args.target)
    port_is_v3 = args.driver == "whatsminer" and args.api == "v3"
    ports = probe_ports(port, args.web_port, args.v3_port, port_is_v3=port_is_v3)
    if args.driver:
        if args.driver != "whatsminer":
            ports.pop("v3", None)
        api = args.api if args.driver == "whatsminer" else None
        config = DriverConfig(host=host, driver=args.driver, ports=ports, api=api)
    else:
        config = await identify(host, ports)
    cred_kind = "whatsminer_v3" if config.api == "v3" else config.driver
    credentials = load_credentials(args.credentials, secrets_dir_from_env(), cred_kind)
    driver = make_driver(config, credentials)
    try:
        return await driver.read()
    finally:
        await driver.close()


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def format_summary(snap: dict[str, Any]) -> str:
    """Render one snapshot dict as a short human-readable report."""
    s = snap
    lines = [
        f"{s['miner_id']}  {s['make']} {s['model'] or '?'}  firmware {s['firmware'] or '?'}",
        f"  hashrate   {_fmt(s['hashrate_ths'], ' TH/s', 2)}"
        f" (avg {_fmt(s['hashrate_avg_ths'], ' TH/s', 2)},"
        f" expected {_fmt(s['expected_hashrate_ths'], ' TH/s', 2)})",
        f"  power      {_fmt(s['power_w'], ' W', 0)}"
        f" (limit {_fmt(s['power_limit_w'], ' W', 0)}, mode {_fmt(s['power_mode'])})",
        f"  mining     {_fmt(s['is_mining'])}  uptime {_fmt(s['uptime_s'], ' s')}"
        f"  env {_fmt(s['env_temp_c'], ' °C')}",
        f"  fans       {_fans(s['fans_rpm'])}",
        f"  shares     accepted {_fmt(s['accepted'])} rejected {_fmt(s['rejected'])}"
        f" hw errors {_fmt(s['hw_errors'])}",
    ]
    if s["boards"] is None:
        lines.append("  boards     not read")
    for b in s["boards"] or ():
        lines.append(
            f"  board {b['slot']}    {_fmt(b['hashrate_ths'], ' TH/s', 2)}"
            f"  chips {_fmt(b['chips'])}/{_fmt(b['expected_chips'])}"
            f"  board {_fmt(b['board_temp_c'], ' °C')}  chip {_fmt(b['chip_temp_c'], ' °C')}"
            f"  {_fmt(b['freq_mhz'], ' MHz', 0)}"
        )
    if s["pools"] is None:
        lines.append("  pools      not read")
    for p in s["pools"] or ():
        lines.append(f"  pool       {p['url']} ({p['user']}) {_fmt(p['status'])}")
    if s["error_codes"] is None:
        lines.append("  errors     not read")
    elif s["error_codes"]:
        lines.append(f"  errors     {', '.join(s['error_codes'])}")
    return "\n".join(lines) + "\n"


def _fans(rpm: list[int] | None) -> str:
    """Format fan speeds: ``-`` if the unit reports none, ``not read`` if the list is null."""
    if rpm is None:
        return "not read"
    return f"{', '.join(str(f) for f in rpm) or '-'} rpm"
