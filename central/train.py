"""Hashprice models: nested walk-forward validation, tuning, feature selection, intervals.

Procedure for one horizon h (every step sees only rows before the data it is judged on):

1. **Outer walk-forward folds** over 2019-01-01 .. end: contiguous test blocks; a fold
   trains on rows whose target window ends before the test block starts (gap of h days).
   ``N_BURN_IN_FOLDS`` more folds over ``BURN_IN_START`` .. 2018-12-31 run the same way
   but are never scored: they only supply residuals for step 4.
2. **Inside each training window** the last ``VAL_FRACTION`` (after another h-day gap) is a
   validation slice used for early stopping, a small random hyper-parameter search and
   feature selection (permutation importance on the slice, then the best top-k subset).
3. The chosen configuration is refit on the whole window with the early-stopped number of
   rounds scaled to the window size, and predicts the test block.
4. **Intervals** are normalised split-conformal: residuals divided by trailing 30-day
   volatility x sqrt(h). A fold is calibrated only on *earlier folds' out-of-sample
   residuals* (burn-in folds included) whose target windows end before its test block
   starts (the same h-day rule as training rows, so the last rows of the previous fold,
   whose targets reach into this block, are dropped). The validation slice is never used
   for calibration: it chose the rounds, the configuration and the features, so its
   residuals are optimistic.
5. The shipped model repeats steps 2-3 on all rows; its interval quantiles come from all
   out-of-sample residuals (burn-in and scored folds).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import structlog
import xgboost as xgb

from central import metrics
from central.dataset import (
    HORIZONS,
    SCALE_FEATURES,
    SCALE_FLOOR,
    HashpriceFrame,
    interval_scale,
    make_frame,
)

log = structlog.get_logger(__name__)

#: Threads per XGBoost fit. One: these data sets are small (~3k rows), and on this shared
#: 2-core machine two OpenMP threads made a quick run 25x slower under load (2.9 s -> 74 s
#: measured with OMP_NUM_THREADS=2; the threads spin-wait for a busy core).
XGB_NTHREAD = 1
#: Upper bound on boosting rounds; early stopping normally ends far sooner.
MAX_ROUNDS = 600
#: Rounds without validation improvement before stopping.
EARLY_STOPPING_ROUNDS = 40
#: Share of each training window held out (at its end) as the validation slice.
VAL_FRACTION = 0.2
#: Smallest validation slice, in rows, so selection is not decided by a handful of days.
MIN_VAL_ROWS = 60
#: Outer folds (full / --quick).
N_FOLDS, N_FOLDS_QUICK = 8, 4
#: Random-search configurations per tuning (full / --quick); the first is always the default.
N_SEARCH, N_SEARCH_QUICK = 8, 3
#: First forecast day that is evaluated (2016-2018 rows only ever train).
EVAL_START = pd.Timestamp("2019-01-01")
#: Calibration burn-in: walk-forward folds over [BURN_IN_START, EVAL_START) are fitted and
#: predicted like scored folds, but only their residuals are kept, to calibrate the
#: intervals of the first scored folds. 18 months in two folds (~545 residuals): 2018 alone
#: (one bear year) skewed the h7 intervals low, 15.7 % of the 2019-2025 outcomes above p90
#: (nominal 10 %); with the second half of 2017 in, 11.1 % (full configuration, one run).
BURN_IN_START = pd.Timestamp("2017-07-01")
N_BURN_IN_FOLDS = 2
#: Sizes of the feature subsets tried during selection (plus "all").
TOP_K = (4, 8, 12)
#: A smaller subset wins when its validation MAE is within this factor of the best.
PARSIMONY_TOLERANCE = 1.005
#: Permutation-importance repeats on the validation slice.
PERMUTATION_REPEATS = 3
#: Nominal quantiles of the shipped interval (the centre is the model's point forecast).
QUANTILES = (0.1, 0.9)

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "reg:squarederror",
    "max_depth": 3,
    "eta": 0.05,
    "min_child_weight": 20,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
}
PARAM_GRID: dict[str, list[Any]] = {
    "objective": ["reg:squarederror", "reg:absoluteerror"],
    "max_depth": [2, 3, 4],
    "eta": [0.03, 0.1],
    "min_child_weight": [5, 20, 50],
    "subsample": [0.7, 1.0],
    "colsample_bytree": [0.6, 1.0],
    "lambda": [1.0, 10.0],
}


def xgb_params(params: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Full XGBoost parameter dict with the shared fixed settings."""
    return {
        **params,
        "tree_method": "hist",
        "nthread": XGB_NTHREAD,
        "seed": seed,
        "eval_metric": "mae",
        "verbosity": 0,
    }


