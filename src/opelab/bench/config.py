"""The benchmark config: a TOML file read once into frozen dataclasses, validated at the boundary.

A config names the tasks (each with its behavior policy and candidate generation), the dataset size and
number of datasets, the estimators (with options), intervals, the ks of the top-k metrics, the safety
threshold, the executor and the seed. Everything downstream (``runner``, ``executors``, ``store``) reads
these dataclasses and never the raw TOML.

Errors are ``ConfigError``s that name the key path, its line in the file, the expectation and the value
found, e.g. ``quick.toml:12: tasks[1].behavior.temperature: expected a positive number, found -1``.
``tomllib`` gives no line numbers, so ``locate`` finds them by scanning the text for the key (see there).
Every integer has an upper bound (``LIMITS``), as does the grid (tasks × n_datasets), so an absurd size is
refused here, e.g. ``n_datasets: expected an integer in [1, 100000], found 1000000000``.

Example::

    name = "quick"
    seed = 0
    n_datasets = 3
    n_trajectories = 200
    ks = [2, 3, 5]
    ties = "average"  # optional: how tied estimates order the top-k ("first", "last" or "average")
    estimators = ["dm", "snpdis", "sndr", { name = "sam_dr", label = "sam_dr@1", options = { k = 1 } }]

    [intervals]
    method = "bootstrap"
    alpha = 0.05

    [[tasks]]
    name = "gridworld"
    behavior = { head = "softmax", temperature = 1.0 }
    candidates = { epsilons = [0.0, 0.3], temperatures = [0.5] }
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BehaviorConfig",
    "BenchmarkConfig",
    "CandidateConfig",
    "ConfigError",
    "EstimatorConfig",
    "ExecutorConfig",
    "InputsConfig",
    "IntervalConfig",
    "LIMITS",
    "TaskConfig",
    "load_config",
    "locate",
    "parse_config",
]

EXECUTORS = ("local", "ray")
TOP_LEVEL_KEYS = (
    "name", "seed", "n_datasets", "n_trajectories", "ks", "ties", "safety_threshold", "ground_truth_rollouts", "imports",
    "estimators", "intervals", "inputs", "executor", "tasks",
)  # fmt: skip
TASK_KEYS = ("name", "id", "n_trajectories", "horizon", "behavior", "candidates", "inputs")
#: Upper bounds of every integer a config takes, and of the grid (``cells`` = tasks × n_datasets). Far above
#: real benchmarks (the SharpeRatio@k paper's design: 7 tasks × 10 datasets of 10,000 trajectories, 10
#: candidates, horizons up to 500, 100,000 training steps), low enough that a typo (``n_datasets =
#: 1000000000``) is refused at parse time instead of filling the memory. Lower bounds stay where they were.
LIMITS: dict[str, int] = {
    "seed": 2**63 - 1,  # the store keeps it as a BIGINT
    "n_datasets": 100_000,
    "cells": 1_000_000,  # tasks × n_datasets
    "tasks": 10_000,
    "n_trajectories": 10_000_000,  # also candidates.train_trajectories
    "horizon": 100_000,
    "ks": 10_000,  # each k
    "ground_truth_rollouts": 10_000_000,
    "n_bootstrap": 100_000,
    "workers": 4_096,
    "retries": 100,
    "candidates": 10_000,  # generated (and sampled) candidates of a task, and each list they come from
    "hidden_units": 65_536,  # units of one hidden layer
    "hidden_layers": 64,
    "train_steps": 100_000_000,  # behavior.train_steps, candidates.n_steps, minimax_steps
    "attempts": 20,  # behavior.attempts
    "fqe_steps": 10_000_000,
    "fqe_iterations": 100_000,
    "minimax_features": 1_000_000,
    "n_folds": 1_000,
    "option": 1_000_000_000,  # absolute value of an integer estimator option
}
#: Behavior heads and the one parameter each needs. Which heads a task supports is its family's business.
HEAD_PARAMETERS = {"softmax": "temperature", "epsilon_greedy": "epsilon", "gaussian": "sigma", "uniform": None}


class ConfigError(ValueError):
    """An invalid benchmark config: the key path, its line in the file (when found) and what was wrong."""

    def __init__(self, key: str, message: str, *, source: str = "<config>", line: int | None = None) -> None:
        self.key, self.message, self.source, self.line = key, message, source, line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


# --------------------------------------------------------------------------- #
# the typed config
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class BehaviorConfig:
    """The logging policy: a ``head`` (softmax, epsilon_greedy, gaussian, uniform) over the task's ``base``
    policy or action values (tabular tasks: ``"optimal"``, the optimal Q-function), with its parameter
    (required when a head is named; a task without a behavior table logs with softmax, temperature 1).
    Tasks without an exact Q-function name a base to train online (``"double_dqn"``, ``"sac"``) with
    ``train_steps`` and ``hidden``, and optionally a ``train`` table of its online schedule
    (``TRAIN_KEYS``: passed to ``opelab.learn.train_online``; unset keys keep its defaults). ``attempts``
    (discrete actions) trains bases from that many seeds, in turn, until the behavior policy's value beats
    the uniform policy's by two standard errors, and fails the task's cells if none does
    (``opelab.bench.learned``)."""

    head: str = "softmax"
    base: str = "optimal"
    temperature: float | None = None
    epsilon: float | None = None
    sigma: float | None = None
    train_steps: int | None = None  # learned bases (e.g. "double_dqn", "sac"): online environment steps
    hidden: tuple[int, ...] | None = None  # learned bases: hidden layer sizes
    train: tuple[tuple[str, int | float], ...] = ()  # learned bases: (key, value) of the online schedule, sorted
    attempts: int = 1  # learned discrete bases: seeds to try until the behavior beats the uniform policy

    @property
    def parameter(self) -> float | None:
        name = HEAD_PARAMETERS[self.head]
        return None if name is None else getattr(self, name)

    def describe(self) -> str:
        name = HEAD_PARAMETERS[self.head]
        return f"{self.head}({self.base})" if name is None else f"{self.head}({self.base}, {name}={self.parameter:g})"


TRAIN_KEYS: Mapping[str, str] = {
    "learning_rate": "float",  # d3rlpy config fields
    "batch_size": "int",
    "target_update_interval": "int",  # gradient steps between target-network copies (DoubleDQN)
    "update_interval": "int",  # environment steps between updates
    "n_updates": "int",  # gradient steps per update
    "buffer_size": "int",  # FIFO replay buffer (default: every step)
    "explore_fraction": "float",  # DoubleDQN: share of the steps over which ε decays from 1
    "final_epsilon": "float",
}
"""The keys of a behavior's ``train`` table, with their kinds (see ``opelab.learn.train_online``)."""

