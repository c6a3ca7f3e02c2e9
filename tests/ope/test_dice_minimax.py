"""The DICE Lagrangian solved exactly on tables, and the neural minimax learners (weights and MQL).

Ground truth: the empirical flow solution (``solve_flow_weights``), itself checked against an independent
recursion on the exact model in test_marginal.py, and tabular FQE, checked against exact Q-functions.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ope_cases import policies_for, small_task

from opelab.envs import collect
from opelab.ope import (
    DICE_SETTINGS,
    DiceSettings,
    MinimaxConfig,
    OPEInputError,
    build_inputs,
    evaluate,
    fit_q,
    fit_state_weights,
    fit_weights,
    predict_q,
    predict_weights,
    solve_dice_tabular,
    solve_flow_weights,
    tabular_dice_weights,
    tabular_marginal_weights,
    transition_counts,
)
from opelab.ope.weights import on_logged_steps

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

BUDGET = MinimaxConfig(n_steps=800)


def _tables_with_absorbing(task, policies):
    tables = np.stack([task.policy_table(p) for p in policies])
    return np.concatenate([tables, np.zeros((len(policies), task.horizon, 1, task.n_actions))], axis=2)


def _mean_rewards(counts: np.ndarray, seed: int = 0) -> np.ndarray:
    """Arbitrary rewards per pair: the weights must not depend on them (α_R only enters the ν-free part)."""
    return np.random.default_rng(seed).normal(size=counts.shape[:3])


@pytest.mark.parametrize("name", sorted(DICE_SETTINGS))
def test_tabular_dice_solution_is_the_exact_flow_on_population_counts(name):
    """With the behavior policy's population counts (every reachable pair supported) each DICE setting's
    saddle point is ζ = d^π / d^D, to 1e-8, for state-action and state weights alike."""
    task = small_task(seed=8)
    behavior, evals = policies_for(task, seed=4)
    counts = task.expected_transition_counts(behavior)
    probs = _tables_with_absorbing(task, evals)
    flow = solve_flow_weights(counts, probs)
    dice = solve_dice_tabular(counts, probs, name, mean_rewards=_mean_rewards(counts))
    np.testing.assert_allclose(dice.state_action, flow.state_action, atol=1e-8, rtol=0)
    np.testing.assert_allclose(dice.state, flow.state, atol=1e-8, rtol=0)


def test_unnormalised_dice_equals_the_flow_on_sparse_data():
    """DualDICE (no normalisation) drops the mass sent to unsupported pairs exactly as the flow solver does."""
    task = small_task(seed=8)
    behavior, evals = policies_for(task, seed=4)
    counts = transition_counts(collect(task, behavior, 60, seed=2), n_states=task.n_states)
    probs = _tables_with_absorbing(task, evals)
    pair = counts.sum(axis=-1)[:, : task.n_states]
    reachable = np.einsum("tsa->ts", task.expected_transition_counts(behavior).sum(axis=-1)[:, : task.n_states]) > 0
    assert ((pair == 0) & reachable[..., None]).any(), "the data must miss some reachable pairs"
    flow = solve_flow_weights(counts, probs)
    dice = solve_dice_tabular(counts, probs, "dualdice")
    np.testing.assert_allclose(dice.state_action, flow.state_action, atol=1e-8, rtol=0)
    np.testing.assert_allclose(dice.state, flow.state, atol=1e-8, rtol=0)


def test_tabular_dice_weights_on_a_dataset():
    """The dataset-level entry point (counts and mean rewards from the data) equals the flow weights on data
    that supports every pair π_e reaches, for BestDICE too (its reward term changes ν, not ζ)."""
    task = small_task(seed=8)
    behavior, evals = policies_for(task, seed=4)
    ds = collect(task, behavior, 4000, seed=3)
    S = int(ds.observations.max()) + 1  # terminal states are never logged
    tables = np.stack([task.policy_table(p) for p in evals])[:, :, :S]
    flow_state, flow_pair = tabular_marginal_weights(ds, tables)
    # no mass lost off the support: the flow weights average to 1 at every step over all trajectories
    np.testing.assert_allclose(flow_pair.mean(axis=1), 1.0, atol=1e-10)
    for name in ("bestdice", "gendice"):
        state, pair = tabular_dice_weights(ds, tables, name)
        np.testing.assert_allclose(pair, flow_pair, atol=1e-8, rtol=0)
        np.testing.assert_allclose(state, flow_state, atol=1e-8, rtol=0)


def test_dice_settings_and_solver_reject_bad_input():
    with pytest.raises(ValueError, match="alpha_q: expected a finite number >= 0, found -1"):
        DiceSettings("bad", alpha_q=-1)
    with pytest.raises(ValueError, match="weight method: expected one of"):
        solve_dice_tabular(np.zeros((2, 3, 2, 3)), np.zeros((1, 2, 3, 2)), "dice")
    counts = np.ones((2, 3, 2, 3))
    with pytest.raises(ValueError, match=r"policy_probs: expected shape \(P, 2, 3, 2\), found \(1, 2, 2, 2\)"):
        solve_dice_tabular(counts, np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match="mean_rewards: needed when alpha_r > 0"):
        solve_dice_tabular(counts, np.full((1, 2, 3, 2), 0.5), "bestdice")
    with pytest.raises(ValueError, match="n_steps: expected a positive int, found 0"):
        MinimaxConfig(n_steps=0)


@pytest.fixture(scope="module")
def learned_case():
    task = small_task(seed=8)
    behavior, evals = policies_for(task, seed=4)
    ds = collect(task, behavior, 300, seed=1)
    inputs = build_inputs(ds, evals)  # tabular FQE and the empirical flow weights
    exact = on_logged_steps(ds, solve_flow_weights(task.expected_transition_counts(behavior), _tables_with_absorbing(task, evals)))
    return task, behavior, evals, ds, inputs, exact


def _correlations(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(a[p][mask], b[p][mask])[0, 1] for p in range(len(a))])


@pytest.mark.parametrize("name", sorted(DICE_SETTINGS))
def test_neural_weights_reach_the_tabular_solution(name, learned_case):
    """On a 6-state task (300 trajectories, 800 Adam steps) the network's weights correlate ≥ 0.99 with the
    exact solution of the same objective on the same data (measured 0.993–1.000), and therefore with the
    model's true weights as well as that solution does (to 0.02)."""
    task, _, _, ds, inputs, (_, exact_pair) = learned_case
    learned = predict_weights(fit_weights(ds, inputs.eval_action_probs, name, BUDGET, n_states=task.n_states), ds)
    to_tabular = _correlations(learned, inputs.marginal_weights, ds.mask)
    assert (to_tabular >= 0.99).all(), to_tabular
    to_truth = _correlations(learned, exact_pair, ds.mask)
    tabular_to_truth = _correlations(inputs.marginal_weights, exact_pair, ds.mask)
    assert (to_truth >= tabular_to_truth - 0.02).all(), (to_truth, tabular_to_truth)


