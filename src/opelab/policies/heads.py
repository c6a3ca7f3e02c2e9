"""Heads: policies derived from a base policy or from action values.

- ``GreedyPolicy``: argmax of action values (ties to the lowest action index).
- ``SoftmaxPolicy``: π(a | s) ∝ exp(Q(s, a) / τ).
- ``EpsilonGreedyPolicy``: (1 − ε) π_base + ε · uniform. For a deterministic base this is the usual
  ε-greedy head; for a stochastic base it is the same mixture.
- ``UniformPolicy``: 1 / n_actions everywhere.

``CallableActionValues`` turns any batched callable observations → (batch, n_actions) scores (a Q-network's
forward pass, a linear model on float observations) into the ``ActionValues`` these heads take, e.g.
``EpsilonGreedyPolicy(GreedyPolicy(CallableActionValues(q, 2)), 0.1)``.
"""

from __future__ import annotations

import numpy as np

from collections.abc import Callable

from opelab.policies.base import ActionValues, CategoricalPolicy, DiscretePolicy


class CallableActionValues:
    """``ActionValues`` from a callable ``fn(observations) -> (batch, n_actions)``; checks the shape it returns."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], n_actions: int) -> None:
        if not callable(fn):
            raise TypeError(f"fn: expected a callable observations -> action values, found {type(fn).__name__}")
        if isinstance(n_actions, bool) or not isinstance(n_actions, (int, np.integer)) or n_actions < 1:
            raise ValueError(f"n_actions: expected a positive int, found {n_actions!r}")
        self.fn = fn
        self.n_actions = int(n_actions)

    def action_values(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        q = np.asarray(self.fn(observations), dtype=np.float64)
        if q.shape != (len(observations), self.n_actions):
            raise ValueError(f"action values: expected shape {(len(observations), self.n_actions)}, found {q.shape}")
        return q


class GreedyPolicy(CategoricalPolicy):
    def __init__(self, values: ActionValues, name: str = "greedy") -> None:
        super().__init__(values.n_actions, name)
        self.values = values

    def action_probs(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        q = self.values.action_values(observations, steps)
        probs = np.zeros(q.shape, dtype=np.float64)
        probs[np.arange(len(q)), np.argmax(q, axis=-1)] = 1.0
        return probs


class SoftmaxPolicy(CategoricalPolicy):
    def __init__(self, values: ActionValues, temperature: float, name: str | None = None) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive float, found {temperature}")
        super().__init__(values.n_actions, name or f"softmax(tau={temperature:g})")
        self.values = values
        self.temperature = float(temperature)

    def action_probs(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        q = self.values.action_values(observations, steps)
        with np.errstate(over="ignore"):  # shift first; a tiny τ may still send gaps to −inf, and exp(−inf) = 0
            weights = np.exp((q - q.max(axis=-1, keepdims=True)) / self.temperature)
        return weights / weights.sum(axis=-1, keepdims=True)


class EpsilonGreedyPolicy(CategoricalPolicy):
    def __init__(self, base: DiscretePolicy, epsilon: float, name: str | None = None) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon: expected a float in [0, 1], found {epsilon}")
        super().__init__(base.n_actions, name or f"{base.name}+eps{epsilon:g}")
        self.base = base
        self.epsilon = float(epsilon)

    def action_probs(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        base = self.base.action_probs(observations, steps)
        return (1.0 - self.epsilon) * base + self.epsilon / self.n_actions


class UniformPolicy(CategoricalPolicy):
    def __init__(self, n_actions: int, name: str = "uniform") -> None:
        super().__init__(n_actions, name)

    def action_probs(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        return np.full((len(observations), self.n_actions), 1.0 / self.n_actions)
