"""The ``Policy`` protocol and the categorical base class that most discrete policies build on.

A policy maps a batch of observations (and, optionally, the step index of each, for time-dependent
policies) to actions. Two small protocols say what the pipeline needs:

- ``Policy``: ``sample(observations, rng, steps)`` returns actions and their probability (or density);
  ``pscore(observations, actions, steps)`` evaluates logged actions. Enough to collect data and run
  importance sampling.
- ``DiscretePolicy``: ``n_actions`` and ``action_probs(observations, steps) -> (batch, n_actions)``.
  Enough for every discrete-action estimator (V̂ needs the whole distribution).

Wrapping a production model takes a subclass of ``CategoricalPolicy`` with one method::

    class MyModel(CategoricalPolicy):
        def __init__(self, model):
            super().__init__(n_actions=model.n_actions, name="prod-v3")
            self.model = model

        def action_probs(self, observations, steps=None):
            return self.model.predict_proba(observations)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Anything that can act and score logged actions."""

    name: str

    def sample(
        self, observations: np.ndarray, rng: np.random.Generator, steps: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Actions for a batch of observations and π(a | s) of each (probability or density)."""
        ...

    def pscore(self, observations: np.ndarray, actions: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """π(a | s) of given actions, shape (batch,)."""
        ...


@runtime_checkable
class DiscretePolicy(Protocol):
    """A policy over actions ``0..n_actions-1`` that exposes its whole distribution."""

    name: str
    n_actions: int

    def action_probs(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """π(· | s) for each observation, shape (batch, n_actions), rows summing to 1."""
        ...


@runtime_checkable
class ActionValues(Protocol):
    """Scores per action (Q-values or logits) that heads such as greedy and softmax act on."""

    n_actions: int

    def action_values(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """Shape (batch, n_actions)."""
        ...


def sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of ``probs`` (batch, K) by inverse CDF; returns int64 indices, shape (batch,)."""
    return sample_from_cdf(np.cumsum(probs, axis=-1), rng)


def sample_from_cdf(cdf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of cumulative probabilities ``cdf`` (batch, K); int64 indices, shape (batch,)."""
    u = rng.random(cdf.shape[0]) * cdf[:, -1]  # scale by the row total: rounding cannot push past the end
    return (u[:, None] >= cdf).sum(axis=-1).astype(np.int64)


class CategoricalPolicy(ABC):
    """Base for discrete policies: implement ``action_probs``; ``sample`` and ``pscore`` follow from it."""

    def __init__(self, n_actions: int, name: str) -> None:
        if n_actions < 1:
            raise ValueError(f"n_actions: expected a positive int, found {n_actions}")
        self.n_actions = int(n_actions)
        self.name = name

    @abstractmethod
    def action_probs(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """π(· | s), shape (batch, n_actions)."""

    def sample(
        self, observations: np.ndarray, rng: np.random.Generator, steps: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        probs = self.action_probs(observations, steps)
        actions = sample_categorical(probs, rng)
        return actions, probs[np.arange(len(actions)), actions]

    def pscore(self, observations: np.ndarray, actions: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        probs = self.action_probs(observations, steps)
        return probs[np.arange(len(actions)), np.asarray(actions)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n_actions={self.n_actions})"
