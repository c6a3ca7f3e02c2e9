"""Ground truth by on-policy rollouts, vectorized over policies and episodes.

For P policies and N episodes each, one batched run of the task simulates all P·N episodes together: each
step calls every policy once on the rows it owns and the task once on all rows still running. The value of
policy p is the mean discounted return over its episodes,

    Ĵ(π_p) = 1/N Σ_i Σ_{t < T_i} γ^t r_{i,t},     SE = sd_i(G_i) / √N  (sample sd, ddof = 1),

with T_i ≤ horizon the episode's length (termination or the horizon). The same seed gives the same numbers
for the same task and policy list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from opelab.data.validation import freeze
from opelab.envs.collect import VectorTask
from opelab.policies import DiscretePolicy, Policy, sample_categorical


@dataclass(frozen=True)
class RolloutValues:
    """On-policy values of P policies from N rollouts each.

    ``values (P,)`` mean discounted returns, ``standard_errors (P,)`` their standard errors, ``returns (P, N)``
    every episode's discounted return (for risk measures), ``names`` the policies' names, ``gamma`` the
    discount used.
    """

    values: np.ndarray
    standard_errors: np.ndarray
    n_episodes: int
    returns: np.ndarray = field(repr=False)
    names: tuple[str, ...]
    gamma: float


def _act(policy: Policy | DiscretePolicy, obs: np.ndarray, steps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if isinstance(policy, Policy):
        return np.asarray(policy.sample(obs, rng, steps)[0])
    return sample_categorical(policy.action_probs(obs, steps), rng)


def rollout_values(
    task: VectorTask,
    policies: Sequence[Policy | DiscretePolicy],
    n_episodes: int = 100,
    seed: int = 0,
    gamma: float | None = None,
) -> RolloutValues:
    """Value and standard error of each policy from ``n_episodes`` on-policy episodes (see the module docstring).

    ``gamma`` defaults to the task's discount. Policies act through ``sample`` (or, for discrete policies
    that only expose ``action_probs``, by sampling from it).
    """
    if isinstance(policies, (Policy, DiscretePolicy)):
        raise TypeError("policies: expected a sequence of policies, found a single policy (wrap it in a list)")
    policies = list(policies)
    if not policies:
        raise ValueError("policies: expected at least one policy, found none")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 2:
        raise ValueError(f"n_episodes: expected an int >= 2 (for a standard error), found {n_episodes!r}")
    gamma = float(task.gamma if gamma is None else gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma: expected a float in [0, 1], found {gamma!r}")
    space = task.action_space
    for i, policy in enumerate(policies):
        if space.is_discrete and getattr(policy, "n_actions", space.n_actions) != space.n_actions:
            raise ValueError(f"policies[{i}].n_actions: expected {space.n_actions}, found {policy.n_actions}")

    rng = np.random.default_rng(seed)
    P, N, H = len(policies), int(n_episodes), int(task.horizon)
    observe = getattr(task, "observe", None)
    states = task.reset(P * N, rng)
    returns = np.zeros(P * N)
    alive = np.arange(P * N)  # rows still running; sorted, so each policy's rows are one contiguous block
    for t in range(H):
        current = states[alive]
        obs = current if observe is None else observe(current)
        bounds = np.searchsorted(alive, np.arange(P + 1) * N)
        steps = np.full(len(alive), t)
        blocks = [
            _act(policy, obs[lo:hi], steps[lo:hi], rng)
            for policy, lo, hi in zip(policies, bounds[:-1], bounds[1:])
            if hi > lo
        ]
        actions = np.concatenate(blocks)
        next_states, rewards, done = task.step(current, actions, rng)
        returns[alive] += gamma**t * np.asarray(rewards, dtype=np.float64)
        states[alive] = next_states
        alive = alive[~np.asarray(done, dtype=bool)]
        if len(alive) == 0:
            break

    returns = returns.reshape(P, N)
    return RolloutValues(
        values=freeze(returns.mean(axis=1)),
        standard_errors=freeze(returns.std(axis=1, ddof=1) / np.sqrt(N)),
        n_episodes=N,
        returns=freeze(returns),
        names=tuple(str(getattr(policy, "name", f"policy{i}")) for i, policy in enumerate(policies)),
        gamma=gamma,
    )
