"""Compiled tree models on the agent: the tl2cgen ``.so`` through ctypes, GTIL as fallback.

No xgboost, scikit-learn, pandas, tl2cgen or scipy is imported here; numpy is used only
for batches (and the golden rows' batch self-check); treelite is imported lazily and only
by the GTIL fallback. The ctypes rules come from ../shared/docs/ml-stack.md section 8/9: a
missing value is an Entry with every byte 0xFF, the output buffer is zeroed for every call,
the Entry buffer is fresh for every call (quantized models overwrite it), and the feature
count is checked here because the library does not. Every call allocates its own buffers,
so the models are thread-safe.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from agent.errors import BundleError, ModelError
from agent.inference.bundle import ModelEntry, VerifiedBundle, platform_key

if TYPE_CHECKING:
    import numpy as np

log = structlog.get_logger(__name__)

#: Largest |compiled - native| accepted on the bundle's golden rows (float32 summation order
#: differs; ml-stack.md measured 4.2e-5 on a 500-tree model).
GOLDEN_TOLERANCE = 1e-4
#: GTIL fallback threads: one, so it never competes with the miners' pollers.
GTIL_NTHREAD = 1

_fallback_logged: set[str] = set()


class TreeModel(Protocol):
    """What every loaded model offers."""

    name: str
    num_feature: int
    backend: str
    batch_backend: str

    def predict_row(self, row: Sequence[float | None]) -> float:
        """Predict one row (None or NaN = missing)."""

    def predict_batch(self, X: np.ndarray) -> np.ndarray:
        """Predict a 2-D float array (NaN = missing); returns a 1-D float64 array."""


def _ctype(name: str) -> tuple[Any, Any]:
    if name == "float32":
        return ctypes.c_float, ctypes.c_uint32
    if name == "float64":
        return ctypes.c_double, ctypes.c_uint64
    raise ModelError(f"unsupported tl2cgen type {name!r}")


class CompiledModel:
    """A tl2cgen shared library called one row at a time through ctypes.

    Batches go through the C shim when it loads (``batch_backend == "shim"``), else through
    a Python loop over rows (``"loop"``, with the reason in ``shim_error``).
    """

    backend = "compiled"

    def __init__(self, name: str, lib_path: Path, shim_path: Path | None = None) -> None:
        self.name = name
        try:
            lib = ctypes.CDLL(str(lib_path))
            lib.get_num_feature.restype = ctypes.c_int32
            lib.get_num_target.restype = ctypes.c_int32
            lib.get_threshold_type.restype = ctypes.c_char_p
            lib.get_leaf_output_type.restype = ctypes.c_char_p
            threshold = lib.get_threshold_type().decode()
            leaf = lib.get_leaf_output_type().decode()
            num_class = (ctypes.c_int32 * max(1, lib.get_num_target()))()
            lib.get_num_class(num_class)
            predict = lib.predict
        except (OSError, AttributeError) as err:
            raise ModelError(
                f"{name}: cannot load compiled library {lib_path.name}: {err}"
            ) from err
        if threshold != leaf:
            # Treelite 4 refuses to build such a model; a library that claims it anyway does
            # not match the Entry/output layout below (and the shim's f32/f64 pairs).
            raise ModelError(
                f"{name}: threshold type {threshold} differs from leaf output type {leaf}"
            )
        self._lib = lib
        self.num_feature = int(lib.get_num_feature())
        self.num_output = int(lib.get_num_target()) * max(int(x) for x in num_class)
        self.threshold_type, self.leaf_output_type = threshold, leaf
        fvalue, raw = _ctype(threshold)
        self._leaf, _ = _ctype(leaf)

        class Entry(ctypes.Union):
            _fields_ = (
                ("missing", ctypes.c_int),
                ("fvalue", fvalue),
                ("qvalue", ctypes.c_int),
                ("raw", raw),
            )

        self._raw_missing = raw(-1).value  # every byte 0xFF
        self._Row = Entry * self.num_feature
        self._Out = self._leaf * self.num_output
        self._predict = predict
        self._predict.argtypes = [ctypes.POINTER(Entry), ctypes.c_int, ctypes.POINTER(self._leaf)]
        self._predict.restype = None
        self._shim: Any = None
        #: How batches run: ``"shim"`` (C loop) or ``"loop"`` (Python loop over rows).
        self.batch_backend = "loop"
        #: Why the shim is not used (``None`` when it is, or when none was offered).
        self.shim_error: str | None = None
        if shim_path is not None:
            try:
                self._shim = _load_shim(shim_path, threshold)
            except ModelError as err:
                self.shim_error = str(err)
                log.warning("batch_shim_unavailable_using_row_loop", model=name, error=str(err))
            else:
                self.batch_backend = "shim"

    def predict_row(self, row: Sequence[float | None]) -> float:
        """Predict one row; ``None`` or NaN is a missing value."""
        if len(row) != self.num_feature:
            raise ModelError(f"{self.name}: expected {self.num_feature} features, got {len(row)}")
        data = self._Row()
        for i, value in enumerate(row):
            if value is None or value != value:
                data[i].raw = self._raw_missing
            else:
                data[i].fvalue = value
        out = self._Out()
        self._predict(data, 0, out)
        return float(out[0])

    def predict_batch(self, X: np.ndarray) -> np.ndarray:
        """Predict many rows: through the C shim when loaded, else a Python loop."""
        import numpy as np

        X = _as_matrix(X, self.num_feature, self.name)
        if self.batch_backend == "loop":
            return np.array([self.predict_row(r) for r in X.tolist()], dtype=np.float64)
        x_dtype = np.float32 if self.threshold_type == "float32" else np.float64
        out_dtype = np.float32 if self.leaf_output_type == "float32" else np.float64
        Xc = np.ascontiguousarray(X, dtype=x_dtype)
        out = np.zeros((len(Xc), self.num_output), dtype=out_dtype)
        fn = ctypes.cast(self._predict, ctypes.c_void_p)
        status = self._shim(
            fn, Xc.ctypes.data, len(Xc), self.num_feature, 0, out.ctypes.data, self.num_output
        )
        if status != 0:
            raise ModelError(f"{self.name}: batch shim failed with status {status}")
        return out[:, 0].astype(np.float64)


def _load_shim(path: Path, value_type: str) -> Any:
    """Load the batch shim's entry point for ``value_type``; ``ModelError`` if it cannot."""
    symbol = {"float32": "predict_batch_f32", "float64": "predict_batch_f64"}.get(value_type)
    if symbol is None:
        raise ModelError(f"batch shim has no entry point for {value_type!r}")
    try:
        fn = getattr(ctypes.CDLL(str(path)), symbol)
    except (OSError, AttributeError) as err:
        raise ModelError(f"cannot load batch shim {path.name}: {err}") from err
    fn.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int32,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int32,
    ]
    fn.restype = ctypes.c_int
    return fn


