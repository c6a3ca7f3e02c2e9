"""Benchmark tasks without an exact model: gymnasium, MuJoCo and the synthetic industry tasks.

The design of the SharpeRatio@k paper's benchmark (Kiyohara et al., 2024, §5): a base policy trained
online (DoubleDQN for discrete actions, SAC for continuous ones; ``opelab.learn.train_online``) under a
noisy head logs the data; candidates are learned offline from a dataset of that behavior policy
(``opelab.learn.candidate_policies``: algorithms × network sizes × noise levels, optionally a sample);
ground truth is the on-policy value from ``ground_truth_rollouts`` batched rollouts, with its standard
error (``opelab.envs.rollouts``); Q̂ comes from neural FQE and, for continuous actions, the importance
ratios from kernel smoothing (``opelab.ope.build_continuous_inputs``).

Everything a task trains (the behavior base, the candidates) and its ground truth are computed once per
process and task, from seeds derived from the config seed and the task id, so every cell of a task sees
the same policies on every executor (d3rlpy training is seeded and runs single-threaded). The local
executor sends every cell of a task to the same worker (task affinity, ``opelab.bench.executors``), so a
run trains each task once, except when there are fewer tasks than workers: then a task's cells may be
split over several workers, and each trains it. Ray tasks land on any worker and train a task once per
worker that gets one of its cells.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from opelab.bench.tasks import GroundTruth, TaskFamily, TaskShape, register_task_family

if TYPE_CHECKING:
    from opelab.bench.config import InputsConfig, TaskConfig
    from opelab.data import LoggedDataset
    from opelab.ope import OPEInput

ONLINE_BASES = {"discrete": "double_dqn", "continuous": "sac"}
HEADS = {"discrete": ("softmax", "epsilon_greedy", "uniform"), "continuous": ("gaussian",)}
CANDIDATE_HEADS = {"discrete": ("epsilon_greedy", "softmax"), "continuous": ("gaussian", "truncated_gaussian")}
D3RLPY_OPTIONS = ("learning_rate", "batch_size", "target_update_interval")  # of a behavior's train table
DQN_ONLY = frozenset({"learning_rate", "target_update_interval", "explore_fraction", "final_epsilon"})  # SAC has none
BATCH_SIZES = {"discrete": 64, "continuous": 256}  # DoubleDQN's (opelab.learn.DISCRETE_DEFAULTS), SAC's (d3rlpy's)
DEFAULT_TRAIN_STEPS = 20_000
_CACHE: dict[Any, Any] = {}  # (what, task config, seed) -> trained policies / ground truth, per process


def _seed(seed: int, task_id: str, what: str) -> int:
    digest = hashlib.sha256(f"{task_id}/{what}".encode()).digest()
    sequence = np.random.SeedSequence(seed, spawn_key=(int.from_bytes(digest[:8], "little"),))
    return int(sequence.generate_state(1, np.uint32)[0])


class BehaviorTrainingError(RuntimeError):
    """No attempt gave a behavior that beats the uniform policy (``behavior.attempts``)."""


@dataclass(frozen=True)
class LearnedTask:
    """A task whose behavior and candidates are learned (see the module docstring)."""

    name: str
    config: TaskConfig
    inputs: InputsConfig
    ground_truth_rollouts: int
    seed: int

    @property
    def task(self) -> Any:
        from opelab.envs import make

        key = ("task", self.config.name, self.config.horizon)
        if key not in _CACHE:
            _CACHE[key] = make(self.config.name) if self.config.horizon is None else make(self.config.name, horizon=self.config.horizon)
        return _CACHE[key]

    def _key(self, what: str) -> tuple:
        return (what, self.config, self.seed, self.ground_truth_rollouts)  # rollouts: the truth, and attempts' checks

    def behavior_policy(self) -> Any:
        key = self._key("behavior")
        if isinstance(_CACHE.get(key), BehaviorTrainingError):  # a retry, or the task's next cell: fail at once
            raise BehaviorTrainingError(str(_CACHE[key]))
        if key in _CACHE:
            return _CACHE[key]
        from opelab.policies import UniformPolicy

        b = self.config.behavior
        label = f"behavior({b.describe()})"
        if b.head == "uniform":
            policy = UniformPolicy(self.task.action_space.n_actions, name=label)
        elif b.attempts == 1:
            policy = self._behavior_head(self._train_base(0), label)
        else:
            try:
                policy = self._first_that_beats_uniform(label)
            except BehaviorTrainingError as exc:
                _CACHE[key] = exc
                raise
        _CACHE[key] = policy
        return policy

    def _train_base(self, attempt: int) -> Any:
        from opelab.learn import train_online

        b = self.config.behavior
        schedule = dict(b.train)
        options = {k: schedule.pop(k) for k in D3RLPY_OPTIONS if k in schedule}
        seed = _seed(self.seed, self.config.id, "behavior" if attempt == 0 else f"behavior attempt {attempt}")
        return train_online(
            self.task, b.base, n_steps=b.train_steps or DEFAULT_TRAIN_STEPS, seed=seed, hidden=b.hidden or (64, 64),
            options=options or None, **schedule,
        )  # fmt: skip

    def _behavior_head(self, base: Any, label: str) -> Any:
        from opelab.learn.candidates import LearnedGreedyPolicy
        from opelab.policies import EpsilonGreedyPolicy, GaussianPolicy, SoftmaxPolicy

        b = self.config.behavior
        if b.head == "softmax":
            return SoftmaxPolicy(base, b.temperature, name=label)
        if b.head == "epsilon_greedy":
            return EpsilonGreedyPolicy(LearnedGreedyPolicy(base), b.epsilon, name=label)
        space = self.task.action_space
        return GaussianPolicy(base, b.sigma, low=space.low, high=space.high, name=label)

    def _first_that_beats_uniform(self, label: str) -> Any:
        """Train bases from ``attempts`` seeds until the behavior's value beats the uniform policy's by more
        than two standard errors (``ground_truth_rollouts`` episodes each); if none does, the task fails with
        ``BehaviorTrainingError`` (its cells would only measure a degenerate task).

        DoubleDQN on sparse-reward tasks learns or not by its seed (MountainCar: the same schedule reaches the
        goal in every episode from one seed and never from another), and a behavior that never reaches the
        goal logs data no candidate can learn from. The attempt kept is in the policy's name."""
        from opelab.envs import rollout_values
        from opelab.policies import UniformPolicy

        attempts = self.config.behavior.attempts
        uniform = UniformPolicy(self.task.action_space.n_actions)
        tried = []
        for attempt in range(attempts):
            base = self._train_base(attempt)
            check = rollout_values(
                self.task, [self._behavior_head(base, label), uniform], n_episodes=self.ground_truth_rollouts,
                seed=_seed(self.seed, self.config.id, f"behavior check {attempt}"),
            )  # fmt: skip
            (value, floor), se = check.values, float(np.hypot(*check.standard_errors))
            if value - floor > 2 * se:
                return self._behavior_head(base, label if attempt == 0 else f"{label[:-1]}, attempt {attempt + 1} of {attempts})")
            tried.append(f"{value:.2f} ± {check.standard_errors[0]:.2f}")
        raise BehaviorTrainingError(
            f"behavior: expected a behavior whose value beats the uniform policy's ({floor:.2f}) by two standard errors, "
            f"found none in {attempts} attempts ({', '.join(tried)}); raise behavior.attempts or behavior.train_steps, "
            "or change behavior.train"
        )

    def candidates(self, rng: np.random.Generator) -> Sequence[Any]:
        key = self._key("candidates")
        if key in _CACHE:
            return _CACHE[key]
        from opelab.envs import collect
        from opelab.learn import candidate_policies

        c = self.config.candidates
        behavior = self.behavior_policy()
        train = collect(self.task, behavior, c.train_trajectories or self.config.n_trajectories, _seed(self.seed, self.config.id, "train data"))
        head = c.head or CANDIDATE_HEADS[self.task.action_space.type][0]
        levels = {"epsilon_greedy": c.epsilons, "softmax": c.temperatures}.get(head, c.sigmas or None)
        family = candidate_policies(
            train,
            algorithms=c.algorithms or None,
            hidden_sizes=c.hidden_sizes,
            head=head,
            noise_levels=levels,
            n_steps=c.n_steps,
            seed=_seed(self.seed, self.config.id, "candidates"),
            n_candidates=c.n_sampled,
            trajectory_weighting=c.trajectory_weighting,
        )
        _CACHE[key] = family
        return family

    def collect(self, behavior: Any, n_trajectories: int, seed: int) -> LoggedDataset:
        from opelab.envs import collect

        return collect(self.task, behavior, n_trajectories, seed)

    def ground_truth(self, behavior: Any, candidates: Sequence[Any], seed: int) -> GroundTruth:
        key = self._key("truth")
        if key not in _CACHE:  # the same truth for every dataset of the task (its own seed, not the cell's)
            from opelab.envs.rollouts import rollout_values

            values = rollout_values(
                self.task, [*candidates, behavior], n_episodes=self.ground_truth_rollouts, seed=_seed(self.seed, self.config.id, "truth")
            )  # fmt: skip
            _CACHE[key] = GroundTruth(values=values.values[:-1], se=values.standard_errors[:-1], behavior_value=float(values.values[-1]))
        return _CACHE[key]

    def build_inputs(self, dataset: LoggedDataset, candidates: Sequence[Any], truth: GroundTruth, seed: int) -> OPEInput:
        from opelab.ope import FQEConfig, MinimaxConfig
        from opelab.pipeline import learned_inputs

        i = self.inputs
        return learned_inputs(
            dataset,
            candidates,
            q_function="neural_fqe" if i.q_function == "auto" else i.q_function,
            fqe=FQEConfig(n_steps=i.fqe_steps, n_iterations=i.fqe_iterations, seed=seed % 2**31),
            kernel=i.kernel,
            bandwidth=i.bandwidth,
            seed=seed,
            weights=None if i.weights in ("auto", "none") else i.weights,
            minimax=MinimaxConfig(n_steps=i.minimax_steps, n_features=i.minimax_features, seed=seed % 2**31),
            n_folds=i.n_folds,
            ground_truth=truth.values,
            ground_truth_se=truth.se,
        )