def fit_early_stopped(
    params: dict[str, Any],
    X_fit: pd.DataFrame,
    y_fit: pd.Series,
    X_val: pd.DataFrame,
    y_val: pd.Series,
    max_rounds: int = MAX_ROUNDS,
) -> tuple[xgb.Booster, int, float]:
    """Fit with early stopping on the validation slice; return booster, rounds, val MAE."""
    dfit = xgb.DMatrix(X_fit, label=y_fit)
    dval = xgb.DMatrix(X_val, label=y_val)
    booster = xgb.train(
        xgb_params(params),
        dfit,
        max_rounds,
        evals=[(dval, "val")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose_eval=False,
    )
    rounds = booster.best_iteration + 1
    pred = booster.predict(dval, iteration_range=(0, rounds))
    return booster, rounds, float(np.mean(np.abs(pred - y_val.to_numpy())))


def fit_rounds(params: dict[str, Any], X: pd.DataFrame, y: pd.Series, rounds: int) -> xgb.Booster:
    """Fit a fixed number of rounds on all of ``X`` (no validation)."""
    return xgb.train(xgb_params(params), xgb.DMatrix(X, label=y), rounds, verbose_eval=False)


@dataclass
class TuneResult:
    """What tuning inside one training window chose."""

    params: dict[str, Any]
    features: list[str]
    rounds: int
    val_mae: float
    permutation_importance: dict[str, float]
    search: list[dict[str, Any]] = field(default_factory=list)


def split_window(dates: pd.DatetimeIndex, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (fit, val) inside a training window with an h-day gap between them."""
    n_val = max(MIN_VAL_ROWS, int(len(dates) * VAL_FRACTION))
    val_start = dates[-n_val]
    val = dates >= val_start
    fit = dates + pd.Timedelta(days=h) < val_start
    if fit.sum() < 2 * MIN_VAL_ROWS:
        raise ValueError(f"training window too small ({len(dates)} rows) for h={h}")
    return np.asarray(fit), np.asarray(val)


def _sample_configs(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    configs = [dict(DEFAULT_PARAMS)]
    seen = {tuple(sorted(DEFAULT_PARAMS.items()))}
    while len(configs) < n:
        cand = {k: v[rng.integers(len(v))] for k, v in PARAM_GRID.items()}
        key = tuple(sorted(cand.items()))
        if key not in seen:
            seen.add(key)
            configs.append(cand)
    return configs


def _permutation_importance(
    booster: xgb.Booster,
    rounds: int,
    X_val: pd.DataFrame,
    y_val: pd.Series,
    rng: np.random.Generator,
) -> dict[str, float]:
    base = booster.predict(xgb.DMatrix(X_val), iteration_range=(0, rounds))
    base_mae = float(np.mean(np.abs(base - y_val.to_numpy())))
    out: dict[str, float] = {}
    for col in X_val.columns:
        deltas = []
        for _ in range(PERMUTATION_REPEATS):
            shuffled = X_val.copy()
            shuffled[col] = rng.permutation(shuffled[col].to_numpy())
            pred = booster.predict(xgb.DMatrix(shuffled), iteration_range=(0, rounds))
            deltas.append(float(np.mean(np.abs(pred - y_val.to_numpy()))) - base_mae)
        out[col] = float(np.mean(deltas))
    return out


def tune(
    X: pd.DataFrame,
    y: pd.Series,
    h: int,
    n_search: int,
    seed: int = 0,
    max_rounds: int = MAX_ROUNDS,
) -> TuneResult:
    """Random search, then permutation-importance feature selection, on one window."""
    rng = np.random.default_rng(seed)
    fit, val = split_window(pd.DatetimeIndex(X.index), h)
    Xf, yf, Xv, yv = X[fit], y[fit], X[val], y[val]
    search = []
    best: tuple[float, dict[str, Any], xgb.Booster, int] | None = None
    for params in _sample_configs(n_search, rng):
        booster, rounds, score = fit_early_stopped(params, Xf, yf, Xv, yv, max_rounds)
        search.append({**params, "rounds": rounds, "val_mae": score})
        if best is None or score < best[0]:
            best = (score, params, booster, rounds)
    assert best is not None
    score_all, params, booster, rounds = best
    importance = _permutation_importance(booster, rounds, Xv, yv, rng)
    ranked = sorted(importance, key=lambda c: importance[c], reverse=True)
    candidates: list[tuple[float, list[str], int, xgb.Booster]] = [
        (score_all, list(X.columns), rounds, booster)
    ]
    for k in TOP_K:
        if k < len(ranked):
            cols = [c for c in X.columns if c in ranked[:k]]  # keep schema order
            b, r, s = fit_early_stopped(params, Xf[cols], yf, Xv[cols], yv, max_rounds)
            candidates.append((s, cols, r, b))
    best_score = min(c[0] for c in candidates)
    chosen = min(
        (c for c in candidates if c[0] <= best_score * PARSIMONY_TOLERANCE), key=lambda c: len(c[1])
    )
    s, cols, r, _b = chosen
    return TuneResult(
        params=params,
        features=cols,
        rounds=r,
        val_mae=s,
        permutation_importance=importance,
        search=search,
    )


def refit(tuned: TuneResult, X: pd.DataFrame, y: pd.Series, h: int) -> xgb.Booster:
    """Refit the tuned configuration on the whole window, rounds scaled to its size."""
    fit, _ = split_window(pd.DatetimeIndex(X.index), h)
    rounds = max(1, math.ceil(tuned.rounds * len(X) / int(fit.sum())))
    return fit_rounds(tuned.params, X[tuned.features], y, rounds)


def outer_folds(
    dates: pd.DatetimeIndex,
    h: int,
    n_folds: int,
    start: pd.Timestamp = EVAL_START,
    stop: pd.Timestamp | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Walk-forward (train, test) masks; test blocks tile the rows in [start, stop)."""
    inside = dates >= start
    if stop is not None:
        inside &= dates < stop
    blocks = np.array_split(np.flatnonzero(inside), n_folds)
    folds = []
    for block in blocks:
        if len(block) == 0:
            raise ValueError(f"no rows for a fold between {start.date()} and {stop}")
        test = np.zeros(len(dates), bool)
        test[block] = True
        train = np.asarray(dates + pd.Timedelta(days=h) < dates[block[0]])
        folds.append((train, test))
    return folds


def calibration_residuals(resid: pd.Series, h: int, test_start: pd.Timestamp) -> np.ndarray:
    """Residuals whose target windows end before ``test_start`` (the training-row rule)."""
    index = pd.DatetimeIndex(resid.index)
    return resid.to_numpy()[np.asarray(index + pd.Timedelta(days=h) < test_start)]


def conformal_quantiles(normalised: np.ndarray) -> dict[str, float]:
    """Empirical quantiles of normalised residuals with the split-conformal n+1 correction."""
    r = np.sort(np.asarray(normalised, dtype=float))
    n = len(r)
    if n < 20:
        raise ValueError(f"too few calibration residuals ({n}) for intervals")
    out = {}
    for q in QUANTILES:
        level = min(1.0, max(0.0, (math.ceil((n + 1) * q) - 1) / (n - 1)))
        out[f"q{round(q * 100)}"] = float(np.quantile(r, level))
    return out


def diebold_mariano(loss_model: np.ndarray, loss_base: np.ndarray, h: int) -> dict[str, float]:
    """DM test of equal accuracy (HAC variance, lag h-1); p < 0.05 means a real difference."""
    d = np.asarray(loss_model, float) - np.asarray(loss_base, float)
    n = len(d)
    dc = d - d.mean()
    var = float(np.dot(dc, dc) / n)
    for lag in range(1, h):
        var += 2 * (1 - lag / h) * float(np.dot(dc[lag:], dc[:-lag]) / n)
    if var <= 0:
        return {"dm_stat": float("nan"), "p_value": float("nan")}
    stat = float(d.mean() / math.sqrt(var / n))
    p = math.erfc(abs(stat) / math.sqrt(2))
    return {"dm_stat": stat, "p_value": p}


@dataclass
class HashpriceResult:
    """A trained hashprice model and its honest evaluation."""

    horizon: int
    booster: xgb.Booster
    features: list[str]
    params: dict[str, Any]
    rounds: int
    intervals: dict[str, Any]
    metrics: dict[str, Any]
    folds: list[dict[str, Any]]
    oof: pd.DataFrame
    selection: dict[str, Any]
    train_rows: int
    seconds: float
    #: Calibration-only folds before the scored period (see ``N_BURN_IN_FOLDS``).
    burn_in: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Model name in the bundle."""
        return f"hashprice_h{self.horizon}"


def _level_metrics(oof: pd.DataFrame) -> dict[str, Any]:
    y = oof["actual"].to_numpy()
    today = oof["today"].to_numpy()
    model = metrics.point_metrics(y, oof["pred"].to_numpy(), today)
    persist = metrics.point_metrics(y, today, today)
    ma = oof.dropna(subset=["ma7"])
    ma7 = metrics.point_metrics(
        ma["actual"].to_numpy(), ma["ma7"].to_numpy(), ma["today"].to_numpy()
    )
    model_on_ma = metrics.point_metrics(
        ma["actual"].to_numpy(), ma["pred"].to_numpy(), ma["today"].to_numpy()
    )
    h = int(oof.attrs.get("horizon", 1))
    dm = diebold_mariano(np.abs(y - oof["pred"].to_numpy()), np.abs(y - today), h)
    sched = metrics.point_metrics(y, oof["schedule"].to_numpy(), today)
    dm_sched = diebold_mariano(
        np.abs(y - oof["pred"].to_numpy()), np.abs(y - oof["schedule"].to_numpy()), h
    )
    return {
        "rows": len(oof),
        "model": model,
        "persistence": persist,
        "ma7": ma7,
        "ma7_rows": len(ma),
        "schedule_only": sched,
        "skill_mae_schedule_only_vs_persistence": metrics.skill(sched["mae"], persist["mae"]),
        "skill_mae_vs_persistence": metrics.skill(model["mae"], persist["mae"]),
        "skill_rmse_vs_persistence": metrics.skill(model["rmse"], persist["rmse"]),
        "skill_mae_vs_ma7": metrics.skill(model_on_ma["mae"], ma7["mae"]),
        "skill_rmse_vs_ma7": metrics.skill(model_on_ma["rmse"], ma7["rmse"]),
        "dm_vs_persistence_abs_error": dm,
        "dm_vs_schedule_only_abs_error": dm_sched,
        "coverage_p10_p90": metrics.coverage(y, oof["p10"].to_numpy(), oof["p90"].to_numpy()),
        "share_below_p10": metrics.below(y, oof["p10"].to_numpy()),
        "share_below_p50": metrics.below(y, oof["p50"].to_numpy()),
        "share_below_p90": metrics.below(y, oof["p90"].to_numpy()),
    }


def _scored_part(
    frame: HashpriceFrame, test: np.ndarray, log_pred: pd.Series, q: dict[str, float]
) -> pd.DataFrame:
    """One fold's out-of-sample rows in hashprice units: forecast, interval and baselines."""
    today = frame.hashprice_today[test].to_numpy()
    part = pd.DataFrame(
        {
            "log_pred": log_pred.to_numpy(),
            "log_actual": frame.y[test].to_numpy(),
            "scale": interval_scale(frame.X[test], frame.horizon),
            "offset": frame.offset[test].to_numpy(),
        },
        index=frame.X.index[test],
    )
    part["today"] = today
    part["actual"] = today * np.exp(part["log_actual"])
    part["pred"] = today * np.exp(part["log_pred"])
    part["p50"] = part["pred"]  # the served point forecast; residual median ~ 0 (reported)
    for name in ("q10", "q90"):
        part[f"p{name[1:]}"] = today * np.exp(part["log_pred"] + q[name] * part["scale"])
    part["ma7"] = today * np.exp(frame.ma7[test].to_numpy())
    part["schedule"] = today * np.exp(part["offset"])
    return part


@dataclass
class WalkForward:
    """Out-of-sample forecasts of the scored folds and every fold's residuals."""

    oof: pd.DataFrame
    folds: list[dict[str, Any]]
    #: Normalised out-of-sample residuals of every fold (burn-in included), by issue day.
    residuals: pd.Series
    burn_in: list[dict[str, Any]]


def walk_forward(
    frame: HashpriceFrame,
    n_folds: int,
    n_search: int,
    seed: int = 0,
    *,
    burn_in_folds: int = N_BURN_IN_FOLDS,
    max_rounds: int = MAX_ROUNDS,
) -> WalkForward:
    """Nested walk-forward evaluation of one horizon (steps 1-4 of the module docstring)."""
    h = frame.horizon
    X, offset, dates = frame.X, frame.offset, frame.dates
    y = frame.y - offset  # the trees learn what the schedule does not explain
    scale = pd.Series(interval_scale(X, h), index=X.index)
    plan = [(f, False) for f in outer_folds(dates, h, burn_in_folds, BURN_IN_START, EVAL_START)]
    plan += [(f, True) for f in outer_folds(dates, h, n_folds)]
    resid = pd.Series(dtype=float)
    oof_parts: list[pd.DataFrame] = []
    fold_rows: list[dict[str, Any]] = []
    burn_in: list[dict[str, Any]] = []
    for k, ((train, test), scored) in enumerate(plan):
        tuned = tune(X[train], y[train], h, n_search, seed + k, max_rounds)
        booster = refit(tuned, X[train], y[train], h)
        log_pred = booster.predict(xgb.DMatrix(X.loc[test, tuned.features])) + offset[test]
        log_actual = frame.y[test]
        s = scale[test]
        fold_resid = (log_actual - log_pred) / s
        # calibrate before this fold's residuals join the pool (they are its own test block)
        cal = calibration_residuals(resid, h, dates[test][0])
        resid = pd.concat([resid, fold_resid]) if len(resid) else fold_resid
        if not scored:
            burn_in.append(
                {
                    "test_start": str(dates[test][0].date()),
                    "test_end": str(dates[test][-1].date()),
                    "train_rows": int(train.sum()),
                    "residuals": int(test.sum()),
                }
            )
            continue
        i = len(fold_rows)
        q = conformal_quantiles(cal)
        part = _scored_part(frame, test, log_pred, q)
        part["fold"] = i
        oof_parts.append(part)
        fm = metrics.point_metrics(part["actual"], part["pred"], part["today"])
        fp = metrics.point_metrics(part["actual"], part["today"], part["today"])
        fold_rows.append(
            {
                "fold": i,
                "test_start": str(part.index[0].date()),
                "test_end": str(part.index[-1].date()),
                "train_rows": int(train.sum()),
                "test_rows": int(test.sum()),
                "features": tuned.features,
                "params": tuned.params,
                "rounds": tuned.rounds,
                "val_mae_log": tuned.val_mae,
                "calibration_rows": len(cal),
                "quantiles": q,
                "mae": fm["mae"],
                "mae_persistence": fp["mae"],
                "skill_mae_vs_persistence": metrics.skill(fm["mae"], fp["mae"]),
                "directional_accuracy": fm["directional_accuracy"],
                "coverage_p10_p90": metrics.coverage(part["actual"], part["p10"], part["p90"]),
            }
        )
        log.info(
            "hashprice_fold",
            horizon=h,
            fold=i,
            test_rows=int(test.sum()),
            features=len(tuned.features),
            calibration_rows=len(cal),
            skill=round(fold_rows[-1]["skill_mae_vs_persistence"], 4),
        )
    oof = pd.concat(oof_parts)
    oof.attrs["horizon"] = h
    return WalkForward(oof=oof, folds=fold_rows, residuals=resid, burn_in=burn_in)


def train_hashprice(
    btc: pd.DataFrame, h: int, quick: bool = False, seed: int = 0
) -> HashpriceResult:
    """Evaluate walk-forward, then fit the shipped model for horizon ``h``."""
    t0 = time.perf_counter()
    frame: HashpriceFrame = make_frame(btc, h)
    n_search = N_SEARCH_QUICK if quick else N_SEARCH
    wf = walk_forward(frame, N_FOLDS_QUICK if quick else N_FOLDS, n_search, seed)
    cv = _level_metrics(wf.oof)
    cv["shipped_interval_calibration_rows"] = len(wf.residuals)

    X, y = frame.X, frame.y - frame.offset
    final = tune(X, y, h, n_search, seed + 100)
    booster = refit(final, X, y, h)
    intervals = conformal_quantiles(wf.residuals.to_numpy())
    counts: dict[str, int] = {}
    for row in wf.folds:
        for f in row["features"]:
            counts[f] = counts.get(f, 0) + 1
    selection = {
        "candidates": list(X.columns),
        "selected": final.features,
        "permutation_importance": final.permutation_importance,
        "search": final.search,
        "times_selected_in_folds": counts,
    }
    seconds = time.perf_counter() - t0
    log.info(
        "hashprice_trained",
        horizon=h,
        seconds=round(seconds, 1),
        skill=round(cv["skill_mae_vs_persistence"], 4),
        features=final.features,
    )
    return HashpriceResult(
        horizon=h,
        booster=booster,
        features=final.features,
        params=final.params,
        rounds=booster.num_boosted_rounds(),
        intervals={
            **intervals,
            "scale_features": list(SCALE_FEATURES),
            "scale_floor": SCALE_FLOOR,
            "scale_sqrt_h": math.sqrt(h),
        },
        metrics=cv,
        folds=wf.folds,
        oof=wf.oof,
        selection=selection,
        train_rows=len(X),
        seconds=seconds,
        burn_in=wf.burn_in,
    )


def train_all_hashprice(btc: pd.DataFrame, quick: bool = False) -> list[HashpriceResult]:
    """Train every horizon in ``HORIZONS``."""
    return [train_hashprice(btc, h, quick=quick) for h in HORIZONS]
