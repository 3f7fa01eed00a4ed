"""Poll every miner on time: one coordinator per miner, one bounded cycle for the fleet.

:class:`MinerCoordinator` owns one miner's availability (HA's update coordinator): it never
runs two polls of its miner at once, bounds each poll with ``asyncio.timeout`` so a hung
miner cannot stall anything, backs off exponentially while the miner is unreachable (an
authentication failure goes straight to the cap: only an operator can fix it), and logs one
event when the miner goes down and one when it recovers; repeats go to debug.

:class:`Poller` runs a cycle: every due coordinator starts at a random offset within the
jitter window, all of them share one semaphore bounding the requests in flight, and the
cycle ends when the last poll ends (bounded as below). The results go to a sink in one
report, which the daemon commits in one store transaction. A failed poll is a gap with its
error class, never a snapshot of zeros.

A poll's timeout runs from the moment the poll starts (after its jitter), and waiting for a
slot counts against it; a poll admitted late still gets ``LATE_POLL_SHARE`` of the timeout
with its slot. With the timeout started only once a slot was free, a hung miner reached late
in the queue (behind healthy polls) ended its poll a whole timeout after it was reached:
10 % of 2,000 miners hung gave a 29.5 s cycle for a 10 s timeout (``benchmarks/poll.py``).
Now a cycle whose healthy work fits in the timeout ends within timeout × (1 + share) however
many miners hang, and a slow cycle (more work than the timeout) still reads every miner.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

import structlog

from agent.drivers.base import MinerDriver
from agent.errors import MinerAuthError, MinerConnectionError, MinerError, MinerTimeoutError
from agent.snapshot import MinerSnapshot

log = structlog.get_logger(__name__)

#: A cycle starting this share of an interval early still counts a miner as due: apscheduler
#: fires a few ms late or early and a miner must not skip a cycle for it.
DUE_SLACK = 0.1
#: Shutdown: how long in-flight polls get to finish once cancelled before we stop waiting.
CANCEL_TIMEOUT_S = 5.0
#: A poll whose slot came free late (most of its timeout spent queueing behind other polls)
#: still gets this share of the poll timeout with its slot: a LAN miner answers a whole poll
#: in well under a second (2 s of the default 10 s judges it fairly), and it bounds what a
#: hung miner reached late can add to a cycle to timeout × share.
LATE_POLL_SHARE = 0.2


class Availability(enum.StrEnum):
    """What the poller knows about a miner."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class PollResult:
    """One poll of one miner: a snapshot, or the error that made it a gap."""

    miner_id: str
    host: str
    ts: float
    duration_s: float
    snapshot: MinerSnapshot | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the poll produced a snapshot."""
        return self.snapshot is not None

    @property
    def error_class(self) -> str | None:
        """The error's class name (``MinerTimeoutError`` …), ``None`` on success."""
        return None if self.error is None else type(self.error).__name__


@dataclass(frozen=True, slots=True)
class CycleStats:
    """What one cycle did."""

    started: float
    duration_s: float
    polled: int
    ok: int
    gaps: int
    skipped: int
    slowest_s: float


@dataclass(frozen=True, slots=True)
class CycleReport:
    """Everything a cycle produced, handed to the sink at its end."""

    stats: CycleStats
    results: list[PollResult]
    coordinators: list[MinerCoordinator]


