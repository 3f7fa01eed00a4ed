"""The daemon's streaming features reach the response-model prior as its health inputs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agent.inference.miner import HEALTH_MIN_SAMPLES, health_from_features, profile_features
from agent.optimize.fleet import FleetUnit, build_optimizer, plan_fleet
from agent.optimize.objective import Economics
from agent.optimize.optimizer import OptimizerConfig
from agent.optimize.prior import BundlePrior, PriorContext, health_inputs
from agent.optimize.worker import handle
from agent.profiles import load_profiles
from agent.snapshot import Settings

PROFILES = load_profiles()
#: One hour of polls of an M50 with one board lost and weak fans (agent.features names).
FEATURES = {
    "samples_1h": 60.0,
    "hashrate_ratio_mean_1h": 0.9,
    "board_loss_mean_1h": 1.0,
    "fan_ratio_min_1h": 0.8,
    "hw_error_rate_mean_1h": 12.0,
    "chip_temp_max_c_mean_1h": 80.0,
    "power_w_mean_1h": 3000.0,
}


class HealthRowModel:
    """A real row model: rated hashrate × the health hashrate ratio (1 when unknown)."""

    def __init__(self, names: Sequence[str]):
        self.idx = {n: i for i, n in enumerate(names)}

    def predict_row(self, row: Sequence[float | None]) -> float:
        ratio = row[self.idx["health_hashrate_ratio"]]
        rated = row[self.idx["rated_hashrate_ths"]]
        assert rated is not None
        return rated * (1.0 if ratio is None else ratio)


NAMES = ("rated_hashrate_ths", "rated_power_w", "ambient_c", "health_hashrate_ratio")


class Const:
    """A real row model returning one number."""

    def __init__(self, value: float):
        self.value = value

    def predict_row(self, row: Sequence[float | None]) -> float:
        return self.value


def _bundle() -> BundlePrior:
    return BundlePrior(
        {"hashrate_ths": HealthRowModel(NAMES), "power_w": Const(3000.0), "chip_temp_c": Const(80)},
        NAMES,
        required=("rated_hashrate_ths", "ambient_c"),
    )


def test_features_map_through_health_from_features():
    prof = PROFILES["m50"]
    got = health_inputs(FEATURES, prof, 25.0)
    expect = health_from_features({**FEATURES, **profile_features(prof), "ambient_c": 25.0})
    assert got == {k: v for k, v in expect.items() if v is not None}
    assert got["health_boards_alive_frac"] == pytest.approx(2 / 3)  # one of three boards lost
    assert got["health_chip_rise_per_kw"] == pytest.approx((80.0 - 25.0) / 3.0)


def test_without_features_health_is_unknown():
    prof = PROFILES["m50"]
    assert health_inputs({}, prof, 25.0) == {}
    few = dict(FEATURES, samples_1h=float(HEALTH_MIN_SAMPLES - 1))
    assert health_inputs(few, prof, 25.0) == {}
    assert health_inputs({"samples_1h": "sixty"}, prof, 25.0) == {}  # type: ignore[dict-item]


def test_fleet_round_passes_features_to_the_bundle_prior():
    econ = Economics()
    sick = FleetUnit("a", "m50", "whatsminer_v3", ambient_c=25.0, features=FEATURES)
    fresh = FleetUnit("b", "m50", "whatsminer_v3", ambient_c=25.0)
    prior = _bundle()
    opt_sick = build_optimizer(sick, econ, OptimizerConfig(), prior)
    opt_fresh = build_optimizer(fresh, econ, OptimizerConfig(), prior)
    assert opt_sick.context.features["health_hashrate_ratio"] == 0.9
    assert opt_fresh.context.features == {}
    s = Settings(power_limit_w=3000.0)
    rated = PROFILES["m50"].rated.hashrate_ths
    assert prior.predict(s, opt_sick.context).hashrate_ths == pytest.approx(0.9 * rated)
    assert prior.predict(s, opt_fresh.context).hashrate_ths == pytest.approx(rated)
    ctx = PriorContext(PROFILES["m50"], "whatsminer_v3", ambient_c=25.0)
    assert prior.predict(s, ctx).hashrate_ths == pytest.approx(rated)
    plan = plan_fleet([sick, fresh], econ, prior=prior)
    health = {p.miner_id: p.evidence["health"] for p in plan.proposals}
    assert health["b"] == "unknown"
    assert health["a"]["health_hashrate_ratio"] == 0.9


def test_worker_request_carries_features():
    answer = handle(
        {
            "units": [
                {
                    "miner_id": "a",
                    "model": "M50",
                    "firmware": "whatsminer_v3",
                    "ambient_c": 25.0,
                    "current": {"power_limit_w": 3422.0},
                    "features": FEATURES,
                }
            ]
        }
    )
    (prop,) = answer["proposals"]
    assert prop["evidence"]["health"]["health_fans_ok_frac"] == 0.8
