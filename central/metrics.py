"""Forecast metrics on hashprice levels, with edge cases defined rather than accidental.

All functions take the realised value, the forecast and (for direction) today's value as
1-D arrays of equal, non-zero length and raise ``ValueError`` otherwise.
"""

from __future__ import annotations

import numpy as np

#: Relative change below which a move counts as "flat" for directional accuracy.
DIRECTION_DEADBAND = 1e-9


def _check(*arrays: np.ndarray) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=float).ravel() for a in arrays]
    n = len(out[0])
    if n == 0:
        raise ValueError("metrics need at least one row")
    if any(len(a) != n for a in out):
        raise ValueError("metric inputs differ in length")
    if any(not np.all(np.isfinite(a)) for a in out):
        raise ValueError("metric inputs contain NaN or inf")
    return out


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error."""
    y, pred = _check(y, pred)
    return float(np.mean(np.abs(y - pred)))


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    """Root mean squared error."""
    y, pred = _check(y, pred)
    return float(np.sqrt(np.mean((y - pred) ** 2)))


def mape(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute percentage error, in percent; ``y`` must be non-zero (hashprice > 0)."""
    y, pred = _check(y, pred)
    if np.any(y == 0):
        raise ValueError("MAPE undefined for a zero actual")
    return float(100.0 * np.mean(np.abs((y - pred) / y)))


def direction(change: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """-1, 0 or +1: the sign of ``change`` with a relative dead-band around zero."""
    change, reference = _check(change, reference)
    flat = np.abs(change) <= DIRECTION_DEADBAND * np.abs(reference)
    return np.where(flat, 0, np.sign(change)).astype(int)


def directional_accuracy(y: np.ndarray, pred: np.ndarray, today: np.ndarray) -> float:
    """Share of rows whose predicted direction vs ``today`` equals the realised direction.

    Directions are taken against today's value, not between consecutive rows, so a fold of
    one row is well defined (0 or 1). A flat move (within the dead-band) is its own class:
    predicting "flat" is right only when the outcome is flat, which is why a persistence
    forecast scores the share of flat outcomes (about 0 on real prices).
    """
    y, pred, today = _check(y, pred, today)
    return float(np.mean(direction(y - today, today) == direction(pred - today, today)))


def skill(model_error: float, baseline_error: float) -> float:
    """1 - model/baseline: > 0 means the model beats the baseline (NaN if baseline is 0)."""
    if baseline_error == 0:
        return float("nan")
    return 1.0 - model_error / baseline_error


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of rows with lower <= y <= upper."""
    y, lower, upper = _check(y, lower, upper)
    return float(np.mean((y >= lower) & (y <= upper)))


def below(y: np.ndarray, bound: np.ndarray) -> float:
    """Share of rows with y <= bound (nominal q for a q-quantile)."""
    y, bound = _check(y, bound)
    return float(np.mean(y <= bound))


def point_metrics(y: np.ndarray, pred: np.ndarray, today: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, MAPE and directional accuracy of level forecasts."""
    return {
        "mae": mae(y, pred),
        "rmse": rmse(y, pred),
        "mape": mape(y, pred),
        "directional_accuracy": directional_accuracy(y, pred, today),
    }
