"""Benchmark configs: valid ones load into typed dataclasses; every malformed one is a ConfigError that names
the key path, the line (marked ``# <-`` in each case below), the expectation and the value found."""

from __future__ import annotations

import dataclasses
import re

import pytest

from opelab.bench.config import BenchmarkConfig, ConfigError, load_config, locate, parse_config

TASK = """
[[tasks]]
name = "chain"
behavior = { head = "softmax", temperature = 1.0 }
"""


def test_a_full_config_loads_into_frozen_dataclasses():
    text = """
name = "demo"
seed = 7
n_datasets = 3
n_trajectories = 100
ks = [2, 3]
safety_threshold = 0.1
estimators = ["dm", { name = "sam_dr", label = "sam_dr@1", options = { k = 1 } }]

[intervals]
method = "t"
alpha = 0.1

[inputs]
weights = "none"
n_folds = 2

[executor]
kind = "ray"
workers = 2
retries = 3

[[tasks]]
name = "gridworld"
id = "grid-eps"
n_trajectories = 50
behavior = { head = "epsilon_greedy", epsilon = 0.2 }

[tasks.candidates]
epsilons = [0.0, 0.5]
temperatures = []
adversarial_epsilons = [0.3]
n_sampled = 3
"""
    config = parse_config(text, source="demo.toml")
    assert isinstance(config, BenchmarkConfig)
    assert (config.name, config.seed, config.n_datasets, config.ks, config.safety_threshold) == ("demo", 7, 3, (2, 3), 0.1)
    assert [e.label for e in config.estimators] == ["dm", "sam_dr@1"] and config.estimators[1].options == (("k", 1),)
    assert (config.intervals.method, config.intervals.alpha) == ("t", 0.1)
    assert (config.inputs.weights, config.inputs.n_folds) == ("none", 2)
    assert (config.executor.kind, config.executor.workers, config.executor.retries) == ("ray", 2, 3)
    assert config.executor.steal is True  # the default
    task = config.tasks[0]
    assert (task.id, task.name, task.n_trajectories) == ("grid-eps", "gridworld", 50)
    assert (task.behavior.head, task.behavior.epsilon) == ("epsilon_greedy", 0.2)
    assert task.candidates.epsilons == (0.0, 0.5) and task.candidates.n_sampled == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]
    assert config.with_executor(workers=1).executor.workers == 1 and config.executor.workers == 2


@pytest.mark.parametrize("name", ["quick", "sharpe_ratio_paper", "sharpe_ratio_paper_small", "sharpe_ratio_paper_medium"])
def test_the_shipped_configs_load(name):
    config = load_config(f"configs/{name}.toml")
    assert config.name == name
    if name == "quick":
        assert {t.name for t in config.tasks} == {"gridworld", "chain", "random", "cartpole"}
    if name == "sharpe_ratio_paper":  # the published design
        assert [(t.name, t.horizon) for t in config.tasks] == [
            ("cartpole", 200), ("mountaincar", 200), ("acrobot", 500),
            ("reacher", 30), ("inverted_pendulum", 100), ("hopper", 30), ("swimmer", 100),
        ]  # fmt: skip
        assert config.n_datasets == 10 and {t.n_trajectories for t in config.tasks} == {10_000}
        assert config.ks == tuple(range(2, 11)) and config.ground_truth_rollouts == 100
        assert [e.name for e in config.estimators] == ["dm", "snpdis", "sndr", "sam_snis", "sam_sndr"]
        assert all(t.candidates.n_sampled == 10 for t in config.tasks)
    if name == "sharpe_ratio_paper_medium":  # the floor: every task at the paper's horizon, >= 5 x 1,000, 10 candidates
        paper = load_config("configs/sharpe_ratio_paper.toml")
        assert [(t.name, t.horizon) for t in config.tasks] == [(t.name, t.horizon) for t in paper.tasks]
        assert config.n_datasets >= 5 and min(t.n_trajectories for t in config.tasks) >= 1000
        assert all(t.candidates.n_sampled == 10 for t in config.tasks) and config.executor.workers == 2
        # the marginal estimators run everywhere: DICE weights on the discrete tasks, MWL on the continuous ones
        assert [(t.inputs or config.inputs).weights for t in config.tasks] == ["bestdice"] * 3 + ["mwl"] * 4


