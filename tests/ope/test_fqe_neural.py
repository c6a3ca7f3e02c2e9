"""Neural FQE against tabular FQE and exact Q-functions, on a continuous-action task with a closed form,
and on CartPole against rollouts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ope_cases import policies_for, small_task

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.envs import collect, make
from opelab.envs.rollouts import rollout_values
from opelab.ope import FQEConfig, OPEInputError, build_inputs, evaluate, fit_fqe, predict_fqe
from opelab.ope.qfunction import q_on_logged_steps
from opelab.policies import EpsilonGreedyPolicy, GreedyPolicy, SoftmaxPolicy
from opelab.policies.heads import CallableActionValues

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tabular_case():
    task = small_task(seed=8)
    behavior, evals = policies_for(task, seed=4)
    ds = collect(task, behavior, 500, seed=1)
    inputs = build_inputs(ds, evals)  # tabular FQE
    exact = q_on_logged_steps(ds, np.stack([task.q_values(p) for p in evals]))
    exact_logged = np.take_along_axis(exact, np.broadcast_to(ds.actions[None, ..., None], (len(evals), *ds.actions.shape, 1)), -1)[..., 0]
    return task, evals, ds, inputs, exact_logged


@pytest.mark.parametrize("states", ["ids", "one-hot vectors"])
def test_neural_fqe_reaches_tabular_fqe(states, tabular_case):
    """Mean |Q̂_neural − Q̂_tabular| over logged pairs ≤ 0.02 (Q range ≈ 2.2; measured 0.004–0.009), and the
    neural Q̂ is as close to the exact Q as tabular FQE is (to 0.01)."""
    task, _, ds, inputs, exact_logged = tabular_case
    data = ds if states == "ids" else dataclasses.replace(ds, observations=np.eye(task.n_states)[ds.observations] * ds.mask[..., None])
    fit = fit_fqe(data, inputs.eval_action_probs, config=FQEConfig(n_steps=100), n_states=task.n_states if states == "ids" else None)
    q_all, logged = predict_fqe(fit, data)
    assert q_all.shape == inputs.eval_action_probs.shape
    gap = np.abs(logged - inputs.q_hat)[:, ds.mask].mean(axis=1)
    assert (gap <= 0.02).all(), gap
    to_exact = np.abs(logged - exact_logged)[:, ds.mask].mean(axis=1)
    tabular_to_exact = np.abs(inputs.q_hat - exact_logged)[:, ds.mask].mean(axis=1)
    assert (to_exact <= tabular_to_exact + 0.01).all(), (to_exact, tabular_to_exact)


def test_build_inputs_picks_neural_fqe_for_vector_states(tabular_case):
    task, evals, ds, inputs, _ = tabular_case
    vectors = dataclasses.replace(ds, observations=np.eye(task.n_states)[ds.observations] * ds.mask[..., None])

    class OnVectors:  # the same policies, reading the one-hot vectors
        def __init__(self, policy):
            self.policy, self.name, self.n_actions = policy, policy.name, policy.n_actions

        def action_probs(self, observations, steps=None):
            return self.policy.action_probs(np.argmax(observations, axis=-1), steps)

        def pscore(self, observations, actions, steps=None):
            return self.policy.pscore(np.argmax(observations, axis=-1), actions, steps)

        def sample(self, observations, rng, steps=None):
            return self.policy.sample(np.argmax(observations, axis=-1), rng, steps)

    neural = build_inputs(vectors, [OnVectors(p) for p in evals], fqe=FQEConfig(n_steps=50))
    assert neural.marginal_weights is None  # "auto" weights: none for vector states
    np.testing.assert_allclose(evaluate(vectors, neural, ["dm"]).estimates, evaluate(ds, inputs, ["dm"]).estimates, atol=0.05)


def _quadratic_task_data(n: int, c: float, seed: int) -> LoggedDataset:
    """Two steps; s ~ U(−1, 1) each step independently, a ~ N(s, 0.5²), r = −(a − s)²."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, size=(n, 2, 1))
    a = s + rng.normal(0, 0.5, size=(n, 2, 1))
    pscore = np.exp(-((a - s)[..., 0] ** 2) / (2 * 0.25)) / np.sqrt(2 * np.pi * 0.25)
    return LoggedDataset(
        observations=s,
        actions=a,
        rewards=-((a - s)[..., 0] ** 2),
        terminals=np.zeros((n, 2), dtype=bool),
        mask=np.ones((n, 2), dtype=bool),
        behavior_pscore=pscore,
        info=DatasetInfo(task="quadratic", gamma=0.9, action_space=ActionSpace.continuous(1)),
    )


