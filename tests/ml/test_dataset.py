"""Hashprice training frame: no look-ahead in features, exact targets, gapped folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from central.dataset import (
    HORIZONS,
    build_features,
    interval_scale,
    make_frame,
    scheduled_offset,
    targets,
)
from central.train import outer_folds, split_window


@pytest.mark.parametrize("cut", ["2019-06-01", "2022-05-15", "2024-04-19", "2025-01-01"])
def test_features_at_t_use_only_data_up_to_t(btc, cut):
    full = build_features(btc).loc[:cut]
    truncated = build_features(btc.loc[:cut])
    pd.testing.assert_frame_equal(full, truncated)


def test_target_is_the_log_ratio_of_the_future_mean(btc):
    hp = btc["hashprice"]
    t = pd.Timestamp("2021-06-01")
    y7 = targets(btc, 7)
    expect = np.log(hp.loc["2021-06-02":"2021-06-08"].mean() / hp[t])
    assert y7[t] == pytest.approx(expect, rel=1e-12)
    y1 = targets(btc, 1)
    assert y1[t] == pytest.approx(np.log(hp[t + pd.Timedelta(days=1)] / hp[t]), rel=1e-12)
    # a window touching the fee gap (after its first, imputed days) has no target
    assert np.isfinite(y7[pd.Timestamp("2022-04-25")])  # 04-26 .. 05-02: imputed days
    assert np.isnan(y7[pd.Timestamp("2022-04-26")])  # reaches 05-03: no fees known
    assert np.isfinite(y1[pd.Timestamp("2022-05-01")])
    assert np.isnan(y1[pd.Timestamp("2022-05-02")])


def test_frames_drop_rows_without_targets_and_keep_nan_features(btc):
    for h in HORIZONS:
        frame = make_frame(btc, h)
        assert frame.y.notna().all()
        assert len(frame.y) > 2800
        assert frame.X.index.equals(frame.y.index)
        assert frame.X["fee_share"].isna().any() or frame.X["fee_uplift_vs_30d"].isna().any()
        assert np.all(interval_scale(frame.X, h) >= 0.005 * np.sqrt(h))
        off = scheduled_offset(frame.X, h)
        assert off.notna().all()


def test_schedule_feature_sees_the_2024_halving_coming(btc):
    feats = build_features(btc)
    before = feats.loc["2024-04-13", "sched_halving_7d"]
    assert -0.7 < before < -0.05  # halving inside the next 7 days: a large known drop
    assert feats.loc["2024-03-01", "sched_halving_7d"] == 0.0
    assert 0 < feats.loc["2024-04-16", "days_to_halving"] < 5


@pytest.mark.parametrize("h", HORIZONS)
def test_outer_folds_leave_a_gap_and_tile_the_evaluation_period(btc, h):
    dates = make_frame(btc, h).dates
    folds = outer_folds(dates, h, 6)
    seen = np.zeros(len(dates), bool)
    for train, test in folds:
        assert not (seen & test).any()
        seen |= test
        last_train, first_test = dates[train].max(), dates[test].min()
        assert last_train + pd.Timedelta(days=h) < first_test
        assert dates[test].max() < dates[-1] or test[-1]
    assert seen[dates >= pd.Timestamp("2019-01-01")].all()
    assert not seen[dates < pd.Timestamp("2019-01-01")].any()


def test_validation_slice_has_its_own_gap(btc):
    dates = make_frame(btc, 7).dates[:800]
    fit, val = split_window(dates, 7)
    assert dates[fit].max() + pd.Timedelta(days=7) < dates[val].min()
    assert val.sum() >= 60
