"""The d3rlpy algorithms opelab trains, their defaults for small control tasks, and the plumbing around d3rlpy.

``ALGORITHMS`` maps opelab's short names to d3rlpy configs:

| name | d3rlpy | actions | reference |
|---|---|---|---|
| ``double_dqn`` | ``DoubleDQNConfig`` | discrete | van Hasselt, Guez & Silver (2016) |
| ``discrete_cql`` | ``DiscreteCQLConfig`` | discrete | Kumar et al. (2020), "Conservative Q-Learning" |
| ``discrete_bcq`` | ``DiscreteBCQConfig`` | discrete | Fujimoto et al. (2019), "Benchmarking batch deep RL" |
| ``sac`` | ``SACConfig`` | continuous | Haarnoja et al. (2018) |
| ``cql`` | ``CQLConfig`` | continuous | Kumar et al. (2020) |
| ``iql`` | ``IQLConfig`` | continuous | Kostrikov, Nair & Levine (2022), "Implicit Q-Learning" |
| ``td3_plus_bc`` | ``TD3PlusBCConfig`` | continuous | Fujimoto & Gu (2021), "A minimalist approach to offline RL" |
| ``bcq`` | ``BCQConfig`` | continuous | Fujimoto, Meger & Precup (2019), "Off-policy deep RL without exploration" |

Defaults. d3rlpy's defaults target Atari and D4RL with millions of steps; the discrete Q-learners' learning
rate (6.25e-5) and target update interval (8000) would barely move in the few thousand steps a classic-control
task needs, so opelab uses ``learning_rate = 1e-3``, ``target_update_interval = 100`` and ``batch_size = 64``
for them (``DISCRETE_DEFAULTS``). Everything else is d3rlpy's. Every network (actor, critic, value, imitator)
is an MLP with the given ``hidden`` units (``VectorEncoderFactory``); ``options`` override any config field.
Continuous algorithms need a bounded action box: d3rlpy's actors act in [−1, 1] and a ``MinMaxActionScaler``
maps that to [low, high].

Seeding. ``d3rlpy.seed`` seeds Python's ``random``, NumPy's global generator (replay sampling, ε-greedy
exploration) and torch. ``seeded(seed)`` does that and restores the three global states afterwards, so
training does not disturb the caller's random streams. With one torch thread on the CPU, the same seed gives
bitwise the same networks; several threads may reorder floating-point sums (d3rlpy does not promise more).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

from opelab.data import ActionSpace

__all__ = ["ALGORITHMS", "DISCRETE_DEFAULTS", "AlgorithmSpec", "check_hidden", "get_algorithm", "make_algo"]


@dataclass(frozen=True)
class AlgorithmSpec:
    """A trainable algorithm: opelab's ``name``, the d3rlpy ``config`` class name and the ``action_type``.

    ``online`` says whether ``train_online`` accepts it (the offline-only ones constrain the policy to the
    data, which makes no sense with a replay buffer the policy fills itself).
    """

    name: str
    config: str
    action_type: Literal["discrete", "continuous"]
    online: bool
    reference: str


ALGORITHMS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec("double_dqn", "DoubleDQNConfig", "discrete", True, "van Hasselt, Guez & Silver (2016)"),
        AlgorithmSpec("discrete_cql", "DiscreteCQLConfig", "discrete", False, "Kumar et al. (2020)"),
        AlgorithmSpec("discrete_bcq", "DiscreteBCQConfig", "discrete", False, "Fujimoto et al. (2019)"),
        AlgorithmSpec("sac", "SACConfig", "continuous", True, "Haarnoja et al. (2018)"),
        AlgorithmSpec("cql", "CQLConfig", "continuous", False, "Kumar et al. (2020)"),
        AlgorithmSpec("iql", "IQLConfig", "continuous", False, "Kostrikov, Nair & Levine (2022)"),
        AlgorithmSpec("td3_plus_bc", "TD3PlusBCConfig", "continuous", False, "Fujimoto & Gu (2021)"),
        AlgorithmSpec("bcq", "BCQConfig", "continuous", False, "Fujimoto, Meger & Precup (2019)"),
    )
}
"""Every algorithm opelab trains, by short name (see the module docstring)."""

DISCRETE_DEFAULTS: Mapping[str, Any] = {"learning_rate": 1e-3, "target_update_interval": 100, "batch_size": 64}
"""Config overrides for the discrete Q-learners on small tasks (d3rlpy's defaults are tuned for Atari)."""


def import_d3rlpy() -> ModuleType:
    """Import d3rlpy (and torch) lazily, quietly (``opelab.data.interop``'s importer), with the submodules
    training needs."""
    from opelab.data.interop import _import_d3rlpy

    d3rlpy = _import_d3rlpy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import d3rlpy.algos
            import d3rlpy.logging
            import d3rlpy.preprocessing
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("opelab.learn needs torch and d3rlpy: pip install 'opelab[rl]'") from error
    return d3rlpy


def get_algorithm(name: str, action_type: str | None = None, online: bool | None = None) -> AlgorithmSpec:
    """The spec of algorithm ``name``, checked against the action type and (for online training) ``online``."""
    spec = ALGORITHMS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"algorithm: expected one of {list(ALGORITHMS)}, found {name!r}")
    if action_type is not None and spec.action_type != action_type:
        fitting = [n for n, s in ALGORITHMS.items() if s.action_type == action_type and (online is None or s.online)]
        raise ValueError(
            f"algorithm: expected one for {action_type} actions ({fitting}), found {name!r} ({spec.action_type})"
        )
    if online and not spec.online:
        raise ValueError(
            f"algorithm: expected one that trains online ({[n for n, s in ALGORITHMS.items() if s.online]}), "
            f"found the offline-only {name!r}"
        )
    return spec


