"""The store's schema: versioned migrations and the SQL the store runs, in one place.

``MIGRATIONS[v]`` upgrades a file from ``user_version`` v to v + 1 inside one transaction.
Later tables (recommendations, actions, audit, bundle state) arrive as new migrations;
never edit an existing one.
"""

from __future__ import annotations

from agent.features.signals import FLAT_FIELDS

#: "HPST" — marks a SQLite file as a hashpilot store (PRAGMA application_id).
APPLICATION_ID = 0x48505354
#: Current schema version (PRAGMA user_version).
SCHEMA_VERSION = 1
#: Aggregate bucket width: 5 minutes keeps 90 days of 2,000 miners near 50 M rows.
AGGREGATE_S = 300

FLAT_COLUMNS = [f for f in FLAT_FIELDS if f != "ts"]
_RAW_EXTRA = (
    "hashrate_avg_ths",
    "fw_expected_ths",
    "power_limit_w",
    "env_temp_c",
    "power_mode",
    "make",
    "model",
    "firmware",
    "fans_json",
    "error_codes_json",
    "pools_json",
)
_SNAPSHOT_COLUMNS = ("id", "miner_id", "ts", "cycle_id", *FLAT_COLUMNS, *_RAW_EXTRA)
_BOARD_COLUMNS = (
    "snapshot_id",
    "slot",
    "hashrate_ths",
    "board_temp_c",
    "chip_temp_c",
    "chips",
    "expected_chips",
    "freq_mhz",
)

# Each migration is a list of statements run in one transaction with the version bump.
MIGRATIONS: dict[int, list[str]] = {
    0: [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE miners (
            id TEXT PRIMARY KEY, host TEXT NOT NULL, driver TEXT, model TEXT, make TEXT,
            config_json TEXT, state TEXT NOT NULL DEFAULT 'unknown', last_success REAL,
            last_error_ts REAL, last_error_class TEXT, last_error TEXT,
            failures INTEGER NOT NULL DEFAULT 0, last_snapshot_id INTEGER, updated REAL)""",
        """CREATE TABLE cycles (
            id INTEGER PRIMARY KEY, started REAL NOT NULL, duration_s REAL NOT NULL,
            polled INTEGER NOT NULL, ok INTEGER NOT NULL, gaps INTEGER NOT NULL,
            skipped INTEGER NOT NULL)""",
        "CREATE INDEX cycles_started ON cycles(started)",
        "CREATE TABLE snapshots (id INTEGER PRIMARY KEY, miner_id TEXT NOT NULL, ts REAL NOT NULL, "
        "cycle_id INTEGER, "
        + ", ".join(f"{c} REAL" for c in (*FLAT_COLUMNS, *_RAW_EXTRA[:4]))
        + ", "
        + ", ".join(f"{c} TEXT" for c in _RAW_EXTRA[4:])
        + ")",
        "CREATE INDEX snapshots_miner_ts ON snapshots(miner_id, ts)",
        "CREATE INDEX snapshots_ts ON snapshots(ts)",
        """CREATE TABLE boards (
            snapshot_id INTEGER NOT NULL, slot INTEGER NOT NULL, hashrate_ths REAL,
            board_temp_c REAL, chip_temp_c REAL, chips INTEGER, expected_chips INTEGER,
            freq_mhz REAL, PRIMARY KEY (snapshot_id, slot)) WITHOUT ROWID""",
        """CREATE TABLE gaps (
            id INTEGER PRIMARY KEY, miner_id TEXT NOT NULL, ts REAL NOT NULL,
            cycle_id INTEGER, error_class TEXT NOT NULL, message TEXT NOT NULL)""",
        "CREATE INDEX gaps_miner_ts ON gaps(miner_id, ts)",
        "CREATE INDEX gaps_ts ON gaps(ts)",
        """CREATE TABLE features (
            miner_id TEXT PRIMARY KEY, ts REAL NOT NULL, schema_hash TEXT NOT NULL,
            vector_json TEXT NOT NULL)""",
        """CREATE TABLE aggregates_5m (
            miner_id TEXT NOT NULL, bucket REAL NOT NULL, samples INTEGER NOT NULL,
            gaps INTEGER NOT NULL, hashrate_ths_avg REAL, hashrate_ths_min REAL,
            hashrate_ths_max REAL, expected_ths REAL, power_w_avg REAL, chip_temp_max_c_avg REAL,
            chip_temp_max_c_max REAL, board_temp_max_c_max REAL, fan_rpm_mean_avg REAL,
            chips_min REAL, boards_hashing_min REAL, hw_errors_max REAL, accepted_max REAL,
            rejected_max REAL, uptime_s_max REAL, PRIMARY KEY (miner_id, bucket)) WITHOUT ROWID""",
        "CREATE INDEX aggregates_bucket ON aggregates_5m(bucket)",
    ],
}

# Statements assembled from the module's own column tuples above (no outside input).
INSERT_SNAPSHOT = (
    f"INSERT INTO snapshots ({', '.join(_SNAPSHOT_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(_SNAPSHOT_COLUMNS))})"
)
INSERT_BOARD = (
    f"INSERT INTO boards ({', '.join(_BOARD_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(_BOARD_COLUMNS))})"
)
INSERT_CYCLE = (
    "INSERT INTO cycles (started, duration_s, polled, ok, gaps, skipped) VALUES (?,?,?,?,?,?)"
)
INSERT_GAP = "INSERT INTO gaps (miner_id, ts, cycle_id, error_class, message) VALUES (?,?,?,?,?)"
UPSERT_FEATURES = (
    "INSERT OR REPLACE INTO features (miner_id, ts, schema_hash, vector_json) VALUES (?,?,?,?)"
)
_BUCKET = f"CAST(ts / {AGGREGATE_S} AS INTEGER) * {AGGREGATE_S}"
AGGREGATE_SQL = f"""
    INSERT OR REPLACE INTO aggregates_5m
    SELECT miner_id, b, sum(s), sum(g), avg(hashrate_ths), min(hashrate_ths),
           max(hashrate_ths), avg(expected_ths), avg(power_w), avg(chip_temp_max_c),
           max(chip_temp_max_c), max(board_temp_max_c), avg(fan_rpm_mean), min(chips),
           min(boards_hashing), max(hw_errors), max(accepted), max(rejected), max(uptime_s)
    FROM (
        SELECT miner_id, {_BUCKET} AS b, 1 AS s, 0 AS g, hashrate_ths, expected_ths, power_w,
               chip_temp_max_c, board_temp_max_c, fan_rpm_mean, chips, boards_hashing,
               hw_errors, accepted, rejected, uptime_s
        FROM snapshots WHERE ts >= :start AND ts < :end
        UNION ALL
        SELECT miner_id, {_BUCKET}, 0, 1, {", ".join(["NULL"] * 12)}
        FROM gaps WHERE ts >= :start AND ts < :end
    ) GROUP BY miner_id, b"""  # noqa: S608
HISTORY_SQL = f"SELECT miner_id, {', '.join(FLAT_FIELDS)} FROM snapshots"  # noqa: S608
