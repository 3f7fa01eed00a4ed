"""Poller: no overlap, jitter bounds, backoff and auth cap, hung miners, gaps, log once."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from structlog.testing import capture_logs

from agent.errors import (
    MinerAuthError,
    MinerConnectionError,
    MinerResponseError,
    MinerTimeoutError,
)
from agent.features.extract import FeatureSchema, FleetFeatures
from agent.poller import Availability, MinerCoordinator, Poller
from agent.scheduler import Backbone
from agent.store import AsyncStore, Store
from tests.backbone.conftest import FakeDriver, healthy, make_snapshot


def coord(driver, *, interval=30.0, timeout=1.0, cap=600.0, clock=None) -> MinerCoordinator:
    kw = {"clock": clock} if clock else {}
    return MinerCoordinator(driver, interval_s=interval, timeout_s=timeout, backoff_cap_s=cap, **kw)


def raising(exc):
    def script(_n):
        raise exc

    return script


async def test_no_overlapping_polls_of_one_miner() -> None:
    driver = FakeDriver("a", healthy("a"), delay_s=0.2)
    c = coord(driver)
    sem = asyncio.Semaphore(10)
    first, second = await asyncio.gather(c.poll(sem), c.poll(sem))
    assert first is not None
    assert first.ok
    assert second is None  # refused while the first was in flight
    assert driver.calls == 1
    assert driver.max_active == 1


async def test_a_cycle_never_overlaps_the_previous_one() -> None:
    driver = FakeDriver("a", healthy("a"), delay_s=0.3)
    poller = Poller([coord(driver)], max_in_flight=4, jitter_s=0.0)
    first = asyncio.create_task(poller.run_cycle())
    await asyncio.sleep(0.05)
    with capture_logs() as logs:
        assert await poller.run_cycle() is None
    assert [e["event"] for e in logs] == ["poll_cycle_overrun"]
    stats = await first
    assert stats is not None
    assert stats.ok == 1
    assert driver.max_active == 1


async def test_jitter_spreads_starts_within_bounds() -> None:
    drivers = [FakeDriver(f"m{i}", healthy(f"m{i}")) for i in range(60)]
    poller = Poller(
        [coord(d) for d in drivers], max_in_flight=100, jitter_s=0.4, rng=random.Random(3)
    )
    t0 = time.monotonic()
    stats = await poller.run_cycle()
    offsets = sorted(d.started_at[0] - t0 for d in drivers)
    assert stats is not None
    assert stats.ok == 60
    assert offsets[0] >= 0.0
    assert offsets[-1] <= 0.4 + 0.1  # within the jitter window (+ scheduling slack)
    assert offsets[-1] - offsets[0] > 0.25  # actually spread, not one burst
    assert stats.duration_s < 0.4 + 0.2


async def test_semaphore_bounds_requests_in_flight() -> None:
    active = 0
    peak = 0

    async def slow_read(self=None):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return make_snapshot("x", time.time())

    drivers = [FakeDriver(f"m{i}", healthy(f"m{i}")) for i in range(40)]
    for d in drivers:
        d.read = slow_read  # type: ignore[method-assign]
    poller = Poller([coord(d) for d in drivers], max_in_flight=7, jitter_s=0.0)
    stats = await poller.run_cycle()
    assert stats is not None
    assert stats.ok == 40
    assert peak == 7


def test_backoff_doubles_to_the_cap_and_auth_goes_straight_there() -> None:
    c = coord(FakeDriver("a", healthy("a")), interval=30.0, cap=600.0)
    conn = MinerConnectionError("127.0.0.1", "refused")
    delays = []
    for _ in range(7):
        c.failures += 1
        delays.append(c.backoff_s(conn))
    assert delays == [30, 60, 120, 240, 480, 600, 600]
    c.failures = 1
    assert c.backoff_s(MinerAuthError("127.0.0.1", "denied")) == 600
    assert c.backoff_s(MinerResponseError("127.0.0.1", "bad json")) == 30  # it answered


async def test_unreachable_miner_is_polled_less_and_less() -> None:
    """Cycles every 30 s of fake time: polls at 0, 30, 90, 210, 450, 930 (cap 480)."""
    now = [1000.0]
    driver = FakeDriver("a", raising(MinerConnectionError("127.0.0.1", "refused")))
    poller = Poller(
        [coord(driver, interval=30.0, cap=480.0, clock=lambda: now[0])],
        max_in_flight=1,
        jitter_s=0.0,
        clock=lambda: now[0],
    )
    polled_at = []
    for step in range(40):
        now[0] = 1000.0 + 30 * step
        stats = await poller.run_cycle()
        assert stats is not None
        if stats.polled:
            polled_at.append(30 * step)
            assert stats.gaps == 1
        else:
            assert stats.skipped == 1
    assert polled_at == [0, 30, 90, 210, 450, 930]


async def test_auth_failure_waits_the_full_cap() -> None:
    now = [0.0]
    driver = FakeDriver("a", raising(MinerAuthError("127.0.0.1", "401")))
    c = coord(driver, interval=30.0, cap=600.0, clock=lambda: now[0])
    poller = Poller([c], max_in_flight=1, jitter_s=0.0, clock=lambda: now[0])
    polled = 0
    for step in range(41):
        now[0] = 30.0 * step
        stats = await poller.run_cycle()
        polled += stats.polled if stats else 0
    assert polled == 3  # t = 0, 600, 1200
    assert c.state is Availability.DOWN


async def test_hung_miners_cannot_stall_a_cycle() -> None:
    timeout = 0.5
    drivers = [
        FakeDriver(f"m{i}", (lambda _n: "hang") if i % 10 == 0 else healthy(f"m{i}"))
        for i in range(50)
    ]
    coordinators = [coord(d, timeout=timeout) for d in drivers]
    poller = Poller(coordinators, max_in_flight=64, jitter_s=0.0)
    t0 = time.monotonic()
    stats = await poller.run_cycle()
    elapsed = time.monotonic() - t0
    assert stats is not None
    assert elapsed <= timeout * 1.2
    assert (stats.ok, stats.gaps) == (45, 5)
    hung = [c for c in coordinators if c.state is Availability.DOWN]
    assert {c.miner_id for c in hung} == {f"m{i}" for i in range(0, 50, 10)}
    assert all(isinstance(c.last_error, MinerTimeoutError) for c in hung)


async def test_hung_miners_queued_behind_healthy_ones_still_end_the_cycle_on_time() -> None:
    # More miners than slots: hung ones are reached only after healthy ones ahead of them
    # (50 ms each) have freed slots. Their timeout counts from the cycle start, so the
    # cycle still ends within timeout + 20 % and every healthy miner is read.
    timeout = 0.5
    drivers = [
        FakeDriver(f"m{i}", (lambda _n: "hang") if i % 10 == 0 else healthy(f"m{i}"), delay_s=0.05)
        for i in range(100)
    ]
    coordinators = [coord(d, timeout=timeout) for d in drivers]
    poller = Poller(coordinators, max_in_flight=24, jitter_s=0.0)
    t0 = time.monotonic()
    stats = await poller.run_cycle()
    elapsed = time.monotonic() - t0
    assert stats is not None
    assert (stats.ok, stats.gaps) == (90, 10)
    assert max(d.started_at[0] for d in drivers) - t0 > 0.15  # the last hung one started late
    assert elapsed <= timeout * 1.2


async def test_a_poll_admitted_late_still_gets_its_share_of_the_timeout() -> None:
    # One slot, held by a hung miner for the whole 0.5 s timeout: the miners queued behind it
    # get LATE_POLL_SHARE (0.1 s) with the slot. A reply within that is a reading; one that
    # takes longer is a timeout that says how long the poll queued.
    hung = coord(FakeDriver("hung", lambda _n: "hang"), timeout=0.5)
    quick = coord(FakeDriver("quick", healthy("quick"), delay_s=0.03), timeout=0.5)
    slow = coord(FakeDriver("slow", healthy("slow"), delay_s=0.3), timeout=0.5)
    poller = Poller([hung, quick, slow], max_in_flight=1, jitter_s=0.0)
    t0 = time.monotonic()
    stats = await poller.run_cycle()
    elapsed = time.monotonic() - t0
    assert stats is not None
    assert (stats.ok, stats.gaps) == (1, 2)
    assert quick.state is Availability.UP
    assert isinstance(slow.last_error, MinerTimeoutError)
    assert "queued for a slot" in str(slow.last_error)
    assert 0.5 + 0.03 + 0.1 <= elapsed < 0.5 + 0.03 + 0.1 + 0.1


async def test_down_and_recovery_are_logged_once() -> None:
    outcome = {"fail": True}

    def script(_n):
        if outcome["fail"]:
            raise MinerConnectionError("127.0.0.1", "connection refused")
        return make_snapshot("a", time.time())

    now = [0.0]
    c = coord(FakeDriver("a", script), interval=1.0, cap=1.0, clock=lambda: now[0])
    poller = Poller([c], max_in_flight=1, jitter_s=0.0, clock=lambda: now[0])
    with capture_logs() as logs:
        for step in range(6):
            now[0] = float(step)
            outcome["fail"] = step < 4
            await poller.run_cycle()
    events = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("miner")]
    assert events.count(("miner_down", "warning")) == 1
    assert events.count(("miner_recovered", "info")) == 1
    assert events.count(("miner_still_down", "debug")) == 3
    down = next(e for e in logs if e["event"] == "miner_down")
    assert down["error_class"] == "MinerConnectionError"
    assert c.state is Availability.UP
    assert c.failures == 0


async def test_a_different_failure_while_down_is_reported() -> None:
    errors = iter(
        [
            MinerConnectionError("h", "refused"),
            MinerConnectionError("h", "refused"),
            MinerAuthError("h", "401"),
        ]
    )

    def script(_n):
        raise next(errors)

    c = coord(FakeDriver("a", script), interval=1.0, cap=1.0)
    with capture_logs() as logs:
        for _ in range(3):
            await c.poll(asyncio.Semaphore(1))
    downs = [e for e in logs if e["event"] == "miner_down"]
    assert [d["error_class"] for d in downs] == ["MinerConnectionError", "MinerAuthError"]
    assert downs[1]["previous_error_class"] == "MinerConnectionError"


async def test_a_driver_bug_is_a_gap_with_a_traceback() -> None:
    c = coord(FakeDriver("a", raising(KeyError("boards"))))
    with capture_logs() as logs:
        result = await c.poll(asyncio.Semaphore(1))
        await c.poll(asyncio.Semaphore(1))
    assert result is not None
    assert result.error_class == "KeyError"
    bugs = [e for e in logs if e["event"] == "poll_bug"]
    assert len(bugs) == 1  # the traceback once, not every cycle
    assert bugs[0]["exc_info"] is True


async def test_failed_polls_become_gap_rows_never_zero_snapshots(tmp_path) -> None:
    scripts = {
        "ok1": healthy("ok1"),
        "ok2": healthy("ok2"),
        "hung": lambda _n: "hang",
        "auth": raising(MinerAuthError("127.0.0.1", "401 Unauthorized")),
        "refused": raising(MinerConnectionError("127.0.0.1", "connection refused")),
    }
    coordinators = [coord(FakeDriver(mid, s), timeout=0.3) for mid, s in scripts.items()]
    store = AsyncStore(Store(tmp_path / "hashpilot.db", durable=False))
    features = FleetFeatures(FeatureSchema(("5m",)), 30.0, lambda _s: None)
    poller = Poller(coordinators, max_in_flight=8, jitter_s=0.0)
    backbone = Backbone(poller, store, features, poll_interval_s=30.0)
    await poller.run_cycle()
    assert backbone.last_cycle_id == 1
    conn = store.store.conn
    gaps = dict(conn.execute("SELECT miner_id, error_class FROM gaps").fetchall())
    assert gaps == {
        "hung": "MinerTimeoutError",
        "auth": "MinerAuthError",
        "refused": "MinerConnectionError",
    }
    snaps = [r[0] for r in conn.execute("SELECT miner_id FROM snapshots ORDER BY miner_id")]
    assert snaps == ["ok1", "ok2"]  # no rows at all for failed polls
    states = dict(conn.execute("SELECT id, state FROM miners").fetchall())
    assert states == {"ok1": "up", "ok2": "up", "hung": "down", "auth": "down", "refused": "down"}
    cycle = conn.execute("SELECT polled, ok, gaps FROM cycles").fetchone()
    assert cycle == (5, 2, 3)
    assert set(features.miners) == {"ok1", "ok2"}
    await store.close()


async def test_shutdown_cancels_in_flight_polls_and_closes_drivers() -> None:
    drivers = [FakeDriver(f"m{i}", lambda _n: "hang") for i in range(5)]
    poller = Poller([coord(d, timeout=30.0) for d in drivers], max_in_flight=8, jitter_s=0.0)
    cycle = asyncio.create_task(poller.run_cycle())
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await poller.shutdown(timeout_s=1.0)
    assert time.monotonic() - t0 < 1.0
    assert all(d.closed for d in drivers)
    with pytest.raises(asyncio.CancelledError):
        await cycle