class LearnedFamily(TaskFamily):
    """Every registered task that is not tabular (``opelab.envs.REGISTRY``)."""

    def names(self) -> tuple[str, ...]:
        from opelab.envs import REGISTRY

        return tuple(name for name, spec in REGISTRY.items() if spec.kind != "tabular")

    def check(self, task: TaskConfig, inputs: InputsConfig) -> list[tuple[str, str]]:
        from opelab.envs import REGISTRY

        action_type = REGISTRY[task.name].action_type
        problems = []
        b, c = task.behavior, task.candidates
        if b.head not in HEADS[action_type]:
            problems.append(("behavior.head", f"expected one of {list(HEADS[action_type])} for {action_type}-action task {task.name!r}, found {b.head!r}"))
        if b.head != "uniform" and b.base != ONLINE_BASES[action_type]:
            problems.append(("behavior.base", f"expected {ONLINE_BASES[action_type]!r} (trained online) for task {task.name!r}, found {b.base!r}"))
        train = dict(b.train)
        dqn_only = sorted(DQN_ONLY & train.keys())
        if train and b.head == "uniform":
            problems.append(("behavior.train", f"expected nothing for a uniform behavior (nothing is trained), found {train}"))
        elif dqn_only and action_type == "continuous":
            problems.append(("behavior.train", f"expected no {', '.join(dqn_only)} for SAC (DoubleDQN's rate, ε schedule and target copies), found {train}"))
        elif b.head != "uniform":
            batch = train.get("batch_size", BATCH_SIZES[action_type])
            buffer = train.get("buffer_size", b.train_steps or DEFAULT_TRAIN_STEPS)
            if buffer <= batch:  # d3rlpy updates only once its buffer holds more than a batch
                key = "behavior.train.buffer_size" if "buffer_size" in train else "behavior.train_steps"
                problems.append((key, f"expected more than the batch size ({batch}; the replay buffer must hold a batch), found {buffer}"))
        if b.attempts > 1 and (b.head == "uniform" or action_type == "continuous"):
            what = "a uniform behavior" if b.head == "uniform" else "a continuous-action task"
            problems.append(("behavior.attempts", f"expected 1 for {what} (attempts are checked against the uniform discrete policy), found {b.attempts}"))
        if c.family != "offline":
            problems.append(("candidates.family", f"expected 'offline' (learned from data) for task {task.name!r}, found {c.family!r}"))
        if c.head is not None and c.head not in CANDIDATE_HEADS[action_type]:
            problems.append(("candidates.head", f"expected one of {list(CANDIDATE_HEADS[action_type])} for task {task.name!r}, found {c.head!r}"))
        if action_type == "discrete" and (c.head or "epsilon_greedy") == "softmax" and not c.temperatures:
            problems.append(("candidates.temperatures", "expected softmax temperatures for the candidates' softmax head, found none"))
        if inputs.weights not in ("auto", "none", "dualdice", "gendice", "bestdice", "mwl"):
            problems.append(("inputs.weights", f"expected 'auto', 'none' or a DICE setting for task {task.name!r}, found {inputs.weights!r}"))
        if inputs.q_function == "fqe":
            problems.append(("inputs.q_function", f"expected 'auto', 'neural_fqe' or 'mql' for task {task.name!r} (no state ids for tabular FQE), found 'fqe'"))
        return problems

    def n_candidates(self, task: TaskConfig) -> int | None:
        c = task.candidates
        if c.n_sampled is not None:
            return c.n_sampled
        return None

    def shape(self, task: TaskConfig) -> TaskShape | None:
        """Sizes from the task itself (``make``: cheap, nothing trained); None when it cannot be built here
        (e.g. MuJoCo missing on the driver)."""
        from opelab.envs import make
        from opelab.learn.candidates import DEFAULT_ALGORITHMS, DEFAULT_SIGMA_FRACTIONS

        try:
            env = make(task.name) if task.horizon is None else make(task.name, horizon=task.horizon)
        except Exception:  # noqa: BLE001 - no estimate rather than no benchmark
            return None
        space, c = env.action_space, task.candidates
        if c.n_sampled is not None:
            n_policies = c.n_sampled
        else:
            head = c.head or CANDIDATE_HEADS[space.type][0]
            levels = {"epsilon_greedy": c.epsilons, "softmax": c.temperatures}.get(head, c.sigmas)  # as candidates() passes them
            levels = levels or DEFAULT_SIGMA_FRACTIONS  # none given: the learner's defaults (four levels)
            n_policies = len(c.algorithms or DEFAULT_ALGORITHMS[space.type]) * len(c.hidden_sizes) * len(levels)
        return TaskShape(
            horizon=int(env.horizon),
            n_policies=max(n_policies, 1),
            n_actions=space.n_actions if space.is_discrete else None,
            action_dim=1 if space.is_discrete else int(space.action_dim),
            obs_size=int(np.prod(getattr(env, "obs_shape", ()) or (1,))),
            learned=True,
        )

    def create(self, task: TaskConfig, inputs: InputsConfig, ground_truth_rollouts: int, seed: int = 0) -> LearnedTask:
        return LearnedTask(name=task.name, config=task, inputs=inputs, ground_truth_rollouts=ground_truth_rollouts, seed=seed)


register_task_family(LearnedFamily())
