"""Ground truth: true operating points and brute-force optima."""

from __future__ import annotations

import numpy as np
import pytest

from agent.simulator.truth import (
    profit_usd_per_day,
    true_operating_point,
    true_optimum,
)

#: Post-halving hashprice, USD/TH/day (data README sanity check: ~0.045–0.058 after 2024-04).
HASHPRICE = 0.05
PRICE = 0.06


def test_true_point_follows_firmware_and_ignores_ramps(make_unit, clock):
    unit = make_unit("m60s")
    op = true_operating_point(unit, {"power_limit_w": 2600.0})
    assert op.power_reported_w <= 2600
    assert not op.idle
    unit.set_power_limit(2600.0)
    clock.advance(1)
    assert unit.reading().hashrate_5s_ths == 0  # restarting
    assert true_operating_point(unit, {}).hashrate_ths == pytest.approx(op.hashrate_ths, rel=0.01)
    assert true_operating_point(unit, {"power_mode": "sleep"}).idle
    assert true_operating_point(unit, {"mining": False}).hashrate_ths == 0


def test_profit_formula():
    class Op:
        hashrate_ths = 100.0
        power_w = 3000.0

    assert profit_usd_per_day(Op(), 0.05, 0.06) == pytest.approx(100 * 0.05 - 3 * 24 * 0.06)


def test_power_limit_optimum_beats_every_sampled_limit(make_unit):
    unit = make_unit("m60s", seed=3)
    best, value = true_optimum(unit, HASHPRICE, PRICE, "power_limit")
    assert unit.profile.power.min_w <= best["power_limit_w"] <= unit.profile.power.max_w
    op = true_operating_point(unit, best)
    assert profit_usd_per_day(op, HASHPRICE, PRICE) == pytest.approx(value)
    for lim in np.linspace(unit.profile.power.min_w, unit.profile.power.max_w, 17):
        other = true_operating_point(unit, {"power_limit_w": float(lim)})
        assert profit_usd_per_day(other, HASHPRICE, PRICE) <= value + 1e-9


def test_expensive_power_pushes_the_optimum_down(make_unit):
    unit = make_unit("s19xp", "braiins", seed=5)
    cheap, _ = true_optimum(unit, HASHPRICE, 0.02, "power_limit")
    dear, _ = true_optimum(unit, HASHPRICE, 0.10, "power_limit")
    assert dear["power_limit_w"] < cheap["power_limit_w"]


def test_mode_optimum_and_sleep_when_unprofitable(make_unit):
    unit = make_unit("m50", seed=2)
    best, value = true_optimum(unit, HASHPRICE, 0.01, "power_mode")
    assert best["power_mode"] in ("normal", "high")
    assert value > 0
    best, value = true_optimum(unit, HASHPRICE, 1.0, "power_mode")
    assert best == {"power_mode": "sleep"}
    assert value < 0


def test_clock_optimum_is_feasible_and_beats_the_default(make_unit):
    unit = make_unit("s19kpro", "braiins", seed=4)
    best, value = true_optimum(unit, HASHPRICE, PRICE, "clock")
    assert best["clock_manual"]
    op = true_operating_point(unit, best)
    assert not op.throttled
    assert max(op.chip_temp_c) <= unit.profile.thermal.chip_temp_max_c
    assert profit_usd_per_day(op, HASHPRICE, PRICE) == pytest.approx(value, rel=1e-6)
    default = true_operating_point(unit, {"freq_mhz": 590.0, "voltage_v": 13.5})
    assert value >= profit_usd_per_day(default, HASHPRICE, PRICE)


def test_thermal_limits_make_settings_infeasible(make_unit):
    unit = make_unit("s19kpro", "braiins", seed=4)
    cool, _ = true_optimum(unit, HASHPRICE, 0.0, "clock")
    unit.set_ambient_offset(15.0)
    hot, _ = true_optimum(unit, HASHPRICE, 0.0, "clock")
    # free power: the optimum is the hottest allowed point, which a warmer room lowers
    assert hot["freq_mhz"] < cool["freq_mhz"]


def test_unsupported_knobs(make_unit):
    with pytest.raises(ValueError, match="no power limit"):
        true_optimum(make_unit("s19pro"), HASHPRICE, PRICE, "power_limit")
    with pytest.raises(ValueError, match="knob"):
        true_optimum(make_unit("s19pro"), HASHPRICE, PRICE, "fan")


def test_empty_settings_mean_the_current_configuration(make_unit, clock):
    unit = make_unit("s19xp", "braiins")
    unit.set_clock(400.0, 12.6)
    clock.advance(300)
    op = true_operating_point(unit, {})
    assert op.freq_mhz == 400.0
    assert op.voltage_v == 12.6
    now_ths = sum(b.hashrate_ths for b in unit.reading().boards)
    assert op.hashrate_ths == pytest.approx(now_ths, rel=0.01)
    assert true_operating_point(unit, {"power_limit_w": 3000.0}).voltage_v != 12.6
