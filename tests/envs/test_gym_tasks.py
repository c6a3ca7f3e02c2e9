"""Tests for the task registry and the gymnasium tasks: every task collects a valid dataset, seeds reproduce,
the numpy classic-control dynamics match gymnasium's own environments step for step, MuJoCo tasks work
(or say which extra to install)."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.data import LoggedDataset
from opelab.envs import (
    ALIASES,
    REGISTRY,
    TASKS,
    Acrobot,
    CartPole,
    MountainCar,
    MountainCarContinuous,
    Pendulum,
    TabularMDP,
    collect,
    list_tasks,
    make,
    mujoco_available,
    random_task,
)
from opelab.envs import gym_tasks
from opelab.policies import GaussianPolicy, UniformPolicy

needs_mujoco = pytest.mark.skipif(not mujoco_available(), reason='MuJoCo missing: pip install "opelab[mujoco]"')
NON_TABULAR = [spec.name for spec in list_tasks() if spec.kind != "tabular"]


def behavior_for(task):
    """Uniform for discrete tasks; a clipped Gaussian around the box centre for continuous ones."""
    space = task.action_space
    if space.is_discrete:
        return UniformPolicy(space.n_actions)
    low, high = np.array(space.low), np.array(space.high)
    centre = (low + high) / 2
    return GaussianPolicy(lambda obs: np.broadcast_to(centre, (len(obs), len(centre))), (high - low) / 4, low, high)


def build(name):
    if REGISTRY[name].kind == "mujoco" and not mujoco_available():
        pytest.skip('MuJoCo missing: pip install "opelab[mujoco]"')
    return make(name)


# ---------------------------------------------------------------------------------------------- registry
def test_tabular_names_return_the_same_tabular_tasks():
    assert set(TASKS) == {"gridworld", "chain", "random"}
    for name in TASKS:
        assert isinstance(make(name), TabularMDP)
        assert REGISTRY[name].kind == "tabular"
    np.testing.assert_array_equal(make("random").transitions, random_task(0).transitions)
    assert make("gridworld", horizon=7).horizon == 7


@pytest.mark.parametrize("name", list(REGISTRY))
def test_registry_specs_describe_the_built_task(name):
    spec = REGISTRY[name]
    task = build(name)
    assert (task.horizon, task.gamma, task.action_space.type) == (spec.horizon, spec.gamma, spec.action_type)
    assert spec.kind in ("tabular", "gym", "mujoco", "synthetic")


def test_make_accepts_gym_ids_and_options():
    assert isinstance(make("CartPole-v1"), CartPole)
    assert set(ALIASES.values()) <= set(REGISTRY)
    task = make("pendulum", horizon=50, gamma=0.9, g=9.81)
    assert (task.horizon, task.gamma, task.g) == (50, 0.9, 9.81)
    gym = ["cartpole", "acrobot", "mountaincar", "pendulum", "mountaincar_continuous"]
    assert [s.name for s in list_tasks("gym")] == gym
    with pytest.raises(ValueError, match="kind"):
        list_tasks("atari")


def test_make_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="task") as info:
        make("cartpol")
    for name in ("cartpole", "rtb", "recsys", "hopper", "gridworld", "cartpol", "CartPole-v1"):
        assert name in str(info.value)


def test_bad_horizon_and_gamma_are_named():
    with pytest.raises(ValueError, match="horizon"):
        make("cartpole", horizon=0)
    with pytest.raises(ValueError, match="gamma"):
        make("acrobot", gamma=1.5)


def test_mujoco_missing_names_the_extra(monkeypatch):
    monkeypatch.setattr(gym_tasks, "mujoco_available", lambda: False)
    with pytest.raises(ImportError, match=r"opelab\[mujoco\]"):
        make("hopper")


# ---------------------------------------------------------------------------------------------- every task
@pytest.mark.parametrize("name", NON_TABULAR)
def test_every_task_collects_a_valid_dataset(name):
    task = build(name)
    ds = collect(task, behavior_for(task), 3, seed=0)
    assert isinstance(ds, LoggedDataset)
    assert ds.observations.shape == (3, task.horizon, *task.obs_shape)
    assert ds.observations.dtype == np.float64
    assert ds.info.task == task.name and ds.gamma == task.gamma
    if task.action_space.is_discrete:
        assert ds.actions.shape == (3, task.horizon)
    else:
        assert ds.actions.shape == (3, task.horizon, task.action_space.action_dim)
        logged = ds.actions[ds.mask]
        assert (logged >= np.array(task.action_space.low)).all() and (logged <= np.array(task.action_space.high)).all()
    # a trajectory shorter than the horizon ended by termination; full ones were truncated (not terminal)
    short = ds.lengths < task.horizon
    np.testing.assert_array_equal(ds.terminals.any(axis=1)[short], True)
    assert np.isfinite(ds.rewards).all()


@pytest.mark.parametrize("name", NON_TABULAR)
def test_collection_is_reproducible_from_the_seed(name):
    task = build(name)
    policy = behavior_for(task)
    if task.horizon > 50:
        task = make(name, horizon=50)
    a, b = collect(task, policy, 2, seed=5), collect(task, policy, 2, seed=5)
    assert a.equals(b)
    c = collect(task, policy, 2, seed=6)
    assert not (np.array_equal(a.observations, c.observations) and np.array_equal(a.actions, c.actions))


# ---------------------------------------------------------------------------------------------- gymnasium parity
CLASSIC = [CartPole, Acrobot, MountainCar, MountainCarContinuous, Pendulum]


def start_states(task, rng, n):
    """Fresh starts plus states spread over the state space (so terminations and clipping get exercised)."""
    states = task.reset(n, rng)
    if isinstance(task, CartPole):
        states[n // 2 :] = rng.uniform([-2.4, -2, -0.21, -2], [2.4, 2, 0.21, 2], size=(n - n // 2, 4))
    elif isinstance(task, Acrobot):
        states[n // 2 :] = rng.uniform([-np.pi, -np.pi, -12, -28], [np.pi, np.pi, 12, 28], size=(n - n // 2, 4))
    elif isinstance(task, (MountainCar, MountainCarContinuous)):
        states[n // 2 :] = rng.uniform([-1.2, -0.07], [0.6, 0.07], size=(n - n // 2, 2))
        states[-3:] = [[0.48, 0.05], [-1.19, -0.06], [0.3, 0.07]]  # reaches the goal, hits the wall, max speed
    else:
        states[n // 2 :] = rng.uniform([-9, -8], [9, 8], size=(n - n // 2, 2))
    return states


@pytest.mark.parametrize("cls", CLASSIC, ids=[c.name for c in CLASSIC])
def test_classic_control_matches_gymnasium(cls):
    import gymnasium

    task = cls()
    env = gymnasium.make(task.gym_id).unwrapped
    rng = np.random.default_rng(0)
    states = start_states(task, rng, 40)
    if task.action_space.is_discrete:
        actions = rng.integers(task.action_space.n_actions, size=len(states))
    else:
        actions = rng.uniform(-2.5, 2.5, size=(len(states), 1))  # beyond the box: clipping is part of the dynamics
    nxt, rewards, done = task.step(states, actions, rng)
    for i in range(len(states)):
        env.reset(seed=0)
        env.state = states[i].copy()
        action = actions[i] if task.action_space.is_discrete else actions[i].astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        np.testing.assert_allclose(task.observe(nxt[i : i + 1])[0], obs, rtol=0, atol=1e-5)
        assert reward == pytest.approx(rewards[i], abs=1e-5)
        assert terminated == done[i] and not truncated
    assert done.any() or cls in (Pendulum, Acrobot)  # the spread states reach terminal regions


def test_classic_control_starts_follow_gymnasium_ranges():
    rng = np.random.default_rng(1)
    assert np.abs(CartPole().reset(500, rng)).max() <= 0.05
    assert np.abs(Acrobot().reset(500, rng)).max() <= 0.1
    s = MountainCar().reset(500, rng)
    assert ((-0.6 <= s[:, 0]) & (s[:, 0] <= -0.4)).all() and (s[:, 1] == 0).all()
    p = Pendulum().reset(500, rng)
    assert (np.abs(p[:, 0]) <= np.pi).all() and (np.abs(p[:, 1]) <= 1).all()
    np.testing.assert_allclose(np.linalg.norm(Pendulum().observe(p)[:, :2], axis=1), 1.0)


def test_step_rejects_bad_actions():
    task, rng = CartPole(), np.random.default_rng(0)
    states = task.reset(3, rng)
    with pytest.raises(ValueError, match="actions"):
        task.step(states, np.array([0, 1, 2]), rng)
    with pytest.raises(ValueError, match="actions"):
        task.step(states, np.array([0.0, 1.0, 1.0]), rng)
    with pytest.raises(ValueError, match="actions"):
        Pendulum().step(Pendulum().reset(2, rng), np.zeros((2, 2)), rng)


def test_cartpole_balancing_controller_survives_longer_than_uniform():
    from opelab.envs import rollout_values
    from opelab.policies import CallableActionValues, GreedyPolicy

    task = CartPole(horizon=100)
    def q(obs):  # push towards the side the pole falls to
        lean = obs[:, 2] + obs[:, 3]
        return np.stack([-lean, lean], axis=1)

    push_towards_fall = GreedyPolicy(CallableActionValues(q, 2))
    values = rollout_values(task, [push_towards_fall, UniformPolicy(2)], n_episodes=50, seed=0, gamma=1.0)
    assert values.values[0] > 95 and values.values[1] < 40


# ---------------------------------------------------------------------------------------------- MuJoCo
@needs_mujoco
def test_mujoco_rows_step_like_one_gymnasium_episode():
    import gymnasium

    task = make("inverted_pendulum", horizon=20)
    rng = np.random.default_rng(0)
    states = task.reset(2, rng)
    env = gymnasium.make("InvertedPendulum-v5").unwrapped
    env.reset(seed=0)
    k = task.obs_shape[0]
    env.set_state(states[1, k : k + task.nq], states[1, k + task.nq :])
    for _ in range(5):
        actions = rng.uniform(-0.5, 0.5, size=(2, 1))
        states, rewards, done = task.step(states, actions, rng)
        obs, reward, terminated, _, _ = env.step(actions[1])
        np.testing.assert_allclose(task.observe(states)[1], obs, atol=1e-8)
        assert reward == rewards[1] and terminated == done[1]


@needs_mujoco
def test_mujoco_initial_states_use_the_environment_noise():
    task = make("reacher")
    s = task.observe(task.reset(20, np.random.default_rng(0)))
    assert s.shape == (20, 10) and np.unique(s[:, 4:6], axis=0).shape[0] == 20  # random targets
