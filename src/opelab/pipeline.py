"""The quick end-to-end pipeline on a tabular task: collect → candidates → OPE → exact truth → assessment.

``bench/`` will wire the stages for real benchmarks; this helper is what ``opelab demo`` and tutorials use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.envs import TabularMDP, collect
from opelab.ope import EstimateTable, OPEInput, PointEstimator, build_inputs, evaluate
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
    on_stage: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Run the whole loop once. ``on_stage(name)`` is called as each stage starts (for progress display)."""
    notify = on_stage or (lambda name: None)
    notify("collect")
    dataset = collect(task, behavior_policy, n_trajectories, seed)
    notify("ground truth")
    truth = task.policy_values(candidates)
    notify("inputs")
    inputs = build_inputs(dataset, candidates, ground_truth=truth)
    notify("estimate")
    table = evaluate(dataset, inputs, estimators)
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
    )
