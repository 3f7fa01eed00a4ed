"""``hashpilot-agent identify HOST[:PORT]``: find which driver speaks to a miner."""

from __future__ import annotations

import argparse
import json
import sys

from agent.commands.read import add_port_arguments, parse_target, probe_ports

NAME = "identify"
HELP = "Probe a miner and print the DriverConfig that reaches it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``identify`` options."""
    parser.add_argument("target", metavar="HOST[:PORT]", help="miner address; PORT = RPC port")
    add_port_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the parallel probes and print the result as JSON."""
    import asyncio

    from agent.drivers.factory import identify

    host, port = parse_target(args.target)
    config = asyncio.run(identify(host, probe_ports(port, args.web_port, args.v3_port)))
    sys.stdout.write(json.dumps(config.to_dict(), indent=2) + "\n")
    return 0
