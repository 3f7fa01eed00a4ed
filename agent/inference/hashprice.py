"""Hashprice forecasts on the agent: compiled trees + scheduled offset + conformal interval.

The central trainer ships ``hashprice_h{h}`` models that predict the part of
``log(mean hashprice over the next h days / today's hashprice)`` which the known schedule
(difficulty adjustment, halving) does not explain. A forecast is::

    log_p50 = tree(features) + sum(offset_features)
    scale   = first finite of intervals.scale_features (floored) * sqrt(h)
    p50     = hashprice_today * exp(log_p50)
    p_q     = hashprice_today * exp(log_p50 + q_q * scale)     for q in 10, 90

Feature names and meanings are defined by ``central/dataset.py`` and listed per model in the
manifest; values the caller does not know are passed as None (missing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from agent.errors import BundleError, ModelError
from agent.inference.bundle import VerifiedBundle
from agent.inference.model import TreeModel, load_model


@dataclass(frozen=True)
class HashpriceForecast:
    """Mean hashprice over the next ``horizon_days`` days, USD per TH/s per day."""

    horizon_days: int
    p10: float
    p50: float
    p90: float
    hashprice_today: float

    @property
    def expected_change(self) -> float:
        """Relative change of the median forecast versus today."""
        return self.p50 / self.hashprice_today - 1.0

    @property
    def relative_width(self) -> float:
        """(p90 - p10) / p50: the calibrated 80 % band, usable as (inverse) confidence."""
        return (self.p90 - self.p10) / self.p50


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


class HashpriceForecaster:
    """One horizon's compiled hashprice model with its offset and interval rules."""

    def __init__(self, bundle: VerifiedBundle, horizon_days: int, *, use_shim: bool = True) -> None:
        self.name = f"hashprice_h{horizon_days}"
        entry = bundle.model(self.name)
        if entry.intervals is None or entry.horizon_days != horizon_days:
            raise BundleError(f"{self.name}: manifest lacks intervals or horizon {horizon_days}")
        self.horizon_days = horizon_days
        self.features = tuple(entry.features)
        self.offset_features = tuple(entry.offset_features)
        self.intervals = entry.intervals
        self.model: TreeModel = load_model(bundle, self.name, use_shim=use_shim)

    @property
    def required_inputs(self) -> tuple[str, ...]:
        """Every feature name the forecaster reads (model inputs, offsets, interval scale)."""
        names = [*self.features, *self.offset_features, *self.intervals.scale_features]
        return tuple(dict.fromkeys(names))

    def forecast(
        self, features: Mapping[str, float | None], hashprice_today: float
    ) -> HashpriceForecast:
        """Forecast from named features known at the end of today (None = missing)."""
        if not (_finite(hashprice_today) and hashprice_today > 0):
            raise ModelError(f"{self.name}: today's hashprice must be a positive number")
        row = [features.get(name) for name in self.features]
        tree = self.model.predict_row(row)
        offset = 0.0
        for name in self.offset_features:
            value = features.get(name)
            if value is not None and math.isfinite(value):
                offset += value  # missing = no scheduled change
        iv = self.intervals
        vol = next((features.get(n) for n in iv.scale_features if _finite(features.get(n))), None)
        scale = max(vol if vol is not None else iv.scale_floor, iv.scale_floor) * iv.scale_sqrt_h
        center = tree + offset
        return HashpriceForecast(
            horizon_days=self.horizon_days,
            p10=hashprice_today * math.exp(center + iv.q10 * scale),
            p50=hashprice_today * math.exp(center),
            p90=hashprice_today * math.exp(center + iv.q90 * scale),
            hashprice_today=hashprice_today,
        )
