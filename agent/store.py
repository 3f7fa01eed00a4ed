"""The local store: SQLite in WAL mode, a versioned schema, retention and a hard disk cap.

One writer (the daemon) commits one transaction per poll cycle: every snapshot with its
boards, every gap with its error class, the miners' availability and the cycle's
statistics. Readers (``status``, the API) see only committed cycles. The file is ours only
if its ``application_id`` says so; a corrupt file, someone else's file or one written by a
newer agent raises :class:`StoreError` and is never reset. Raw rows are kept ``raw_days``,
5-minute aggregates ``agg_days``, and the database plus its WAL never grow past the disk cap:
the oldest raw rows go first, then the oldest aggregates. All methods block; the daemon
runs them on one thread through :class:`AsyncStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.errors import StoreError
from agent.snapshot import MinerSnapshot
from agent.store_schema import (
    AGGREGATE_S,
    AGGREGATE_SQL,
    APPLICATION_ID,
    FLAT_COLUMNS,
    HISTORY_SQL,
    INSERT_BOARD,
    INSERT_CYCLE,
    INSERT_GAP,
    INSERT_SNAPSHOT,
    MIGRATIONS,
    SCHEMA_VERSION,
    UPSERT_FEATURES,
)

log = structlog.get_logger(__name__)

DB_NAME = "hashpilot.db"
#: A reader (``status``) may hold a snapshot while the writer commits; wait rather than fail.
BUSY_TIMEOUT_MS = 5_000
#: A poll that started before a bucket boundary commits up to a poll timeout later; wait
#: this long past a boundary before aggregating the bucket it closes.
AGGREGATE_LAG_S = 120
#: A checkpoint blocked by a reader waits this long, not BUSY_TIMEOUT_MS: pruning runs
#: inside a poll cycle and gives up on a blocked checkpoint rather than stall the cycle.
CHECKPOINT_BUSY_MS = 100
#: Free space left to the rest of the system when the disk fills before the cap (logs,
#: package updates): the effective cap is min(cap, store size + free space - this).
DISK_RESERVE_BYTES = 64 * 1024 * 1024
#: Raw slices (PRUNE_STEP_FRACTION each) deleted before retrying a write that hit a full
#: disk: ~27 % of the raw rows, enough for a cycle without emptying the history.
FULL_RETRY_PRUNE_STEPS = 3
#: Prune when the files pass this share of the cap, down to LOW_WATER, so a cycle always fits.
CAP_HIGH_WATER = 0.90
CAP_LOW_WATER = 0.75
#: Share of the cap the WAL may use before SQLite checkpoints and truncates it.
WAL_SHARE = 0.05
#: Smallest WAL size limit: below 64 kB (16 pages of 4 kB) every cycle would checkpoint.
WAL_MIN_BYTES = 64 * 1024
#: Fewest pages between automatic checkpoints, for the same reason.
WAL_MIN_CHECKPOINT_PAGES = 16
#: SQLite's default checkpoint interval (4 MB of 4 kB pages); smaller caps checkpoint sooner.
WAL_AUTOCHECKPOINT_PAGES = 1_000
#: Rows removed per pruning step: small steps keep each pruning transaction (and the WAL) small.
PRUNE_STEP_FRACTION = 0.1
#: First-cycle size estimate before a real cycle has been measured: a snapshot row with three
#: boards and its index entries, doubled for WAL frames and page slack (measured ~500 B).
EST_SNAPSHOT_BYTES = 1_024
EST_GAP_BYTES = 256
#: Error messages kept per gap: enough for the firmware's reason, bounded for the disk.
GAP_MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class Gap:
    """A failed poll: when, which miner, the error's class and message."""

    miner_id: str
    ts: float
    error_class: str
    message: str


@dataclass(frozen=True, slots=True)
class MinerState:
    """A miner's identity and availability as the poller last saw it."""

    id: str
    host: str
    driver: str | None = None
    model: str | None = None
    make: str | None = None
    state: str = "unknown"
    last_success: float | None = None
    last_error_ts: float | None = None
    last_error_class: str | None = None
    last_error: str | None = None
    failures: int = 0
    config_json: str | None = None


