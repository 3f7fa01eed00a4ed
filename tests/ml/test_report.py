"""Report verdicts say what the tests support: vs persistence, vs the schedule, lately."""

from __future__ import annotations

import pytest

from central.report import hashprice_verdict


def _metrics(skill, p, sched, p_sched):
    return {
        "skill_mae_vs_persistence": skill,
        "dm_vs_persistence_abs_error": {"p_value": p},
        "skill_mae_schedule_only_vs_persistence": sched,
        "dm_vs_schedule_only_abs_error": {"p_value": p_sched},
    }


def _folds(*skills):
    return [
        {
            "test_start": f"20{19 + i}-01-01",
            "test_end": f"20{19 + i}-06-30",
            "skill_mae_vs_persistence": s,
        }
        for i, s in enumerate(skills)
    ]


#: The h7 numbers of the report the reviewer read (issue 5, SF1).
H7 = (
    _metrics(0.074, 0.003, 0.071, 0.793),
    _folds(0.05, -0.003, 0.216, 0.116, 0.089, 0.009, -0.014, -0.038),
)
#: The h1 numbers of the same report: trees +1.0 point, p = 0.184; one old negative fold.
H1 = (
    _metrics(0.035, 0.011, 0.025, 0.184),
    _folds(0.039, 0.024, -0.005, 0.081, 0.005, 0.026, 0.0, 0.039),
)


def test_schedule_only_edge_is_called_that_and_recent_losses_are_in_the_headline():
    headline, notes = hashprice_verdict(*H7)
    assert "beats persistence" in headline
    assert "the trees add no significant skill over the schedule-only baseline" in headline
    assert "the two most recent folds are below persistence" in headline
    assert "+0.3 points" in notes
    assert "p = 0.793" in notes
    assert "comes from the known schedule" in notes
    assert "2025-01-01 .. 2025-06-30 (-1.4 %)" in notes  # the recent folds, named
    assert "small edge" not in headline + notes


def test_no_recent_claim_when_the_latest_folds_are_fine():
    headline, notes = hashprice_verdict(*H1)
    assert "no significant skill over the schedule-only baseline" in headline
    assert "recent" not in headline
    assert "1 of 8 folds (2021-01)" in notes
    assert "small edge" not in notes


def test_small_edge_only_when_the_trees_earn_a_significant_small_win():
    headline, notes = hashprice_verdict(_metrics(0.06, 0.001, 0.02, 0.01), _folds(0.05, 0.07))
    assert headline == (
        "the forecast beats persistence; "
        "the trees add significant skill over the schedule-only baseline"
    )
    assert "small edge" in notes
    _headline, big_notes = hashprice_verdict(_metrics(0.25, 0.001, 0.02, 0.001), _folds(0.2, 0.3))
    assert "small edge" not in big_notes


@pytest.mark.parametrize(
    ("skill", "p", "expected"),
    [
        (0.01, 0.4, "the forecast is not distinguishable from persistence"),
        (-0.05, 0.01, "the forecast is worse than persistence"),
        (0.01, float("nan"), "the forecast is not distinguishable from persistence"),
    ],
)
def test_verdict_against_persistence(skill, p, expected):
    headline, notes = hashprice_verdict(_metrics(skill, p, 0.0, 0.5), _folds(0.01, -0.02))
    assert headline.startswith(expected)
    assert "small edge" not in notes
    assert "1 of the two most recent folds" in notes
