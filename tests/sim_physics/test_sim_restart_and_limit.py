"""SimUnit: mining-process restarts, and the Whatsminer stock power limit regulated from boot."""

from __future__ import annotations

import dataclasses

import pytest

from agent.simulator.clock import SimClock
from agent.simulator.unit import (
    ANTMINER_RAMP_S,
    MODE_SWITCH_MIN_FRACTION,
    POWER_READING_NOISE,
    REGULATION_DEADBAND,
    WHATSMINER_DOWN_S,
    SimUnit,
)
from tests.sim_physics.conftest import NOON

WHATSMINERS = ("m30s", "m50", "m60s")
#: Steady reported power may exceed the limit by the regulation deadband plus 4 σ of the
#: firmware's reading noise (simulator constants), i.e. about 3 %.
STEADY_BOUND = (1 + REGULATION_DEADBAND) * (1 + 4 * POWER_READING_NOISE)


def _twin(unit: SimUnit) -> SimUnit:
    """Same hidden unit on its own frozen clock at the same instant."""
    clock = SimClock(speed=0, start=unit.clock.now())
    return SimUnit(unit.unit_id + "-twin", unit.profile, unit.firmware, unit.seed, clock)


# --------------------------------------------------------------------------- process restart


def test_restart_process_downs_the_process_then_ramps_like_a_power_limit_restart(make_unit):
    unit = make_unit("m30s", "whatsminer_v2", seed=4)
    twin = _twin(unit)
    before = unit.reading()
    assert before.elapsed_s > 3600
    unit.restart_process()
    # the reference: a power-limit restart at the limit the unit already regulates to
    twin.set_power_limit(twin.stock_limit_w)
    assert not unit.is_up()
    assert unit.web_up()
    down = unit.reading()
    assert not down.is_mining
    assert down.hashrate_5s_ths == 0
    assert down.elapsed_s == 0
    assert down.accepted == 0  # counters restart with the process
    assert down.fans_rpm == (0,) * unit.profile.hardware.fans
    assert down.power_true_w < 100  # only the control board
    restart_s = unit.knobs.restart_s
    seen = []
    for dt in (WHATSMINER_DOWN_S - 1, 2, 60, 120, 240, restart_s - WHATSMINER_DOWN_S):
        for u in (unit, twin):
            u.clock.advance(dt)
        a, b = unit.reading(), twin.reading()
        assert unit.is_up() == twin.is_up()
        assert a.hashrate_5s_ths == pytest.approx(b.hashrate_5s_ths, rel=1e-9)
        assert a.elapsed_s == b.elapsed_s
        assert a.accepted == b.accepted
        seen.append(a.hashrate_5s_ths)
    assert seen[0] == 0  # still down one second before the outage ends
    assert 0 < seen[1] < 0.1 * before.hashrate_5s_ths
    assert seen[1] < seen[2] < seen[3] < seen[4]  # ramping up
    assert seen[-1] == pytest.approx(before.hashrate_5s_ths, rel=0.05)  # back at full rate


def test_restart_process_loses_the_temporary_power_percent(make_unit, clock):
    unit = make_unit("m50", "whatsminer_v3")
    unit.set_power_percent(70)
    clock.advance(600)
    reduced = unit.reading().hashrate_5s_ths
    unit.restart_process()
    assert unit.settings["power_percent"] == 100.0
    clock.advance(unit.knobs.restart_s + 60)
    assert unit.reading().hashrate_5s_ths > 1.15 * reduced


def test_antminer_restart_with_an_explicit_outage_then_antminer_ramp(make_unit, clock):
    unit = make_unit("s19jpro", "antminer")
    full = unit.reading().hashrate_5s_ths
    unit.restart_process(30.0)
    clock.advance(29)
    assert not unit.is_up()
    assert unit.web_up()
    clock.advance(2)
    assert unit.is_up()
    r = unit.reading()
    assert r.elapsed_s == 1
    assert 0 < r.hashrate_5s_ths < 0.1 * full
    clock.advance(ANTMINER_RAMP_S / 2)
    assert unit.reading().hashrate_5s_ths == pytest.approx(full / 2, rel=0.1)
    clock.advance(ANTMINER_RAMP_S)
    assert unit.reading().hashrate_5s_ths == pytest.approx(full, rel=0.05)


def test_antminer_restart_default_outage_is_the_mode_switch_time(make_unit, clock):
    unit = make_unit("s19pro", "antminer")
    longest = unit.knobs.restart_s  # the profile's 10–20 s mode switch, upper end
    unit.restart_process()
    clock.advance(MODE_SWITCH_MIN_FRACTION * longest - 1)
    assert not unit.is_up()
    clock.advance((1 - MODE_SWITCH_MIN_FRACTION) * longest + 2)
    assert unit.is_up()


