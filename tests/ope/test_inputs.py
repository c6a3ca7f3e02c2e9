"""OPEInput construction: evaluation probabilities, tabular FQE, validation and the SCOPE-RL converter."""

from __future__ import annotations

import numpy as np
import pytest
from ope_cases import policies_for, small_task

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.envs import collect
from opelab.ope import OPEInput, OPEInputError, build_inputs, evaluate, fit_tabular_fqe
from opelab.policies import TabularPolicy, UniformPolicy


def _hand_dataset() -> LoggedDataset:
    """Four trajectories on states {0, 1, 2}, two actions, γ = 0.5 (values worked out in the test)."""
    half = [0.5, 0.5]
    trajs = [
        {"observations": [0, 1], "actions": [0, 1], "rewards": [1.0, 2.0], "behavior_pscore": half},  # A
        {"observations": [0], "actions": [1], "rewards": [0.0], "behavior_pscore": [0.5], "terminal": True},  # B
        {"observations": [0, 1], "actions": [0, 0], "rewards": [3.0, 1.0], "behavior_pscore": half},  # C
        {"observations": [2], "actions": [0], "rewards": [4.0], "behavior_pscore": [0.5], "terminal": True},  # D
    ]
    info = DatasetInfo(task="hand", gamma=0.5, action_space=ActionSpace.discrete(2))
    return LoggedDataset.from_trajectories(trajs, info)


def test_tabular_fqe_by_hand():
    ds = _hand_dataset()
    uniform = UniformPolicy(2)
    always_1 = TabularPolicy(np.array([[0.0, 1.0]] * 3), name="always_1")
    inputs = build_inputs(ds, [uniform, always_1])
    # Step 1: Q_1(1, 1) = 2 (A), Q_1(1, 0) = 1 (C). Uniform: V_1(1) = 1.5; always_1: V_1(1) = 2.
    # Step 0, uniform: targets A = 1 + 0.5·1.5 = 1.75, B = 0 (terminal), C = 3 + 0.5·1.5 = 3.75, D = 4.
    #   Q_0(0, 0) = mean(1.75, 3.75) = 2.75, Q_0(0, 1) = 0, V_0(0) = 1.375.
    #   State 2 saw only action 0: Q_0(2, 1) falls back to the state's mean target 4, so V_0(2) = 4.
    # Step 0, always_1: targets A = 1 + 0.5·2 = 2, C = 3 + 0.5·2 = 4 → Q_0(0, 0) = 3, Q_0(0, 1) = 0, V_0(0) = 0.
    np.testing.assert_allclose(inputs.q_hat[0], [[2.75, 2.0], [0.0, 0.0], [2.75, 1.0], [4.0, 0.0]])
    np.testing.assert_allclose(inputs.v_hat[0], [[1.375, 1.5], [1.375, 0.0], [1.375, 1.5], [4.0, 0.0]])
    np.testing.assert_allclose(inputs.q_hat[1], [[3.0, 2.0], [0.0, 0.0], [3.0, 1.0], [4.0, 0.0]])
    np.testing.assert_allclose(inputs.v_hat[1], [[0.0, 2.0], [0.0, 0.0], [0.0, 2.0], [4.0, 0.0]])
    np.testing.assert_allclose(inputs.initial_v_hat, [[1.375, 1.375, 1.375, 4.0], [0.0, 0.0, 0.0, 4.0]])
    # Padding: pscore 1, Q̂ = V̂ = 0, probabilities 0.
    assert inputs.eval_pscore[0, 1, 1] == 1.0 and inputs.eval_action_probs[0, 1, 1].sum() == 0.0


@pytest.mark.statistical
def test_tabular_fqe_converges_to_the_exact_q_function():
    """Mean |Q̂ − Q| over logged steps falls by more than half from n = 500 to n = 8000 (√16 = 4× expected)."""
    task = small_task(seed=4)
    behavior, evals = policies_for(task, seed=3)
    errors = []
    for n in (500, 8000):
        ds = collect(task, behavior, n, seed=n)
        inputs = build_inputs(ds, evals)
        exact = build_inputs(ds, evals, q_tables=[task.q_values(p) for p in evals])
        errors.append(np.abs(inputs.q_hat - exact.q_hat).sum() / (len(evals) * ds.n_transitions))
    assert errors[1] < errors[0] / 2, errors