@dataclass(frozen=True, slots=True)
class Cycle:
    """Everything one poll cycle learned, committed in one transaction."""

    started: float
    duration_s: float
    #: Successful polls: the snapshot and its flat record (``features.signals.flatten``).
    snapshots: Sequence[tuple[MinerSnapshot, Mapping[str, float]]]
    gaps: Sequence[Gap]
    miners: Sequence[MinerState]
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One line of the fleet table: availability plus the newest snapshot's figures."""

    miner_id: str
    host: str
    model: str | None
    state: str
    ts: float | None
    hashrate_ths: float | None
    expected_ths: float | None
    power_w: float | None
    rated_power_w: float | None
    chips: float | None
    expected_chips: float | None
    chip_temp_max_c: float | None
    last_error_class: str | None
    last_error: str | None
    #: When the miner last answered a poll (epoch seconds), ``None`` if never.
    last_success: float | None = None


def _sql(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _json_list(values: tuple[Any, ...] | None) -> str | None:
    """Encode a snapshot list as JSON; SQL NULL when it was not read this poll (never ``[]``)."""
    return None if values is None else json.dumps(list(values))


class Store:
    """Blocking access to the store file; one instance per process, one thread at a time."""

    def __init__(
        self,
        path: Path,
        *,
        disk_cap_bytes: int | None = None,
        raw_days: float = 7.0,
        agg_days: float = 90.0,
        readonly: bool = False,
        check: bool = True,
        durable: bool = True,
    ) -> None:
        """Open (creating or migrating unless ``readonly``), or raise ``StoreError``.

        ``durable=False`` (tests, benchmarks) never fsyncs: committed cycles still survive
        the process being killed, but not an OS crash or a power cut.
        """
        self.path = Path(path)
        self.disk_cap_bytes = disk_cap_bytes
        self.raw_days = raw_days
        self.agg_days = agg_days
        self.readonly = readonly
        self.durable = durable
        if readonly and not self.path.exists():
            raise StoreError(f"{self.path}: no store here (has the agent run yet?)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"{self.path}: cannot open: {err}") from err
        try:
            self._prepare(check)
        except sqlite3.DatabaseError as err:
            self.conn.close()
            raise StoreError(
                f"{self.path}: not a readable hashpilot store ({err}); refusing to reset it"
            ) from err
        except StoreError:
            self.conn.close()
            raise
        self._last_cycle_bytes = 0
        #: The last aggregation/pruning failure after a committed cycle, until one succeeds.
        self.maintenance_error: str | None = None
        self._next_snapshot_id = self._scalar("SELECT coalesce(max(id), 0) + 1 FROM snapshots")

    # -- opening --------------------------------------------------------------------------

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _prepare(self, check: bool) -> None:
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        app_id = self._scalar("PRAGMA application_id")
        version = self._scalar("PRAGMA user_version")
        tables = self._scalar("SELECT count(*) FROM sqlite_master")
        fresh = tables == 0 and version == 0 and app_id == 0
        if not fresh and app_id != APPLICATION_ID:
            raise StoreError(f"{self.path}: not a hashpilot store (application_id {app_id:#x})")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: written by a newer agent (schema {version} > {SCHEMA_VERSION}); "
                "upgrade the agent or restore a backup, the file is left untouched"
            )
        if check and not fresh:
            result = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
            if result != ["ok"]:
                raise StoreError(f"{self.path}: corrupt: {'; '.join(result)}")
        if self.readonly:
            if version < SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema {version} needs migration; start the agent once"
                )
            conn.execute("PRAGMA query_only = 1")
            return
        if fresh:
            # Must precede the first table: lets pruning hand pages back to the file system.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        mode = self._scalar("PRAGMA journal_mode = WAL")
        if mode != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode})")
        # FULL: the WAL is fsynced at every commit, so a committed cycle survives a power cut;
        # one fsync per 30 s cycle costs nothing.
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'OFF'}")
        conn.execute("PRAGMA foreign_keys = ON")
        if self.disk_cap_bytes:
            wal = max(int(self.disk_cap_bytes * WAL_SHARE), WAL_MIN_BYTES)
            page = self._scalar("PRAGMA page_size")
            conn.execute(f"PRAGMA journal_size_limit = {wal}")
            pages = min(max(wal // page, WAL_MIN_CHECKPOINT_PAGES), WAL_AUTOCHECKPOINT_PAGES)
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        self._migrate(version)

    def _migrate(self, version: int) -> None:
        while version < SCHEMA_VERSION:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version]:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {version + 1}")
                self.conn.execute("COMMIT")
            except sqlite3.Error as err:
                self.conn.execute("ROLLBACK")
                raise StoreError(
                    f"{self.path}: migration {version} -> {version + 1} failed: {err}"
                ) from err
            log.info("store_migrated", path=str(self.path), version=version + 1)
            version += 1

    def close(self) -> None:
        """Checkpoint and close the file."""
        if not self.readonly:
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as err:
                log.warning("store_checkpoint_failed", error=str(err))
        self.conn.close()

    # -- writing a cycle ------------------------------------------------------------------

    def write_cycle(self, cycle: Cycle) -> int:
        """Commit one cycle atomically and return its id; prune first if the cap needs room.

        Raises ``StoreError`` (writing nothing) if the cycle cannot fit under the disk cap
        even after pruning everything prunable, or cannot be written. Once the cycle has
        committed its id is returned: a failing aggregation or pruning afterwards is logged
        (``store_maintenance_failed``) and kept in ``maintenance_error``, never raised.
        """
        if self.disk_cap_bytes:
            self._make_room(cycle)
        before = self.size_bytes()
        try:
            cycle_id = self._commit_cycle(cycle)
        except sqlite3.Error as err:
            if err.sqlite_errorcode != sqlite3.SQLITE_FULL:
                raise StoreError(f"{self.path}: writing cycle failed: {err}") from err
            # The file system (or SQLite's page limit) is full: free the oldest raw rows
            # and try once more; a second failure is reported, nothing half-written.
            log.warning("store_disk_full", path=str(self.path), error=str(err))
            self._free_after_full()
            try:
                cycle_id = self._commit_cycle(cycle)
            except sqlite3.Error as again:
                raise StoreError(
                    f"{self.path}: writing cycle failed after pruning for a full disk: {again}"
                ) from again
        self._last_cycle_bytes = max(self.size_bytes() - before, 0)
        # The cycle is committed: a failure from here on is upkeep, not lost polls.
        try:
            self.aggregate(cycle.started)
            cap = self.effective_cap()
            if cap is not None and self.size_bytes() > CAP_HIGH_WATER * cap:
                self.enforce_cap()
        except StoreError as err:
            if self.maintenance_error is None:
                log.error("store_maintenance_failed", cycle=cycle_id, error=str(err))
            else:
                log.debug("store_maintenance_still_failing", cycle=cycle_id, error=str(err))
            self.maintenance_error = str(err)
        else:
            if self.maintenance_error is not None:
                log.info("store_maintenance_recovered", cycle=cycle_id)
            self.maintenance_error = None
        return cycle_id

    def _free_after_full(self) -> None:
        """Delete the oldest raw slices (FULL_RETRY_PRUNE_STEPS of them) and release pages."""
        for _ in range(FULL_RETRY_PRUNE_STEPS):
            if not self._prune_step():
                break
        self._release_pages()

    def effective_cap(self) -> int | None:
        """Return the disk cap, lowered to what the file system can still hold (minus a reserve)."""
        if not self.disk_cap_bytes:
            return None
        try:
            st = os.statvfs(self.path.parent)
        except OSError as err:
            log.debug("store_statvfs_failed", error=str(err))
            return self.disk_cap_bytes
        room = self.size_bytes() + st.f_bavail * st.f_frsize - DISK_RESERVE_BYTES
        return max(min(self.disk_cap_bytes, room), 0)

    def _commit_cycle(self, cycle: Cycle) -> int:
        """Write one cycle in one transaction; roll back and re-raise any SQLite error."""
        conn = self.conn
        first_id = self._next_snapshot_id
        try:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                INSERT_CYCLE,
                (
                    cycle.started,
                    cycle.duration_s,
                    len(cycle.snapshots) + len(cycle.gaps),
                    len(cycle.snapshots),
                    len(cycle.gaps),
                    cycle.skipped,
                ),
            )
            cycle_id = int(cur.lastrowid or 0)
            snap_rows, board_rows, latest = self._rows(cycle, cycle_id, first_id)
            conn.executemany(INSERT_SNAPSHOT, snap_rows)
            conn.executemany(INSERT_BOARD, board_rows)
            conn.executemany(
                INSERT_GAP,
                [
                    (g.miner_id, g.ts, cycle_id, g.error_class, g.message[:GAP_MESSAGE_CHARS])
                    for g in cycle.gaps
                ],
            )
            self._upsert_miners(cycle.miners, latest, cycle.started)
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            self._next_snapshot_id = self._scalar("SELECT coalesce(max(id), 0) + 1 FROM snapshots")
            raise
        self._next_snapshot_id = first_id + len(cycle.snapshots)
        return cycle_id

    def _make_room(self, cycle: Cycle) -> None:
        """Prune ahead of a write so the files stay under the cap after it commits."""
        cap = self.effective_cap()
        assert cap is not None
        estimate = max(
            2 * self._last_cycle_bytes,
            len(cycle.snapshots) * EST_SNAPSHOT_BYTES + len(cycle.gaps) * EST_GAP_BYTES,
        )
        if self.size_bytes() + estimate <= CAP_HIGH_WATER * cap:
            return
        self.enforce_cap(reserve=estimate)
        cap = self.effective_cap() or cap
        if self.size_bytes() + estimate > cap:
            raise StoreError(
                f"{self.path}: disk cap {cap / 1e6:.1f} MB too small for one "
                f"cycle (~{estimate / 1e6:.2f} MB) on top of what cannot be pruned"
            )

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    @staticmethod
    def _rows(
        cycle: Cycle, cycle_id: int, first_id: int
    ) -> tuple[list[tuple], list[tuple], dict[str, int]]:
        snap_rows: list[tuple] = []
        board_rows: list[tuple] = []
        latest: dict[str, int] = {}
        for offset, (snap, flat) in enumerate(cycle.snapshots):
            sid = first_id + offset
            latest[snap.miner_id] = sid
            raw = (
                snap.hashrate_avg_ths,
                snap.expected_hashrate_ths,
                snap.power_limit_w,
                snap.env_temp_c,
                snap.power_mode,
                snap.make,
                snap.model,
                snap.firmware,
                _json_list(snap.fans_rpm),
                _json_list(snap.error_codes),
                None if snap.pools is None else json.dumps([asdict(p) for p in snap.pools]),
            )
            snap_rows.append(
                (
                    sid,
                    snap.miner_id,
                    flat["ts"],
                    cycle_id,
                    *(_sql(flat[f]) for f in FLAT_COLUMNS),
                    *raw,
                )
            )
            seen: set[int] = set()
            for b in snap.boards or ():  # None: boards not read this poll, no rows
                if b.slot in seen:  # a firmware listing one chain twice must not sink the cycle
                    log.debug("store_duplicate_board", miner=snap.miner_id, slot=b.slot)
                    continue
                seen.add(b.slot)
                board_rows.append(
                    (
                        sid,
                        b.slot,
                        b.hashrate_ths,
                        b.board_temp_c,
                        b.chip_temp_c,
                        b.chips,
                        b.expected_chips,
                        b.freq_mhz,
                    )
                )
        return snap_rows, board_rows, latest

    def _upsert_miners(
        self, miners: Iterable[MinerState], latest: Mapping[str, int], now: float
    ) -> None:
        self.conn.executemany(
            """INSERT INTO miners (id, host, driver, model, make, config_json, state, last_success,
                   last_error_ts, last_error_class, last_error, failures, last_snapshot_id, updated)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(id) DO UPDATE SET host=excluded.host,
                   driver=coalesce(excluded.driver, driver), model=coalesce(excluded.model, model),
                   make=coalesce(excluded.make, make),
                   config_json=coalesce(excluded.config_json, config_json),
                   state=excluded.state, last_success=excluded.last_success,
                   last_error_ts=excluded.last_error_ts, last_error_class=excluded.last_error_class,
                   last_error=excluded.last_error, failures=excluded.failures,
                   last_snapshot_id=coalesce(excluded.last_snapshot_id, last_snapshot_id),
                   updated=excluded.updated""",
            [
                (
                    m.id,
                    m.host,
                    m.driver,
                    m.model,
                    m.make,
                    m.config_json,
                    m.state,
                    m.last_success,
                    m.last_error_ts,
                    m.last_error_class,
                    m.last_error,
                    m.failures,
                    latest.get(m.id),
                    now,
                )
                for m in miners
            ],
        )

    def write_unidentified(self, failures: Sequence[Gap], hosts: Mapping[str, str]) -> None:
        """Record listed miners that could not be identified (state ``unidentified``).

        A miner the store already knows as identified (it has a driver) keeps its row.
        """
        self._transaction(
            """INSERT INTO miners (id, host, state, last_error_ts, last_error_class, last_error,
                   updated) VALUES (?,?,'unidentified',?,?,?,?)
               ON CONFLICT(id) DO UPDATE SET last_error_ts=excluded.last_error_ts,
                   last_error_class=excluded.last_error_class, last_error=excluded.last_error,
                   updated=excluded.updated, failures=failures + 1
               WHERE driver IS NULL""",
            [
                (
                    g.miner_id,
                    hosts[g.miner_id],
                    g.ts,
                    g.error_class,
                    g.message[:GAP_MESSAGE_CHARS],
                    g.ts,
                )
                for g in failures
            ],
        )

    def write_features(
        self, ts: float, schema_hash: str, vectors: Mapping[str, Sequence[float]]
    ) -> None:
        """Replace each miner's latest feature vector (NaN stored as JSON null)."""
        rows = [
            (mid, ts, schema_hash, json.dumps([None if v != v else v for v in vec]))
            for mid, vec in vectors.items()
        ]
        self._transaction(UPSERT_FEATURES, rows)

    def _transaction(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(sql, rows)
            self.conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise StoreError(f"{self.path}: write failed: {err}") from err

    # -- aggregation, retention, disk cap -------------------------------------------------

    def aggregate(self, now: float) -> None:
        """Fold closed 5-minute buckets of raw rows into ``aggregates_5m`` (idempotent)."""
        target = math.floor((now - AGGREGATE_LAG_S) / AGGREGATE_S) * AGGREGATE_S
        mark = self._scalar("SELECT value FROM meta WHERE key = 'aggregated_until'")
        if mark is None:
            first = self._scalar("SELECT min(ts) FROM snapshots")
            if first is None:
                return
            start = math.floor(first / AGGREGATE_S) * AGGREGATE_S
        else:
            start = float(mark)
        if target <= start:
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(AGGREGATE_SQL, {"start": start, "end": target})
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('aggregated_until', ?)",
                (str(target),),
            )
            self.conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise StoreError(f"{self.path}: aggregation failed: {err}") from err

    def enforce_retention(self, now: float | None = None) -> dict[str, int]:
        """Delete raw rows older than ``raw_days`` and aggregates older than ``agg_days``."""
        now = time.time() if now is None else now
        self.aggregate(now)
        raw_cut = now - self.raw_days * 86400
        deleted = self._delete_raw_before(raw_cut)
        deleted["aggregates"] = self._delete(
            "DELETE FROM aggregates_5m WHERE bucket < ?", (now - self.agg_days * 86400,)
        )
        self._release_pages()
        return deleted

    def _delete(self, sql: str, params: Sequence[Any]) -> int:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            count = self.conn.execute(sql, params).rowcount
            self.conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise StoreError(f"{self.path}: pruning failed: {err}") from err
        return count

    def _delete_raw_before(self, cut_ts: float) -> dict[str, int]:
        """Delete snapshots (with boards), gaps and cycles older than ``cut_ts``."""
        first_kept = self._scalar("SELECT min(id) FROM snapshots WHERE ts >= ?", (cut_ts,))
        if first_kept is None:
            first_kept = self._scalar("SELECT coalesce(max(id), 0) + 1 FROM snapshots")
        return self._delete_raw(first_kept, cut_ts)

    def _delete_raw(self, first_kept_id: int, cut_ts: float) -> dict[str, int]:
        """Delete snapshots below ``first_kept_id``, gaps and cycles before ``cut_ts``."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            out = {
                "boards": conn.execute(
                    "DELETE FROM boards WHERE snapshot_id < ?", (first_kept_id,)
                ).rowcount,
                "snapshots": conn.execute(
                    "DELETE FROM snapshots WHERE id < ?", (first_kept_id,)
                ).rowcount,
                "gaps": conn.execute("DELETE FROM gaps WHERE ts < ?", (cut_ts,)).rowcount,
                "cycles": conn.execute("DELETE FROM cycles WHERE started < ?", (cut_ts,)).rowcount,
            }
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise StoreError(f"{self.path}: pruning failed: {err}") from err
        return out

    def _release_pages(self) -> bool:
        """Hand free pages back and truncate the WAL; False if a reader blocks the checkpoint."""
        # The pragma frees one page per step and Python's execute() steps a no-result
        # statement once; executescript() (sqlite3_exec) runs it to completion.
        self.conn.executescript("PRAGMA incremental_vacuum;")
        # A reader holding an old snapshot blocks TRUNCATE; waiting the full BUSY_TIMEOUT_MS
        # per pruning step would stall the cycle, so the checkpoint gets a short wait of its own.
        self.conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_MS}")
        try:
            busy, _log, _done = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return not busy

    def size_bytes(self) -> int:
        """Bytes on disk: the database (logical or physical, whichever is larger), WAL and -shm."""
        pages = self._scalar("PRAGMA page_count") * self._scalar("PRAGMA page_size")
        try:
            physical = self.path.stat().st_size
        except OSError:
            physical = 0
        side = 0
        for suffix in ("-wal", "-shm"):  # the WAL and its index both take disk space
            try:
                side += os.stat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                continue  # not there (no WAL yet, or checkpointed away): takes no space
        return max(pages, physical) + side

    def enforce_cap(self, reserve: int = 0) -> None:
        """Prune oldest raw rows, then oldest aggregates, until under the low-water mark.

        ``reserve`` bytes are kept free on top (room for the cycle about to be written).
        """
        cap = self.effective_cap()
        if cap is None:
            return
        target = CAP_LOW_WATER * cap - reserve
        start = self.size_bytes()
        blocked = False
        while self.size_bytes() > target:
            if not self._prune_step():
                break
            if not self._release_pages():
                # Deleting more cannot shrink the files while the WAL cannot be truncated:
                # stop here rather than throw away history for nothing.
                blocked = True
                log.warning(
                    "store_checkpoint_blocked",
                    path=str(self.path),
                    reason="a reader holds an old snapshot, the WAL cannot be truncated",
                    size=self.size_bytes(),
                    cap=cap,
                )
                break
        mark = float(self._scalar("SELECT value FROM meta WHERE key = 'aggregated_until'") or 0)
        oldest = self._scalar("SELECT min(ts) FROM snapshots")
        if oldest is not None and oldest > mark:
            log.warning("store_cap_pruned_unaggregated", oldest_raw=oldest, aggregated_until=mark)
        if self.size_bytes() > cap and blocked:
            raise StoreError(
                f"{self.path}: over the disk cap ({self.size_bytes() / 1e6:.1f} MB > "
                f"{cap / 1e6:.1f} MB) because a reader (status, API) holds an old snapshot and "
                "the WAL cannot be checkpointed; pruning stopped, retried next cycle"
            )
        if self.size_bytes() > cap:
            raise StoreError(
                f"{self.path}: disk cap {cap / 1e6:.1f} MB too small: "
                f"{self.size_bytes() / 1e6:.1f} MB left after pruning everything prunable"
            )
        log.debug("store_pruned", before=start, after=self.size_bytes(), cap=cap)

    def _prune_step(self) -> bool:
        """Delete the oldest slice of raw rows (or, with none left, of aggregates)."""
        lo, hi = self.conn.execute("SELECT min(id), max(id) FROM snapshots").fetchone()
        if lo is not None and hi > lo:
            first_kept = lo + max(int((hi - lo) * PRUNE_STEP_FRACTION), 1)
            cut = self._scalar(
                "SELECT ts FROM snapshots WHERE id >= ? ORDER BY id LIMIT 1", (first_kept,)
            )
            self._delete_raw(first_kept, cut)
            return True
        lo, hi = self.conn.execute("SELECT min(ts), max(ts) FROM gaps").fetchone()
        if lo is not None and hi > lo:
            self._delete_raw(0, lo + (hi - lo) * PRUNE_STEP_FRACTION)
            return True
        lo, hi = self.conn.execute("SELECT min(bucket), max(bucket) FROM aggregates_5m").fetchone()
        if lo is not None and hi > lo:
            cut = lo + max((hi - lo) * PRUNE_STEP_FRACTION, AGGREGATE_S)
            return self._delete("DELETE FROM aggregates_5m WHERE bucket < ?", (cut,)) > 0
        return False

    # -- reading --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn a SQLite error while reading into ``StoreError`` naming the file and the read."""
        try:
            yield
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: reading {what} failed: {err}") from err

    def fleet(self) -> list[FleetRow]:
        """Every known miner with its availability and newest snapshot, by id."""
        with self._reading("the fleet"):
            return self._fleet()

    def _fleet(self) -> list[FleetRow]:
        rows = self.conn.execute(
            """SELECT m.id, m.host, coalesce(s.model, m.model), m.state, s.ts, s.hashrate_ths,
                      s.expected_ths, s.power_w, s.rated_power_w, s.chips, s.expected_chips,
                      s.chip_temp_max_c, m.last_error_class, m.last_error, m.last_success
               FROM miners m LEFT JOIN snapshots s ON s.id = m.last_snapshot_id ORDER BY m.id"""
        ).fetchall()
        return [FleetRow(*r) for r in rows]

    def known_configs(self) -> dict[str, dict[str, Any]]:
        """Each miner's cached ``DriverConfig`` (as a dict), so known miners skip probing."""
        with self._reading("known miners"):
            rows = self.conn.execute(
                "SELECT id, config_json FROM miners WHERE config_json IS NOT NULL"
            ).fetchall()
        out = {}
        for mid, text in rows:
            try:
                out[mid] = json.loads(text)
            except ValueError as err:
                raise StoreError(f"{self.path}: miner {mid!r} has an unreadable config") from err
        return out

    def history(
        self, miner_id: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """Raw flat rows (``miner_id`` + ``FLAT_FIELDS``) in time order, for the batch path."""
        where: list[str] = []
        params: list[Any] = []
        if miner_id is not None:
            where.append("miner_id = ?")
            params.append(miner_id)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        sql = HISTORY_SQL
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._reading("history"):
            cur = self.conn.execute(sql + " ORDER BY miner_id, ts", params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur]

    def counts(self) -> dict[str, int]:
        """Row counts per table (diagnostics and tests)."""
        tables = ("miners", "cycles", "snapshots", "boards", "gaps", "features", "aggregates_5m")
        with self._reading("row counts"):
            return {t: self._scalar(f"SELECT count(*) FROM {t}") for t in tables}  # noqa: S608

    def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check`` result lines (``["ok"]`` when healthy)."""
        with self._reading("integrity_check"):
            return [r[0] for r in self.conn.execute("PRAGMA integrity_check")]


class AsyncStore:
    """Runs a :class:`Store`'s blocking calls on one dedicated thread, in call order."""

    def __init__(self, store: Store) -> None:
        """Wrap an open store."""
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def write_cycle(self, cycle: Cycle) -> int:
        """See :meth:`Store.write_cycle`."""
        return int(await self._run(self.store.write_cycle, cycle))

    async def write_features(
        self, ts: float, schema_hash: str, vectors: Mapping[str, Sequence[float]]
    ) -> None:
        """See :meth:`Store.write_features`."""
        await self._run(self.store.write_features, ts, schema_hash, vectors)

    async def write_unidentified(self, failures: Sequence[Gap], hosts: Mapping[str, str]) -> None:
        """See :meth:`Store.write_unidentified`."""
        await self._run(self.store.write_unidentified, failures, hosts)

    async def enforce_retention(self, now: float | None = None) -> dict[str, int]:
        """See :meth:`Store.enforce_retention`."""
        return dict(await self._run(self.store.enforce_retention, now))

    async def fleet(self) -> list[FleetRow]:
        """See :meth:`Store.fleet`."""
        return list(await self._run(self.store.fleet))

    async def known_configs(self) -> dict[str, dict[str, Any]]:
        """See :meth:`Store.known_configs`."""
        return dict(await self._run(self.store.known_configs))

    async def close(self) -> None:
        """Close the store on its thread, then stop the thread."""
        await self._run(self.store.close)
        self._executor.shutdown(wait=True)
