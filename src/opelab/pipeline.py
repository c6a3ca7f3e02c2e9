"""The quick end-to-end pipeline on a tabular task: collect → candidates → OPE → exact truth → assessment.

``bench/`` will wire the stages for real benchmarks; this helper is what ``opelab demo`` and tutorials use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.envs import ReturnDistribution, TabularMDP, collect, exact_return_distribution
from opelab.ope import CDFTable, EstimateTable, OPEInput, PointEstimator, build_inputs, evaluate, evaluate_cdf
from opelab.policies import DiscretePolicy
from opelab.select import Assessment, assess


@dataclass(frozen=True, eq=False)
class PipelineResult:
    task: TabularMDP
    dataset: LoggedDataset
    inputs: OPEInput
    table: EstimateTable
    true_values: np.ndarray  # (P,) exact
    behavior_true_value: float  # exact J(π_b)
    assessment: Assessment
    cdf_table: CDFTable | None = None
    true_distributions: list[ReturnDistribution] | None = None  # exact return laws, when small enough

    def estimates_vs_truth(self) -> pd.DataFrame:
        """One row per policy: its exact value and every estimator's estimate."""
        wide = self.table.to_pandas().pivot(index="policy", columns="estimator", values="estimate")
        wide = wide.loc[list(self.table.policy_names), list(self.table.estimator_names)]
        wide.insert(0, "true_value", self.true_values)
        wide.columns.name = None
        return wide


def run_tabular(
    task: TabularMDP,
    behavior_policy: DiscretePolicy,
    candidates: Sequence[DiscretePolicy],
    *,
    n_trajectories: int,
    seed: int,
    estimators: Sequence[str | PointEstimator] | None = None,
    ks: Sequence[int] | None = None,
    safety_threshold: float | None = None,
    interval: str | None = None,
    n_bootstrap: int = 200,
    distributions: bool = False,
    max_atoms: int = 50_000,
    on_stage: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Run the whole loop once. ``on_stage(name)`` is called as each stage starts (for progress display).

    ``interval`` adds confidence intervals; ``distributions`` adds the CDF estimates of the returns and,
    when the task's exact return distributions have at most ``max_atoms`` atoms, the exact ones.
    """
    notify = on_stage or (lambda name: None)
    notify("collect")
    dataset = collect(task, behavior_policy, n_trajectories, seed)
    notify("ground truth")
    truth = task.policy_values(candidates)
    notify("inputs")
    inputs = build_inputs(dataset, candidates, ground_truth=truth)
    notify("estimate")
    table = evaluate(dataset, inputs, estimators, interval=interval, n_bootstrap=n_bootstrap, seed=seed)
    cdf_table, true_distributions = None, None
    if distributions:
        notify("return distributions")
        cdf_table = evaluate_cdf(dataset, inputs)
        try:
            true_distributions = [exact_return_distribution(task, p, max_atoms=max_atoms) for p in candidates]
        except ValueError:  # too many atoms to enumerate: the report says so
            true_distributions = None
    notify("assess")
    assessment = assess(table, truth, ks=ks, safety_threshold=safety_threshold)
    return PipelineResult(
        task=task,
        dataset=dataset,
        inputs=inputs,
        table=table,
        true_values=truth,
        behavior_true_value=task.policy_value(behavior_policy),
        assessment=assessment,
        cdf_table=cdf_table,
        true_distributions=true_distributions,
    )
