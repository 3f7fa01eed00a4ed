"""The physics prior's thermal calibration against the simulator's truth at 25 °C.

The review found stock M30S/M50 at 25 °C ambient judged feasible with only p = 0.55/0.68:
the old prior put maximum power at the rated ambient exactly on the board's maximum, a
full-fan rise 30–50 % above the simulator's on every Whatsminer.
"""

from __future__ import annotations

import dataclasses

import pytest

from agent.optimize.objective import Economics
from agent.optimize.optimizer import OptimizerConfig, UnitOptimizer
from agent.optimize.prior import PhysicsPrior, PriorContext
from agent.optimize.space import build_space, capabilities_from_profile
from agent.optimize.surrogate import ThermalModel
from agent.profiles import load_profiles
from agent.simulator.calibration import mean_unit_params
from agent.simulator.thermals import board_thermals

PROFILES = load_profiles()
#: Largest relative gap between the prior's and the simulator's full-fan rise at rated power.
#: The prior is built from fixture fan speeds, not from the simulator, so it need only be
#: close; the old rule missed by up to +53 %.
RISE_TOLERANCE = 0.2


def _sim_full_fan_rise(pid: str, ambient: float = 25.0) -> tuple[float, float]:
    """(board rise over ambient per wall W at full fans, wall W) of the simulator's mean unit."""
    prof = PROFILES[pid]
    unit = mean_unit_params(prof)
    c = prof.clock
    # a target just above ambient makes the fan loop run flat out
    th = board_thermals(unit, c.freq_mhz_default, c.voltage_v_default, ambient, target_c=ambient)
    return float(th.board_temp_c.max() - ambient) / float(th.power_w[0]), float(th.power_w[0])


@pytest.mark.parametrize("pid", sorted(PROFILES))
def test_full_fan_slope_is_close_to_the_simulators(pid):
    slope_sim, _ = _sim_full_fan_rise(pid)
    slope_prior = PhysicsPrior().thermal_prior(PROFILES[pid]).slope_c_per_w
    assert abs(slope_prior / slope_sim - 1.0) <= RISE_TOLERANCE, (slope_prior, slope_sim)


@pytest.mark.parametrize("pid", sorted(PROFILES))
def test_stock_at_25c_is_confidently_feasible_as_it_truly_is(pid):
    prof = PROFILES[pid]
    unit = mean_unit_params(prof)
    c = prof.clock
    truth = board_thermals(unit, c.freq_mhz_default, c.voltage_v_default, 25.0)
    t = prof.thermal
    assert truth.board_temp_c.max() <= t.board_temp_hot_c - 5  # truly far from the limits
    assert truth.chip_temp_c.max() <= t.chip_temp_max_c - 5
    fw = "whatsminer_v3" if prof.make == "whatsminer" else "braiins"
    space = build_space("u", prof, capabilities_from_profile(prof, fw))
    ctx = PriorContext(prof, fw, ambient_c=25.0)
    opt = UnitOptimizer(space, PhysicsPrior(), ctx, Economics(), OptimizerConfig())
    assert opt.predict(space.stock()).p_feasible >= 0.95


def test_vendor_rating_bounds_the_slope_softly():
    """The rating (stock runs at the rated ambient) pulls the slope under its bound."""
    tp = PhysicsPrior().thermal_prior(PROFILES["s19kpro"])
    bound = tp.rated_rise_max_c / tp.rated_power_w
    rated = ThermalModel(tp).params()
    unrated = ThermalModel(dataclasses.replace(tp, rated_rise_max_c=None)).params()
    assert unrated["slope_c_per_w"] > bound  # the fan-speed prior alone sits above it
    assert rated["slope_c_per_w"] < unrated["slope_c_per_w"]
    assert rated["slope_c_per_w"] < bound
    # soft, not a wall: a unit that measures hotter than the rating still moves the posterior
    model = ThermalModel(tp)
    hot = 1.3 * tp.rated_rise_max_c
    for _ in range(3):
        model.tell(tp.rated_power_w, 25.0, 25.0 + hot, 25.0 + hot + 15.0, 1.0)
    assert model.params()["slope_c_per_w"] * tp.rated_power_w == pytest.approx(hot, rel=0.05)
