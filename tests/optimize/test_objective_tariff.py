"""Objective and tariffs: real-data defaults, profit arithmetic, violation size, schedules."""

from __future__ import annotations

import csv
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from agent.errors import ConfigError
from agent.optimize.objective import (
    DEFAULT_HASHPRICE_USD_PER_TH_DAY,
    Economics,
    penalised_objective,
    profit_usd_per_day,
    switching_cost_per_day,
    switching_cost_usd,
    violation_size,
)
from agent.optimize.tariff import (
    DEFAULT_PRICE_USD_PER_KWH,
    FlatTariff,
    SeriesTariff,
    TimeOfUseTariff,
    TouPeriod,
    tariff_from_config,
)
from tests.conftest import DATA


def test_default_hashprice_is_the_real_90_day_median():
    with (DATA / "btc_network_daily_merged_2019_2025.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["hashprice_usd_per_th_day"]]
    rows.sort(key=lambda r: r["date"])
    last = datetime.fromisoformat(rows[-1]["date"])
    window = [
        float(r["hashprice_usd_per_th_day"])
        for r in rows
        if datetime.fromisoformat(r["date"]) > last - timedelta(days=90)
    ]
    assert len(window) == 90
    assert statistics.median(window) == pytest.approx(DEFAULT_HASHPRICE_USD_PER_TH_DAY, abs=5e-6)


def test_default_price_is_the_eia_2024_industrial_mean():
    with (DATA / "eia_table5_3_avg_retail_price_by_sector_cents_kwh.csv").open(newline="") as fh:
        vals = [
            float(r["Industrial"]) for r in csv.DictReader(fh) if r["period"].startswith("2024-")
        ]
    assert len(vals) == 11
    assert statistics.fmean(vals) / 100 == pytest.approx(DEFAULT_PRICE_USD_PER_KWH, abs=5e-5)


def test_profit_and_switching_cost_arithmetic():
    # 100 TH/s at 0.05 $/TH/day = $5; 3 kW for 24 h at 0.05 $/kWh = $3.60
    assert profit_usd_per_day(100.0, 3000.0, 0.05, 0.05 * 24 / 1000) == pytest.approx(1.4)
    # 480 s of lost revenue at $5/day
    assert switching_cost_usd(480.0, 100.0, 0.05) == pytest.approx(5 * 480 / 86400)
    assert switching_cost_per_day(480.0, 100.0, 0.05, 12.0) == pytest.approx(2 * 5 * 480 / 86400)
    econ = Economics(hashprice=lambda ts: 0.05, tariff=FlatTariff(0.05))
    assert econ.rates() == pytest.approx((0.05, 0.0012))


def test_violation_is_scored_by_its_size_never_flat():
    assert violation_size(80.0, 90.0, 1.0) == 0.0
    small, big = violation_size(91.0, 90.0, 1.0), violation_size(99.0, 90.0, 1.0)
    assert (small, big) == (1.0, 9.0)
    p_small = penalised_objective(2.0, {"chip": small}, 0.1)
    p_big = penalised_objective(2.0, {"chip": big}, 0.1)
    assert p_small > p_big
    assert 2.0 - p_big == pytest.approx(9 * (2.0 - p_small))


def test_bad_hashprice_forecast_is_a_config_error():
    with pytest.raises(ConfigError):
        Economics(hashprice=lambda ts: float("nan")).hashprice_usd_per_th_day()


def test_time_of_use_wraps_midnight_and_honours_weekdays():
    tou = TimeOfUseTariff(
        base_usd_per_kwh=0.05,
        periods=(
            TouPeriod(22, 6, 0.03),  # night, every day
            TouPeriod(16, 20, 0.20, weekdays=(1, 2, 3, 4, 5)),  # weekday peak
        ),
    )
    monday = datetime(2024, 1, 15, tzinfo=UTC)
    assert tou.price_at(monday.replace(hour=23)) == 0.03
    assert tou.price_at(monday.replace(hour=3)) == 0.03
    assert tou.price_at(monday.replace(hour=17)) == 0.20
    assert tou.price_at(monday.replace(hour=12)) == 0.05
    sunday = datetime(2024, 1, 14, 17, tzinfo=UTC)
    assert tou.price_at(sunday) == 0.05
    day = tou.mean_price(monday, 24)
    assert day == pytest.approx((8 * 0.03 + 4 * 0.20 + 12 * 0.05) / 24, rel=1e-3)


def test_series_tariff_from_real_dk2_prices():
    tariff = SeriesTariff.from_csv(
        DATA / "elspot_dk2_hourly_2019_2022.csv", "HourUTC", "SpotPriceEUR", scale=1 / 1000
    )
    assert tariff.price_at(datetime(2019, 1, 1, 0, 30, tzinfo=UTC)) == pytest.approx(
        tariff.prices[0]
    )
    spike = max(tariff.prices)
    assert spike == pytest.approx(0.871)  # the 871 EUR/MWh hour cited in the data README
    with pytest.raises(ConfigError):
        tariff.price_at(datetime(2018, 12, 31, tzinfo=UTC))


def test_tariff_from_config_kinds_and_errors():
    assert tariff_from_config(None) == FlatTariff()
    assert tariff_from_config(0.07).price_at(datetime.now(UTC)) == 0.07
    series = tariff_from_config(
        {"kind": "series", "points": [["2024-01-01T00:00Z", 0.04], ["2024-01-01T01:00Z", 0.3]]}
    )
    assert series.price_at(datetime(2024, 1, 1, 1, 30, tzinfo=UTC)) == 0.3
    for bad in (
        {"kind": "nope"},
        {"kind": "tou"},
        {"kind": "flat", "usd_per_kwh": 99.0},
        {"kind": "series", "points": [["2024-01-02", 1.0], ["2024-01-01", 1.0]]},
    ):
        with pytest.raises(ConfigError):
            tariff_from_config(bad)
