"""A missing prior model or missing features degrade to the documented safe behaviour."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from agent.errors import ModelError
from agent.optimize.fleet import FleetUnit, build_optimizer, plan_fleet
from agent.optimize.objective import Economics
from agent.optimize.optimizer import OptimizerConfig
from agent.optimize.prior import (
    BundlePrior,
    FallbackPrior,
    PhysicsPrior,
    PriorContext,
    select_prior,
)
from agent.optimize.trials import observation_from_snapshot
from agent.profiles import load_profiles
from agent.snapshot import MinerSnapshot, Settings

PROFILES = load_profiles()


class LinearRowModel:
    """A tiny real row model: a fixed linear function of named features (no mock)."""

    def __init__(self, names: Sequence[str], weights: dict[str, float], bias: float = 0.0):
        self.idx = {n: i for i, n in enumerate(names)}
        self.weights = weights
        self.bias = bias

    def predict_row(self, row: Sequence[float | None]) -> float:
        total = self.bias
        for name, w in self.weights.items():
            v = row[self.idx[name]]
            total += 0.0 if v is None else w * v
        return total


NAMES = ("rated_hashrate_ths", "rated_power_w", "power_limit_w", "ambient_c")


def _bundle(required=("rated_hashrate_ths", "rated_power_w", "ambient_c"), bias=0.0):
    return BundlePrior(
        {
            "hashrate_ths": LinearRowModel(NAMES, {"power_limit_w": 0.035}, bias),
            "power_w": LinearRowModel(NAMES, {"power_limit_w": 1.0}),
            "chip_temp_c": LinearRowModel(NAMES, {"ambient_c": 1.0}, 40.0),
        },
        NAMES,
        required=required,
        version="test-1",
    )


def test_no_bundle_configured_uses_physics():
    prior, note = select_prior(None)
    assert isinstance(prior, PhysicsPrior)
    assert "no model bundle" in note


def test_unusable_bundle_dir_falls_back_to_physics(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    for where in (tmp_path, tmp_path / "missing"):
        prior, note = select_prior(where)
        assert isinstance(prior, PhysicsPrior)
        assert "bundle unusable" in note


def test_bundle_prior_answers_with_all_features():
    ctx = PriorContext(PROFILES["m50"], "whatsminer_v3", ambient_c=25.0)
    r = _bundle().predict(Settings(power_limit_w=2000.0), ctx)
    assert r.hashrate_ths == pytest.approx(70.0)
    assert r.power_w == pytest.approx(2000.0)
    assert r.chip_temp_c == pytest.approx(65.0)
    assert r.hashrate_sd > 0


def test_missing_required_feature_is_a_typed_error():
    ctx = PriorContext(PROFILES["m50"], "whatsminer_v3", ambient_c=None)
    with pytest.raises(ModelError, match="ambient_c"):
        _bundle().predict(Settings(power_limit_w=2000.0), ctx)


def test_optional_feature_goes_in_as_missing():
    ctx = PriorContext(PROFILES["m50"], "whatsminer_v3", ambient_c=25.0)
    r = _bundle().predict(Settings(power_mode="low"), ctx)  # no power_limit_w feature
    assert r.power_w == 0.0  # the model saw None for power_limit_w, not a crash


def test_fallback_prior_answers_from_physics_and_counts():
    ctx = PriorContext(PROFILES["m50"], "whatsminer_v3", ambient_c=None)
    prior = FallbackPrior(_bundle(), PhysicsPrior())
    r = prior.predict(Settings(power_limit_w=2000.0), ctx)
    expect = PhysicsPrior().predict(Settings(power_limit_w=2000.0), ctx)
    assert r == expect
    assert prior.fallbacks == 1
    assert "ambient_c" in (prior.last_error or "")


def test_non_finite_prediction_is_a_typed_error():
    bad = _bundle(bias=math.nan)
    ctx = PriorContext(PROFILES["m50"], "whatsminer_v3", ambient_c=25.0)
    with pytest.raises(ModelError, match="predicted nan"):
        bad.predict(Settings(power_limit_w=2000.0), ctx)


def test_bundle_without_a_target_is_rejected():
    with pytest.raises(ModelError, match="lacks targets"):
        BundlePrior({"hashrate_ths": LinearRowModel(NAMES, {})}, NAMES)


def test_optimizer_runs_on_a_degraded_prior():
    """Missing ambient: every bundle call falls back; the optimiser still proposes."""
    prior = FallbackPrior(_bundle(), PhysicsPrior())
    econ = Economics(at=datetime(2025, 1, 1, tzinfo=UTC))
    unit = FleetUnit("m", "m50", "whatsminer_v3", ambient_c=None)
    opt = build_optimizer(unit, econ, OptimizerConfig(), prior)
    assert prior.fallbacks > 0
    s = opt.ask()
    assert s.power_limit_w is not None


def test_unknown_model_is_skipped_not_fatal():
    econ = Economics(at=datetime(2025, 1, 1, tzinfo=UTC))
    units = [
        FleetUnit("ghost", "Antminer Z99", "antminer"),
        FleetUnit("none", None, "antminer"),
        FleetUnit("ok", "m50", "whatsminer_v3", ambient_c=25.0),
    ]
    plan = plan_fleet(units, econ)
    assert {s.miner_id: s.error for s in plan.skipped} == {
        "ghost": "ModelError",
        "none": "ModelError",
    }
    assert [p.miner_id for p in plan.proposals] == ["ok"]


def test_mode_without_a_published_fraction_is_a_typed_error():
    prof = PROFILES["m50"]
    fk = prof.firmware["whatsminer"].model_copy(update={"low_mode_fraction": None})
    broken = prof.model_copy(update={"firmware": {"whatsminer": fk}})
    ctx = PriorContext(broken, "whatsminer_v3", ambient_c=25.0)
    with pytest.raises(ModelError, match="low-mode fraction"):
        PhysicsPrior().predict(Settings(power_mode="low"), ctx)


def test_snapshot_without_hashrate_is_a_typed_error():
    snap = MinerSnapshot(
        "m", "127.0.0.1", datetime(2025, 1, 1, tzinfo=UTC), "whatsminer", power_w=3000.0
    )
    with pytest.raises(ModelError, match="lacks hashrate"):
        observation_from_snapshot(Settings(power_limit_w=3000.0), snap)
