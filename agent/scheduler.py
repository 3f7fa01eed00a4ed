"""The daemon's periodic jobs on apscheduler 3's ``AsyncIOScheduler``, in one place.

Every job is a coroutine registered under a unique name with its interval as a named
constant (supervisor's ``misc/tasks.py``). A job never overlaps itself (``max_instances=1``;
a late run is coalesced, not queued). Each run is a task named ``job:<name>`` and tracked, so
shutdown can first let running jobs finish (a poll cycle commits its data) and then cancel
what is left with a timeout. A failing job logs and waits for its next run; it never stops
the scheduler.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.errors import AgentError, StoreError
from agent.features.extract import FleetFeatures
from agent.poller import CycleReport, MinerCoordinator, Poller
from agent.store import GAP_MESSAGE_CHARS, AsyncStore, Cycle, Gap, MinerState

log = structlog.get_logger(__name__)

#: Feature vectors are persisted every 5 minutes: the cadence recommendations run at; the
#: windows themselves update at every poll in memory.
FEATURES_FLUSH_S = 300.0
#: Time-based retention runs hourly: raw data expires in days; the disk cap is enforced at
#: every write regardless.
RETENTION_S = 3600.0
#: Every 10 minutes, miners that could not be identified at start-up (switched off, not yet
#: cabled) and new addresses in scan ranges are probed again, so they join without a restart.
DISCOVERY_S = 600.0
#: The first retention run waits a minute: start-up (identification, the first poll cycles)
#: gets the store first, and a restart loop does not prune on every start.
RETENTION_FIRST_S = 60.0
#: A run apscheduler starts late (the loop was busy) still runs if it is at most one
#: interval late (at least this many seconds); later than that it is coalesced away.
MISFIRE_GRACE_MIN_S = 1
#: On shutdown, running jobs get this long to finish: a poll cycle is bounded by jitter +
#: poll timeout (12 s by default), plus at most 20 % of the timeout for a hung miner admitted
#: late (poller.LATE_POLL_SHARE): 14 s; systemd allows 30 s (TimeoutStopSec).
SHUTDOWN_GRACE_S = 15.0
#: After the grace period, cancelled jobs get this long to unwind.
CANCEL_TIMEOUT_S = 5.0

Job = Callable[[], Awaitable[object]]


class AgentScheduler:
    """Named, non-overlapping periodic coroutines with tracked tasks and a clean shutdown."""

    def __init__(self) -> None:
        """Create the scheduler (started by :meth:`start` inside the running loop)."""
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._tasks: set[asyncio.Task[object]] = set()
        self._names: set[str] = set()

    def every(self, name: str, interval_s: float, job: Job, *, first_in_s: float = 0.0) -> None:
        """Run ``job`` every ``interval_s`` seconds, first after ``first_in_s``."""
        if name in self._names:
            raise ValueError(f"job {name!r} already registered")
        self._names.add(name)

        async def run() -> None:
            task = asyncio.current_task()
            if task is not None:
                task.set_name(f"job:{name}")
                self._tasks.add(task)
            try:
                await job()
            except AgentError as err:
                log.error("job_failed", job=name, error_class=type(err).__name__, error=str(err))
            except Exception:  # a bug: log it with its traceback, keep the schedule
                log.exception("job_bug", job=name)
            finally:
                if task is not None:
                    self._tasks.discard(task)

        self._scheduler.add_job(
            run,
            "interval",
            seconds=interval_s,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(MISFIRE_GRACE_MIN_S, int(interval_s)),
            next_run_time=datetime.now(UTC) + timedelta(seconds=first_in_s),
        )

    def start(self) -> None:
        """Start firing jobs (call from inside the running event loop)."""
        self._scheduler.start()
        log.info("scheduler_started", jobs=sorted(self._names))

    @property
    def running_jobs(self) -> list[str]:
        """Names of the jobs running right now."""
        return sorted(t.get_name() for t in self._tasks)

    async def shutdown(
        self, grace_s: float = SHUTDOWN_GRACE_S, cancel_timeout_s: float = CANCEL_TIMEOUT_S
    ) -> None:
        """Stop firing, let running jobs finish for ``grace_s``, then cancel the rest."""
        if self._scheduler.running:
            self._scheduler.pause()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                log.warning("job_cancelled_at_shutdown", task=task.get_name())
                task.cancel()
            if pending:
                _done, still = await asyncio.wait(pending, timeout=cancel_timeout_s)
                if still:
                    log.error("jobs_did_not_stop", tasks=sorted(t.get_name() for t in still))
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        log.info("scheduler_stopped")


class Backbone:
    """The running core: poll cycles into the store and the streaming features, on a schedule."""

    def __init__(
        self,
        poller: Poller,
        store: AsyncStore,
        features: FleetFeatures,
        *,
        poll_interval_s: float,
        discover: Callable[[], Awaitable[list[MinerCoordinator]]] | None = None,
    ) -> None:
        """Wire ``poller`` to write each cycle to ``store`` and ``features``."""
        self.poller = poller
        self.store = store
        self.features = features
        self.poll_interval_s = poll_interval_s
        self.scheduler = AgentScheduler()
        self._discover = discover
        self._store_error: str | None = None
        self._config_written: set[str] = set()
        self.last_cycle_id: int | None = None
        poller.sink = self.write_cycle

    def start(self) -> None:
        """Register the jobs and start the scheduler (inside the running loop)."""
        s = self.scheduler
        s.every("poll", self.poll_interval_s, self.poller.run_cycle)
        s.every("features", FEATURES_FLUSH_S, self.flush_features, first_in_s=FEATURES_FLUSH_S)
        s.every(
            "retention", RETENTION_S, self.store.enforce_retention, first_in_s=RETENTION_FIRST_S
        )
        if self._discover is not None:
            s.every("discovery", DISCOVERY_S, self.discover, first_in_s=DISCOVERY_S)
        s.start()

    async def stop(self) -> None:
        """Finish or cancel running jobs, close drivers, persist features, close the store."""
        await self.scheduler.shutdown()
        await self.poller.shutdown()
        try:
            await self.flush_features()
        except AgentError as err:
            log.error("features_flush_failed", error=str(err))
        await self.store.close()

    async def write_cycle(self, report: CycleReport) -> None:
        """Commit one cycle (snapshots, gaps, availability) and feed the feature windows."""
        snapshots = []
        gaps = []
        for r in report.results:
            if r.snapshot is not None:
                snapshots.append((r.snapshot, self.features.add_snapshot(r.snapshot)))
            else:
                gaps.append(Gap(r.miner_id, r.ts, r.error_class or "Error", str(r.error)))
        polled = {r.miner_id for r in report.results}
        miners = [self._state(c) for c in report.coordinators if c.miner_id in polled]
        cycle = Cycle(
            started=report.stats.started,
            duration_s=report.stats.duration_s,
            snapshots=snapshots,
            gaps=gaps,
            miners=miners,
            skipped=report.stats.skipped,
        )
        try:
            self.last_cycle_id = await self.store.write_cycle(cycle)
        except StoreError as err:
            if self._store_error is None:
                log.error("store_write_failed", error=str(err), lost_polls=len(report.results))
            else:
                log.debug("store_still_failing", error=str(err))
            self._store_error = str(err)
            return
        if self._store_error is not None:
            log.info("store_recovered", cycle=self.last_cycle_id)
            self._store_error = None
        self._config_written.update(m.id for m in miners)

    def _state(self, c: MinerCoordinator) -> MinerState:
        err = c.last_error
        first_time = c.miner_id not in self._config_written
        return MinerState(
            id=c.miner_id,
            host=c.host,
            driver=c.driver.config.driver,
            model=c.model,
            state=str(c.state),
            last_success=c.last_success,
            last_error_ts=c.last_error_ts,
            last_error_class=None if err is None else type(err).__name__,
            last_error=None if err is None else str(err)[:GAP_MESSAGE_CHARS],
            failures=c.failures,
            config_json=json.dumps(c.driver.config.to_dict()) if first_time else None,
        )

    async def flush_features(self) -> None:
        """Persist every miner's current feature vector."""
        now = time.time()
        vectors = {mid: f.vector(now).tolist() for mid, f in self.features.miners.items()}
        if vectors:
            await self.store.write_features(now, self.features.schema.hash, vectors)

    async def discover(self) -> None:
        """Add miners found since start-up (scan ranges, miners that were unreachable)."""
        assert self._discover is not None
        for coordinator in await self._discover():
            if coordinator.miner_id not in self.poller.coordinators:
                log.info("miner_added", miner=coordinator.miner_id, host=coordinator.host)
                self.poller.add(coordinator)
