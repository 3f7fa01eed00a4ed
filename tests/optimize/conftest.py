"""Shared helpers for the optimiser tests: bounds checked straight from the profile."""

from __future__ import annotations

import logging

import pytest
import structlog

from agent.profiles import HardwareProfile
from agent.snapshot import Settings

EPS = 1e-6


@pytest.fixture(autouse=True)
def _quiet_logs():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.reset_defaults()


def assert_within_profile(profile: HardwareProfile, firmware_key: str, s: Settings) -> None:
    """Fail unless ``s`` lies inside the profile's own bounds (independent of SearchSpace)."""
    fk = profile.firmware[firmware_key]
    f = s.changed_fields()
    assert f, "empty settings"
    if f.get("mining") is False:
        return
    if "power_mode" in f:
        assert f["power_mode"] in fk.power_modes, (f, fk.power_modes)
    if "power_limit_w" in f:
        assert fk.power_limit
        assert profile.power.min_w - EPS <= f["power_limit_w"] <= profile.power.max_w + EPS, f
    if "power_percent" in f:
        assert fk.power_percent
        lo = 100 * profile.power.min_w / profile.rated.power_w
        hi = 100 * profile.power.max_w / profile.rated.power_w
        assert lo - EPS <= f["power_percent"] <= hi + EPS, f
    if "freq_mhz" in f:
        c = profile.clock
        assert c.freq_mhz_min - EPS <= f["freq_mhz"] <= c.freq_mhz_max + EPS
        assert c.voltage_v_min - EPS <= f["voltage_v"] <= c.voltage_v_max + EPS
