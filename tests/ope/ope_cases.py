"""Small tabular cases shared by the OPE tests."""

from __future__ import annotations

import numpy as np

from opelab.envs import TabularMDP
from opelab.policies import EpsilonGreedyPolicy, SoftmaxPolicy, TabularPolicy, TabularQ


def small_task(seed: int = 3, n_terminal: int = 2) -> TabularMDP:
    """6 states, 3 actions, horizon 6, two terminal states: trajectories of different lengths."""
    return TabularMDP.random(6, 3, horizon=6, gamma=0.9, seed=seed, reward_noise=0.2, n_terminal=n_terminal)


def policies_for(task: TabularMDP, seed: int = 0):
    """A behavior policy with full support and three evaluation policies of increasing distance from it."""
    rng = np.random.default_rng(seed)
    q = TabularQ(task.optimal_q())
    behavior = SoftmaxPolicy(q, 1.0, name="behavior")
    near = SoftmaxPolicy(q, 0.5, name="near")
    greedyish = EpsilonGreedyPolicy(TabularPolicy(np.eye(task.n_actions)[rng.integers(0, task.n_actions, task.n_states)]), 0.3, name="random_eps0.3")
    time_dependent = TabularPolicy(rng.dirichlet(np.ones(task.n_actions), size=(task.horizon, task.n_states)), name="time_dependent")
    return behavior, [near, greedyish, time_dependent]
