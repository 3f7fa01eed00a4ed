"""The objective: net profit in USD/day, switching cost, and constraint violation by size.

``profit = TH/s × hashprice − kW × 24 h × electricity price − switching cost``, where the
switching cost (revenue lost while a restart and ramp lasts) is spread over the time a
setting is expected to be held, so every term is in USD/day.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.errors import ConfigError
from agent.optimize.tariff import FlatTariff, Tariff

#: Default hashprice, USD per TH/s per day: median of the last 90 days that have fee data
#: (2024-11-05 .. 2025-02-02) of ``hashprice_usd_per_th_day`` in
#: shared/data/btc_network_daily_merged_2019_2025.csv ((subsidy + fees) × price / hashrate).
#: Recomputed from the file by tests/optimize/test_objective.py.
DEFAULT_HASHPRICE_USD_PER_TH_DAY = 0.05927

#: How long a proposed setting is expected to stay applied before the next optimisation
#: round; restart downtime is amortised over it. A day matches the daily cadence of
#: hashprice and day-ahead electricity prices (shared/docs/landscape.md §3, "Cost of acting").
DEFAULT_HOLD_HOURS = 24.0

#: Seconds per day, for converting downtime into a fraction of a day's revenue.
SECONDS_PER_DAY = 86_400.0

#: Hours per day, for converting kW into kWh/day.
HOURS_PER_DAY = 24.0

Hashprice = float | Callable[[datetime], float]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Economics:
    """Prices that turn hashrate and power into USD/day."""

    #: USD per TH/s per day: a number, or a forecast callable of the instant.
    hashprice: Hashprice = DEFAULT_HASHPRICE_USD_PER_TH_DAY
    tariff: Tariff = field(default_factory=FlatTariff)
    hold_hours: float = DEFAULT_HOLD_HOURS
    #: The instant prices are read at; ``None`` means "now" when asked.
    at: datetime | None = None

    def __post_init__(self) -> None:
        if self.hold_hours <= 0:
            raise ConfigError("hold_hours must be positive")

    def when(self) -> datetime:
        """Return the pricing instant."""
        return self.at if self.at is not None else _now()

    def hashprice_usd_per_th_day(self) -> float:
        """Hashprice (USD per TH/s per day) over the holding window."""
        hp = self.hashprice(self.when()) if callable(self.hashprice) else self.hashprice
        if not isinstance(hp, int | float) or math.isnan(hp) or hp < 0:
            raise ConfigError(f"hashprice forecast gave {hp!r}")
        return float(hp)

    def electricity_usd_per_kwh(self) -> float:
        """Mean electricity price (USD/kWh) over the holding window."""
        return self.tariff.mean_price(self.when(), self.hold_hours)

    def usd_per_watt_day(self) -> float:
        """Cost of one watt held for a day, USD."""
        return self.electricity_usd_per_kwh() * HOURS_PER_DAY / 1000.0

    def rates(self) -> tuple[float, float]:
        """(hashprice USD/TH/day, electricity USD/W/day) at the pricing instant."""
        return self.hashprice_usd_per_th_day(), self.usd_per_watt_day()

    def with_price(self, usd_per_kwh: float) -> Economics:
        """Return a copy with a flat electricity price (a price spike, a what-if)."""
        return Economics(self.hashprice, FlatTariff(usd_per_kwh), self.hold_hours, self.at)


def profit_usd_per_day(
    hashrate_ths: float, power_w: float, hashprice: float, usd_per_watt_day: float
) -> float:
    """Net profit before switching costs, USD/day."""
    return hashrate_ths * hashprice - power_w * usd_per_watt_day


def switching_cost_usd(downtime_s: float, hashrate_ths: float, hashprice: float) -> float:
    """Revenue lost while a unit restarts and ramps, USD (downtime × current revenue rate)."""
    return max(downtime_s, 0.0) / SECONDS_PER_DAY * max(hashrate_ths, 0.0) * hashprice


def switching_cost_per_day(
    downtime_s: float, hashrate_ths: float, hashprice: float, hold_hours: float
) -> float:
    """Switching cost spread over the holding window, USD/day."""
    return switching_cost_usd(downtime_s, hashrate_ths, hashprice) * HOURS_PER_DAY / hold_hours


def violation_size(value: float, limit: float, scale: float) -> float:
    """How far ``value`` exceeds ``limit``, in units of ``scale`` (0 when within the limit)."""
    if scale <= 0:
        raise ValueError("violation scale must be positive")
    return max(0.0, (value - limit) / scale)


def penalised_objective(
    profit: float, violations: dict[str, float], usd_per_unit_violation: float
) -> float:
    """Profit minus a penalty that grows with the total size of the violations (never flat)."""
    return profit - usd_per_unit_violation * sum(violations.values())


class _Forecaster(Protocol):
    def forecast(self, features: Mapping[str, float | None], hashprice_today: float) -> Any:
        """Return an object with a ``p50`` hashprice (USD per TH/s per day)."""
        ...


def hashprice_from_forecaster(
    forecaster: _Forecaster,
    features: Callable[[], Mapping[str, float | None]],
    hashprice_today: Callable[[], float],
) -> Callable[[datetime], float]:
    """Adapt the bundle's hashprice forecaster (``agent.inference.hashprice``) to ``Economics``.

    The returned callable gives the forecast median over the forecaster's horizon. It raises
    whatever the forecaster raises (``ModelError`` for bad inputs), so a failed forecast is
    never silently priced as zero; the caller decides whether to fall back to a flat figure.
    """

    def hashprice(_ts: datetime) -> float:
        return float(forecaster.forecast(features(), hashprice_today()).p50)

    return hashprice
