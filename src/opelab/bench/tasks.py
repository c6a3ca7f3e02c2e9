"""Benchmark tasks: what the runner needs from a task, and the registry of task families.

The runner never names a task. It asks the family that knows a task name (``find_family``) for a
``BenchTask``: the behavior policy, the candidates, data collection, ground truth and the estimators'
inputs. A new kind of task (gymnasium control, say) plugs in by registering a ``TaskFamily``::

    register_task_family(MyFamily())

from a module the package imports (or one listed in a config's ``imports``). The family validates the
task's config section (``check``), so a config error names the key and its line before anything runs.

``TabularFamily`` serves the tabular tasks of ``opelab.envs.TASKS``: behavior and candidates are heads
over the task's exact optimal Q-function, ground truth is exact (dynamic programming, standard error 0).
``BanditFamily`` serves the synthetic bandits of ``opelab.envs.BANDIT_TASKS`` and slates of
``opelab.envs.SLATE_TASKS`` the same way: heads over the true reward scores, exact truth (finite sums).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from opelab.bench.config import InputsConfig, TaskConfig
    from opelab.data import LoggedDataset
    from opelab.ope import OPEInput
    from opelab.policies import Policy

__all__ = [
    "TASK_FAMILIES",
    "BanditFamily",
    "BenchTask",
    "GroundTruth",
    "TabularFamily",
    "TaskFamily",
    "TaskShape",
    "find_family",
    "known_task_names",
    "register_task_family",
]


def _learned_fields(task: TaskConfig) -> tuple[tuple[str, Any], ...]:
    """The behavior fields that only a trained base reads (None where unset)."""
    b = task.behavior
    return (
        ("behavior.train_steps", b.train_steps), ("behavior.hidden", b.hidden), ("behavior.train", dict(b.train) or None),
        ("behavior.attempts", None if b.attempts == 1 else b.attempts),
    )  # fmt: skip


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """True values of the candidates ``values (P,)`` with standard errors ``se (P,)`` (0 when exact) and
    the behavior policy's true value."""

    values: np.ndarray  # (P,)
    se: np.ndarray  # (P,)
    behavior_value: float


@dataclass(frozen=True)
class TaskShape:
    """The sizes that set a cell's memory, known before anything runs (``opelab.bench.runner.cell_memory``):
    the horizon, the candidates, the actions (``n_actions`` for discrete ones, None for continuous ones of
    ``action_dim`` values), the values of one observation, the states of a tabular task, and whether the
    task trains networks (torch)."""

    horizon: int
    n_policies: int
    n_actions: int | None
    action_dim: int = 1
    obs_size: int = 1
    n_states: int = 0  # tabular tasks: the tables of tabular FQE and flow weights are (P, H, S, A)
    learned: bool = False


class BenchTask(Protocol):
    """One configured task, ready to run cells. Every method is deterministic given its seed."""

    name: str

    def behavior_policy(self) -> Policy: ...

    def candidates(self, rng: np.random.Generator) -> Sequence[Policy]:
        """The candidate policies (``rng`` draws any sampled subset; the same for every dataset of a task)."""

    def collect(self, behavior: Policy, n_trajectories: int, seed: int) -> LoggedDataset: ...

    def ground_truth(self, behavior: Policy, candidates: Sequence[Policy], seed: int) -> GroundTruth: ...

    def build_inputs(
        self, dataset: LoggedDataset, candidates: Sequence[Policy], truth: GroundTruth, seed: int
    ) -> OPEInput: ...


class TaskFamily(ABC):
    """A kind of task. ``names()`` lists the task names it serves; ``create`` builds a ``BenchTask``."""

    @abstractmethod
    def names(self) -> tuple[str, ...]: ...

    def check(self, task: TaskConfig, inputs: InputsConfig) -> list[tuple[str, str]]:
        """Problems with a task's config as (key path below the task, or ``inputs.<key>``; message)."""
        return []

    def n_candidates(self, task: TaskConfig) -> int | None:
        """How many candidates the task will have, when known before running (checks ``ks``)."""
        return None

    def shape(self, task: TaskConfig) -> TaskShape | None:
        """The task's sizes for a memory estimate before running (None: unknown, no estimate)."""
        return None

    @abstractmethod
    def create(self, task: TaskConfig, inputs: InputsConfig, ground_truth_rollouts: int, seed: int = 0) -> BenchTask:
        """The task ready to run cells; ``seed`` is the config seed (for what the task trains once)."""


