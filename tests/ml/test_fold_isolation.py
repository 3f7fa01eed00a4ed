"""Fold isolation of the hashprice walk-forward: poisoning the future must not move fold i.

For fold i, the hashprice from the first day of its test block on is scrambled (so every
target whose window reaches into the block changes: the test block's own rows, all later
rows and the last h rows before it), and the targets of the block and later rows are
shuffled as well. Fold i's predictions, selected features and interval quantiles must be
bit-identical; later folds (which legitimately train on the poisoned rows) must change.
Tiny configurations keep it fast: 3 short folds, one search config, 60 rounds.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from central import train
from central.dataset import make_frame, targets

#: Data end for the test (scored period 2019-01 .. 2020-06 in three folds).
CUT = "2020-06-30"
FOLD = 1
TINY = {"n_folds": 3, "n_search": 1, "max_rounds": 60}


def _poisoned(btc: pd.DataFrame, frame, start: pd.Timestamp, seed: int):
    rng = np.random.default_rng(seed)
    bad = btc.copy()
    later = bad.index >= start
    bad.loc[later, "hashprice"] *= np.exp(rng.normal(0.0, 0.5, int(later.sum())))
    y = targets(bad, frame.horizon).reindex(frame.X.index)
    rows = np.flatnonzero(frame.dates >= start)
    y.iloc[rows] = rng.permutation(y.iloc[rows].to_numpy())
    assert y.notna().all()
    return dataclasses.replace(frame, y=y)


def _fold(wf: train.WalkForward, i: int) -> tuple[np.ndarray, list[str], dict[str, float]]:
    f = wf.folds[i]
    return wf.oof.loc[wf.oof["fold"] == i, "log_pred"].to_numpy(), f["features"], f["quantiles"]


@pytest.fixture(scope="module")
def frames(btc):
    short = btc.loc[:CUT]
    return {h: make_frame(short, h) for h in (1, 7)}


@pytest.fixture(scope="module")
def clean(frames):
    """Unpoisoned walk-forward results per horizon (computed once)."""
    return {h: train.walk_forward(frame, **TINY) for h, frame in frames.items()}


@pytest.mark.parametrize("h", [1, 7])
def test_poisoning_fold_i_and_later_leaves_fold_i_unchanged(btc, frames, clean, h):
    frame = frames[h]
    clean = clean[h]
    start = pd.Timestamp(clean.folds[FOLD]["test_start"])
    dirty = train.walk_forward(_poisoned(btc.loc[:CUT], frame, start, seed=h), **TINY)
    pred, feats, quant = _fold(clean, FOLD)
    pred_p, feats_p, quant_p = _fold(dirty, FOLD)
    assert np.array_equal(pred, pred_p)
    assert feats == feats_p
    assert quant == quant_p
    assert clean.folds[FOLD]["calibration_rows"] == dirty.folds[FOLD]["calibration_rows"]
    # the poison did arrive: fold i is scored on changed actuals, fold i+1 trains on them
    assert clean.folds[FOLD]["mae"] != dirty.folds[FOLD]["mae"]
    assert not np.array_equal(_fold(clean, FOLD + 1)[0], _fold(dirty, FOLD + 1)[0])


def test_the_poisoning_test_catches_calibration_on_overlapping_targets(
    btc, frames, clean, monkeypatch
):
    """With the h-day rule removed from calibration, the same poisoning moves fold i."""
    frame = frames[7]
    start = pd.Timestamp(clean[7].folds[FOLD]["test_start"])
    monkeypatch.setattr(train, "calibration_residuals", lambda resid, h, s: resid.to_numpy())
    leaky = train.walk_forward(frame, **TINY)
    dirty = train.walk_forward(_poisoned(btc.loc[:CUT], frame, start, seed=7), **TINY)
    assert _fold(leaky, FOLD)[2] != _fold(dirty, FOLD)[2]


def test_calibration_uses_only_earlier_folds_with_a_gap(clean):
    wf = clean[7]
    assert len(wf.burn_in) == train.N_BURN_IN_FOLDS
    resid_days = pd.DatetimeIndex(wf.residuals.index)
    for f in wf.folds:
        start = pd.Timestamp(f["test_start"])
        usable = int((resid_days + pd.Timedelta(days=7) < start).sum())
        assert f["calibration_rows"] == usable
        before = int((resid_days < start).sum())
        assert before - usable == 7  # the previous fold's last h rows are dropped
