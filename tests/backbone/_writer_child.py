"""Child process for the kill -9 test: poll fake miners as fast as possible, print commits.

Usage: python -m tests.backbone._writer_child DB MINERS [CYCLES]. Right before a cycle's
transaction begins, prints ``begin <cycle_id>``; after it commits, ``committed <cycle_id>
<snapshots> <gaps>`` (both flushed), so every ``committed`` line is an acknowledged commit and
a kill after ``begin n`` without ``committed n`` interrupted cycle n in flight. Runs the real
Poller -> Backbone -> Store path (durable settings). The store's connection sleeps briefly
every few thousand SQLite VM steps (a progress handler) so a transaction lasts long enough
for the parent's kill to land inside it rather than between cycles.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from agent import logs
from agent.errors import MinerConnectionError
from agent.features.extract import FeatureSchema, FleetFeatures
from agent.poller import MinerCoordinator, Poller
from agent.scheduler import Backbone
from agent.store import AsyncStore, Store
from tests.backbone.conftest import FakeDriver, make_snapshot

#: SQLite VM steps between pauses, and the pause: stretches one 400-miner cycle's
#: transaction to roughly 0.1-0.3 s so kills spread across it.
STEPS_PER_PAUSE = 2_000
PAUSE_S = 0.002


def announce_transactions(store: Store) -> None:
    """Wrap ``store.write_cycle`` to print ``begin <n>`` just before its transaction."""
    original = store.write_cycle

    def write_cycle(cycle):  # type: ignore[no-untyped-def]
        next_id = store.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM cycles").fetchone()[0]
        sys.stdout.write(f"begin {next_id}\n")
        sys.stdout.flush()
        return original(cycle)

    store.write_cycle = write_cycle  # type: ignore[method-assign]

    def pause() -> int:
        if store.conn.in_transaction:
            time.sleep(PAUSE_S)
        return 0

    store.conn.set_progress_handler(pause, STEPS_PER_PAUSE)


def script(miner_id: str, index: int):
    def read(call: int):
        if (index + call) % 13 == 0:
            raise MinerConnectionError("127.0.0.1", "connection refused")
        return make_snapshot(miner_id, time.time())

    return read


async def main(db: Path, miners: int, cycles: int | None) -> None:
    raw = Store(db)
    announce_transactions(raw)
    store = AsyncStore(raw)
    coordinators = [
        MinerCoordinator(
            FakeDriver(f"m{i:04d}", script(f"m{i:04d}", i)),
            interval_s=0.001,
            timeout_s=5.0,
            backoff_cap_s=0.001,
        )
        for i in range(miners)
    ]
    poller = Poller(coordinators, max_in_flight=256, jitter_s=0.0)
    features = FleetFeatures(FeatureSchema(("5m",)), 30.0, lambda _s: None)
    backbone = Backbone(poller, store, features, poll_interval_s=30.0)
    done = 0
    while cycles is None or done < cycles:
        stats = await poller.run_cycle()
        assert stats is not None
        sys.stdout.write(f"committed {backbone.last_cycle_id} {stats.ok} {stats.gaps}\n")
        sys.stdout.flush()
        done += 1
    await store.close()


if __name__ == "__main__":
    logs.configure("WARNING")
    asyncio.run(
        main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
    )
