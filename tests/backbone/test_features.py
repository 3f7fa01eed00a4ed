"""Features: streaming windows vs the batch path, missing data, schema stability."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.features.batch import fleet_features, miner_features
from agent.features.extract import FeatureSchema, MinerFeatures, parse_duration
from agent.features.signals import FLAT_FIELDS, SCALAR, SIGNAL_INDEX, derive, flatten
from agent.features.windows import RollingWindows
from agent.snapshot import BoardReading, MinerSnapshot

T0 = 1_750_000_000.0
REL = 1e-9
#: Absolute floor per feature: 1e-12 x the largest |value| of the feature's signal in the
#: history, for values that are zero up to rounding (a std or slope of a flat series).
ATOL_REL = 1e-12


# ---------------------------------------------------------------- random histories


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, float]]:
    """Random poll histories: jittered intervals, long gaps, missing fields, counter resets."""
    n = draw(st.integers(min_value=1, max_value=140))
    gaps = draw(
        st.lists(
            st.one_of(
                st.integers(1_000, 60_000),  # ordinary polls, ms
                st.sampled_from([30_000, 30_000, 10_000]),  # exact spacings hit bucket edges
                st.integers(60_000, 8 * 3_600_000),  # outages
            ),
            min_size=n,
            max_size=n,
        )
    )
    missing = draw(st.floats(0.0, 0.6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    level = draw(st.sampled_from([1e-3, 1.0, 80.0, 3_000.0, 1e6]))
    flat = draw(st.booleans())  # constant series: std 0, slope 0
    t_ms = 1_750_000_000_000
    hw = acc = rej = up = 0.0
    rows = []
    for gap in gaps:
        t_ms += gap
        if rng.random() < 0.05:
            up = hw = acc = rej = 0.0  # restart resets counters and uptime
        up += gap / 1000.0
        hw += float(rng.integers(0, 5))
        acc += float(rng.integers(0, 30))
        rej += float(rng.integers(0, 3))

        def val(mean: float, sd: float) -> float:
            if rng.random() < missing:
                return math.nan
            return mean if flat else float(mean + sd * rng.standard_normal())

        chips = float(rng.choice([114.0, 120.0, 126.0]))
        rows.append(
            {
                "ts": t_ms / 1000.0,
                "hashrate_ths": val(level, level * 0.05),
                "expected_ths": val(level * 1.1, 0.0),
                "power_w": val(3_000.0, 20.0),
                "rated_power_w": 3_250.0,
                "chip_temp_max_c": val(80.0, 3.0),
                "chip_temp_mean_c": val(70.0, 2.0),
                "board_temp_max_c": val(65.0, 2.0),
                "board_temp_mean_c": val(60.0, 2.0),
                "chips": chips if rng.random() > missing else math.nan,
                "expected_chips": 126.0,
                "boards_hashing": float(rng.choice([2.0, 3.0])),
                "expected_boards": 3.0,
                "fans_ok": float(rng.choice([3.0, 4.0])),
                "expected_fans": 4.0,
                "fan_rpm_mean": val(5_000.0, 100.0),
                "hw_errors": hw if rng.random() > missing else math.nan,
                "accepted": acc,
                "rejected": rej,
                "uptime_s": up if rng.random() > missing else math.nan,
                "is_mining": 1.0,
            }
        )
    return rows


def _stream(rows: list[dict[str, float]], schema: FeatureSchema) -> np.ndarray:
    feats = MinerFeatures(schema, poll_interval_s=30.0)
    out = []
    for row in rows:
        assert feats.add(row)
        out.append(feats.vector())
    return np.array(out)


def _signal_magnitudes(rows: list[dict[str, float]]) -> np.ndarray:
    """Largest |value| each derived signal takes over the history (0 if never defined)."""
    prev = dict.fromkeys(FLAT_FIELDS, math.nan)  # the first sample's predecessor
    values = []
    for row in rows:
        values.append(derive(row, prev, SCALAR))
        prev = row
    arr = np.abs(np.array(values, dtype=float))
    with np.errstate(all="ignore"):
        out = np.where(
            np.isfinite(arr).any(axis=0), np.nanmax(np.where(np.isfinite(arr), arr, 0), axis=0), 0.0
        )
    return out


def _atol(rows: list[dict[str, float]], schema: FeatureSchema) -> np.ndarray:
    """Per-feature absolute floor: ATOL_REL x the magnitude of the feature's signal."""
    mags = _signal_magnitudes(rows)
    return np.array([ATOL_REL * mags[SIGNAL_INDEX[f.signal]] for f in schema.features])


