"""Training with d3rlpy: base policies online on an opelab task, candidates offline on a ``LoggedDataset``.

- ``train_online(task, "double_dqn" | "sac", n_steps, seed, hidden)``: d3rlpy's ``fit_online`` on a
  ``TaskEnv`` (the task one episode at a time, cut at its horizon), by default one gradient step per environment step.
  DoubleDQN explores ε-greedily with ε decaying linearly from 1 to 0.05 (by default) over the first half of
  the steps (Mnih et al., 2015); SAC acts with its own stochastic policy after ``random_steps`` uniform actions.
- ``train_offline(dataset, algorithm, n_steps, hidden, seed, trajectory_weighting)``: d3rlpy's ``fit`` on
  ``to_d3rlpy(dataset)`` (observations standardised with the dataset's statistics), optionally after
  return-weighted resampling of the trajectories (Hong et al., 2023; ``opelab.learn.weighting``).

Both return a ``LearnedPolicy``. d3rlpy writes nothing (``NoopAdapterFactory``), shows no progress bar and
its informational log lines are silenced. See ``opelab.learn.algorithms`` for the defaults and for seeding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from opelab.data import LoggedDataset
from opelab.data.interop import to_d3rlpy
from opelab.data.validation import DatasetError
from opelab.learn.algorithms import (
    check_hidden,
    get_algorithm,
    hidden_label,
    import_d3rlpy,
    make_algo,
    quiet_d3rlpy,
    seeded,
)
from opelab.learn.env import TaskEnv
from opelab.learn.policy import LearnedPolicy
from opelab.learn.weighting import DEFAULT_TEMPERATURE, return_weighted_resample

__all__ = ["train_offline", "train_online"]

TrajectoryWeighting = Literal["return"] | None


def _check_steps(n_steps: int, label: str = "n_steps") -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"{label}: expected a positive int, found {n_steps!r}")
    return int(n_steps)


def train_online(
    task: Any,
    algorithm: str = "double_dqn",
    n_steps: int = 20_000,
    seed: int = 0,
    hidden: Sequence[int] = (64, 64),
    *,
    random_steps: int = 1000,
    update_interval: int = 1,
    n_updates: int = 1,
    buffer_size: int | None = None,
    explore_fraction: float = 0.5,
    final_epsilon: float = 0.05,
    options: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> LearnedPolicy:
    """Train a base policy online on ``task`` for ``n_steps`` environment steps (see the module docstring).

    ``random_steps`` uniform actions fill the replay buffer before the policy acts (SAC only; DoubleDQN's
    ε-greedy schedule already starts uniform). Every ``update_interval`` environment steps the learner takes
    ``n_updates`` gradient steps, on a FIFO buffer of the last ``buffer_size`` transitions (default: all
    ``n_steps``). DoubleDQN's ε decays linearly from 1 to ``final_epsilon`` over the first
    ``explore_fraction`` of the steps. ``options`` override d3rlpy config fields (``learning_rate``,
    ``batch_size``, ``target_update_interval`` counted in gradient steps, ...).

    The defaults are one gradient step per environment step. Sparse-reward tasks need more exploration per
    gradient step. On MountainCar, 120,000 steps at rate 4e-3, batch 128, a 10,000-step buffer, 8 updates
    every 16 steps, target copies every 75 updates and ε reaching 0.07 after 20% of the steps (after the
    tuned DQN of the RL Baselines3 Zoo, Raffin, 2020, whose target copies are 4 times rarer) reached the
    goal from four of the five seeds trained; the defaults did not within 50,000 steps
    (``benchmarks/results/sharpe_ratio_paper_medium.md``).
    """
    n_steps = _check_steps(n_steps)
    update_interval, n_updates = _check_steps(update_interval, "update_interval"), _check_steps(n_updates, "n_updates")
    limit = n_steps if buffer_size is None else _check_steps(buffer_size, "buffer_size")
    for label, value in (("explore_fraction", explore_fraction), ("final_epsilon", final_epsilon)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{label}: expected a number in [0, 1], found {value!r}")
    space = task.action_space
    spec = get_algorithm(algorithm, space.type, online=True)
    hidden = check_hidden(hidden)
    d3rlpy = import_d3rlpy()
    env = TaskEnv(task, seed=seed)
    with seeded(seed), quiet_d3rlpy():
        algo = make_algo(spec, hidden=hidden, gamma=task.gamma, action_space=space, options=options)
        if limit <= algo.config.batch_size:  # d3rlpy updates only once the buffer holds more than a batch
            label = "n_steps (the buffer's size)" if buffer_size is None else "buffer_size"
            raise ValueError(f"{label}: expected more than the batch size ({algo.config.batch_size}), found {limit}")
        explorer = None
        if spec.action_type == "discrete":
            explorer = d3rlpy.algos.LinearDecayEpsilonGreedy(
                start_epsilon=1.0, end_epsilon=float(final_epsilon), duration=max(1, int(n_steps * explore_fraction))
            )
        algo.fit_online(
            env,
            buffer=d3rlpy.dataset.create_fifo_replay_buffer(limit=limit, env=env),
            explorer=explorer,
            n_steps=n_steps,
            n_steps_per_epoch=n_steps,
            update_interval=update_interval,
            n_updates=n_updates,
            random_steps=0 if spec.action_type == "discrete" else int(random_steps),
            logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
            show_progress=False,
        )
    return LearnedPolicy(algo, spec.name, hidden, space, name=name)


def train_offline(
    dataset: LoggedDataset,
    algorithm: str,
    n_steps: int = 10_000,
    hidden: Sequence[int] = (64, 64),
    seed: int = 0,
    trajectory_weighting: TrajectoryWeighting = None,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    options: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> LearnedPolicy:
    """Train ``algorithm`` offline on ``dataset`` for ``n_steps`` gradient steps (see the module docstring).

    ``trajectory_weighting="return"`` first resamples the trajectories with ``return_weighted_resample``
    (temperature α = ``temperature``, seeded by ``seed``); the default name then ends in ``_rw``, e.g.
    ``"cql_64x64_rw"``. ``options`` override d3rlpy config fields (e.g. ``{"batch_size": 32}``).
    """
    if not isinstance(dataset, LoggedDataset):
        raise DatasetError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    n_steps = _check_steps(n_steps)
    space = dataset.action_space
    spec = get_algorithm(algorithm, space.type)
    hidden = check_hidden(hidden)
    if trajectory_weighting not in (None, "return"):
        raise ValueError(f"trajectory_weighting: expected None or 'return', found {trajectory_weighting!r}")
    if trajectory_weighting == "return":
        dataset = return_weighted_resample(dataset, seed=seed, temperature=temperature)
    d3rlpy = import_d3rlpy()
    with seeded(seed), quiet_d3rlpy():
        mdp = to_d3rlpy(dataset)
        algo = make_algo(
            spec, hidden=hidden, gamma=dataset.gamma, action_space=space, observation_scaling=True, options=options
        )
        algo.fit(
            mdp,
            n_steps=n_steps,
            n_steps_per_epoch=n_steps,
            logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
            show_progress=False,
        )
    suffix = "_rw" if trajectory_weighting == "return" else ""
    return LearnedPolicy(algo, spec.name, hidden, space, name=name or f"{spec.name}_{hidden_label(hidden)}{suffix}")
