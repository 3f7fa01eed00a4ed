"""Miner response model: simulated telemetry, unit-held-out splits, the agent predict API."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agent.errors import ModelError
from agent.inference.miner import (
    HEALTH_FEATURES,
    MINER_FEATURES,
    MinerResponseModel,
    feature_row,
    profile_features,
)
from agent.inference.model import load_response_model
from agent.profiles import load_profiles
from central.fleetdata import health_features, simulate_unit
from central.miner_model import (
    hardware_splits,
    health_dropout,
    health_unknown,
    row_splits,
    transformed_target,
    unit_splits,
)


@pytest.fixture(scope="module")
def telemetry():
    profiles = load_profiles()
    rows = []
    for pid, family in (("s19jpro", "antminer"), ("s19jpro", "braiins"), ("m50", "whatsminer")):
        for i in range(3):
            rows += simulate_unit(profiles[pid], family, i, 8, base_seed=1)
    return pd.DataFrame(rows)


def test_telemetry_rows_carry_every_feature_and_plausible_targets(telemetry):
    assert set(MINER_FEATURES) <= set(telemetry.columns)
    assert telemetry[list(MINER_FEATURES[:8])].notna().all().all()
    mining = telemetry[telemetry["is_mining"]]
    ratio = mining["hashrate_ths"] / mining["rated_hashrate_ths"]
    assert ratio.between(0.05, 1.5).all()
    asleep = telemetry[telemetry["power_mode_rank"] == 0]
    assert (asleep["hashrate_ths"] == 0).all()
    assert (asleep["chip_temp_c"] - asleep["ambient_c"]).abs().max() < 1.0
    limited = telemetry[telemetry["power_limit_w"].notna()]
    assert len(limited) > 0
    assert limited["freq_mhz"].isna().all()
    # a power target holds in reported watts, except below the unit's lowest clock
    ratio = limited["power_reported_w"] / limited["power_limit_w"]
    assert (ratio <= 1.02).mean() > 0.8
    assert telemetry["health_fans_ok_frac"].between(0, 1).all()


def test_health_features_from_a_reading():
    from agent.simulator.clock import SimClock
    from agent.simulator.unit import SimUnit

    prof = load_profiles()["s19pro"]
    unit = SimUnit("u", prof, "antminer", 5, SimClock(speed=0))
    unit.fail_fan(0)
    unit.clock.advance(2000)
    earlier = unit.reading()
    unit.clock.advance(3600)
    now = unit.reading()
    h = health_features(now, prof.hardware.fans, earlier=earlier)
    assert set(h) == set(HEALTH_FEATURES)
    assert h["health_fans_ok_frac"] == pytest.approx(0.75)
    assert h["health_boards_alive_frac"] == 1.0
    assert 0.8 < h["health_hashrate_ratio"] < 1.2
    assert h["health_hw_errors_per_h"] == pytest.approx(now.hw_errors - earlier.hw_errors)
    assert 5 < h["health_chip_rise_per_kw"] < 40
    # what the firmware does not report is missing, as on the agent
    stock = health_features(now, prof.hardware.fans, firmware="antminer", earlier=earlier)
    assert stock["health_chip_rise_per_kw"] is None
    assert stock["health_hw_errors_per_h"] == h["health_hw_errors_per_h"]


def test_health_dropout_blanks_the_whole_block_on_a_fraction_of_rows(telemetry):
    X = telemetry[list(MINER_FEATURES)].astype(float)
    out = health_dropout(X, 0.25, seed=3)
    blank = out[list(HEALTH_FEATURES)].isna().all(axis=1)
    assert blank.sum() == round(0.25 * len(X))
    assert X.loc[blank, list(HEALTH_FEATURES)].notna().any(axis=1).all()  # were known
    kept = ~blank
    pd.testing.assert_frame_equal(out[kept], X[kept])
    others = [c for c in MINER_FEATURES if c not in HEALTH_FEATURES]
    pd.testing.assert_frame_equal(out[others], X[others])
    assert X[list(HEALTH_FEATURES)].notna().any(axis=1).all()  # the input is not modified
    assert health_unknown(X)[list(HEALTH_FEATURES)].isna().all().all()


def test_unit_splits_never_share_a_unit(telemetry):
    for tr, te in unit_splits(telemetry, 3):
        assert not set(telemetry["unit_id"].iloc[tr]) & set(telemetry["unit_id"].iloc[te])
    shared = [
        bool(set(telemetry["unit_id"].iloc[tr]) & set(telemetry["unit_id"].iloc[te]))
        for tr, te in row_splits(telemetry, 3)
    ]
    assert any(shared)  # row splits do leak units: that is why they are reported separately
    for _tr, te in hardware_splits(telemetry):
        assert len(set(telemetry["profile_id"].iloc[te])) == 1


def test_targets_are_scale_free(telemetry):
    chip = transformed_target(telemetry, "chip_temp_c")
    assert chip.abs().max() < 1.0
    assert transformed_target(telemetry, "power_w").between(0, 1.5).all()


def test_response_model_predicts_in_target_units(bundle_dir):
    model = load_response_model(bundle_dir)
    assert isinstance(model, MinerResponseModel)
    assert set(model.models) == {"hashrate_ths", "power_w", "chip_temp_c"}
    assert model.feature_names == MINER_FEATURES
    assert model.version.startswith("hp-")
    prof = load_profiles()["s19jpro"]
    feats = {**profile_features(prof), "ambient_c": 25.0, "power_mode_rank": 2.0}
    normal = model.predict(feats)
    assert 0.5 * 104 < normal.hashrate_ths < 1.5 * 104
    assert 0.5 * 3068 < normal.power_w < 1.5 * 3068
    assert 25 < normal.chip_temp_c < 110
    hot = model.predict({**feats, "ambient_c": 38.0})
    assert hot.chip_temp_c > normal.chip_temp_c
    row = feature_row(feats, model.feature_names)
    assert model.models["power_w"].predict_row(row) == pytest.approx(normal.power_w)


def test_missing_required_features_are_refused(bundle_dir):
    model = load_response_model(bundle_dir)
    prof = profile_features(load_profiles()["s19jpro"])
    with pytest.raises(ModelError, match="ambient_c"):
        model.predict(prof)
    with pytest.raises(ModelError, match="not a number"):
        model.predict({**prof, "ambient_c": "warm"})
    assert np.isfinite(model.predict({**prof, "ambient_c": 20.0, "power_limit_w": None}).power_w)
