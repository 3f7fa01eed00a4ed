"""Scheduler: named non-overlapping jobs, failures keep the schedule, graceful shutdown."""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from agent.errors import StoreError
from agent.scheduler import AgentScheduler


async def test_jobs_repeat_without_overlapping_themselves() -> None:
    active = peak = runs = 0
    names = set()

    async def slow() -> None:
        nonlocal active, peak, runs
        active += 1
        peak = max(peak, active)
        names.add(asyncio.current_task().get_name())  # type: ignore[union-attr]
        await asyncio.sleep(0.25)
        active -= 1
        runs += 1

    sched = AgentScheduler()
    sched.every("slow", 0.05, slow)
    sched.start()
    await asyncio.sleep(1.0)
    await sched.shutdown(grace_s=1.0)
    assert peak == 1
    assert 3 <= runs <= 5
    assert names == {"job:slow"}


async def test_a_failing_job_logs_and_keeps_its_schedule() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise StoreError("disk full")
        raise ValueError("a bug")

    sched = AgentScheduler()
    sched.every("flaky", 0.05, flaky)
    with capture_logs() as logs:
        sched.start()
        await asyncio.sleep(0.4)
        await sched.shutdown()
    assert calls >= 4
    events = {e["event"] for e in logs}
    assert {"job_failed", "job_bug"} <= events
    bug = next(e for e in logs if e["event"] == "job_bug")
    assert bug["exc_info"] is True


async def test_shutdown_lets_a_running_job_finish_then_cancels_stragglers() -> None:
    finished = asyncio.Event()
    cancelled = asyncio.Event()

    async def short() -> None:
        await asyncio.sleep(0.3)
        finished.set()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sched = AgentScheduler()
    sched.every("short", 60, short)
    sched.every("stuck", 60, stuck)
    sched.start()
    await asyncio.sleep(0.1)
    assert sched.running_jobs == ["job:short", "job:stuck"]
    t0 = time.monotonic()
    await sched.shutdown(grace_s=0.6, cancel_timeout_s=0.5)
    assert finished.is_set()  # the running job was allowed to finish ...
    assert cancelled.is_set()  # ... the one that would never end was cancelled
    assert time.monotonic() - t0 < 1.2
    assert sched.running_jobs == []


def test_job_names_are_unique() -> None:
    sched = AgentScheduler()

    async def job() -> None:
        return None

    sched.every("poll", 30, job)
    with pytest.raises(ValueError, match="already registered"):
        sched.every("poll", 30, job)
