"""Compile XGBoost models with Treelite + tl2cgen and write a verified bundle directory.

Per model the bundle holds the native XGBoost UBJ (source of truth), the Treelite
checkpoint (GTIL fallback), the tl2cgen shared library for this platform (quantized,
``-O1``: ml-stack.md section 5) and a zip of the generated C sources with a Makefile so an
agent on another CPU architecture can build its own library. A small C batch shim
(``agent/inference/predict_batch.c``) is compiled once per bundle. Every compiled model is
checked against XGBoost on ``VERIFY_ROWS`` random rows through the agent's own ctypes
loader before the manifest is written; a mismatch raises.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog
import tl2cgen
import treelite
import xgboost as xgb

from agent.inference.bundle import (
    BUNDLE_FORMAT,
    MANIFEST_NAME,
    bundle_schema_hash,
    feature_schema_hash,
    open_bundle,
    platform_key,
    sha256_file,
)
from agent.inference.model import CompiledModel

log = structlog.get_logger(__name__)

#: Rows every compiled model is checked on against XGBoost.
VERIFY_ROWS = 10_000
#: Of those, rows also pushed through the single-row ctypes path (it is ~10 us per row).
VERIFY_ROW_PATH_ROWS = 1_000
#: Largest accepted |compiled - XGBoost| (float32 models; ml-stack.md section 9.12).
VERIFY_TOLERANCE = 1e-4
#: Golden reference rows shipped per model for the agent's self-check after loading.
GOLDEN_ROWS = 8
#: Share of values set missing in the random verification rows.
VERIFY_MISSING_SHARE = 0.05
#: tl2cgen translation units and gcc jobs: 2 cores on this machine, shared.
PARALLEL_COMP = 4
COMPILE_JOBS = 2
#: Compile parameters; -O1 builds ~2x faster than -O3 and runs as fast (ml-stack.md section 5).
#: ``quantize`` stays 0: tl2cgen 1.0.0 writes the quantization threshold table with 8
#: significant digits, so a float32 threshold can come back one ulp high and an input exactly
#: equal to it takes the wrong branch (measured: 2.8e-4 error on a hashprice model, where
#: day-of-week and epoch fractions hit thresholds exactly). The unquantized code prints 11
#: digits and is exact; single-row latency was the same (6.1 vs 6.2 us).
#: tests/ml/test_compile.py pins this.
TL2CGEN_PARAMS: dict[str, Any] = {"parallel_comp": PARALLEL_COMP, "quantize": 0}
GCC_OPTIONS = ["-O1"]
#: Fixed zip timestamp so identical sources give an identical archive digest.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
SHIM_SOURCE = Path(__file__).resolve().parent.parent / "agent" / "inference" / "predict_batch.c"


class CompileError(RuntimeError):
    """A model failed to compile or its compiled output disagrees with XGBoost."""


@dataclass
class ModelSpec:
    """One trained model to ship and what the agent needs to use it."""

    name: str
    kind: str
    booster: xgb.Booster
    features: list[str]
    target: str
    #: Feature matrix the model was trained on (drives the random verification rows).
    reference: np.ndarray
    unit: str = ""
    offset_features: list[str] = field(default_factory=list)
    output_transform: dict[str, str | None] | None = None
    horizon_days: int | None = None
    intervals: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def split_thresholds(booster: xgb.Booster) -> dict[int, np.ndarray]:
    """Every split threshold of ``booster`` per feature index (float32 values as stored)."""
    model = json.loads(booster.save_raw("json"))
    out: dict[int, set[float]] = {}
    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        left = tree["left_children"]
        for node, (feat, cond) in enumerate(
            zip(tree["split_indices"], tree["split_conditions"], strict=True)
        ):
            if left[node] != -1:
                out.setdefault(int(feat), set()).add(float(np.float32(cond)))
    return {k: np.array(sorted(v)) for k, v in out.items()}


def random_rows(
    reference: np.ndarray, n: int, seed: int = 0, thresholds: dict[int, np.ndarray] | None = None
) -> np.ndarray:
    """Rows that exercise the trees: resampled, jittered, wide uniform and on-threshold values.

    Given ``thresholds``, a quarter of the rows have every used feature exactly on a split
    threshold (the case the quantized tl2cgen code gets wrong).
    """
    rng = np.random.default_rng(seed)
    ref = np.asarray(reference, dtype=np.float64)
    lo, hi = np.nanmin(ref, axis=0), np.nanmax(ref, axis=0)
    lo, hi = np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=1.0)
    span = np.where(hi > lo, hi - lo, 1.0)
    quarter = n // 4
    picked = ref[rng.integers(len(ref), size=n - 3 * quarter)]
    jitter = ref[rng.integers(len(ref), size=quarter)]
    jitter = jitter + rng.normal(0, 0.05, jitter.shape) * span
    uniform = rng.uniform(lo - 0.1 * span, hi + 0.1 * span, (quarter, ref.shape[1]))
    on_split = ref[rng.integers(len(ref), size=quarter)].copy()
    for feat, values in (thresholds or {}).items():
        on_split[:, feat] = values[rng.integers(len(values), size=quarter)]
    rows = np.vstack([picked, jitter, uniform, on_split])
    rows[rng.random(rows.shape) < VERIFY_MISSING_SHARE] = np.nan
    return rows[rng.permutation(len(rows))]


def _gcc_version() -> str:
    try:
        out = subprocess.run(
            ["gcc", "-dumpfullversion"],  # noqa: S607 - the toolchain tl2cgen uses
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise CompileError(f"gcc not available: {err}") from err
    return out.stdout.strip()


def build_shim(out: Path) -> Path:
    """Compile the batch shim for this platform into ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", *GCC_OPTIONS, "-shared", "-fPIC", "-o", str(out), str(SHIM_SOURCE)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)  # noqa: S603
    except subprocess.CalledProcessError as err:
        raise CompileError(f"batch shim failed to compile: {err.stderr}") from err
    return out


