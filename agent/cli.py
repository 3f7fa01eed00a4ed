"""``hashpilot-agent``: one entry point; each subcommand lives in ``agent/commands/``.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported lazily so ``read`` never pays for sklearn.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import agent.commands
from agent import logs
from agent.errors import AgentError

#: One-shot commands print their result; only problems belong on stderr. A command module
#: may set its own ``DEFAULT_LOG_LEVEL`` (the daemon logs its lifecycle at INFO).
DEFAULT_LOG_LEVEL = "WARNING"


def _command_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(agent.commands.__path__))


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="hashpilot-agent", description=__doc__)
    parser.add_argument(
        "--log-level",
        default=None,
        help=f"default: the command's DEFAULT_LOG_LEVEL, else {DEFAULT_LOG_LEVEL}",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _command_modules():
        mod = importlib.import_module(f"agent.commands.{name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _log_level=getattr(mod, "DEFAULT_LOG_LEVEL", None))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the agent CLI and return its exit status."""
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level or args._log_level or DEFAULT_LOG_LEVEL)
    try:
        return int(args._run(args))
    except AgentError as err:
        sys.stderr.write(f"error: {type(err).__name__}: {err}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
