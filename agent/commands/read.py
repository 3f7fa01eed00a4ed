"""``hashpilot-agent read HOST[:PORT]``: poll one miner once and print its snapshot."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

NAME = "read"
HELP = "Poll one miner once and print its snapshot."

DRIVERS = ("antminer", "whatsminer", "braiins")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``read`` options."""
    parser.add_argument("target", metavar="HOST[:PORT]", help="miner address; PORT = API port")
    parser.add_argument("--driver", choices=DRIVERS, help="skip identification")
    parser.add_argument("--web-port", type=int, help="web UI port (Antminer CGI)")
    parser.add_argument(
        "--credentials",
        default="default",
        help="credential name in $CREDENTIALS_DIRECTORY (default: factory)",
    )
    parser.add_argument("--json", action="store_true", help="print MinerSnapshot.to_dict() JSON")


def parse_target(target: str) -> tuple[str, int | None]:
    """Split ``HOST[:PORT]`` (IPv6 in brackets) into host and optional port."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if target.count(":") == 1:
        host, port = target.split(":")
        return host, int(port)
    return target, None


def probe_ports(port: int | None, web_port: int | None) -> dict[str, int]:
    """Port overrides: an explicit PORT may be the RPC (4028-style) or V3 (4433-style) port."""
    ports: dict[str, int] = {}
    if port is not None:
        ports.update(rpc=port, v3=port)
    if web_port is not None:
        ports["web"] = web_port
    return ports


def run(args: argparse.Namespace) -> int:
    """Identify (unless ``--driver``), read once, print."""
    import asyncio

    snapshot = asyncio.run(_read(args))
    if args.json:
        sys.stdout.write(json.dumps(snapshot.to_dict(), indent=2, sort_keys=False) + "\n")
    else:
        sys.stdout.write(format_summary(snapshot.to_dict()))
    return 0


async def _read(args: argparse.Namespace) -> Any:
    from agent.credentials import load_credentials, secrets_dir_from_env
    from agent.drivers.base import DriverConfig
    from agent.drivers.factory import identify, make_driver

    host, port = parse_target(args.target)
    ports = probe_ports(port, args.web_port)
    if args.driver:
        if args.driver != "whatsminer":
            ports.pop("v3", None)
        config = DriverConfig(host=host, driver=args.driver, ports=ports)
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
        f"  fans       {', '.join(str(f) for f in s['fans_rpm']) or '-'} rpm",
        f"  shares     accepted {_fmt(s['accepted'])} rejected {_fmt(s['rejected'])}"
        f" hw errors {_fmt(s['hw_errors'])}",
    ]
    for b in s["boards"]:
        lines.append(
            f"  board {b['slot']}    {_fmt(b['hashrate_ths'], ' TH/s', 2)}"
            f"  chips {_fmt(b['chips'])}/{_fmt(b['expected_chips'])}"
            f"  board {_fmt(b['board_temp_c'], ' °C')}  chip {_fmt(b['chip_temp_c'], ' °C')}"
            f"  {_fmt(b['freq_mhz'], ' MHz', 0)}"
        )
    for p in s["pools"]:
        lines.append(f"  pool       {p['url']} ({p['user']}) {_fmt(p['status'])}")
    if s["error_codes"]:
        lines.append(f"  errors     {', '.join(s['error_codes'])}")
    return "\n".join(lines) + "\n"
