"""Baselines keep the same safety rules as the optimiser (thermal and hardware-error limits)."""

from __future__ import annotations

import pytest

from agent.optimize.baselines import GridSearch, RandomSearch
from agent.optimize.objective import Economics
from agent.optimize.optimizer import DEFAULT_HW_ERR_MAX_SHARE, Observation
from agent.optimize.space import build_space, capabilities_from_profile
from agent.profiles import load_profiles
from agent.snapshot import Settings

PROF = load_profiles()["s19kpro"]


@pytest.mark.parametrize("kind", ["random", "grid"])
def test_a_setting_over_the_hardware_error_limit_is_never_recommended(kind):
    space = build_space("u", PROF, capabilities_from_profile(PROF, "braiins"))
    econ = Economics()
    base = RandomSearch(space, econ, seed=1) if kind == "random" else GridSearch(space, econ, 5)
    fast, safe = Settings(power_limit_w=3000.0), Settings(power_limit_w=2500.0)
    # the faster setting earns more on paper but fails 10x the error limit
    base.tell(Observation(fast, 120.0, 3000.0, 80.0, 60.0, 25.0, 10 * DEFAULT_HW_ERR_MAX_SHARE))
    base.tell(Observation(safe, 100.0, 2500.0, 75.0, 55.0, 25.0, 1e-6))
    assert base.recommend_settings() == safe