def test_neural_weights_on_vector_states(learned_case):
    """The same task with one-hot float vectors as states: the Gaussian kernel (random features) path."""
    task, _, _, ds, inputs, _ = learned_case
    vectors = np.eye(task.n_states)[ds.observations] * ds.mask[..., None]
    vector_ds = dataclasses.replace(ds, observations=vectors)
    fit = fit_weights(vector_ds, inputs.eval_action_probs, "mwl", dataclasses.replace(BUDGET, n_features=64))
    assert fit.encoder.n_states is None
    learned = predict_weights(fit, vector_ds)
    assert (_correlations(learned, inputs.marginal_weights, ds.mask) >= 0.98).all()


def test_mql_reaches_tabular_fqe(learned_case):
    """MQL's Q̂ on the logged pairs is within 0.03 (1.3% of the Q range; measured 0.008–0.017) of tabular
    FQE on average: with the tabular kernel both solve the empirical Bellman equations."""
    task, _, _, ds, inputs, _ = learned_case
    q = predict_q(fit_q(ds, inputs.eval_action_probs, BUDGET, n_states=task.n_states), ds)
    logged = np.take_along_axis(q, np.broadcast_to(ds.actions[None, ..., None], (*q.shape[:3], 1)), axis=-1)[..., 0]
    gap = np.abs(logged - inputs.q_hat)[:, ds.mask].mean(axis=1)
    assert (gap <= 0.03).all(), gap
    assert np.ptp(inputs.q_hat[:, ds.mask]) > 2.0