TASK_FAMILIES: list[TaskFamily] = []


def register_task_family(family: TaskFamily) -> TaskFamily:
    """Add a family; its task names must not be served by another family already."""
    taken = set(known_task_names())
    clash = sorted(taken.intersection(family.names()))
    if clash:
        raise ValueError(f"task names: expected names no family serves yet, found {clash} already registered")
    TASK_FAMILIES.append(family)
    return family


def find_family(name: str) -> TaskFamily | None:
    """The family serving task ``name``, or None."""
    return next((family for family in TASK_FAMILIES if name in family.names()), None)


def known_task_names() -> list[str]:
    return sorted(name for family in TASK_FAMILIES for name in family.names())


# --------------------------------------------------------------------------- #
# tabular tasks
# --------------------------------------------------------------------------- #
@lru_cache(maxsize=16)
def _tabular(name: str):  # type: ignore[no-untyped-def]
    """The task and its optimal Q-function, once per process (a cell needs both, every cell the same)."""
    from opelab.envs import make
    from opelab.policies import TabularQ

    task = make(name)
    return task, TabularQ(task.optimal_q())


@dataclass(frozen=True)
class TabularTask:
    """A tabular task of ``opelab.envs``: heads over Q*, exact truth, tabular FQE and marginal weights."""

    name: str
    config: TaskConfig
    inputs: InputsConfig

    def behavior_policy(self) -> Policy:
        from opelab.policies import EpsilonGreedyPolicy, GreedyPolicy, SoftmaxPolicy, UniformPolicy

        _, q_star = _tabular(self.name)
        b = self.config.behavior
        label = f"behavior({b.describe()})"
        if b.head == "softmax":
            return SoftmaxPolicy(q_star, b.temperature, name=label)
        if b.head == "epsilon_greedy":
            return EpsilonGreedyPolicy(GreedyPolicy(q_star), b.epsilon, name=label)
        return UniformPolicy(q_star.n_actions, name=label)

    def candidates(self, rng: np.random.Generator) -> Sequence[Policy]:
        from opelab.policies import candidate_family

        _, q_star = _tabular(self.name)
        c = self.config.candidates
        family = candidate_family(
            q_star,
            epsilons=c.epsilons,
            temperatures=c.temperatures,
            include_uniform=c.include_uniform,
            adversarial_epsilons=c.adversarial_epsilons,
        )
        if c.n_sampled is None:
            return family
        chosen = np.sort(rng.choice(len(family), size=c.n_sampled, replace=False))
        return [family[i] for i in chosen]

    def collect(self, behavior: Policy, n_trajectories: int, seed: int) -> LoggedDataset:
        from opelab.envs import collect

        return collect(_tabular(self.name)[0], behavior, n_trajectories, seed)

    def ground_truth(self, behavior: Policy, candidates: Sequence[Policy], seed: int) -> GroundTruth:
        mdp = _tabular(self.name)[0]
        values = mdp.policy_values(candidates)
        return GroundTruth(values=values, se=np.zeros_like(values), behavior_value=float(mdp.policy_value(behavior)))

    def build_inputs(self, dataset: LoggedDataset, candidates: Sequence[Policy], truth: GroundTruth, seed: int) -> OPEInput:
        from opelab.ope import build_inputs

        return build_inputs(
            dataset,
            candidates,
            q_function=self.inputs.q_function,
            weights=None if self.inputs.weights == "none" else self.inputs.weights,
            n_folds=self.inputs.n_folds,
            fold_seed=seed,
            ground_truth=truth.values,
            ground_truth_se=truth.se,
        )