def _assert_agree(rows: list[dict[str, float]], schema: FeatureSchema) -> None:
    """Per element |s - b| <= REL * max(|s|, |b|) + ATOL_REL * |signal|, or both NaN."""
    streamed = _stream(rows, schema)
    batch = miner_features(pd.DataFrame(rows), schema, poll_interval_s=30.0).to_numpy()
    assert streamed.shape == batch.shape
    both_nan = np.isnan(streamed) & np.isnan(batch)
    bound = REL * np.maximum(np.abs(streamed), np.abs(batch)) + _atol(rows, schema)
    close = np.abs(streamed - batch) <= bound
    bad = ~(both_nan | close)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        pytest.fail(
            f"{schema.names[j]} at row {i}: streaming {streamed[i, j]!r} vs batch {batch[i, j]!r}"
            f" (|diff| {abs(streamed[i, j] - batch[i, j]):.3g} > bound {bound[i, j]:.3g})"
        )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=histories(),
    windows=st.sampled_from([("90s", "5m", "1h"), ("5m", "1h", "6h", "24h", "7d")]),
)
def test_incremental_and_batch_features_agree(
    rows: list[dict[str, float]], windows: tuple[str, ...]
) -> None:
    """Property: on random histories with gaps, streaming == batch (see ``_assert_agree``)."""
    _assert_agree(rows, FeatureSchema(windows))


def test_agreement_is_not_vacuous() -> None:
    """The comparison sees real numbers: most features defined, and a wrong value fails."""
    rng = np.random.default_rng(7)
    rows = [
        {f: float(rng.uniform(1, 100)) for f in FLAT_FIELDS}
        | {"ts": T0 + 30.0 * i, "uptime_s": 30.0 * i}
        for i in range(200)
    ]
    schema = FeatureSchema(("5m", "1h"))
    streamed = _stream(rows, schema)
    assert np.isfinite(streamed[-1]).mean() > 0.9
    broken = [dict(r) for r in rows]
    broken[-1]["chip_temp_max_c"] += 1e-6  # only the batch side sees this change
    streamed_ok = _stream(rows, schema)
    batch = miner_features(pd.DataFrame(broken), schema, 30.0).to_numpy()
    j = schema.names.index("chip_temp_max_c_mean_5m")
    assert abs(streamed_ok[-1, j] - batch[-1, j]) > REL * abs(batch[-1, j])


# ---------------------------------------------------------------- window semantics


def test_window_statistics_on_known_data() -> None:
    """Linear ramp: exact mean, std, slope, min, max; samples leave the window on time."""
    win = RollingWindows([300.0], 1, spread=[0], slope=[0], minimum=[0], maximum=[0], total=[0])
    t0 = 1_750_000_000_000 - (1_750_000_000_000 % 10_000)  # on a bucket edge
    for i in range(10):  # 10 samples, 30 s apart, x = 2 + 0.5 i
        win.add(t0 + 30_000 * i, np.array([2.0 + 0.5 * i]))
    s = win.summary(t0 + 270_000)
    xs = 2.0 + 0.5 * np.arange(10)
    assert s["count"][0, 0] == 10
    assert s["mean"][0, 0] == pytest.approx(xs.mean(), rel=1e-12)
    assert s["std"][0, 0] == pytest.approx(xs.std(ddof=1), rel=1e-12)
    assert s["slope"][0, 0] == pytest.approx(0.5 / 30 * 3600, rel=1e-12)  # per hour
    assert (s["min"][0, 0], s["max"][0, 0], s["sum"][0, 0]) == (2.0, 6.5, xs.sum())
    # 5 min later than the first sample's bucket: it has left; an hour later all have.
    assert win.summary(t0 + 300_000)["count"][0, 0] == 9
    late = win.summary(t0 + 3_600_000)
    assert late["count"][0, 0] == 0
    assert all(math.isnan(late[k][0, 0]) for k in ("mean", "std", "slope", "min", "max", "sum"))


def test_missing_values_are_not_zeros() -> None:
    win = RollingWindows([300.0], 2, spread=[0, 1], minimum=[0, 1])
    t = 1_750_000_000_000
    win.add(t, np.array([5.0, np.nan]))
    win.add(t + 30_000, np.array([7.0, np.nan]))
    s = win.summary(t + 30_000)
    assert s["count"][0].tolist() == [2, 0]
    assert s["mean"][0, 0] == 6.0
    assert math.isnan(s["mean"][0, 1])
    assert math.isnan(s["min"][0, 1])


