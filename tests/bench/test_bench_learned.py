"""Benchmark cells on tasks without an exact model: behavior trained online, candidates learned offline,
ground truth from rollouts, neural FQE (and kernel ratios for continuous actions). Tiny budgets."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("d3rlpy")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from opelab.bench import Cell, parse_config, run_cell  # noqa: E402
from opelab.bench import learned  # noqa: E402

CARTPOLE = """
name = "learned"
seed = 1
n_datasets = 2
n_trajectories = 30
ks = [2]
estimators = ["dm", "pdis", "dr", "snpdis"]
ground_truth_rollouts = 50

[inputs]
fqe_steps = 5

[[tasks]]
name = "cartpole"
horizon = 20
behavior = { base = "double_dqn", head = "softmax", temperature = 1.0, train_steps = 200, hidden = [16, 16] }
candidates = { family = "offline", algorithms = ["discrete_cql"], hidden_sizes = [[16, 16]], epsilons = [0.0, 0.5], n_steps = 50 }
"""

PENDULUM = """
name = "learned-continuous"
seed = 2
n_datasets = 1
n_trajectories = 20
ks = [2]
estimators = ["dm", "pdis", "dr", "snpdis"]
ground_truth_rollouts = 20

[inputs]
fqe_steps = 5
bandwidth = 0.5

[[tasks]]
name = "pendulum"
horizon = 10
behavior = { base = "sac", head = "gaussian", sigma = 0.5, train_steps = 100, hidden = [16, 16], train = { batch_size = 32 } }
candidates = { family = "offline", algorithms = ["td3_plus_bc"], hidden_sizes = [[16, 16]], sigmas = [0.3, 1.0], n_steps = 30 }
"""


def test_a_learned_cell_runs_and_reproduces_from_scratch():
    config = parse_config(CARTPOLE)
    first = run_cell(config, Cell("cartpole", 0))
    second = run_cell(config, Cell("cartpole", 1))
    assert set(first.estimates.policy) == {"discrete_cql_16x16_eps0", "discrete_cql_16x16_eps0.5"}
    assert (first.ground_truth.se > 0).all()  # rollouts, not an exact model
    # the candidates and their truth are the task's, the same for every dataset
    np.testing.assert_array_equal(first.ground_truth.value, second.ground_truth.value)
    assert not np.array_equal(first.estimates.estimate, second.estimates.estimate)
    learned._CACHE.clear()  # retrain everything: seeded training gives the same cell bit for bit
    again = run_cell(config, Cell("cartpole", 0))
    np.testing.assert_array_equal(again.estimates.estimate.to_numpy(), first.estimates.estimate.to_numpy())
    np.testing.assert_array_equal(again.ground_truth.value.to_numpy(), first.ground_truth.value.to_numpy())


def test_a_continuous_learned_cell_uses_kernel_ratios_and_fqe():
    result = run_cell(parse_config(PENDULUM), Cell("pendulum", 0))
    table = result.estimates.pivot(index="policy", columns="estimator", values="estimate")
    assert set(table.columns) == {"dm", "pdis", "dr", "snpdis"}
    assert np.isfinite(table.to_numpy()).all()


class _VelocityValues:
    """Action values of MountainCar's energy pump (push along the velocity): reaches the goal in ~120 steps."""

    n_actions = 3

    def __init__(self, gap: float) -> None:
        self.gap = gap

    def action_values(self, observations, steps=None):
        push = np.where(np.asarray(observations)[..., 1] >= 0, 2, 0)
        return self.gap * np.eye(3)[push]


MOUNTAINCAR = """
name = "attempts"
n_trajectories = 10
ground_truth_rollouts = 20

[[tasks]]
name = "mountaincar"
behavior = {{ base = "double_dqn", head = "softmax", temperature = 0.1, train_steps = 500, attempts = {attempts} }}
candidates = {{ family = "offline" }}
"""


def test_attempts_keep_the_first_base_whose_behavior_beats_uniform(monkeypatch):
    import opelab.learn
    from opelab.bench.tasks import find_family

    seeds = []

    def fake_train_online(task, algorithm, *, seed, **kwargs):  # two flat bases (uniform softmax), then the pump
        seeds.append(seed)
        return _VelocityValues(gap=10.0 if len(seeds) == 3 else 0.0)

    monkeypatch.setattr(opelab.learn, "train_online", fake_train_online)
    monkeypatch.setattr(learned, "_CACHE", {})
    config = parse_config(MOUNTAINCAR.format(attempts=3))
    policy = find_family("mountaincar").create(config.tasks[0], config.inputs, 20).behavior_policy()
    assert len(set(seeds)) == 3
    assert policy.name == "behavior(softmax(double_dqn, temperature=0.1), attempt 3 of 3)"
    assert policy.values.gap == 10.0
    single = parse_config(MOUNTAINCAR.format(attempts=1))
    find_family("mountaincar").create(single.tasks[0], single.inputs, 20).behavior_policy()
    assert seeds[-1] == seeds[0]  # the first attempt is the base that attempts = 1 trains


def test_a_task_whose_attempts_all_fail_fails_with_the_values_and_once(monkeypatch):
    import opelab.learn
    from opelab.bench.tasks import find_family

    seeds = []

    def flat(task, algorithm, *, seed, **kwargs):
        seeds.append(seed)
        return _VelocityValues(gap=0.0)

    monkeypatch.setattr(opelab.learn, "train_online", flat)
    monkeypatch.setattr(learned, "_CACHE", {})
    config = parse_config(MOUNTAINCAR.format(attempts=2))
    message = (
        r"behavior: expected a behavior whose value beats the uniform policy's \(-86.60\) by two standard errors, "
        r"found none in 2 attempts \(-86.60 ± 0.00, -86.60 ± 0.00\); raise behavior.attempts"
    )
    for _ in range(2):  # the task's next cell (or a retry) fails at once, without training again
        task = find_family("mountaincar").create(config.tasks[0], config.inputs, 20)
        with pytest.raises(learned.BehaviorTrainingError, match=message):
            task.behavior_policy()
    assert len(seeds) == 2


def test_the_batch_sizes_the_config_check_assumes_are_the_trainers():
    import d3rlpy

    from opelab.learn.algorithms import DISCRETE_DEFAULTS

    assert learned.BATCH_SIZES == {"discrete": DISCRETE_DEFAULTS["batch_size"], "continuous": d3rlpy.algos.SACConfig().batch_size}