DEFAULT_BEHAVIOR = BehaviorConfig(head="softmax", temperature=1.0)  # when a task gives no behavior table


@dataclass(frozen=True)
class CandidateConfig:
    """How candidates are generated. ``family = "heads"``: ε-greedy / softmax / uniform / adversarial heads
    over the task's base (``opelab.policies.candidate_family``). ``n_sampled`` draws that many of them at
    random (the same subset for every dataset of a task, drawn from the config seed and the task id).
    ``family = "offline"``: ``algorithms`` × ``hidden_sizes`` trained offline on a dataset of the behavior
    policy (``opelab.learn.candidate_policies``), each under ``head`` at every noise level."""

    family: str = "heads"
    epsilons: tuple[float, ...] = (0.0, 0.1, 0.3, 0.6)
    temperatures: tuple[float, ...] = (0.2, 1.0)
    include_uniform: bool = True
    adversarial_epsilons: tuple[float, ...] = (0.1, 0.5)
    n_sampled: int | None = None
    # family = "offline": bases learned offline (opelab.learn) from a dataset of the behavior policy
    algorithms: tuple[str, ...] = ()
    hidden_sizes: tuple[tuple[int, ...], ...] = ((32, 32), (64, 64), (128, 128))
    head: str | None = None  # epsilon_greedy (epsilons), softmax (temperatures), gaussian / truncated_gaussian (sigmas)
    sigmas: tuple[float, ...] = ()
    n_steps: int = 10_000  # offline gradient steps per base
    train_trajectories: int | None = None  # size of the training dataset (default: the task's n_trajectories)
    trajectory_weighting: str | None = None  # "return": return-weighted resampling (Hong et al., 2023)

    @property
    def n_generated(self) -> int:
        """How many candidates the heads family generates before sampling."""
        return len(self.epsilons) + len(self.temperatures) + int(self.include_uniform) + len(self.adversarial_epsilons)


@dataclass(frozen=True)
class TaskConfig:
    """One task of the grid. ``id`` (default: ``name``) is unique in a config and seeds the task's cells."""

    id: str
    name: str
    behavior: BehaviorConfig
    candidates: CandidateConfig
    n_trajectories: int
    horizon: int | None = None  # None: the task's default horizon
    inputs: InputsConfig | None = None  # the config's [inputs] with this task's overrides (None: no overrides)


