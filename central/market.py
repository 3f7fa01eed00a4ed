"""Market history from the shipped real data: daily BTC hashprice and electricity prices.

Hashprice (USD per TH/s per day) is computed from first principles::

    expected blocks/day at 1 TH/s = 86400 · 1e12 / (difficulty · 2**32)
    hashprice = expected blocks/day · (subsidy + fees per block) · price

Block counts and heights are tracked exactly (Coin Metrics ``BlkCnt`` to 2020-07-27,
then Bitcoin Visuals subsidy divided by the subsidy per block of the halving schedule), so
halving days split their blocks correctly. Fee gaps are never silently zero: see
:func:`load_btc_daily`. Provenance of every file is in ``data/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import structlog

log = structlog.get_logger(__name__)

#: Shipped copies of ../shared/data (see data/README.md for provenance).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

COINMETRICS_FILE = "btc_coinmetrics_daily_2009_2020.csv"
BLOCKCHAINCOM_FILE = "btc_blockchaincom_daily_2020_2025.csv"
BITCOINVISUALS_FILE = "btc_bitcoinvisuals_daily_2016_2025.csv"
FEES_FILE = "btc_fees_blockchaincom_daily.csv"
ELSPOT_DK2_FILE = "elspot_dk2_hourly_2019_2022.csv"
BELGIUM_FILE = "entsoe_belgium_dam_hourly_2022_2024.csv"
EIA_FILE = "eia_table5_3_avg_retail_price_by_sector_cents_kwh.csv"

#: Consensus constants of Bitcoin.
HALVING_INTERVAL_BLOCKS = 210_000
INITIAL_SUBSIDY_SAT = 50 * 100_000_000
SAT_PER_BTC = 100_000_000
DIFFICULTY_EPOCH_BLOCKS = 2016
TARGET_BLOCK_SECONDS = 600
HASHES_PER_DIFFICULTY = 2**32
SECONDS_PER_DAY = 86_400
TERA = 1e12

#: Coin Metrics covers block counts/fees/price to this day; later days come from other files.
COINMETRICS_LAST_DAY = pd.Timestamp("2020-07-27")
#: blockchain.com difficulty starts here; earlier days use Coin Metrics DiffMean.
BLOCKCHAINCOM_FIRST_DAY = pd.Timestamp("2020-04-11")
#: First day of the daily frame (Bitcoin Visuals starts here).
FIRST_DAY = pd.Timestamp("2016-01-01")
#: Days at the start of a fee gap filled by carrying fees per block forward; later days of
#: the gap stay NaN. Two isolated single days are missing in the blockchain.com export (see
#: data/README.md); a year-long gap (2022-04-30 .. 2023-04-29) is not something to invent.
#: The decision is causal (days missing so far), so a long gap's first days are filled too.
MAX_FEE_IMPUTE_GAP_DAYS = 3
#: Tolerance (blocks) when turning a day's subsidy into a block count.
BLOCK_COUNT_TOLERANCE = 0.01
#: UTC day of the first block of each halving after the Coin Metrics era. Needed because
#: counting blocks from daily subsidies drifts by a couple of blocks over four years, which
#: is enough to split the wrong day. Block 840,000 on 20 Apr 2024: ../shared/docs/landscape.md
#: section 6; the Bitcoin Visuals subsidy that day (406.25 BTC = 130 x 3.125) agrees.
HALVING_DAYS = {840_000: pd.Timestamp("2024-04-20")}


def subsidy_sat(height: int) -> int:
    """Block subsidy in satoshi of the block at ``height`` (halving schedule)."""
    era = height // HALVING_INTERVAL_BLOCKS
    return INITIAL_SUBSIDY_SAT >> era if era < 64 else 0


def subsidy_btc_range(first_height: int, n_blocks: int) -> float:
    """Total subsidy (BTC) of ``n_blocks`` consecutive blocks starting at ``first_height``."""
    total = 0
    h = first_height
    end = first_height + n_blocks
    while h < end:
        boundary = (h // HALVING_INTERVAL_BLOCKS + 1) * HALVING_INTERVAL_BLOCKS
        stop = min(end, boundary)
        total += (stop - h) * subsidy_sat(h)
        h = stop
    return total / SAT_PER_BTC


def next_halving_height(height: int) -> int:
    """Height of the first block of the next subsidy era after ``height``."""
    return (height // HALVING_INTERVAL_BLOCKS + 1) * HALVING_INTERVAL_BLOCKS


def blocks_from_subsidy(last_height: int, subsidy_btc: float) -> int:
    """Count the blocks after ``last_height`` whose subsidies sum to ``subsidy_btc``."""
    first = last_height + 1
    per_block = subsidy_sat(first) / SAT_PER_BTC
    before_halving = next_halving_height(first) - first
    if subsidy_btc <= before_halving * per_block + 1e-9:
        n = subsidy_btc / per_block
    else:
        n = before_halving + (subsidy_btc - before_halving * per_block) / (per_block / 2)
    if abs(n - round(n)) > BLOCK_COUNT_TOLERANCE:
        log.debug("non_integer_block_count", last_height=last_height, blocks=n)
    return round(n)


def expected_blocks_per_th_day(difficulty: pd.Series | np.ndarray | float) -> pd.Series:
    """Return the expected blocks found per day by 1 TH/s at ``difficulty``."""
    return SECONDS_PER_DAY * TERA / (np.asarray(difficulty, dtype=float) * HASHES_PER_DIFFICULTY)


def _read(name: str, data_dir: Path, **kwargs: object) -> pd.DataFrame:
    path = data_dir / name
    if not path.is_file():
        raise FileNotFoundError(f"market data file missing: {path} (see data/README.md)")
    return pd.read_csv(path, **kwargs)


def _daily(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    frame = frame.copy()
    frame[column] = pd.to_datetime(frame[column].astype(str).str[:10])
    return frame.set_index(column).sort_index()


def _block_counts(cm: pd.DataFrame, bv: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Daily block counts and end-of-day heights from Coin Metrics then Bitcoin Visuals."""
    cm_blocks = cm["BlkCnt"].fillna(0).astype(int)
    # Cumulative BlkCnt is the height of the day's last block (the genesis block is not
    # counted); checked against IssTotNtv on the 2016 and 2020 halving days in the tests.
    cm_height = cm_blocks.cumsum()
    days = pd.date_range(FIRST_DAY, bv.index.max(), freq="D")
    blocks = pd.Series(np.nan, index=days)
    height = pd.Series(np.nan, index=days)
    in_cm = days[days <= COINMETRICS_LAST_DAY]
    blocks.loc[in_cm] = cm_blocks.reindex(in_cm).to_numpy()
    height.loc[in_cm] = cm_height.reindex(in_cm).to_numpy()
    last = int(cm_height.loc[COINMETRICS_LAST_DAY])
    for day in days[days > COINMETRICS_LAST_DAY]:
        mined = bv["BTC"].get(day, np.nan)
        if not np.isfinite(mined):
            raise ValueError(
                f"Bitcoin Visuals subsidy missing on {day.date()}; cannot track height"
            )
        boundary = next_halving_height(last)
        anchor = HALVING_DAYS.get(boundary)
        if anchor is not None and day < anchor:
            n = round(float(mined) / (subsidy_sat(boundary - 1) / SAT_PER_BTC))
            last = min(last + n, boundary - 1)  # the drifted count may not cross early
        else:
            if anchor is not None and day == anchor:
                last = min(last, boundary - 1)
            n = blocks_from_subsidy(last, float(mined))
            last += n
        blocks.loc[day] = n
        height.loc[day] = last
    return blocks.astype(int), height.astype(int)


