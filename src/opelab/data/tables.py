"""A ``LoggedDataset`` from a flat table: one row per logged step, in a CSV or Parquet file or a DataFrame.

    dataset_from_table("log.csv", action="item", reward="click", pscore="propensity", context_prefix="x_")

Columns are named by the arguments:
    action        integers >= 0 (discrete actions; ``n_actions`` defaults to the largest action + 1)
    reward        numbers
    pscore        π_b(action | context) in (0, 1]; or ``log_pscore``, its logarithm (<= 0), for propensities
                  too small for a float (exactly one of the two)
    context       a list of numeric columns, or ``context_prefix``: every column whose name starts with it, in
                  the table's order (exactly one of the two); the observation of each step is their values as
                  float64, shape (d,)
    position      optional integers >= 0: the slot the action was shown in (``info.len_list`` = ``len_list``, or
                  the largest position + 1)
    done          optional 0/1 or true/false: the trajectory ended in a terminal state at this step (only on a
                  trajectory's last step); without it, one-step rounds are terminal (a bandit round ends after
                  its step) and multi-step trajectories are not (cut by the end of the log)
    trajectory, step   optional, both or neither: without them every row is a one-step trajectory (a bandit
                  log, horizon 1); with them the rows are sorted by (trajectory, step) (ids of any one type,
                  numbers or strings, sorted as such), and each trajectory's steps must be 0..T−1, each once
Any other column is ignored. ``gamma`` (default 1.0) and ``task`` (default: the file's stem, or "table") go into
the ``DatasetInfo``.

Every malformed table is refused with one ``DatasetError`` line that names the column: a column that is not
there (with the table's columns listed), a missing value (NaN or empty; with the first row), a non-numeric,
non-integer, negative or out-of-range value where one is not allowed (with the row), a propensity outside
(0, 1], a duplicate (trajectory, step), steps with holes, both or neither of pscore/log_pscore, and a file that
cannot be read. Rows are counted from 0 in the table's own order (the data rows of a CSV, header excluded).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opelab.data.dataset import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.validation import DatasetError, one_line

_SHOWN_COLUMNS = 30  # a missing column's error lists at most this many of the table's columns
_MAX_INT = 2**53  # integers beyond what a float64 column holds exactly are refused


def _shown(value: object) -> str:
    """``repr`` of a table cell, numpy scalars as the Python numbers they hold."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def read_table(table: Any) -> Any:
    """A pandas DataFrame from a DataFrame, or a ``.csv`` / ``.parquet`` (``.pq``) file."""
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        return table
    if not isinstance(table, (str, Path)):
        raise DatasetError(f"table: expected a CSV or Parquet path or a pandas DataFrame, found {type(table).__name__}")
    path = Path(table)
    if not path.is_file():
        found = "a folder" if path.is_dir() else "nothing"
        raise DatasetError(f"{path}: expected a CSV or Parquet table, found {found} there")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            return pd.read_csv(path)
        except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise DatasetError(f"{path}: cannot be read as CSV ({one_line(error)})") from None
    if suffix in (".parquet", ".pq"):
        import pyarrow as pa

        try:
            return pd.read_parquet(path, engine="pyarrow")
        except (ValueError, OSError, pa.ArrowException) as error:
            raise DatasetError(f"{path}: cannot be read as Parquet ({one_line(error)})") from None
    raise DatasetError(f"{path}: expected a .csv or .parquet file, found the suffix {path.suffix!r}")


