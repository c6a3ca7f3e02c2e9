"""Return-weighted trajectory sampling (Hong et al., 2023): weights and resampled datasets."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.data import LoggedDataset
from opelab.data.dataset import ARRAY_FIELDS
from opelab.envs import collect, make
from opelab.learn import return_weighted_resample, return_weights
from opelab.policies import CallableActionValues, EpsilonGreedyPolicy, GreedyPolicy, UniformPolicy


def balancing(obs: np.ndarray) -> np.ndarray:
    """Push towards the side the pole falls to: a near-perfect CartPole controller."""
    push_right = obs[:, 2] + 0.5 * obs[:, 3] > 0
    return np.stack([~push_right, push_right], axis=1).astype(float)


@pytest.fixture(scope="module")
def mixed_cartpole() -> LoggedDataset:
    """90 uniform-random trajectories and 10 of a good controller: the mixed datasets the paper studies."""
    task = make("cartpole")
    poor = collect(task, UniformPolicy(2), 90, seed=1)
    good = collect(task, EpsilonGreedyPolicy(GreedyPolicy(CallableActionValues(balancing, 2)), 0.1), 10, seed=2)
    arrays = {
        name: np.concatenate([getattr(poor, name), getattr(good, name)])
        for name in ARRAY_FIELDS
        if getattr(poor, name) is not None
    }
    return LoggedDataset(info=poor.info, **arrays)


def undiscounted(ds: LoggedDataset) -> np.ndarray:
    return ds.rewards.sum(axis=1)


def test_weights_follow_the_softmax_of_normalised_returns(mixed_cartpole):
    p = return_weights(mixed_cartpole, temperature=0.1)
    G = undiscounted(mixed_cartpole)
    assert p.shape == (100,) and np.isclose(p.sum(), 1.0) and (p > 0).all()
    normalised = (G - G.min()) / (G.max() - G.min())
    np.testing.assert_allclose(np.log(p / p[0]), (normalised - normalised[0]) / 0.1, atol=1e-9)
    assert p[np.argmax(G)] / p[np.argmin(G)] == pytest.approx(np.exp(10.0))
    # a higher temperature is closer to uniform; equal returns give uniform weights
    assert np.abs(return_weights(mixed_cartpole, 10.0) - 0.01).max() < np.abs(p - 0.01).max()
    flat = mixed_cartpole.subset(np.zeros(5, dtype=int))
    np.testing.assert_allclose(return_weights(flat), 0.2)


def test_resampling_shifts_the_return_upward(mixed_cartpole):
    resampled = return_weighted_resample(mixed_cartpole, seed=0)
    assert resampled.n_trajectories == mixed_cartpole.n_trajectories
    assert undiscounted(resampled).mean() > undiscounted(mixed_cartpole).mean() + 50
    assert resampled.mean_return() > mixed_cartpole.mean_return()
    again = return_weighted_resample(mixed_cartpole, seed=0)
    assert again.equals(resampled)
    assert return_weighted_resample(mixed_cartpole, seed=0, n_samples=300).n_trajectories == 300


def test_weighting_checks_inputs(mixed_cartpole):
    with pytest.raises(ValueError, match="temperature: expected a positive float"):
        return_weights(mixed_cartpole, temperature=0.0)
    with pytest.raises(ValueError, match="n_samples: expected a positive int"):
        return_weighted_resample(mixed_cartpole, seed=0, n_samples=0)
    with pytest.raises(ValueError, match="dataset: expected a LoggedDataset"):
        return_weights({"rewards": [1.0]})
