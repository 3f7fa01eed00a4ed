"""SimUnit: firmware behaviour, ramps, counters, faults and protections."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agent.simulator.clock import SimClock
from agent.simulator.unit import (
    MODE_SWITCH_MIN_FRACTION,
    REBOOT_S,
    WHATSMINER_DOWN_S,
    SimUnit,
    UnsupportedControl,
)
from tests.sim_physics.conftest import EXPECTED_IDS, NOON


@pytest.mark.parametrize("pid", EXPECTED_IDS)
def test_fresh_unit_reads_like_a_healthy_miner(make_unit, profiles, pid):
    unit = make_unit(pid)
    prof = profiles[pid]
    r = unit.reading()
    assert unit.is_up()
    assert unit.web_up()
    assert r.is_mining
    assert not r.throttled
    assert r.error_codes == ()
    assert r.hashrate_30m_ths == pytest.approx(r.expected_hashrate_ths, rel=0.06)
    assert r.hashrate_avg_ths == pytest.approx(r.hashrate_30m_ths, rel=0.05)
    assert r.hashrate_5s_ths == pytest.approx(r.hashrate_30m_ths, rel=0.08)
    assert 0.5 * prof.rated.power_w < r.power_true_w < 1.3 * prof.rated.power_w
    assert 0.05 <= abs(r.power_reported_w / r.power_true_w - 1) <= 0.21  # Foreman 5–20 %
    assert len(r.boards) == prof.hardware.boards
    assert len(r.fans_rpm) == prof.hardware.fans
    for b in r.boards:
        assert b.alive
        assert b.chips_ok == b.chips_total == prof.hardware.chips_per_board
        assert b.chip_status.count("o") == b.chips_total
        assert "x" not in b.chip_status
        assert b.inlet_temp_c < b.outlet_temp_c == b.board_temp_c < b.chip_temp_c
        # fans hold the target until they saturate (a warm noon); never past "hot"
        assert b.board_temp_c <= prof.thermal.board_temp_hot_c
    fan_max = max(r.fans_rpm) / max(unit.params.fan_rpm_max)
    hottest = max(b.board_temp_c for b in r.boards)
    assert hottest <= prof.thermal.board_temp_target_c + 0.01 or fan_max > 0.97
    assert r.elapsed_s >= 3600
    assert r.accepted > 0
    assert r.rejected >= 0
    assert r.hw_errors >= 0


def test_same_seed_same_unit_different_seed_different_unit(profiles, clock):
    a = SimUnit("a", profiles["s19pro"], "antminer", 42, clock).reading()
    b = SimUnit("b", profiles["s19pro"], "antminer", 42, clock).reading()
    c = SimUnit("c", profiles["s19pro"], "antminer", 43, clock).reading()
    assert a == b
    assert a.hashrate_5s_ths != c.hashrate_5s_ths
    assert a.power_true_w != c.power_true_w


def test_reading_cached_per_sim_second(make_unit, clock):
    unit = make_unit("s21")
    r1 = unit.reading()
    assert unit.reading() is r1
    clock.advance(1.0)
    assert unit.reading() is not r1


def test_chip_status_format_matches_antminer_fixture(make_unit):
    """S19 Pro fixture chain_acs: 38 groups ' ooo' for 114 chips."""
    b = make_unit("s19pro").reading().boards[0]
    assert b.chip_status == " ooo" * 38


def test_counters_grow_in_closed_form_and_match_hashrate(make_unit, clock):
    unit = make_unit("s19kpro")
    r0 = unit.reading()
    clock.advance(3600)
    r1 = unit.reading()
    assert r1.accepted > r0.accepted
    assert r1.hw_errors >= r0.hw_errors
    # shares = TH·s·1e12 / 2^32 / pool difficulty
    expected_shares = r1.hashrate_30m_ths * 3600 * 1e12 / 2**32 / 262144
    assert (r1.accepted + r1.rejected) - (r0.accepted + r0.rejected) == pytest.approx(
        expected_shares, rel=0.05
    )
    # reading more often does not change the counters (no ticking)
    twin = SimUnit("twin", unit.profile, unit.firmware, unit.seed, SimClock(speed=0, start=NOON))
    twin.clock.advance(3600)
    assert twin.reading().accepted == r1.accepted


def test_whatsminer_power_limit_restarts_then_ramps(make_unit, clock, profiles):
    unit = make_unit("m60s", "whatsminer_v2")
    before = unit.reading()
    limit = 2800.0
    unit.set_power_limit(limit)
    assert unit.settings["power_limit_w"] == limit
    assert not unit.is_up()
    assert unit.web_up()
    r = unit.reading()
    assert not r.is_mining
    assert r.hashrate_5s_ths == 0
    assert r.elapsed_s == 0
    clock.advance(WHATSMINER_DOWN_S + 1)
    assert unit.is_up()
    early = unit.reading()
    assert 0 < early.hashrate_5s_ths < 0.2 * before.hashrate_5s_ths
    assert early.accepted < before.accepted  # counters restart with the process
    clock.advance(profiles["m60s"].firmware["whatsminer"].restart_s)
    steady = unit.reading()
    assert steady.power_reported_w <= limit * 1.02  # the tuner fits its own estimate
    assert steady.power_reported_w >= limit * 0.95
    assert steady.hashrate_5s_ths < before.hashrate_5s_ths
    assert unit.settings["freq_mhz"] < profiles["m60s"].clock.freq_mhz_default


def test_power_percent_is_temporary_and_does_not_restart(make_unit, clock):
    unit = make_unit("m50")
    unit.set_power_percent(70)
    assert unit.is_up()
    clock.advance(120)
    r = unit.reading()
    assert r.power_reported_w <= 0.70 * unit.profile.rated.power_w * 1.02
    unit.reboot()
    assert unit.settings["power_percent"] == 100.0


def test_stock_antminer_has_no_power_limit_and_mode_switch_takes_10_to_20_s(make_unit, clock):
    unit = make_unit("s19jpro")
    with pytest.raises(UnsupportedControl):
        unit.set_power_limit(2500)
    with pytest.raises(UnsupportedControl):
        unit.set_power_percent(50)
    with pytest.raises(UnsupportedControl):
        unit.set_clock(500, 13.0)
    with pytest.raises(ValueError, match="not offered"):
        unit.set_power_mode("high")
    normal = unit.reading().hashrate_5s_ths
    unit.set_power_mode("low")
    assert not unit.is_up()
    assert unit.web_up()
    longest = unit.knobs.restart_s  # the profile's 10–20 s mode switch, upper end
    clock.advance(MODE_SWITCH_MIN_FRACTION * longest - 1)
    assert not unit.is_up()
    clock.advance((1 - MODE_SWITCH_MIN_FRACTION) * longest + 2)
    assert unit.is_up()
    clock.advance(300)
    low = unit.reading()
    assert low.power_mode == "low"
    assert low.hashrate_5s_ths == pytest.approx(0.75 * normal, rel=0.05)  # flat ~25 % LPM


def test_sleep_and_wake(make_unit, clock):
    unit = make_unit("s19pro")
    unit.set_power_mode("sleep")
    clock.advance(30)
    r = unit.reading()
    assert unit.is_up()
    assert not r.is_mining
    assert r.hashrate_5s_ths == 0
    assert r.power_true_w < 100
    unit.set_power_mode("normal")
    clock.advance(200)
    assert unit.reading().is_mining


def test_set_mining_off_keeps_control_plane(make_unit, clock):
    unit = make_unit("m30s")
    unit.set_mining(False)
    r = unit.reading()
    assert unit.is_up()
    assert not r.is_mining
    assert r.power_true_w < 100
    unit.set_mining(True)
    assert not unit.is_up()  # btminer restarts
    clock.advance(600)
    assert unit.reading().is_mining


def test_reboot_takes_web_down(make_unit, clock):
    unit = make_unit("s21")
    unit.reboot()
    assert not unit.web_up()
    assert not unit.is_up()
    clock.advance(REBOOT_S[1] + 1)
    assert unit.web_up()
    assert unit.is_up()
    assert unit.reading().elapsed_s <= REBOOT_S[1] - REBOOT_S[0] + 1


def test_braiins_power_target_no_restart_and_direct_clock(make_unit, clock):
    unit = make_unit("s19xp", "braiins")
    unit.set_power_limit(2600)
    assert unit.is_up()
    clock.advance(120)
    assert unit.reading().power_reported_w == pytest.approx(2600, rel=0.03)
    unit.set_clock(400, 12.7)
    clock.advance(120)
    r = unit.reading()
    assert r.boards[0].freq_mhz == 400
    assert r.boards[0].voltage_v == 12.7
    with pytest.raises(ValueError, match="frequency"):
        unit.set_clock(900, 12.7)
    with pytest.raises(ValueError, match="voltage"):
        unit.set_clock(400, 20.0)
    with pytest.raises(ValueError, match="outside"):
        unit.set_power_limit(99999)


def test_undervolting_causes_hw_errors_and_bad_chips(make_unit, clock):
    unit = make_unit("s19kpro", "braiins")
    unit.set_clock(590, 13.5)
    clock.advance(120)
    ok = unit.reading()
    unit.set_clock(590, 13.0)
    clock.advance(120)
    bad = unit.reading()
    assert sum(b.chips_ok for b in bad.boards) < sum(b.chips_ok for b in ok.boards)
    assert "x" in bad.boards[0].chip_status + bad.boards[1].chip_status + bad.boards[2].chip_status
    assert bad.hashrate_5s_ths < 0.97 * ok.hashrate_5s_ths
    assert bad.power_true_w < ok.power_true_w


def test_faults_and_vendor_codes_whatsminer(make_unit, clock):
    unit = make_unit("m60s")
    unit.fail_fan(0)
    unit.lose_board(2)
    unit.degrade_chips(1, 4)
    clock.advance(5)
    r = unit.reading()
    assert r.fans_rpm[0] == 0
    assert r.fans_rpm[1] > 0
    assert not r.boards[2].alive
    assert r.boards[2].hashrate_ths == 0
    assert r.boards[1].chips_ok == r.boards[1].chips_total - 4
    assert {"110", "532", "551"} <= set(r.error_codes)
    unit.repair()
    clock.advance(5)
    assert unit.reading().error_codes == ()


def test_faults_and_vendor_codes_antminer(make_unit, clock):
    unit = make_unit("s19pro")
    full = unit.reading().hashrate_5s_ths
    unit.lose_board(0)
    unit.degrade_chips(1, 10)
    clock.advance(5)
    r = unit.reading()
    assert {"J0:8", "J1:2", "R:1"} <= set(r.error_codes)
    assert r.hashrate_5s_ths == pytest.approx(full * (2 * 114 - 10) / (3 * 114), rel=0.08)
    with pytest.raises(ValueError, match="board index"):
        unit.lose_board(3)
    with pytest.raises(ValueError, match="fan index"):
        unit.fail_fan(4)


def test_overtemperature_throttles_then_shuts_down(make_unit, clock, profiles):
    unit = make_unit("s19pro")
    base = unit.reading()
    unit.set_ambient_offset(40.0 - unit.ambient_c() + 2)  # ~42 °C room
    clock.advance(1)
    hot = unit.reading()
    assert hot.throttled
    assert "P:1" in hot.error_codes
    assert hot.boards[0].freq_mhz < base.boards[0].freq_mhz
    # at most THROTTLE_MAX_FRACTION down; boards stay below the danger temperature
    assert hot.boards[0].freq_mhz >= 0.9 * base.boards[0].freq_mhz - 1e-9
    assert max(b.board_temp_c for b in hot.boards) <= profiles["s19pro"].thermal.board_temp_max_c
    unit.set_ambient_offset(70.0 - unit.ambient_c() + unit.faults().ambient_offset_c)
    clock.advance(1)
    dead = unit.reading()
    assert not dead.is_mining
    assert dead.hashrate_5s_ths == 0
    assert "P:1" in dead.error_codes


def test_day_night_swing_moves_ambient_and_temps(make_unit, clock):
    unit = make_unit("m50")
    temps = []
    for _ in range(8):
        temps.append(unit.reading().env_temp_c)
        clock.advance(3 * 3600)
    swing = unit.params.ambient_swing_c
    assert max(temps) - min(temps) == pytest.approx(2 * swing, rel=0.35)


def test_validation_errors(make_unit):
    unit = make_unit("m30s")
    for bad in (float("nan"), 10.0, 1e6):
        with pytest.raises(ValueError, match="power limit"):
            unit.set_power_limit(bad)
    for bad in (0, -5, 101):
        with pytest.raises(ValueError, match="power percent"):
            unit.set_power_percent(bad)
    with pytest.raises(ValueError, match="not offered"):
        unit.set_power_mode("turbo")
    with pytest.raises(ValueError, match="firmware knobs"):
        SimUnit("x", unit.profile, "antminer", 1, unit.clock)  # no antminer knobs on M30S
    with pytest.raises(ValueError, match="unknown firmware"):
        SimUnit("x", unit.profile, "vnish", 1, unit.clock)


def test_readings_are_frozen(make_unit):
    r = make_unit("s19").reading()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.hashrate_5s_ths = 0  # type: ignore[misc]
    assert isinstance(r.boards[0].hw_errors, int)
    assert isinstance(r.fans_rpm[0], int)
    assert np.isfinite(r.power_reported_w)


def test_counters_follow_throttling_from_ambient(make_unit, clock):
    unit = make_unit("s19pro")
    # a site with a big day/night swing: 18 °C now (noon is the trough), 42 °C at midnight
    unit.params = dataclasses.replace(
        unit.params, ambient_base_c=30.0, ambient_swing_c=12.0, ambient_peak_hour=0.0
    )
    unit.repair()  # any command re-reads the state
    cool = unit.reading()
    assert cool.env_temp_c == pytest.approx(18.0, abs=0.1)
    assert not cool.throttled
    clock.advance(12 * 3600)  # no command in between
    hot = unit.reading()
    assert hot.env_temp_c == pytest.approx(42.0, abs=0.1)
    assert hot.throttled
    assert "P:1" in hot.error_codes
    clock.advance(900)
    later = unit.reading()
    now_rate = sum(b.hashrate_ths for b in later.boards)
    assert now_rate < 0.95 * cool.hashrate_30m_ths
    gained = (later.accepted + later.rejected) - (hot.accepted + hot.rejected)
    assert gained == pytest.approx(now_rate * 900 * 1e12 / 2**32 / 262144, rel=0.05)


def test_high_mode_warns_above_28c(make_unit, clock):
    unit = make_unit("m60s")
    unit.set_power_mode("high")
    unit.set_ambient_offset(30.0 - unit.ambient_c() + unit.faults().ambient_offset_c)
    clock.advance(1)
    assert "610" in unit.reading().error_codes


@pytest.mark.parametrize("n", [75, 76, 77, 114])
def test_chip_status_groups_of_three(n):
    from agent.simulator.unit import _chip_status

    ok = np.ones(n, dtype=bool)
    ok[[0, n - 1]] = False
    chars = np.where(ok, "o", "x")
    want = "".join(" " + "".join(chars[i : i + 3]) for i in range(0, n, 3))
    assert _chip_status(ok) == want