class TabularFamily(TaskFamily):
    """The tabular tasks of ``opelab.envs.TASKS`` (names read at call time, so new ones join)."""

    HEADS = ("softmax", "epsilon_greedy", "uniform")

    def names(self) -> tuple[str, ...]:
        from opelab.envs import TASKS

        return tuple(TASKS)

    def check(self, task: TaskConfig, inputs: InputsConfig) -> list[tuple[str, str]]:
        problems = []
        if task.behavior.head not in self.HEADS:
            problems.append(("behavior.head", f"expected one of {list(self.HEADS)} for tabular task {task.name!r}, found {task.behavior.head!r}"))
        if task.behavior.base != "optimal":
            problems.append(("behavior.base", f"expected 'optimal' (the task's exact Q*) for a tabular task, found {task.behavior.base!r}"))
        if task.candidates.family != "heads":
            problems.append(("candidates.family", f"expected 'heads' for a tabular task, found {task.candidates.family!r}"))
        for key, value in (("horizon", task.horizon), *_learned_fields(task)):
            if value is not None:
                problems.append((key, f"expected nothing for tabular task {task.name!r} (its model fixes it), found {value!r}"))
        if inputs.weights not in ("auto", "tabular", "none"):
            problems.append(("inputs.weights", f"expected 'auto', 'tabular' or 'none' for tabular tasks, found {inputs.weights!r}"))
        if inputs.n_folds > task.n_trajectories:
            problems.append(("inputs.n_folds", f"expected at most n_trajectories = {task.n_trajectories} of task {task.id!r}, found {inputs.n_folds}"))
        return problems

    def n_candidates(self, task: TaskConfig) -> int | None:
        c = task.candidates
        return c.n_sampled if c.n_sampled is not None else c.n_generated

    def shape(self, task: TaskConfig) -> TaskShape | None:
        mdp = _tabular(task.name)[0]
        n_policies = self.n_candidates(task) or 1
        return TaskShape(horizon=mdp.horizon, n_policies=n_policies, n_actions=mdp.n_actions, n_states=mdp.n_states)

    def create(self, task: TaskConfig, inputs: InputsConfig, ground_truth_rollouts: int, seed: int = 0) -> BenchTask:
        return TabularTask(name=task.name, config=task, inputs=inputs)


register_task_family(TabularFamily())


# --------------------------------------------------------------------------- #
# synthetic bandits and slates
# --------------------------------------------------------------------------- #
@lru_cache(maxsize=16)
def _bandit(name: str):  # type: ignore[no-untyped-def]
    """The task, once per process (its contexts and scores are drawn from its fixed seed)."""
    from opelab.envs import make

    return make(name)


def _is_slate(name: str) -> bool:
    from opelab.envs import SLATE_TASKS

    return name in SLATE_TASKS


@dataclass(frozen=True)
class BanditTask:
    """A synthetic bandit or slate of ``opelab.envs.bandit``: heads over the true reward scores f(x, a), exact
    truth, and the reward model of ``inputs.q_function``: ``auto`` a per-action ridge regression on the
    logged data, ``fqe`` the tabular cell means (tabular FQE at horizon 1). Slates use the true reward-to-go
    (``slate_inputs(q_model="true")``)."""

    name: str
    config: TaskConfig
    inputs: InputsConfig

    def behavior_policy(self) -> Policy:
        from opelab.policies import EpsilonGreedyPolicy, GreedyPolicy, UniformPolicy

        task = _bandit(self.name)
        b = self.config.behavior
        label = f"behavior({b.describe()})"
        if b.head == "softmax":
            return task.behavior_policy(beta=1.0 / b.temperature, name=label)
        if _is_slate(self.name):  # uniform rankings: Plackett–Luce with β = 0
            return task.behavior_policy(beta=0.0, name=label)
        if b.head == "epsilon_greedy":
            return EpsilonGreedyPolicy(GreedyPolicy(task.score_values), b.epsilon, name=label)
        return UniformPolicy(task.n_actions, name=label)

    def candidates(self, rng: np.random.Generator) -> Sequence[Policy]:
        task = _bandit(self.name)
        c = self.config.candidates
        if _is_slate(self.name):  # Plackett–Luce at the temperatures, and uniform rankings
            family = task.candidates(temperatures=c.temperatures, adversarial=(), include_uniform=c.include_uniform)
        else:
            family = task.candidates(
                epsilons=c.epsilons, temperatures=c.temperatures, include_uniform=c.include_uniform,
                adversarial_epsilons=c.adversarial_epsilons,
            )  # fmt: skip
        if c.n_sampled is None:
            return family
        chosen = np.sort(rng.choice(len(family), size=c.n_sampled, replace=False))
        return [family[i] for i in chosen]

    def collect(self, behavior: Policy, n_trajectories: int, seed: int) -> LoggedDataset:
        return _bandit(self.name).collect(behavior, n_trajectories, seed)

    def ground_truth(self, behavior: Policy, candidates: Sequence[Policy], seed: int) -> GroundTruth:
        task = _bandit(self.name)
        values = task.policy_values(candidates)
        return GroundTruth(values=values, se=np.zeros_like(values), behavior_value=float(task.policy_value(behavior)))

    def build_inputs(self, dataset: LoggedDataset, candidates: Sequence[Policy], truth: GroundTruth, seed: int) -> OPEInput:
        from opelab.envs import bandit_inputs, slate_inputs

        task = _bandit(self.name)
        if _is_slate(self.name):
            return slate_inputs(task, dataset, candidates, q_model="true", ground_truth=truth.values)
        q_model = "tabular" if self.inputs.q_function == "fqe" else "regression"
        return bandit_inputs(task, dataset, candidates, q_model=q_model, ground_truth=truth.values)


