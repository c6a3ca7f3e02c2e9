"""A small, hand-made ``TaskReport`` (3 candidates, 2 estimators, k = 2..3) for fast report tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from opelab.report.html import TaskReport


def small_report(
    policies: tuple[str, str, str] = ("alpha", "beta", "gamma"),
    estimators: tuple[str, str] = ("dm", "pdis"),
    task: str = "toy",
    with_distributions: bool = False,
) -> TaskReport:
    truth = np.array([1.0, 0.5, -0.25])
    estimates = pd.DataFrame(
        {
            "policy": list(policies) * 2,
            "estimator": [estimators[0]] * 3 + [estimators[1]] * 3,
            "estimate": [0.8, 0.6, -0.1, 1.1, 0.4, -0.3],
            "true_value": np.tile(truth, 2),
        }
    )
    assessment = pd.DataFrame(
        {"nmse": [0.1, 0.05], "rank_correlation": [1.0, 1.0], "regret@1": [0.0, 0.0], "sharpe_ratio@2": [1.2, 1.2], "sharpe_ratio@3": [0.9, 0.9]},
        index=pd.Index(list(estimators), name="estimator"),
    )
    topk = pd.DataFrame(
        [
            (e, k, 1.0, worst, mean, std, sharpe)
            for e in estimators
            for k, worst, mean, std, sharpe in ((2, 0.5, 0.75, 0.35, 1.2), (3, -0.25, 0.42, 0.63, 0.9))
        ],
        columns=["estimator", "k", "best", "worst", "mean", "std", "sharpe_ratio"],
    )
    picks = pd.DataFrame(
        {
            "metric": ["nmse", "rank_correlation", "regret@1", "sharpe_ratio@2", "sharpe_ratio@3"],
            "estimator": [estimators[1], estimators[0], estimators[0], estimators[0], estimators[0]],
            "value": [0.05, 1.0, 0.0, 1.2, 0.9],
        }
    )
    cdfs = true_cdfs = risk = true_risk = None
    if with_distributions:
        y = np.linspace(-1.0, 2.0, 5)
        cdfs = pd.DataFrame(
            {"estimator": "cdf_tis", "policy": np.repeat(policies, 5), "y": np.tile(y, 3), "cdf": np.tile(np.linspace(0, 1, 5), 3)}
        )
        true_cdfs = cdfs.drop(columns="estimator")
        risk = pd.DataFrame(
            [("cdf_tis", p, a, -0.5, -0.2, 0.3, 0.8) for p in policies for a in (0.1, 0.5)],
            columns=["estimator", "policy", "alpha", "cvar", "q25", "q50", "q75"],
        )
        true_risk = risk.drop(columns="estimator")
    return TaskReport(
        task=task,
        dataset_summary=[("Task", task), ("Trajectories", "100")],
        candidates=pd.DataFrame({"policy": list(policies), "true_value": truth}),
        estimates=estimates,
        assessment=assessment,
        topk=topk,
        picks=picks,
        behavior_value=0.1,
        safety_threshold=0.0,
        cdfs=cdfs,
        true_cdfs=true_cdfs,
        risk=risk,
        true_risk=true_risk,
        notes=["a note"],
    )
