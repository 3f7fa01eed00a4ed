"""Hashprice training frame: features known at the end of day t, targets over days t+1..t+h.

Every feature at row t uses only data up to and including day t. The target is scale-free:
``log(mean(hashprice[t+1 .. t+h]) / hashprice[t])``, so the 2016-2025 level shifts (a
factor of ~7) do not push tree splits out of range. Dynamics are taken from the
subsidy-only hashprice (complete) and fees enter through separate fee-share features
(NaN where fees are missing), so the one-year fee gap does not wipe out the price history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from central.market import DIFFICULTY_EPOCH_BLOCKS, HALVING_INTERVAL_BLOCKS, subsidy_sat

#: Forecast horizons (days) for the mean hashprice target.
HORIZONS = (1, 7)
#: Target difficulty period in days (2016 blocks x 10 minutes).
EPOCH_TARGET_DAYS = DIFFICULTY_EPOCH_BLOCKS * 600 / 86_400
#: Trailing days used to estimate the current block rate (hash rate vs difficulty).
BLOCK_RATE_DAYS = 7
#: Trailing window for the volatility feature that also scales the conformal intervals.
VOL_DAYS = 30
#: Rows before this day only serve as lookback for the first features.
FEATURE_WARMUP_DAYS = 40
#: Features whose value (times sqrt(h)) scales the prediction intervals: the full-hashprice
#: volatility, or the subsidy-only one where fees were missing in the last 30 days.
SCALE_FEATURES = ("hp_vol_30d", "vol_30d")
#: Floor on the interval scale (log units per day) so a calm month cannot collapse intervals.
SCALE_FLOOR = 0.005

#: Candidate features that do not depend on the horizon, in schema order.
BASE_FEATURES = (
    "ret_1d",
    "ret_3d",
    "ret_7d",
    "ret_14d",
    "ret_30d",
    "price_ret_1d",
    "price_ret_7d",
    "price_ret_30d",
    "vol_7d",
    "vol_30d",
    "hp_vol_30d",
    "ma7_gap",
    "ma30_gap",
    "fee_share",
    "fee_uplift_vs_7d",
    "fee_uplift_vs_30d",
    "epoch_progress",
    "days_to_adjust",
    "implied_adj_log",
    "hashrate_growth_30d",
    "days_to_halving",
    "dow",
)


def offset_features(h: int) -> tuple[str, str]:
    """Features whose sum is the scheduled (known-in-advance) log change over horizon ``h``."""
    return (f"sched_diff_{h}d", f"sched_halving_{h}d")


def horizon_features(h: int) -> tuple[str, ...]:
    """All candidate features for horizon ``h``: the base set plus the scheduled effects."""
    return (*BASE_FEATURES, *offset_features(h))


def _scheduled_log_change(days_until: pd.Series, factor_after: pd.Series, h: int) -> pd.Series:
    """Log of the mean multiplicative effect over days t+1..t+h of a change ``days_until`` away."""
    acc = pd.Series(0.0, index=days_until.index)
    for k in range(1, h + 1):
        frac = (k - days_until).clip(lower=0.0, upper=1.0)
        acc += 1.0 - frac + frac * factor_after
    return np.log(acc / h)


def build_features(btc: pd.DataFrame) -> pd.DataFrame:
    """Every candidate feature for every day of ``btc`` (from ``market.load_btc_daily``)."""
    hps = btc["hashprice_subsidy_only"]
    lhps = np.log(hps)
    step = lhps.diff()
    lprice = np.log(btc["price_usd"])
    out = pd.DataFrame(index=btc.index)
    for k in (1, 3, 7, 14, 30):
        out[f"ret_{k}d"] = lhps - lhps.shift(k)
    for k in (1, 7, 30):
        out[f"price_ret_{k}d"] = lprice - lprice.shift(k)
    out["vol_7d"] = step.rolling(7).std()
    out["vol_30d"] = step.rolling(VOL_DAYS).std()
    # Volatility of the full hashprice (fees included); NaN inside the fee gap.
    out["hp_vol_30d"] = np.log(btc["hashprice"]).diff().rolling(VOL_DAYS, min_periods=15).std()
    out["ma7_gap"] = lhps - np.log(hps.rolling(7).mean())
    out["ma30_gap"] = lhps - np.log(hps.rolling(30).mean())

    fee_share = btc["fee_share"]
    uplift = -np.log1p(-fee_share)  # = log(hashprice / subsidy-only hashprice)
    out["fee_share"] = fee_share
    out["fee_uplift_vs_7d"] = uplift - uplift.rolling(7, min_periods=4).mean()
    out["fee_uplift_vs_30d"] = uplift - uplift.rolling(30, min_periods=15).mean()

    height = btc["height"]
    blocks = btc["blocks"].astype(float)
    rate = blocks.rolling(BLOCK_RATE_DAYS).mean()  # blocks/day now
    pos = height % DIFFICULTY_EPOCH_BLOCKS  # blocks already mined in this epoch
    out["epoch_progress"] = pos / DIFFICULTY_EPOCH_BLOCKS
    out["days_to_adjust"] = (DIFFICULTY_EPOCH_BLOCKS - pos) / rate
    elapsed = _epoch_elapsed_days(height, blocks)
    duration = elapsed + out["days_to_adjust"]
    out["implied_adj_log"] = np.log(EPOCH_TARGET_DAYS / duration)
    work = blocks * btc["difficulty"]  # proportional to hash rate x 1 day
    out["hashrate_growth_30d"] = np.log(work.rolling(7).mean() / work.shift(7).rolling(30).mean())

    next_halving = (height // HALVING_INTERVAL_BLOCKS + 1) * HALVING_INTERVAL_BLOCKS
    out["days_to_halving"] = (next_halving - height) / rate
    out["dow"] = btc.index.day_of_week.astype(float)

    per_block = np.array([subsidy_sat(int(x) + 1) for x in height]) / 1e8
    per_block = pd.Series(per_block, index=btc.index)
    # Fee per block for the halving effect; where fees are unknown the effect is computed on
    # the subsidy alone (the fee_share feature is NaN there, so the model sees the gap).
    fee_pb = (btc["fees_per_block_btc"].rolling(7, min_periods=4).mean()).fillna(0.0)
    halving_factor = (per_block / 2 + fee_pb) / (per_block + fee_pb)
    diff_factor = np.exp(-out["implied_adj_log"])
    for h in HORIZONS:
        out[f"sched_diff_{h}d"] = _scheduled_log_change(out["days_to_adjust"], diff_factor, h)
        out[f"sched_halving_{h}d"] = _scheduled_log_change(
            out["days_to_halving"], halving_factor, h
        )
    return out


def _epoch_elapsed_days(height: pd.Series, blocks: pd.Series) -> pd.Series:
    """Days since the current difficulty epoch began, counting the start day fractionally."""
    epoch = height // DIFFICULTY_EPOCH_BLOCKS
    start_day = epoch.ne(epoch.shift()).cumsum()
    prev_height = height - blocks
    boundary = epoch * DIFFICULTY_EPOCH_BLOCKS
    # Fraction of the start day spent in the new epoch, from the share of that day's blocks.
    frac_first = ((height - boundary) / blocks.where(blocks > 0)).clip(0, 1)
    frac_first = frac_first.where(prev_height < boundary)
    first_frac = frac_first.groupby(start_day).transform("first")
    days_in = start_day.groupby(start_day).cumcount()
    return first_frac.fillna(1.0) + days_in


def targets(btc: pd.DataFrame, h: int) -> pd.Series:
    """``log(mean(hashprice[t+1..t+h]) / hashprice[t])``; NaN if any day lacks a hashprice."""
    hp = btc["hashprice"]
    future = hp[::-1].rolling(h, min_periods=h).mean()[::-1].shift(-1)
    return np.log(future / hp)


def ma7_baseline(btc: pd.DataFrame) -> pd.Series:
    """7-day moving-average forecast as a log ratio to today's hashprice."""
    hp = btc["hashprice"]
    return np.log(hp.rolling(7, min_periods=4).mean() / hp)


