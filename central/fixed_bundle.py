"""A bundle of fixed-parameter models (no validation, no tuning) for tests and benchmarks.

Same data, features, transforms and compile path as ``hashpilot-central train``, but each
model is a single fit with chosen rounds and depth, so a test session or a benchmark can
build real compiled models in seconds. Its metrics and intervals are **not** validated
estimates; never ship it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.inference.miner import MINER_FEATURES, TARGETS
from central.compile import ModelSpec, write_bundle
from central.dataset import HORIZONS, horizon_features, interval_scale, make_frame, offset_features
from central.fleetdata import FleetConfig, simulate_fleet
from central.market import load_btc_daily
from central.miner_model import HEALTH_DROPOUT, health_dropout, transformed_target
from central.train import DEFAULT_PARAMS, conformal_quantiles, fit_rounds

#: Fleet of the fixed bundle: every profile, two units each, a dozen settings per unit.
SMALL_FLEET = FleetConfig(units_per_combo=2, settings_per_unit=12, seed=7)


def build_fixed_bundle(
    out: Path, *, rounds: int = 20, max_depth: int = 3, fleet: FleetConfig = SMALL_FLEET
) -> Path:
    """Fit every bundle model once with fixed parameters and compile them into ``out``."""
    params = {**DEFAULT_PARAMS, "max_depth": max_depth}
    btc = load_btc_daily()
    specs: list[ModelSpec] = []
    for h in HORIZONS:
        frame = make_frame(btc, h)
        feats = list(horizon_features(h))
        y = frame.y - frame.offset
        booster = fit_rounds(params, frame.X[feats], y, rounds)
        resid = (y.to_numpy() - booster.inplace_predict(frame.X[feats].to_numpy())) / (
            interval_scale(frame.X, h)
        )
        q = conformal_quantiles(resid)
        specs.append(
            ModelSpec(
                name=f"hashprice_h{h}",
                kind="hashprice",
                booster=booster,
                features=feats,
                target="fixed-parameter test model",
                unit="log ratio",
                reference=frame.X[feats].to_numpy(),
                offset_features=list(offset_features(h)),
                horizon_days=h,
                intervals={
                    **q,
                    "scale_features": ["hp_vol_30d", "vol_30d"],
                    "scale_floor": 0.005,
                    "scale_sqrt_h": float(np.sqrt(h)),
                },
                metrics={"note": "fixed parameters, not validated"},
            )
        )
    telemetry = simulate_fleet(fleet)
    X = health_dropout(telemetry[list(MINER_FEATURES)].astype(float), HEALTH_DROPOUT, seed=7)
    for target, (name, scale, offset) in TARGETS.items():
        booster = fit_rounds(params, X, transformed_target(telemetry, target), rounds)
        specs.append(
            ModelSpec(
                name=name,
                kind="miner",
                booster=booster,
                features=list(MINER_FEATURES),
                target="fixed-parameter test model",
                unit="ratio",
                reference=X.to_numpy(),
                output_transform={"scale": scale, "offset": offset},
                metrics={"note": "fixed parameters, not validated", "relative_sd": 0.1},
            )
        )
    return write_bundle(specs, out, channel="test")