def test_out_of_order_samples_are_refused() -> None:
    feats = MinerFeatures(FeatureSchema(("5m",)), 30.0)
    row = dict.fromkeys(FLAT_FIELDS, 1.0) | {"ts": T0}
    assert feats.add(row)
    assert not feats.add(row | {"ts": T0 - 1})
    assert not feats.add(row)
    assert feats.values()["samples_5m"] == 1


def test_window_rejects_time_going_backwards() -> None:
    win = RollingWindows([300.0], 1)
    win.add(100_000, np.array([1.0]))
    with pytest.raises(ValueError, match="time order"):
        win.add(99_000, np.array([1.0]))
    with pytest.raises(ValueError, match="before its newest"):
        win.summary(99_000)


# ---------------------------------------------------------------- from snapshots


def _snap(i: int, power: float | None, boards: int = 3) -> MinerSnapshot:
    return MinerSnapshot(
        miner_id="m1",
        host="127.0.0.1",
        ts=datetime.fromtimestamp(T0 + 30 * i, UTC),
        make="antminer",
        model="S19j Pro",
        hashrate_ths=100.0 if boards == 3 else 66.0,
        power_w=power,
        fans_rpm=(5000, 5100, 0, 4900),
        uptime_s=1000 + 30 * i,
        hw_errors=10 * i,
        accepted=100 * i,
        rejected=i,
        boards=tuple(
            BoardReading(
                slot=s, hashrate_ths=33.0, board_temp_c=60.0 + s, chip_temp_c=75.0 + s, chips=126
            )
            for s in range(boards)
        ),
    )


def test_efficiency_is_estimated_from_the_profile_and_flagged(profile_s19jpro) -> None:
    schema = FeatureSchema(("5m",))
    measured = MinerFeatures(schema, 30.0)
    estimated = MinerFeatures(schema, 30.0)
    for i in range(5):
        measured.add_snapshot(_snap(i, power=3000.0), profile_s19jpro)
        estimated.add_snapshot(_snap(i, power=None), profile_s19jpro)
    m, e = measured.values(), estimated.values()
    assert m["efficiency_j_th_mean_5m"] == pytest.approx(30.0)
    assert m["efficiency_estimated_mean_5m"] == 0.0
    assert math.isnan(e["power_w_mean_5m"])  # missing stays missing
    rated = profile_s19jpro.rated
    assert e["efficiency_j_th_mean_5m"] == pytest.approx(rated.power_w / 100.0)
    assert e["efficiency_estimated_mean_5m"] == 1.0
    assert e["fan_ratio_min_5m"] == pytest.approx(3 / profile_s19jpro.hardware.fans)
    assert e["hw_error_rate_mean_5m"] == pytest.approx(10 / 30 * 3600)
    assert e["reject_rate_mean_5m"] == pytest.approx(1 / 101)
    assert e["board_loss_max_5m"] == 0.0
    assert e["restarts_5m"] == 0.0


def test_without_profile_expectations_are_missing() -> None:
    feats = MinerFeatures(FeatureSchema(("5m",)), 30.0)
    for i in range(3):
        feats.add_snapshot(_snap(i, power=None, boards=2), None)
    v = feats.values()
    for name in (
        "hashrate_ratio_mean_5m",
        "efficiency_j_th_mean_5m",
        "fan_ratio_mean_5m",
        "board_loss_max_5m",
    ):
        assert math.isnan(v[name]), name
    assert v["chip_temp_max_c_max_5m"] == 76.0


def test_restart_and_counter_reset() -> None:
    rows = []
    for i, (up, hw) in enumerate([(100, 5), (130, 9), (10, 1), (40, 3)]):
        rows.append(
            dict.fromkeys(FLAT_FIELDS, math.nan)
            | {"ts": T0 + 30 * i, "uptime_s": up, "hw_errors": hw}
        )
    feats = MinerFeatures(FeatureSchema(("5m",)), 30.0)
    for r in rows:
        feats.add(r)
    v = feats.values()
    assert v["restarts_5m"] == 1.0
    # Rates across the restart are undefined, not negative: (4 + 2) errors / 2 intervals.
    assert v["hw_error_rate_mean_5m"] == pytest.approx((4 + 2) / 2 / 30 * 3600)


