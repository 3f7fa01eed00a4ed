"""The feature schema (one definition, shared with the trainer) and streaming extraction.

A feature is one statistic of one per-sample signal (``agent.features.signals``) over one
time window: ``chip_temp_max_c_slope_1h`` is the least-squares trend of the hottest chip
over the last hour, in °C/h. :class:`FeatureSchema` names every feature with its unit and
doc, and hashes the definition so a model bundle can refuse a mismatched agent.
:class:`MinerFeatures` updates every window in O(1) per poll; ``agent.features.batch``
computes the same numbers from a DataFrame. Missing stays missing: ``NaN``, never ``0``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import structlog

from agent.features.signals import FLAT_FIELDS, SCALAR, SIGNAL_INDEX, SIGNALS, derive, flatten
from agent.features.windows import WINDOW_BUCKETS, RollingWindows, bucket_width_ms, to_ms
from agent.profiles import HardwareProfile
from agent.snapshot import MinerSnapshot

log = structlog.get_logger(__name__)

#: Bump when a formula changes meaning; it is part of the schema hash.
FEATURE_VERSION = 1

#: The windows the issue asks for; configurable through ``AgentSettings.feature_windows``.
DEFAULT_WINDOWS: tuple[str, ...] = ("5m", "1h", "6h", "24h", "7d")

#: Which statistics of which signal become features (most signals need only their mean).
PLAN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("present", ("count", "coverage")),
    ("hashrate_ratio", ("mean", "min", "std")),
    ("hashrate_ths", ("mean",)),
    ("power_w", ("mean",)),
    ("efficiency_j_th", ("mean",)),
    ("efficiency_estimated", ("mean",)),
    ("chip_temp_max_c", ("mean", "max", "std", "slope")),
    ("chip_temp_mean_c", ("mean",)),
    ("board_temp_max_c", ("mean", "max", "slope")),
    ("board_temp_mean_c", ("mean",)),
    ("fan_ratio", ("mean", "min")),
    ("fan_rpm_mean", ("mean",)),
    ("hw_error_rate", ("mean",)),
    ("reject_rate", ("mean",)),
    ("hashing", ("mean",)),
    ("board_loss", ("mean", "max")),
    ("chip_loss", ("mean", "max")),
    ("restart", ("sum",)),
)

#: Friendlier names for a few (signal, stat) pairs.
ALIASES = {
    ("present", "count"): "samples",
    ("present", "coverage"): "coverage",
    ("hashing", "mean"): "uptime_ratio",
    ("restart", "sum"): "restarts",
}

_STAT_DOC = {
    "mean": "mean",
    "std": "standard deviation (stability; ddof 1)",
    "min": "minimum",
    "max": "maximum",
    "slope": "least-squares trend per hour",
    "sum": "total",
    "count": "number of successful polls",
    "coverage": "fraction of the expected polls that succeeded (capped at 1)",
}

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"5m"``, ``"6h"``, ``"7d"`` → seconds; ``ValueError`` otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a duration like 5m, 1h, 7d: {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass(frozen=True, slots=True)
class Window:
    """A named rolling time window."""

    name: str
    span_s: float

    @property
    def width_ms(self) -> int:
        """Bucket width used by both the streaming and the batch path."""
        return bucket_width_ms(self.span_s)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature: a statistic of a signal over a window, with its unit and meaning."""

    name: str
    unit: str
    doc: str
    signal: str
    stat: str
    window: str


def _unit(sig_unit: str, stat: str) -> str:
    if stat == "slope":
        return f"{sig_unit}/h"
    if stat == "count":
        return "samples"
    if stat == "coverage":
        return "fraction"
    return sig_unit


