"""Parquet storage: one row per logged step, exact round trip (dtypes included), refusal of foreign files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset


def as_format_1(table: pa.Table, metadata: dict[bytes, bytes]) -> pa.Table:
    """``table`` with ``metadata`` re-stamped as format 1 (no row count, no digests), as a hand-edited old file.

    The edits below change the rows; a format 2 or 3 file is refused for that by its row count or digest before
    the structural checks these tests are about (``test_parquet_integrity.py``).
    """
    meta = json.loads(metadata[b"opelab"])
    meta["format_version"] = 1
    del meta["n_rows"], meta["content_digest"], meta["row_group_digests"]
    return table.replace_schema_metadata({b"opelab": json.dumps(meta).encode()})


def round_trip(ds: LoggedDataset, path: Path) -> LoggedDataset:
    ds.to_parquet(path)
    return LoggedDataset.read_parquet(path)


def test_variable_length_with_probs(grid_ds: LoggedDataset, tmp_path: Path, assert_same_arrays) -> None:
    path = tmp_path / "grid.parquet"
    back = round_trip(grid_ds, path)
    assert back.equals(grid_ds)
    assert_same_arrays(back, grid_ds)
    assert back.behavior_action_probs is not None
    # one row per logged step, padding not stored
    table = pq.read_table(path)
    assert table.num_rows == grid_ds.n_transitions
    assert {"trajectory", "step", "observation", "action", "reward", "terminal", "behavior_pscore",
            "behavior_action_probs"} <= set(table.column_names)
    meta = json.loads(table.schema.metadata[b"opelab"])
    assert meta["n_trajectories"] == grid_ds.n_trajectories and meta["horizon"] == grid_ds.horizon


def test_fixed_length_without_probs(fixed_ds: LoggedDataset, tmp_path: Path, assert_same_arrays) -> None:
    path = tmp_path / "chain.parquet"
    back = round_trip(fixed_ds, path)
    assert back.equals(fixed_ds)
    assert_same_arrays(back, fixed_ds)
    assert back.behavior_action_probs is None
    assert "behavior_action_probs" not in pq.read_table(path).column_names


def test_continuous_2d_observations(continuous_ds: LoggedDataset, tmp_path: Path, assert_same_arrays) -> None:
    assert continuous_ds.lengths.tolist() == [4, 2, 3] and continuous_ds.horizon == 5  # horizon beyond the longest
    back = round_trip(continuous_ds, tmp_path / "cont.parquet")
    assert back.equals(continuous_ds)
    assert_same_arrays(back, continuous_ds)
    assert back.horizon == 5 and back.obs_shape == (3,)


def test_continuous_with_bounds_and_matrix_observations(
    make_continuous_trajectories, tmp_path: Path, assert_same_arrays
) -> None:
    trajs = make_continuous_trajectories((2, 3))
    for traj in trajs:
        traj["observations"] = traj["observations"].reshape(-1, 1, 3).repeat(2, axis=1).astype(np.float32)
    info = DatasetInfo(
        task="c",
        gamma=1.0,
        action_space=ActionSpace.continuous(2, low=[-1, -1], high=[1, 1]),
        seed=None,
        pscore_estimated=True,
    )
    ds = LoggedDataset.from_trajectories(trajs, info)
    assert ds.observations.shape == (2, 3, 2, 3) and ds.observations.dtype == np.float32
    back = round_trip(ds, tmp_path / "bounds.parquet")
    assert back.equals(ds)
    assert_same_arrays(back, ds)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int16])
def test_integer_observation_dtype_is_kept(grid_ds: LoggedDataset, tmp_path: Path, dtype, assert_same_arrays) -> None:
    ds = dataclasses.replace(grid_ds, observations=grid_ds.observations.astype(dtype))
    back = round_trip(ds, tmp_path / "int.parquet")
    assert back.observations.dtype == dtype
    assert back.equals(ds)
    assert_same_arrays(back, ds)


def test_narrow_action_dtype_is_kept(fixed_ds: LoggedDataset, tmp_path: Path) -> None:
    ds = dataclasses.replace(fixed_ds, actions=fixed_ds.actions.astype(np.uint8))
    back = round_trip(ds, tmp_path / "uint8.parquet")
    assert back.actions.dtype == np.uint8 and back.equals(ds)


def test_file_without_opelab_metadata(grid_ds: LoggedDataset, tmp_path: Path) -> None:
    path = tmp_path / "grid.parquet"
    grid_ds.to_parquet(path)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pq.read_table(path).replace_schema_metadata(None), plain)
    with pytest.raises(DatasetError, match="found a Parquet file without it"):
        LoggedDataset.read_parquet(plain)


def test_wrong_format_version(grid_ds: LoggedDataset, tmp_path: Path) -> None:
    path = tmp_path / "grid.parquet"
    grid_ds.to_parquet(path)
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"opelab"])
    meta["format_version"] = 99
    pq.write_table(table.replace_schema_metadata({b"opelab": json.dumps(meta).encode()}), path)
    with pytest.raises(DatasetError, match=r"format_version: expected one of \[1, 2, 3\], found 99: written by a newer opelab"):
        LoggedDataset.read_parquet(path)


def test_duplicated_rows(grid_ds: LoggedDataset, tmp_path: Path) -> None:
    path = tmp_path / "grid.parquet"
    grid_ds.to_parquet(path)
    table = pq.read_table(path)
    metadata = table.schema.metadata
    duplicated = as_format_1(pa.concat_tables([table, table.slice(5, 1)]), metadata)
    assert duplicated.num_rows == table.num_rows + 1
    bad = tmp_path / "twice.parquet"
    pq.write_table(duplicated, bad)
    with pytest.raises(DatasetError, match=r"trajectory/step: expected each \(trajectory, step\) pair once, found 1 duplicates"):
        LoggedDataset.read_parquet(bad)


def test_row_moved_onto_another_step(grid_ds: LoggedDataset, tmp_path: Path) -> None:
    """Same row count, but one (trajectory, step) pair twice and another missing."""
    path = tmp_path / "grid.parquet"
    grid_ds.to_parquet(path)
    table = pq.read_table(path)
    steps = table["step"].to_numpy().copy()
    steps[1] = steps[0]
    edited = table.set_column(table.column_names.index("step"), "step", pa.array(steps))
    pq.write_table(as_format_1(edited, table.schema.metadata), tmp_path / "moved.parquet")
    with pytest.raises(DatasetError, match="trajectory/step: expected each"):
        LoggedDataset.read_parquet(tmp_path / "moved.parquet")


def test_missing_step_makes_a_hole(grid_ds: LoggedDataset, tmp_path: Path) -> None:
    path = tmp_path / "grid.parquet"
    grid_ds.to_parquet(path)
    table = pq.read_table(path)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[2] = False  # trajectory 0, step 2 of a trajectory longer than 3 steps
    assert grid_ds.lengths[0] > 3
    pq.write_table(as_format_1(table.filter(pa.array(keep)), table.schema.metadata), tmp_path / "hole.parquet")
    with pytest.raises(DatasetError, match="mask: expected each trajectory's steps to be a prefix"):
        LoggedDataset.read_parquet(tmp_path / "hole.parquet")


def test_missing_column_and_out_of_range_step(grid_ds: LoggedDataset, tmp_path: Path) -> None:
    path = tmp_path / "grid.parquet"
    grid_ds.to_parquet(path)
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["reward"]), tmp_path / "noreward.parquet")
    with pytest.raises(DatasetError, match=r"columns: expected .* missing \['reward'\]"):
        LoggedDataset.read_parquet(tmp_path / "noreward.parquet")
    steps = table["step"].to_numpy().copy()
    steps[0] = grid_ds.horizon
    edited = table.set_column(table.column_names.index("step"), "step", pa.array(steps))
    pq.write_table(edited, tmp_path / "far.parquet")
    with pytest.raises(DatasetError, match=r"step: expected values in \[0, \d+\] \(horizon=\d+ in the metadata\)"):
        LoggedDataset.read_parquet(tmp_path / "far.parquet")


def test_corrupted_values_are_validated(grid_ds: LoggedDataset, tmp_path: Path) -> None:
    path = tmp_path / "grid.parquet"
    grid_ds.to_parquet(path)
    table = pq.read_table(path)
    pscore = table["behavior_pscore"].to_numpy().copy()
    pscore[3] = 0.0
    edited = table.set_column(table.column_names.index("behavior_pscore"), "behavior_pscore", pa.array(pscore))
    pq.write_table(as_format_1(edited, table.schema.metadata), tmp_path / "zero.parquet")
    with pytest.raises(DatasetError, match=r"behavior_pscore: expected probabilities in \(0, 1\], found .*0\.0\)? at index"):
        LoggedDataset.read_parquet(tmp_path / "zero.parquet")


@pytest.mark.parametrize("change", [dict(seed=np.int64(3)), dict(gamma=np.float32(0.5))], ids=["seed", "gamma"])
def test_numpy_scalars_in_info_round_trip(fixed_ds: LoggedDataset, tmp_path: Path, change: dict) -> None:
    ds = fixed_ds.with_info(**change)
    back = round_trip(ds, tmp_path / "np.parquet")
    assert back.equals(ds)


def test_float_trajectory_column_is_a_dataset_error(grid_ds: LoggedDataset, tmp_path: Path) -> None:
    path = tmp_path / "grid.parquet"
    grid_ds.to_parquet(path)
    table = pq.read_table(path)
    as_float = pa.array(table["trajectory"].to_numpy().astype(np.float64))
    pq.write_table(table.set_column(0, "trajectory", as_float), tmp_path / "float.parquet")
    with pytest.raises(DatasetError, match="trajectory: expected integers, found type double"):
        LoggedDataset.read_parquet(tmp_path / "float.parquet")
