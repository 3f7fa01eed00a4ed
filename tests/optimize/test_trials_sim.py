"""The optimiser on the real simulator: near the true optimum, never over a thermal limit."""

from __future__ import annotations

import numpy as np

from agent.optimize.baselines import GridSearch
from agent.optimize.objective import Economics
from agent.optimize.optimizer import OptimizerConfig, UnitOptimizer
from agent.optimize.prior import PhysicsPrior, PriorContext
from agent.optimize.simfleet import SimUnitSpec, make_unit
from agent.optimize.space import build_space, capabilities_from_profile
from agent.optimize.tariff import FlatTariff
from agent.optimize.trials import apply_to_unit, run_trials
from agent.profiles import load_profiles
from agent.simulator.clock import SimClock
from agent.simulator.truth import profit_usd_per_day, true_operating_point, true_optimum
from agent.snapshot import Settings
from tests.optimize.conftest import assert_within_profile

NOON = 1_749_988_800.0
HASHPRICE = 0.05927
PRICE = 0.0816


def _setup(pid: str, fw: str, seed: int, hot: float = 0.0):
    spec = SimUnitSpec(f"t-{pid}", pid, fw, seed, hot)
    clock = SimClock(speed=0, start=NOON)
    unit = make_unit(spec, clock)
    prof = load_profiles()[pid]
    space = build_space(spec.unit_id, prof, capabilities_from_profile(prof, fw))
    econ = Economics(hashprice=HASHPRICE, tariff=FlatTariff(PRICE))
    ctx = PriorContext(prof, fw, ambient_c=unit.reading().env_temp_c)
    opt = UnitOptimizer(space, PhysicsPrior(), ctx, econ, OptimizerConfig(seed=seed))
    return unit, space, opt


def test_braiins_unit_gets_within_two_percent_of_the_true_optimum():
    unit, space, opt = _setup("s19kpro", "braiins", seed=11)
    log = run_trials(unit, space, opt, 10)
    assert log.violations == 0
    for rec in log.records:
        assert_within_profile(space.profile, "braiins", rec.settings)
    t = unit.clock.now()
    _, best = true_optimum(unit, HASHPRICE, PRICE, "power_limit", t)
    got = profit_usd_per_day(
        true_operating_point(unit, opt.recommend().settings.changed_fields(), t), HASHPRICE, PRICE
    )
    assert (best - got) / best <= 0.02


def test_whatsminer_restart_trials_track_the_truth():
    unit, space, opt = _setup("m50", "whatsminer_v3", seed=5)
    log = run_trials(unit, space, opt, 6)
    assert log.violations == 0
    rec = log.records[-1]
    op = true_operating_point(unit, rec.settings.changed_fields(), rec.t_end)
    assert abs(rec.obs.hashrate_ths - op.hashrate_ths) / op.hashrate_ths < 0.02
    assert abs(rec.obs.power_w - op.power_w) / op.power_w < 0.02


def test_hot_aisle_unit_never_crosses_a_limit_where_a_grid_does():
    """A heat-wave unit on Braiins (may overclock): full power throttles, we must not go there."""
    unit, space, opt = _setup("s21", "braiins", seed=3, hot=12.0)
    cheap = Economics(hashprice=HASHPRICE, tariff=FlatTariff(0.03))  # wants full power
    opt.economics = cheap
    log = run_trials(unit, space, opt, 8)
    assert log.violations == 0
    unit2, _, _ = _setup("s21", "braiins", seed=3, hot=12.0)
    grid_log = run_trials(unit2, space, GridSearch(space, cheap, 4), 4)
    assert grid_log.violations > 0  # the constraint is live: the top of the range throttles


def test_apply_to_unit_uses_the_real_controls():
    unit, _, _ = _setup("s19jpro", "antminer", seed=2)
    apply_to_unit(unit, Settings(power_mode="low"))
    assert unit.settings["power_mode"] == "low"
    unit2, space2, _ = _setup("m60s", "whatsminer_v3", seed=2)
    apply_to_unit(unit2, Settings(power_limit_w=2000.0))
    assert unit2.settings["power_limit_w"] == 2000.0
    assert not unit2.is_up()  # a Whatsminer power-limit change restarts btminer
    assert np.isfinite(space2.to_unit(Settings(power_limit_w=2000.0))).all()
