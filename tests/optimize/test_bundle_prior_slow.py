"""The bundle prior on a real trained, compiled and signed bundle (slow: trains one)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.optimize.fleet import FleetUnit, build_optimizer
from agent.optimize.objective import Economics
from agent.optimize.optimizer import OptimizerConfig
from agent.optimize.prior import FallbackPrior, PhysicsPrior, PriorContext, select_prior
from agent.profiles import load_profiles
from agent.snapshot import Settings
from tests.conftest import REPO

#: Quick training is ~50 s on an idle 2-core box; allow for a busy one.
TRAIN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        [sys.executable, "-m", "central.cli", "train", "--out", str(out / "t"), "--quick"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=TRAIN_TIMEOUT_S,
    )
    return out / "t" / "bundle"


@pytest.mark.slow
def test_real_bundle_is_the_prior_and_degrades_to_physics(bundle_dir):
    prior, note = select_prior(bundle_dir)
    assert isinstance(prior, FallbackPrior)
    assert "bundle response model" in note
    prof = load_profiles()["m50"]
    warm = PriorContext(prof, "whatsminer_v3", ambient_c=25.0)
    r = prior.predict(Settings(power_limit_w=2500.0), warm)
    assert 0 < r.hashrate_ths < 2 * prof.rated.hashrate_ths
    assert 0 < r.power_w < 2 * prof.rated.power_w
    assert prior.fallbacks == 0
    # no ambient reading: a required feature is missing -> physics answers, counted
    cold = PriorContext(prof, "whatsminer_v3", ambient_c=None)
    assert prior.predict(Settings(power_limit_w=2500.0), cold) == PhysicsPrior().predict(
        Settings(power_limit_w=2500.0), cold
    )
    assert prior.fallbacks == 1
    opt = build_optimizer(
        FleetUnit("m", "m50", "whatsminer_v3", ambient_c=25.0),
        Economics(),
        OptimizerConfig(),
        prior,
    )
    s = opt.ask()
    assert prof.power.min_w <= s.power_limit_w <= prof.power.max_w


@pytest.mark.slow
def test_bundle_hashprice_forecast_prices_the_objective(bundle_dir):
    from agent.inference.bundle import open_bundle
    from agent.inference.hashprice import HashpriceForecaster
    from agent.optimize.objective import DEFAULT_HASHPRICE_USD_PER_TH_DAY, hashprice_from_forecaster

    fc = HashpriceForecaster(open_bundle(bundle_dir), 1)
    hp = hashprice_from_forecaster(fc, dict, lambda: DEFAULT_HASHPRICE_USD_PER_TH_DAY)
    econ = Economics(hashprice=hp)
    value = econ.hashprice_usd_per_th_day()
    assert 0.2 * DEFAULT_HASHPRICE_USD_PER_TH_DAY < value < 5 * DEFAULT_HASHPRICE_USD_PER_TH_DAY