def test_fqe_vectorized_over_policies_equals_one_at_a_time(variable_length_case):
    task, _, evals, ds = variable_length_case
    together = build_inputs(ds, evals)
    for p, policy in enumerate(evals):
        alone = build_inputs(ds, [policy])
        np.testing.assert_allclose(together.q_hat[p], alone.q_hat[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(together.v_hat[p], alone.v_hat[0], rtol=1e-12, atol=1e-14)


def test_build_inputs_records_evaluation_probabilities(variable_length_case):
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals, ground_truth=task.policy_values(evals))
    i, t = np.nonzero(ds.mask)
    for p, policy in enumerate(evals):
        probs = policy.action_probs(ds.observations[i, t], t)
        np.testing.assert_array_equal(inputs.eval_action_probs[p, i, t], probs)
        np.testing.assert_array_equal(inputs.eval_pscore[p, i, t], probs[np.arange(len(i)), ds.actions[i, t]])
    assert (inputs.eval_pscore[:, ~ds.mask] == 1.0).all()
    assert (inputs.q_hat[:, ~ds.mask] == 0.0).all() and (inputs.v_hat[:, ~ds.mask] == 0.0).all()
    np.testing.assert_array_equal(inputs.ground_truth_se, 0.0)
    assert inputs.policy_names == tuple(p.name for p in evals)


def test_q_tables_give_exact_q_on_logged_steps(variable_length_case):
    task, _, evals, ds = variable_length_case
    q = [task.q_values(p) for p in evals]
    inputs = build_inputs(ds, evals, q_tables=q)
    i, t = np.nonzero(ds.mask)
    for p in range(len(evals)):
        np.testing.assert_array_equal(inputs.q_hat[p, i, t], q[p][t, ds.observations[i, t], ds.actions[i, t]])
        v = task.state_values(evals[p])
        np.testing.assert_allclose(inputs.v_hat[p, i, t], v[t, ds.observations[i, t]], rtol=1e-12)


def test_build_inputs_errors(variable_length_case):
    task, _, evals, ds = variable_length_case
    with pytest.raises(OPEInputError, match="n_actions: expected 3, found 2"):
        build_inputs(ds, [UniformPolicy(2)])
    with pytest.raises(OPEInputError, match="at least one policy"):
        build_inputs(ds, [])
    with pytest.raises(OPEInputError, match="one table per policy"):
        build_inputs(ds, evals, q_tables=[np.zeros((6, 3))])
    with pytest.raises(OPEInputError, match=r"q_tables\[0\]: expected shape"):
        build_inputs(ds, evals[:1], q_tables=[np.zeros((6, 4))])
    with pytest.raises(OPEInputError, match="ground_truth_se"):
        build_inputs(ds, evals, ground_truth_se=[0.0] * 3)


def test_opeinput_validation():
    ones = np.ones((2, 3, 4))
    with pytest.raises(OPEInputError, match="policy_names"):
        OPEInput(policy_names=("a", "a"), eval_pscore=ones)
    with pytest.raises(OPEInputError, match=r"eval_pscore: expected shape \(P=3"):
        OPEInput(policy_names=("a", "b", "c"), eval_pscore=ones)
    with pytest.raises(OPEInputError, match=r"q_hat: expected shape \(2, 3, 4\)"):
        OPEInput(policy_names=("a", "b"), eval_pscore=ones, q_hat=np.ones((2, 3, 5)))
    bad = ones.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(OPEInputError, match=r"eval_pscore: expected finite values, found .*nan.* at index \(1, 2, 3\)"):
        OPEInput(policy_names=("a", "b"), eval_pscore=bad)
    bad[1, 2, 3] = -0.5
    with pytest.raises(OPEInputError, match=r"non-negative.*\(1, 2, 3\)"):
        OPEInput(policy_names=("a", "b"), eval_pscore=bad)
    with pytest.raises(OPEInputError, match="ground_truth: expected shape"):
        OPEInput(policy_names=("a", "b"), eval_pscore=ones, ground_truth=[1.0])
    inputs = OPEInput(policy_names=("a", "b"), eval_pscore=ones)
    assert not inputs.eval_pscore.flags.writeable


def test_check_dataset_catches_misaligned_inputs(variable_length_case):
    task, _, evals, ds = variable_length_case
    good = build_inputs(ds, evals)
    short = OPEInput(policy_names=good.policy_names, eval_pscore=np.asarray(good.eval_pscore)[:, :10])
    with pytest.raises(OPEInputError, match="match the dataset"):
        evaluate(ds, short)
    pscore = np.array(good.eval_pscore)
    i, t = np.argwhere(~ds.mask)[0]
    pscore[0, i, t] = 0.3
    with pytest.raises(OPEInputError, match=rf"eval_pscore: expected 1.0 on padded steps .* at index \(0, {i}, {t}\)"):
        evaluate(ds, OPEInput(policy_names=good.policy_names, eval_pscore=pscore))


def _scope_rl_input_dict(ds: LoggedDataset, task, evals) -> dict:
    """What SCOPE-RL's CreateOPEInput would hand over: step-major arrays over n * H steps."""
    n, H, A = ds.n_trajectories, ds.horizon, ds.action_space.n_actions
    steps = np.tile(np.arange(H), n)
    obs = np.asarray(ds.observations).reshape(-1)
    out = {}
    for p in evals:
        q = task.q_values(p)
        out[p.name] = {
            "evaluation_policy_action_dist": p.action_probs(obs, steps),
            "state_action_value_prediction": q[steps, obs],
            "initial_state_value_prediction": task.state_values(p)[0, ds.observations[:, 0]],
            "on_policy_policy_value": np.array([1.0, 2.0, 4.0]),
            "gamma": ds.gamma,
        }
        assert out[p.name]["evaluation_policy_action_dist"].shape == (n * H, A)
    return out


def test_from_scope_rl_matches_build_inputs(variable_length_case):
    task, _, evals, ds = variable_length_case
    native = build_inputs(ds, evals, q_tables=[task.q_values(p) for p in evals])
    input_dict = _scope_rl_input_dict(ds, task, evals)
    for p, policy in enumerate(evals):
        input_dict[policy.name]["state_marginal_importance_weight"] = native.state_marginal_weights[p].reshape(-1)
        input_dict[policy.name]["state_action_marginal_importance_weight"] = native.marginal_weights[p].reshape(-1)
    converted = OPEInput.from_scope_rl(input_dict, ds)
    assert converted.policy_names == native.policy_names
    for name in ("eval_pscore", "eval_action_probs", "q_hat", "v_hat", "initial_v_hat", "state_marginal_weights", "marginal_weights"):
        np.testing.assert_allclose(getattr(converted, name), getattr(native, name), rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(converted.ground_truth, 7.0 / 3.0)
    np.testing.assert_allclose(converted.ground_truth_se, np.std([1.0, 2.0, 4.0], ddof=1) / np.sqrt(3))
    np.testing.assert_allclose(evaluate(ds, converted).estimates, evaluate(ds, native).estimates, rtol=1e-12)


def test_from_scope_rl_errors(variable_length_case):
    task, _, evals, ds = variable_length_case
    good = _scope_rl_input_dict(ds, task, evals[:1])
    name = evals[0].name
    wrong_gamma = {name: {**good[name], "gamma": 0.5}}
    with pytest.raises(OPEInputError, match="gamma: expected the dataset's gamma"):
        OPEInput.from_scope_rl(wrong_gamma, ds)
    wrong_shape = {name: {**good[name], "evaluation_policy_action_dist": np.ones((5, 3)) / 3}}
    with pytest.raises(OPEInputError, match="evaluation_policy_action_dist: expected shape"):
        OPEInput.from_scope_rl(wrong_shape, ds)
    with pytest.raises(OPEInputError, match="at least one"):
        OPEInput.from_scope_rl({}, ds)


def test_tabular_fqe_rejects_non_tabular_observations():
    info = DatasetInfo(task="float-obs", gamma=0.9, action_space=ActionSpace.discrete(2))
    ds = LoggedDataset.from_trajectories(
        [{"observations": np.zeros((2, 3)), "actions": [0, 1], "rewards": [0.0, 1.0], "behavior_pscore": [0.5, 0.5]}], info
    )
    with pytest.raises(ValueError, match="tabular FQE needs non-negative integer state ids"):
        fit_tabular_fqe(ds, np.full((1, 2, 1, 2), 0.5))
