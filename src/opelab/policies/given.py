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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from opelab.data.validation import first_index, format_index

if TYPE_CHECKING:
    from opelab.data import LoggedDataset


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


def write_action_dist(path: Any, policies: Sequence[ActionDistribution], dataset: LoggedDataset) -> None:
    """Write evaluation policies' probabilities on ``dataset``'s logged steps as one Parquet table that
    ``read_action_dist`` (and ``opelab evaluate --action-dist``) reads: columns ``trajectory``, ``step`` and
    one fixed-size list of n_actions probabilities per policy, named by the policy, one row per logged step
    in the dataset's order (at the logged position for (n, A, len_list) arrays)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    A = dataset.action_space.n_actions
    traj, step = np.nonzero(dataset.mask)
    columns: dict[str, pa.Array] = {"trajectory": pa.array(traj.astype(np.int64)), "step": pa.array(step.astype(np.int64))}
    for policy in policies:
        if policy.name in columns:
            raise ActionDistributionError(f"name: expected policy names other than 'trajectory', 'step' and each other, found {policy.name!r} twice")
        rows = policy.on_steps(dataset.n_trajectories, dataset.horizon, A, dataset.positions, dataset.mask)[traj, step]
        columns[policy.name] = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(rows, dtype=np.float64).reshape(-1)), A)
    pq.write_table(pa.table(columns), path)


def read_action_dist(path: Any, dataset: LoggedDataset) -> list[ActionDistribution]:
    """Evaluation policies from a Parquet table of probabilities on ``dataset``'s logged steps (the layout of
    ``write_action_dist``: one row per logged step in the dataset's order, a list column of n_actions
    probabilities per policy, optional ``trajectory``/``step`` columns checked against the dataset). Nothing
    in the file is executed; every malformed table is one ``ActionDistributionError`` naming the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not dataset.action_space.is_discrete:
        raise ActionDistributionError("dataset: expected discrete actions for policies given as probabilities, found continuous ones")
    from pathlib import Path

    if not Path(path).is_file():
        what = "a folder" if Path(path).is_dir() else "nothing"
        raise ActionDistributionError(f"{path}: expected a Parquet table of action probabilities, found {what} there")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
        raise ActionDistributionError(f"{path}: expected a Parquet table of action probabilities, found a file that does not read ({error})".splitlines()[0]) from None
    A = dataset.action_space.n_actions
    traj, step = np.nonzero(dataset.mask)
    if table.num_rows != len(traj):
        raise ActionDistributionError(f"{path}: expected one row per logged step ({len(traj)}), found {table.num_rows} rows")
    for key, expected in (("trajectory", traj), ("step", step)):
        if key in table.column_names:
            column = table[key]
            if not pa.types.is_integer(column.type) or column.null_count:
                raise ActionDistributionError(f"{path}: column {key!r}: expected integers without missing values, found {column.type}")
            found = column.to_numpy()
            if not np.array_equal(found, expected):
                row = int(np.flatnonzero(found != expected)[0])
                raise ActionDistributionError(
                    f"{path}: column {key!r}: expected the dataset's logged steps in order, found {found[row]} at row {row} (expected {expected[row]})"
                )
    names = [c for c in table.column_names if c not in ("trajectory", "step")]
    if not names:
        raise ActionDistributionError(f"{path}: expected one column of probabilities per policy, found only {table.column_names}")
    policies = []
    for name in names:
        column = table[name].combine_chunks()
        kind = column.type
        if not (pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind)) or not pa.types.is_floating(kind.value_type):
            raise ActionDistributionError(f"{path}: column {name!r}: expected lists of {A} floats (one probability per action), found type {kind}")
        if column.null_count or column.flatten().null_count:
            raise ActionDistributionError(f"{path}: column {name!r}: expected no missing values, found some")
        lengths = np.full(len(column), kind.list_size) if pa.types.is_fixed_size_list(kind) else np.diff(column.offsets.to_numpy())
        if (lengths != A).any():
            row = int(np.flatnonzero(lengths != A)[0])
            raise ActionDistributionError(f"{path}: column {name!r}: expected {A} probabilities per row (n_actions), found {lengths[row]} at row {row}")
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(traj), A)
        dist = np.zeros((dataset.n_trajectories, dataset.horizon, A))
        dist[traj, step] = flat
        try:
            policy = ActionDistribution(name, dist)
            policy.on_steps(dataset.n_trajectories, dataset.horizon, A, None, dataset.mask)  # checks the rows
        except ActionDistributionError as error:
            raise ActionDistributionError(f"{path}: column {name!r}: {error}") from None
        policies.append(policy)
    return policies
