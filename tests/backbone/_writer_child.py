"""Child process for the kill -9 test: poll fake miners as fast as possible, print commits.

Usage: python -m tests.backbone._writer_child DB MINERS [CYCLES]. After each cycle commits,
prints ``committed <cycle_id> <snapshots> <gaps>`` and flushes, so every printed line is an
acknowledged commit. Runs the real Poller -> Backbone -> Store path (durable settings).
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


def script(miner_id: str, index: int):
    def read(call: int):
        if (index + call) % 13 == 0:
            raise MinerConnectionError("127.0.0.1", "connection refused")
        return make_snapshot(miner_id, time.time())

    return read


async def main(db: Path, miners: int, cycles: int | None) -> None:
    store = AsyncStore(Store(db))
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
