"""PAS-IF (Udagawa et al., AAAI 2023): importance fitting, pseudo splits with exact pseudo truths, ``pasif``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from opelab.envs import make
from opelab.envs.bandit import bandit_inputs, synthetic_bandit
from opelab.ope.estimators import EstimationContext
from opelab.ope.evaluate import evaluate
from opelab.ope.inputs import OPEInput
from opelab.select.pasif import PasifError, PasifResult, fit_subsampling, pasif, pseudo_split


def _bandit_case(n: int, seed: int = 1, n_candidates: int = 4):
    task = make("bandit")
    dataset = task.collect(task.behavior_policy(), n, seed=seed)
    candidates = task.candidates()[:n_candidates]
    return task, dataset, candidates, bandit_inputs(task, dataset, candidates, q_model="regression")


def _weights(dataset, inputs) -> np.ndarray:
    return EstimationContext(dataset, inputs).step_ratio[:, :, 0]  # (P, n)


def _exact_pseudo_values(task, rho_contexts: np.ndarray) -> tuple[float, float]:
    """(V_e, V_b) of the pseudo policy π̃_e = π_b ρ / m on D_e's and D_b's context laws, exactly."""
    pi_b = task.policy_table(task.behavior_policy())  # (K, A)
    m = (pi_b * rho_contexts).sum(axis=1)  # (K,)
    pi_e = pi_b * rho_contexts / m[:, None]
    v = (pi_e * task.q_table).sum(axis=1)  # (K,) Σ_a π̃_e(a | x_k) q(x_k, a)
    p = task.context_probs
    return float((p * m) @ v / (p * m).sum()), float((p * (1 - m)) @ v / (p * (1 - m)).sum())


# --------------------------------------------------------------------------- unbiasedness
@pytest.mark.statistical
def test_pseudo_truth_is_unbiased_for_the_pseudo_policy_of_a_fitted_rule():
    # Finite contexts: the pseudo policy's value is an exact sum. The rule is fitted on a small log and
    # applied to a large one; both pseudo truths match their exact targets within 3.5 SE, and IPW on D_b
    # with the pseudo propensities is unbiased for V_b (the pseudo problem is a valid OPE problem).
    task = synthetic_bandit(n_actions=4, dim_context=3, n_contexts=6, seed=5)
    behavior = task.behavior_policy()
    small = task.collect(behavior, 4000, seed=0)
    candidate = task.candidates()[4]  # softmax head
    inputs = bandit_inputs(task, small, [candidate], q_model=None)
    rule = fit_subsampling(small, _weights(small, inputs)[0], target_ratio=0.3, regularization=10.0)
    v_e, v_b = _exact_pseudo_values(task, rule.rho(task.contexts))
    large = task.collect(behavior, 200_000, seed=1)
    mean = pseudo_split(large, rule, seed=2, truth="mean")
    reweighted = pseudo_split(large, rule, seed=2, truth="reweighted")
    assert abs(mean.truth - v_e) < 3.5 * mean.truth_se, (mean.truth, v_e, mean.truth_se)
    assert abs(reweighted.truth - v_b) < 3.5 * reweighted.truth_se, (reweighted.truth, v_b, reweighted.truth_se)
    d_b = reweighted.behavior_part
    ipw_inputs = OPEInput(policy_names=("pseudo",), eval_pscore=reweighted.eval_pscore[None, :, None])
    terms = (reweighted.eval_pscore / d_b.behavior_pscore[:, 0]) * d_b.rewards[:, 0]
    ipw = evaluate(d_b, ipw_inputs, ["ipw"]).estimates[0, 0]
    assert abs(ipw - v_b) < 3.5 * terms.std(ddof=1) / np.sqrt(len(terms))
    assert abs(len(reweighted.evaluation_indices) / large.n_trajectories - rule.mean_share) < 0.01


@pytest.mark.statistical
def test_reweighted_truth_corrects_a_context_dependent_share():
    # A hand-made ρ whose context share m(x) varies a lot: D_e's contexts then differ from D_b's, the
    # plain D_e mean (the paper's pseudo truth) misses V_b by many SEs, the reweighted one does not.
    task = synthetic_bandit(n_actions=4, dim_context=3, n_contexts=6, seed=5)
    rho_contexts = np.clip(np.linspace(0.05, 0.8, 6)[:, None] * np.array([1.0, 0.6, 0.9, 0.3]), 0.02, 0.9)  # (K, A)
    v_e, v_b = _exact_pseudo_values(task, rho_contexts)
    large = task.collect(task.behavior_policy(), 200_000, seed=3)
    rho = rho_contexts[task.context_ids(large.observations[:, 0])]  # (n, A)
    mean = pseudo_split(large, rho, seed=4, truth="mean")
    reweighted = pseudo_split(large, rho, seed=4, truth="reweighted")
    assert abs(mean.truth - v_e) < 3.5 * mean.truth_se
    assert abs(reweighted.truth - v_b) < 3.5 * reweighted.truth_se
    assert abs(mean.truth - v_b) > 5 * mean.truth_se, (mean.truth, v_b, mean.truth_se)


def test_split_propensities_are_the_pseudo_policies():
    task, dataset, _, inputs = _bandit_case(600, n_candidates=2)
    rng = np.random.default_rng(0)
    rho = rng.uniform(0.1, 0.6, size=(dataset.n_trajectories, task.n_actions))
    split = pseudo_split(dataset, rho, seed=0)
    pi_b = dataset.behavior_action_probs[:, 0]
    m = (pi_b * rho).sum(axis=1)
    bh = split.behavior_indices
    assert len(bh) + len(split.evaluation_indices) == dataset.n_trajectories
    assert np.allclose(split.behavior_part.behavior_action_probs[:, 0], pi_b[bh] * (1 - rho[bh]) / (1 - m[bh])[:, None])
    assert np.allclose(split.eval_action_probs, pi_b[bh] * rho[bh] / m[bh][:, None])
    assert np.allclose(split.eval_action_probs.sum(axis=1), 1.0)
    assert np.array_equal(split.behavior_part.rewards, dataset.rewards[bh])


# --------------------------------------------------------------------------- importance fitting
def test_fitted_pseudo_weights_correlate_with_the_targets():
    # measured on this log (n = 3000, 10 actions, k = 0.2, the authors' λ grid), Pearson correlation of w̃ with w:
    # greedy 0.975, ε-greedy 0.966 / 0.928 / 0.833 (ε = 0.1 / 0.3 / 0.6), softmax(0.2) 0.962, uniform 0.998,
    # ε-greedy on the worst action 0.990 / 0.987; mean D_e share 0.186-0.200 (the softmax(1) head is π_b: w ≡ 1,
    # correlation undefined)
    _, dataset, candidates, inputs = _bandit_case(3000, n_candidates=5)
    w = _weights(dataset, inputs)
    rule = fit_subsampling(dataset, w[4], target_ratio=0.2)  # optimal+softmax0.2
    assert rule.weight_correlation > 0.9, rule.weight_correlation
    assert abs(rule.mean_share - 0.2) <= 0.02
    assert rule.regularization in (0.1, 1.0, 10.0, 100.0, 1000.0)
    eps = fit_subsampling(dataset, w[1], target_ratio=0.2, regularization=100.0)  # optimal+eps0.1
    assert eps.weight_correlation > 0.9, eps.weight_correlation
    assert eps.weight_loss < np.mean((w[1] - 1.0) ** 2)  # better than the start ρ ≡ k, w̃ ≡ 1


def test_importance_fitting_gradient_matches_finite_differences():
    from opelab.select.pasif import _objective

    rng = np.random.default_rng(0)
    n, d, A = 50, 3, 4
    x, pi_b = rng.standard_normal((n, d)), rng.dirichlet(np.ones(A), n)
    args = (x, pi_b, np.arange(n), rng.integers(0, A, n), rng.exponential(size=n), 0.2, 3.0, 1e-3)
    theta = 0.3 * rng.standard_normal(d * A + A)
    grad = _objective(theta, *args)[1]
    step = 1e-6
    numeric = [(_objective(theta + e, *args)[0] - _objective(theta - e, *args)[0]) / (2 * step) for e in np.eye(len(theta)) * step]
    assert np.allclose(grad, numeric, atol=1e-7)


# --------------------------------------------------------------------------- pasif
def test_pasif_runs_on_the_bandit_task_and_returns_a_metric_table():
    from sklearn.linear_model import Ridge

    _, dataset, candidates, inputs = _bandit_case(1500, n_candidates=4)
    result = pasif(dataset, inputs, ["dm", "ipw", "snipw", "dr"], n_splits=3, regularization=100.0, reward_model=Ridge(), seed=0)
    assert isinstance(result, PasifResult)
    table = result.table()
    assert list(table.index) == ["dm", "ipw", "snipw", "dr"]
    for metric in ("nmse", "rank_correlation", "regret@1", "regret@3", "sharpe_ratio@2", "sharpe_ratio@3"):
        assert {metric, f"{metric}_lower", f"{metric}_upper"} <= set(table.columns)
    finite = table["nmse"].to_numpy()
    assert np.isfinite(finite).all() and (table["nmse_lower"] <= table["nmse"] + 1e-12).all()
    assert result.pick == table["nmse"].idxmin() and result.pick in result.reason
    assert set(result.policy_picks) == {c.name for c in candidates}
    assert result.estimates.shape == (3, 4, 4) and result.truths.shape == (3, 4)
    per_policy = result.per_policy()
    assert isinstance(per_policy, pd.DataFrame) and len(per_policy) == 16 and per_policy["picked"].sum() == 4
    assert (per_policy["mse_debiased"] < per_policy["mse"]).all() and (result.truth_se > 0).all()
    assert (result.fits["weight_correlation"] > 0.8).all()
    again = pasif(dataset, inputs, ["dm", "ipw", "snipw", "dr"], n_splits=3, regularization=100.0, reward_model=Ridge(), seed=0)
    assert np.array_equal(again.estimates, result.estimates)


def test_pasif_default_estimators_without_a_reward_model_and_with_a_q_table():
    task, dataset, _, inputs = _bandit_case(800, n_candidates=3)
    result = pasif(dataset, inputs, n_splits=2, regularization=100.0, q_model=None, ks=(1, 2, 3, 10))
    assert set(result.estimator_names) == {"ipw", "snipw"}
    assert result.ks == (1, 2, 3)  # k = 10 > 3 candidates left out
    q = task.expected_reward(dataset.observations[:, 0])  # (n, A) the true q as a "reward model"
    with_q = pasif(dataset, inputs, ["dm", "dr", "ipw"], n_splits=2, regularization=100.0, q_model=q)
    assert list(with_q.table().index) == ["dm", "dr", "ipw"] and np.isfinite(with_q.table()["nmse"]).all()
    # D_b's rows of the q̂ table are what DM averages: Σ_a π̃_e(a | x_i) q(x_i, a) over the pseudo log
    assert np.isfinite(with_q.estimates).all()


# --------------------------------------------------------------------------- bad input
def test_bad_input_gives_one_clear_error():
    task, dataset, candidates, inputs = _bandit_case(400, n_candidates=2)
    one = bandit_inputs(task, dataset, candidates[:1], q_model="regression")
    with pytest.raises(PasifError, match="at least 2 candidate policies, found 1"):
        pasif(dataset, one)
    small = dataset.subset(np.arange(60))
    with pytest.raises(PasifError, match="expected at least 20 in each"):
        pasif(small, bandit_inputs(task, small, candidates, q_model="regression"), q_model=None)
    with pytest.raises(PasifError, match="dm needs initial_v_hat"):
        pasif(dataset, inputs, ["dm", "ipw"], q_model=None)
    with pytest.raises(PasifError, match="sips cannot run on the pseudo logs"):
        pasif(dataset, inputs, ["sips", "ipw"], q_model=None)
    with pytest.raises(PasifError, match="kernel_ipw cannot run"):
        pasif(dataset, inputs, ["kernel_ipw", "ipw"], q_model=None)
    with pytest.raises(PasifError, match="estimators: estimator: expected one of"):
        pasif(dataset, inputs, ["no_such", "ipw"], q_model=None)
    with pytest.raises(PasifError, match="at least 2, found"):
        pasif(dataset, inputs, ["ipw"], q_model=None)
    with pytest.raises(PasifError, match="n_splits: expected an int >= 2"):
        pasif(dataset, inputs, ["ipw", "snipw"], q_model=None, n_splits=1)
    with pytest.raises(PasifError, match="target_ratio: expected a number in"):
        pasif(dataset, inputs, ["ipw", "snipw"], q_model=None, target_ratio=1.0)
    with pytest.raises(PasifError, match="behavior_action_probs"):
        pasif(replace(dataset, behavior_action_probs=None), inputs, ["ipw", "snipw"], q_model=None)
    with pytest.raises(PasifError, match="q_model: expected a finite q̂ table of shape"):
        pasif(dataset, inputs, ["dm", "ipw"], q_model=np.zeros((3, 3)))
    with pytest.raises(PasifError, match="rho: expected"):
        pseudo_split(dataset, np.ones((dataset.n_trajectories, task.n_actions)), seed=0)


def test_trajectories_are_refused_with_the_reason():
    from opelab.envs import TabularMDP, collect
    from opelab.policies import UniformPolicy

    mdp = TabularMDP.random(4, 2, horizon=3, gamma=0.9, seed=0)
    dataset = collect(mdp, UniformPolicy(2), 50, seed=0)
    with pytest.raises(PasifError, match="one-step logs \\(horizon 1\\), found horizon 3"):
        fit_subsampling(dataset, np.ones(50))
