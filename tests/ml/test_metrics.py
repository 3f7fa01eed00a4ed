"""Metric edge cases: one-row folds, ties, empty input, skill."""

from __future__ import annotations

import math

import numpy as np
import pytest

from central import metrics
from central.train import conformal_quantiles, diebold_mariano


def test_directional_accuracy_on_a_fold_of_one_row():
    assert metrics.directional_accuracy([1.1], [1.05], [1.0]) == 1.0
    assert metrics.directional_accuracy([0.9], [1.05], [1.0]) == 0.0


def test_ties_are_their_own_class():
    today = np.array([1.0, 1.0, 1.0])
    y = np.array([1.0, 1.2, 0.8])  # flat, up, down
    assert metrics.directional_accuracy(y, today, today) == pytest.approx(1 / 3)  # persistence
    assert metrics.directional_accuracy(y, [1.0, 1.1, 0.9], today) == 1.0


def test_empty_or_nan_inputs_raise():
    with pytest.raises(ValueError, match="at least one row"):
        metrics.directional_accuracy([], [], [])
    with pytest.raises(ValueError, match="NaN"):
        metrics.mae([1.0, np.nan], [1.0, 1.0])
    with pytest.raises(ValueError, match="zero actual"):
        metrics.mape([0.0], [1.0])
    with pytest.raises(ValueError, match="length"):
        metrics.rmse([1.0, 2.0], [1.0])


def test_point_metrics_and_skill():
    y, p = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    assert metrics.mae(y, p) == pytest.approx(0.5)
    assert metrics.rmse(y, p) == pytest.approx(math.sqrt(1.25 / 3))
    assert metrics.mape(y, p) == pytest.approx(100 * (0.5 + 0 + 0.25) / 3)
    assert metrics.skill(0.9, 1.0) == pytest.approx(0.1)
    assert metrics.skill(1.1, 1.0) < 0
    assert math.isnan(metrics.skill(1.0, 0.0))


def test_coverage_counts_the_bounds():
    assert metrics.coverage([1, 2, 3], [1, 0, 4], [1, 1, 5]) == pytest.approx(1 / 3)
    assert metrics.below([1, 2], [1, 1]) == 0.5


def test_conformal_quantiles_cover_their_calibration_set():
    r = np.random.default_rng(0).normal(size=2000)
    q = conformal_quantiles(r)
    assert np.mean(r <= q["q10"]) == pytest.approx(0.1, abs=0.01)
    assert np.mean(r <= q["q90"]) == pytest.approx(0.9, abs=0.01)
    with pytest.raises(ValueError, match="too few"):
        conformal_quantiles(r[:5])


def test_diebold_mariano_sees_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(1)
    base = np.abs(rng.normal(size=500))
    assert diebold_mariano(base * 0.8, base, 1)["p_value"] < 0.01
    shuffled = rng.permutation(base)  # same losses in another order: no real difference
    assert diebold_mariano(shuffled, base, 7)["p_value"] > 0.5
