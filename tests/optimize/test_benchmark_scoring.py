"""benchmarks/optimizer.py scores honestly: true feasibility of a recommendation, and a
uniform-throttling baseline that fits the site cap in TRUE power before it is compared."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from agent.optimize.simfleet import SimUnitSpec, fleet_specs, make_unit
from agent.profiles import load_profiles
from agent.simulator.clock import DEFAULT_MANUAL_START, SimClock
from agent.snapshot import Settings
from tests.conftest import REPO

NOON = DEFAULT_MANUAL_START + 12 * 3600.0


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_optimizer", REPO / "benchmarks" / "optimizer.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_optimizer"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_optimizer", None)


def test_a_throttled_or_erroring_recommendation_is_not_feasible(bench):
    hot = make_unit(SimUnitSpec("h", "s21", "braiins", 3, 12.0), SimClock(speed=0, start=NOON))
    t = hot.clock.now()
    assert not bench.truly_feasible(hot, Settings(power_limit_w=3850.0), t)  # throttles
    assert bench.truly_feasible(hot, Settings(power_limit_w=2000.0), t)
    assert bench.truly_feasible(hot, Settings(power_mode="sleep"), t)
    cool = make_unit(SimUnitSpec("c", "s19kpro", "braiins", 4), SimClock(speed=0, start=NOON))
    c = load_profiles()["s19kpro"].clock
    # 0.6 V under the firmware line at the default clock: most chips fail their work
    undervolted = Settings(freq_mhz=c.freq_mhz_default, voltage_v=c.voltage_v_default - 0.6)
    assert not bench.truly_feasible(cool, undervolted, cool.clock.now())


def test_uniform_baseline_is_scaled_until_its_true_draw_fits(bench):
    units = []
    for spec in fleet_specs(10, 1):
        if spec.firmware == "antminer":
            continue
        sim = make_unit(spec, SimClock(speed=0, start=NOON))
        units.append({"unit": sim, "t": sim.clock.now()})
    cap = 0.7 * sum(k["unit"].profile.rated.power_w for k in units)
    hp, price = 0.05927, 0.04528
    naive_w = bench._uniform(units, 0.7, hp, price)[1]
    frac, _, true_w = bench.fit_uniform(units, cap, hp, price)
    assert true_w <= cap
    assert naive_w > cap  # firmware limits act on reported power: 70 % overdraws
    assert frac < 0.7
    assert true_w > 0.98 * cap  # and it is not scaled further than it must be
