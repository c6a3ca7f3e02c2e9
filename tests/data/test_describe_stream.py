"""``describe_source``: the summary of a dataset streamed a chunk at a time equals ``describe`` on all of it."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from opelab.cli import app
from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset
from opelab.data.chunks import chunk_bounds, dataset_chunks, open_source, read_unit
from opelab.data.describe import DatasetSummary, describe, describe_source
from opelab.envs import collect
from opelab.envs.tasks import TASKS
from opelab.policies import UniformPolicy


def assert_same(streamed: DatasetSummary, whole: DatasetSummary) -> None:
    """Counts, strings and flags exactly; floats to 1e-10 relative (sums are added in another order)."""
    a, b = streamed.to_dict(), whole.to_dict()
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        xs, ys = (x, y) if isinstance(x, list) else ([x], [y])
        assert len(xs) == len(ys), key
        for u, v in zip(xs, ys):
            if isinstance(v, float) and not isinstance(v, bool):
                assert isinstance(u, float) and math.isclose(u, v, rel_tol=1e-10, abs_tol=1e-300), (key, u, v)
            else:
                assert type(u) is type(v) and u == v, (key, u, v)


def n_chunks(ds: LoggedDataset, max_cells: int) -> int:
    return len(chunk_bounds(ds.lengths, max_cells, ds.horizon))


def float_dataset(n: int = 40, seed: int = 0, continuous: bool = False, scale_last: float = 5.0) -> LoggedDataset:
    """Float observations (obs_shape (2,)), lengths 1..12 padded to 15; the last trajectory stretches the
    observation range (a per-chunk grid would bin differently); continuous actions clipped to [-1, 1]."""
    rng = np.random.default_rng(seed)
    space = ActionSpace.continuous(2, low=(-1, -1), high=(1, 1)) if continuous else ActionSpace.discrete(3)
    trajectories = []
    for i in range(n):
        T = int(rng.integers(1, 13))
        obs = rng.normal(size=(T, 2)) * (scale_last if i == n - 1 else 1.0)
        actions = np.clip(rng.normal(size=(T, 2)), -1, 1) if continuous else rng.integers(0, 3, size=T)
        pscore = rng.uniform(0.05, 3.0, size=T) if continuous else rng.choice([0.005, 0.2, 0.5], size=T)
        trajectories.append(
            dict(observations=obs, actions=actions, rewards=rng.normal(size=T), behavior_pscore=pscore, terminal=bool(i % 3 == 0))
        )
    info = DatasetInfo(task="toy-float", gamma=0.95, action_space=space, behavior_policy="mixed", seed=seed)
    return LoggedDataset.from_trajectories(trajectories, info, horizon=15)


@pytest.fixture(scope="module")
def tabular() -> dict[str, LoggedDataset]:
    """Integer observations from the tabular tasks (gridworld and random: variable lengths)."""
    out = {}
    for name in ("gridworld", "random", "chain"):
        task = TASKS[name]()
        out[name] = collect(task, UniformPolicy(task.n_actions), 60, seed=3)
    return out


DATASETS = {
    "float-discrete": lambda: float_dataset(),
    "float-continuous": lambda: float_dataset(continuous=True, seed=1),
}


def write(ds: LoggedDataset, path: Path, row_group_size: int | None = None) -> Path:
    """``to_parquet``, with small row groups when ``row_group_size`` is given."""
    ds.to_parquet(path, row_group_rows=row_group_size)
    return path


# ---------------------------------------------------------------------------------------------- in memory
@pytest.mark.parametrize("name", ["gridworld", "random", "chain"])
@pytest.mark.parametrize("max_cells", [1, 7, 50, 10**6])
def test_tabular_in_memory(tabular: dict[str, LoggedDataset], name: str, max_cells: int) -> None:
    ds = tabular[name]
    if max_cells < 10**6:
        assert n_chunks(ds, max_cells) > 1
    reference = tabular["gridworld" if name != "gridworld" else "random"]
    kwargs: dict[str, Any] = dict(random_return=-1.0, expert_return=2.0)
    assert_same(describe_source(ds, max_cells=max_cells, **kwargs), describe(ds, **kwargs))
    if reference.obs_shape == ds.obs_shape and reference.action_space == ds.action_space:
        assert_same(describe_source(ds, max_cells=max_cells, reference=reference), describe(ds, reference=reference))


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(DATASETS)), max_cells=st.integers(1, 200), bins=st.integers(1, 6), discounted=st.booleans())
def test_float_in_memory_any_chunking(name: str, max_cells: int, bins: int, discounted: bool) -> None:
    ds = DATASETS[name]()
    reference = float_dataset(n=8, seed=9, continuous=name.endswith("continuous"), scale_last=20.0)  # widens the grid
    for ref in (None, reference):
        kwargs: dict[str, Any] = dict(bins=bins, discounted=discounted, random_return=0.0, expert_return=1.0, reference=ref)
        assert_same(describe_source(ds, max_cells=max_cells, **kwargs), describe(ds, **kwargs))


def test_unique_pairs_are_merged_across_chunks(tabular: dict[str, LoggedDataset]) -> None:
    """The chunks share state-action pairs: adding per-chunk unique counts would overcount."""
    ds = tabular["chain"]
    per_chunk = sum(describe(chunk).unique_state_actions for _, chunk in dataset_chunks(ds, 20))
    whole = describe(ds).unique_state_actions
    assert per_chunk > whole == describe_source(ds, max_cells=20).unique_state_actions


def test_merging_in_many_rounds() -> None:
    """More distinct keys than one merge round takes (``_UniqueRows`` merges pending uniques periodically)."""
    from opelab.data.describe import _UniqueRows

    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 40, size=(300, 2)) for _ in range(30)]
    rows = _UniqueRows(min_rows=50)
    for part in parts:
        rows.add(part)
    assert rows.count() == len(np.unique(np.concatenate(parts), axis=0))


# ---------------------------------------------------------------------------------------------- Parquet
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(DATASETS)),
    row_group_size=st.integers(1, 120),
    max_cells=st.integers(1, 300),
)
def test_parquet_any_row_groups_and_chunks(name: str, row_group_size: int, max_cells: int) -> None:
    ds = DATASETS[name]()
    with tempfile.TemporaryDirectory() as folder:
        path = write(ds, Path(folder) / "data.parquet", row_group_size)
        source = open_source(path)
        assert describe_source(source, max_cells=max_cells) == describe_source(path, max_cells=max_cells)
        assert_same(describe_source(source, max_cells=max_cells), describe(ds))


def test_parquet_tabular_with_reference(tmp_path: Path, tabular: dict[str, LoggedDataset]) -> None:
    ds, reference = tabular["random"], tabular["random"].subset(np.arange(10))
    path = write(ds, tmp_path / "random.parquet", row_group_size=37)
    assert len(open_source(path).units) > 1
    assert_same(describe_source(path, max_cells=30, reference=reference), describe(ds, reference=reference))


def test_folder_of_files(tmp_path: Path) -> None:
    ds = float_dataset(n=50, continuous=True)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, (lo, hi) in enumerate([(0, 7), (7, 30), (30, 31), (31, 50)]):
        write(ds.subset(np.arange(lo, hi)), folder / f"part-{k:02d}.parquet", row_group_size=11)
    reference = float_dataset(n=5, seed=4, continuous=True, scale_last=9.0)
    assert len(open_source(folder).files) == 4
    for ref in (None, reference):
        assert_same(describe_source(folder, max_cells=40, reference=ref, bins=4), describe(ds, reference=ref, bins=4))


def test_folder_horizon_and_behavior_policies(tmp_path: Path) -> None:
    """The whole dataset's horizon is the largest of the files'; different behavior policies are all named."""
    ds = float_dataset(n=12)
    short = LoggedDataset(info=ds.info, **{k: v[:6, :ds.lengths[:6].max()] for k, v in _arrays(ds).items()})
    write(short.with_info(behavior_policy="a"), tmp_path / "0.parquet")
    write(ds.subset(np.arange(6, 12)).with_info(behavior_policy="b", pscore_estimated=True), tmp_path / "1.parquet")
    s = describe_source(tmp_path)
    assert s.horizon == 15 > short.horizon and s.behavior_policy == "a + b" and s.pscore_estimated
    assert_same(dataclasses.replace(s, behavior_policy="mixed", pscore_estimated=False), describe(ds))


def _arrays(ds: LoggedDataset) -> dict[str, Any]:
    names = ("observations", "actions", "rewards", "terminals", "mask", "behavior_pscore", "behavior_action_probs")
    return {name: getattr(ds, name) for name in names if getattr(ds, name) is not None}


def test_long_trajectory_among_short_ones(tmp_path: Path) -> None:
    """One 3,000-step trajectory and 200 short ones: chunks of 500 cells never pad the short ones to 3,000."""
    rng = np.random.default_rng(2)
    lengths = [3000] + [int(x) for x in rng.integers(1, 6, size=200)]
    trajectories = [
        dict(observations=rng.normal(size=(T, 1)), actions=rng.integers(0, 2, size=T), rewards=rng.normal(size=T),
             behavior_pscore=np.full(T, 0.5))
        for T in lengths
    ]  # fmt: skip
    ds = LoggedDataset.from_trajectories(trajectories, DatasetInfo(task="long", gamma=0.999, action_space=ActionSpace.discrete(2)))
    path = write(ds, tmp_path / "long.parquet", row_group_size=700)
    seen = []
    for unit in open_source(path).units:
        seen += [chunk.mask.size for _, chunk in read_unit(unit, 500)]
    assert max(seen) == 3000 and sum(seen) < 2 * ds.n_transitions
    assert_same(describe_source(path, max_cells=500), describe(ds))


# ---------------------------------------------------------------------------------------------- errors and CLI
def test_bad_arguments(tmp_path: Path) -> None:
    ds = float_dataset(n=3)
    with pytest.raises(ValueError, match="max_cells: expected a positive int"):
        describe_source(ds, max_cells=0)
    with pytest.raises(ValueError, match="source: expected a path"):
        describe_source(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bins: expected a positive int"):
        describe_source(ds, bins=0)
    ints = LoggedDataset.from_trajectories(
        [dict(observations=np.array([[0, 1]]), actions=np.array([0]), rewards=np.zeros(1), behavior_pscore=np.ones(1))], ds.info
    )
    with pytest.raises(ValueError, match="reference: expected float observations like the dataset's, found dtype int64"):
        describe_source(ds, reference=ints)
    with pytest.raises(DatasetError, match="no such path"):
        describe_source(tmp_path / "absent")


def test_describe_command_streams_folders_and_files(tmp_path: Path) -> None:
    ds = float_dataset(n=20)
    folder = tmp_path / "parts"
    folder.mkdir()
    write(ds.subset(np.arange(0, 9)), folder / "a.parquet")
    write(ds.subset(np.arange(9, 20)), folder / "b.parquet", row_group_size=5)
    runner = CliRunner()
    rows = describe(ds).to_table()
    for target in (folder, write(ds, tmp_path / "all.parquet", row_group_size=3)):
        result = runner.invoke(app, ["describe", str(target)], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for label, value in rows:
            assert any(label in line and line.rstrip().endswith(value) for line in result.output.splitlines()), (label, value)
    empty = tmp_path / "empty"
    empty.mkdir()
    for target, word in ((empty, "found none"), (tmp_path / "absent.parquet", "found nothing")):
        result = runner.invoke(app, ["describe", str(target)], env={"COLUMNS": "200"})
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and word in lines[0], result.output
