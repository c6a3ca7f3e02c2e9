"""``recommend_estimator``: which estimator to trust on your own logs, estimated from the logs alone.

Without the candidates' true values no assessment metric can be computed; the methods here estimate them
from the data:

    "cv"     off-policy cross-validation (``opelab.select.cv``; Cief, Kveton & Kompan, AAAI 2025): each
             estimator on a training part against an unbiased IS estimate on the held-out part, over random
             splits; estimated nMSE, rank correlation and SharpeRatio@k with the validation estimates as a
             noisy pseudo truth. Any kind of data.
    "pasif"  PAS-IF (``opelab.select.pasif``; Udagawa et al., AAAI 2023): a pseudo candidate per real one,
             made by subsampling the log so its importance weights mimic the real candidate's, whose value is
             known; every metric against those pseudo truths. Discrete actions with π_b's action probabilities:
             one-step logs, and trajectories by whole-trajectory rejection sampling (``opelab.select.pasif``).
    "slope"  SLOPE (``opelab.select.slope``; Su et al., ICML 2020): Lepski's rule over an *ordered family*
             (``estimators`` in the order widest interval / least bias first, e.g. ``slope_family``); a pick
             per policy, no metrics.
    "all"    "cv" and, where it applies, "pasif"; the pick is the estimator with the best mean rank of
             estimated nMSE over the two (ties: CV's order).

Every number in the result is an estimate from the logs, with its uncertainty (standard errors across splits
for CV, bootstrap intervals across splits for PAS-IF), and says so (``Recommendation.label``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.ope.estimators import PointEstimator, get_estimator
from opelab.ope.estimators.base import data_kind, default_estimators
from opelab.ope.inputs import OPEInput

METHODS = ("cv", "pasif", "slope", "all")
LABEL = "estimated from the logs (no ground truth)"
Z = 1.959963984540054  # the normal 97.5% quantile: CV's ±1.96 SE intervals


class RecommendError(ValueError):
    """A recommendation that cannot be made on these logs with these estimators."""


@dataclass(frozen=True, eq=False)
class Recommendation:
    """The estimator to trust on these logs, and why.

    ``table``: one row per (method, estimator): ``method, estimator, estimated_nmse(_lower, _upper),
    estimated_rank_correlation(_lower, _upper), estimated_sharpe_ratio@k(_lower, _upper)`` where the method gives
    them (SLOPE gives ``picked_for``, the number of policies whose pick it is), and ``selected``. ``results``: each
    method's own result (``CVResult``, ``PasifResult``, ``SlopeResult``).
    """

    method: str
    pick: str
    reason: str
    k: int
    table: pd.DataFrame
    results: Mapping[str, Any] = field(default_factory=dict)
    label: str = LABEL


def _chosen(dataset: LoggedDataset, inputs: OPEInput, estimators: Sequence[str | PointEstimator] | None) -> list[PointEstimator]:
    if estimators is None:
        kind = data_kind(dataset.info, dataset.horizon)
        chosen = default_estimators(kind, lambda e: all(getattr(inputs, r) is not None for r in e.requires))
    else:
        if isinstance(estimators, (str, PointEstimator)):
            raise RecommendError(f"estimators: expected a list of estimator names or instances, found {estimators!r}")
        chosen = [get_estimator(e) for e in estimators]
    if len(chosen) < 2:
        raise RecommendError(f"estimators: expected at least 2 to choose from, found {[e.name for e in chosen]}")
    return chosen


def _cv_rows(result: Any) -> pd.DataFrame:
    k = result.k
    rows = pd.DataFrame({"method": "cv", "estimator": list(result.estimator_names)})
    for name, value, se in (
        ("estimated_nmse", result.estimated_nmse, result.estimated_nmse_se),
        ("estimated_rank_correlation", result.estimated_rank_correlation, result.estimated_rank_correlation_se),
        (f"estimated_sharpe_ratio@{k}", result.estimated_sharpe_ratio, result.estimated_sharpe_ratio_se),
    ):
        rows[name] = value
        rows[f"{name}_lower"] = value - Z * se
        rows[f"{name}_upper"] = value + Z * se
    rows["selected"] = rows["estimator"] == result.pick
    return rows


def _pasif_rows(result: Any, k: int) -> pd.DataFrame:
    table = result.table()
    rows = pd.DataFrame({"method": "pasif", "estimator": list(table.index)})
    for metric, name in (("nmse", "estimated_nmse"), ("rank_correlation", "estimated_rank_correlation"), (f"sharpe_ratio@{k}", f"estimated_sharpe_ratio@{k}")):
        for suffix in ("", "_lower", "_upper"):
            column = metric + suffix
            rows[name + suffix] = table[column].to_numpy() if column in table else np.nan
    rows["selected"] = rows["estimator"] == result.pick
    return rows


def _slope_rows(result: Any, names: list[str]) -> pd.DataFrame:
    picked = list(result.chosen_names)
    counts = [picked.count(n) for n in names]
    return pd.DataFrame({"method": "slope", "estimator": names, "picked_for": counts, "selected": [c == max(counts) and c > 0 for c in counts]})


def recommend_estimator(
    dataset: LoggedDataset,
    inputs: OPEInput,
    estimators: Sequence[str | PointEstimator] | None = None,
    method: str = "cv",
    ks: Sequence[int] | None = None,
    *,
    seed: int = 0,
    n_splits: int | None = None,
    pasif_splits: int | None = None,
    reward_model: Any = None,
    rebuild: Any = None,
) -> Recommendation:
    """Recommend one of ``estimators`` (default: those ``evaluate`` runs on this data) for ``inputs``' candidates
    on ``dataset``, by ``method`` (module docstring). ``ks``: the k of the estimated SharpeRatio@k (the first
    is reported; default min(3, number of candidates)). ``n_splits``: splits of CV (default 10) and, unless
    ``pasif_splits`` is given, of PAS-IF (default 5). ``reward_model``: the scikit-learn model PAS-IF refits on
    each pseudo log (default a ridge regression, fast; the real inputs' own reward model is the better match).
    ``rebuild(train_dataset) -> OPEInput``: CV refits the inputs on each training part (otherwise nuisances fitted
    on the whole log are sliced, which flatters model-based estimators such as DM)."""
    from opelab.select.cv import cv_select
    from opelab.select.pasif import pasif
    from opelab.select.slope import slope

    if method not in METHODS:
        raise RecommendError(f"method: expected one of {list(METHODS)}, found {method!r}")
    if inputs.n_policies < 2:
        raise RecommendError(f"inputs: expected at least 2 candidate policies to compare estimators on, found {inputs.n_policies}")
    chosen = _chosen(dataset, inputs, estimators)
    names = [e.name for e in chosen]
    P = inputs.n_policies
    k = int(ks[0]) if ks else min(3, P)
    if not 2 <= k <= P:
        raise RecommendError(f"ks: expected k in [2, {P}] (SharpeRatio@k needs 2 policies), found {k}")
    one_step = dataset.horizon == 1
    pasif_applies = not dataset.info.slate and dataset.action_space.is_discrete and dataset.behavior_action_probs is not None
    if method == "pasif" and not pasif_applies:
        found = (
            "a ranking log" if dataset.info.slate
            else f"{dataset.action_space.type} actions" if not dataset.action_space.is_discrete
            else "no behavior_action_probs"
        )  # fmt: skip
        raise RecommendError(
            f"method: 'pasif' needs discrete actions and the behavior policy's action probabilities (one-step logs or "
            f"trajectories, not ranking logs), found {found}; use 'cv'"
        )
    results: dict[str, Any] = {}
    parts = []
    if method == "slope":
        result = slope(dataset, inputs, chosen, seed=seed)
        results["slope"] = result
        table = _slope_rows(result, names)
        pick = str(table.loc[table["picked_for"].idxmax(), "estimator"])
        reason = f"SLOPE over the ordered family {names} picks {pick} for {int(table['picked_for'].max())} of {P} policies ({LABEL})."
        return Recommendation("slope", pick, reason, k, table, results)
    if method in ("cv", "all"):
        cv = cv_select(dataset, inputs, chosen, n_splits=n_splits or 10, seed=seed, k=k, rebuild=rebuild)
        results["cv"] = cv
        parts.append(_cv_rows(cv))
    skipped = ""
    if method == "pasif" or (method == "all" and pasif_applies):
        from opelab.select.pasif import PasifError

        if reward_model is None and one_step:
            from sklearn.linear_model import Ridge

            reward_model = Ridge()
        try:
            splits = pasif_splits or n_splits or 5
            result = pasif(dataset, inputs, chosen, n_splits=splits, ks=sorted({1, k}), seed=seed, reward_model=reward_model if one_step else None)
        except PasifError as error:
            if method == "pasif":
                raise RecommendError(str(error)) from None
            skipped = f" (PAS-IF did not run: {error})"
        else:
            results["pasif"] = result
            parts.append(_pasif_rows(result, k))
    table = pd.concat(parts, ignore_index=True)
    if len(results) == 1:
        (only,) = results
        pick = results[only].pick
        rows = table[table["estimator"] == pick].iloc[0]
        reason = (
            f"{pick} has the lowest estimated nMSE by {'cross-validation' if only == 'cv' else 'PAS-IF'} "
            f"({rows['estimated_nmse']:.3g}, 95% interval [{rows['estimated_nmse_lower']:.3g}, {rows['estimated_nmse_upper']:.3g}]) "
            f"and an estimated SharpeRatio@{k} of {rows[f'estimated_sharpe_ratio@{k}']:.3g}, {LABEL}{skipped}."
        )
    else:
        ranks = table.assign(rank=table.groupby("method")["estimated_nmse"].rank(method="min"))
        mean_rank = ranks.groupby("estimator", sort=False)["rank"].mean().reindex(names)
        pick = str(mean_rank.idxmin())
        agree = "agree" if results["cv"].pick == results["pasif"].pick else f"differ (CV: {results['cv'].pick}, PAS-IF: {results['pasif'].pick})"
        reason = f"{pick} has the best mean rank of estimated nMSE over cross-validation and PAS-IF, which {agree}; {LABEL}."
        table["selected"] = table["estimator"] == pick
    return Recommendation(method, pick, reason, k, table, results)
