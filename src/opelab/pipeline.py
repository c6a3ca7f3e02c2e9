"""The quick end-to-end pipeline: collect → candidates → OPE → truth → assessment.

``run_tabular`` works on a tabular task with exact truth; ``run_learned`` on any batched task (gymnasium,
MuJoCo, synthetic) with truth from on-policy rollouts and its standard errors, Q̂ from neural FQE and, for
continuous actions, kernel-smoothed importance ratios (``learned_inputs``). ``bench/`` wires the same
stages for benchmarks; these helpers are what ``opelab demo`` and tutorials use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.envs import ReturnDistribution, TabularMDP, collect, exact_return_distribution
from opelab.ope import CDFTable, EstimateTable, FQEConfig, OPEInput, PointEstimator, build_inputs, evaluate, evaluate_cdf
from opelab.ope.inputs import truth_fields
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


@dataclass(frozen=True, eq=False)
class LearnedResult:
    """``PipelineResult``'s fields for a task without an exact model: the truth is the mean discounted return
    of ``n_rollouts`` on-policy episodes per policy, with standard errors ``true_se``."""

    task: Any  # a batched task (opelab.envs.make)
    dataset: LoggedDataset
    inputs: OPEInput
    table: EstimateTable
    true_values: np.ndarray  # (P,) rollout means
    true_se: np.ndarray  # (P,) their standard errors
    behavior_true_value: float  # rollout J(π_b)
    behavior_true_se: float
    n_rollouts: int
    assessment: Assessment
    cdf_table: CDFTable | None = None
    true_distributions: None = None  # no exact return laws without a model

    estimates_vs_truth = PipelineResult.estimates_vs_truth  # same table: truth, then every estimator


def learned_inputs(
    dataset: LoggedDataset,
    candidates: Sequence[Any],
    *,
    q_function: str = "neural_fqe",
    fqe: FQEConfig | None = None,
    kernel: str = "gaussian",
    bandwidth: float = 0.1,
    seed: int = 0,
    weights: str | None = None,
    minimax: Any = None,
    n_folds: int = 1,
    ground_truth: Sequence[float] | np.ndarray | None = None,
    ground_truth_se: Sequence[float] | np.ndarray | None = None,
) -> OPEInput:
    """The estimators' inputs for learned candidates on vector observations.

    Discrete actions: ``build_inputs`` with ``q_function`` (``"neural_fqe"``, ``"mql"``, ``"regression"`` (one-step
    logs: a cross-fitted scikit-learn reward model) or ``"none"``, which
    leaves Q̂ out and with it DM and the DR family), marginal ``weights`` (None or a DICE setting, learned
    with ``minimax``) and ``n_folds`` cross-fitting. Continuous actions: neural FQE
    evaluated at each candidate's mean action μ(s) (``fit_fqe``), importance ratios smoothed by ``kernel``
    with ``bandwidth`` in standard deviations of the logged actions, and marginal ``weights`` (None or a DICE
    setting, learned with ``minimax`` by ``opelab.ope.minimax_continuous``; not cross-fitted), all by
    ``build_continuous_inputs``.
    """
    from opelab.ope import build_continuous_inputs, fit_fqe, fqe_q_function

    choices = ("neural_fqe", "mql", "regression", "none") if dataset.action_space.is_discrete else ("neural_fqe", "none")
    if q_function not in choices:
        kind = dataset.action_space.type
        raise ValueError(f"q_function: expected one of {list(choices)} for {kind} actions, found {q_function!r}")
    fqe = fqe or FQEConfig(seed=seed % 2**31)
    if dataset.action_space.is_discrete:
        if q_function == "none":
            return _discrete_inputs_without_q(dataset, candidates, ground_truth, ground_truth_se)
        return build_inputs(
            dataset, candidates, q_function=q_function, weights=weights, minimax=minimax, fqe=fqe, n_folds=n_folds,
            fold_seed=seed, ground_truth=ground_truth, ground_truth_se=ground_truth_se,
        )  # fmt: skip
    q_functions = None
    if q_function == "neural_fqe":
        obs, mask = np.asarray(dataset.observations), dataset.mask
        steps = np.broadcast_to(np.arange(dataset.horizon), mask.shape).reshape(-1)
        flat = obs.reshape(-1, *obs.shape[2:])
        means = np.stack([np.asarray(p.mean(flat, steps), dtype=np.float64).reshape(*mask.shape, -1) for p in candidates])
        fit = fit_fqe(dataset, eval_actions=means, config=fqe)  # means: (P, n, H, action_dim)
        q_functions = [fqe_q_function(fit, p) for p in range(len(candidates))]
    return build_continuous_inputs(
        dataset, candidates, kernel=kernel, bandwidth=bandwidth, action_scale="std", q_functions=q_functions,
        seed=seed % 2**31, weights=weights, minimax=None if weights is None else minimax,
        ground_truth=ground_truth, ground_truth_se=ground_truth_se,
    )  # fmt: skip


def _discrete_inputs_without_q(
    dataset: LoggedDataset, candidates: Sequence[Any], truth: Any, truth_se: Any
) -> OPEInput:
    from opelab.ope.inputs import evaluation_action_probs

    probs = evaluation_action_probs(dataset, candidates)  # (P, n, H, A)
    actions = np.asarray(dataset.actions)
    logged = np.take_along_axis(probs, np.broadcast_to(actions[None, ..., None], (*probs.shape[:3], 1)), axis=-1)[..., 0]
    return OPEInput(
        policy_names=tuple(p.name for p in candidates),
        eval_pscore=np.where(dataset.mask, logged, 1.0),
        eval_action_probs=probs,
        **truth_fields(truth, truth_se, len(candidates)),
    )


def run_learned(
    task: Any,
    behavior_policy: Any,
    candidates: Sequence[Any],
    *,
    n_trajectories: int,
    seed: int,
    estimators: Sequence[str | PointEstimator] | None = None,
    ks: Sequence[int] | None = None,
    safety_threshold: float | None = None,
    interval: str | None = None,
    n_bootstrap: int = 200,
    n_rollouts: int = 100,
    q_function: str = "neural_fqe",
    fqe: FQEConfig | None = None,
    kernel: str = "gaussian",
    bandwidth: float = 0.1,
    on_stage: Callable[[str], None] | None = None,
) -> LearnedResult:
    """``run_tabular``'s loop on a batched task: collect → rollout truth → inputs (``learned_inputs``) →
    estimate → assess. ``on_stage(name)`` is called as each stage starts.

    The truth of the candidates and of the behavior policy comes from ``n_rollouts`` episodes each, from a
    seed of its own (derived from ``seed``), so it does not share random numbers with the logged data.
    """
    notify = on_stage or (lambda name: None)
    truth_seed, inputs_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    notify("collect")
    dataset = collect(task, behavior_policy, n_trajectories, seed)
    notify(f"ground truth ({n_rollouts} rollouts per policy)")
    from opelab.envs.rollouts import rollout_values

    rollouts = rollout_values(task, [*candidates, behavior_policy], n_episodes=n_rollouts, seed=truth_seed)
    truth, truth_se = rollouts.values[:-1], rollouts.standard_errors[:-1]
    notify("inputs (neural FQE)" if q_function == "neural_fqe" else "inputs")
    inputs = learned_inputs(
        dataset, candidates, q_function=q_function, fqe=fqe, kernel=kernel, bandwidth=bandwidth, seed=inputs_seed,
        ground_truth=truth, ground_truth_se=truth_se,
    )  # fmt: skip
    notify("estimate")
    table = evaluate(dataset, inputs, estimators, interval=interval, n_bootstrap=n_bootstrap, seed=seed)
    notify("assess")
    assessment = assess(table, truth, ks=ks, safety_threshold=safety_threshold)
    return LearnedResult(
        task=task,
        dataset=dataset,
        inputs=inputs,
        table=table,
        true_values=truth,
        true_se=truth_se,
        behavior_true_value=float(rollouts.values[-1]),
        behavior_true_se=float(rollouts.standard_errors[-1]),
        n_rollouts=n_rollouts,
        assessment=assessment,
    )
