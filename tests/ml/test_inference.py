"""Agent-side ctypes inference: missing values, buffers, feature count, threads, forecasts."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import xgboost as xgb

from agent.errors import ModelError
from agent.inference.bundle import open_bundle
from agent.inference.hashprice import HashpriceForecaster
from agent.inference.model import load_model


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return open_bundle(bundle_dir)


def _native(bundle_dir, name):
    booster = xgb.Booster()
    booster.load_model(str(bundle_dir / "models" / name / "model.ubj"))
    return booster


def test_none_and_nan_are_the_same_missing_value(bundle, bundle_dir):
    model = load_model(bundle, "hashprice_h7")
    row = [0.01] * model.num_feature
    row[2] = None
    as_nan = [math.nan if v is None else v for v in row]
    expected = float(_native(bundle_dir, "hashprice_h7").inplace_predict(np.array([as_nan]))[0])
    assert model.predict_row(row) == pytest.approx(expected, abs=1e-6)
    assert model.predict_row(as_nan) == model.predict_row(row)
    assert model.predict_batch(np.array([as_nan]))[0] == pytest.approx(expected, abs=1e-6)


def test_repeated_calls_do_not_accumulate(bundle):
    model = load_model(bundle, "miner_power")
    row = bundle.model("miner_power").golden[0].x
    assert len({model.predict_row(row) for _ in range(5)}) == 1


def test_wrong_feature_count_is_refused(bundle):
    model = load_model(bundle, "miner_hashrate")
    n = model.num_feature
    with pytest.raises(ModelError, match=f"expected {n} features"):
        model.predict_row([1.0] * (n - 1))
    with pytest.raises(ModelError, match="matrix"):
        model.predict_batch(np.zeros((3, n + 1)))


def test_batch_shim_loop_and_rows_agree(bundle):
    shim = load_model(bundle, "miner_chip_temp")
    loop = load_model(bundle, "miner_chip_temp", use_shim=False)
    X = np.random.default_rng(0).normal(size=(500, shim.num_feature))
    X[::7, 3] = np.nan
    a, b = shim.predict_batch(X), loop.predict_batch(X)
    assert np.array_equal(a, b)
    assert a[5] == shim.predict_row(X[5].tolist())


def test_threads_share_a_model_safely(bundle):
    model = load_model(bundle, "hashprice_h1")
    X = np.random.default_rng(1).normal(size=(300, model.num_feature))
    expected = model.predict_batch(X)
    errors = []

    def work():
        for _ in range(3):
            if not np.array_equal(model.predict_batch(X), expected):
                errors.append("batch")
            if model.predict_row(X[7].tolist()) != expected[7]:
                errors.append("row")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_hashprice_forecast_composes_trees_offset_and_interval(bundle):
    fc = HashpriceForecaster(bundle, 7)
    entry = bundle.model("hashprice_h7")
    feats = dict(zip(entry.features, entry.golden[0].x, strict=True))
    feats.update({"sched_diff_7d": -0.02, "sched_halving_7d": None, "hp_vol_30d": 0.03})
    out = fc.forecast(feats, 0.05)
    tree = load_model(bundle, "hashprice_h7").predict_row([feats[n] for n in entry.features])
    iv = entry.intervals
    center = tree - 0.02
    assert out.p50 == pytest.approx(0.05 * math.exp(center))
    assert out.p10 == pytest.approx(0.05 * math.exp(center + iv.q10 * 0.03 * math.sqrt(7)))
    assert out.p90 == pytest.approx(0.05 * math.exp(center + iv.q90 * 0.03 * math.sqrt(7)))
    assert out.p10 < out.p50 < out.p90
    assert out.relative_width > 0
    assert set(fc.required_inputs) >= {"sched_diff_7d", "hp_vol_30d", "vol_30d"}
    # no volatility known at all: the floor keeps a non-empty interval
    bare = fc.forecast({}, 0.05)
    assert bare.p10 < bare.p50 < bare.p90
    with pytest.raises(ModelError):
        fc.forecast(feats, 0.0)