class _Table:
    """Typed, checked access to a DataFrame's columns; every error names the column and its role."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame
        self.n_rows = len(frame)

    def _where(self, name: str, role: str) -> str:
        return f"column {name!r} ({role})"

    def column(self, name: str, role: str) -> Any:
        if not isinstance(name, str) or name not in self.frame.columns:
            columns = [str(c) for c in self.frame.columns]
            shown = columns[:_SHOWN_COLUMNS] + ([f"... {len(columns) - _SHOWN_COLUMNS} more"] if len(columns) > _SHOWN_COLUMNS else [])
            raise DatasetError(f"{self._where(str(name), role)}: not in the table; its columns are {shown}")
        series = self.frame[name]
        if getattr(series, "ndim", 1) != 1:
            raise DatasetError(f"{self._where(name, role)}: the table has more than one column of that name")
        missing = series.isna().to_numpy()
        if missing.any():
            raise DatasetError(f"{self._where(name, role)}: expected a value in every row, found a missing value at row {int(np.flatnonzero(missing)[0])}")
        return series

    def numbers(self, name: str, role: str) -> np.ndarray:
        """Finite float64 values (booleans are 0/1)."""
        import pandas as pd

        series = self.column(name, role)
        if pd.api.types.is_bool_dtype(series.dtype):
            return series.to_numpy(dtype=np.float64)
        if not pd.api.types.is_numeric_dtype(series.dtype):
            converted = pd.to_numeric(series, errors="coerce")
            bad = converted.isna().to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DatasetError(f"{self._where(name, role)}: expected numbers, found {_shown(series.iloc[row])} at row {row}")
            series = converted
        values = series.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"{self._where(name, role)}: expected finite numbers, found {values[row].item()!r} at row {row}")
        return values

    def integers(self, name: str, role: str, high: int | None = None, what: str = "") -> np.ndarray:
        """int64 values in [0, high) (or >= 0)."""
        values = self.numbers(name, role)
        for bad, expected in (
            (values != np.floor(values), "integers"),
            (values < 0, "integers >= 0"),
            (values > _MAX_INT, "integers <= 2^53"),
        ):
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DatasetError(f"{self._where(name, role)}: expected {expected}, found {_number(values[row])} at row {row}")
        integers = values.astype(np.int64)
        if high is not None and (integers >= high).any():
            row = int(np.flatnonzero(integers >= high)[0])
            raise DatasetError(f"{self._where(name, role)}: expected integers in [0, {high - 1}]{what}, found {integers[row]} at row {row}")
        return integers

    def flags(self, name: str, role: str) -> np.ndarray:
        import pandas as pd

        series = self.column(name, role)
        if pd.api.types.is_bool_dtype(series.dtype):
            return series.to_numpy(dtype=bool)
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isin(values, (0.0, 1.0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"{self._where(name, role)}: expected 0/1 or true/false, found {_shown(series.iloc[row])} at row {row}")
        return values == 1.0

    def ids(self, name: str, role: str) -> np.ndarray:
        """Codes 0..k−1 of the column's values in sorted order."""
        import pandas as pd

        series = self.column(name, role)
        try:
            codes, _ = pd.factorize(series, sort=True)
        except TypeError:
            raise DatasetError(f"{self._where(name, role)}: expected ids of one type (all numbers or all strings), found a mix") from None
        return np.asarray(codes, dtype=np.int64)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else repr(float(value))


def _context_columns(table: _Table, context: Sequence[str] | str | None, context_prefix: str | None) -> list[str]:
    if (context is None) == (context_prefix is None):
        found = "both" if context is not None else "neither"
        raise DatasetError(f"context: expected the context columns or a context_prefix (one of the two), found {found}")
    if context_prefix is not None:
        names = [c for c in table.frame.columns if isinstance(c, str) and c.startswith(context_prefix)]
        if not names:
            columns = [str(c) for c in table.frame.columns][:_SHOWN_COLUMNS]
            raise DatasetError(f"context_prefix {context_prefix!r}: no column of the table starts with it; its columns are {columns}")
        return names
    names = [context] if isinstance(context, str) else list(context)  # type: ignore[arg-type]
    if not names:
        raise DatasetError("context: expected at least one column, found an empty list")
    return names


