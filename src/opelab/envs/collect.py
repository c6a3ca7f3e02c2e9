"""Data collection, vectorized across trajectories: one Python iteration per step, none per trajectory."""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import numpy as np

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.validation import freeze
from opelab.policies import DiscretePolicy, Policy, sample_categorical


class VectorTask(Protocol):
    """A task that simulates a batch of episodes at once (``TabularMDP`` is one).

    ``reset`` and ``step`` work on the task's own state array, one row per episode; ``step`` returns the next
    states, the rewards and whether each episode terminated. A task whose state is not what the policy sees
    (e.g. angles observed as cosines and sines) may also define ``observe(states) -> observations``; without
    it the states are the observations.
    """

    name: str
    horizon: int
    gamma: float

    @property
    def action_space(self) -> ActionSpace: ...

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def step(
        self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def collect(
    task: VectorTask,
    behavior_policy: Policy | DiscretePolicy,
    n_trajectories: int,
    seed: int,
) -> LoggedDataset:
    """Roll out ``behavior_policy`` for ``n_trajectories`` episodes of at most ``task.horizon`` steps.

    Records the behavior pscore of every logged action and, for discrete policies that expose
    ``action_probs``, the whole behavior distribution. The same seed gives the same dataset.
    """
    if isinstance(n_trajectories, bool) or not isinstance(n_trajectories, (int, np.integer)) or n_trajectories < 1:
        raise ValueError(f"n_trajectories: expected a positive int, found {n_trajectories!r}")
    rng = np.random.default_rng(seed)
    space = task.action_space
    n, H = int(n_trajectories), int(task.horizon)
    discrete_probs = isinstance(behavior_policy, DiscretePolicy) and space.is_discrete
    if space.is_discrete and getattr(behavior_policy, "n_actions", space.n_actions) != space.n_actions:
        raise ValueError(f"behavior_policy.n_actions: expected {space.n_actions}, found {behavior_policy.n_actions}")

    observe = getattr(task, "observe", None)
    states = task.reset(n, rng)
    first = states if observe is None else observe(states)
    observations = np.zeros((n, H, *first.shape[1:]), dtype=first.dtype)
    action_shape = () if space.is_discrete else (space.action_dim,)
    actions = np.zeros((n, H, *action_shape), dtype=np.int64 if space.is_discrete else np.float64)
    rewards = np.zeros((n, H))
    terminals = np.zeros((n, H), dtype=bool)
    mask = np.zeros((n, H), dtype=bool)
    pscore = np.ones((n, H))
    action_probs = np.zeros((n, H, space.n_actions)) if discrete_probs else None

    alive = np.arange(n)
    for t in range(H):
        rows = slice(None) if len(alive) == n else alive  # a slice writes much faster than an index array
        current = states[rows]
        obs = current if observe is None else observe(current)
        steps = np.full(len(alive), t)
        if discrete_probs:
            probs = behavior_policy.action_probs(obs, steps)
            acts = sample_categorical(probs, rng)
            ps = probs[np.arange(len(acts)), acts]
            action_probs[rows, t] = probs
        else:
            acts, ps = behavior_policy.sample(obs, rng, steps)
        next_states, rews, done = task.step(current, acts, rng)
        observations[rows, t] = obs
        actions[rows, t] = acts
        rewards[rows, t] = rews
        pscore[rows, t] = ps
        terminals[rows, t] = done
        mask[rows, t] = True
        states[rows] = next_states
        alive = alive[~done]
        if len(alive) == 0:
            break

    info = DatasetInfo(
        task=task.name,
        gamma=float(task.gamma),
        action_space=space,
        behavior_policy=behavior_policy.name,
        seed=int(seed),
    )
    return LoggedDataset(  # arrays made here are frozen, so the dataset holds them without copying
        observations=freeze(observations),
        actions=freeze(actions),
        rewards=freeze(rewards),
        terminals=freeze(terminals),
        mask=freeze(mask),
        behavior_pscore=freeze(pscore),
        behavior_action_probs=None if action_probs is None else freeze(action_probs),
        info=info,
    )


COLLECT_BATCH = 100_000  # trajectories held in memory at once by collect_to_parquet


def collect_to_parquet(
    task: VectorTask,
    behavior_policy: Policy | DiscretePolicy,
    n_trajectories: int,
    seed: int,
    path: Any,
    batch_trajectories: int = COLLECT_BATCH,
) -> dict[str, Any]:
    """``collect`` straight into one Parquet file, ``batch_trajectories`` at a time (memory follows the batch).

    Up to one batch this is ``collect(task, behavior_policy, n_trajectories, seed).to_parquet(path)``, the same
    dataset. More trajectories are collected in batches seeded by ``SeedSequence(seed).spawn`` (so the data
    differ from one ``collect`` of them all, and repeat for the same seed and batch size) and appended by a
    ``DatasetWriter``; the dataset's info records ``seed``. Returns what was written: ``n_trajectories``,
    ``n_transitions``, ``horizon``, ``return_sum`` (of the discounted returns).
    """
    from opelab.data.io import DatasetWriter

    if isinstance(batch_trajectories, bool) or not isinstance(batch_trajectories, int) or batch_trajectories < 1:
        raise ValueError(f"batch_trajectories: expected a positive int, found {batch_trajectories!r}")
    if isinstance(n_trajectories, bool) or not isinstance(n_trajectories, (int, np.integer)) or n_trajectories < 1:
        raise ValueError(f"n_trajectories: expected a positive int, found {n_trajectories!r}")
    n = int(n_trajectories)
    summary = {"n_trajectories": n, "n_transitions": 0, "horizon": int(task.horizon), "return_sum": 0.0}
    if n <= batch_trajectories:
        dataset = collect(task, behavior_policy, n, seed)
        dataset.to_parquet(path)
        summary.update(n_transitions=dataset.n_transitions, return_sum=float(dataset.returns.sum()))
        return summary
    sizes = [min(batch_trajectories, n - lo) for lo in range(0, n, batch_trajectories)]
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))
    writer: DatasetWriter | None = None
    with contextlib.ExitStack() as stack:
        for size, batch_seed in zip(sizes, seeds):
            dataset = collect(task, behavior_policy, size, int(batch_seed.generate_state(1)[0])).with_info(seed=int(seed))
            if writer is None:
                writer = stack.enter_context(DatasetWriter(path, dataset.info, horizon=int(task.horizon)))
            writer.write(dataset)
            summary["n_transitions"] += dataset.n_transitions
            summary["return_sum"] += float(dataset.returns.sum())
            del dataset
    return summary
