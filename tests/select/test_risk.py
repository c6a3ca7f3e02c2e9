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


def test_empirical_risk_measures_by_hand():
    from opelab.select import empirical_risk_measure

    values = [4.0, 1.0, 3.0, 2.0]  # uniform on {1, 2, 3, 4}
    assert empirical_risk_measure(values, "cvar", 0.25) == pytest.approx(1.0)
    assert empirical_risk_measure(values, "cvar", 0.5) == pytest.approx(1.5)
    assert empirical_risk_measure(values, "cvar", 0.375) == pytest.approx((1.0 + 0.5 * 2.0) / 1.5)  # partial atom
    assert empirical_risk_measure(values, "quantile", 0.5) == 2.0
    with pytest.raises(ValueError, match="measure: expected one of"):
        empirical_risk_measure(values, "var", 0.5)


def test_cvar_criterion_end_to_end_against_exact_return_distributions():
    """Select by estimated CVaR on the gridworld: with many trajectories the SN CDF estimator's CVaR of
    every candidate is close to the exact one, so its top-k matches the exact CVaR ranking's top-k."""
    from opelab.envs import collect, gridworld
    from opelab.envs.returns import exact_return_distribution
    from opelab.ope import build_inputs
    from opelab.ope.estimators.cdf import evaluate_cdf
    from opelab.policies import SoftmaxPolicy, TabularQ
    from opelab.select import risk_criterion

    task = gridworld(reward_noise=0.0, horizon=8)
    q = TabularQ(task.optimal_q())
    behavior = SoftmaxPolicy(q, 0.5, name="behavior")
    candidates = [SoftmaxPolicy(q, tau, name=f"tau{tau:g}") for tau in (0.1, 0.3, 0.6, 1.0, 2.0)]
    true_cvar = np.array([exact_return_distribution(task, p).cvar(0.2) for p in candidates])
    ds = collect(task, behavior, 20_000, seed=0)
    table = evaluate_cdf(ds, build_inputs(ds, candidates, weights=None), ["cdf_sntis"])
    criterion = risk_criterion(table, "cvar", 0.2, true_cvar, ds.returns)
    # The empirical CVaR@0.2 of 20,000 returns (sd < 1) has a standard error below 1/sqrt(0.2 · 20,000) ≈ 0.016:
    # 0.05 is over 3 standard errors.
    assert criterion.behavior_measure == pytest.approx(exact_return_distribution(task, behavior).cvar(0.2), abs=0.05)
    frame = assess_criteria([criterion], ks=[2, 3]).set_index("k")
    exact_order = np.sort(true_cvar)[::-1]
    assert frame.loc[2, "best"] == exact_order[0] and frame.loc[3, "worst"] == exact_order[2]
