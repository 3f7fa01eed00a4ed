"""Evaluation report: Markdown plus PNG plots (matplotlib Agg) for both model families."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from central.compile import jsonable
from central.miner_model import MinerResult
from central.train import HashpriceResult

#: Plot size and resolution: readable in a Markdown viewer, a few hundred KB per figure.
FIG_SIZE = (10, 4)
FIG_DPI = 90
#: Window of the rolling interval coverage plot, rows (forecast days).
ROLLING_COVERAGE_DAYS = 90
#: Significance level of the Diebold-Mariano tests the verdicts rest on.
DM_ALPHA = 0.05
#: A significant MAE skill below this is called a small edge (and explained).
SMALL_EDGE_SKILL = 0.10
#: How many of the latest walk-forward folds the verdict looks at for recent performance.
RECENT_FOLDS = 2


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=FIG_DPI)
    plt.close(fig)
    return path.name


def _gain_importance(booster: Any) -> dict[str, float]:
    gains = booster.get_score(importance_type="total_gain")
    total = sum(gains.values()) or 1.0
    return {k: v / total for k, v in sorted(gains.items(), key=lambda kv: -kv[1])}


def plot_hashprice(res: HashpriceResult, out: Path) -> dict[str, str]:
    """Four figures for one horizon; returns {kind: file name}."""
    oof = res.oof
    files = {}
    daily = oof.reindex(pd.date_range(oof.index[0], oof.index[-1], freq="D"))  # gaps break lines
    fig, ax = plt.subplots(figsize=FIG_SIZE)
    ax.fill_between(
        daily.index,
        daily["p10"],
        daily["p90"],
        color="tab:blue",
        alpha=0.2,
        label="p10-p90 (conformal)",
    )
    ax.plot(daily.index, daily["actual"], color="black", lw=0.8, label="actual")
    ax.plot(daily.index, daily["pred"], color="tab:blue", lw=0.8, label="forecast (p50)")
    ax.set_yscale("log")
    ax.set_ylabel("USD / TH/s / day")
    ax.set_title(f"{res.name}: out-of-sample forecasts of the {res.horizon}-day mean hashprice")
    ax.legend(loc="upper right")
    files["timeline"] = _save(fig, out / f"{res.name}_timeline.png")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=FIG_SIZE, gridspec_kw={"width_ratios": [3, 1]})
    resid = np.log(daily["actual"] / daily["pred"])
    base = np.log(daily["actual"] / daily["today"])
    a1.plot(daily.index, base, color="grey", lw=0.6, label="persistence")
    a1.plot(daily.index, resid, color="tab:red", lw=0.6, label="model")
    a1.set_ylabel("log(actual / forecast)")
    a1.set_title("residuals over time")
    a1.legend(loc="lower left")
    bins = np.linspace(-0.3, 0.3, 61)
    a2.hist(base.dropna().clip(-0.3, 0.3), bins=bins, color="grey", alpha=0.5)
    a2.hist(resid.dropna().clip(-0.3, 0.3), bins=bins, color="tab:red", alpha=0.5)
    a2.set_title("histogram (clipped ±0.3)")
    files["residuals"] = _save(fig, out / f"{res.name}_residuals.png")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=FIG_SIZE)
    inside = ((oof["actual"] >= oof["p10"]) & (oof["actual"] <= oof["p90"])).astype(float)
    rolling = inside.rolling(ROLLING_COVERAGE_DAYS, min_periods=30).mean()
    a1.plot(daily.index, rolling.reindex(daily.index), color="tab:blue")
    a1.axhline(0.8, color="black", ls="--", lw=0.8)
    a1.axhspan(0.75, 0.85, color="green", alpha=0.1)
    a1.set_ylim(0.4, 1.0)
    a1.set_title(f"p10-p90 coverage, rolling {ROLLING_COVERAGE_DAYS} forecasts (nominal 80 %)")
    folds = pd.DataFrame(res.folds)
    a2.bar(folds["fold"].astype(str), folds["coverage_p10_p90"], color="tab:blue")
    a2.axhline(0.8, color="black", ls="--", lw=0.8)
    a2.set_ylim(0.4, 1.0)
    a2.set_title("coverage per walk-forward fold")
    files["coverage"] = _save(fig, out / f"{res.name}_coverage.png")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=FIG_SIZE)
    gain = _gain_importance(res.booster)
    a1.barh(list(gain)[::-1], list(gain.values())[::-1], color="tab:green")
    a1.set_title("shipped model: share of total gain")
    perm = res.selection["permutation_importance"]
    order = sorted(perm, key=lambda k: perm[k])
    colors = ["tab:green" if k in res.features else "lightgrey" for k in order]
    a2.barh(order, [perm[k] for k in order], color=colors)
    a2.set_title("permutation importance on validation slice\n(green = selected)")
    a2.tick_params(axis="y", labelsize=7)
    files["importance"] = _save(fig, out / f"{res.name}_importance.png")
    return files


def plot_miner(results: list[MinerResult], out: Path) -> dict[str, str]:
    """Predicted vs actual (held-out units) and importance for the response models."""
    fig, axes = plt.subplots(1, len(results), figsize=(12, 4))
    for ax, res in zip(np.atleast_1d(axes), results, strict=True):
        ax.scatter(res.oof["actual"], res.oof["pred"], s=3, alpha=0.4)
        lo, hi = float(res.oof["actual"].min()), float(res.oof["actual"].max())
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.set_xlabel(f"actual {res.target}")
        ax.set_ylabel("predicted (unit held out)")
        ax.set_title(res.name)
    files = {"scatter": _save(fig, out / "miner_pred_vs_actual.png")}
    fig, axes = plt.subplots(1, len(results), figsize=(12, 4))
    for ax, res in zip(np.atleast_1d(axes), results, strict=True):
        gain = dict(list(_gain_importance(res.booster).items())[:10])
        ax.barh(list(gain)[::-1], list(gain.values())[::-1], color="tab:green")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{res.name}: gain share (top 10)")
    files["importance"] = _save(fig, out / "miner_importance.png")
    return files


_NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}


def _p(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"


def hashprice_verdict(m: dict[str, Any], folds: list[dict[str, Any]]) -> tuple[str, str]:
    """Headline and explanation of one horizon's verdict, from its metrics and folds.

    Three questions, each answered only as far as the tests support: does the forecast
    beat persistence (Diebold-Mariano on absolute errors), do the trees add anything over
    the schedule-only baseline (DM against it), and is it holding up in the latest folds.
    """
    skill = m["skill_mae_vs_persistence"]
    p_pers = m["dm_vs_persistence_abs_error"]["p_value"]
    sched = m["skill_mae_schedule_only_vs_persistence"]
    p_sched = m["dm_vs_schedule_only_abs_error"]["p_value"]
    added = 100 * (skill - sched)
    beats = skill > 0 and p_pers < DM_ALPHA
    if beats:
        head = "the forecast beats persistence"
    elif not p_pers < DM_ALPHA:
        head = "the forecast is not distinguishable from persistence"
    else:
        head = "the forecast is worse than persistence"
    trees_help = added > 0 and p_sched < DM_ALPHA
    if trees_help:
        trees = "the trees add significant skill over the schedule-only baseline"
    elif added < 0 and p_sched < DM_ALPHA:
        trees = "the trees make it significantly worse than the schedule-only baseline"
    else:
        trees = "the trees add no significant skill over the schedule-only baseline"
    recent = folds[-RECENT_FOLDS:]
    below = [f for f in recent if f["skill_mae_vs_persistence"] < 0]
    parts = [head, trees]
    if recent and len(below) == len(recent):
        n = len(recent)
        parts.append(
            f"the {_NUMBER_WORDS.get(n, n)} most recent folds are below persistence"
            if n > 1
            else "the most recent fold is below persistence"
        )
    headline = "; ".join(parts)
    span = ", ".join(
        f"{f['test_start']} .. {f['test_end']} ({_pct(f['skill_mae_vs_persistence'])})"
        for f in below
    )
    notes = [
        f"The known schedule alone (difficulty adjustment + halving, no trees) gives "
        f"{_pct(sched)} MAE skill, so the trees add {added:+.1f} points on top of it "
        f"(Diebold-Mariano vs schedule only p = {_p(p_sched)})."
    ]
    if not trees_help and skill > 0:
        notes.append(
            "Whatever edge over persistence there is comes from the known schedule, not from "
            "the learned part of the model."
        )
    negative = [f for f in folds if f["skill_mae_vs_persistence"] < 0]
    notes.append(
        f"It was worse than persistence in {len(negative)} of {len(folds)} folds"
        + (f" ({', '.join(f['test_start'][:7] for f in negative)})." if negative else ".")
    )
    if below:
        n_recent = _NUMBER_WORDS.get(len(recent), len(recent))
        which = (
            f"the {n_recent} most recent folds"
            if len(below) == len(recent) and len(recent) > 1
            else f"{len(below)} of the {n_recent} most recent folds"
        )
        notes.append(f"Below persistence in {which}: {span}.")
    if beats and trees_help and skill < SMALL_EDGE_SKILL:
        notes.append(
            "That is a small edge: hashprice is dominated by the BTC price, which this model "
            "does not forecast."
        )
    elif not beats:
        notes.append("Hashprice is dominated by the BTC price, which this model does not forecast.")
    return headline, " ".join(notes)


def _hashprice_section(res: HashpriceResult, figs: dict[str, str]) -> list[str]:
    m = res.metrics
    model, pers, ma7, sched = m["model"], m["persistence"], m["ma7"], m["schedule_only"]
    skill = m["skill_mae_vs_persistence"]
    dm = m["dm_vs_persistence_abs_error"]
    headline, notes = hashprice_verdict(m, res.folds)
    first, last = res.oof.index[0].date(), res.oof.index[-1].date()
    lines = [
        f"### {res.name}: mean hashprice over the next {res.horizon} day(s)",
        "",
        f"**Verdict: {headline}.** On {m['rows']} out-of-sample forecast days "
        f"({first} .. {last}): MAE {_pct(skill)} skill vs persistence "
        f"({model['mae']:.5f} vs {pers['mae']:.5f} USD/TH/day), RMSE "
        f"{_pct(m['skill_rmse_vs_persistence'])}; Diebold-Mariano on absolute errors "
        f"p = {_p(dm['p_value'])}. {notes}",
        "",
        f"p10-p90 interval coverage **{100 * m['coverage_p10_p90']:.1f} %** (nominal 80 %; "
        f"{100 * m['share_below_p10']:.1f} % below p10, nominal 10 %; "
        f"{100 * (1 - m['share_below_p90']):.1f} % above p90, nominal 10 %; "
        f"{100 * m['share_below_p50']:.1f} % below p50).",
        "",
        "| forecast | MAE | RMSE | MAPE % | directional acc. |",
        "|---|---|---|---|---|",
    ]
    for name, row in (
        ("model", model),
        ("persistence", pers),
        ("7-day moving average", ma7),
        ("schedule only", sched),
    ):
        lines.append(
            f"| {name} | {row['mae']:.5f} | {row['rmse']:.5f} | {row['mape']:.2f} | "
            f"{row['directional_accuracy']:.3f} |"
        )
    lines += [
        "",
        f"Skill vs the 7-day moving average ({m['ma7_rows']} rows where it exists): MAE "
        f"{_pct(m['skill_mae_vs_ma7'])}, RMSE {_pct(m['skill_rmse_vs_ma7'])}. Directional "
        "accuracy counts a flat move as its own class, so persistence (always 'flat') scores ~0.",
        "",
        "Walk-forward folds (each trains only on rows whose target window ends before the "
        "fold starts):",
        "",
        "| fold | test days | train rows | MAE skill vs persistence | coverage | features | "
        "objective, depth, rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in res.folds:
        p = f["params"]
        lines.append(
            f"| {f['fold']} | {f['test_start']} .. {f['test_end']} ({f['test_rows']}) | "
            f"{f['train_rows']} | {_pct(f['skill_mae_vs_persistence'])} | "
            f"{100 * f['coverage_p10_p90']:.0f} % | {len(f['features'])} | "
            f"{p['objective'].split(':')[1]}, {p['max_depth']}, {f['rounds']} |"
        )
    sel = res.selection
    counts = sel["times_selected_in_folds"]
    lines += [
        "",
        f"Shipped model: {len(res.features)} of {len(sel['candidates'])} candidate features "
        f"selected, params `{res.params}`, {res.rounds} trees, trained on {res.train_rows} rows.",
        "",
        "Selected features: " + ", ".join(f"`{f}`" for f in res.features) + ".",
        "",
        "Times each feature was selected across the folds: "
        + ", ".join(f"`{k}` {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        + ".",
        "",
        f"Interval quantiles of normalised residuals: q10 = {res.intervals['q10']:.3f}, "
        f"q90 = {res.intervals['q90']:.3f} (scale = 30-day volatility x sqrt({res.horizon})).",
        "",
    ]
    for kind in ("timeline", "residuals", "coverage", "importance"):
        lines.append(f"![{res.name} {kind}]({figs[kind]})")
        lines.append("")
    return lines


def _miner_section(results: list[MinerResult], figs: dict[str, str]) -> list[str]:
    first = results[0].metrics
    lines = [
        "## Miner response models (optimizer prior)",
        "",
        f"Telemetry: {first['rows']} rows from {first['units']} simulated units of "
        f"{first['profiles']} hardware profiles (`central/fleetdata.py`: SimUnit readings, "
        "one knob at a time, random ambient offsets, injected fan/board/chip faults). "
        "Simulated, not real: no real telemetry time series exist in ../shared/data.",
        "",
        "| target | held-out units MAE / RMSE / R² | held-out rows MAE / RMSE / R² | "
        "held-out hardware model MAE / RMSE / R² | MAPE (units) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        u, w, p = (
            r.metrics[k] for k in ("held_out_units", "held_out_rows", "held_out_hardware_model")
        )
        mape = f"{u['mape']:.1f} %" if "mape" in u else "n/a"
        lines.append(
            f"| {r.target} | {u['mae']:.2f} / {u['rmse']:.2f} / {u['r2']:.3f} | "
            f"{w['mae']:.2f} / {w['rmse']:.2f} / {w['r2']:.3f} | "
            f"{p['mae']:.2f} / {p['rmse']:.2f} / {p['r2']:.3f} | {mape} |"
        )
    for key, label in (
        ("held_out_units_health_unknown", "health unknown"),
        ("held_out_units_model_without_health", "model without health inputs"),
    ):
        for r in results:
            u = r.metrics[key]
            mape = f"{u['mape']:.1f} %" if "mape" in u else "n/a"
            lines.append(
                f"| {r.target}, {label} | {u['mae']:.2f} / {u['rmse']:.2f} / {u['r2']:.3f} "
                f"| - | - | {mape} |"
            )
    dropout = first.get("health_dropout", 0.0)
    lines += [
        "",
        f"Health dropout: every fit sets the whole health block missing on "
        f"{100 * dropout:.0f} % of its training rows, so a unit whose health is unknown (polled "
        "for less than the agent's health window, a fresh agent) gets a sane prediction; the "
        "*health unknown* rows score the same held-out units with every health input set "
        "missing, next to a model trained without any health input (the best a prediction "
        "without health can be expected to do). Health inputs are computed as the agent "
        "computes them from its polls (`agent.inference.miner.health_from_features`, "
        "parity-tested against the real drivers), "
        "including the ones a firmware does not report (stock Antminer: no power, so no chip "
        "rise per kW; Whatsminer V3: no hardware-error counter).",
        "",
        "Held-out *units* (GroupKFold by unit) is the number that matters for a prior; "
        "held-out rows is optimistic because rows of one unit sit on both sides of the split. "
        "The largest errors are over-temperature shutdowns (a unit with a failed fan at "
        "high ambient stops hashing) that the model often predicts as running.",
        "",
        f"![miner scatter]({figs['scatter']})",
        "",
        f"![miner importance]({figs['importance']})",
        "",
    ]
    return lines


def _burn_in_text(hashprice: list[HashpriceResult]) -> str:
    spans = {f"{b['test_start']} .. {b['test_end']}" for res in hashprice for b in res.burn_in}
    return "burn-in residuals from " + ", ".join(sorted(spans)) if spans else "no burn-in"


def write_report(
    out: Path,
    hashprice: list[HashpriceResult],
    miner: list[MinerResult],
    compiled: dict[str, Any],
    meta: dict[str, Any],
) -> Path:
    """Write ``out/report.md`` and its figures; return the Markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# hashpilot profit models: evaluation report",
        "",
        f"Generated {meta['created']} by `{meta['command']}` in {meta['seconds']:.0f} s "
        f"(xgboost {meta['xgboost']}, treelite {meta['treelite']}, tl2cgen {meta['tl2cgen']}).",
        "",
        "## Hashprice forecasts (real data)",
        "",
        "Data: daily BTC hashprice (USD per TH/s per day) computed in `central/market.py` from "
        "difficulty, the halving schedule, fees and price (Coin Metrics, blockchain.com, "
        "Bitcoin Visuals; provenance in `data/README.md`). Fee data are missing "
        "2022-04-30 .. 2023-04-29 and after 2025-02-02; the first 3 days of each gap carry the "
        "last fees per block forward (causal: a live feed cannot know how long a gap will "
        "last), later days have no hashprice and are neither trained on nor scored. Rows "
        "from 2016 train only; forecasts are scored walk-forward from 2019-01-01. Target: "
        "log(mean hashprice over days t+1..t+h / hashprice on day t); the trees learn what "
        "the scheduled effects do not explain.",
        "",
        "Intervals: normalised split-conformal, each fold calibrated only on earlier folds' "
        "out-of-sample residuals whose target windows end before the fold starts (the "
        "validation slice that chose rounds, configuration and features is never used). The "
        f"first folds are calibrated on {_burn_in_text(hashprice)}, walk-forward folds that "
        "are fitted like the scored ones but never scored.",
        "",
    ]
    for res in hashprice:
        lines += _hashprice_section(res, plot_hashprice(res, out))
    lines += _miner_section(miner, plot_miner(miner, out))
    lines += [
        "## Compiled models vs XGBoost",
        "",
        "| model | rows | max abs diff (batch shim) | max abs diff (single-row ctypes) |",
        "|---|---|---|---|",
    ]
    for name, ver in compiled.items():
        lines.append(
            f"| {name} | {ver['rows']} | {ver['max_abs_diff']:.2e} | "
            f"{ver['row_path_max_abs_diff']:.2e} |"
        )
    lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_metrics(out: Path, manifest: dict[str, Any], hashprice: list[HashpriceResult]) -> Path:
    """Write ``out/metrics.json``: the bundle's per-model metrics and the hashprice folds.

    The committed copy next to ``report.md`` is what tests/ml/test_committed_report.py
    gates on, so the must-show numbers are checked against what the code produced.
    """
    out.mkdir(parents=True, exist_ok=True)
    body = {
        "bundle_id": manifest["bundle_id"],
        "created": manifest["created"],
        "models": {name: entry["metrics"] for name, entry in manifest["models"].items()},
        "verification": {name: entry["verification"] for name, entry in manifest["models"].items()},
        "hashprice_folds": {
            res.name: [
                {
                    k: f[k]
                    for k in (
                        "test_start",
                        "test_end",
                        "test_rows",
                        "calibration_rows",
                        "skill_mae_vs_persistence",
                        "coverage_p10_p90",
                    )
                }
                for f in res.folds
            ]
            for res in hashprice
        },
        "hashprice_burn_in": {res.name: res.burn_in for res in hashprice},
    }
    path = out / "metrics.json"
    path.write_text(json.dumps(jsonable(body), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path