def _as_matrix(X: Any, num_feature: int, name: str) -> np.ndarray:
    import numpy as np

    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != num_feature:
        raise ModelError(f"{name}: expected a (n, {num_feature}) matrix, got shape {arr.shape}")
    return arr


class GTILModel:
    """Treelite's interpreter on the bundle checkpoint: slow, but needs no compiler or .so."""

    backend = "gtil"
    batch_backend = "gtil"

    def __init__(self, name: str, checkpoint: Path) -> None:
        import treelite  # lazy: only the fallback pays for treelite + scipy

        self.name = name
        try:
            self._model = treelite.Model.deserialize(str(checkpoint))
        except treelite.TreeliteError as err:
            raise ModelError(f"{name}: cannot read Treelite checkpoint: {err}") from err
        self._gtil = treelite.gtil
        self.num_feature = int(self._model.num_feature)

    def predict_row(self, row: Sequence[float | None]) -> float:
        """Predict one row; ``None`` or NaN is a missing value."""
        if len(row) != self.num_feature:
            raise ModelError(f"{self.name}: expected {self.num_feature} features, got {len(row)}")
        values = [math.nan if v is None else float(v) for v in row]
        import numpy as np

        return float(self.predict_batch(np.array([values], dtype=np.float64))[0])

    def predict_batch(self, X: np.ndarray) -> np.ndarray:
        """Predict many rows with GTIL (one thread)."""
        import numpy as np

        arr = np.ascontiguousarray(_as_matrix(X, self.num_feature, self.name), dtype=np.float32)
        out = self._gtil.predict(self._model, arr, nthread=GTIL_NTHREAD)
        return np.asarray(out, dtype=np.float64).reshape(len(arr), -1)[:, 0]


def self_check(model: TreeModel, entry: ModelEntry) -> float:
    """Predict the golden rows one by one and as a batch; ``BundleError`` on any mismatch.

    Both paths are checked because they run different code (the ctypes row call and the C
    batch shim). Returns the largest absolute difference seen.
    """
    import numpy as np

    worst = 0.0
    rows = [row.x for row in entry.golden]
    batch = (
        model.predict_batch(
            np.array([[math.nan if v is None else v for v in x] for x in rows], dtype=np.float64)
        )
        if rows
        else np.zeros(0)
    )
    for i, row in enumerate(entry.golden):
        for path, got in (("row", model.predict_row(row.x)), ("batch", float(batch[i]))):
            diff = abs(got - row.y)
            if not diff <= GOLDEN_TOLERANCE:  # also catches NaN
                raise BundleError(
                    f"{model.name} ({model.backend}, {path} path): golden row {i} predicted "
                    f"{got!r}, bundle expects {row.y!r}"
                )
            worst = max(worst, diff)
    return worst


def load_model(
    bundle: VerifiedBundle, name: str, *, use_shim: bool = True, allow_fallback: bool = True
) -> TreeModel:
    """Load model ``name`` from a verified bundle and self-check it against its golden rows.

    Tries the compiled library for this platform; if it is absent or cannot load, falls back
    to GTIL on the Treelite checkpoint (logged once per model) unless ``allow_fallback`` is
    False. The feature count of the loaded model must equal the manifest's.
    """
    entry = bundle.model(name)
    plat = platform_key()
    model: TreeModel
    try:
        if plat not in entry.libs:
            raise ModelError(f"{name}: no compiled library for {plat}")
        shim_rel = bundle.manifest.batch_shim.get(plat) if use_shim else None
        shim = bundle.path(shim_rel) if shim_rel else None
        model = CompiledModel(name, bundle.path(entry.libs[plat]), shim)
    except ModelError as err:
        if not allow_fallback:
            raise
        if name not in _fallback_logged:
            _fallback_logged.add(name)
            log.warning("compiled_model_unavailable_using_gtil", model=name, error=str(err))
        if "checkpoint" not in entry.files:
            raise BundleError(f"{name}: no compiled library and no checkpoint") from err
        model = GTILModel(name, bundle.path(entry.files["checkpoint"]))
    if model.num_feature != entry.num_feature:
        raise BundleError(
            f"{name}: library has {model.num_feature} features, manifest {entry.num_feature}"
        )
    self_check(model, entry)
    return model


def load_response_model(bundle_dir: Path | str) -> Any:
    """Verify a bundle and load its miner response models (``MinerResponseModel``)."""
    from agent.inference.miner import MinerResponseModel  # miner imports this module

    return MinerResponseModel.load(bundle_dir)