def _zip_dir(src: Path, dest: Path) -> None:
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(path.relative_to(src)), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a tl2cgen call with its print() chatter captured into a debug log line."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        result = fn(*args, **kwargs)
    if buf.getvalue().strip():
        log.debug("tl2cgen_output", text=buf.getvalue().strip()[-500:])
    return result


def compile_one(spec: ModelSpec, model_dir: Path, shim: Path | None) -> dict[str, Any]:
    """Write one model's artifacts into ``model_dir`` and verify the compiled library."""
    model_dir.mkdir(parents=True, exist_ok=True)
    if spec.booster.num_features() != len(spec.features):
        raise CompileError(
            f"{spec.name}: booster has {spec.booster.num_features()} features, "
            f"spec lists {len(spec.features)}"
        )
    native = model_dir / "model.ubj"
    spec.booster.save_model(str(native))
    tl_model = treelite.frontend.load_xgboost_model(native, format_choice="ubjson")
    checkpoint = model_dir / "model.tl"
    tl_model.serialize(str(checkpoint))
    lib = model_dir / f"{spec.name}.{platform_key()}.so"
    _quiet(
        tl2cgen.export_lib,
        tl_model,
        toolchain="gcc",
        libpath=str(lib),
        params=dict(TL2CGEN_PARAMS),
        nthread=COMPILE_JOBS,
        options=list(GCC_OPTIONS),
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / spec.name
        _quiet(tl2cgen.generate_c_code, tl_model, dirpath=str(src), params=dict(TL2CGEN_PARAMS))
        tl2cgen.generate_makefile(str(src), toolchain="gcc", options=list(GCC_OPTIONS))
        sources = model_dir / "sources.zip"
        _zip_dir(src, sources)

    rows = random_rows(spec.reference, VERIFY_ROWS, thresholds=split_thresholds(spec.booster))
    expected = spec.booster.inplace_predict(rows).astype(np.float64)
    compiled = CompiledModel(spec.name, lib, shim)
    got = compiled.predict_batch(rows)
    batch_diff = float(np.max(np.abs(got - expected)))
    row_idx = np.arange(VERIFY_ROW_PATH_ROWS)
    row_got = np.array([compiled.predict_row(r) for r in rows[row_idx].tolist()])
    row_diff = float(np.max(np.abs(row_got - expected[row_idx])))
    if not max(batch_diff, row_diff) <= VERIFY_TOLERANCE:
        raise CompileError(
            f"{spec.name}: compiled differs from XGBoost by "
            f"{max(batch_diff, row_diff):.3g} (> {VERIFY_TOLERANCE})"
        )
    golden_idx = _golden_indices(rows)
    golden = [
        {"x": [None if np.isnan(v) else float(v) for v in rows[i]], "y": float(expected[i])}
        for i in golden_idx
    ]
    log.info(
        "model_compiled",
        model=spec.name,
        trees=spec.booster.num_boosted_rounds(),
        max_abs_diff=max(batch_diff, row_diff),
        lib_bytes=lib.stat().st_size,
    )
    return {
        "lib": lib,
        "native": native,
        "checkpoint": checkpoint,
        "sources": model_dir / "sources.zip",
        "threshold_type": compiled.threshold_type,
        "leaf_output_type": compiled.leaf_output_type,
        "golden": golden,
        "verification": {
            "rows": VERIFY_ROWS,
            "max_abs_diff": batch_diff,
            "row_path_rows": VERIFY_ROW_PATH_ROWS,
            "row_path_max_abs_diff": row_diff,
            "tolerance": VERIFY_TOLERANCE,
            "reference": "xgboost inplace_predict",
        },
    }


def _golden_indices(rows: np.ndarray) -> list[int]:
    """Pick a few complete rows and a few with missing values."""
    has_nan = np.isnan(rows).any(axis=1)
    full = np.flatnonzero(~has_nan)[: GOLDEN_ROWS - GOLDEN_ROWS // 4]
    gaps = np.flatnonzero(has_nan)[: GOLDEN_ROWS // 4]
    return [int(i) for i in np.concatenate([full, gaps])]


def jsonable(value: Any) -> Any:
    """Metrics to strict JSON: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def write_bundle(
    specs: list[ModelSpec],
    out: Path,
    *,
    channel: str = "dev",
    version: int = 1,
    hardware_profiles: list[str] | None = None,
    extra_toolchain: dict[str, Any] | None = None,
) -> Path:
    """Compile ``specs`` into a new bundle directory ``out`` and return it (verified)."""
    if out.exists() and any(out.iterdir()):
        raise CompileError(f"bundle directory {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC).replace(microsecond=0)
    plat = platform_key()
    shim = build_shim(out / "lib" / f"predict_batch.{plat}.so")
    shutil.copyfile(SHIM_SOURCE, out / "lib" / "predict_batch.c")
    models: dict[str, Any] = {}
    for spec in specs:
        art = compile_one(spec, out / "models" / spec.name, shim)
        rel = {k: str(art[k].relative_to(out)) for k in ("native", "checkpoint", "sources")}
        models[spec.name] = {
            "kind": spec.kind,
            "target": spec.target,
            "unit": spec.unit,
            "features": list(spec.features),
            "feature_schema_hash": feature_schema_hash(spec.features),
            "num_feature": len(spec.features),
            "threshold_type": art["threshold_type"],
            "leaf_output_type": art["leaf_output_type"],
            "files": rel,
            "libs": {plat: str(art["lib"].relative_to(out))},
            "offset_features": list(spec.offset_features),
            "output_transform": spec.output_transform,
            "horizon_days": spec.horizon_days,
            "intervals": spec.intervals,
            "metrics": jsonable(spec.metrics),
            "golden": art["golden"],
            "verification": art["verification"],
        }
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        files[str(path.relative_to(out))] = {
            "sha256": sha256_file(path),
            "length": path.stat().st_size,
        }
    schema = bundle_schema_hash({k: v["features"] for k, v in models.items()})
    manifest = {
        "format": BUNDLE_FORMAT,
        "bundle_id": f"hp-{created.strftime('%Y%m%dT%H%M%SZ')}-{schema[:8]}",
        "version": version,
        "channel": channel,
        "created": created.isoformat(),
        "expires": None,
        "min_agent_version": "0.1.0",
        "hardware_profiles": sorted(hardware_profiles or []),
        "feature_schema_hash": schema,
        "toolchain": {
            "xgboost": xgb.__version__,
            "treelite": treelite.__version__,
            "tl2cgen": tl2cgen.__version__,
            "gcc": _gcc_version(),
            "platform": plat,
            "tl2cgen_params": TL2CGEN_PARAMS,
            "gcc_options": GCC_OPTIONS,
            **(extra_toolchain or {}),
        },
        "models": models,
        "batch_shim": {plat: str(shim.relative_to(out)), "source": "lib/predict_batch.c"},
        "files": files,
    }
    (out / MANIFEST_NAME).write_text(
        json.dumps(manifest, indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    open_bundle(out)  # the bundle we just wrote must pass the agent's own checks
    log.info("bundle_written", path=str(out), bundle_id=manifest["bundle_id"], models=len(models))
    return out