@dataclass(frozen=True)
class EstimatorConfig:
    """A registered estimator (``opelab.ope.estimators.ESTIMATORS``) with options passed to its constructor.
    ``label`` names it in the results (default: ``name``); labels are unique in a config."""

    name: str
    label: str
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class IntervalConfig:
    """Confidence intervals on every estimate (``method`` None: none), see ``opelab.ope.intervals``."""

    method: str | None = None
    alpha: float = 0.05
    n_bootstrap: int = 200


@dataclass(frozen=True)
class InputsConfig:
    """How the estimators' inputs are built: marginal ``weights`` (``"tabular"``, ``"none"`` or a DICE
    setting), ``n_folds`` cross-fitting folds, the Q-function learner and its budget, and for continuous
    actions the kernel and bandwidth of the smoothed importance ratios."""

    weights: str = "auto"  # tabular flow weights for tabular tasks, none for the others
    n_folds: int = 1
    q_function: str = "auto"  # see opelab.ope.build_inputs
    fqe_steps: int = 100  # neural FQE: Adam steps per iteration
    fqe_iterations: int | None = None  # neural FQE: iterations (None: the horizon)
    minimax_steps: int = 1500  # neural DICE / MQL: Adam steps
    minimax_features: int = 256  # neural DICE / MQL: random Fourier features of vector states
    kernel: str = "gaussian"  # continuous actions: smoothing kernel ...
    bandwidth: float = 0.1  # ... and its bandwidth, in standard deviations of the logged actions


@dataclass(frozen=True)
class ExecutorConfig:
    """Where cells run: ``local`` (process pool; 1 worker runs in-process) or ``ray``. A failed cell is
    retried ``retries`` times before it is recorded as failed. ``steal``: an idle local worker may take a
    waiting cell of a task placed on another worker when the measured costs say it finishes sooner, even
    training that task again (``opelab.bench.executors.steal_choice``); false keeps every task's cells on
    its worker."""

    kind: str = "local"
    workers: int = 1
    retries: int = 1
    address: str | None = None
    steal: bool = True


