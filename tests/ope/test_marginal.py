"""Marginal weights and marginal estimators against exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from ope_cases import policies_for, small_task

from opelab.envs import TabularMDP, collect
from opelab.ope import build_inputs, evaluate, get_estimator
from opelab.ope.estimators import EstimationContext, spectrum
from opelab.ope.weights import FlowWeights, solve_flow_weights, tabular_marginal_weights

MARGINAL = ["sam_is", "sam_snis", "sam_dr", "sam_sndr", "sm_is", "sm_snis", "sm_dr", "sm_sndr"]


def exact_distributions(task: TabularMDP, policy) -> tuple[np.ndarray, np.ndarray]:
    """d_t(s) with an absorbing end state appended, and π_t(a|s), by forward recursion (written here,
    independently of the library): shapes (H, S+1) and (H, S, A)."""
    pi = task.policy_table(policy)
    S, H = task.n_states, task.horizon
    d = np.zeros((H, S + 1))
    d[0, :S] = task.initial
    for t in range(H - 1):
        for s in range(S):
            for a in range(task.n_actions):
                mass = d[t, s] * pi[t, s, a]
                for s2 in range(S):
                    if task.terminal_states[s2]:
                        d[t + 1, S] += mass * task.transitions[s, a, s2]
                    else:
                        d[t + 1, s2] += mass * task.transitions[s, a, s2]
        d[t + 1, S] += d[t, S]
    return d, pi


def exact_weights(task: TabularMDP, behavior, policy) -> FlowWeights:
    d_b, pi_b = exact_distributions(task, behavior)
    d_e, pi_e = exact_distributions(task, policy)
    S = task.n_states
    w_state = np.divide(d_e, d_b, out=np.zeros_like(d_e), where=d_b > 0)
    pair_e = d_e[:, :S, None] * pi_e
    pair_b = d_b[:, :S, None] * pi_b
    w_pair = np.zeros((task.horizon, S + 1, task.n_actions))
    w_pair[:, :S] = np.divide(pair_e, pair_b, out=np.zeros_like(pair_e), where=pair_b > 0)
    w_pair[:, S, 0] = w_state[:, S]
    return FlowWeights(state=w_state[None], state_action=w_pair[None])


def _policy_probs_with_absorbing(task, policies):
    tables = np.stack([task.policy_table(p) for p in policies])
    return np.concatenate([tables, np.zeros((len(policies), task.horizon, 1, task.n_actions))], axis=2)


def test_flow_solver_on_expected_counts_gives_the_exact_weights():
    """The tabular solver, handed the population counts of the behavior policy, returns the exact
    per-step ratios d_t^π / d_t^b to 1e-8 (computed above by an independent recursion)."""
    task = small_task(seed=8)
    behavior, evals = policies_for(task, seed=4)
    counts = task.expected_transition_counts(behavior)
    solved = solve_flow_weights(counts, _policy_probs_with_absorbing(task, evals))
    for p, policy in enumerate(evals):
        exact = exact_weights(task, behavior, policy)
        np.testing.assert_allclose(solved.state[p], exact.state[0], atol=1e-8, rtol=0)
        np.testing.assert_allclose(solved.state_action[p, :, : task.n_states], exact.state_action[0, :, : task.n_states], atol=1e-8, rtol=0)
        np.testing.assert_allclose(solved.state_action[p, :, -1, 0], exact.state[0, :, -1], atol=1e-8, rtol=0)


def test_exact_weights_average_to_one_under_the_behavior_policy():
    task = small_task(seed=8)
    behavior, evals = policies_for(task, seed=4)
    d_b, pi_b = exact_distributions(task, behavior)
    for policy in evals:
        w = exact_weights(task, behavior, policy)
        np.testing.assert_allclose((w.state[0] * d_b).sum(axis=1), 1.0, atol=1e-12)
        pair_b = d_b[:, : task.n_states, None] * pi_b
        total = (w.state_action[0, :, : task.n_states] * pair_b).sum(axis=(1, 2)) + w.state[0, :, -1] * d_b[:, -1]
        np.testing.assert_allclose(total, 1.0, atol=1e-12)


@pytest.mark.statistical
def test_estimated_weights_converge_to_the_exact_ones():
    """Mean |ŵ − w| over logged steps more than halves from n = 500 to n = 8000 (√16 = 4× expected)."""
    task = small_task(seed=8)
    behavior, evals = policies_for(task, seed=4)
    tables = np.stack([task.policy_table(p) for p in evals])
    errors = []
    for n in (500, 8000):
        ds = collect(task, behavior, n, seed=n)
        S = int(ds.observations.max()) + 1
        w_state, w_pair = tabular_marginal_weights(ds, tables[:, :, :S])
        exact = build_inputs(ds, evals, weights=_stack_exact(task, behavior, evals))
        errors.append(np.abs(w_pair - exact.marginal_weights).mean() + np.abs(w_state - exact.state_marginal_weights).mean())
    assert errors[1] < errors[0] / 2, errors


def _stack_exact(task, behavior, evals) -> FlowWeights:
    parts = [exact_weights(task, behavior, p) for p in evals]
    return FlowWeights(np.concatenate([w.state for w in parts]), np.concatenate([w.state_action for w in parts]))


@pytest.mark.statistical
def test_marginal_estimators_are_unbiased_with_exact_weights():
    """SAM-IS, SM-IS, their DR forms and points of the SOPE spectrum: the mean over 300 datasets is within
    3.5 standard errors of the exact value (a deliberately wrong Q̂ keeps the DR check honest)."""
    task = small_task(seed=5)
    behavior, evals = policies_for(task, seed=1)
    truth = task.policy_values(evals)
    weights = _stack_exact(task, behavior, evals)
    rng = np.random.default_rng(0)
    wrong_q = [task.q_values(p) + rng.normal(0.0, 0.5, size=(task.horizon, task.n_states, task.n_actions)) for p in evals]
    names = ["sam_is", "sm_is", "sam_dr", "sm_dr", spectrum("sam_is", 1), spectrum("sm_dr", 2)]
    est = []
    for d in range(300):
        ds = collect(task, behavior, 50, seed=7000 + d)
        est.append(evaluate(ds, build_inputs(ds, evals, q_tables=wrong_q, weights=weights), names).estimates)
    est = np.array(est)
    z = np.abs(est.mean(axis=0) - truth) / (est.std(axis=0, ddof=1) / np.sqrt(len(est)))
    assert (z < 3.5).all(), f"z-scores per (estimator, policy):\n{np.round(z, 2)}"


def _reference(name: str, ds, inputs, p: int, k: int = 0) -> float:
    """Per-trajectory loop over the marginal forms (absorbed steps keep their weights in SN means)."""
    n, H, g = ds.n_trajectories, ds.horizon, ds.gamma
    ratio = inputs.eval_pscore[p] / ds.behavior_pscore
    pair = inputs.marginal_weights[p] if name.startswith("sam") else inputs.state_marginal_weights[p] * ratio
    W = np.empty((n, H))
    for i in range(n):
        for t in range(H):
            if t < k:
                W[i, t] = np.prod(ratio[i, : t + 1])
            else:
                W[i, t] = pair[i, t - k] * np.prod(ratio[i, t - k + 1 : t + 1])
    W_prev = np.concatenate([np.ones((n, 1)), W[:, :-1]], axis=1)
    if "sn" in name:
        W, W_prev = W / W.mean(axis=0), W_prev / W_prev.mean(axis=0)
    total = 0.0
    for i in range(n):
        for t in range(int(ds.lengths[i])):
            r = ds.rewards[i, t]
            if name.endswith("dr"):
                total += g**t * (W[i, t] * (r - inputs.q_hat[p, i, t]) + W_prev[i, t] * inputs.v_hat[p, i, t])
            else:
                total += g**t * W[i, t] * r
    return total / n


@pytest.mark.parametrize("name", MARGINAL)
@pytest.mark.parametrize("k", [0, 2])
def test_marginal_estimators_match_a_per_trajectory_loop(name, k, variable_length_case):
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals)
    estimator = get_estimator(name) if k == 0 else spectrum(name, k)
    got = evaluate(ds, inputs, [estimator]).estimates[0]
    want = [_reference(name, ds, inputs, p, k) for p in range(len(evals))]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_spectrum_ends(variable_length_case):
    """k = 0 is the marginal estimator itself; k ≥ H is per-decision IS / DR."""
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals)
    table = evaluate(ds, inputs, ["sam_is", "pdis", "dr", spectrum("sam_is", 0), spectrum("sm_is", ds.horizon), spectrum("sam_dr", ds.horizon + 3)])
    np.testing.assert_array_equal(table.estimate("sam_is@0"), table.estimate("sam_is"))
    np.testing.assert_allclose(table.estimate(f"sm_is@{ds.horizon}"), table.estimate("pdis"), rtol=1e-12)
    np.testing.assert_allclose(table.estimate(f"sam_dr@{ds.horizon + 3}"), table.estimate("dr"), rtol=1e-12)
    with pytest.raises(ValueError, match="k: expected a non-negative int"):
        spectrum("sam_is", -1)
    with pytest.raises(ValueError, match="marginal estimator"):
        spectrum("pdis", 1)


def test_marginal_estimators_need_weights(variable_length_case):
    task, _, evals, ds = variable_length_case
    bare = build_inputs(ds, evals, weights=None)
    assert "sam_is" not in evaluate(ds, bare).estimator_names  # default: only estimators with inputs
    with pytest.raises(ValueError, match="sam_is: needs marginal_weights"):
        evaluate(ds, bare, ["sam_is"])
    ctx = EstimationContext(ds, build_inputs(ds, evals))
    assert get_estimator("sm_snis").estimate(ctx).shape == (len(evals),)


def test_cross_fitting_uses_models_fit_on_the_other_folds(variable_length_case):
    from opelab.ope import fit_tabular_fqe, q_on_logged_steps
    from opelab.data.behavior import fold_indices
    from opelab.ope.inputs import policy_tables

    task, _, evals, ds = variable_length_case
    crossed = build_inputs(ds, evals, n_folds=3, fold_seed=4)
    assert crossed.cross_fit_folds == 3
    tables = policy_tables(ds, evals)
    for train, test in fold_indices(ds.n_trajectories, 3, 4):
        q = q_on_logged_steps(ds.subset(test), fit_tabular_fqe(ds.subset(train), tables))
        held_out = np.take_along_axis(q, np.asarray(ds.actions)[test][None, ..., None], axis=-1)[..., 0]
        np.testing.assert_allclose(crossed.q_hat[:, test], np.where(ds.mask[test], held_out, 0.0), rtol=1e-12)
    plain = build_inputs(ds, evals)
    assert plain.cross_fit_folds is None
    assert not np.allclose(plain.q_hat, crossed.q_hat)
    assert not np.allclose(plain.marginal_weights, crossed.marginal_weights)


def test_drl_needs_cross_fitted_inputs(variable_length_case):
    task, _, evals, ds = variable_length_case
    with pytest.raises(ValueError, match="drl: needs cross_fit_folds"):
        evaluate(ds, build_inputs(ds, evals), ["drl"])
    crossed = build_inputs(ds, evals, n_folds=2)
    table = evaluate(ds, crossed, ["drl", "sam_dr"])
    np.testing.assert_array_equal(table.estimate("drl"), table.estimate("sam_dr"))  # same form, same inputs
    with pytest.raises(ValueError, match="n_folds"):
        build_inputs(ds, evals, n_folds=0)


@pytest.mark.statistical
def test_drl_is_consistent():
    """RMSE of DRL with cross-fitted tabular FQE and weights more than halves from n = 100 to n = 1600."""
    task = small_task(seed=5)
    behavior, evals = policies_for(task, seed=1)
    truth = task.policy_values(evals)
    rmse = []
    for n in (100, 1600):
        est = np.array([evaluate(ds, build_inputs(ds, evals, n_folds=2), ["drl"]).estimates[0] for ds in (collect(task, behavior, n, seed=n + d) for d in range(40))])
        rmse.append(np.sqrt(((est - truth) ** 2).mean(axis=0)))
    assert (rmse[1] < rmse[0] / 2).all(), rmse
