"""One episode at a time of a batched opelab task, as a ``gymnasium.Env`` (what d3rlpy's online training needs).

``TaskEnv(task, seed)`` runs the task with a batch of one: ``reset`` calls ``task.reset(1, rng)``, ``step`` calls
``task.step(state, action[None], rng)`` and both return ``task.observe`` of the state (the state itself when the
task has no ``observe``). An episode ends with ``terminated`` when the task says so and with ``truncated`` after
``task.horizon`` steps otherwise, the same cut as ``collect`` and ``rollout_values``.

Randomness: one generator, ``self.np_random`` (gymnasium's, a ``Generator(PCG64(seed))`` like
``np.random.default_rng(seed)``), drives the initial states and any stochastic transitions. ``reset(seed=s)``
reseeds it; the first ``reset()`` without a seed uses the constructor's ``seed``. So ``reset(seed=s)``
followed by the logged actions replays trajectory 0 of ``collect(task, policy, 1, seed=s)`` on tasks whose
steps draw no random numbers (CartPole, Pendulum, ...): both draw the initial state first from the same stream.
The action space is seeded with ``seed`` too (d3rlpy samples its warm-up actions from it).

Spaces: actions ``Discrete(n_actions)`` or ``Box(low, high, (action_dim,), float32)`` (unbounded when the task's
``ActionSpace`` has no bounds); observations a ``Box`` of the task's observation shape and dtype, with scalar
observations (tabular state ids) given a feature axis of length 1, as ``opelab.data.interop.to_d3rlpy`` does.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from opelab.data import ActionSpace


def action_space_to_gym(space: ActionSpace) -> spaces.Space:
    """The gymnasium space of an opelab ``ActionSpace`` (see the module docstring)."""
    if space.is_discrete:
        return spaces.Discrete(space.n_actions)
    dim = space.action_dim
    low = np.full(dim, -np.inf) if space.low is None else np.asarray(space.low, dtype=np.float64)
    high = np.full(dim, np.inf) if space.high is None else np.asarray(space.high, dtype=np.float64)
    return spaces.Box(low=low.astype(np.float32), high=high.astype(np.float32), shape=(dim,), dtype=np.float32)


class TaskEnv(gymnasium.Env):
    """A single-episode gymnasium view of a batched opelab task (``VectorTask``); see the module docstring."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: Any, seed: int | None = None) -> None:
        for attribute in ("reset", "step", "horizon", "action_space"):
            if not hasattr(task, attribute):
                raise TypeError(
                    f"task: expected a batched opelab task with .{attribute} (reset(n, rng), step, horizon, "
                    f"action_space), found {type(task).__name__}"
                )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed: expected a non-negative int or None, found {seed!r}")
        self.task = task
        self.horizon = int(task.horizon)
        self._observe = getattr(task, "observe", None)
        self._pending_seed = None if seed is None else int(seed)
        self.action_space = action_space_to_gym(task.action_space)
        self.action_space.seed(None if seed is None else int(seed))
        probe = self._observation(task.reset(1, np.random.default_rng(0)))
        if probe.dtype.kind in "iu":
            info = np.iinfo(probe.dtype)
            self.observation_space = spaces.Box(low=info.min, high=info.max, shape=probe.shape, dtype=probe.dtype)
        else:
            self.observation_space = spaces.Box(low=-np.inf, high=np.inf, shape=probe.shape, dtype=probe.dtype)
        self._state: np.ndarray | None = None
        self._t = 0

    def _observation(self, states: np.ndarray) -> np.ndarray:
        obs = np.asarray(states if self._observe is None else self._observe(states))[0]
        return obs.reshape(1) if obs.ndim == 0 else obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        super().reset(seed=seed)
        self._state = np.asarray(self.task.reset(1, self.np_random))
        self._t = 0
        return self._observation(self._state), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._state is None:
            raise RuntimeError("step: expected reset() before the first step, found no episode running")
        space = self.task.action_space
        if space.is_discrete:
            batch = np.asarray(action).reshape(1).astype(np.int64)
        else:
            batch = np.asarray(action, dtype=np.float64).reshape(1, space.action_dim)
        next_state, reward, done = self.task.step(self._state, batch, self.np_random)
        self._state = np.asarray(next_state)
        self._t += 1
        terminated = bool(np.asarray(done)[0])
        truncated = not terminated and self._t >= self.horizon
        observation = self._observation(self._state)
        if terminated or truncated:
            self._state = None
        return observation, float(np.asarray(reward)[0]), terminated, truncated, {}

    def __repr__(self) -> str:
        return f"TaskEnv(task={getattr(self.task, 'name', type(self.task).__name__)!r}, horizon={self.horizon})"