def dataset_from_table(
    table: Any,
    *,
    action: str,
    reward: str,
    pscore: str | None = None,
    log_pscore: str | None = None,
    context: Sequence[str] | str | None = None,
    context_prefix: str | None = None,
    trajectory: str | None = None,
    step: str | None = None,
    position: str | None = None,
    done: str | None = None,
    n_actions: int | None = None,
    len_list: int | None = None,
    gamma: float = 1.0,
    task: str | None = None,
    behavior_policy: str = "unknown",
) -> LoggedDataset:
    """The ``LoggedDataset`` of a flat table (see the module's docstring for the columns and the checks)."""
    if (pscore is None) == (log_pscore is None):
        found = f"both ({pscore!r} and {log_pscore!r})" if pscore is not None else "neither"
        raise DatasetError(f"pscore, log_pscore: expected exactly one propensity column, found {found}")
    if (trajectory is None) != (step is None):
        given = f"trajectory={trajectory!r}" if trajectory is not None else f"step={step!r}"
        raise DatasetError(f"trajectory, step: expected both columns (multi-step trajectories) or neither (one-step rounds), found only {given}")
    if n_actions is not None and (not isinstance(n_actions, int) or isinstance(n_actions, bool) or n_actions < 1):
        raise DatasetError(f"n_actions: expected a positive int, found {n_actions!r}")
    if len_list is not None and (not isinstance(len_list, int) or isinstance(len_list, bool) or len_list < 1):
        raise DatasetError(f"len_list: expected a positive int, found {len_list!r}")
    if task is None:
        task = Path(table).stem if isinstance(table, (str, Path)) else "table"
    t = _Table(read_table(table))
    if t.n_rows == 0:
        raise DatasetError(f"table: expected at least one row, found none (columns {[str(c) for c in t.frame.columns][:_SHOWN_COLUMNS]})")
    context_names = _context_columns(t, context, context_prefix)

    # every column first, in the order of the arguments, so that the first problem is the one reported
    actions = t.integers(action, "action", n_actions, "" if n_actions is None else f" (n_actions = {n_actions})")
    rewards = t.numbers(reward, "reward")
    if pscore is not None:
        probs = t.numbers(pscore, "pscore")
        bad = (probs <= 0) | (probs > 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"column {pscore!r} (pscore): expected probabilities in (0, 1], found {probs[row].item()!r} at row {row}")
        logs = None
    else:
        logs = t.numbers(log_pscore, "log_pscore")  # type: ignore[arg-type]
        if (logs > 0).any():
            row = int(np.flatnonzero(logs > 0)[0])
            raise DatasetError(f"column {log_pscore!r} (log_pscore): expected log-probabilities <= 0, found {logs[row].item()!r} at row {row}")
        with np.errstate(under="ignore"):
            probs = np.exp(logs)
    features = np.stack([t.numbers(name, "context") for name in context_names], axis=1)  # (rows, d)
    positions = None
    if position is not None:
        what = "" if len_list is None else f" (len_list = {len_list})"
        positions = t.integers(position, "position", len_list, what)
        len_list = int(positions.max()) + 1 if len_list is None else len_list
    one_step = trajectory is None
    terminal = t.flags(done, "done") if done is not None else np.full(t.n_rows, one_step)

    if trajectory is None:
        traj, steps = np.arange(t.n_rows), np.zeros(t.n_rows, dtype=np.int64)
    else:
        traj, steps = _trajectory_steps(t, trajectory, step, terminal, done)  # type: ignore[arg-type]
    n, H = int(traj.max()) + 1, int(steps.max()) + 1
    A = int(actions.max()) + 1 if n_actions is None else n_actions

    def padded(values: np.ndarray, fill: float | int | bool, dtype: Any) -> np.ndarray:
        out = np.full((n, H, *values.shape[1:]), fill, dtype=dtype)
        out[traj, steps] = values
        return out

    mask = padded(np.ones(t.n_rows, dtype=bool), False, bool)
    info = DatasetInfo(
        task=task, gamma=gamma, action_space=ActionSpace.discrete(A), behavior_policy=behavior_policy,
        len_list=len_list if positions is not None else None,
    )  # fmt: skip
    return LoggedDataset(
        observations=padded(features, 0.0, np.float64),
        actions=padded(actions, 0, np.int64),
        rewards=padded(rewards, 0.0, np.float64),
        terminals=padded(terminal, False, bool),
        mask=mask,
        behavior_pscore=padded(probs, 1.0, np.float64),
        positions=None if positions is None else padded(positions, 0, np.int64),
        behavior_log_pscore=None if logs is None else padded(logs, 0.0, np.float64),
        info=info,
    )


def _trajectory_steps(
    t: _Table, trajectory: str, step: str, terminal: np.ndarray, done: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's trajectory index (ids in sorted order) and step, checked: steps 0..T−1, each once, ``done``
    only on a trajectory's last step."""
    codes = t.ids(trajectory, "trajectory")
    steps = t.integers(step, "step")
    ids = t.frame[trajectory].to_numpy()
    order = np.lexsort((steps, codes))  # rows sorted by (trajectory, step), stable
    c, s = codes[order], steps[order]
    new = np.r_[True, c[1:] != c[:-1]]  # first row of each trajectory
    start = np.maximum.accumulate(np.where(new, np.arange(len(c)), 0))
    expected = np.arange(len(c)) - start  # the step each row would have without holes
    duplicate = ~new & (s == np.r_[-1, s[:-1]])
    if duplicate.any():
        i = int(np.flatnonzero(duplicate)[0])
        rows = sorted((int(order[i - 1]), int(order[i])))
        raise DatasetError(
            f"columns {trajectory!r}, {step!r} (trajectory, step): expected each step of a trajectory once, found step {s[i]} "
            f"of trajectory {ids[order[i]]!r} twice, at rows {rows[0]} and {rows[1]}"
        )
    hole = s != expected
    if hole.any():
        i = int(np.flatnonzero(hole)[0])
        raise DatasetError(
            f"column {step!r} (step): expected the steps of each trajectory to be 0..T-1 without holes, found trajectory "
            f"{ids[order[i]]!r} without step {expected[i]} (its next step is {s[i]}, at row {int(order[i])})"
        )
    last = np.r_[c[1:] != c[:-1], True]
    early = terminal[order] & ~last
    if early.any():
        i = int(np.flatnonzero(early)[0])
        raise DatasetError(
            f"column {done!r} (done): expected true only on a trajectory's last step, found true at row {int(order[i])}, "
            f"step {s[i]} of trajectory {ids[order[i]]!r}, which has more steps"
        )
    traj = np.empty_like(codes)
    traj[order] = np.cumsum(new) - 1
    return traj, steps
