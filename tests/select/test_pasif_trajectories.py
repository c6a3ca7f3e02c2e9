"""PAS-IF on trajectories: the per-step rule, pool + rejection split, the reweighted pseudo truth against the
exact value of the pseudo policy (a tabular MDP solved by dynamic programming), and ``pasif`` end to end."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from opelab.data import ActionSpace, LoggedDataset
from opelab.envs import TabularMDP, collect
from opelab.ope.estimators import EstimationContext
from opelab.ope.evaluate import evaluate
from opelab.ope.inputs import OPEInput, build_inputs
from opelab.policies import EpsilonGreedyPolicy, SoftmaxPolicy, TabularPolicy, TabularQ
from opelab.select.pasif import (
    PasifError,
    PasifResult,
    SubsamplingRule,
    fit_trajectory_subsampling,
    pasif,
    pseudo_trajectory_split,
)


def _task() -> TabularMDP:
    """6 states, 3 actions, horizon 6, γ = 0.9, two terminal states (mean trajectory length ≈ 3)."""
    return TabularMDP.random(6, 3, horizon=6, gamma=0.9, seed=3, reward_noise=0.2, n_terminal=2)


def _policies(task: TabularMDP):
    """A softmax behavior policy and three candidates: a sharper softmax, an ε-greedy on random actions and a
    random time-dependent table (its per-step ratios depend on t, which the rule g(s, a) cannot see)."""
    rng = np.random.default_rng(0)
    q = TabularQ(task.optimal_q())
    behavior = SoftmaxPolicy(q, 1.0, name="behavior")
    candidates = [
        SoftmaxPolicy(q, 0.5, name="near"),
        EpsilonGreedyPolicy(TabularPolicy(np.eye(task.n_actions)[rng.integers(0, task.n_actions, task.n_states)]), 0.3, name="eps"),
        TabularPolicy(rng.dirichlet(np.ones(task.n_actions), size=(task.horizon, task.n_states)), name="time_dependent"),
    ]
    return behavior, candidates


def _case(n: int, seed: int = 0):
    task = _task()
    behavior, candidates = _policies(task)
    dataset = collect(task, behavior, n, seed=seed)
    inputs = build_inputs(dataset, candidates, q_function="fqe", weights=None)
    return task, behavior, candidates, dataset, inputs


def _exact_pseudo_value(task: TabularMDP, behavior, rule: SubsamplingRule) -> float:
    """V(π̃) by backward induction, π̃_t(a | s) = π_b(a | s) g(s, a) / m(s) on every state of the MDP."""
    pi_b = task.policy_table(behavior)  # (H, S, A)
    g = rule.rho(np.arange(task.n_states))  # (S, A)
    pi_tilde = pi_b * g / (pi_b * g).sum(axis=-1, keepdims=True)
    return task.policy_value(TabularPolicy(pi_tilde, name="pseudo"))


# --------------------------------------------------------------------------- importance fitting
@pytest.mark.parametrize("one_hot", [False, True])
def test_trajectory_gradient_matches_finite_differences(one_hot):
    from opelab.select.pasif import _trajectory_objective

    rng = np.random.default_rng(0)
    N, d, A = 60, 4, 3
    x = rng.integers(0, d, N) if one_hot else rng.standard_normal((N, d))
    args = (x, d, rng.dirichlet(np.ones(A), N), rng.integers(0, A, N), rng.exponential(size=N), 0.6, 3.0, 1e-3)
    theta = 0.3 * rng.standard_normal(d * A + A)
    grad = _trajectory_objective(theta, *args)[1]
    step = 1e-6
    numeric = [
        (_trajectory_objective(theta + e, *args)[0] - _trajectory_objective(theta - e, *args)[0]) / (2 * step)
        for e in np.eye(len(theta)) * step
    ]
    assert np.allclose(grad, numeric, atol=1e-7)


def test_fitted_pseudo_weights_correlate_with_the_per_step_weights():
    # Measured on this log (n = 3000, mean length 3.0, target_ratio 0.2, the λ grid): Pearson correlation of
    # w̃ = g / m with the real per-step ratio over the valid steps, near 0.971, eps 0.997, time_dependent 0.568
    # (its ratios depend on the step, which g(s, a) does not see); mean trajectory acceptance 0.18-0.19.
    _, _, candidates, dataset, inputs = _case(3000)
    w = EstimationContext(dataset, inputs).step_ratio  # (P, n, H)
    rules = [fit_trajectory_subsampling(dataset, w[p], target_ratio=0.2) for p in range(len(candidates))]
    correlations = [rule.weight_correlation for rule in rules]
    assert correlations[0] > 0.9 and correlations[1] > 0.9 and correlations[2] > 0.4, correlations
    for rule, weights in zip(rules, w):
        assert rule.n_states == dataset.observations[dataset.mask].max() + 1  # one-hot over the logged state ids
        assert rule.regularization in (0.1, 1.0, 10.0, 100.0, 1000.0)
        assert abs(rule.mean_acceptance - 0.2) <= 0.02  # the λ rule's tolerance
        assert rule.weight_loss < np.mean((weights[dataset.mask] - 1.0) ** 2)  # better than the start g ≡ c
    assert rules[0].step_share == pytest.approx(rules[1].step_share)
    lengths = dataset.lengths
    assert np.mean(rules[0].step_share ** lengths) == pytest.approx(0.2, abs=1e-9)


# --------------------------------------------------------------------------- the split and the pseudo truth
def test_split_parts_and_pseudo_propensities():
    task, behavior, candidates, dataset, inputs = _case(2000)
    g = np.random.default_rng(1).uniform(0.3, 0.95, size=(dataset.n_trajectories, dataset.horizon, task.n_actions))
    split = pseudo_trajectory_split(dataset, g, seed=0, pool_ratio=0.4)
    pool, ev, bh = split.pool_indices, split.evaluation_indices, split.behavior_indices
    assert set(ev) <= set(pool) and not set(pool) & set(bh) and len(pool) + len(bh) == dataset.n_trajectories
    assert abs(len(pool) / dataset.n_trajectories - 0.4) < 4 * np.sqrt(0.4 * 0.6 / dataset.n_trajectories)
    assert split.behavior_part.equals(dataset.subset(bh))  # real behavior data, real propensities
    pi_b, mask = dataset.behavior_action_probs[bh], dataset.mask[bh]
    joint = (pi_b * g[bh])[mask]  # (valid steps, A)
    assert split.eval_action_probs.shape == (len(bh), dataset.horizon, task.n_actions)
    assert np.allclose(split.eval_action_probs[mask], joint / joint.sum(axis=-1, keepdims=True)) and (split.eval_action_probs[~mask] == 0).all()
    assert split.eval_pscore.shape == (len(bh), dataset.horizon) and (split.eval_pscore[~mask] == 1).all()
    assert 1.0 <= split.truth_ess <= len(ev)
    again = pseudo_trajectory_split(dataset, g, seed=0, pool_ratio=0.4)
    assert np.array_equal(again.evaluation_indices, ev) and again.truth == split.truth


@pytest.mark.statistical
def test_reweighted_pseudo_truth_matches_the_exact_value_of_the_pseudo_policy():
    # The rule is fitted on a small log (λ = 0.1, so m(s) varies: 0.40-0.47 over the logged states); the
    # pseudo truths come from 4 independent logs of 50,000 trajectories (about 4,500 accepted each, ESS of c
    # about 750). Their mean is within 4 SE of the exact V(π̃) (SE of the mean from the reported standard
    # errors; measured 1.931 vs 1.977, SE 0.024), and so is PDIS on D_b (real behavior data, π̃'s
    # propensities). The plain D_e mean is far off: Π_t m(s_t) varies with the length (terminal states), so
    # acceptance favours short, low-return trajectories (measured 1.079, 185 of its SEs below).
    task, behavior, _, small, inputs = _case(3000)
    w = EstimationContext(small, inputs).step_ratio
    rule = fit_trajectory_subsampling(small, w[0], target_ratio=0.2, regularization=0.1)
    exact = _exact_pseudo_value(task, behavior, rule)
    reweighted, mean, pdis = [], [], []
    for i in range(4):
        large = collect(task, behavior, 50_000, seed=100 + i)
        split = pseudo_trajectory_split(large, rule, seed=i)
        reweighted.append((split.truth, split.truth_se))
        plain = pseudo_trajectory_split(large, rule, seed=i, truth="mean")
        mean.append((plain.truth, plain.truth_se))
        d_b = split.behavior_part
        pseudo = OPEInput(policy_names=("pseudo",), eval_pscore=split.eval_pscore[None], eval_action_probs=split.eval_action_probs[None])
        ctx = EstimationContext(d_b, pseudo)
        terms = (ctx.cumulative_ratio[0] * d_b.discounted_rewards).sum(axis=1)
        pdis.append((evaluate(d_b, pseudo, ["pdis"]).estimates[0, 0], terms.std(ddof=1) / np.sqrt(len(terms))))
    for values in (reweighted, mean, pdis):
        assert all(np.isfinite(v) and se > 0 for v, se in values)
    value, se = np.mean([v for v, _ in reweighted]), np.sqrt(np.sum([s**2 for _, s in reweighted])) / 4
    assert abs(value - exact) <= 4 * se, (value, exact, se)
    value, se = np.mean([v for v, _ in pdis]), np.sqrt(np.sum([s**2 for _, s in pdis])) / 4
    assert abs(value - exact) <= 4 * se, (value, exact, se)
    value, se = np.mean([v for v, _ in mean]), np.sqrt(np.sum([s**2 for _, s in mean])) / 4
    assert abs(value - exact) > 20 * se, (value, exact, se)


# --------------------------------------------------------------------------- pasif
def test_pasif_on_trajectories_with_importance_sampling_estimators():
    _, _, candidates, dataset, inputs = _case(3000)
    names = ["tis", "pdis", "sntis", "snpdis"]
    result = pasif(dataset, inputs, names, n_splits=3, q_model=None, seed=0)
    assert isinstance(result, PasifResult) and result.estimator_names == tuple(names)
    assert result.estimates.shape == (3, 4, 3) and result.truths.shape == (3, 3) and result.truth_se.shape == (3, 3)
    assert np.isfinite(result.estimates).all() and (result.truth_se > 0).all()
    table = result.table()
    assert list(table.index) == names and np.isfinite(table["nmse"]).all()
    assert result.pick == table["nmse"].idxmin() and result.pick in result.reason and "3 splits" in result.reason
    assert set(result.policy_picks) == {c.name for c in candidates} and set(result.policy_picks.values()) <= set(names)
    fits = result.fits
    assert list(fits["policy"]) == [c.name for c in candidates]
    assert {"mean_acceptance", "step_share", "accepted", "truth_ess", "weight_correlation"} <= set(fits.columns)
    assert (fits["truth_ess"] <= fits["accepted"]).all() and (fits["accepted"] >= 2).all()
    again = pasif(dataset, inputs, names, n_splits=3, q_model=None, seed=0)
    assert np.array_equal(again.estimates, result.estimates) and np.array_equal(again.truths, result.truths)
    defaults = pasif(dataset, inputs, n_splits=2, q_model=None, regularization=10.0)
    assert set(defaults.estimator_names) == {"tis", "pdis", "sntis", "snpdis"}


def test_pasif_on_trajectories_refits_tabular_q_and_marginal_weights():
    _, _, _, dataset, inputs = _case(3000)
    names = ["pdis", "dm", "dr", "sm_snis", "sam_is"]
    result = pasif(dataset, inputs, names, n_splits=2, q_model="refit", regularization=10.0, seed=1)
    assert result.estimator_names == tuple(names) and np.isfinite(result.estimates).all()
    assert result.pick in names and result.pick in result.reason
    # the default on integer states ("auto") is the tabular refit: dm, the DR forms and the marginal ones join in
    default = pasif(dataset, inputs, n_splits=2, regularization=10.0, seed=1)
    assert {"tis", "pdis", "dm", "dr", "sm_is", "sam_is"} <= set(default.estimator_names) and "drl" not in default.estimator_names


# --------------------------------------------------------------------------- bad input
def test_bad_trajectory_input_gives_one_clear_error():
    task, behavior, candidates, dataset, inputs = _case(400)
    with pytest.raises(PasifError, match="inputs: .*at least 2 candidate policies, found 1"):
        pasif(dataset, build_inputs(dataset, candidates[:1], q_function="fqe", weights=None), ["tis", "pdis"], q_model=None)
    with pytest.raises(PasifError, match="dataset.behavior_action_probs: PAS-IF on trajectories needs"):
        pasif(replace(dataset, behavior_action_probs=None), inputs, ["tis", "pdis"], q_model=None)
    continuous = LoggedDataset(
        observations=dataset.observations, actions=np.asarray(dataset.actions, dtype=np.float64)[..., None],
        rewards=dataset.rewards, terminals=dataset.terminals, mask=dataset.mask, behavior_pscore=dataset.behavior_pscore,
        info=replace(dataset.info, action_space=ActionSpace.continuous(1)),
    )  # fmt: skip
    with pytest.raises(PasifError, match="dataset: PAS-IF needs discrete actions, found continuous actions"):
        pasif(continuous, inputs, ["tis", "pdis"], q_model=None)
    with pytest.raises(PasifError, match="accepts about n·pool_ratio·target_ratio = 8 of the 400 trajectories"):
        pasif(dataset, inputs, ["tis", "pdis"], q_model=None, pool_ratio=0.2, target_ratio=0.1)
    with pytest.raises(PasifError, match="pool_ratio: expected a number in \\(0, 1\\)"):
        pasif(dataset, inputs, ["tis", "pdis"], q_model=None, pool_ratio=1.0)
    # a rule that accepts almost nothing: Π_t g ≈ 1e-3 per step
    tiny = np.full((400, dataset.horizon, task.n_actions), 1e-3)
    with pytest.raises(PasifError, match="accepted [01] of them into D_e .* expected at least 2 in each: give more trajectories, a larger target_ratio"):
        pseudo_trajectory_split(dataset, tiny, seed=0)
    with pytest.raises(PasifError, match="drl needs cross_fit_folds"):
        pasif(dataset, inputs, ["drl", "pdis"], q_model="refit")
    with pytest.raises(PasifError, match="dm needs initial_v_hat"):
        pasif(dataset, inputs, ["dm", "pdis"], q_model=None)
    with pytest.raises(PasifError, match="ipw cannot run|mips cannot run on the pseudo logs \\(trajectories"):
        pasif(dataset, inputs, ["mips", "pdis"], q_model=None)
    with pytest.raises(PasifError, match="q_model: on trajectories expected 'auto', 'refit'"):
        pasif(dataset, inputs, ["tis", "pdis"], q_model=np.zeros((400, 3)))
    with pytest.raises(PasifError, match="reward_model: a scikit-learn reward model is for one-step logs"):
        pasif(dataset, inputs, ["tis", "pdis"], q_model="refit", reward_model=object())
    with pytest.raises(PasifError, match="target_weights: expected per-step importance weights of shape \\(400, 6\\)"):
        fit_trajectory_subsampling(dataset, np.ones(400))