def test_build_inputs_with_the_neural_learners(learned_case):
    """Cross-fitted MQL + MWL inputs (state and state-action networks) feed every estimator and agree with
    the tabular ones to 0.1 (values ≈ 1.5; 300 Adam steps only)."""
    _, _, evals, ds, inputs, _ = learned_case
    fast = MinimaxConfig(n_steps=300)
    neural = build_inputs(ds, evals, q_function="mql", weights="mwl", minimax=fast, n_folds=2)
    assert neural.cross_fit_folds == 2
    assert neural.state_marginal_weights is not None
    table = evaluate(ds, neural, ["dm", "sam_is", "sm_is", "drl"])
    reference = evaluate(ds, build_inputs(ds, evals, n_folds=2), ["dm", "sam_is", "sm_is", "drl"])
    np.testing.assert_allclose(table.estimates, reference.estimates, atol=0.1)


def test_neural_state_weights_reach_the_tabular_solution(learned_case):
    """w_t(s) regressed from the learned ζ (flow identity) correlates ≥ 0.99 with the tabular state weights."""
    task, _, _, ds, inputs, _ = learned_case
    pair_fit = fit_weights(ds, inputs.eval_action_probs, "gendice", BUDGET, n_states=task.n_states)
    fit = fit_state_weights(pair_fit, ds, BUDGET)
    learned = predict_weights(fit, ds)
    assert (_correlations(learned, inputs.state_marginal_weights, ds.mask) >= 0.99).all()
    with pytest.raises(ValueError, match="every_action: a fit of state weights has no action input"):
        predict_weights(fit, ds, every_action=True)


@pytest.mark.parametrize("vectors", [False, True])
def test_flow_sums_over_logged_steps_equal_the_distinct_input_statistics(vectors, learned_case, monkeypatch):
    """fit_weights takes the flow residual's two sums either from statistics per distinct input (tabular
    data) or over the logged steps (vector states, where nearly every input is distinct and the statistics
    would take P·U·A·D numbers): the two are the same sums in another order, so the same network follows
    the same training curve and predicts the same weights, to the rounding of the logged path's float32
    products (measured: 1.4e-5 relative on the losses); a wrong sum would be off by O(1). The size rule
    picks the statistics on tabular data and the logged steps on vector states with distinct inputs."""
    import opelab.ope.minimax as mm

    task, _, _, ds, inputs, _ = learned_case
    if vectors:
        ds = dataclasses.replace(ds, observations=np.eye(task.n_states)[ds.observations] * ds.mask[..., None])
    cfg = MinimaxConfig(n_steps=60, n_features=32)
    fits = {}
    for path in ("distinct", "logged"):
        monkeypatch.setattr(mm, "_sum_over_logged_steps", lambda distinct, logged, path=path: path == "logged")
        fits[path] = fit_weights(ds, inputs.eval_action_probs, "bestdice", cfg, n_states=None if vectors else task.n_states)
    distinct, logged = fits.values()
    assert np.ptp(distinct.losses) > 0
    np.testing.assert_allclose(logged.losses, distinct.losses, rtol=1e-4)
    np.testing.assert_allclose(predict_weights(logged, ds), predict_weights(distinct, ds), rtol=1e-3, atol=1e-5)
    assert logged.residual == pytest.approx(distinct.residual, rel=1e-4)


def test_the_size_rule_picks_the_smaller_arrays(learned_case):
    import opelab.ope.minimax as mm

    task, _, _, ds, inputs, _ = learned_case
    probs = inputs.eval_action_probs
    P, n, H, A = probs.shape
    assert not mm._sum_over_logged_steps(10, 20) and mm._sum_over_logged_steps(20, 10)
    noisy = dataclasses.replace(ds, observations=np.random.default_rng(0).normal(size=(n, H, 3)) * ds.mask[..., None])  # distinct inputs
    chosen = []
    real = mm._sum_over_logged_steps
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mm, "_sum_over_logged_steps", lambda a, b: chosen.append(real(a, b)) or chosen[-1])
        fit_weights(ds, probs, "mwl", MinimaxConfig(n_steps=2), n_states=task.n_states)
        fit_weights(noisy, probs, "mwl", MinimaxConfig(n_steps=2, n_features=16))
    assert chosen == [False, True]