def check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    """Hidden layer sizes as a tuple of positive ints."""
    if isinstance(hidden, (int, np.integer)) or not isinstance(hidden, Sequence) or len(hidden) == 0:
        raise ValueError(f"hidden: expected a non-empty sequence of layer sizes, e.g. (64, 64), found {hidden!r}")
    if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
        raise ValueError(f"hidden: expected positive ints, found {tuple(hidden)!r}")
    return tuple(int(h) for h in hidden)


def hidden_label(hidden: Sequence[int]) -> str:
    """``(64, 64)`` → ``"64x64"`` (used in policy names)."""
    return "x".join(str(h) for h in hidden)


def make_algo(
    spec: AlgorithmSpec,
    *,
    hidden: Sequence[int],
    gamma: float,
    action_space: ActionSpace,
    observation_scaling: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """A fresh d3rlpy algorithm (CPU) for ``spec`` with MLPs of ``hidden`` units (see the module docstring).

    ``observation_scaling`` standardises observations with statistics d3rlpy fits on the dataset (offline).
    """
    d3rlpy = import_d3rlpy()
    hidden = check_hidden(hidden)
    config_class = getattr(d3rlpy.algos, spec.config)
    field_names = {f.name for f in dataclasses.fields(config_class)}
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(hidden))
    kwargs: dict[str, Any] = {name: encoder for name in field_names if name.endswith("encoder_factory")}
    kwargs["gamma"] = float(gamma)
    if spec.action_type == "discrete":
        kwargs.update(DISCRETE_DEFAULTS)
    else:
        if action_space.low is None or action_space.high is None:
            raise ValueError(
                f"action_space: expected a bounded box (low and high) for {spec.name}, found low={action_space.low}, "
                f"high={action_space.high}; d3rlpy's actors act in [-1, 1] and need the box to rescale"
            )
        kwargs["action_scaler"] = d3rlpy.preprocessing.MinMaxActionScaler(
            minimum=np.asarray(action_space.low, dtype=np.float32),
            maximum=np.asarray(action_space.high, dtype=np.float32),
        )
    if observation_scaling:
        kwargs["observation_scaler"] = d3rlpy.preprocessing.StandardObservationScaler()
    for key, value in dict(options or {}).items():
        if key not in field_names:
            raise ValueError(f"options: expected fields of {spec.config} ({sorted(field_names)}), found {key!r}")
        kwargs[key] = value
    return config_class(**kwargs).create(device=False)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """``d3rlpy.seed(seed)`` for the duration of the block; the global random states are restored afterwards."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, found {seed!r}")
    d3rlpy = import_d3rlpy()
    import torch

    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    d3rlpy.seed(int(seed))
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


@contextlib.contextmanager
def quiet_d3rlpy() -> Iterator[None]:
    """Silence d3rlpy's structlog messages below WARNING (it prints every config and dataset summary)."""
    import structlog

    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**saved)
