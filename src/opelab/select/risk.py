"""Risk-aware selection: rank candidates by something other than the point estimate, and judge the
resulting top-k portfolios with the matching *true* measure (Kiyohara et al., ICLR 2024, Sec. 4).

A ``Criterion`` holds, for E estimators and P policies, the scores a selection ranks by (estimated value,
interval lower bound, estimated CVaR_α, estimated lower quantile, ...), the true value of the same measure
for every policy, and the behavior policy's own value of it (the baseline of SharpeRatio@k). Then:

    best@k, worst@k, mean@k, std@k   over the true measure of the top-k by score,
    SharpeRatio@k = max(best@k − baseline, 0) / std@k,
    safety violation rate@k = share of the top-k whose true value falls below a threshold.

The threshold is checked on the true *value* J (a deployment constraint on expected return), whatever
measure the criterion ranks by. Scores tied at the k boundary follow the rule ``ties`` ("average" by
default: the expectation over which tied policies fill the top-k; see ``opelab.select.metrics``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opelab.ope.estimators.cdf import CDFTable
from opelab.ope.evaluate import EstimateTable
from opelab.ope.risk import cdf_cvar, cdf_quantile

RISK_MEASURES = ("cvar", "quantile")
from opelab.select.metrics import TieRule, top_k_inclusion, topk_metrics


@dataclass(frozen=True, eq=False)
class Criterion:
    """What a selection ranks by, per estimator, and the truth it is judged against.

    ``scores`` (E, P): the ranking scores; ``true_measure`` (P,): the same measure's true value;
    ``behavior_measure``: the behavior policy's value of it.
    """

    name: str
    estimator_names: tuple[str, ...]
    policy_names: tuple[str, ...]
    scores: np.ndarray
    true_measure: np.ndarray
    behavior_measure: float

    def __post_init__(self) -> None:
        E, P = len(self.estimator_names), len(self.policy_names)
        scores = np.asarray(self.scores, dtype=np.float64)
        truth = np.asarray(self.true_measure, dtype=np.float64)
        if scores.shape != (E, P):
            raise ValueError(f"{self.name}.scores: expected shape {(E, P)}, found {scores.shape}")
        if truth.shape != (P,):
            raise ValueError(f"{self.name}.true_measure: expected shape ({P},), found {truth.shape}")
        if not np.isfinite(self.behavior_measure):
            raise ValueError(f"{self.name}.behavior_measure: expected a finite float, found {self.behavior_measure!r}")
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "true_measure", truth)


def value_criterion(table: EstimateTable, true_values: Iterable[float], behavior_value: float | None = None) -> Criterion:
    """Rank by the point estimate; judge by the true value (the plain SharpeRatio@k)."""
    return Criterion(
        name="value",
        estimator_names=table.estimator_names,
        policy_names=table.policy_names,
        scores=table.estimates,
        true_measure=np.asarray(list(true_values), dtype=np.float64),
        behavior_measure=table.behavior_value if behavior_value is None else float(behavior_value),
    )


def lower_bound_criterion(table: EstimateTable, true_values: Iterable[float], behavior_value: float | None = None) -> Criterion:
    """Rank by the lower end of each estimate's confidence interval (pessimistic selection)."""
    if table.lower is None:
        raise ValueError("table: ranking by the lower bound needs intervals; pass interval=... to evaluate")
    return Criterion(
        name=f"lower_bound({table.interval}, alpha={table.alpha:g})",
        estimator_names=table.estimator_names,
        policy_names=table.policy_names,
        scores=table.lower,
        true_measure=np.asarray(list(true_values), dtype=np.float64),
        behavior_measure=table.behavior_value if behavior_value is None else float(behavior_value),
    )


