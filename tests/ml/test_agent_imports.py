"""The agent process predicts without xgboost, scikit-learn, pandas, scipy, treelite, tl2cgen."""

from __future__ import annotations

import json
import os
import subprocess
import sys

FORBIDDEN = ("xgboost", "sklearn", "pandas", "scipy", "treelite", "tl2cgen", "central")

CHILD = """
import json, sys
from agent.inference.bundle import open_bundle
from agent.inference.hashprice import HashpriceForecaster
from agent.inference.miner import MinerResponseModel, profile_features
from agent.inference.model import load_model
from agent.profiles import load_profiles
b = open_bundle(sys.argv[1])
models = [load_model(b, n) for n in b.manifest.models]
fc = HashpriceForecaster(b, 7).forecast({}, 0.05)
resp = MinerResponseModel(b).predict(
    {**profile_features(load_profiles()["s19pro"]), "ambient_c": 25.0})
import numpy as np
batch = models[0].predict_batch(np.zeros((10, models[0].num_feature)))
print(json.dumps({"backends": [m.backend for m in models], "p50": fc.p50,
                  "power": resp.power_w, "loaded": sorted(sys.modules)}))
"""


def test_inference_imports_no_training_stack(bundle_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(bundle_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["backends"]) == {"compiled"}
    assert result["p50"] > 0
    assert result["power"] > 0
    loaded = {m.split(".")[0] for m in result["loaded"]}
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
