"""SimClock: running, frozen and advanced simulated time."""

from __future__ import annotations

import time

import pytest

from agent.simulator.clock import DEFAULT_MANUAL_START, SimClock


def test_frozen_clock_moves_only_by_advance():
    c = SimClock(speed=0, start=1000.0)
    assert c.manual
    assert c.now() == 1000.0
    time.sleep(0.01)
    assert c.now() == 1000.0
    assert c.advance(5.5) == 1005.5
    assert c.now() == 1005.5


def test_frozen_default_start_is_fixed():
    assert SimClock(speed=0).now() == SimClock(speed=0).now() == DEFAULT_MANUAL_START


def test_running_clock_scales_host_time_and_advance_adds():
    c = SimClock(speed=1000.0, start=0.0)
    t0 = c.now()
    time.sleep(0.02)
    t1 = c.now()
    assert 15.0 <= t1 - t0 <= 2000.0  # ≥ 20 ms × 1000, loose upper bound for a busy host
    c.advance(1e6)
    assert c.now() >= t1 + 1e6


def test_running_clock_defaults_to_host_time():
    assert abs(SimClock().now() - time.time()) < 5


@pytest.mark.parametrize("bad", [-1.0])
def test_rejects_negative_speed_and_backwards_time(bad):
    with pytest.raises(ValueError, match="speed"):
        SimClock(speed=bad)
    with pytest.raises(ValueError, match="backwards"):
        SimClock(speed=0).advance(bad)