class BanditFamily(TaskFamily):
    """The synthetic bandits (``opelab.envs.BANDIT_TASKS``) and slates (``SLATE_TASKS``), exact truth.

    Heads over the true reward scores f(x, a) (``base = "optimal"``: greedy on f is optimal). Bandits take the
    tabular heads (softmax, epsilon_greedy, uniform) for the behavior and ``candidate_family`` for the
    candidates. Slates log with Plackett–Luce (softmax, or uniform); their candidates are Plackett–Luce at
    each of ``temperatures`` and uniform rankings, so a slate task's config sets ``epsilons = []`` and
    ``adversarial_epsilons = []`` (ε-mixtures are not Plackett–Luce rankings).
    """

    HEADS = ("softmax", "epsilon_greedy", "uniform")
    SLATE_HEADS = ("softmax", "uniform")

    def names(self) -> tuple[str, ...]:
        from opelab.envs import BANDIT_TASKS, SLATE_TASKS

        return (*BANDIT_TASKS, *SLATE_TASKS)

    def check(self, task: TaskConfig, inputs: InputsConfig) -> list[tuple[str, str]]:
        problems = []
        slate = _is_slate(task.name)
        heads = self.SLATE_HEADS if slate else self.HEADS
        if task.behavior.head not in heads:
            problems.append(("behavior.head", f"expected one of {list(heads)} for task {task.name!r}, found {task.behavior.head!r}"))
        if task.behavior.base != "optimal":
            problems.append(("behavior.base", f"expected 'optimal' (the task's true reward scores) for task {task.name!r}, found {task.behavior.base!r}"))
        if task.candidates.family != "heads":
            problems.append(("candidates.family", f"expected 'heads' for task {task.name!r}, found {task.candidates.family!r}"))
        for key in ("epsilons", "adversarial_epsilons"):
            values = getattr(task.candidates, key)
            if slate and values:
                problems.append((
                    f"candidates.{key}", f"expected [] for slate task {task.name!r} (its candidates are Plackett–Luce rankings at the "
                    f"temperatures, and uniform), found {list(values)}",
                ))  # fmt: skip
        for key, value in _learned_fields(task):
            if value is not None:
                problems.append((key, f"expected nothing for task {task.name!r} (its model fixes it), found {value!r}"))
        horizon = _bandit(task.name).horizon
        if task.horizon is not None and task.horizon != horizon:
            problems.append(("horizon", f"expected nothing or {horizon} for task {task.name!r}, found {task.horizon!r}"))
        if inputs.weights not in ("auto", "none"):
            problems.append(("inputs.weights", f"expected 'auto' or 'none' for task {task.name!r} (no marginal weights on bandits), found {inputs.weights!r}"))
        if inputs.q_function not in ("auto", "fqe"):
            problems.append(("inputs.q_function", f"expected 'auto' (ridge regression) or 'fqe' (tabular cell means) for task {task.name!r}, found {inputs.q_function!r}"))
        if inputs.n_folds != 1:
            problems.append(("inputs.n_folds", f"expected 1 for task {task.name!r} (its reward models are not cross-fitted), found {inputs.n_folds}"))
        return problems

    def n_candidates(self, task: TaskConfig) -> int | None:
        c = task.candidates
        if c.n_sampled is not None:
            return c.n_sampled
        return c.n_generated

    def shape(self, task: TaskConfig) -> TaskShape | None:
        bandit = _bandit(task.name)
        n_policies = self.n_candidates(task) or 1
        return TaskShape(horizon=bandit.horizon, n_policies=n_policies, n_actions=bandit.action_space.n_actions, obs_size=int(bandit.contexts.shape[1]))

    def create(self, task: TaskConfig, inputs: InputsConfig, ground_truth_rollouts: int, seed: int = 0) -> BenchTask:
        return BanditTask(name=task.name, config=task, inputs=inputs)


register_task_family(BanditFamily())