class FeatureSchema:
    """Every feature the agent computes, in a fixed order, with a stable hash."""

    def __init__(self, windows: Iterable[str] = DEFAULT_WINDOWS) -> None:
        """Build the schema for the given window names (``"5m"``, ``"1h"`` …)."""
        names = list(windows)
        if not names:
            raise ValueError("at least one feature window is required")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature windows in {names}")
        self.windows = tuple(Window(n, parse_duration(n)) for n in names)
        for w in self.windows:
            w.width_ms  # noqa: B018 - validates the span early
        specs = []
        for w in self.windows:
            for sig_name, stats in PLAN:
                sig = SIGNALS[SIGNAL_INDEX[sig_name]]
                for stat in stats:
                    base = ALIASES.get((sig_name, stat), f"{sig_name}_{stat}")
                    doc = f"{_STAT_DOC[stat]} over the last {w.name} of: {sig.doc}"
                    specs.append(
                        FeatureSpec(
                            f"{base}_{w.name}", _unit(sig.unit, stat), doc, sig_name, stat, w.name
                        )
                    )
        self.features: tuple[FeatureSpec, ...] = tuple(specs)
        self.names: tuple[str, ...] = tuple(f.name for f in specs)

    def __len__(self) -> int:
        """Return the number of features."""
        return len(self.features)

    @property
    def hash(self) -> str:
        """SHA-256 of the definition (names, units, windows, version), not of the docs."""
        body = {
            "version": FEATURE_VERSION,
            "buckets": WINDOW_BUCKETS,
            "signals": [[s.name, s.unit] for s in SIGNALS],
            "windows": [[w.name, w.width_ms] for w in self.windows],
            "features": [[f.name, f.unit, f.signal, f.stat, f.window] for f in self.features],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def describe(self) -> list[dict[str, str]]:
        """Name, unit and doc of every feature (for docs, bundles and the operator page)."""
        return [{"name": f.name, "unit": f.unit, "doc": f.doc} for f in self.features]

    def signal_needs(self, stat: str) -> tuple[int, ...]:
        """Indexes of the signals some feature needs ``stat`` of."""
        return tuple(sorted({SIGNAL_INDEX[f.signal] for f in self.features if f.stat == stat}))


_EMPTY_RECORD = dict.fromkeys(FLAT_FIELDS, math.nan)


class MinerFeatures:
    """Streaming features of one miner: feed flat records in time order, read values any time."""

    _STATS = (*RollingWindows.STATS, "coverage")

    def __init__(self, schema: FeatureSchema, poll_interval_s: float) -> None:
        """Prepare the windows; ``poll_interval_s`` is the expected spacing for coverage."""
        self.schema = schema
        self.interval_ms = poll_interval_s * 1000.0
        self._windows: RollingWindows | None = None
        self._prev: Mapping[str, float] = _EMPTY_RECORD
        self._last_ms: int | None = None
        widx = {w.name: i for i, w in enumerate(schema.windows)}
        # Fancy index into the stacked (stat, window, signal) summary, in schema order.
        self._pick = (
            np.array([self._STATS.index(f.stat) for f in schema.features]),
            np.array([widx[f.window] for f in schema.features]),
            np.array([SIGNAL_INDEX[f.signal] for f in schema.features]),
        )

    @property
    def last_ts(self) -> float | None:
        """Time of the newest sample (epoch seconds)."""
        return None if self._last_ms is None else self._last_ms / 1000.0

    def add(self, record: Mapping[str, float]) -> bool:
        """Add one flat record (see ``FLAT_FIELDS``); returns False if out of time order."""
        t_ms = to_ms(record["ts"])
        if self._last_ms is not None and t_ms <= self._last_ms:
            log.debug("feature_sample_out_of_order", ts=record["ts"], last_ms=self._last_ms)
            return False
        if self._windows is None:
            need = self.schema.signal_needs
            self._windows = RollingWindows(
                [w.span_s for w in self.schema.windows],
                len(SIGNALS),
                spread=need("std"),
                slope=need("slope"),
                minimum=need("min"),
                maximum=need("max"),
                total=need("sum"),
                origin_ms=t_ms,
            )
        values = np.array(derive(record, self._prev, SCALAR), dtype=float)
        self._windows.add(t_ms, values)
        self._prev = record
        self._last_ms = t_ms
        return True

    def add_snapshot(self, snap: MinerSnapshot, profile: HardwareProfile | None) -> bool:
        """Flatten and add one snapshot."""
        return self.add(flatten(snap, profile))

    def vector(self, at_s: float | None = None) -> np.ndarray:
        """Feature values in schema order at ``at_s`` (default: newest sample); NaN = missing."""
        if self._windows is None or self._last_ms is None:
            return np.full(len(self.schema), np.nan)
        t_ms = self._last_ms if at_s is None else max(to_ms(at_s), self._last_ms)
        summary = self._windows.summary(t_ms)
        expected = self._windows.covered_ms(t_ms) / self.interval_ms
        coverage = np.minimum(1.0, summary["count"] / expected[:, None])
        stacked = np.stack([*(summary[s] for s in RollingWindows.STATS), coverage])
        return stacked[self._pick]

    def values(self, at_s: float | None = None) -> dict[str, float]:
        """Feature values by name (NaN = missing)."""
        return dict(zip(self.schema.names, self.vector(at_s).tolist(), strict=True))

    def nbytes(self) -> int:
        """Approximate bytes of window state."""
        return 0 if self._windows is None else self._windows.nbytes()


class FleetFeatures:
    """Streaming features for every miner, keyed by miner id."""

    def __init__(
        self,
        schema: FeatureSchema,
        poll_interval_s: float,
        profile_for: Callable[[MinerSnapshot], HardwareProfile | None],
    ) -> None:
        """``profile_for`` finds a snapshot's hardware profile (expected chips, rated power)."""
        self.schema = schema
        self.poll_interval_s = poll_interval_s
        self._profile_for = profile_for
        self.miners: dict[str, MinerFeatures] = {}

    def add_snapshot(self, snap: MinerSnapshot) -> dict[str, float]:
        """Add a snapshot to its miner's windows; returns the flat record that was added."""
        record = flatten(snap, self._profile_for(snap))
        state = self.miners.get(snap.miner_id)
        if state is None:
            state = self.miners[snap.miner_id] = MinerFeatures(self.schema, self.poll_interval_s)
        state.add(record)
        return record

    def forget(self, miner_id: str) -> None:
        """Drop a miner that left the inventory."""
        self.miners.pop(miner_id, None)
