"""Bounded sizes: every integer of a benchmark config, and the grid, has an upper bound (``config.LIMITS``),
refused at parse time in the house format "file:line: key.path: expected an integer in [low, N], found M"."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from opelab.bench import config as config_module
from opelab.bench.config import LIMITS, ConfigError, parse_config

TASK = '[[tasks]]\nname = "chain"\n'
LEARNED = '[[tasks]]\nname = "cartpole"\nbehavior = { base = "double_dqn", head = "softmax", temperature = 1.0 }\n'
OFFLINE = 'candidates = { family = "offline" }\n'
BIG = 10**12

CASES = {
    "n_datasets": (f"n_datasets = {BIG}  # <-\n" + TASK, "n_datasets", f"[1, {LIMITS['n_datasets']}], found {BIG}"),
    "seed": (f"seed = {2**63}  # <-\n" + TASK, "seed", f"[0, {2**63 - 1}]"),
    "n_trajectories": (f"n_trajectories = {BIG}  # <-\n" + TASK, "n_trajectories", f"[2, {LIMITS['n_trajectories']}]"),
    "a task's n_trajectories": (TASK + f"n_trajectories = {BIG}  # <-\n", "tasks[0].n_trajectories", f"[2, {LIMITS['n_trajectories']}]"),
    "horizon": (LEARNED + OFFLINE + f"horizon = {BIG}  # <-\n", "tasks[0].horizon", f"[1, {LIMITS['horizon']}]"),
    "ks": (f"ks = [2, {BIG}]  # <-\n" + TASK, "ks", f"an array of integers in [1, {LIMITS['ks']}]"),
    "ground_truth_rollouts": (f"ground_truth_rollouts = {BIG}  # <-\n" + TASK, "ground_truth_rollouts", f"[2, {LIMITS['ground_truth_rollouts']}]"),
    "n_bootstrap": (f"[intervals]\nmethod = 'bootstrap'\nn_bootstrap = {BIG}  # <-\n" + TASK, "intervals.n_bootstrap", f"[2, {LIMITS['n_bootstrap']}]"),
    "workers": (f"[executor]\nworkers = {BIG}  # <-\n" + TASK, "executor.workers", f"[1, {LIMITS['workers']}]"),
    "retries": (f"[executor]\nretries = {BIG}  # <-\n" + TASK, "executor.retries", f"[0, {LIMITS['retries']}]"),
    "n_folds": (f"[inputs]\nn_folds = {BIG}  # <-\n" + TASK, "inputs.n_folds", f"[1, {LIMITS['n_folds']}]"),
    "fqe_steps": (f"[inputs]\nfqe_steps = {BIG}  # <-\n" + TASK, "inputs.fqe_steps", f"[1, {LIMITS['fqe_steps']}]"),
    "fqe_iterations": (f"[inputs]\nfqe_iterations = {BIG}  # <-\n" + TASK, "inputs.fqe_iterations", f"[1, {LIMITS['fqe_iterations']}]"),
    "minimax_steps": (f"[inputs]\nminimax_steps = {BIG}  # <-\n" + TASK, "inputs.minimax_steps", f"[1, {LIMITS['train_steps']}]"),
    "minimax_features": (f"[inputs]\nminimax_features = {BIG}  # <-\n" + TASK, "inputs.minimax_features", f"[1, {LIMITS['minimax_features']}]"),
    "a task's own inputs": (LEARNED + OFFLINE + f"inputs = {{ fqe_steps = {BIG} }}  # <-\n", "tasks[0].inputs.fqe_steps", f"[1, {LIMITS['fqe_steps']}]"),
    "n_sampled": (TASK + f"candidates = {{ n_sampled = {BIG} }}  # <-\n", "tasks[0].candidates.n_sampled", f"[1, {LIMITS['candidates']}]"),
    "train_trajectories": (
        LEARNED + f'candidates = {{ family = "offline", train_trajectories = {BIG} }}  # <-\n',
        "tasks[0].candidates.train_trajectories", f"[2, {LIMITS['n_trajectories']}]",
    ),
    "candidates' training steps": (
        LEARNED + f'candidates = {{ family = "offline", n_steps = {BIG} }}  # <-\n', "tasks[0].candidates.n_steps", f"[1, {LIMITS['train_steps']}]",
    ),
    "behavior's training steps": (
        '[[tasks]]\nname = "cartpole"\n' + OFFLINE
        + f'behavior = {{ base = "double_dqn", head = "softmax", temperature = 1.0, train_steps = {BIG} }}  # <-\n',
        "tasks[0].behavior.train_steps", f"[1, {LIMITS['train_steps']}]",
    ),
    "behavior's hidden units": (
        '[[tasks]]\nname = "cartpole"\n' + OFFLINE
        + f'behavior = {{ base = "double_dqn", head = "softmax", temperature = 1.0, hidden = [{BIG}] }}  # <-\n',
        "tasks[0].behavior.hidden", f"an array of integers in [1, {LIMITS['hidden_units']}]",
    ),
    "behavior's hidden layers": (
        '[[tasks]]\nname = "cartpole"\n' + OFFLINE
        + f'behavior = {{ base = "double_dqn", head = "softmax", temperature = 1.0, hidden = {[8] * 65} }}  # <-\n',
        "tasks[0].behavior.hidden", f"an array of at most {LIMITS['hidden_layers']} integers",
    ),
    "candidates' hidden sizes": (
        LEARNED + f'candidates = {{ family = "offline", hidden_sizes = [[32], [{BIG}]] }}  # <-\n',
        "tasks[0].candidates.hidden_sizes", f"integers in [1, {LIMITS['hidden_units']}]",
    ),
    "too many noise levels": (
        TASK + f"candidates = {{ epsilons = {[0.5] * 10_001} }}  # <-\n", "tasks[0].candidates.epsilons", "an array of at most 10000 values",
    ),
    "too many generated candidates": (
        TASK + "[tasks.candidates]  # <-\n" + f"epsilons = {[0.5] * 6000}\ntemperatures = {[1.0] * 6000}\n",
        "tasks[0].candidates", f"at most {LIMITS['candidates']} generated candidates, found 12003",
    ),
    "too many offline candidates": (
        LEARNED + "[tasks.candidates]  # <-\nfamily = 'offline'\n" + f"hidden_sizes = {[[8]] * 2000}\n",
        "tasks[0].candidates", "algorithms × hidden_sizes × noise levels), found up to 16000",
    ),
    "integer estimator option": (
        f'estimators = [{{ name = "sam_dr", label = "x", options = {{ k = {BIG} }} }}]  # <-\n' + TASK,
        "estimators[0].options", f"expected an integer in [-{LIMITS['option']}, {LIMITS['option']}] for option 'k', found {BIG}",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_absurd_size_is_refused_with_its_key_line_and_bound(case):
    text, key, expected = CASES[case]
    line = next(i + 1 for i, row in enumerate(text.splitlines()) if "# <-" in row)
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="big.toml")
    message = str(info.value)
    assert message.startswith(f"big.toml:{line}: {key}: expected "), message
    assert expected in message and "\n" not in message, message


def test_a_billion_datasets_is_refused_at_once():
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=re.escape("big.toml:1: n_datasets: expected an integer in [1, 100000], found 1000000000")):
        parse_config("n_datasets = 1000000000\n" + TASK, source="big.toml")
    assert time.perf_counter() - start < 1.0


def test_the_grid_is_bounded_too():
    tasks = "".join(f'[[tasks]]\nname = "chain"\nid = "c{i}"\n' for i in range(11))
    most = LIMITS["cells"] // 11
    with pytest.raises(ConfigError) as info:
        parse_config(f"n_datasets = {LIMITS['n_datasets']}\n" + tasks, source="grid.toml")
    assert str(info.value) == (
        f"grid.toml:1: n_datasets: expected an integer in [1, {most}] (at most {LIMITS['cells']} cells = 11 task(s) × n_datasets), "
        f"found {LIMITS['n_datasets']}"
    )
    assert parse_config(f"n_datasets = {most}\n" + tasks).n_datasets == most  # the bound itself is accepted


def test_too_many_tasks_are_refused_before_reading_them():
    tasks = '[[tasks]]\nname = "nope"\n' * (LIMITS["tasks"] + 1)
    with pytest.raises(ConfigError, match=rf"tasks: expected at most {LIMITS['tasks']} tasks, found {LIMITS['tasks'] + 1}"):
        parse_config(tasks)


def test_values_at_the_bounds_are_accepted():
    text = (
        f"n_datasets = {LIMITS['n_datasets']}\nn_trajectories = {LIMITS['n_trajectories']}\nseed = {LIMITS['seed']}\n"
        f"[intervals]\nmethod = 'bootstrap'\nn_bootstrap = {LIMITS['n_bootstrap']}\n"
        f"[executor]\nworkers = {LIMITS['workers']}\nretries = {LIMITS['retries']}\n" + TASK
    )
    config = parse_config(text)
    assert (config.n_datasets, config.intervals.n_bootstrap, config.executor.workers) == (
        LIMITS["n_datasets"], LIMITS["n_bootstrap"], LIMITS["workers"],
    )  # fmt: skip


def test_every_integer_the_parser_takes_is_bounded():
    """A guard for new keys: each ``take(..., "int"/"int_list"/"int_lists", ...)`` in config.py passes a
    bounded check (``_sized``, ``_sizes`` or ``_at_most``)."""
    source = Path(config_module.__file__).read_text()
    takes = re.findall(r"""take\(\s*"(\w+)",\s*"(int|int_list|int_lists)",[^\n]*""", source)
    assert len(takes) >= 20
    for key, kind in takes:
        call = re.search(rf"""take\(\s*"{key}",\s*"{kind}",[^\n]*""", source).group(0)
        assert re.search(r"_sized\(|_sizes\(|_at_most\(", call), f"{key} ({kind}) has no upper bound: {call}"
