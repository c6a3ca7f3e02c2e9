"""Evaluation policies given as their action probabilities on the logged steps.

A production scorer rarely ships as code opelab can call; what it exports is π_e(· | x_i) for every logged
round, an array. ``ActionDistribution`` carries one such array with a name so that ``build_inputs`` and
``OPEInput.from_obp`` treat it like any other evaluation policy. Shapes (n logged trajectories or rounds, H
steps, A actions, L positions of a list):

    (n, A)       one-step logs
    (n, A, L)    one-step logs of lists (Open Bandit Pipeline's ``action_dist``): π_e(a | x_i, slot l); the
                 row used is the one at the logged position ``dataset.positions``
    (n, H, A)    trajectories: π_e(· | s_{i,t}) on every logged step (padded steps are ignored)

It knows the policy only where data was logged, so it serves estimators and models that read π_e on logged
steps (importance ratios, DM/DR with a reward model, neural FQE on the logged next states), not tabular
methods that need π_e on every state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opelab.data.validation import first_index, format_index


class ActionDistributionError(ValueError):
    """An action-distribution array that is not a distribution over the dataset's actions."""


@dataclass(frozen=True, eq=False)
class ActionDistribution:
    """π_e(· | s) on the logged steps of one dataset (module docstring for the shapes)."""

    name: str
    action_dist: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ActionDistributionError(f"name: expected a non-empty str, found {self.name!r}")
        dist = np.asarray(self.action_dist)
        if dist.dtype.kind not in "f" or dist.ndim not in (2, 3):
            raise ActionDistributionError(
                f"action_dist ({self.name!r}): expected a float array of shape (n, A), (n, A, len_list) or (n, H, A), "
                f"found {dist.dtype} {dist.shape}"
            )
        object.__setattr__(self, "action_dist", dist)

    def on_steps(self, n: int, H: int, n_actions: int, positions: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
        """π_e(· | s_{i,t}) as (n, H, A), checked: non-negative, finite, rows summing to 1 on logged steps."""
        dist = self.action_dist
        where = f"action_dist ({self.name!r})"
        if dist.ndim == 2:
            if H != 1 or dist.shape != (n, n_actions):
                raise ActionDistributionError(f"{where}: expected shape (n, A) = {(n, n_actions)} for one-step logs, found {dist.shape}")
            out = dist[:, None, :]
        elif H == 1 and dist.shape[:2] == (n, n_actions):
            L = dist.shape[2]
            if positions is None:
                if L != 1:
                    raise ActionDistributionError(
                        f"{where}: has {L} positions (shape (n, A, len_list) = {dist.shape}), but the dataset logs no positions"
                    )
                out = dist[:, None, :, 0]
            else:
                pos = np.asarray(positions)[:, 0]
                if pos.max() >= L:
                    raise ActionDistributionError(f"{where}: has {L} positions, but the dataset logs position {pos.max()}")
                out = dist[np.arange(n), :, pos][:, None, :]  # the row at each round's logged position
        elif dist.shape == (n, H, n_actions):
            out = dist
        else:
            raise ActionDistributionError(
                f"{where}: expected shape (n, A), (n, A, len_list) or (n, H, A) with n={n}, H={H}, A={n_actions}, found {dist.shape}"
            )
        logged = np.broadcast_to(mask[..., None], out.shape)
        bad = logged & (~np.isfinite(out) | (out < 0))
        if bad.any():
            idx = first_index(bad)
            raise ActionDistributionError(f"{where}: expected finite non-negative probabilities, found {out[idx]!r} at index {format_index(idx)}")
        sums = out.sum(axis=-1)
        bad = mask & (np.abs(sums - 1.0) > 1e-6)
        if bad.any():
            idx = first_index(bad)
            raise ActionDistributionError(f"{where}: expected rows summing to 1, found {sums[idx]!r} at (round, step) {format_index(idx)}")
        return out
