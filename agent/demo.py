"""``make demo``: a small simulated farm on loopback and the agent polling it.

Starts ``hashpilot-sim``'s farm in-process (ports mode, 127.0.0.1 only), writes its
inventory, runs the real daemon (``agent.commands.run.serve``: drivers, poller, SQLite
store, rolling features) against it, and prints the fleet table from the store after each
poll cycle. Ctrl-C (or ``--cycles N``) stops both cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

#: A small mixed farm with every firmware forced (``profile/firmware:count``), so the demo
#: always shows stock Antminers, Whatsminers on API V2 and V3, and Braiins OS units.
DEFAULT_MIX = (
    "s19jpro/antminer:3,s19pro/antminer:1,s21/antminer:1,s19pro/braiins:1,s19xp/braiins:2,"
    "m30s/whatsminer_v2:2,m60s/whatsminer_v2:1,m50/whatsminer_v3:2,m60s/whatsminer_v3:1"
)
#: Printed under every table: what the two special marks mean.
LEGEND = (
    "~ = J/TH estimated from the rated power (the firmware reports no power); "
    "- = no current reading; pending = not polled yet"
)
#: How often the demo looks for the agent's first committed cycle (to print it at once).
FIRST_CYCLE_CHECK_S = 0.2
#: Demo poll interval: short so the table fills within a minute (the daemon default is 30 s).
DEMO_INTERVAL_S = 5.0
#: Simulated seconds per wall second: a farm hour passes in a minute.
DEMO_SPEED = 60.0


def _mix(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in text.split(","):
        name, _, count = part.partition(":")
        out[name.strip()] = int(count or 1)
    return out


def _committed_cycles(store_path: Path) -> int:
    from agent.errors import StoreError
    from agent.store import Store

    if not store_path.exists():
        return 0
    try:
        store = Store(store_path, readonly=True, check=False)
    except StoreError:  # created, not migrated yet
        return 0
    try:
        return int(store.conn.execute("SELECT count(*) FROM cycles").fetchone()[0])
    finally:
        store.close()


def _table(store_path: Path, units: dict[str, str], interval_s: float) -> str:
    """Format the fleet table from the store, inventory units not in it yet as ``pending``."""
    import time

    from agent.commands.status import table
    from agent.errors import StoreError
    from agent.store import FleetRow, Store

    rows: list[FleetRow] = []
    if store_path.exists():
        try:
            store = Store(store_path, readonly=True, check=False)
        except StoreError:
            store = None
        if store is not None:
            try:
                rows = store.fleet()
            finally:
                store.close()
    seen = {r.miner_id for r in rows}
    pending = [
        FleetRow(mid, "127.0.0.1", model, "pending", *([None] * 10))
        for mid, model in units.items()
        if mid not in seen
    ]
    rows = sorted(rows + pending, key=lambda r: r.miner_id)
    return table(rows, time.time(), interval_s) + "\n" + LEGEND


async def demo(mix: dict[str, int], cycles: int | None, interval_s: float, workdir: Path) -> int:
    """Run the farm and the agent; print the fleet table each cycle; return an exit status."""
    from agent.commands.run import serve
    from agent.config import load_settings
    from agent.simulator.farm import Farm

    farm = Farm(
        mix,
        seed=1,
        speed=DEMO_SPEED,
        ports_mode=True,
        braiins_fraction=0.25,
        whatsminer_v3_fraction=0.5,
        state_dir=workdir / "sim",
    )
    await farm.start()
    try:
        inventory = farm.write_inventory(workdir / "farm.toml")
        settings = load_settings(
            None,
            inventory=inventory,
            state_dir=workdir / "state",
            poll_interval_s=interval_s,
            poll_timeout_s=interval_s * 0.8,
            jitter_s=0.0,
            secrets_dir=None,
        )
        firmware = sorted({d.firmware for d in farm.units.values()})
        sys.stdout.write(
            f"hashpilot demo: {len(farm.units)} simulated miners ({', '.join(firmware)}) on "
            f"127.0.0.1, clock x{DEMO_SPEED:g}; polling every {interval_s:g} s. Ctrl-C stops.\n"
        )
        stop = asyncio.Event()
        # Ctrl-C before the agent installs its own handlers (it then takes them over).
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        units = {mid: d.profile.name for mid, d in farm.units.items()}
        path = settings.store_path
        sys.stdout.write("\n-- starting --\n" + _table(path, units, interval_s) + "\n")
        sys.stdout.flush()
        agent_task = asyncio.create_task(serve(settings, stop=stop), name="demo-agent")
        loop_time = asyncio.get_running_loop().time
        t0 = loop_time()
        done = 0
        try:
            while cycles is None or done < cycles:
                # The first table as soon as the first cycle commits, then one per interval.
                wait_s = FIRST_CYCLE_CHECK_S if done == 0 else interval_s
                waiter = asyncio.ensure_future(stop.wait())
                finished, _ = await asyncio.wait(
                    {waiter, agent_task}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                if agent_task in finished or stop.is_set():
                    break
                if done == 0 and _committed_cycles(path) == 0:
                    continue
                done += 1
                sys.stdout.write(f"\n-- after {loop_time() - t0:.0f} s --\n")
                sys.stdout.write(_table(path, units, interval_s) + "\n")
                sys.stdout.flush()
        finally:
            stop.set()
            status = await agent_task
        sys.stdout.write(f"\nstore kept at {settings.store_path}\n")
        return status
    finally:
        await farm.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the demo."""
    from agent import logs

    parser = argparse.ArgumentParser(prog="hashpilot-demo", description=__doc__)
    parser.add_argument("--mix", default=DEFAULT_MIX, help="profile:count,...")
    parser.add_argument("--cycles", type=int, default=None, help="stop after N tables")
    parser.add_argument("--interval", type=float, default=DEMO_INTERVAL_S)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hashpilot-demo-"))
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(demo(_mix(args.mix), args.cycles, args.interval, workdir))
    return 130


if __name__ == "__main__":
    sys.exit(main())