def test_the_tie_rule_defaults_to_average_and_a_run_takes_either(tmp_path):
    from opelab.bench import ResultStore, run_benchmark

    assert parse_config(TASK).ties == "average"
    text = 'n_datasets = 1\nn_trajectories = 30\nestimators = ["dm", "snpdis"]\n' + TASK
    values = {}
    for rule in ("first", "average"):
        config = parse_config(f'ties = "{rule}"\n' + text)
        assert config.ties == rule
        run_benchmark(config, tmp_path / f"{rule}.duckdb")
        with ResultStore(tmp_path / f"{rule}.duckdb", read_only=True) as store:
            values[rule] = store.table("metrics").set_index(["task", "dataset", "estimator", "metric"]).value
    assert values["first"].index.equals(values["average"].index)  # same cells and metrics, whatever the rule


def test_a_behavior_train_table_is_read_sorted_and_reaches_train_online(monkeypatch):
    text = (
        '[[tasks]]\nname = "cartpole"\nn_trajectories = 10\n'
        'behavior = { base = "double_dqn", head = "softmax", temperature = 0.1, train_steps = 50, '
        "train = { update_interval = 16, learning_rate = 4e-3, n_updates = 8, buffer_size = 1000, final_epsilon = 0.07 } }\n"
        'candidates = { family = "offline" }\n'
    )
    config = parse_config(text)
    assert config.tasks[0].behavior.train == (
        ("buffer_size", 1000), ("final_epsilon", 0.07), ("learning_rate", 4e-3), ("n_updates", 8), ("update_interval", 16),
    )  # fmt: skip
    pytest.importorskip("d3rlpy")
    import opelab.learn
    from opelab.bench.tasks import find_family

    seen = {}

    def fake_train_online(task, algorithm, **kwargs):
        seen.update(kwargs, algorithm=algorithm)
        raise RuntimeError("stop here")

    monkeypatch.setattr(opelab.learn, "train_online", fake_train_online)
    task = find_family("cartpole").create(config.tasks[0], config.inputs, 10)
    with pytest.raises(RuntimeError, match="stop here"):
        task.behavior_policy()
    assert seen["options"] == {"learning_rate": 4e-3}  # d3rlpy config fields; the rest is the schedule
    assert {k: seen[k] for k in ("update_interval", "n_updates", "buffer_size", "final_epsilon", "n_steps")} == {
        "update_interval": 16, "n_updates": 8, "buffer_size": 1000, "final_epsilon": 0.07, "n_steps": 50,
    }  # fmt: skip


def test_task_inputs_override_the_config_inputs():
    text = TASK_LEARNED + 'inputs = { weights = "none", fqe_steps = 7 }\n'
    config = parse_config('[inputs]\nweights = "mwl"\nfqe_steps = 3\nkernel = "cosine"\n' + text)
    assert config.inputs.weights == "mwl" and config.tasks[0].inputs.weights == "none"
    assert config.tasks[0].inputs.fqe_steps == 7 and config.tasks[0].inputs.kernel == "cosine"


TASK_LEARNED = (
    '[[tasks]]\nname = "pendulum"\nbehavior = { base = "sac", head = "gaussian", sigma = 0.5 }\n'
    'candidates = { family = "offline" }\n'
)

