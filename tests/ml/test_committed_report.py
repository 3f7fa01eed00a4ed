"""The committed evaluation report (reports/profit-models) shows what the issue must show.

``metrics.json`` is written by the same ``hashpilot-central train`` run as ``report.md``
(the bundle manifest's per-model metrics plus the walk-forward folds), so these gates
check the committed numbers, and that the report's text says what those numbers support.
"""

from __future__ import annotations

import json
import re

import pytest

from central.report import DM_ALPHA
from tests.conftest import REPO

REPORT_DIR = REPO / "reports" / "profit-models"
HORIZONS = ("hashprice_h1", "hashprice_h7")
#: Nominal p10-p90 coverage and the issue's allowed distance from it.
NOMINAL, MAX_MISS = 0.80, 0.05
#: Compiled vs XGBoost agreement the issue asks for.
MAX_ABS_DIFF = 1e-4
#: A unit whose health is unknown must be predicted about as well as by a model that never
#: saw health (held-out-unit MAE within 10 %). Measured before health dropout: 1.47x
#: (hashrate) and 1.21x (power) that reference; with 25 % dropout 1.03x and 0.99x.
MAX_UNKNOWN_VS_NO_HEALTH = 1.10


@pytest.fixture(scope="module")
def metrics():
    return json.loads((REPORT_DIR / "metrics.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def report():
    return (REPORT_DIR / "report.md").read_text(encoding="utf-8")


def _section(report: str, name: str) -> str:
    start = report.index(f"### {name}:")
    end = report.find("\n### ", start + 1)
    end = report.find("\n## ", start) if end < 0 else end
    return report[start:end]


@pytest.mark.parametrize("name", HORIZONS)
def test_interval_coverage_is_within_five_points_of_nominal(metrics, report, name):
    cov = metrics["models"][name]["coverage_p10_p90"]
    assert abs(cov - NOMINAL) <= MAX_MISS, f"{name}: p10-p90 coverage {cov:.3f}"
    # and the report states that same number
    assert f"p10-p90 interval coverage **{100 * cov:.1f} %**" in _section(report, name)


@pytest.mark.parametrize("name", HORIZONS)
def test_verdict_in_the_report_matches_the_tests_behind_it(metrics, report, name):
    m = metrics["models"][name]
    text = _section(report, name)
    verdict = re.search(r"\*\*Verdict: (.*?)\.\*\*", text)
    assert verdict is not None
    headline = verdict.group(1)
    beats = (
        m["skill_mae_vs_persistence"] > 0 and m["dm_vs_persistence_abs_error"]["p_value"] < DM_ALPHA
    )
    assert ("beats persistence" in headline) == beats
    trees_sig = m["dm_vs_schedule_only_abs_error"]["p_value"] < DM_ALPHA
    added = m["skill_mae_vs_persistence"] - m["skill_mae_schedule_only_vs_persistence"]
    if not trees_sig:
        assert "no significant skill over the schedule-only baseline" in headline
    folds = metrics["hashprice_folds"][name]
    if all(f["skill_mae_vs_persistence"] < 0 for f in folds[-2:]):
        assert "most recent folds are below persistence" in headline
    if "small edge" in text:
        assert beats
        assert trees_sig
        assert added > 0


def test_every_compiled_model_matches_xgboost(metrics):
    assert set(metrics["verification"]) >= {*HORIZONS, "miner_hashrate", "miner_power"}
    for name, ver in metrics["verification"].items():
        assert ver["rows"] >= 10_000, name
        assert ver["max_abs_diff"] <= MAX_ABS_DIFF, name


@pytest.mark.parametrize("name", ["miner_hashrate", "miner_power", "miner_chip_temp"])
def test_unknown_health_gets_a_sane_prediction(metrics, report, name):
    m = metrics["models"][name]
    known, unknown = m["held_out_units"]["mae"], m["held_out_units_health_unknown"]["mae"]
    reference = m["held_out_units_model_without_health"]["mae"]
    assert m["health_dropout"] > 0
    assert unknown <= MAX_UNKNOWN_VS_NO_HEALTH * reference, (name, unknown, reference)
    assert known < reference, (name, known, reference)  # and known health does help
    assert "health unknown |" in report
