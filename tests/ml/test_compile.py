"""Compiled models equal XGBoost: 10,000 random rows per model, exact thresholds, sources."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from agent.inference.bundle import feature_schema_hash, open_bundle, platform_key, sha256_file
from agent.inference.model import CompiledModel, load_model
from central.compile import (
    TL2CGEN_PARAMS,
    VERIFY_TOLERANCE,
    random_rows,
    split_thresholds,
)

MODELS = ("hashprice_h1", "hashprice_h7", "miner_hashrate", "miner_power", "miner_chip_temp")


def _native(bundle_dir: Path, name: str) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(str(bundle_dir / "models" / name / "model.ubj"))
    return booster


@pytest.mark.parametrize("name", MODELS)
def test_compiled_equals_xgboost_on_10000_random_rows(bundle_dir, name):
    bundle = open_bundle(bundle_dir)
    booster = _native(bundle_dir, name)
    entry = bundle.model(name)
    # a fresh draw, not the rows the compiler verified on: wide, jittered, on-threshold, NaN
    reference = random_rows(np.zeros((1, entry.num_feature)) + 1.0, 100, seed=3)
    reference = np.vstack([reference, np.asarray([r.x for r in entry.golden], dtype=float)])
    rows = random_rows(reference, 10_000, seed=11, thresholds=split_thresholds(booster))
    assert rows.shape == (10_000, entry.num_feature)
    assert np.isnan(rows).any()
    expected = booster.inplace_predict(rows).astype(float)
    model = load_model(bundle, name)
    assert model.backend == "compiled"
    batch = model.predict_batch(rows)
    assert np.max(np.abs(batch - expected)) <= VERIFY_TOLERANCE
    single = np.array([model.predict_row(r) for r in rows[:2000].tolist()])
    assert np.max(np.abs(single - expected[:2000])) <= VERIFY_TOLERANCE
    # and the compiler recorded the same check in the manifest
    assert entry.verification["rows"] == 10_000
    assert entry.verification["max_abs_diff"] <= VERIFY_TOLERANCE


def test_manifest_records_what_distribution_needs(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["format"] == "hashpilot-bundle/1"
    assert manifest["bundle_id"].startswith("hp-")
    assert manifest["toolchain"]["treelite"].startswith("4.")
    assert manifest["toolchain"]["tl2cgen"] == "1.0.0"
    assert set(manifest["models"]) == set(MODELS)
    for rel, meta in manifest["files"].items():
        path = bundle_dir / rel
        assert path.stat().st_size == meta["length"]
        assert sha256_file(path) == meta["sha256"]
    for entry in manifest["models"].values():
        assert entry["feature_schema_hash"] == feature_schema_hash(entry["features"])
        assert len(entry["golden"]) >= 4
        assert any(None in g["x"] for g in entry["golden"])
        assert {"native", "checkpoint", "sources"} <= set(entry["files"])
        assert platform_key() in entry["libs"]


def _tiny_stump(threshold: float) -> xgb.Booster:
    X = np.array([[0.05], [0.08], [threshold], [0.2], [0.3]] * 20, dtype=np.float32)
    y = (X[:, 0] >= np.float32(threshold)).astype(float)
    params = {"max_depth": 1, "eta": 1.0, "nthread": 1, "base_score": 0.5, "min_child_weight": 0}
    return xgb.train(params, xgb.DMatrix(X, label=y), 1)


def test_quantize_stays_off_because_tl2cgen_rounds_its_threshold_table(tmp_path):
    """tl2cgen 1.0.0 prints quantization thresholds with 8 digits: an input equal to a float32
    threshold lands on the wrong side. If this test starts failing at the quantize=1 line,
    tl2cgen fixed it and ``TL2CGEN_PARAMS`` may turn quantize back on."""
    import tl2cgen
    import treelite

    value = 0.10970092564821243  # needs 9 significant digits as a float32
    booster = _tiny_stump(value)
    tl_model = treelite.frontend.from_xgboost(booster)
    expected = float(booster.inplace_predict(np.array([[value]], dtype=np.float32))[0])
    results = {}
    for quantize in (0, 1):
        lib = tmp_path / f"q{quantize}.so"
        tl2cgen.export_lib(
            tl_model, toolchain="gcc", libpath=str(lib), params={"quantize": quantize}, nthread=1
        )
        results[quantize] = CompiledModel("stump", lib).predict_row([value])
    assert results[0] == pytest.approx(expected, abs=1e-6)
    assert abs(results[1] - expected) > 0.5  # the upstream bug, pinned
    assert TL2CGEN_PARAMS["quantize"] == 0


def test_generated_sources_build_with_plain_make(bundle_dir, tmp_path):
    """What an agent on another CPU does: unzip the sources and run make with its own gcc."""
    if shutil.which("make") is None:
        pytest.fail("make is required to build bundle sources")
    src = tmp_path / "src"
    with zipfile.ZipFile(bundle_dir / "models" / "miner_power" / "sources.zip") as zf:
        zf.extractall(src)
    assert (src / "Makefile").is_file()
    assert (src / "main.c").is_file()
    subprocess.run(
        ["make", "-s", "-j2", "-C", str(src)], check=True, capture_output=True, timeout=120
    )
    libs = list(src.glob("*.so"))
    assert len(libs) == 1
    rebuilt = CompiledModel("miner_power", libs[0])
    bundle = open_bundle(bundle_dir)
    for row in bundle.model("miner_power").golden:
        assert rebuilt.predict_row(row.x) == pytest.approx(row.y, abs=VERIFY_TOLERANCE)