def risk_measure(grid: np.ndarray, cdf: np.ndarray, measure: str, alpha: float) -> np.ndarray:
    """CVaR_α (mean of the lowest α-fraction) or the lower α-quantile of CDFs on a grid, shape cdf.shape[:-1]."""
    if measure == "cvar":
        return cdf_cvar(grid, cdf, np.array([alpha]))[..., 0]
    if measure == "quantile":
        return cdf_quantile(grid, cdf, np.array([alpha]))[..., 0]
    raise ValueError(f"measure: expected one of {list(RISK_MEASURES)}, found {measure!r}")


def empirical_risk_measure(values: Iterable[float], measure: str, alpha: float) -> float:
    """The same measure of the empirical distribution of ``values`` (e.g. the logged returns)."""
    sample = np.sort(np.asarray(list(values), dtype=np.float64))
    if sample.size == 0 or not np.isfinite(sample).all():
        raise ValueError(f"values: expected a non-empty finite sample, found {sample.size} values")
    grid, counts = np.unique(sample, return_counts=True)
    return float(risk_measure(grid, np.cumsum(counts) / sample.size, measure, alpha))


def risk_criterion(
    cdf_table: CDFTable,
    measure: str,
    alpha: float,
    true_measure: Iterable[float],
    behavior_returns: Iterable[float],
) -> Criterion:
    """Rank by an estimated risk measure of the return distribution (CVaR_α or the α-quantile), judge by
    the true measure of each policy, against the behavior policy's measure on its logged returns."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha: expected a level in (0, 1], found {alpha!r}")
    return Criterion(
        name=f"{measure}@{alpha:g}",
        estimator_names=cdf_table.estimator_names,
        policy_names=cdf_table.policy_names,
        scores=risk_measure(cdf_table.grid, cdf_table.cdf, measure, alpha),
        true_measure=np.asarray(list(true_measure), dtype=np.float64),
        behavior_measure=empirical_risk_measure(behavior_returns, measure, alpha),
    )


def safety_violation_rate_at_k(
    true_values: np.ndarray, scores: np.ndarray, threshold: float, k: int, ties: TieRule = "average"
) -> float:
    """Share of the top-k policies by ``scores`` whose true value is below ``threshold``.

    With ``ties="average"`` the expected share: Σ_i p_i 1{J_i < threshold} / k with p the inclusion
    probabilities of ``top_k_inclusion``.
    """
    inclusion = top_k_inclusion(scores, k, ties)
    below = np.asarray(true_values, dtype=np.float64) < threshold
    return float(np.dot(inclusion, below) / k)


def assess_criteria(
    criteria: Sequence[Criterion],
    ks: Iterable[int],
    *,
    true_values: Iterable[float] | None = None,
    safety_threshold: float | None = None,
    ties: TieRule = "average",
) -> pd.DataFrame:
    """Top-k metrics of every criterion and estimator: one row per (criterion, estimator, k) with
    ``best, worst, mean, std, sharpe_ratio`` of the true measure and, with ``safety_threshold`` and
    ``true_values`` (J, judged whatever the criterion), ``safety_violation_rate``. ``ties`` is the rule
    for scores tied at the k boundary."""
    ks = tuple(int(k) for k in ks)
    values = None if true_values is None else np.asarray(list(true_values), dtype=np.float64)
    if safety_threshold is not None and values is None:
        raise ValueError("true_values: needed to check the safety threshold, found None")
    frames = []
    for criterion in criteria:
        for e, name in enumerate(criterion.estimator_names):
            scores = criterion.scores[e]
            metrics = topk_metrics(criterion.true_measure, scores, criterion.behavior_measure, ks, ties=ties).to_pandas()
            metrics.insert(0, "estimator", name)
            metrics.insert(0, "criterion", criterion.name)
            if safety_threshold is not None and values is not None:
                metrics["safety_violation_rate"] = [
                    safety_violation_rate_at_k(values, scores, safety_threshold, k, ties) for k in ks
                ]
            frames.append(metrics)
    return pd.concat(frames, ignore_index=True)