def test_neural_fqe_with_continuous_actions_matches_the_closed_form():
    """π_e(s) = s + c: Q_1(s, a) = −(a − s)², Q_0(s, a) = −(a − s)² − γ c², so V_0 = −c²(1 + γ) = −0.0475
    for c = 0.5 / −0.1 and Q̂ at the logged pairs tracks −(a − s)² − γc² to 0.05 on average."""
    c = np.array([0.5, -0.1])
    ds = _quadratic_task_data(2000, 0.0, seed=0)
    s = np.asarray(ds.observations)
    eval_actions = np.stack([s + ci for ci in c])  # (P, n, H, 1)
    fit = fit_fqe(ds, eval_actions=eval_actions, config=FQEConfig(n_steps=300))
    on_policy, logged = predict_fqe(fit, ds, eval_actions)
    v0 = on_policy[:, :, 0].mean(axis=1)
    np.testing.assert_allclose(v0, -(c**2) * (1 + ds.gamma), atol=0.05)
    a = np.asarray(ds.actions)[..., 0]
    expected = -((a - s[..., 0]) ** 2)[None] - np.array([ds.gamma * c**2, np.zeros(2)]).T[:, None, :]
    assert np.abs(logged - expected).mean() < 0.05


def test_neural_fqe_on_cartpole_is_within_20_percent_of_rollouts():
    """Two policies near a softmax behavior over a linear controller: FQE's initial value (150 trajectories,
    horizon 30, 20 Adam steps per iteration) is within 20% of the value from 500 rollouts."""
    task = make("cartpole", horizon=30)

    def values(obs):
        score = obs[:, 2] * 10 + obs[:, 3] * 2 + obs[:, 1] * 0.5
        return np.stack([-score, score], axis=1)

    base = CallableActionValues(values, 2)
    behavior = SoftmaxPolicy(base, 3.0, name="behavior")
    evals = [SoftmaxPolicy(base, 1.0, name="softmax1"), EpsilonGreedyPolicy(GreedyPolicy(base), 0.5, name="eps0.5")]
    ds = collect(task, behavior, 150, seed=0)
    truth = rollout_values(task, evals, n_episodes=500, seed=1)
    inputs = build_inputs(ds, evals, fqe=FQEConfig(n_steps=20))
    estimate = evaluate(ds, inputs, ["dm"]).estimates[0]
    assert (np.abs(estimate - truth.values) <= 0.2 * np.abs(truth.values)).all(), (estimate, truth.values)


def test_fqe_rejects_bad_input(tabular_case):
    _, evals, ds, inputs, _ = tabular_case
    with pytest.raises(ValueError, match="eval_action_probs: needed for discrete actions, found None"):
        fit_fqe(ds)
    with pytest.raises(ValueError, match=r"eval_action_probs: expected shape \(P, 500, 6, 3\)"):
        fit_fqe(ds, inputs.eval_action_probs[:, :10])
    with pytest.raises(ValueError, match="time_encoding: expected 'onehot' or 'scalar', found 'sin'"):
        FQEConfig(time_encoding="sin")
    with pytest.raises(ValueError, match="n_steps: expected a positive int, found 0"):
        FQEConfig(n_steps=0)
    with pytest.raises(OPEInputError, match="q_function: expected 'auto', 'fqe', 'neural_fqe', 'mql' or 'regression'"):
        build_inputs(ds, evals, q_function="nfqe")
