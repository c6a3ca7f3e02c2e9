"""Shared datasets for the tests of ``opelab.data``.

Datasets are immutable (read-only arrays, frozen dataclass), so the collected ones are session-scoped. The
``*_inputs`` fixtures return factories of fresh, writable keyword arguments for ``LoggedDataset(...)`` that
tests corrupt one field at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.envs import chain, collect, gridworld
from opelab.policies import UniformPolicy

Inputs = dict[str, Any]


def discrete_inputs() -> Inputs:
    """A valid discrete dataset: n=2, H=3, 3 actions, lengths [3, 2], trajectory 1 terminal, with probs."""
    probs_row = np.array([0.2, 0.3, 0.5])
    mask = np.array([[True, True, True], [True, True, False]])
    actions = np.array([[0, 1, 2], [2, 0, 0]], dtype=np.int64)
    probs = np.where(mask[..., None], probs_row, 0.0)
    pscore = np.where(mask, probs_row[actions], 1.0)
    return dict(
        observations=np.array([[0, 1, 2], [3, 4, 0]], dtype=np.int64),
        actions=actions,
        rewards=np.array([[1.0, 0.5, -1.0], [0.0, 2.0, 0.0]]),
        terminals=np.array([[False, False, False], [False, True, False]]),
        mask=mask,
        behavior_pscore=pscore,
        behavior_action_probs=probs,
        info=DatasetInfo(task="toy", gamma=0.9, action_space=ActionSpace.discrete(3), seed=7),
    )


def continuous_inputs() -> Inputs:
    """A valid continuous dataset: n=2, H=3, action_dim 2, observations (2, 3, 3), densities above 1."""
    mask = np.array([[True, True, True], [True, True, False]])
    rng = np.random.default_rng(0)
    observations = np.where(mask[..., None], rng.normal(size=(2, 3, 3)), 0.0)
    actions = np.where(mask[..., None], rng.normal(size=(2, 3, 2)), 0.0)
    return dict(
        observations=observations,
        actions=actions,
        rewards=np.array([[1.0, 0.5, -1.0], [0.0, 2.0, 0.0]]),
        terminals=np.array([[False, False, True], [False, False, False]]),
        mask=mask,
        behavior_pscore=np.array([[2.5, 0.7, 1.3], [0.1, 4.0, 1.0]]),
        behavior_action_probs=None,
        info=DatasetInfo(task="toy-continuous", gamma=0.99, action_space=ActionSpace.continuous(2), seed=3),
    )


@pytest.fixture
def make_discrete() -> Callable[[], Inputs]:
    return discrete_inputs


@pytest.fixture
def make_continuous() -> Callable[[], Inputs]:
    return continuous_inputs


@pytest.fixture(scope="session")
def grid_ds() -> LoggedDataset:
    """Variable-length discrete dataset with behavior_action_probs (gridworld, uniform behavior)."""
    ds = collect(gridworld(), UniformPolicy(4), n_trajectories=50, seed=0)
    assert ds.behavior_action_probs is not None
    assert len(set(ds.lengths.tolist())) > 1 and ds.lengths.min() < ds.horizon
    return ds


@pytest.fixture(scope="session")
def fixed_ds() -> LoggedDataset:
    """Fixed-length discrete dataset without behavior_action_probs (river-swim chain has no terminal states)."""
    ds = collect(chain(), UniformPolicy(2), n_trajectories=12, seed=1)
    ds = dataclasses.replace(ds, behavior_action_probs=None)
    assert bool(ds.mask.all())
    return ds


def continuous_trajectories(lengths: tuple[int, ...] = (4, 2, 3), seed: int = 5) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        dict(
            observations=rng.normal(size=(T, 3)),
            actions=rng.uniform(-1, 1, size=(T, 2)),
            rewards=rng.normal(size=T),
            behavior_pscore=rng.uniform(0.05, 3.0, size=T),  # densities, some above 1
            terminal=(i == 0),
        )
        for i, T in enumerate(lengths)
    ]


@pytest.fixture(scope="session")
def continuous_ds() -> LoggedDataset:
    """Continuous actions (dim 2), float observations (n, H, 3), lengths [4, 2, 3] padded to horizon 5."""
    info = DatasetInfo(
        task="toy-continuous", gamma=0.97, action_space=ActionSpace.continuous(2), behavior_policy="gauss", seed=11
    )
    ds = LoggedDataset.from_trajectories(continuous_trajectories(), info, horizon=5)
    assert ds.observations.shape == (3, 5, 3) and ds.actions.shape == (3, 5, 2)
    return ds


def _assert_same_arrays(a: LoggedDataset, b: LoggedDataset) -> None:
    """Array-by-array exact comparison (dtype, shape, values) on top of ``equals``."""
    for name in ("observations", "actions", "rewards", "terminals", "mask", "behavior_pscore", "behavior_action_probs"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        assert x.dtype == y.dtype, (name, x.dtype, y.dtype)
        assert x.shape == y.shape, (name, x.shape, y.shape)
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.info == b.info


@pytest.fixture
def assert_same_arrays() -> Callable[[LoggedDataset, LoggedDataset], None]:
    return _assert_same_arrays


@pytest.fixture
def make_continuous_trajectories() -> Callable[..., list[dict[str, Any]]]:
    return continuous_trajectories