@dataclass(frozen=True)
class BenchmarkConfig:
    """A whole benchmark. ``text`` is the TOML it was read from (stored with each run)."""

    name: str
    seed: int
    n_datasets: int
    tasks: tuple[TaskConfig, ...]
    estimators: tuple[EstimatorConfig, ...]  # empty: every registered estimator whose inputs are present
    intervals: IntervalConfig = IntervalConfig()
    inputs: InputsConfig = InputsConfig()
    executor: ExecutorConfig = ExecutorConfig()
    ks: tuple[int, ...] | None = None  # None: 2..P
    ties: str = "average"  # how tied estimates order the top-k (opelab.select.metrics: first, last, average)
    safety_threshold: float | None = None
    ground_truth_rollouts: int = 100  # tasks without exact values estimate them with this many rollouts
    imports: tuple[str, ...] = ()  # modules imported first (e.g. registering extra estimators or tasks)
    text: str = field(default="", repr=False, compare=False)
    source: str = field(default="<config>", compare=False)

    @property
    def config_hash(self) -> str:
        """SHA-256 of the TOML text: a resumed run must come from the same config."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def task(self, task_id: str) -> TaskConfig:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(f"task: expected one of {[t.id for t in self.tasks]}, found {task_id!r}")

    def with_executor(self, **changes: Any) -> BenchmarkConfig:
        """The same benchmark on another executor (the command line's --executor, --workers, --address)."""
        return dataclasses.replace(self, executor=dataclasses.replace(self.executor, **changes))


# --------------------------------------------------------------------------- #
# locating keys in the text
# --------------------------------------------------------------------------- #
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _key_pattern(key: str) -> re.Pattern[str]:
    return re.compile(rf"""(^|[\s{{,.])(["']?){re.escape(key)}\2\s*[=.]""")


def locate(text: str, path: Sequence[str | int]) -> int | None:
    """The 1-based line where the key ``path`` (e.g. ``("tasks", 1, "behavior", "temperature")``) is written.

    Walks the path through the text: a key is either a table header (``[a.b]``, or the i-th ``[[a]]`` for an
    index i) or an assignment ``key =`` inside the current region (a table's lines, or an inline table /
    array starting at an assignment). Returns the deepest line found; ``None`` when not even the first key
    is found. Simple on purpose: it is for error messages, and a near line is better than none.
    """
    lines = text.splitlines()
    headers = [(i, m.group(1) == "[[", m.group(2).replace(" ", "")) for i, line in enumerate(lines) if (m := _HEADER.match(line))]
    # Top-level keys sit before the first header; inside a table, between its header and the next one.
    start, end, table, found = 0, headers[0][0] if headers else len(lines), "", None
    table_end = len(lines)  # headers of sub-tables may follow the assignments of their parent
    parts = list(path)
    j = 0
    while j < len(parts):
        key = parts[j]
        if isinstance(key, int):
            j += 1
            continue
        dotted = f"{table}.{key}" if table else key
        index = parts[j + 1] if j + 1 < len(parts) and isinstance(parts[j + 1], int) else None
        matching = [(i, arr) for i, arr, name in headers if name == dotted and start <= i < table_end]
        if matching:
            use_index = index is not None and matching[0][1]
            header = (matching[index] if use_index and index < len(matching) else matching[0])[0]
            after = [i for i, _, name in headers if i > header and not name.startswith(dotted + ".")]
            found, start, table = header + 1, header + 1, dotted
            table_end = after[0] if after else len(lines)
            sub = [i for i, _, name in headers if i > header]
            end = sub[0] if sub else len(lines)
            j += 2 if use_index else 1
            continue
        pattern = _key_pattern(str(key))
        hit = next((i for i in range(start, end) if pattern.search(lines[i].split("#", 1)[0])), None)
        if hit is None:
            break
        found, start = hit + 1, hit
        if index is not None:  # an element of an inline array: find its i-th inline table, if written as such
            braces = [i for i in range(hit, end) if "{" in lines[i]]
            if index < len(braces) and braces[0] != hit:
                found, start = braces[index] + 1, braces[index]
            j += 2
            continue
        j += 1
    return found


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #
def _path_text(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"an array {value!r}" if len(repr(value)) < 60 else "an array"
    return repr(value)


class _Reader:
    """Reads one TOML table with its key path: typed ``take``s, then ``finish`` refuses unknown keys."""

    def __init__(self, data: Mapping[str, Any], path: tuple[str | int, ...], text: str, source: str) -> None:
        self.data, self.path, self.text, self.source = data, path, text, source
        self.used: set[str] = set()

    def error(self, key: str | int | None, message: str) -> ConfigError:
        path = self.path if key is None else (*self.path, key)
        return ConfigError(_path_text(path), message, source=self.source, line=locate(self.text, path))

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def take(self, key: str, kind: str, default: Any = ..., check: Callable[[Any], str | None] | None = None) -> Any:
        """The value at ``key`` converted to ``kind``; ``check(value)`` returns an expectation when it fails."""
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.error(key, f"expected {_KINDS[kind][0]}, found nothing (the key is required)")
            return default
        value = _convert(self.data[key], kind)
        if value is _BAD:
            raise self.error(key, f"expected {_KINDS[kind][0]}, found {_show(self.data[key])}")
        if check is not None and (expected := check(value)) is not None:
            raise self.error(key, f"expected {expected}, found {_show(self.data[key])}")
        return value

    def table(self, key: str, *, required: bool = False) -> _Reader:
        self.used.add(key)
        value = self.data.get(key, None if required else {})
        if not isinstance(value, dict):
            found = "nothing (the table is required)" if value is None else _show(value)
            raise self.error(key, f"expected a table, found {found}")
        return _Reader(value, (*self.path, key), self.text, self.source)

    def expect(self, known: Sequence[str]) -> None:
        """Refuse unknown keys before reading any (so a typo is reported as such, not as a missing key)."""
        unknown = [k for k in self.data if k not in known]
        if unknown:
            raise self.error(unknown[0], f"unknown key (expected one of {', '.join(known)}), found {_show(self.data[unknown[0]])}")

    def finish(self, known: Sequence[str] | None = None) -> None:
        unknown = [k for k in self.data if k not in self.used]
        if unknown:
            hint = f"; known keys: {', '.join(sorted(known or self.used))}"
            raise self.error(unknown[0], f"unknown key (expected none of that name), found {_show(self.data[unknown[0]])}{hint}")


_BAD = object()


def _as_int(v: Any) -> Any:
    return v if isinstance(v, int) and not isinstance(v, bool) else _BAD


def _as_float(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _BAD
    return float(v) if math.isfinite(v) else _BAD


def _as_list(item: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(v: Any) -> Any:
        if not isinstance(v, list):
            return _BAD
        out = tuple(item(x) for x in v)
        return _BAD if any(x is _BAD for x in out) else out

    return convert


_KINDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "int": ("an integer", _as_int),
    "float": ("a finite number", _as_float),
    "str": ("a string", lambda v: v if isinstance(v, str) else _BAD),
    "bool": ("true or false", lambda v: v if isinstance(v, bool) else _BAD),
    "int_list": ("an array of integers", _as_list(_as_int)),
    "float_list": ("an array of finite numbers", _as_list(_as_float)),
    "str_list": ("an array of strings", _as_list(lambda v: v if isinstance(v, str) else _BAD)),
    "int_lists": ("an array of arrays of integers", _as_list(_as_list(_as_int))),
}


def _convert(value: Any, kind: str) -> Any:
    return _KINDS[kind][1](value)


def _positive(v: float) -> str | None:
    return None if v > 0 else "a positive number"


def _sized(low: int, limit: str) -> Callable[[int], str | None]:
    """At least ``low`` and at most ``LIMITS[limit]`` (below: "an integer >= low", as before the bounds)."""
    high = LIMITS[limit]
    return lambda v: f"an integer >= {low}" if v < low else f"an integer in [{low}, {high}]" if v > high else None


def _sizes(low: int, limit: str, length: str | None = None) -> Callable[[tuple[int, ...]], str | None]:
    """An array of integers each in [low, LIMITS[limit]], at most ``LIMITS[length]`` long when given."""
    high, longest = LIMITS[limit], None if length is None else LIMITS[length]

    def check(values: tuple[int, ...]) -> str | None:
        if longest is not None and len(values) > longest:
            return f"an array of at most {longest} integers"
        if any(v < low for v in values):
            return f"an array of integers >= {low}"
        return f"an array of integers in [{low}, {high}]" if any(v > high for v in values) else None

    return check


def _at_most(limit: str, check: Callable[[Any], str | None] | None = None) -> Callable[[tuple[Any, ...]], str | None]:
    """An array of at most ``LIMITS[limit]`` items, passing ``check`` too (an expectation on failure)."""

    def checked(values: tuple[Any, ...]) -> str | None:
        if len(values) > LIMITS[limit]:
            return f"an array of at most {LIMITS[limit]} values"
        return None if check is None else check(values)

    return checked


def _hidden_sizes(sizes: tuple[tuple[int, ...], ...]) -> str | None:
    units, layers = LIMITS["hidden_units"], LIMITS["hidden_layers"]
    if all(h and min(h) >= 1 and max(h) <= units and len(h) <= layers for h in sizes):
        return None
    return f"an array of non-empty arrays of at most {layers} integers in [1, {units}]"


def _unit(v: float) -> str | None:
    return None if 0 <= v <= 1 else "a number in [0, 1]"


def _open_unit(v: float) -> str | None:
    return None if 0 < v < 1 else "a number in (0, 1)"


def _all(check: Callable[[Any], str | None], what: str) -> Callable[[tuple[Any, ...]], str | None]:
    return lambda values: None if all(check(v) is None for v in values) else f"an array of {what}"


def _one_of(choices: Sequence[str]) -> Callable[[str], str | None]:
    return lambda v: None if v in choices else f"one of {list(choices)}"


def _name(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_.@+\-]+", v) else "a name of letters, digits and _ . @ + -"


def _read_behavior(r: _Reader) -> BehaviorConfig:
    head = r.take("head", "str", "softmax", _one_of(tuple(HEAD_PARAMETERS)))
    base = r.take("base", "str", "optimal", _name)
    values: dict[str, float | None] = {}
    for param, check in (("temperature", _positive), ("epsilon", _unit), ("sigma", _positive)):
        values[param] = r.take(param, "float", None, check)
    train_steps = r.take("train_steps", "int", None, _sized(1, "train_steps"))
    hidden = r.take("hidden", "int_list", None, _sizes(1, "hidden_units", "hidden_layers"))
    train = _read_train(r.table("train")) if r.has("train") else ()
    attempts = r.take("attempts", "int", 1, _sized(1, "attempts"))
    needed = HEAD_PARAMETERS[head]
    for param, value in values.items():
        if param != needed and value is not None:
            raise r.error(param, f"expected no {param} for head {head!r} (it takes {needed or 'no parameter'}), found {value!r}")
    if needed is not None and values[needed] is None:
        raise r.error(needed, f"expected a number (head {head!r} needs {needed}), found nothing")
    r.finish()
    return BehaviorConfig(head=head, base=base, train_steps=train_steps, hidden=hidden, train=train, attempts=attempts, **values)


def _read_train(r: _Reader) -> tuple[tuple[str, int | float], ...]:
    r.expect(tuple(TRAIN_KEYS))
    checks: dict[str, Callable[[Any], str | None]] = {
        "learning_rate": _positive,
        "explore_fraction": _unit,
        "final_epsilon": _unit,
    }
    out = []
    for key in sorted(r.data):
        kind = TRAIN_KEYS[key]
        out.append((key, r.take(key, kind, ..., checks.get(key, _sized(1, "train_steps")))))
    r.finish()
    return tuple(out)


def _read_candidates(r: _Reader) -> CandidateConfig:
    default = CandidateConfig()
    unit_numbers, positive = "numbers in [0, 1]", "positive numbers"
    out = CandidateConfig(
        family=r.take("family", "str", default.family, _name),
        epsilons=r.take("epsilons", "float_list", default.epsilons, _at_most("candidates", _all(_unit, unit_numbers))),
        temperatures=r.take("temperatures", "float_list", default.temperatures, _at_most("candidates", _all(_positive, positive))),
        include_uniform=r.take("include_uniform", "bool", default.include_uniform),
        adversarial_epsilons=r.take(
            "adversarial_epsilons", "float_list", default.adversarial_epsilons, _at_most("candidates", _all(_unit, unit_numbers))
        ),
        n_sampled=r.take("n_sampled", "int", None, _sized(1, "candidates")),
        algorithms=r.take("algorithms", "str_list", default.algorithms, _at_most("candidates")),
        hidden_sizes=r.take("hidden_sizes", "int_lists", default.hidden_sizes, _at_most("candidates", _hidden_sizes)),
        head=r.take("head", "str", None, _name),
        sigmas=r.take("sigmas", "float_list", default.sigmas, _at_most("candidates", _all(_positive, positive))),
        n_steps=r.take("n_steps", "int", default.n_steps, _sized(1, "train_steps")),
        train_trajectories=r.take("train_trajectories", "int", None, _sized(2, "n_trajectories")),
        trajectory_weighting=r.take("trajectory_weighting", "str", None, _one_of(("return",))),
    )
    r.finish()
    if out.family == "heads" and out.n_generated > LIMITS["candidates"]:
        raise r.error(None, f"expected at most {LIMITS['candidates']} generated candidates, found {out.n_generated}")
    if out.family == "offline":  # algorithms × sizes × noise levels (an upper bound: the head picks one list)
        levels = max(len(out.epsilons), len(out.temperatures), len(out.sigmas) or 4)
        generated = max(len(out.algorithms), 2) * len(out.hidden_sizes) * levels
        if generated > LIMITS["candidates"]:
            raise r.error(
                None, f"expected at most {LIMITS['candidates']} candidates (algorithms × hidden_sizes × noise levels), found up to {generated}"
            )
    if out.family == "heads":
        if out.n_generated < 1:
            raise r.error(None, "expected at least one candidate, found empty epsilons, temperatures and adversarial_epsilons without uniform")
        if out.n_sampled is not None and out.n_sampled > out.n_generated:
            raise r.error("n_sampled", f"expected at most the {out.n_generated} generated candidates, found {out.n_sampled}")
    return out


def _read_inputs(r: _Reader, default: InputsConfig) -> InputsConfig:
    """An ``[inputs]`` table; keys it leaves out keep ``default``'s values (a task's table overrides the
    config's)."""
    out = InputsConfig(
        weights=r.take("weights", "str", default.weights, _name),
        n_folds=r.take("n_folds", "int", default.n_folds, _sized(1, "n_folds")),
        q_function=r.take("q_function", "str", default.q_function, _one_of(("auto", "fqe", "neural_fqe", "mql"))),
        fqe_steps=r.take("fqe_steps", "int", default.fqe_steps, _sized(1, "fqe_steps")),
        fqe_iterations=r.take("fqe_iterations", "int", default.fqe_iterations, _sized(1, "fqe_iterations")),
        minimax_steps=r.take("minimax_steps", "int", default.minimax_steps, _sized(1, "train_steps")),
        minimax_features=r.take("minimax_features", "int", default.minimax_features, _sized(1, "minimax_features")),
        kernel=r.take("kernel", "str", default.kernel, _one_of(("gaussian", "epanechnikov", "triangular", "cosine", "uniform"))),
        bandwidth=r.take("bandwidth", "float", default.bandwidth, _positive),
    )
    r.finish()
    return out


def _read_estimator(item: Any, path: tuple[str | int, ...], text: str, source: str) -> EstimatorConfig:
    from opelab.ope.estimators import ESTIMATORS

    if isinstance(item, str):
        r = _Reader({"name": item}, path, text, source)
        name, label, options = item, item, {}
    elif isinstance(item, dict):
        r = _Reader(item, path, text, source)
        name = r.take("name", "str")
        label = r.take("label", "str", name, _name)
        opt = r.table("options")
        options = dict(opt.data)
        opt.used.update(options)
        r.finish()
    else:
        raise ConfigError(_path_text(path), f"expected an estimator name or a table, found {_show(item)}", source=source, line=locate(text, path))
    if name not in ESTIMATORS:
        raise r.error("name" if isinstance(item, dict) else None, f"expected a registered estimator, one of {sorted(ESTIMATORS)}, found {name!r}")
    cls = ESTIMATORS[name]
    accepted = [f.name for f in dataclasses.fields(cls) if f.init] if dataclasses.is_dataclass(cls) else []
    for key, value in options.items():
        if key not in accepted:
            raise r.error("options", f"expected options of {name} among {accepted or 'none'}, found {key!r}")
        if isinstance(value, (dict, list)):
            raise r.error("options", f"expected a number, string or boolean for option {key!r}, found {_show(value)}")
        if _as_int(value) is not _BAD and abs(value) > LIMITS["option"]:
            bound = LIMITS["option"]
            raise r.error("options", f"expected an integer in [-{bound}, {bound}] for option {key!r}, found {value!r}")
    try:
        cls(**options)
    except (TypeError, ValueError) as exc:
        raise r.error("options", f"expected options {name} accepts ({exc}), found {options!r}") from None
    return EstimatorConfig(name=name, label=label, options=tuple(sorted(options.items())))


def parse_config(text: str, *, source: str = "<config>", name: str | None = None) -> BenchmarkConfig:
    """Validate TOML ``text`` into a ``BenchmarkConfig`` (``source`` names the file in error messages)."""
    from opelab.bench.tasks import find_family

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError("", f"expected valid TOML, found a syntax error: {exc}", source=source, line=int(match.group(1)) if match else None) from None
    r = _Reader(data, (), text, source)
    r.expect(TOP_LEVEL_KEYS)
    imports = r.take("imports", "str_list", ())
    for i, module in enumerate(imports):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is a config error
            raise r.error("imports", f"expected importable modules, found {module!r} failing with {type(exc).__name__}: {exc}") from None
    config_name = r.take("name", "str", name or "benchmark", _name)
    seed = r.take("seed", "int", 0, _sized(0, "seed"))
    n_datasets = r.take("n_datasets", "int", 1, _sized(1, "n_datasets"))
    default_n = r.take("n_trajectories", "int", 1000, _sized(2, "n_trajectories"))
    ks = r.take("ks", "int_list", None, _sizes(1, "ks"))
    if ks is not None and (len(ks) == 0 or len(set(ks)) != len(ks)):
        raise r.error("ks", f"expected a non-empty array of distinct integers, found {list(ks)!r}")
    ties = r.take("ties", "str", "average")
    if ties not in ("first", "last", "average"):
        raise r.error("ties", f"expected 'first', 'last' or 'average' (how tied estimates order the top-k), found {ties!r}")
    threshold = r.take("safety_threshold", "float", None)
    rollouts = r.take("ground_truth_rollouts", "int", 100, _sized(2, "ground_truth_rollouts"))  # 2: a standard error

    ir = r.table("intervals")
    method = ir.take("method", "str", None)
    intervals = IntervalConfig(
        method=None if method in (None, "none") else method,
        alpha=ir.take("alpha", "float", 0.05, _open_unit),
        n_bootstrap=ir.take("n_bootstrap", "int", 200, _sized(2, "n_bootstrap")),
    )
    if intervals.method is not None:
        from opelab.ope.intervals import INTERVAL_METHODS

        if intervals.method not in INTERVAL_METHODS:
            raise ir.error("method", f"expected one of {['none', *INTERVAL_METHODS]}, found {method!r}")
    ir.finish()

    inputs = _read_inputs(r.table("inputs"), InputsConfig())

    er = r.table("executor")
    executor = ExecutorConfig(
        kind=er.take("kind", "str", "local", _one_of(EXECUTORS)),
        workers=er.take("workers", "int", 1, _sized(1, "workers")),
        retries=er.take("retries", "int", 1, _sized(0, "retries")),
        address=er.take("address", "str", None),
        steal=er.take("steal", "bool", True),
    )
    er.finish()

    raw_estimators = r.raw("estimators", [])
    if not isinstance(raw_estimators, list):
        raise r.error("estimators", f"expected an array of estimator names or tables, found {_show(raw_estimators)}")
    estimators = tuple(_read_estimator(item, ("estimators", i), text, source) for i, item in enumerate(raw_estimators))
    labels = [e.label for e in estimators]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise r.error("estimators", f"expected distinct labels (add label = ... to tell options apart), found {label!r} twice")

    raw_tasks = r.raw("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise r.error("tasks", f"expected a non-empty array of tables ([[tasks]]), found {'nothing' if raw_tasks is None else _show(raw_tasks)}")
    if len(raw_tasks) > LIMITS["tasks"]:
        raise r.error("tasks", f"expected at most {LIMITS['tasks']} tasks, found {len(raw_tasks)}")
    if len(raw_tasks) * n_datasets > LIMITS["cells"]:  # before any task is read: the grid is too large anyway
        most = LIMITS["cells"] // len(raw_tasks)
        raise r.error(
            "n_datasets",
            f"expected an integer in [1, {most}] (at most {LIMITS['cells']} cells = {len(raw_tasks)} task(s) × n_datasets), found {n_datasets}",
        )
    tasks = []
    for i, item in enumerate(raw_tasks):
        if not isinstance(item, dict):
            raise r.error("tasks", f"expected a table per task ([[tasks]]), found {_show(item)}")
        tr = _Reader(item, ("tasks", i), text, source)
        tr.expect(TASK_KEYS)
        task_name = tr.take("name", "str")
        family = find_family(task_name)
        if family is None:
            from opelab.bench.tasks import known_task_names

            raise tr.error("name", f"expected a registered task, one of {known_task_names()}, found {task_name!r}")
        task_id = tr.take("id", "str", task_name, _name)
        n: int = tr.take("n_trajectories", "int", default_n, _sized(2, "n_trajectories"))
        horizon = tr.take("horizon", "int", None, _sized(1, "horizon"))
        task = TaskConfig(
            id=task_id,
            name=task_name,
            behavior=_read_behavior(tr.table("behavior")) if tr.has("behavior") else DEFAULT_BEHAVIOR,
            candidates=_read_candidates(tr.table("candidates")),
            n_trajectories=n,
            horizon=horizon,
            inputs=_read_inputs(tr.table("inputs"), inputs) if tr.has("inputs") else None,
        )
        tr.finish()
        if task_id in [t.id for t in tasks]:
            raise tr.error("id", f"expected distinct task ids (set id = ... to run a task twice), found {task_id!r} twice")
        for key, message in family.check(task, task.inputs or inputs):
            head, *rest = key.split(".")
            overridden = task.inputs is not None and rest and rest[0] in item.get("inputs", {})
            target = ("tasks", i, *key.split(".")) if head != "inputs" or overridden else ("inputs", *rest)
            raise ConfigError(_path_text(target), message, source=source, line=locate(text, target))
        n_candidates = family.n_candidates(task)
        if ks is not None and n_candidates is not None and max(ks) > n_candidates:
            raise r.error("ks", f"expected values <= {n_candidates}, the number of candidates of task {task_id!r}, found {max(ks)}")
        tasks.append(task)
    r.finish()
    return BenchmarkConfig(
        name=config_name,
        seed=seed,
        n_datasets=n_datasets,
        tasks=tuple(tasks),
        estimators=estimators,
        intervals=intervals,
        inputs=inputs,
        executor=executor,
        ks=ks,
        ties=ties,
        safety_threshold=threshold,
        ground_truth_rollouts=rollouts,
        imports=imports,
        text=text,
        source=source,
    )


def load_config(path: str | os.PathLike[str]) -> BenchmarkConfig:
    """Read and validate a benchmark config file; its name defaults to the file's stem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"expected a readable TOML file, found {exc.strerror or exc}", source=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"expected a UTF-8 text (TOML) file, found undecodable bytes at offset {exc.start}", source=str(p)) from None
    return parse_config(text, source=p.name, name=p.stem)
