"""Loading compiled models: symbol lookup, value types, the batch shim's state, self-checks.

The odd libraries here are real shared objects compiled with gcc from a few lines of C,
each breaking one assumption the loader makes about a tl2cgen library or the batch shim.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from agent.errors import BundleError, ModelError
from agent.inference import model as model_mod
from agent.inference.bundle import open_bundle, platform_key, sha256_file
from agent.inference.model import CompiledModel, load_model
from central.compile import build_shim

#: tl2cgen's metadata entry points with chosen value types, and optionally a predict().
META_C = """
#include <stdint.h>
int32_t get_num_feature(void) { return 2; }
int32_t get_num_target(void) { return 1; }
void get_num_class(int32_t* out) { out[0] = 1; }
const char* get_threshold_type(void) { return "%(threshold)s"; }
const char* get_leaf_output_type(void) { return "%(leaf)s"; }
%(predict)s
"""
PREDICT_F64 = "void predict(void* row, int margin, double* out) { out[0] += 1.5; }"
#: A batch shim that "works" (returns 0) but writes a wrong value for every row.
WRONG_SHIM_C = """
#include <stdint.h>
int predict_batch_f32(void* fn, const float* X, int64_t n, int32_t c, int m, float* out,
                      int32_t k) { for (int64_t i = 0; i < n * k; ++i) out[i] = 42.0f; return 0; }
int predict_batch_f64(void* fn, const double* X, int64_t n, int32_t c, int m, double* out,
                      int32_t k) { for (int64_t i = 0; i < n * k; ++i) out[i] = 42.0; return 0; }
"""
#: A shared object without the shim's entry points.
EMPTY_C = "int unrelated(void) { return 0; }\n"


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Warning events of the model loader (captured, not printed), fallback log reset."""
    events: list[str] = []
    monkeypatch.setattr(model_mod, "_fallback_logged", set())
    monkeypatch.setattr(model_mod.log, "warning", lambda event, **kw: events.append(event))
    return events


def _gcc(tmp_path: Path, name: str, source: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    lib = tmp_path / f"{name}.so"
    subprocess.run(
        ["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return lib


def _meta_lib(tmp_path: Path, name: str, threshold: str, leaf: str, predict: str) -> Path:
    return _gcc(tmp_path, name, META_C % {"threshold": threshold, "leaf": leaf, "predict": predict})


def _replace_shim(bundle_root: Path, lib: Path) -> None:
    manifest = json.loads((bundle_root / "manifest.json").read_text())
    rel = manifest["batch_shim"][platform_key()]
    (bundle_root / rel).write_bytes(lib.read_bytes())
    manifest["files"][rel] = {
        "sha256": sha256_file(bundle_root / rel),
        "length": (bundle_root / rel).stat().st_size,
    }
    (bundle_root / "manifest.json").write_text(json.dumps(manifest))


def test_a_library_without_predict_is_a_model_error(tmp_path):
    lib = _meta_lib(tmp_path, "nopredict", "float32", "float32", "")
    with pytest.raises(ModelError, match="cannot load compiled library"):
        CompiledModel("m", lib)


def test_a_library_without_predict_falls_back_to_gtil(bundle_copy, tmp_path, warnings):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    rel = manifest["models"]["miner_power"]["libs"][platform_key()]
    stub = _meta_lib(tmp_path, "nopredict", "float32", "float32", "")
    (bundle_copy / rel).write_bytes(stub.read_bytes())
    manifest["files"][rel] = {
        "sha256": sha256_file(bundle_copy / rel),
        "length": (bundle_copy / rel).stat().st_size,
    }
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    model = load_model(open_bundle(bundle_copy), "miner_power")
    assert model.backend == "gtil"
    assert warnings == ["compiled_model_unavailable_using_gtil"]


def test_mismatched_threshold_and_leaf_types_are_refused(tmp_path):
    lib = _meta_lib(tmp_path, "mixed", "float32", "float64", PREDICT_F64)
    with pytest.raises(ModelError, match="differs from leaf output type"):
        CompiledModel("m", lib)


def test_float64_models_run_through_the_shim(tmp_path):
    """The f64 shim entry point, with output buffers typed from the leaf type."""
    lib = _meta_lib(tmp_path, "f64", "float64", "float64", PREDICT_F64)
    shim = build_shim(tmp_path / "shim" / "predict_batch.so")
    model = CompiledModel("m", lib, shim)
    assert model.batch_backend == "shim"
    assert (model.threshold_type, model.leaf_output_type) == ("float64", "float64")
    X = np.array([[0.0, 1.0], [math.nan, 2.0], [3.0, math.nan]])
    assert model.predict_batch(X).tolist() == [1.5, 1.5, 1.5]
    assert model.predict_row([None, 1.0]) == 1.5


def test_an_unloadable_shim_is_a_recorded_state_and_batches_loop(bundle_copy, tmp_path, warnings):
    _replace_shim(bundle_copy, _gcc(tmp_path, "empty", EMPTY_C))
    bundle = open_bundle(bundle_copy)
    model = load_model(bundle, "miner_power")
    assert model.backend == "compiled"
    assert model.batch_backend == "loop"
    assert isinstance(model, CompiledModel)
    assert model.shim_error is not None
    assert "predict_batch_f32" in model.shim_error
    assert warnings == ["batch_shim_unavailable_using_row_loop"]
    golden = bundle.model("miner_power").golden
    X = np.array([[math.nan if v is None else v for v in g.x] for g in golden])
    assert model.predict_batch(X) == pytest.approx([g.y for g in golden], abs=1e-4)


def test_the_shipped_shim_is_used_when_it_loads(bundle_dir):
    model = load_model(open_bundle(bundle_dir), "miner_power")
    assert isinstance(model, CompiledModel)
    assert (model.batch_backend, model.shim_error) == ("shim", None)


def test_self_check_runs_the_golden_rows_through_the_batch_path(bundle_copy, tmp_path):
    _replace_shim(bundle_copy, _gcc(tmp_path, "wrong", WRONG_SHIM_C))
    bundle = open_bundle(bundle_copy)
    with pytest.raises(BundleError, match="batch path"):
        load_model(bundle, "miner_power")
    # without the shim the same rows pass: the row path itself is right
    assert load_model(bundle, "miner_power", use_shim=False).batch_backend == "loop"
