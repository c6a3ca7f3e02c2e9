"""Parquet storage of a ``LoggedDataset``: one row per logged step, padding rebuilt on read.

Columns: ``trajectory`` (int64), ``step`` (int64), ``observation`` (scalar, or a fixed-size list of the
flattened observation), ``action`` (int, or a fixed-size list for continuous actions), ``reward``,
``terminal``, ``behavior_pscore`` and, when present, ``behavior_action_probs`` (fixed-size list). The schema's
metadata key ``opelab`` holds a JSON document with the format version, the ``DatasetInfo``, the number of
trajectories, the horizon and the observation shape, so a file round-trips exactly (dtypes included).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from opelab.data.dataset import FILL_VALUES, DatasetInfo, LoggedDataset
from opelab.data.validation import DatasetError

FORMAT_VERSION = 1
METADATA_KEY = b"opelab"


def _column(values: np.ndarray) -> pa.Array:
    """A step-major column; trailing axes become one fixed-size list per row."""
    if values.ndim == 1:
        return pa.array(values)
    width = int(np.prod(values.shape[1:]))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, width)


def write_parquet(dataset: LoggedDataset, path: str | Path) -> None:
    traj, step = np.nonzero(dataset.mask)
    columns: dict[str, pa.Array] = {
        "trajectory": pa.array(traj.astype(np.int64)),
        "step": pa.array(step.astype(np.int64)),
        "observation": _column(dataset.observations[traj, step]),
        "action": _column(dataset.actions[traj, step]),
        "reward": pa.array(dataset.rewards[traj, step]),
        "terminal": pa.array(dataset.terminals[traj, step]),
        "behavior_pscore": pa.array(dataset.behavior_pscore[traj, step]),
    }
    if dataset.behavior_action_probs is not None:
        columns["behavior_action_probs"] = _column(dataset.behavior_action_probs[traj, step])
    meta = {
        "format_version": FORMAT_VERSION,
        "info": json.loads(dataset.info.to_json()),
        "n_trajectories": dataset.n_trajectories,
        "horizon": dataset.horizon,
        "obs_shape": list(dataset.obs_shape),
    }
    table = pa.table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    pq.write_table(table, path)


def _to_numpy(column: pa.ChunkedArray, name: str, trailing: tuple[int, ...]) -> np.ndarray:
    array = column.combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        if array.null_count:
            raise DatasetError(f"{name}: expected no missing values, found {array.null_count}")
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(array), *trailing)
    if array.null_count:
        raise DatasetError(f"{name}: expected no missing values, found {array.null_count}")
    return array.to_numpy(zero_copy_only=False)


def read_parquet(path: str | Path) -> LoggedDataset:
    table = pq.read_table(path)
    raw_meta = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw_meta is None:
        raise DatasetError(f"{path}: expected a Parquet file written by LoggedDataset.to_parquet (metadata key 'opelab'), found none")
    meta: dict[str, Any] = json.loads(raw_meta)
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"format_version: expected {FORMAT_VERSION}, found {meta.get('format_version')!r}")
    info = DatasetInfo.from_json(json.dumps(meta["info"]))
    n, H, obs_shape = int(meta["n_trajectories"]), int(meta["horizon"]), tuple(meta["obs_shape"])
    required = ["trajectory", "step", "observation", "action", "reward", "terminal", "behavior_pscore"]
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: expected columns {required}, missing {missing}")

    traj = _to_numpy(table["trajectory"], "trajectory", ())
    step = _to_numpy(table["step"], "step", ())
    for name, values, bound in (("trajectory", traj, n), ("step", step, H)):
        if values.dtype.kind not in "iu":
            raise DatasetError(f"{name}: expected an integer column, found dtype {values.dtype}")
        if values.size and (values.min() < 0 or values.max() >= bound):
            raise DatasetError(f"{name}: expected values in [0, {bound - 1}], found range [{values.min()}, {values.max()}]")
    mask = np.zeros((n, H), dtype=bool)
    mask[traj, step] = True
    if int(mask.sum()) != len(traj):
        raise DatasetError(f"trajectory/step: expected each (trajectory, step) pair once, found {len(traj) - int(mask.sum())} duplicates")

    action_shape = () if info.action_space.is_discrete else (info.action_space.action_dim,)
    trailing = {
        "observation": obs_shape,
        "action": action_shape,
        "reward": (),
        "terminal": (),
        "behavior_pscore": (),
        "behavior_action_probs": (info.action_space.n_actions,) if info.action_space.is_discrete else (),
    }
    names = {
        "observation": "observations",
        "action": "actions",
        "reward": "rewards",
        "terminal": "terminals",
        "behavior_pscore": "behavior_pscore",
        "behavior_action_probs": "behavior_action_probs",
    }
    arrays: dict[str, np.ndarray | None] = {"behavior_action_probs": None}
    for column, field_name in names.items():
        if column not in table.column_names:
            continue
        values = _to_numpy(table[column], column, trailing[column])
        padded = np.full((n, H, *values.shape[1:]), FILL_VALUES[field_name], dtype=values.dtype)
        padded[traj, step] = values
        arrays[field_name] = padded
    return LoggedDataset(mask=mask, info=info, **arrays)