def test_flatten_reduces_boards(profile_s19jpro) -> None:
    flat = flatten(_snap(0, power=None, boards=2), profile_s19jpro)
    assert flat["chips"] == 252
    assert flat["boards_hashing"] == 2
    assert flat["expected_chips"] == profile_s19jpro.expected_chips
    assert flat["chip_temp_max_c"] == 76.0
    assert flat["board_temp_mean_c"] == 60.5
    assert math.isnan(flat["power_w"])


# ---------------------------------------------------------------- schema


def test_schema_documents_every_feature_and_hash_is_stable() -> None:
    a, b = FeatureSchema(), FeatureSchema()
    assert a.hash == b.hash
    assert len(a.hash) == 64
    assert FeatureSchema(("5m", "1h")).hash != a.hash
    assert len(set(a.names)) == len(a.names)
    for f in a.features:
        assert f.unit
        assert f.doc
        assert f.name.endswith(f.window)
    slope = next(f for f in a.features if f.name == "chip_temp_max_c_slope_1h")
    assert slope.unit == "°C/h"
    assert {"coverage_7d", "samples_5m", "uptime_ratio_24h", "restarts_7d"} <= set(a.names)
    assert SIGNAL_INDEX["present"] == 0


def test_parse_duration() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("7d") == 604_800
    with pytest.raises(ValueError, match="duration"):
        parse_duration("7 weeks")


def test_fleet_batch_groups_by_miner() -> None:
    rows = [
        dict.fromkeys(FLAT_FIELDS, 1.0) | {"ts": T0 + 30 * i, "miner_id": f"m{i % 2}"}
        for i in range(10)
    ]
    out = fleet_features(pd.DataFrame(rows), FeatureSchema(("5m",)), 30.0)
    assert out.groupby("miner_id")["samples_5m"].max().to_dict() == {"m0": 5, "m1": 5}


def test_streaming_path_never_imports_pandas() -> None:
    code = (
        "import sys, agent.features.extract, agent.features.windows, agent.store, agent.poller, "
        "agent.scheduler, agent.commands.run, agent.commands.status; "
        "sys.exit(3 if 'pandas' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _exact_slope_per_h(
    rows: list[dict[str, float]], signal: str, width_ms: int, k: int = 30
) -> float:
    """The window's least-squares slope in exact rational arithmetic."""
    from fractions import Fraction

    t_ms = [round(r["ts"] * 1000) for r in rows]
    b_now = t_ms[-1] // width_ms
    pts = [
        (Fraction(t - t_ms[0], 3_600_000), Fraction(r[signal]))
        for t, r in zip(t_ms, rows, strict=True)
        if t // width_ms > b_now - k and not math.isnan(r[signal])
    ]
    mt = sum(p[0] for p in pts) / len(pts)
    mx = sum(p[1] for p in pts) / len(pts)
    return float(sum((t - mt) * (x - mx) for t, x in pts) / sum((t - mt) ** 2 for t, _ in pts))


@pytest.mark.parametrize("outage_fraction", [0.95, 0.99])
def test_slope_is_exact_after_an_outage_just_under_the_span(outage_fraction: float) -> None:
    """Regression: two polls 30 s apart after an outage just under the window's span.

    pandas' running sums then carried the dropped sample's rounding into a tiny window
    (2e-8 relative); both paths must stay at rounding level of the exact slope.
    """
    rng = np.random.default_rng(3)
    ts = [T0 + 30.0 * i for i in range(120)]
    ts += [ts[-1] + outage_fraction * 3600 + 30.0 * i for i in range(3)]
    rows = [
        dict.fromkeys(FLAT_FIELDS, 1.0) | {"ts": t, "chip_temp_max_c": 80 + rng.normal(0, 2)}
        for t in ts
    ]
    schema = FeatureSchema(("1h",))
    name = "chip_temp_max_c_slope_1h"
    batch = miner_features(pd.DataFrame(rows), schema, 30.0)[name].to_numpy()
    feats = MinerFeatures(schema, 30.0)
    for i, row in enumerate(rows):
        feats.add(row)
        if i >= 121:  # the windows holding only post-outage polls (plus the dropped one)
            exact = _exact_slope_per_h(rows[: i + 1], "chip_temp_max_c", schema.windows[0].width_ms)
            assert feats.values()[name] == pytest.approx(exact, rel=1e-11)
            assert batch[i] == pytest.approx(exact, rel=1e-11)
