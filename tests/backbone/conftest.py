"""Fixtures for the backbone tests: a hardware profile and fake drivers."""

from __future__ import annotations

import pytest

from agent.profiles import HardwareProfile, find_profile


def _s19jpro() -> HardwareProfile:
    shipped = find_profile("S19j Pro", "antminer")
    if shipped is not None:
        return shipped
    # Rated figures from ../shared/data/asic_hashrate_bins_watts_asics_tools.csv
    # ("bitmain antminer s19j pro,104.0,3068.0"); 3 boards x 126 chips, 4 fans as in pyasic's
    # device model S19jPro. Clock, power and thermal bounds are placeholders these tests
    # never read (features use only rated figures, boards, chips and fans).
    return HardwareProfile.model_validate(
        {
            "id": "test_s19j_pro",
            "make": "antminer",
            "name": "S19j Pro",
            "rated": {"hashrate_ths": 104.0, "power_w": 3068.0},
            "hardware": {"boards": 3, "chips_per_board": 126, "fans": 4},
            "clock": {
                "freq_mhz_min": 1.0,
                "freq_mhz_max": 3.0,
                "freq_mhz_default": 2.0,
                "voltage_v_min": 1.0,
                "voltage_v_max": 3.0,
                "voltage_v_default": 2.0,
            },
            "power": {"min_w": 1.0, "max_w": 4000.0},
            "thermal": {
                "board_temp_target_c": 1.0,
                "board_temp_hot_c": 2.0,
                "board_temp_max_c": 3.0,
                "chip_temp_max_c": 4.0,
            },
            "firmware": {},
            "sources": {
                "rated.hashrate_ths": "shared/data/asic_hashrate_bins_watts_asics_tools.csv",
                "rated.power_w": "shared/data/asic_hashrate_bins_watts_asics_tools.csv",
                "hardware.chips_per_board": "pyasic device model S19jPro",
            },
        }
    )


@pytest.fixture(scope="session")
def profile_s19jpro() -> HardwareProfile:
    """The S19j Pro profile (shipped one if present)."""
    return _s19jpro()
