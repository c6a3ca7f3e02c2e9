"""``assess``: every selection metric for every estimator of an ``EstimateTable``, in one place.

Metrics follow Kiyohara et al. (ICLR 2024) and Fu et al. (2021); their definitions live in
``opelab.select.metrics``. Which estimator "wins" depends on the metric: lower is better for nMSE and
regret, higher for rank correlation and SharpeRatio@k. ``Assessment.picks`` lists each metric's winner.
Estimates tied at a top-k boundary follow the rule ``ties`` ("average" by default; see
``opelab.select.metrics``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opelab.ope.evaluate import EstimateTable
from opelab.select.metrics import (
    nmse,
    normalized_regret_at_k,
    rank_correlation,
    TieRule,
    regret_at_k,
    top_k_indices,
    topk_metrics,
    type_errors,
)

LOWER_IS_BETTER = ("nmse", "regret@", "normalized_regret@", "type_i", "type_ii")


@dataclass(frozen=True, eq=False)
class Assessment:
    """The assessment of each estimator.

    ``summary``: one row per estimator (index ``estimator``), columns ``nmse, rank_correlation,
    regret@1, normalized_regret@1`` (and ``type_i, type_ii`` when a safety threshold was given) and
    ``sharpe_ratio@k`` for each k. ``topk``: long table ``estimator, k, best, worst, mean, std,
    sharpe_ratio``. ``rankings``: each estimator's policy order, best first (tied estimates in
    listing order, reversed when ``ties="last"``). ``ties``: the tie rule of the top-k metrics.
    """

    summary: pd.DataFrame
    topk: pd.DataFrame
    rankings: dict[str, tuple[str, ...]]
    behavior_value: float
    ks: tuple[int, ...]
    ties: TieRule = "average"

    def picks(self) -> pd.DataFrame:
        """For each metric, the estimator it would choose and its value (ties go to the first listed).

        Metrics that are NaN for every estimator (e.g. rank correlation with one policy) pick nothing.
        """
        rows = []
        for metric in self.summary.columns:
            values = self.summary[metric].to_numpy(dtype=np.float64)
            if np.isnan(values).all():
                rows.append({"metric": metric, "estimator": None, "value": np.nan})
                continue
            lower = metric.startswith(LOWER_IS_BETTER)
            scores = np.where(np.isnan(values), np.inf if lower else -np.inf, values)
            best = int(np.argmin(scores) if lower else np.argmax(scores))
            rows.append({"metric": metric, "estimator": self.summary.index[best], "value": values[best]})
        return pd.DataFrame(rows)


def default_ks(n_policies: int) -> tuple[int, ...]:
    """k = 2..P (SharpeRatio@1 is undefined), or (1,) when there is a single policy."""
    return tuple(range(2, n_policies + 1)) if n_policies >= 2 else (1,)


def assess(
    table: EstimateTable,
    true_values: Iterable[float] | np.ndarray,
    *,
    behavior_value: float | None = None,
    ks: Iterable[int] | None = None,
    safety_threshold: float | None = None,
    ties: TieRule = "average",
) -> Assessment:
    """Assess every estimator in ``table`` against the true policy values.

    ``behavior_value`` J(π_b) defaults to the table's (the dataset's mean discounted logged return).
    ``ks`` defaults to 2..P. With ``safety_threshold`` the Type I / Type II error rates are added.
    ``ties`` ("first", "last" or "average") is the rule for estimates tied at a top-k boundary, used by
    regret@1 and every top-k metric (``opelab.select.metrics``).
    """
    truth = np.asarray(list(true_values) if not isinstance(true_values, np.ndarray) else true_values, dtype=np.float64)
    if truth.shape != (len(table.policy_names),):
        raise ValueError(f"true_values: expected one value per policy ({len(table.policy_names)}), found shape {truth.shape}")
    baseline = table.behavior_value if behavior_value is None else float(behavior_value)
    ks = default_ks(len(truth)) if ks is None else tuple(int(k) for k in ks)
    summary_rows, topk_frames, rankings = [], [], {}
    for name in table.estimator_names:
        est = table.estimate(name)
        row: dict[str, float] = {
            "nmse": nmse(truth, est),
            "rank_correlation": rank_correlation(truth, est),
            "regret@1": regret_at_k(truth, est, 1, ties=ties),
            "normalized_regret@1": normalized_regret_at_k(truth, est, 1, ties=ties),
        }
        if safety_threshold is not None:
            errors = type_errors(truth, est, safety_threshold)
            row["type_i"], row["type_ii"] = errors.type_i, errors.type_ii
        tk = topk_metrics(truth, est, baseline, ks, ties=ties)
        for k, sr in zip(tk.ks, tk.sharpe_ratio):
            row[f"sharpe_ratio@{int(k)}"] = float(sr)
        summary_rows.append(row)
        frame = tk.to_pandas()
        frame.insert(0, "estimator", name)
        topk_frames.append(frame)
        order = top_k_indices(est, len(est), ties="last" if ties == "last" else "first")
        rankings[name] = tuple(table.policy_names[i] for i in order)
    summary = pd.DataFrame(summary_rows, index=pd.Index(table.estimator_names, name="estimator"))
    return Assessment(
        summary=summary,
        topk=pd.concat(topk_frames, ignore_index=True),
        rankings=rankings,
        behavior_value=baseline,
        ks=ks,
        ties=ties,
    )