class MinerCoordinator:
    """Polls one miner: no overlap, bounded time, backoff, availability transitions logged once."""

    def __init__(
        self,
        driver: MinerDriver,
        *,
        interval_s: float,
        timeout_s: float,
        backoff_cap_s: float,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wrap ``driver``; intervals and timeouts in seconds."""
        self.driver = driver
        self.miner_id = driver.config.id
        self.host = driver.config.host
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.backoff_cap_s = backoff_cap_s
        self._wall = wall
        self._clock = clock
        self.state = Availability.UNKNOWN
        self.last_success: float | None = None
        self.last_error: BaseException | None = None
        self.last_error_ts: float | None = None
        self.failures = 0
        self.next_due = float("-inf")
        self.model: str | None = driver.config.model
        self._in_flight = False

    @property
    def in_flight(self) -> bool:
        """Whether a poll of this miner is running."""
        return self._in_flight

    def due(self, cycle_start: float) -> bool:
        """Whether a cycle starting at ``cycle_start`` (monotonic) should poll this miner."""
        return not self._in_flight and cycle_start + DUE_SLACK * self.interval_s >= self.next_due

    def backoff_s(self, error: BaseException) -> float:
        """Seconds until the next poll after this failure (``failures`` already counted)."""
        if isinstance(error, MinerAuthError):
            return self.backoff_cap_s
        if isinstance(error, MinerConnectionError):
            return min(self.interval_s * 2 ** (self.failures - 1), self.backoff_cap_s)
        # The miner answered, just not usefully (command or decode error): keep polling.
        return self.interval_s

    async def poll(
        self, semaphore: asyncio.Semaphore, cycle_start: float | None = None
    ) -> PollResult | None:
        """Poll once under ``semaphore``; ``None`` if a poll of this miner is already running.

        The timeout counts from now, slot wait included, with ``LATE_POLL_SHARE`` of it
        guaranteed once the slot is held. Never raises for a miner failure: the result
        carries the error. Cancellation passes.
        """
        if self._in_flight:
            log.debug("poll_skipped_in_flight", miner=self.miner_id)
            return None
        self._in_flight = True
        cycle_start = self._clock() if cycle_start is None else cycle_start
        loop = asyncio.get_running_loop()
        queued = loop.time()
        try:
            async with semaphore:
                ts = self._wall()
                t0 = self._clock()
                admitted = loop.time()
                deadline = max(queued + self.timeout_s, admitted + LATE_POLL_SHARE * self.timeout_s)
                snapshot, error = await self._read(deadline, admitted - queued, deadline - admitted)
                duration = self._clock() - t0
        finally:
            self._in_flight = False
        if snapshot is not None:
            self._succeeded(snapshot, ts, cycle_start)
        else:
            assert error is not None
            self._failed(error, ts, cycle_start)
        return PollResult(self.miner_id, self.host, ts, duration, snapshot, error)

    async def _read(
        self, deadline: float, waited_s: float, budget_s: float
    ) -> tuple[MinerSnapshot | None, BaseException | None]:
        """Read the driver until ``deadline`` (loop time), ``budget_s`` after a slot came free."""
        try:
            async with asyncio.timeout_at(deadline):
                snapshot = await self.driver.read()
        except MinerError as err:
            return None, err
        except TimeoutError as err:
            detail = f"no complete reading within {self.timeout_s:g} s"
            if round(waited_s, 1) > 0:
                detail += f" ({waited_s:.1f} s queued for a slot, then {budget_s:.1f} s with it)"
            timeout = MinerTimeoutError(self.host, detail)
            timeout.__cause__ = err
            return None, timeout
        except Exception as err:  # a driver bug: keep the daemon, log the traceback once
            if self.last_error is None or type(self.last_error) is not type(err):
                log.exception("poll_bug", miner=self.miner_id, host=self.host)
            return None, err
        if snapshot.miner_id != self.miner_id:
            snapshot = replace(snapshot, miner_id=self.miner_id)
        return snapshot, None

    def _succeeded(self, snapshot: MinerSnapshot, ts: float, cycle_start: float) -> None:
        if self.state is Availability.DOWN:
            log.info(
                "miner_recovered",
                miner=self.miner_id,
                host=self.host,
                failures=self.failures,
                down_since=self.last_success,
            )
        elif self.state is Availability.UNKNOWN:
            log.debug("miner_up", miner=self.miner_id, host=self.host)
        self.state = Availability.UP
        self.failures = 0
        self.last_success = ts
        self.model = snapshot.model or self.model
        self.next_due = cycle_start + self.interval_s

    def _failed(self, error: BaseException, ts: float, cycle_start: float) -> None:
        previous = self.last_error if self.state is Availability.DOWN else None
        self.failures += 1
        delay = self.backoff_s(error)
        self.next_due = cycle_start + delay
        fields = {
            "miner": self.miner_id,
            "host": self.host,
            "error_class": type(error).__name__,
            "error": str(error),
            "failures": self.failures,
            "retry_in_s": round(delay, 1),
        }
        if previous is None:
            if isinstance(error, MinerAuthError):
                log.error("miner_down", **fields, action="check the miner's credentials")
            else:
                log.warning("miner_down", **fields)
        elif type(previous) is not type(error):
            log.warning("miner_down", **fields, previous_error_class=type(previous).__name__)
        else:
            log.debug("miner_still_down", **fields)
        self.state = Availability.DOWN
        self.last_error = error
        self.last_error_ts = ts


class Poller:
    """Runs poll cycles over a set of coordinators and hands each cycle's report to a sink."""

    def __init__(
        self,
        coordinators: Iterable[MinerCoordinator],
        sink: Callable[[CycleReport], Awaitable[None]] | None = None,
        *,
        max_in_flight: int,
        jitter_s: float,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Bound the fleet to ``max_in_flight`` requests; start polls within ``jitter_s``."""
        self.coordinators: dict[str, MinerCoordinator] = {c.miner_id: c for c in coordinators}
        self.sink = sink
        self.max_in_flight = max_in_flight
        self.jitter_s = jitter_s
        self._rng = rng or random.Random()
        self._wall = wall
        self._clock = clock
        self._semaphore = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[PollResult | None]] = set()
        self._cycle_running = False
        self.last_stats: CycleStats | None = None

    def add(self, coordinator: MinerCoordinator) -> None:
        """Start polling one more miner (from the next cycle)."""
        self.coordinators[coordinator.miner_id] = coordinator

    async def run_cycle(self) -> CycleStats | None:
        """Poll every due miner once; ``None`` if the previous cycle is still running."""
        if self._cycle_running:
            log.warning("poll_cycle_overrun", miners=len(self.coordinators))
            return None
        self._cycle_running = True
        try:
            return await self._cycle()
        finally:
            self._cycle_running = False

    async def _cycle(self) -> CycleStats:
        started = self._wall()
        t0 = self._clock()
        fleet = list(self.coordinators.values())
        due = [c for c in fleet if c.due(t0)]
        tasks = [
            asyncio.create_task(
                self._poll_after(c, self._rng.uniform(0.0, self.jitter_s), t0),
                name=f"poll:{c.miner_id}",
            )
            for c in due
        ]
        self._tasks.update(tasks)
        try:
            outcomes = await asyncio.gather(*tasks)
        finally:
            self._tasks.difference_update(tasks)
        results = [r for r in outcomes if r is not None]
        ok = sum(r.ok for r in results)
        stats = CycleStats(
            started=started,
            duration_s=self._clock() - t0,
            polled=len(results),
            ok=ok,
            gaps=len(results) - ok,
            skipped=len(fleet) - len(results),
            slowest_s=max((r.duration_s for r in results), default=0.0),
        )
        self.last_stats = stats
        log.debug("poll_cycle", **{k: getattr(stats, k) for k in CycleStats.__slots__})
        if self.sink is not None:
            await self.sink(CycleReport(stats, results, fleet))
        return stats

    async def _poll_after(
        self, coordinator: MinerCoordinator, delay_s: float, cycle_start: float
    ) -> PollResult | None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        return await coordinator.poll(self._semaphore, cycle_start)

    async def shutdown(self, timeout_s: float = CANCEL_TIMEOUT_S) -> None:
        """Cancel in-flight polls, wait up to ``timeout_s`` for them, close every driver."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            if pending:
                log.warning("poll_tasks_not_cancelled", count=len(pending))
        for c in self.coordinators.values():
            try:
                await c.driver.close()
            except Exception:  # closing must go on for every driver
                log.exception("driver_close_failed", miner=c.miner_id)
