"""Electricity tariffs from configuration: flat, time-of-use schedule, or a price series.

Every tariff answers one question, the price in USD per kWh at an instant, and the mean price
over a holding window (what a setting held for ``hours`` will pay on average). Prices are
validated when built; a bad tariff is a ``ConfigError`` at start-up, never a silent zero.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from agent.errors import ConfigError

#: Default flat price, USD/kWh: mean of the eleven 2024 monthly US *industrial* averages in
#: EIA Electric Power Monthly Table 5.3 (8.10, 7.79, 7.68, 7.77, 7.88, 8.40, 8.81, 8.72, 8.51,
#: 8.21, 7.89 ¢/kWh; shared/data/eia_table5_3_avg_retail_price_by_sector_cents_kwh.csv).
DEFAULT_PRICE_USD_PER_KWH = 0.0816

#: Step used to average a schedule or series over a window; tariffs change at most hourly in
#: the shipped real data (Nord Pool DK2, ENTSO-E BE, ERCOT DAM), so 15 min never misses a step.
AVERAGE_STEP_S = 900

#: A price beyond this is treated as a configuration typo (the highest hourly price in the
#: shipped real data is 871 EUR/MWh = 0.87/kWh, DK2 2022; 10 USD/kWh leaves room for spikes).
MAX_SANE_PRICE_USD_PER_KWH = 10.0


class Tariff(Protocol):
    """Anything that prices electricity at an instant."""

    def price_at(self, ts: datetime) -> float:
        """Price in USD per kWh at ``ts``."""
        ...

    def mean_price(self, start: datetime, hours: float) -> float:
        """Mean price in USD per kWh over ``[start, start + hours)``."""
        ...


def _check_price(value: float, where: str) -> float:
    if not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"tariff {where}: price {value!r} is not a number")
    if abs(value) > MAX_SANE_PRICE_USD_PER_KWH:
        raise ConfigError(f"tariff {where}: price {value} USD/kWh is implausible")
    return float(value)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class _Averaging:
    """Mixin: mean of ``price_at`` over a window on a fixed step."""

    __slots__ = ()

    def price_at(self, ts: datetime) -> float:  # pragma: no cover - overridden
        """Price in USD per kWh at ``ts``."""
        raise NotImplementedError

    def mean_price(self, start: datetime, hours: float) -> float:
        """Mean price in USD per kWh over ``[start, start + hours)``."""
        if hours <= 0:
            return self.price_at(start)
        steps = max(1, round(hours * 3600 / AVERAGE_STEP_S))
        dt = timedelta(seconds=hours * 3600 / steps)
        start = _aware(start)
        return sum(self.price_at(start + i * dt) for i in range(steps)) / steps


@dataclass(frozen=True, slots=True)
class FlatTariff:
    """One price at all times."""

    usd_per_kwh: float = DEFAULT_PRICE_USD_PER_KWH

    def __post_init__(self) -> None:
        _check_price(self.usd_per_kwh, "flat")

    def price_at(self, ts: datetime) -> float:
        """Price in USD per kWh (the same at every instant)."""
        return self.usd_per_kwh

    def mean_price(self, start: datetime, hours: float) -> float:
        """Mean price in USD per kWh (the flat price)."""
        return self.usd_per_kwh


@dataclass(frozen=True, slots=True)
class TouPeriod:
    """One time-of-use band: ``[start_hour, end_hour)`` local hours on the given weekdays."""

    start_hour: float
    end_hour: float
    usd_per_kwh: float
    #: ISO weekdays 1 (Mon) .. 7 (Sun) the band applies to; empty = every day.
    weekdays: tuple[int, ...] = ()

    def covers(self, local: datetime) -> bool:
        """Whether this band prices the local instant ``local``."""
        if self.weekdays and local.isoweekday() not in self.weekdays:
            return False
        hour = local.hour + local.minute / 60 + local.second / 3600
        if self.start_hour <= self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour  # wraps midnight


@dataclass(frozen=True, slots=True)
class TimeOfUseTariff(_Averaging):
    """A schedule of bands over a base price; the first band covering an instant wins."""

    base_usd_per_kwh: float
    periods: tuple[TouPeriod, ...] = ()
    #: Offset of the site's local clock from UTC, hours (schedules are written in local time).
    utc_offset_h: float = 0.0

    def __post_init__(self) -> None:
        _check_price(self.base_usd_per_kwh, "tou base")
        for i, p in enumerate(self.periods):
            _check_price(p.usd_per_kwh, f"tou period {i}")
            if not (0 <= p.start_hour <= 24 and 0 <= p.end_hour <= 24):
                raise ConfigError(f"tariff tou period {i}: hours must lie in 0..24")
            if any(d not in range(1, 8) for d in p.weekdays):
                raise ConfigError(f"tariff tou period {i}: weekdays are ISO 1..7")

    def price_at(self, ts: datetime) -> float:
        """Price in USD per kWh at ``ts``."""
        local = _aware(ts).astimezone(UTC) + timedelta(hours=self.utc_offset_h)
        for p in self.periods:
            if p.covers(local):
                return p.usd_per_kwh
        return self.base_usd_per_kwh


@dataclass(frozen=True, slots=True)
class SeriesTariff(_Averaging):
    """A step series of (UTC start, price) points; before the first point it is an error."""

    times: tuple[datetime, ...]
    prices: tuple[float, ...]
    _keys: tuple[float, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.times or len(self.times) != len(self.prices):
            raise ConfigError("tariff series: need equal, non-empty times and prices")
        keys = tuple(_aware(t).timestamp() for t in self.times)
        if any(b <= a for a, b in itertools.pairwise(keys)):
            raise ConfigError("tariff series: times must be strictly increasing")
        for i, p in enumerate(self.prices):
            _check_price(p, f"series point {i}")
        object.__setattr__(self, "_keys", keys)

    def price_at(self, ts: datetime) -> float:
        """Price in USD per kWh in force at ``ts`` (the last point at or before it)."""
        i = bisect.bisect_right(self._keys, _aware(ts).timestamp()) - 1
        if i < 0:
            raise ConfigError(f"tariff series starts at {self.times[0]}, asked for {ts}")
        return self.prices[i]

    @classmethod
    def from_csv(
        cls, path: Path, time_col: str, price_col: str, scale: float = 1.0
    ) -> SeriesTariff:
        """Read a series from a CSV file; ``scale`` converts its unit to USD/kWh."""
        times: list[datetime] = []
        prices: list[float] = []
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    raw = row[time_col].strip()
                    if not raw or not row[price_col].strip():
                        continue
                    times.append(_aware(datetime.fromisoformat(raw.replace("Z", "+00:00"))))
                    prices.append(float(row[price_col]) * scale)
        except (OSError, KeyError, ValueError) as err:
            raise ConfigError(f"tariff series {path.name}: {err}") from err
        return cls(times=tuple(times), prices=tuple(prices))


def tariff_from_config(cfg: Mapping[str, Any] | float | None) -> Tariff:
    """Build a tariff from a config table (``kind = flat|tou|series``) or a bare number."""
    if cfg is None:
        return FlatTariff()
    if isinstance(cfg, int | float):
        return FlatTariff(float(cfg))
    kind = cfg.get("kind", "flat")
    try:
        if kind == "flat":
            return FlatTariff(float(cfg.get("usd_per_kwh", DEFAULT_PRICE_USD_PER_KWH)))
        if kind == "tou":
            periods = tuple(
                TouPeriod(
                    start_hour=float(p["start_hour"]),
                    end_hour=float(p["end_hour"]),
                    usd_per_kwh=float(p["usd_per_kwh"]),
                    weekdays=tuple(int(d) for d in p.get("weekdays", ())),
                )
                for p in cfg.get("periods", ())
            )
            return TimeOfUseTariff(
                base_usd_per_kwh=float(cfg["base_usd_per_kwh"]),
                periods=periods,
                utc_offset_h=float(cfg.get("utc_offset_h", 0.0)),
            )
        if kind == "series":
            if "csv" in cfg:
                return SeriesTariff.from_csv(
                    Path(cfg["csv"]),
                    cfg.get("time_col", "time_utc"),
                    cfg.get("price_col", "usd_per_kwh"),
                    float(cfg.get("scale", 1.0)),
                )
            points: Sequence[Sequence[Any]] = cfg["points"]
            return SeriesTariff(
                times=tuple(
                    _aware(datetime.fromisoformat(str(t).replace("Z", "+00:00"))) for t, _ in points
                ),
                prices=tuple(float(p) for _, p in points),
            )
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"tariff ({kind}): {err!r}") from err
    raise ConfigError(f"tariff kind {kind!r} is not one of flat, tou, series")
