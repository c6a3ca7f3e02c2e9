"""TaskEnv: an opelab task one episode at a time, as gymnasium sees it."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from opelab.envs import collect, make
from opelab.learn import TaskEnv
from opelab.policies import UniformPolicy

from conftest import centre_gaussian


def replay(env: TaskEnv, seed: int, actions: np.ndarray):
    obs, _ = env.reset(seed=seed)
    observations, rewards, flags = [obs], [], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        flags.append((terminated, truncated))
    return np.array(observations[:-1]), np.array(rewards), flags


@pytest.mark.parametrize(
    "name, options", [("cartpole", {}), ("pendulum", {"horizon": 25}), ("acrobot", {"horizon": 30})]
)
def test_env_replays_collected_trajectories(name, options):
    task = make(name, **options)
    env = TaskEnv(task)
    policy = UniformPolicy(task.action_space.n_actions) if task.action_space.is_discrete else centre_gaussian(task)
    for seed in range(4):
        ds = collect(task, policy, 1, seed=seed)
        T = int(ds.lengths[0])
        observations, rewards, flags = replay(env, seed, ds.actions[0, :T])
        np.testing.assert_array_equal(observations, ds.observations[0, :T])
        np.testing.assert_array_equal(rewards, ds.rewards[0, :T])
        assert all(not t and not u for t, u in flags[:-1])
        terminated, truncated = flags[-1]
        assert terminated == bool(ds.terminals[0, T - 1])
        assert truncated == (not terminated and T == task.horizon)


def test_env_spaces_and_seeding():
    task = make("pendulum", horizon=5)
    env = TaskEnv(task, seed=3)
    assert isinstance(env.action_space, spaces.Box)
    assert env.action_space.shape == (1,)
    assert env.action_space.low[0] == -2.0 and env.action_space.high[0] == 2.0
    assert env.observation_space.shape == (3,)
    first, _ = env.reset()  # the constructor's seed
    again, _ = TaskEnv(task, seed=3).reset()
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(env.reset(seed=3)[0], first)
    assert not np.array_equal(env.reset()[0], first)  # the stream moves on
    assert isinstance(TaskEnv(make("cartpole")).action_space, spaces.Discrete)


def test_env_scalar_states_get_a_feature_axis():
    task = make("chain")
    env = TaskEnv(task, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (1,) == env.observation_space.shape
    assert env.observation_space.contains(obs)
    obs, reward, *_ = env.step(1)
    assert obs.shape == (1,)
    assert isinstance(reward, float)


def test_env_checks_inputs():
    with pytest.raises(TypeError, match="task: expected a batched opelab task"):
        TaskEnv(object())
    with pytest.raises(ValueError, match="seed: expected a non-negative int"):
        TaskEnv(make("cartpole"), seed=-1)
    with pytest.raises(RuntimeError, match="reset"):
        TaskEnv(make("cartpole")).step(0)
