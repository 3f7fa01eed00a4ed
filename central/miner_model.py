"""Miner response models: hashrate, wall power and chip temperature from fleet telemetry.

Targets are scale-free so one model serves every hardware profile: hashrate / rated TH/s,
power / rated W, chip temperature - ambient (``agent.inference.miner.TARGETS`` maps them
back). Evaluation is on held-out **units** (GroupKFold by unit) - the honest number for a
prior that meets a unit it has never seen - next to plain row-wise KFold (optimistic: rows of
one unit land on both sides) and leave-one-hardware-model-out (a new model line). Each
fold tunes on an inner group split of its own training units with early stopping.

Every fit uses **health dropout**: ``HEALTH_DROPOUT`` of the training rows get their whole
``health_*`` block set missing, because the agent serves units whose health is unknown (a
unit polled for less than the health window, a fresh agent). The held-out units are scored
twice, with their health as computed and with it unknown, and compared with a model that
never sees health (the most a "health unknown" prediction can hope for).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import structlog
import xgboost as xgb
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, KFold, LeaveOneGroupOut

from agent.inference.miner import HEALTH_FEATURES, MINER_FEATURES, TARGETS
from central.train import _sample_configs, fit_early_stopped, fit_rounds

log = structlog.get_logger(__name__)

#: Outer folds for unit-held-out and row-held-out evaluation.
N_FOLDS = 5
#: Search configurations per tuning (full / --quick; the first is the default).
N_SEARCH, N_SEARCH_QUICK = 4, 2
#: Share of training units held out for early stopping and the search.
INNER_VAL_UNITS = 0.2
#: Share of training rows (drawn per fit) whose health block is set missing, so the trees
#: learn a prediction for "health unknown" from the same units' settings and environment.
#: Engineering choice: a quarter keeps 3 of 4 rows for learning what health does; the
#: report shows both held-out-unit scores (health known / unknown).
HEALTH_DROPOUT = 0.25


@dataclass
class MinerResult:
    """One trained response model and its evaluation."""

    target: str
    name: str
    booster: xgb.Booster
    features: list[str]
    transform: dict[str, str | None]
    params: dict[str, Any]
    metrics: dict[str, Any]
    oof: pd.DataFrame
    seconds: float


def transformed_target(frame: pd.DataFrame, target: str) -> pd.Series:
    """Return the scale-free training target: (y - x[offset]) / x[scale]."""
    _name, scale, offset = TARGETS[target]
    y = frame[target] - (frame[offset] if offset else 0.0)
    return y / frame[scale]


def inverse(pred: np.ndarray, frame: pd.DataFrame, target: str) -> np.ndarray:
    """Map scale-free predictions back to the target's unit."""
    _name, scale, offset = TARGETS[target]
    out = pred * frame[scale].to_numpy(dtype=float)
    return out + frame[offset].to_numpy(dtype=float) if offset else out


