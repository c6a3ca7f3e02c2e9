"""Policies and action values stored as tables over integer states.

A table has shape ``(n_states, n_actions)`` for a stationary policy or ``(horizon, n_states, n_actions)`` for
one that depends on the step (finite-horizon optimal policies generally do).
"""

from __future__ import annotations

import numpy as np

from opelab.policies.base import CategoricalPolicy


def _lookup(table: np.ndarray, observations: np.ndarray, steps: np.ndarray | None, what: str) -> np.ndarray:
    states = np.asarray(observations)
    if states.dtype.kind not in "iu":
        raise ValueError(f"observations: expected integer state ids for a tabular {what}, found dtype {states.dtype}")
    n_states = table.shape[-2]
    if states.size and (states.min() < 0 or states.max() >= n_states):
        raise ValueError(f"observations: expected state ids in [0, {n_states - 1}], found range [{states.min()}, {states.max()}]")
    if table.ndim == 2:
        return table[states]
    if steps is None:
        raise ValueError(f"steps: a time-dependent tabular {what} (table shape {table.shape}) needs the step of each observation, found None")
    steps = np.broadcast_to(np.asarray(steps), states.shape)
    if steps.size and (steps.min() < 0 or steps.max() >= table.shape[0]):
        raise ValueError(f"steps: expected steps in [0, {table.shape[0] - 1}], found range [{steps.min()}, {steps.max()}]")
    return table[steps, states]


def _check_table(table: np.ndarray, name: str) -> np.ndarray:
    table = np.array(table, dtype=np.float64, copy=True)  # owned: later edits by the caller cannot reach it
    table.flags.writeable = False
    if table.ndim not in (2, 3):
        raise ValueError(f"{name}: expected shape (n_states, n_actions) or (horizon, n_states, n_actions), found {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError(f"{name}: expected finite values, found non-finite entries")
    return table


class TabularPolicy(CategoricalPolicy):
    """π(a | s) (or π_t(a | s)) read from a table of probabilities."""

    def __init__(self, probs: np.ndarray, name: str = "tabular") -> None:
        probs = _check_table(probs, "probs")
        if (probs < 0).any() or not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-9):
            raise ValueError("probs: expected non-negative rows summing to 1")
        super().__init__(probs.shape[-1], name)
        self.table = probs

    def action_probs(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        return _lookup(self.table, observations, steps, "policy")


class TabularQ:
    """Action values Q(s, a) (or Q_t(s, a)) read from a table; a source for greedy and softmax heads."""

    def __init__(self, q: np.ndarray) -> None:
        self.table = _check_table(q, "q")
        self.n_actions = self.table.shape[-1]

    def action_values(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        return _lookup(self.table, observations, steps, "Q-function")