def _merge_fees(cm: pd.DataFrame, fees: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    out = pd.DataFrame(index=days)
    out["fees_btc"] = np.nan
    out["fees_src"] = None
    cm_days = days[days <= COINMETRICS_LAST_DAY]
    out.loc[cm_days, "fees_btc"] = cm["FeeTotNtv"].reindex(cm_days).to_numpy()
    out.loc[cm_days, "fees_src"] = "coinmetrics"
    bc = fees["fees_btc"]
    bc_days = days[(days > COINMETRICS_LAST_DAY) & days.isin(bc.index)]
    out.loc[bc_days, "fees_btc"] = bc.reindex(bc_days).to_numpy()
    out.loc[bc_days, "fees_src"] = "blockchain.com"
    return out


def _impute_short_fee_gaps(frame: pd.DataFrame, max_gap: int) -> None:
    """Fill the first ``max_gap`` days of every fee gap; flag them in ``fees_imputed``.

    Causal: whether day t is filled depends only on days up to t (how many days in a row
    have been missing so far, and whether any day before was known), never on when the gap
    will end. The last known fees per block are carried forward, times the day's block count.
    So a short gap (the two isolated missing days) is filled completely; a long gap has its
    first ``max_gap`` days filled, as a live feed would have, and stays NaN after that.
    """
    per_block = frame["fees_btc"] / frame["blocks"]
    missing = per_block.isna()
    run_id = (missing != missing.shift()).cumsum()
    days_missing_so_far = missing.astype(int).groupby(run_id).cumsum()
    seen_before = per_block.notna().cummax()
    fill = missing & (days_missing_so_far <= max_gap) & seen_before
    carried = per_block.ffill()
    frame["fees_imputed"] = fill
    frame.loc[fill, "fees_btc"] = carried[fill] * frame.loc[fill, "blocks"]
    frame.loc[fill, "fees_src"] = "imputed:carry_forward_fee_per_block"


def load_btc_daily(
    data_dir: Path = DATA_DIR, max_fee_impute_gap_days: int = MAX_FEE_IMPUTE_GAP_DAYS
) -> pd.DataFrame:
    """Daily BTC network and hashprice frame, 2016-01-01 .. 2025-03-08 (index: UTC day).

    Columns: ``blocks``, ``height`` (end of day), ``subsidy_btc``, ``fees_btc``,
    ``fees_src``, ``fees_missing`` (no fee data for the day, before imputation),
    ``fees_imputed``, ``difficulty``, ``difficulty_src``, ``price_usd``, ``price_src``,
    ``hashrate_ths`` (published estimate, for reference), ``exp_blocks_per_th``,
    ``subsidy_per_block_btc``, ``fees_per_block_btc``, ``fee_share``,
    ``hashprice`` (USD/TH/day; NaN where fees are missing and not imputed) and
    ``hashprice_subsidy_only`` (never NaN). ``max_fee_impute_gap_days=0`` disables imputation.
    """
    cm = _daily(_read(COINMETRICS_FILE, data_dir), "time")
    bc = _daily(_read(BLOCKCHAINCOM_FILE, data_dir), "Date")
    bv = _daily(_read(BITCOINVISUALS_FILE, data_dir), "DateTime")
    fees = _daily(_read(FEES_FILE, data_dir), "date")

    blocks, height = _block_counts(cm, bv)
    days = blocks.index
    frame = pd.DataFrame({"blocks": blocks, "height": height}, index=days)
    frame.index.name = "date"
    # Observed issuance: Coin Metrics IssTotNtv, then Bitcoin Visuals (equal on overlap).
    frame["subsidy_btc"] = np.where(
        days <= COINMETRICS_LAST_DAY, cm["IssTotNtv"].reindex(days), bv["BTC"].reindex(days)
    )

    in_cm_diff = days < BLOCKCHAINCOM_FIRST_DAY
    frame["difficulty"] = np.where(
        in_cm_diff, cm["DiffMean"].reindex(days), bc["difficulty"].reindex(days)
    )
    frame["difficulty_src"] = np.where(in_cm_diff, "coinmetrics", "blockchain.com")
    frame["hashrate_ths"] = np.where(
        in_cm_diff, cm["HashRate"].reindex(days), bc["hash-rate"].reindex(days)
    )

    in_cm = days <= COINMETRICS_LAST_DAY
    price = pd.Series(
        np.where(in_cm, cm["PriceUSD"].reindex(days), bv["Price"].reindex(days)), index=days
    )
    src = pd.Series(np.where(in_cm, "coinmetrics", "coinmarketcap"), index=days, dtype=object)
    gap = price.isna()
    price[gap] = bc["Close"].reindex(days)[gap]
    src[gap] = "yahoo"
    frame["price_usd"] = price
    frame["price_src"] = src
    if frame["price_usd"].isna().any():
        raise ValueError("price missing after all sources were merged")

    frame = frame.join(_merge_fees(cm, fees, days))
    frame["fees_missing"] = frame["fees_btc"].isna()
    if max_fee_impute_gap_days > 0:
        _impute_short_fee_gaps(frame, max_fee_impute_gap_days)
    else:
        frame["fees_imputed"] = False

    frame["exp_blocks_per_th"] = expected_blocks_per_th_day(frame["difficulty"])
    frame["subsidy_per_block_btc"] = frame["subsidy_btc"] / frame["blocks"]
    frame["fees_per_block_btc"] = frame["fees_btc"] / frame["blocks"]
    frame["fee_share"] = frame["fees_btc"] / (frame["fees_btc"] + frame["subsidy_btc"])
    revenue_factor = frame["exp_blocks_per_th"] * frame["price_usd"]
    frame["hashprice"] = revenue_factor * (
        frame["subsidy_per_block_btc"] + frame["fees_per_block_btc"]
    )
    frame["hashprice_subsidy_only"] = revenue_factor * frame["subsidy_per_block_btc"]
    log.info(
        "btc_daily_loaded",
        days=len(frame),
        first=str(days[0].date()),
        last=str(days[-1].date()),
        fees_missing=int(frame["fees_missing"].sum()),
        fees_imputed=int(frame["fees_imputed"].sum()),
    )
    return frame


# --------------------------------------------------------------------------- electricity


def load_elspot_dk2(data_dir: Path = DATA_DIR) -> pd.Series:
    """Nord Pool DK2 day-ahead price, EUR/MWh, indexed by UTC hour start (tz-aware)."""
    raw = _read(ELSPOT_DK2_FILE, data_dir)
    idx = pd.to_datetime(raw["HourUTC"], utc=True)
    series = pd.Series(raw["SpotPriceEUR"].to_numpy(dtype=float), index=idx, name="eur_per_mwh")
    return series.sort_index()


def load_belgium_dam(data_dir: Path = DATA_DIR) -> pd.Series:
    """Belgian day-ahead price (ENTSO-E), EUR/MWh, indexed by UTC hour start (tz-aware)."""
    raw = _read(BELGIUM_FILE, data_dir)
    idx = pd.to_datetime(raw["time_utc"], utc=True)
    # The file is EUR/kWh (original unit); x1000 gives EUR/MWh like the other series.
    series = pd.Series(
        raw["DAM_price"].to_numpy(dtype=float) * 1000.0, index=idx, name="eur_per_mwh"
    )
    return series.sort_index()


def load_eia_retail(data_dir: Path = DATA_DIR, monthly: bool = True) -> pd.DataFrame:
    """U.S. EIA average retail price by sector, cents/kWh (monthly PeriodIndex or annual)."""
    raw = _read(EIA_FILE, data_dir, dtype={"period": str})
    kind = "monthly" if monthly else "annual"
    part = raw[raw["period_type"] == kind].drop(columns="period_type")
    freq = "M" if monthly else "Y"
    part.index = pd.PeriodIndex(part.pop("period"), freq=freq)
    return part.sort_index()


def breakeven_power_price(hashprice_per_th_day: float, j_per_th: float) -> float:
    """Power price (same currency per MWh) at which a unit of ``j_per_th`` just breaks even."""
    if j_per_th <= 0:
        raise ValueError("j_per_th must be positive")
    mwh_per_th_day = j_per_th * 24.0 / 1e6  # W per TH/s x 24 h -> Wh -> MWh
    return hashprice_per_th_day / mwh_per_th_day


@dataclass(frozen=True)
class CurtailmentSummary:
    """What running only when the power price is below a threshold would have meant."""

    hours: int
    hours_curtailed: int
    fraction_curtailed: float
    mean_price_all: float
    mean_price_running: float


def curtailment_summary(prices: pd.Series, threshold: float) -> CurtailmentSummary:
    """Summarise an hourly price series against a run/curtail ``threshold`` (per MWh)."""
    clean = prices.dropna()
    if clean.empty:
        raise ValueError("no prices to summarise")
    running = clean[clean <= threshold]
    return CurtailmentSummary(
        hours=len(clean),
        hours_curtailed=int((clean > threshold).sum()),
        fraction_curtailed=float((clean > threshold).mean()),
        mean_price_all=float(clean.mean()),
        mean_price_running=float(running.mean()) if len(running) else float("nan"),
    )
