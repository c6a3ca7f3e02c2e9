"""Candidate families from offline RL, as in the SharpeRatio@k paper (Kiyohara, Kishimoto, Nakata, Saito &
Kawaguchi, 2023, "Towards assessing and benchmarking risk-return tradeoff of off-policy evaluation", §5): base
policies from {algorithms} × {network sizes}, trained offline on the logged data, each wrapped in heads of
several noise levels; optionally a seeded sample of k of the combinations.

Heads (``head``, ``noise_levels``):

- discrete ``"epsilon_greedy"`` (default): (1 − ε) · greedy + ε · uniform, ε ∈ ``noise_levels`` (default
  0, 0.1, 0.3, 0.5; ε = 0 is the greedy policy). The greedy policy is the algorithm's own deterministic
  action ``base(obs)`` (for discrete BCQ the best action its imitator allows; else argmax Q̂). Name suffix
  ``_eps<ε>``.
- discrete ``"softmax"``: π(a | s) ∝ exp(Q̂(s, a) / τ), τ ∈ ``noise_levels`` (required: the scale of Q̂
  depends on the task's rewards). Suffix ``_softmax<τ>``.
- continuous ``"gaussian"`` (default): a = clip(μ(s) + σ ε, low, high), the clipped Gaussian of
  ``opelab.policies.continuous``, σ ∈ ``noise_levels`` in action units (a float or one per dimension;
  default 0.1, 0.25, 0.5 and 1 times the box's half-width (high − low) / 2). Suffix ``_gauss<σ>``.
- continuous ``"truncated_gaussian"``: N(μ(s), σ²) truncated to the box. Suffix ``_tgauss<σ>``.

Names read ``<algorithm>_<hidden>[_rw]_<head><level>``, e.g. ``discrete_cql_64x64_eps0.1`` or
``cql_32x32_rw_gauss0.5``; they are unique within a family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from opelab.data import LoggedDataset
from opelab.data.validation import DatasetError
from opelab.learn.algorithms import ALGORITHMS, check_hidden, get_algorithm
from opelab.learn.policy import LearnedPolicy
from opelab.learn.train import TrajectoryWeighting, train_offline
from opelab.learn.weighting import DEFAULT_TEMPERATURE
from opelab.policies import CategoricalPolicy, EpsilonGreedyPolicy, GaussianPolicy, SoftmaxPolicy
from opelab.policies.continuous import TruncatedGaussianPolicy

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEFAULT_HIDDEN_SIZES",
    "LearnedGreedyPolicy",
    "apply_heads",
    "candidate_policies",
]

Head = Literal["epsilon_greedy", "softmax", "gaussian", "truncated_gaussian"]
HEADS = {"discrete": ("epsilon_greedy", "softmax"), "continuous": ("gaussian", "truncated_gaussian")}
DEFAULT_ALGORITHMS = {"discrete": ("discrete_cql", "discrete_bcq"), "continuous": ("iql", "td3_plus_bc")}
"""Offline algorithms per action type when none are given (CQL and BCQ are slower: see benchmarks/learn.py)."""
DEFAULT_HIDDEN_SIZES = ((32, 32), (64, 64), (128, 128))
DEFAULT_EPSILONS = (0.0, 0.1, 0.3, 0.5)
DEFAULT_SIGMA_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


class LearnedGreedyPolicy(CategoricalPolicy):
    """The deterministic policy a ↦ ``base(obs)`` of a discrete ``LearnedPolicy``, as action probabilities."""

    def __init__(self, base: LearnedPolicy, name: str | None = None) -> None:
        if not base.is_discrete:
            raise ValueError(f"base: expected a discrete LearnedPolicy, found {base.name} ({base.action_space.type})")
        super().__init__(base.n_actions, name or base.name)
        self.base = base

    def action_probs(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        actions = self.base(observations)
        probs = np.zeros((len(actions), self.n_actions))
        probs[np.arange(len(actions)), actions] = 1.0
        return probs


def _format(level: float | Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in np.atleast_1d(np.asarray(level, dtype=np.float64)))


def _default_levels(head: str, base: LearnedPolicy) -> list[Any]:
    if head == "epsilon_greedy":
        return list(DEFAULT_EPSILONS)
    if head == "softmax":
        raise ValueError(
            "noise_levels: expected softmax temperatures (their scale depends on the task's Q-values), found None"
        )
    half = (np.asarray(base.action_space.high) - np.asarray(base.action_space.low)) / 2
    if np.all(half == half[0]):
        return [float(f * half[0]) for f in DEFAULT_SIGMA_FRACTIONS]
    return [f * half for f in DEFAULT_SIGMA_FRACTIONS]


def _check_head(head: str | None, action_type: str) -> str:
    if head is None:
        return HEADS[action_type][0]
    if head not in HEADS[action_type]:
        raise ValueError(f"head: expected one of {list(HEADS[action_type])} for {action_type} actions, found {head!r}")
    return head


def _head(base: LearnedPolicy, head: str, level: Any) -> Any:
    if head == "epsilon_greedy":
        return EpsilonGreedyPolicy(LearnedGreedyPolicy(base), float(level), name=f"{base.name}_eps{_format(level)}")
    if head == "softmax":
        return SoftmaxPolicy(base, float(level), name=f"{base.name}_softmax{_format(level)}")
    space = base.action_space
    if head == "gaussian":
        return GaussianPolicy(base, level, space.low, space.high, name=f"{base.name}_gauss{_format(level)}")
    if space.low is None or space.high is None:
        raise ValueError(
            f"head: 'truncated_gaussian' needs a bounded action box, found low={space.low}, high={space.high}"
        )
    return TruncatedGaussianPolicy(base, level, space.low, space.high, name=f"{base.name}_tgauss{_format(level)}")


def _check_unique(policies: Sequence[Any]) -> None:
    names = [p.name for p in policies]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"candidate names: expected unique names, found duplicates {duplicates}")


def apply_heads(
    bases: Sequence[LearnedPolicy],
    head: Head | None = None,
    noise_levels: Sequence[Any] | None = None,
) -> list[Any]:
    """Every base wrapped in ``head`` at every noise level, base by base (see the module docstring)."""
    if isinstance(bases, LearnedPolicy) or len(bases) == 0:
        raise ValueError("bases: expected a non-empty sequence of LearnedPolicy, found " + repr(bases))
    out = []
    for base in bases:
        kind = _check_head(head, base.action_space.type)
        levels = _default_levels(kind, base) if noise_levels is None else list(noise_levels)
        out.extend(_head(base, kind, level) for level in levels)
    _check_unique(out)
    return out


def candidate_policies(
    dataset: LoggedDataset,
    algorithms: Sequence[str] | None = None,
    hidden_sizes: Sequence[Sequence[int]] = DEFAULT_HIDDEN_SIZES,
    head: Head | None = None,
    noise_levels: Sequence[Any] | None = None,
    *,
    n_steps: int = 10_000,
    seed: int = 0,
    n_candidates: int | None = None,
    trajectory_weighting: TrajectoryWeighting = None,
    temperature: float = DEFAULT_TEMPERATURE,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Any]:
    """A candidate family trained offline on ``dataset`` (see the module docstring).

    The full family lists algorithms × hidden sizes × noise levels in that order. With ``n_candidates = k``,
    k combinations are drawn without replacement (``np.random.default_rng(seed)``), kept in listing order, and
    only the base policies they use are trained. Every base trains for ``n_steps`` gradient steps with
    ``seed``; ``options`` maps an algorithm name to d3rlpy config overrides for it.
    """
    if not isinstance(dataset, LoggedDataset):
        raise DatasetError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    action_type = dataset.action_space.type
    algorithms = DEFAULT_ALGORITHMS[action_type] if algorithms is None else tuple(algorithms)
    if isinstance(algorithms, str) or len(algorithms) == 0:
        raise ValueError(
            f"algorithms: expected a non-empty sequence of names from {list(ALGORITHMS)}, found {algorithms!r}"
        )
    for name in algorithms:
        get_algorithm(name, action_type)
    if len(set(algorithms)) != len(algorithms):
        raise ValueError(f"algorithms: expected distinct names, found {list(algorithms)}")
    sizes = [check_hidden(h) for h in hidden_sizes]
    if len(sizes) == 0 or len(set(sizes)) != len(sizes):
        raise ValueError(f"hidden_sizes: expected distinct, non-empty layer sizes, found {list(hidden_sizes)}")
    head = _check_head(head, action_type)
    options = dict(options or {})
    unknown = sorted(set(options) - set(algorithms))
    if unknown:
        raise ValueError(f"options: expected keys among the algorithms {list(algorithms)}, found {unknown}")
    if noise_levels is None:
        if head == "softmax":
            raise ValueError(
                "noise_levels: expected softmax temperatures (their scale depends on the task's Q-values), found None"
            )
        n_levels = len(DEFAULT_EPSILONS if head == "epsilon_greedy" else DEFAULT_SIGMA_FRACTIONS)
    elif len(noise_levels) == 0:
        raise ValueError("noise_levels: expected at least one level, found none")
    else:
        n_levels = len(noise_levels)
    combos = [(a, h, j) for a in algorithms for h in sizes for j in range(n_levels)]
    if n_candidates is not None:
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)):
            raise ValueError(f"n_candidates: expected an int in [1, {len(combos)}] or None, found {n_candidates!r}")
        if not 1 <= n_candidates <= len(combos):
            raise ValueError(f"n_candidates: expected an int in [1, {len(combos)}] or None, found {n_candidates}")
        picked = np.sort(np.random.default_rng(seed).choice(len(combos), size=int(n_candidates), replace=False))
        combos = [combos[i] for i in picked]

    bases: dict[tuple[str, tuple[int, ...]], LearnedPolicy] = {}
    family = []
    for algorithm, hidden, j in combos:
        key = (algorithm, hidden)
        if key not in bases:
            bases[key] = train_offline(
                dataset,
                algorithm,
                n_steps=n_steps,
                hidden=hidden,
                seed=seed,
                trajectory_weighting=trajectory_weighting,
                temperature=temperature,
                options=options.get(algorithm),
            )
        base = bases[key]
        levels = _default_levels(head, base) if noise_levels is None else list(noise_levels)
        family.append(_head(base, head, levels[j]))
    _check_unique(family)
    return family
