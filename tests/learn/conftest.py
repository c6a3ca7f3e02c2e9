"""Shared pieces of the opelab.learn tests: small collected datasets and the d3rlpy availability check."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.envs import collect, make
from opelab.policies import GaussianPolicy, UniformPolicy


def d3rlpy_available() -> bool:
    try:
        from opelab.learn.algorithms import import_d3rlpy

        import_d3rlpy()
    except ImportError:
        return False
    return True


needs_d3rlpy = pytest.mark.skipif(not d3rlpy_available(), reason="needs the rl extra (torch, d3rlpy)")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """Two processes with two torch threads each slow down ~8x on two cores: use one thread."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def centre_gaussian(task, sigma_fraction: float = 0.5) -> GaussianPolicy:
    """A clipped Gaussian around the middle of the task's action box."""
    low, high = np.array(task.action_space.low), np.array(task.action_space.high)
    centre = (low + high) / 2
    return GaussianPolicy(
        lambda obs: np.broadcast_to(centre, (len(obs), len(centre))), sigma_fraction * (high - low), low, high
    )


@pytest.fixture(scope="session")
def cartpole_data():
    return collect(make("cartpole"), UniformPolicy(2), 60, seed=0)


@pytest.fixture(scope="session")
def pendulum_data():
    task = make("pendulum", horizon=50)
    return collect(task, centre_gaussian(task), 40, seed=0)
