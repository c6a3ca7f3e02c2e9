"""Online and offline training with d3rlpy: shapes, heads over learned policies, save/load, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.envs import make, rollout_values
from opelab.learn import ALGORITHMS, LearnedGreedyPolicy, LearnedPolicy, train_offline, train_online
from opelab.policies import (
    ActionValues,
    EpsilonGreedyPolicy,
    GaussianPolicy,
    GreedyPolicy,
    SoftmaxPolicy,
    TruncatedGaussianPolicy,
    UniformPolicy,
)

from conftest import needs_d3rlpy

pytestmark = needs_d3rlpy

HIDDEN = (16, 16)
FAST = {"batch_size": 32}
DISCRETE = [name for name, spec in ALGORITHMS.items() if spec.action_type == "discrete" and not spec.online]
CONTINUOUS = [name for name, spec in ALGORITHMS.items() if spec.action_type == "continuous" and not spec.online]
CONTINUOUS_FAST = {"cql": {"batch_size": 32, "n_action_samples": 2}, "bcq": {"batch_size": 32, "n_action_samples": 4}}


@pytest.fixture(scope="module")
def discrete_policies(cartpole_data):
    return {
        name: train_offline(cartpole_data, name, n_steps=60, hidden=HIDDEN, seed=0, options=FAST) for name in DISCRETE
    }


@pytest.fixture(scope="module")
def continuous_policies(pendulum_data):
    return {
        name: train_offline(
            pendulum_data, name, n_steps=40, hidden=HIDDEN, seed=0, options=CONTINUOUS_FAST.get(name, FAST)
        )
        for name in CONTINUOUS
    }


@pytest.fixture(scope="module")
def cartpole_dqn():
    return train_online(make("cartpole"), "double_dqn", n_steps=800, seed=0, hidden=(32, 32))


@pytest.mark.statistical
def test_online_double_dqn_beats_uniform_on_cartpole(cartpole_dqn):
    values = rollout_values(
        make("cartpole"), [LearnedGreedyPolicy(cartpole_dqn), UniformPolicy(2)], n_episodes=40, seed=1, gamma=1.0
    )
    learned, uniform = values.values
    assert learned - uniform > 4 * np.hypot(*values.standard_errors)
    assert np.median(values.returns[0]) > 2 * np.median(values.returns[1])


def test_online_double_dqn_runs_and_round_trips(cartpole_dqn, tmp_path):
    lp = cartpole_dqn
    assert lp.name == "double_dqn_32x32" and isinstance(lp, ActionValues)
    obs = np.random.default_rng(0).normal(scale=0.05, size=(7, 4))
    q = lp.action_values(obs)
    assert q.shape == (7, 2) and q.dtype == np.float64 and np.isfinite(q).all()
    np.testing.assert_array_equal(lp(obs), np.argmax(q, axis=1))
    np.testing.assert_allclose(lp.q_values(obs, lp(obs)), q.max(axis=1), rtol=1e-6)
    path = tmp_path / "dqn.safetensors"
    lp.save(path)
    loaded = LearnedPolicy.load(path)
    assert (loaded.name, loaded.algorithm, loaded.hidden, loaded.action_space) == (
        lp.name, lp.algorithm, lp.hidden, lp.action_space,
    )
    np.testing.assert_array_equal(loaded.action_values(obs), q)
    np.testing.assert_array_equal(loaded(obs), lp(obs))


def test_online_sac_runs_and_round_trips(tmp_path):
    task = make("pendulum", horizon=50)
    lp = train_online(task, "sac", n_steps=150, seed=0, hidden=HIDDEN, random_steps=100, options=FAST)
    assert not isinstance(lp, ActionValues)  # continuous: no n_actions, no action_values
    obs = task.observe(task.reset(9, np.random.default_rng(0)))
    actions = lp(obs)
    assert actions.shape == (9, 1) and actions.dtype == np.float64
    assert (np.abs(actions) <= 2.0 + 1e-6).all()
    path = tmp_path / "sac.safetensors"
    lp.save(path)
    loaded = LearnedPolicy.load(path)
    assert loaded.action_space == task.action_space and loaded.hidden == HIDDEN
    np.testing.assert_array_equal(loaded(obs), actions)
    with pytest.raises(TypeError, match="continuous actions"):
        lp.action_values(obs)


def test_online_schedule_sets_the_gradient_steps_and_is_checked():
    task = make("cartpole")
    def grad_steps(**schedule):
        return train_online(task, "double_dqn", n_steps=120, seed=0, hidden=HIDDEN, options=FAST, **schedule).algo.grad_step

    every_step = grad_steps()  # updates start once the buffer holds a batch (d3rlpy)
    every_fourth = grad_steps(update_interval=4, buffer_size=64, explore_fraction=0.2, final_epsilon=0.1)
    assert every_step > 60 and abs(every_fourth - every_step / 4) <= 1
    assert grad_steps(update_interval=4, n_updates=3) == 3 * every_fourth
    for bad, message in (
        ({"update_interval": 0}, "update_interval: expected a positive int, found 0"),
        ({"n_updates": 1.5}, "n_updates: expected a positive int, found 1.5"),
        ({"buffer_size": -1}, "buffer_size: expected a positive int, found -1"),
        ({"buffer_size": 32, "options": FAST}, r"buffer_size: expected more than the batch size \(32\), found 32"),
        ({"explore_fraction": 1.5}, r"explore_fraction: expected a number in \[0, 1\], found 1.5"),
        ({"final_epsilon": True}, r"final_epsilon: expected a number in \[0, 1\], found True"),
    ):
        with pytest.raises(ValueError, match=message):
            train_online(task, "double_dqn", n_steps=10, **bad)


def test_online_rejects_offline_only_and_mismatched_algorithms():
    with pytest.raises(ValueError, match="trains online"):
        train_online(make("cartpole"), "discrete_cql", n_steps=10)
    with pytest.raises(ValueError, match="for discrete actions"):
        train_online(make("cartpole"), "sac", n_steps=10)


@pytest.mark.parametrize("name", DISCRETE)
def test_offline_discrete_heads_give_valid_pscores(name, discrete_policies, cartpole_data):
    lp = discrete_policies[name]
    obs = cartpole_data.observations[cartpole_data.mask][:50]
    q = lp.action_values(obs)
    assert q.shape == (50, 2) and np.isfinite(q).all()
    heads = [
        GreedyPolicy(lp),
        LearnedGreedyPolicy(lp),
        SoftmaxPolicy(lp, 0.5),
        EpsilonGreedyPolicy(LearnedGreedyPolicy(lp), 0.2),
    ]
    rng = np.random.default_rng(0)
    for head in heads:
        probs = head.action_probs(obs)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0)
        assert (probs >= 0).all()
        actions, pscore = head.sample(obs, rng)
        assert ((actions == 0) | (actions == 1)).all()
        assert (pscore > 0).all() and (pscore <= 1).all()
    np.testing.assert_array_equal(LearnedGreedyPolicy(lp).action_probs(obs).argmax(axis=1), lp(obs))


@pytest.mark.parametrize("name", CONTINUOUS)
def test_offline_continuous_heads_give_valid_pscores(name, continuous_policies, pendulum_data):
    lp = continuous_policies[name]
    obs = pendulum_data.observations[pendulum_data.mask][:50]
    mu = lp(obs)
    assert mu.shape == (50, 1) and (np.abs(mu) <= 2.0 + 1e-6).all()
    assert lp.q_values(obs, pendulum_data.actions[pendulum_data.mask][:50]).shape == (50,)
    rng = np.random.default_rng(0)
    for head in (GaussianPolicy(lp, 0.5, (-2.0,), (2.0,)), TruncatedGaussianPolicy(lp, 0.5, (-2.0,), (2.0,))):
        actions, pscore = head.sample(obs, rng)
        assert actions.shape == (50, 1) and (np.abs(actions) <= 2.0).all()
        assert np.isfinite(pscore).all() and (pscore > 0).all()
        np.testing.assert_allclose(head.pscore(obs, actions), pscore)
        logged = head.pscore(obs, pendulum_data.actions[pendulum_data.mask][:50])
        assert np.isfinite(logged).all() and (logged >= 0).all()


def test_offline_training_is_deterministic_with_a_seed(cartpole_data, pendulum_data):
    obs = cartpole_data.observations[0, :20]
    a = train_offline(cartpole_data, "discrete_cql", n_steps=30, hidden=HIDDEN, seed=5, options=FAST)
    b = train_offline(cartpole_data, "discrete_cql", n_steps=30, hidden=HIDDEN, seed=5, options=FAST)
    c = train_offline(cartpole_data, "discrete_cql", n_steps=30, hidden=HIDDEN, seed=6, options=FAST)
    np.testing.assert_array_equal(a.action_values(obs), b.action_values(obs))
    assert not np.array_equal(a.action_values(obs), c.action_values(obs))
    obs = pendulum_data.observations[0, :20]
    d = train_offline(pendulum_data, "td3_plus_bc", n_steps=30, hidden=HIDDEN, seed=5, options=FAST)
    e = train_offline(pendulum_data, "td3_plus_bc", n_steps=30, hidden=HIDDEN, seed=5, options=FAST)
    np.testing.assert_array_equal(d(obs), e(obs))


def test_training_leaves_global_random_state_alone(cartpole_data):
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    train_offline(cartpole_data, "discrete_cql", n_steps=5, hidden=HIDDEN, seed=0, options=FAST)
    np.testing.assert_array_equal(np.random.random(3), expected)


def test_offline_writes_nothing_to_the_working_directory(cartpole_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_offline(cartpole_data, "discrete_bcq", n_steps=5, hidden=HIDDEN, seed=0, options=FAST)
    train_online(make("cartpole"), "double_dqn", n_steps=40, seed=0, hidden=HIDDEN, options=FAST)
    assert list(tmp_path.iterdir()) == []


def test_offline_checks_inputs(cartpole_data, pendulum_data):
    with pytest.raises(ValueError, match="algorithm: expected one of"):
        train_offline(cartpole_data, "ppo", n_steps=5)
    with pytest.raises(ValueError, match="for discrete actions"):
        train_offline(cartpole_data, "cql", n_steps=5)
    with pytest.raises(ValueError, match="for continuous actions"):
        train_offline(pendulum_data, "discrete_cql", n_steps=5)
    with pytest.raises(ValueError, match="n_steps: expected a positive int"):
        train_offline(cartpole_data, "discrete_cql", n_steps=0)
    with pytest.raises(ValueError, match="hidden: expected positive ints"):
        train_offline(cartpole_data, "discrete_cql", n_steps=5, hidden=(0,))
    with pytest.raises(ValueError, match="trajectory_weighting: expected None or 'return'"):
        train_offline(cartpole_data, "discrete_cql", n_steps=5, trajectory_weighting="advantage")
    with pytest.raises(ValueError, match="options: expected fields of DiscreteCQLConfig"):
        train_offline(cartpole_data, "discrete_cql", n_steps=5, options={"learning_rat": 1.0})