@dataclass(frozen=True)
class HashpriceFrame:
    """Rows usable for one horizon: features, target, today's hashprice and baselines.

    ``offset`` is the scheduled log change (difficulty adjustment + halving) implied by the
    features; the trees learn ``y - offset`` and every forecast adds the offset back.
    """

    horizon: int
    X: pd.DataFrame
    y: pd.Series
    offset: pd.Series
    hashprice_today: pd.Series
    ma7: pd.Series

    @property
    def dates(self) -> pd.DatetimeIndex:
        """Forecast issue days (end of day t)."""
        return pd.DatetimeIndex(self.X.index)


def make_frame(btc: pd.DataFrame, h: int, features: pd.DataFrame | None = None) -> HashpriceFrame:
    """Training rows for horizon ``h``: rows after warm-up with a defined target."""
    feats = build_features(btc) if features is None else features
    cols = list(horizon_features(h))
    y = targets(btc, h)
    keep = y.notna() & (btc.index >= btc.index[0] + pd.Timedelta(days=FEATURE_WARMUP_DAYS))
    X = feats.loc[keep, cols].astype(float)
    return HashpriceFrame(
        horizon=h,
        X=X,
        y=y[keep],
        offset=scheduled_offset(X, h),
        hashprice_today=btc.loc[keep, "hashprice"],
        ma7=ma7_baseline(btc)[keep],
    )


def scheduled_offset(X: pd.DataFrame, h: int) -> pd.Series:
    """Sum of the scheduled-effect features (missing counts as no scheduled change)."""
    a, b = offset_features(h)
    return X[a].fillna(0.0) + X[b].fillna(0.0)


def interval_scale(X: pd.DataFrame, h: int) -> np.ndarray:
    """Per-row interval scale: trailing daily volatility times sqrt(h), floored."""
    primary, fallback = (X[c].to_numpy(dtype=float) for c in SCALE_FEATURES)
    vol = np.where(np.isfinite(primary), primary, fallback)
    return np.maximum(np.nan_to_num(vol, nan=SCALE_FLOOR), SCALE_FLOOR) * np.sqrt(h)
