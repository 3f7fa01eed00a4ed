"""Market data: hashprice from first principles on the shipped real data, fee gaps, power prices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from central import market
from central.market import (
    blocks_from_subsidy,
    breakeven_power_price,
    curtailment_summary,
    expected_blocks_per_th_day,
    subsidy_btc_range,
    subsidy_sat,
)


def test_hashprice_formula_matches_the_published_worked_example():
    # landscape.md §6: D = 100 T, $100k, 3.125 BTC -> about $62.8 per PH/s per day.
    per_th = float(expected_blocks_per_th_day(100e12)) * 3.125 * 100_000
    assert per_th * 1000 == pytest.approx(62.8, abs=0.1)


def test_halving_schedule():
    assert subsidy_sat(0) == subsidy_sat(209_999) == 50 * 10**8
    assert subsidy_sat(210_000) == 25 * 10**8
    assert subsidy_sat(840_000) == 312_500_000
    assert subsidy_btc_range(839_999, 2) == pytest.approx(6.25 + 3.125)
    # 931.25 BTC after height 839_852 spans the 840,000 boundary: 147 x 6.25 + 4 x 3.125
    assert blocks_from_subsidy(839_852, 931.25) == 151


def test_block_heights_put_each_halving_on_its_day(btc):
    h = btc["height"]
    days = (("2016-07-09", 420_000), ("2020-05-11", 630_000), ("2024-04-20", 840_000))
    for day, boundary in days:
        start = h[pd.Timestamp(day)] - btc["blocks"][pd.Timestamp(day)]
        assert start < boundary <= h[pd.Timestamp(day)], day


def test_subsidy_from_tracked_heights_equals_observed_issuance(btc):
    calc = np.array(
        [
            subsidy_btc_range(int(e) - int(n) + 1, int(n))
            for e, n in zip(btc["height"], btc["blocks"], strict=True)
        ]
    )
    bad = btc.index[np.abs(calc - btc["subsidy_btc"].to_numpy()) > 1e-9]
    assert list(bad) == []


def test_fee_gaps_are_flagged_and_never_zero(btc):
    gap = btc.loc["2022-04-30":"2023-04-29"]
    assert gap["fees_missing"].all()
    # causal imputation: the first MAX_FEE_IMPUTE_GAP_DAYS days of the long gap are filled
    # (a live feed could not know the gap would last a year), the rest has no hashprice
    n = market.MAX_FEE_IMPUTE_GAP_DAYS
    assert gap["fees_imputed"].iloc[:n].all()
    assert gap["hashprice"].iloc[n:].isna().all()
    assert not gap["fees_imputed"].iloc[n:].any()
    assert gap["hashprice_subsidy_only"].notna().all()
    assert btc.loc["2025-02-03":, "fees_missing"].all()
    assert not (btc.loc[btc["fees_missing"], "fees_btc"] == 0).any()
    imputed = btc.index[btc["fees_imputed"]]
    assert list(imputed.date.astype(str)) == [
        "2021-03-28",
        "2022-03-27",
        "2022-04-30",
        "2022-05-01",
        "2022-05-02",
        "2025-02-03",
        "2025-02-04",
        "2025-02-05",
    ]
    assert btc.loc[imputed, "fees_missing"].all()
    assert btc.loc[imputed, "fees_src"].str.startswith("imputed").all()
    assert (btc.loc[imputed, "fees_btc"] > 0).all()


#: Date column of each raw file load_btc_daily reads.
RAW_DATE_COLUMNS = {
    market.COINMETRICS_FILE: "time",
    market.BLOCKCHAINCOM_FILE: "Date",
    market.BITCOINVISUALS_FILE: "DateTime",
    market.FEES_FILE: "date",
}


@pytest.mark.parametrize(
    "cut",
    [
        "2021-03-28",  # an isolated missing fee day is the last day known
        "2022-05-01",  # two days into the year-long fee gap
        "2022-06-15",  # deep inside it
        "2024-04-20",  # halving day
        "2025-01-31",
    ],
)
def test_market_frame_at_t_uses_only_raw_data_up_to_t(btc, tmp_path, cut):
    """Truncating every raw file at ``cut`` must not change any value up to ``cut``."""
    for name, column in RAW_DATE_COLUMNS.items():
        raw = pd.read_csv(market.DATA_DIR / name, dtype=str)
        keep = pd.to_datetime(raw[column].str[:10]) <= pd.Timestamp(cut)
        raw[keep].to_csv(tmp_path / name, index=False)
    truncated = market.load_btc_daily(tmp_path)
    assert truncated.index[-1] == pd.Timestamp(cut)
    pd.testing.assert_frame_equal(truncated, btc.loc[:cut], check_freq=False)


def test_imputation_can_be_switched_off():
    frame = market.load_btc_daily(max_fee_impute_gap_days=0)
    assert frame.loc["2021-03-28", "hashprice"] != frame.loc["2021-03-28", "hashprice"]  # NaN
    assert not frame["fees_imputed"].any()


def test_agrees_with_the_curators_hash_rate_based_table(btc):
    # data/btc_network_daily_merged_2019_2025.csv computes (subsidy + fees) x price / hash rate
    merged = pd.read_csv(
        market.DATA_DIR / "btc_network_daily_merged_2019_2025.csv",
        parse_dates=["date"],
        index_col="date",
    )
    ratio = (btc["hashprice"] / merged["hashprice_usd_per_th_day"]).dropna()
    assert len(ratio) > 1800
    assert ratio.median() == pytest.approx(1.0, abs=1e-3)
    assert (ratio.sub(1).abs() < 0.02).mean() > 0.99


def test_quarterly_levels_match_the_data_readme(btc):
    q = btc["hashprice"].resample("QE").mean()
    assert 0.15 < q["2019"].min()
    assert q["2019"].max() < 0.29
    assert 0.29 < q["2021-06":"2021-12"].min() < q["2021-06":"2021-12"].max() < 0.34
    assert 0.044 < q["2024-07":"2025-03"].min()
    assert q["2024-07":"2025-03"].max() < 0.059


def test_price_sources_are_recorded(btc):
    assert set(btc["price_src"]) == {"coinmetrics", "coinmarketcap", "yahoo"}
    assert (btc["price_src"] == "yahoo").sum() == 16
    assert btc["price_usd"].notna().all()


def test_electricity_loaders():
    dk2 = market.load_elspot_dk2()
    assert len(dk2) == 33_310
    assert str(dk2.index.tz) == "UTC"
    assert dk2.min() < 0
    assert dk2.max() == pytest.approx(871, abs=1)
    be = market.load_belgium_dam()
    assert len(be) == 22_583
    assert 5 < be.median() < 500  # EUR/MWh after the x1000 conversion
    eia = market.load_eia_retail()
    assert isinstance(eia.index, pd.PeriodIndex)
    assert eia.index.freqstr == "M"
    assert str(eia.index[0]) == "2022-01"
    assert "Industrial" in eia.columns
    annual = market.load_eia_retail(monthly=False)
    assert str(annual.index[0]) == "2014"


def test_breakeven_and_curtailment():
    # 20 J/TH = 0.48 kWh per TH/s-day; 0.05 USD/TH/day -> 104.17 USD/MWh
    assert breakeven_power_price(0.05, 20.0) == pytest.approx(104.1667, rel=1e-4)
    with pytest.raises(ValueError, match="positive"):
        breakeven_power_price(0.05, 0.0)
    prices = pd.Series([10.0, 50.0, 200.0, 300.0])
    s = curtailment_summary(prices, 100.0)
    assert (s.hours, s.hours_curtailed, s.fraction_curtailed) == (4, 2, 0.5)
    assert s.mean_price_running == pytest.approx(30.0)


def test_block_count_right_after_a_boundary():
    # first block of the day is the first of the new era: all at 3.125 BTC
    assert blocks_from_subsidy(839_999, 406.25) == 130
