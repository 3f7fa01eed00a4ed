"""Whatsminer power modes at steady state: low < normal ≤ high in hashrate.

High mode raises the clock cap and the stock power ceiling by the profile's
``high_mode_fraction`` and needs a room at or below HIGH_MODE_AMBIENT_MAX_C; above it the
unit raises code 610 and runs the normal mode (simulator assumption, cited in the profiles).
"""

from __future__ import annotations

import pytest

from agent.simulator.clock import SimClock
from agent.simulator.unit import HIGH_MODE_AMBIENT_MAX_C, SimUnit
from tests.sim_physics.conftest import NOON

WHATSMINERS = ("m30s", "m50", "m60s")
SEEDS = range(1, 6)
#: Long past the 60 s retune ramp of a mode switch (the reviewer's probe used 1,200 s).
SETTLE_S = 1200.0
#: Room temperatures to test at: cool, mild, just under and over the high-mode limit, and the
#: top of MicroBT's rated environment (35 °C, landscape.md §8a).
AMBIENTS_C = (18.0, 24.0, 27.5, 30.0, 35.0)


def _steady(profile, seed: int, mode: str, ambient_c: float) -> tuple[SimUnit, object]:
    """One unit set to ``mode`` in a room held at ``ambient_c`` when read, after SETTLE_S."""
    clock = SimClock(speed=0, start=NOON)
    unit = SimUnit(f"{profile.id}-{seed}", profile, "whatsminer_v3", seed, clock)
    unit.set_ambient_offset(ambient_c - unit.params.ambient_at(NOON + SETTLE_S))
    if mode != "normal":
        unit.set_power_mode(mode)
    clock.advance(SETTLE_S)
    return unit, unit.reading()


def _hashrate(reading) -> float:
    return sum(b.hashrate_ths for b in reading.boards)


@pytest.mark.parametrize("pid", WHATSMINERS)
def test_low_below_normal_at_most_high_over_seeds_and_rooms(profiles, pid):
    for seed in SEEDS:
        for amb in AMBIENTS_C:
            (_, low), (_, normal), (unit, high) = (
                _steady(profiles[pid], seed, mode, amb) for mode in ("low", "normal", "high")
            )
            assert high.env_temp_c == pytest.approx(amb, abs=0.05)
            h = {m: _hashrate(r) for m, r in (("low", low), ("normal", normal), ("high", high))}
            assert h["low"] < h["normal"] <= h["high"] + 1e-9, (seed, amb, h)
            if amb <= HIGH_MODE_AMBIENT_MAX_C and not high.throttled:
                # a cool room: high mode really does more (its clock and ceiling are higher)
                assert h["high"] > h["normal"] * 1.01, (seed, amb, h)
                assert "610" not in high.error_codes
            if amb > HIGH_MODE_AMBIENT_MAX_C:
                # too warm for high performance: code 610, and the normal mode's point
                assert "610" in high.error_codes
                assert h["high"] == pytest.approx(h["normal"], rel=1e-9), (seed, amb, h)
                assert unit.settings["freq_mhz"] <= unit.mode_freq("normal") + 1e-9


@pytest.mark.parametrize("pid", WHATSMINERS)
def test_high_mode_is_held_to_the_raised_ceiling_not_above(profiles, pid):
    prof = profiles[pid]
    frac = prof.firmware["whatsminer"].high_mode_fraction
    for seed in SEEDS:
        unit, _ = _steady(prof, seed, "high", 22.0)
        ceiling = unit.stock_limit_w * frac
        est = unit.tuner_table(unit.settings["freq_mhz"], unit.clock.now())[2][-1]
        assert est <= ceiling * 1.01  # the firmware's own estimate, within the deadband
        assert unit.settings["freq_mhz"] <= unit.mode_freq("high") + 1e-9


def test_a_high_mode_unit_falls_back_as_the_room_warms_and_returns_as_it_cools(profiles):
    prof = profiles["m60s"]
    clock = SimClock(speed=0, start=NOON)
    unit = SimUnit("m60s-2", prof, "whatsminer_v3", 2, clock)
    twin = SimUnit("m60s-2-normal", prof, "whatsminer_v3", 2, clock)  # stays in normal
    for u in (unit, twin):
        u.set_ambient_offset(24.0 - u.params.ambient_at(NOON))
    unit.set_power_mode("high")
    clock.advance(SETTLE_S)
    cool_f = unit.settings["freq_mhz"]
    assert cool_f > unit.mode_freq("normal")
    for u in (unit, twin):
        u.set_ambient_offset(31.0 - u.params.ambient_at(clock.now()))  # a hot afternoon
    clock.advance(SETTLE_S)
    hot, twin_hot = unit.reading(), twin.reading()
    assert "610" in hot.error_codes
    assert unit.settings["freq_mhz"] == pytest.approx(twin.settings["freq_mhz"])
    assert _hashrate(hot) == pytest.approx(_hashrate(twin_hot), rel=1e-9)
    unit.set_ambient_offset(24.0 - unit.params.ambient_at(clock.now()))
    clock.advance(SETTLE_S)
    back = unit.reading()
    assert "610" not in back.error_codes
    assert unit.settings["freq_mhz"] == pytest.approx(cool_f, abs=5.0)