CASES = {
    "unknown top-level key": ("sed = 1  # <-\n" + TASK, "sed", "unknown key"),
    "seed of the wrong type": ('seed = "zero"  # <-\n' + TASK, "seed", "expected an integer, found 'zero'"),
    "negative seed": ("seed = -1  # <-\n" + TASK, "seed", "expected an integer >= 0, found -1"),
    "unknown tie rule": ('ties = "random"  # <-\n' + TASK, "ties", "expected 'first', 'last' or 'average'"),
    "no datasets": ("n_datasets = 0  # <-\n" + TASK, "n_datasets", "expected an integer >= 1"),
    "a boolean is not an integer": ("n_datasets = true  # <-\n" + TASK, "n_datasets", "expected an integer, found True"),
    "k of zero": ("ks = [0, 2]  # <-\n" + TASK, "ks", "expected an array of integers >= 1"),
    "repeated k": ("ks = [2, 2]  # <-\n" + TASK, "ks", "distinct"),
    "k above the candidates": ("ks = [2, 40]  # <-\n" + TASK, "ks", "expected values <= 9"),
    "no tasks": ("seed = 1\n", "tasks", "expected a non-empty array of tables"),
    "unknown task": ('[[tasks]]\nname = "nope"  # <-\n', "tasks[0].name", "expected a registered task"),
    "negative temperature": (
        '[[tasks]]\nname = "chain"\nbehavior = { head = "softmax", temperature = -1 }  # <-\n',
        "tasks[0].behavior.temperature",
        "expected a positive number, found -1",
    ),
    "missing head parameter": (
        '[[tasks]]\nname = "chain"\nbehavior = { head = "softmax" }  # <-\n',
        "tasks[0].behavior.temperature",
        "needs temperature",
    ),
    "parameter of another head": (
        '[[tasks]]\nname = "chain"\nbehavior = { head = "softmax", temperature = 1, epsilon = 0.1 }  # <-\n',
        "tasks[0].behavior.epsilon",
        "expected no epsilon",
    ),
    "unknown head": ('[[tasks]]\nname = "chain"\nbehavior = { head = "argmax" }  # <-\n', "tasks[0].behavior.head", "expected one of"),
    "head the family cannot build": (
        '[[tasks]]\nname = "chain"\nbehavior = { head = "gaussian", sigma = 1.0 }  # <-\n',
        "tasks[0].behavior.head",
        "for tabular task",
    ),
    "epsilon outside [0, 1] in a sub-table": (
        '[[tasks]]\nname = "chain"\nbehavior = { head = "uniform" }\n[tasks.candidates]\nepsilons = [0.1, 1.5]  # <-\n',
        "tasks[0].candidates.epsilons",
        "numbers in [0, 1]",
    ),
    "horizon on a tabular task": ('[[tasks]]\nname = "chain"\nhorizon = 10  # <-\n', "tasks[0].horizon", "expected nothing for tabular task"),
    "learned task with a tabular base": (
        '[[tasks]]\nname = "cartpole"\nbehavior = { head = "softmax", temperature = 1.0 }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.base", "expected 'double_dqn' (trained online)",
    ),
    "learned task with heads candidates": (
        '[[tasks]]\nname = "cartpole"\nbehavior = { base = "double_dqn", head = "softmax", temperature = 1.0 }\ncandidates = { epsilons = [0.1] }  # <-\n',
        "tasks[0].candidates.family", "expected 'offline'",
    ),
    "continuous task with a discrete head": (
        '[[tasks]]\nname = "pendulum"\nbehavior = { base = "sac", head = "softmax", temperature = 1.0 }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.head", "expected one of ['gaussian']",
    ),
    "unknown key in a behavior's train table": (
        '[[tasks]]\nname = "cartpole"\nbehavior = { base = "double_dqn", head = "softmax", temperature = 1.0, train = { lr = 0.01 } }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.train.lr", "unknown key (expected one of learning_rate, batch_size",
    ),
    "final epsilon outside [0, 1]": (
        '[[tasks]]\nname = "cartpole"\nbehavior = { base = "double_dqn", head = "softmax", temperature = 1.0, train = { final_epsilon = 1.5 } }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.train.final_epsilon", "expected a number in [0, 1], found 1.5",
    ),
    "zero updates per interval": (
        '[[tasks]]\nname = "cartpole"\nbehavior = { base = "double_dqn", head = "softmax", temperature = 1.0, train = { n_updates = 0 } }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.train.n_updates", "expected an integer >= 1, found 0",
    ),
    "a train table on a tabular task": (
        '[[tasks]]\nname = "chain"\nbehavior = { head = "softmax", temperature = 1.0, train = { n_updates = 2 } }  # <-\n',
        "tasks[0].behavior.train", "expected nothing for tabular task 'chain' (its model fixes it), found {'n_updates': 2}",
    ),
    "DoubleDQN's exploration schedule for SAC": (
        '[[tasks]]\nname = "pendulum"\nbehavior = { base = "sac", head = "gaussian", sigma = 0.5, train = { explore_fraction = 0.2 } }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.train", "expected no explore_fraction for SAC",
    ),
    "attempts on a continuous task": (
        '[[tasks]]\nname = "pendulum"\nbehavior = { base = "sac", head = "gaussian", sigma = 0.5, attempts = 3 }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.attempts", "expected 1 for a continuous-action task",
    ),
    "too many attempts": (
        '[[tasks]]\nname = "cartpole"\nbehavior = { base = "double_dqn", head = "softmax", temperature = 1.0, attempts = 50 }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.attempts", "expected an integer in [1, 20], found 50",
    ),
    "learning rate for SAC": (
        '[[tasks]]\nname = "pendulum"\nbehavior = { base = "sac", head = "gaussian", sigma = 0.5, train = { learning_rate = 1e-3 } }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.train", "expected no learning_rate for SAC",
    ),
    "a replay buffer no larger than a batch": (
        '[[tasks]]\nname = "cartpole"\nbehavior = { base = "double_dqn", head = "softmax", temperature = 1.0, train = { buffer_size = 64 } }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.train.buffer_size", "expected more than the batch size (64; the replay buffer must hold a batch), found 64",
    ),
    "SAC trained for fewer steps than its batch": (
        '[[tasks]]\nname = "pendulum"\nbehavior = { base = "sac", head = "gaussian", sigma = 0.5, train_steps = 200 }  # <-\ncandidates = { family = "offline" }\n',
        "tasks[0].behavior.train_steps", "expected more than the batch size (256; the replay buffer must hold a batch), found 200",
    ),
    "tabular FQE on a learned task": (
        '[inputs]\nq_function = "fqe"  # <-\n[[tasks]]\nname = "cartpole"\nbehavior = { base = "double_dqn", head = "softmax", temperature = 1.0 }\ncandidates = { family = "offline" }\n',
        "inputs.q_function", "expected 'auto', 'neural_fqe' or 'mql'",
    ),
    "hidden sizes not arrays": (
        '[[tasks]]\nname = "cartpole"\nbehavior = { base = "double_dqn", head = "softmax", temperature = 1.0 }\ncandidates = { family = "offline", hidden_sizes = [32, 32] }  # <-\n',
        "tasks[0].candidates.hidden_sizes", "expected an array of arrays of integers",
    ),
    "unknown weights on a continuous task": (
        '[inputs]\nweights = "mwll"  # <-\n' + TASK_LEARNED, "inputs.weights", "expected 'auto', 'none' or a DICE setting",
    ),
    "unknown weights in a continuous task's own inputs": (
        TASK_LEARNED + 'inputs = { weights = "tabular" }  # <-\n', "tasks[0].inputs.weights", "expected 'auto', 'none' or a DICE setting",
    ),
    "unknown key in a task's inputs": (TASK_LEARNED + 'inputs = { kernal = "cosine" }  # <-\n', "tasks[0].inputs.kernal", "unknown key"),
    "unknown key in a task": ('[[tasks]]\nname = "chain"\nhorizonn = 10  # <-\n', "tasks[0].horizonn", "unknown key"),
    "the second task's error is on its line": (
        TASK + '\n[[tasks]]\nname = "random"\nbehavior = { head = "softmax", temperature = 0 }  # <-\n',
        "tasks[1].behavior.temperature",
        "positive",
    ),
    "more sampled candidates than generated": (
        '[[tasks]]\nname = "chain"\ncandidates = { epsilons = [0.0], temperatures = [], adversarial_epsilons = [], n_sampled = 5 }  # <-\n',
        "tasks[0].candidates.n_sampled",
        "at most the 2 generated",
    ),
    "duplicate task ids": (TASK + '\n[[tasks]]  # <-\nname = "chain"\n', "tasks[1].id", "distinct task ids"),
    "missing trajectories": (
        'n_trajectories = 100\n[[tasks]]\nname = "chain"\nn_trajectories = 1  # <-\n',
        "tasks[0].n_trajectories",
        "expected an integer >= 2, found 1",
    ),
    "unknown estimator": ('estimators = ["dm", "nope"]  # <-\n' + TASK, "estimators[1]", "expected a registered estimator"),
    "unknown estimator option": (
        'estimators = [{ name = "dm", options = { k = 2 } }]  # <-\n' + TASK,
        "estimators[0].options",
        "expected options of dm",
    ),
    "invalid estimator option value": (
        'estimators = [{ name = "sam_dr", label = "x", options = { k = -1 } }]  # <-\n' + TASK,
        "estimators[0].options",
        "non-negative int",
    ),
    "duplicate estimator labels": ('estimators = ["dm", "dm"]  # <-\n' + TASK, "estimators", "distinct labels"),
    "interval level out of range": ("[intervals]\nalpha = 1.5  # <-\n" + TASK, "intervals.alpha", "expected a number in (0, 1), found 1.5"),
    "unknown interval method": ('[intervals]\nmethod = "magic"  # <-\n' + TASK, "intervals.method", "expected one of"),
    "unknown executor": ('[executor]\nkind = "dask"  # <-\n' + TASK, "executor.kind", "expected one of ['local', 'ray'], found 'dask'"),
    "zero workers": ("[executor]\nworkers = 0  # <-\n" + TASK, "executor.workers", "expected an integer >= 1"),
    "retries of the wrong type": ("[executor]\nretries = 1.5  # <-\n" + TASK, "executor.retries", "expected an integer, found 1.5"),
    "steal of the wrong type": ("[executor]\nsteal = \"yes\"  # <-\n" + TASK, "executor.steal", "expected true or false, found 'yes'"),
    "unknown executor key": ("[executor]\nthreads = 4  # <-\n" + TASK, "executor.threads", "unknown key"),
    "a table where a number belongs": ("[executor]\nworkers = { n = 2 }  # <-\n" + TASK, "executor.workers", "found a table"),
    "weights the tabular family lacks": ('[inputs]\nweights = "dice"  # <-\n' + TASK, "inputs.weights", "'auto', 'tabular' or 'none'"),
    "missing module to import": ('imports = ["no_such_module_here"]  # <-\n' + TASK, "imports", "expected importable modules"),
    "TOML syntax error": ("seed = = 1  # <-\n" + TASK, "", "expected valid TOML"),
    "infinite number": ("safety_threshold = inf  # <-\n" + TASK, "safety_threshold", "expected a finite number, found inf"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_configs_name_the_key_its_line_and_the_value(case):
    text, key, expected = CASES[case]
    line = next((i + 1 for i, row in enumerate(text.splitlines()) if "# <-" in row), None)  # None: a missing key
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="bad.toml")
    message = str(info.value)
    assert message.startswith(f"bad.toml:{line}: " if line else "bad.toml: "), message
    assert info.value.line == line
    if key:
        assert f": {key}: " in message, message
    assert "expected" in message and "found" in message, message
    assert expected in message, message
    assert "\n" not in message


def test_locate_finds_keys_in_headers_inline_tables_and_arrays_of_tables():
    text = "seed = 1\n[executor]\nworkers = 2\n[[tasks]]\nname = 'a'\n[tasks.behavior]\nhead = 'x'\n[[tasks]]\nname = 'b'\nbehavior = { temperature = 3 }\n"
    assert locate(text, ["seed"]) == 1
    assert locate(text, ["executor", "workers"]) == 3
    assert locate(text, ["tasks", 0, "behavior", "head"]) == 7
    assert locate(text, ["tasks", 1, "name"]) == 9
    assert locate(text, ["tasks", 1, "behavior", "temperature"]) == 10
    assert locate(text, ["nothing"]) is None


def test_an_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("missing.toml: expected a readable TOML file")):
        load_config(tmp_path / "missing.toml")
