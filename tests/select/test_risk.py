"""Risk-aware selection on hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.ope import EstimateTable
from opelab.select import (
    Criterion,
    assess_criteria,
    lower_bound_criterion,
    safety_violation_rate_at_k,
    sharpe_ratio_at_k,
    value_criterion,
)

TRUE_J = np.array([1.0, 2.0, 3.0, 4.0])


def _table(with_bounds: bool = True) -> EstimateTable:
    estimates = np.array([[1.0, 2.0, 3.0, 4.0]])  # one estimator, right order
    lower = np.array([[0.9, 1.9, 0.5, -1.0]])  # but wide intervals for the two best policies
    upper = estimates + (estimates - lower)
    return EstimateTable(
        policy_names=("a", "b", "c", "d"),
        estimator_names=("x",),
        estimates=estimates,
        behavior_value=1.5,
        lower=lower if with_bounds else None,
        upper=upper if with_bounds else None,
        interval="t" if with_bounds else None,
        alpha=0.05 if with_bounds else None,
    )


def test_value_and_lower_bound_criteria_rank_differently():
    table = _table()
    frame = assess_criteria([value_criterion(table, TRUE_J), lower_bound_criterion(table, TRUE_J)], ks=[2, 3])
    by = frame.set_index(["criterion", "k"])
    # By value the top-2 are d, c (J 4, 3): best 4, std 0.7071 → SR = (4 − 1.5)/0.7071.
    assert by.loc[("value", 2), "sharpe_ratio"] == pytest.approx(2.5 / np.sqrt(0.5))
    # By lower bound the order is b (1.9), a (0.9), c (0.5), d (−1.0): top-2 = b, a (J 2, 1).
    lb = "lower_bound(t, alpha=0.05)"
    assert by.loc[(lb, 2), "best"] == 2.0 and by.loc[(lb, 2), "worst"] == 1.0
    assert by.loc[(lb, 2), "sharpe_ratio"] == pytest.approx(0.5 / np.sqrt(0.5))
    assert by.loc[(lb, 3), "best"] == 3.0
    assert by.loc[(lb, 3), "sharpe_ratio"] == sharpe_ratio_at_k(TRUE_J, table.lower[0], 1.5, 3)


def test_risk_measure_criterion_uses_its_own_truth_and_baseline():
    """A CVaR-style criterion: the top-k is judged by the true CVaR, against the behavior's CVaR."""
    true_cvar = np.array([0.5, 1.5, -2.0, 0.0])  # c and d are risky despite high values
    criterion = Criterion(
        name="cvar@0.1",
        estimator_names=("x", "y"),
        policy_names=("a", "b", "c", "d"),
        scores=np.array([[0.4, 1.4, -1.9, 0.1], [0.0, 0.0, 1.0, 2.0]]),  # x estimates CVaR well, y does not
        true_measure=true_cvar,
        behavior_measure=0.2,
    )
    frame = assess_criteria([criterion], ks=[2], true_values=TRUE_J, safety_threshold=2.5).set_index("estimator")
    # x picks b, a (true CVaR 1.5, 0.5): best 1.5, std 0.7071 → SR = 1.3/0.7071; both have J < 2.5.
    assert frame.loc["x", "sharpe_ratio"] == pytest.approx(1.3 / np.sqrt(0.5))
    assert frame.loc["x", "safety_violation_rate"] == 1.0
    # y picks d, c (true CVaR 0, −2): best 0 < 0.2 → SR 0; their J ≥ 2.5 → no violation.
    assert frame.loc["y", "sharpe_ratio"] == 0.0
    assert frame.loc["y", "safety_violation_rate"] == 0.0


def test_safety_violation_rate_by_hand():
    assert safety_violation_rate_at_k(TRUE_J, np.array([4.0, 3.0, 2.0, 1.0]), threshold=2.5, k=3) == pytest.approx(2 / 3)
    assert safety_violation_rate_at_k(TRUE_J, TRUE_J, threshold=2.5, k=2) == 0.0


def test_errors():
    with pytest.raises(ValueError, match="needs intervals"):
        lower_bound_criterion(_table(with_bounds=False), TRUE_J)
    with pytest.raises(ValueError, match=r"scores: expected shape \(1, 4\)"):
        Criterion("c", ("x",), ("a", "b", "c", "d"), np.zeros((2, 4)), TRUE_J, 0.0)
    with pytest.raises(ValueError, match="true_values: needed"):
        assess_criteria([value_criterion(_table(), TRUE_J)], ks=[2], safety_threshold=1.0)
