"""Tests for opelab.envs.rollout_values: exact values on tabular and closed-form tasks, standard errors that
shrink as 1/√N, reproducibility, continuous policies, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.data import ActionSpace
from opelab.envs import Pendulum, RolloutValues, gridworld, rollout_values
from opelab.policies import (
    EpsilonGreedyPolicy,
    GaussianPolicy,
    SoftmaxPolicy,
    TabularQ,
    TruncatedGaussianPolicy,
    UniformPolicy,
)


class SurvivalTask:
    """Reward 1 per step; after each step the episode terminates with probability q.

    J = Σ_{t<H} γ^t (1 − q)^t, and the return of one episode of length T is Σ_{t<T} γ^t.
    """

    name = "survival"
    action_space = ActionSpace.discrete(2)

    def __init__(self, q: float, horizon: int = 10, gamma: float = 0.9) -> None:
        self.q, self.horizon, self.gamma = q, horizon, gamma

    def value(self) -> float:
        t = np.arange(self.horizon)
        return float((self.gamma**t * (1 - self.q) ** t).sum())

    def reset(self, n, rng):
        return np.zeros((n, 1))

    def step(self, states, actions, rng):
        return states + 1, np.ones(len(states)), rng.random(len(states)) < self.q


class ProbsOnly:
    """A discrete policy with ``action_probs`` only (no ``sample``)."""

    name = "probs-only"
    n_actions = 2

    def action_probs(self, observations, steps=None):
        return np.full((len(observations), 2), 0.5)


def test_tabular_rollout_values_match_exact_values():
    task = gridworld()
    q = TabularQ(task.optimal_q())
    policies = [SoftmaxPolicy(q, 0.3), EpsilonGreedyPolicy(SoftmaxPolicy(q, 0.05), 0.3), UniformPolicy(4)]
    result = rollout_values(task, policies, n_episodes=3000, seed=0)
    exact = task.policy_values(policies)
    assert isinstance(result, RolloutValues) and result.values.shape == (3,) and result.returns.shape == (3, 3000)
    assert (np.abs(result.values - exact) < 4 * result.standard_errors).all()
    assert result.names == tuple(p.name for p in policies) and result.gamma == task.gamma
    assert not result.values.flags.writeable


@pytest.mark.parametrize("q", [0.0, 0.15, 0.5])
def test_closed_form_value_with_random_terminations(q):
    task = SurvivalTask(q)
    result = rollout_values(task, [UniformPolicy(2), ProbsOnly()], n_episodes=4000, seed=1)
    if q == 0.0:
        np.testing.assert_allclose(result.values, task.value(), rtol=1e-12)
        np.testing.assert_allclose(result.standard_errors, 0.0, atol=1e-12)
    else:
        assert (np.abs(result.values - task.value()) < 4 * result.standard_errors).all()
    undiscounted = rollout_values(task, [UniformPolicy(2)], n_episodes=4000, seed=1, gamma=1.0)
    expected_length = (1 - (1 - q) ** 10) / q if q else 10.0
    assert abs(undiscounted.values[0] - expected_length) <= 4 * undiscounted.standard_errors[0] + 1e-12


def test_standard_error_shrinks_as_one_over_root_n():
    task = SurvivalTask(0.2)
    small = rollout_values(task, [UniformPolicy(2)], n_episodes=2000, seed=2).standard_errors[0]
    large = rollout_values(task, [UniformPolicy(2)], n_episodes=8000, seed=3).standard_errors[0]
    assert large / small == pytest.approx(0.5, rel=0.1)


def test_same_seed_same_values():
    task = gridworld()
    policies = [UniformPolicy(4), SoftmaxPolicy(TabularQ(task.optimal_q()), 0.5)]
    a = rollout_values(task, policies, n_episodes=50, seed=7)
    b = rollout_values(task, policies, n_episodes=50, seed=7)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert not np.array_equal(a.returns, rollout_values(task, policies, n_episodes=50, seed=8).returns)


def test_continuous_policies_on_pendulum():
    task = Pendulum(horizon=50)

    def swing(obs):  # push along the angular velocity (pumps energy in)
        return 2.0 * np.sign(obs[:, 2:3]) * np.ones((len(obs), 1))

    policies = [
        GaussianPolicy(swing, 0.3, low=-2.0, high=2.0),
        TruncatedGaussianPolicy(lambda obs: np.zeros((len(obs), 1)), 1.0, -2.0, 2.0),
    ]
    result = rollout_values(task, policies, n_episodes=100, seed=0)
    assert np.isfinite(result.values).all() and (result.values < 0).all() and (result.standard_errors > 0).all()


def test_errors_name_the_argument():
    task = gridworld()
    with pytest.raises(TypeError, match="policies"):
        rollout_values(task, UniformPolicy(4))
    with pytest.raises(ValueError, match="policies"):
        rollout_values(task, [])
    with pytest.raises(ValueError, match="n_episodes"):
        rollout_values(task, [UniformPolicy(4)], n_episodes=1)
    with pytest.raises(ValueError, match=r"policies\[1\].n_actions"):
        rollout_values(task, [UniformPolicy(4), UniformPolicy(3)])
    with pytest.raises(ValueError, match="gamma"):
        rollout_values(task, [UniformPolicy(4)], gamma=1.2)