def test_restart_process_rejects_a_bad_outage(make_unit):
    unit = make_unit("m30s")
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="restart outage"):
            unit.restart_process(bad)
    assert unit.is_up()


# --------------------------------------------------------------------------- stock power limit


@pytest.mark.parametrize("pid", WHATSMINERS)
def test_stock_limit_holds_reported_power_from_boot_across_a_day(profiles, pid):
    prof = profiles[pid]
    ratios, clocks = [], []
    for seed in range(16):
        clock = SimClock(speed=0, start=NOON)
        unit = SimUnit(f"{pid}-{seed}", prof, "whatsminer_v2", seed, clock)
        assert not unit.limit_active  # nobody set a limit ...
        assert unit.stock_limit_w == prof.power.max_w  # ... yet the stock one is in force
        for _ in range(8):
            r = unit.reading()
            assert r.power_limit_w == prof.power.max_w  # what ``Power Limit`` shows
            ratios.append(r.power_reported_w / r.power_limit_w)
            clocks.append((unit.params.power_bias, unit.settings["freq_mhz"]))
            clock.advance(3 * 3600)
    assert max(ratios) <= STEADY_BOUND
    f_default = prof.clock.freq_mhz_default
    # high-bias units are held back by the limit; low-bias ones run the stock clock
    assert any(f < f_default for bias, f in clocks if bias > 0.1)
    assert all(f == pytest.approx(f_default) for bias, f in clocks if bias < -0.1)


def test_before_the_fix_a_high_bias_unit_would_report_over_its_limit(profiles, clock):
    """The reason for the stock limit: at the default clock the firmware estimate is over."""
    prof = profiles["m30s"]
    unit = next(
        u
        for s in range(64)
        if (u := SimUnit(f"m30s-{s}", prof, "whatsminer_v2", s, clock)).params.power_bias > 0.15
    )
    f = prof.clock.freq_mhz_default
    unregulated = unit.tuner_table(f, clock.now())[2][-1]  # firmware estimate at the stock clock
    assert unregulated > 1.1 * prof.power.max_w
    assert unit.settings["freq_mhz"] < f
    assert unit.reading().power_reported_w <= prof.power.max_w * STEADY_BOUND


def test_high_mode_is_held_to_its_raised_stock_ceiling_and_low_mode_is_not_raised(make_unit, clock):
    unit = make_unit("m60s", "whatsminer_v3", seed=5)
    unit.set_power_mode("high")
    clock.advance(600)
    high = unit.reading()
    ceiling = unit.stock_limit_w * unit.knobs.high_mode_fraction
    assert high.power_reported_w <= ceiling * STEADY_BOUND
    unit.set_power_mode("low")
    clock.advance(600)
    assert unit.settings["freq_mhz"] == pytest.approx(unit.mode_freq("low"))


def test_operator_limit_replaces_the_stock_limit_and_clearing_restores_it(make_unit, clock):
    unit = make_unit("m30s", "whatsminer_v2", seed=7)
    unit.set_power_limit(2500)
    clock.advance(unit.knobs.restart_s + 60)
    r = unit.reading()
    assert r.power_limit_w == 2500
    assert r.power_reported_w <= 2500 * STEADY_BOUND
    unit.clear_power_limit()
    assert not unit.limit_active
    clock.advance(unit.knobs.restart_s + 60)
    r = unit.reading()
    assert r.power_limit_w == unit.stock_limit_w
    assert 2500 * 1.1 < r.power_reported_w <= unit.stock_limit_w * STEADY_BOUND


def test_regulation_follows_ambient_without_any_command(make_unit, clock):
    """A hot afternoon pushes fan power up; the firmware steps the clock down, then back."""
    unit = make_unit("m30s", "whatsminer_v2", seed=11)
    # a site with a big swing: 16 °C now (noon is the trough), 32 °C at midnight
    unit.params = dataclasses.replace(
        unit.params, power_bias=0.12, ambient_base_c=24.0, ambient_swing_c=8.0, ambient_peak_hour=0
    )
    unit.repair()
    cool_f = unit.settings["freq_mhz"]
    limit = unit.stock_limit_w
    freqs, ratios = [], []
    for _ in range(48):  # every 15 min for 12 h, no command in between
        clock.advance(900)
        r = unit.reading()
        freqs.append(unit.settings["freq_mhz"])
        ratios.append(r.power_reported_w / limit)
    assert max(ratios) <= STEADY_BOUND
    assert min(freqs) < cool_f  # stepped down as the room warmed
    assert not r.throttled  # the limit, not over-temperature protection, did it
    for _ in range(48):  # and back to noon
        clock.advance(900)
        unit.reading()
    assert unit.settings["freq_mhz"] == cool_f