def health_dropout(X: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Return a copy of ``X`` with the health block of ``round(fraction * rows)`` rows missing."""
    out = X.copy()
    rows = np.random.default_rng(seed).permutation(len(X))[: round(fraction * len(X))]
    cols = [out.columns.get_loc(c) for c in HEALTH_FEATURES]
    out.iloc[np.sort(rows), cols] = np.nan
    return out


def health_unknown(X: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``X`` with every health input missing (a unit with no history)."""
    out = X.copy()
    out.loc[:, list(HEALTH_FEATURES)] = np.nan
    return out


def _tune_fit(
    X: pd.DataFrame, y: pd.Series, groups: pd.Series, n_search: int, seed: int
) -> tuple[xgb.Booster, dict[str, Any]]:
    """Search on an inner group split with early stopping, then refit on all rows given."""
    inner = GroupShuffleSplit(n_splits=1, test_size=INNER_VAL_UNITS, random_state=seed)
    fit_idx, val_idx = next(inner.split(X, y, groups))
    best: tuple[float, dict[str, Any], int] | None = None
    for params in _sample_configs(n_search, np.random.default_rng(seed)):
        _b, rounds, score = fit_early_stopped(
            params, X.iloc[fit_idx], y.iloc[fit_idx], X.iloc[val_idx], y.iloc[val_idx]
        )
        if best is None or score < best[0]:
            best = (score, params, rounds)
    assert best is not None
    _score, params, rounds = best
    rounds = max(1, math.ceil(rounds * len(X) / len(fit_idx)))
    return fit_rounds(params, X, y, rounds), {**params, "rounds": rounds}


def _metrics(y: np.ndarray, pred: np.ndarray, target: str) -> dict[str, float]:
    err = pred - y
    out = {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": float(1 - np.sum(err**2) / np.sum((y - y.mean()) ** 2)),
    }
    if target != "chip_temp_c":  # a percentage of °C means nothing
        on = y > 0.05 * np.max(y)  # skip sleeping/idle rows for the relative error
        out["mape"] = float(100 * np.mean(np.abs(err[on] / y[on])))
    return out


Splits = list[tuple[np.ndarray, np.ndarray]]


def unit_splits(frame: pd.DataFrame, n: int = N_FOLDS) -> Splits:
    """GroupKFold by unit: every row of a unit is on the same side."""
    return list(GroupKFold(n_splits=n).split(frame, groups=frame["unit_id"]))


def row_splits(frame: pd.DataFrame, n: int = N_FOLDS) -> Splits:
    """Shuffled KFold by row (optimistic: one unit's rows land on both sides)."""
    return list(KFold(n, shuffle=True, random_state=0).split(frame))


def hardware_splits(frame: pd.DataFrame) -> Splits:
    """Leave one hardware profile out."""
    return list(LeaveOneGroupOut().split(frame, groups=frame["profile_id"]))


def _cross_validate(
    frame: pd.DataFrame, target: str, splits: Splits, n_search: int, dropout: float
) -> tuple[dict[str, float], np.ndarray, dict[str, float]]:
    """Out-of-fold metrics and predictions; also the metrics with health unknown."""
    X = frame[list(MINER_FEATURES)].astype(float)
    y = transformed_target(frame, target)
    units = frame["unit_id"]
    pred = np.full(len(frame), np.nan)
    pred_unknown = np.full(len(frame), np.nan)
    for i, (tr, te) in enumerate(splits):
        X_tr = health_dropout(X.iloc[tr], dropout, seed=i)
        booster, _ = _tune_fit(X_tr, y.iloc[tr], units.iloc[tr], n_search, seed=i)
        raw = booster.predict(xgb.DMatrix(X.iloc[te]))
        pred[te] = inverse(raw, frame.iloc[te], target)
        raw = booster.predict(xgb.DMatrix(health_unknown(X.iloc[te])))
        pred_unknown[te] = inverse(raw, frame.iloc[te], target)
    if target != "chip_temp_c":
        pred = np.maximum(pred, 0.0)  # as served: MinerResponseModel clips at zero
        pred_unknown = np.maximum(pred_unknown, 0.0)
    truth = frame[target].to_numpy(dtype=float)
    return _metrics(truth, pred, target), pred, _metrics(truth, pred_unknown, target)


def train_response_model(
    frame: pd.DataFrame, target: str, quick: bool = False, dropout: float = HEALTH_DROPOUT
) -> MinerResult:
    """Evaluate on held-out units / rows / hardware models, then fit on every row."""
    t0 = time.perf_counter()
    n_search = N_SEARCH_QUICK if quick else N_SEARCH
    units, profiles = frame["unit_id"], frame["profile_id"]
    by_unit, pred, by_unit_unknown = _cross_validate(
        frame, target, unit_splits(frame), n_search, dropout
    )
    # Reference for "health unknown": the same evaluation of a model that never sees health
    # (every training row dropped out); unknown health should score about as well as that.
    no_health, _, _ = _cross_validate(frame, target, unit_splits(frame), n_search, 1.0)
    by_row, _, _ = _cross_validate(frame, target, row_splits(frame), n_search, dropout)
    by_profile, _, _ = _cross_validate(frame, target, hardware_splits(frame), 1, dropout)
    X = health_dropout(frame[list(MINER_FEATURES)].astype(float), dropout, seed=99)
    booster, params = _tune_fit(X, transformed_target(frame, target), units, n_search, seed=99)
    truth = frame[target].to_numpy(dtype=float)
    scale = (truth - frame["ambient_c"].to_numpy()) if target == "chip_temp_c" else truth
    hashing = frame["hashrate_ths"].to_numpy() > 0
    relative_sd = by_unit["rmse"] / float(np.mean(np.abs(scale[hashing])))
    name, scale_feature, offset_feature = TARGETS[target]
    oof = pd.DataFrame(
        {
            "unit_id": units,
            "profile_id": profiles,
            "actual": truth,
            "pred": pred,
            "knob": frame["knob"],
        }
    )
    seconds = time.perf_counter() - t0
    log.info(
        "response_model_trained",
        target=target,
        seconds=round(seconds, 1),
        unit_mae=round(by_unit["mae"], 3),
        unit_mae_health_unknown=round(by_unit_unknown["mae"], 3),
        row_mae=round(by_row["mae"], 3),
    )
    return MinerResult(
        target=target,
        name=name,
        booster=booster,
        features=list(MINER_FEATURES),
        transform={"scale": scale_feature, "offset": offset_feature},
        params=params,
        metrics={
            "held_out_units": by_unit,
            "held_out_units_health_unknown": by_unit_unknown,
            "held_out_units_model_without_health": no_health,
            "held_out_rows": by_row,
            "held_out_hardware_model": by_profile,
            "relative_sd": relative_sd,
            "health_dropout": dropout,
            "rows": len(frame),
            "units": int(units.nunique()),
            "profiles": int(profiles.nunique()),
        },
        oof=oof,
        seconds=seconds,
    )


def train_all_response(frame: pd.DataFrame, quick: bool = False) -> list[MinerResult]:
    """Train the hashrate, power and chip-temperature models."""
    return [train_response_model(frame, t, quick=quick) for t in TARGETS]
