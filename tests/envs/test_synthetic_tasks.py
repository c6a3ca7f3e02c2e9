"""Sanity tests for the synthetic industry tasks: real-time bidding (budget never negative, clicks in range,
sensible bidding beats under-bidding) and recommendation (engagement in (0, 1), boredom, churn, greedy beats
uniform, the continuous variant recommends the nearest item)."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.envs import (
    RealTimeBidding,
    RealTimeBiddingContinuous,
    Recommendation,
    RecommendationContinuous,
    collect,
    make,
    rollout_values,
)
from opelab.policies import (
    CallableActionValues,
    DeterministicPolicy,
    GaussianPolicy,
    GreedyPolicy,
    SoftmaxPolicy,
    UniformPolicy,
)


class FixedAction:
    """Always the same discrete action."""

    def __init__(self, action: int, n_actions: int) -> None:
        self.action, self.n_actions, self.name = action, n_actions, f"always{action}"

    def action_probs(self, observations, steps=None):
        probs = np.zeros((len(observations), self.n_actions))
        probs[:, self.action] = 1.0
        return probs


# ---------------------------------------------------------------------------------------------- real-time bidding
def run_rtb(task, actions_fn, n=300, seed=0):
    rng = np.random.default_rng(seed)
    states = task.reset(n, rng)
    history, rewards = [states], []
    for _ in range(task.horizon):
        states, r, done = task.step(states, actions_fn(states), rng)
        assert not done.any()
        history.append(states)
        rewards.append(r)
    return np.stack(history, axis=1), np.stack(rewards, axis=1)


def test_rtb_budget_never_negative_and_clicks_in_range():
    task = RealTimeBidding()
    rng = np.random.default_rng(1)
    states, rewards = run_rtb(task, lambda s: rng.integers(task.action_space.n_actions, size=len(s)))
    budget = states[:, :, 1]
    assert (budget >= 0).all() and (budget <= 1).all()
    assert (np.diff(budget, axis=1) <= 1e-12).all()  # spending only
    np.testing.assert_allclose(budget[:, :-1] - budget[:, 1:], states[:, 1:, 2], atol=1e-12)  # spend = budget drop
    assert (rewards >= 0).all() and (rewards <= task.n_auctions).all() and (rewards == np.round(rewards)).all()
    np.testing.assert_array_equal(states[:, 1:, 4], rewards)  # last clicks are observed
    np.testing.assert_allclose(states[0, :, 0], 1 - np.arange(task.horizon + 1) / task.horizon)
    assert ((states[:, 1:, 3] >= 0) & (states[:, 1:, 3] <= 1)).all()


def test_rtb_win_rate_grows_with_the_multiplier():
    task = RealTimeBidding(horizon=4, budget=1e9)  # no budget constraint
    win = [run_rtb(task, lambda s, a=a: np.full(len(s), a))[0][:, 1:, 3].mean() for a in range(7)]
    assert np.all(np.diff(win) > 0)


def test_rtb_sensible_bidding_beats_underbidding():
    task = RealTimeBidding()
    values = rollout_values(task, [FixedAction(3, 7), FixedAction(0, 7), FixedAction(6, 7)], n_episodes=200, seed=0)
    truthful, underbid, overbid = values.values
    assert truthful > underbid + 10 and truthful > overbid  # λ = 1 paces the budget better than λ = 10


def test_rtb_continuous_clips_the_multiplier_and_matches_the_grid():
    disc, cont = RealTimeBidding(), RealTimeBiddingContinuous()
    states = disc.reset(50, np.random.default_rng(0))
    a = disc.step(states, np.full(50, 3), np.random.default_rng(9))
    b = cont.step(states, np.full((50, 1), 1.0), np.random.default_rng(9))
    c = cont.step(states, np.full((50, 1), 1000.0), np.random.default_rng(9))
    d = cont.step(states, np.full((50, 1), 10.0), np.random.default_rng(9))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(c, d):
        np.testing.assert_array_equal(x, y)
    ds = collect(cont, GaussianPolicy(lambda o: np.ones((len(o), 1)), 0.5, low=0.1, high=10.0), 20, seed=0)
    assert ds.actions.shape == (20, 24, 1) and (ds.rewards >= 0).all()


def test_rtb_options_are_checked():
    with pytest.raises(ValueError, match="budget"):
        make("rtb", budget=0.0)
    with pytest.raises(ValueError, match="multipliers"):
        make("rtb", multipliers=(1.0,))
    with pytest.raises(ValueError, match="low, high"):
        make("rtb_continuous", low=5.0, high=1.0)


# ---------------------------------------------------------------------------------------------- recommendation
def test_recsys_engagement_fatigue_and_churn():
    task = Recommendation()
    rng = np.random.default_rng(0)
    states = task.reset(2000, rng)
    item = 7
    nxt, r, done = task.step(states, np.full(2000, item), rng)
    assert ((r > 0) & (r < 1)).all()
    d, c = task.dim, task.categories[item]
    np.testing.assert_allclose(nxt[:, d + c], 1.0)  # fatigue of the shown category rose from 0 to 1
    assert (np.delete(nxt[:, d:], c, axis=1) == 0).all()
    churn = task.churn * (1 - r)
    assert abs(done.mean() - churn.mean()) < 4 * np.sqrt(churn.mean() / 2000)
    # showing the same category again is less engaging on average (boredom)
    _, r2, _ = task.step(nxt, np.full(2000, item), rng)
    assert r2.mean() < r.mean()


def test_recsys_greedy_beats_uniform_and_episodes_vary():
    task = Recommendation()
    greedy = GreedyPolicy(task)  # the task's expected-engagement logits are action values
    policies = [greedy, SoftmaxPolicy(task, 1.0), UniformPolicy(task.n_items)]
    values = rollout_values(task, policies, n_episodes=300, seed=0)
    assert values.values[0] > values.values[1] > values.values[2]
    ds = collect(task, SoftmaxPolicy(CallableActionValues(task.expected_logits, task.n_items), 1.0), 100, seed=0)
    assert len(np.unique(ds.lengths)) > 3 and ds.terminals.any()
    assert ((ds.rewards[ds.mask] > 0) & (ds.rewards[ds.mask] < 1)).all()


def test_recsys_continuous_recommends_the_nearest_item():
    disc, cont = Recommendation(), RecommendationContinuous()
    states = disc.reset(100, np.random.default_rng(3))
    items = np.random.default_rng(4).integers(disc.n_items, size=100)
    jitter = cont.items[items] + np.random.default_rng(5).uniform(-0.01, 0.01, size=(100, cont.dim))
    np.testing.assert_array_equal(cont.items_of(jitter), items)
    a = disc.step(states, items, np.random.default_rng(6))
    b = cont.step(states, jitter, np.random.default_rng(6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    greedy = rollout_values(cont, [DeterministicPolicy(cont.greedy_action)], n_episodes=200, seed=0)
    noisy = rollout_values(cont, [GaussianPolicy(lambda o: np.zeros((len(o), cont.dim)), 0.6, -1.0, 1.0)], 200, seed=0)
    assert greedy.values[0] > noisy.values[0]


def test_recsys_items_are_fixed_by_the_item_seed():
    np.testing.assert_array_equal(make("recsys").items, make("recsys").items)
    assert not np.array_equal(make("recsys").items, make("recsys", item_seed=1).items)
    with pytest.raises(ValueError, match="n_categories"):
        make("recsys", n_items=3, n_categories=5)
