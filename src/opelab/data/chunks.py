"""Whole trajectories a chunk at a time: from a ``LoggedDataset`` in memory or from Parquet files on disk.

A chunk is itself a ``LoggedDataset`` holding consecutive whole trajectories, padded only to the longest of
*them* (plus ``extra_steps`` padded steps, capped at the source's horizon). Chunks are cut so that their
padded size, trajectories × chunk horizon, stays within ``max_cells`` (a single trajectory longer than that
forms a chunk of its own): one very long trajectory among short ones costs its own length, not the number
of trajectories times it, and a source larger than memory is read a chunk at a time.

On disk a dataset is already packed: ``write_parquet`` stores one row per logged step, trajectory after
trajectory. A source is one such file or a folder of them (``*.parquet``, in name order); each file holds its
own trajectories, numbered from 0, so a trajectory cannot span files, and the files must agree on the
discount, the action space, the observation shape and the task. Within a file a trajectory may span row
groups and batches; it is carried over until its last step has been read.

Work units. A source splits into ``Unit``s, runs of row groups of one file whose boundaries are trajectory
boundaries (told from the row groups' min/max statistics of ``trajectory``; a file without statistics is one
unit). Units are small picklable descriptions that a worker process or a Ray task reads on its own;
``opelab.ope.streaming`` computes statistics per unit and combines them in unit order, so the result does
not depend on where the units ran.

Checks while streaming (each a ``DatasetError`` naming the file): the metadata and column types as
``read_parquet`` checks them, page checksums (verified by pyarrow as pages are decoded), rows in
trajectory-major order with steps 0, 1, … (what ``write_parquet`` writes; other orders are refused, not
sorted), trajectory numbers consecutive and within the metadata's count, a unit starting where its row-group
statistics say, and, once a whole file has been read, every trajectory and ``n_rows`` rows seen. Format 3
files (``write_parquet``, ``DatasetWriter``) carry a digest per row group that binds its decoded rows to the
file's metadata; each row group is verified as it is read, so a stream refuses a changed value, row or
metadata entry as ``read_parquet`` does. Format 2 files have only the whole-dataset digest, which a stream
cannot check (it covers the whole padded dataset at once): ``read_parquet`` them, or rewrite them, to have
that checked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from opelab.data.dataset import ARRAY_FIELDS, FILL_VALUES, DatasetInfo, LoggedDataset
from opelab.data.io import FIELDS, OPTIONAL_COLUMNS, _READ_ERRORS, _check_columns, _corrupt_column, _metadata, _open, _to_numpy, check_row_group, trailing_shapes
from opelab.data.validation import DatasetError, one_line
from opelab.resources import DEFAULT_MAX_CELLS



def chunk_bounds(lengths: np.ndarray, max_cells: int, horizon: int, extra_steps: int = 0) -> list[tuple[int, int, int]]:
    """Split trajectories of ``lengths`` (in order) into chunks ``(start, stop, chunk_horizon)``.

    Greedy: a chunk takes trajectories while (count × chunk horizon) ≤ ``max_cells``, where the chunk horizon
    is min(``horizon``, longest length + ``extra_steps``); a trajectory too long for any chunk gets its own.
    Vectorised per chunk over a window of at most ``max_cells`` trajectories (each has at least one step).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if max_cells < 1:
        raise ValueError(f"max_cells: expected a positive int, found {max_cells!r}")
    out = []
    start, n = 0, len(lengths)
    while start < n:
        window = lengths[start : min(n, start + max_cells)]
        h = np.minimum(np.maximum.accumulate(window) + extra_steps, horizon)
        cost = np.arange(1, len(window) + 1) * h
        over = np.flatnonzero(cost > max_cells)  # cost grows with the count: the first overflow ends the chunk
        fits = int(over[0]) if len(over) else len(window)
        fits = max(fits, 1)
        out.append((start, start + fits, int(h[fits - 1])))
        start += fits
    return out


def dataset_chunks(
    dataset: LoggedDataset, max_cells: int = DEFAULT_MAX_CELLS, extra_steps: int = 0, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, LoggedDataset]]:
    """(index of the chunk's first trajectory, chunk) for the trajectories ``start:stop`` of ``dataset``."""
    stop = dataset.n_trajectories if stop is None else stop
    for lo, hi, h in chunk_bounds(dataset.lengths[start:stop], max_cells, dataset.horizon, extra_steps):
        rows = slice(start + lo, start + hi)
        arrays = {name: (None if getattr(dataset, name) is None else getattr(dataset, name)[rows, :h]) for name in ARRAY_FIELDS}
        yield start + lo, LoggedDataset(info=dataset.info, **arrays)


# ---------------------------------------------------------------------------------------------- Parquet


@dataclass(frozen=True)
class FileMeta:
    """What the metadata of one file says (checked by ``opelab.data.io``)."""

    path: str
    info: DatasetInfo
    n_trajectories: int
    horizon: int
    obs_shape: tuple[int, ...]
    n_rows: int | None
    offset: int  # trajectories in the files before this one
    row_group_digests: tuple[str, ...] | None = None  # format 3: verified as each row group is read
    header: bytes | None = None


@dataclass(frozen=True)
class Unit:
    """Row groups ``row_groups`` of one file, starting at the file's trajectory ``first``: read by ``read_unit``."""

    index: int
    file: FileMeta
    row_groups: tuple[int, ...]
    first: int  # file-local number of the unit's first trajectory
    last: int | None  # of its last one (None: up to the end of the file)
    horizon: int  # the source's horizon (the longest file's): chunks are padded up to it, not the file's


@dataclass(frozen=True)
class ParquetSource:
    """One Parquet file or a folder of them, split into units (module docstring)."""

    files: tuple[FileMeta, ...]
    units: tuple[Unit, ...]

    @property
    def info(self) -> DatasetInfo:
        return self.files[0].info

    @property
    def horizon(self) -> int:
        return max(f.horizon for f in self.files)

    @property
    def n_trajectories(self) -> int:
        return sum(f.n_trajectories for f in self.files)

    @property
    def n_rows(self) -> int | None:
        rows = [f.n_rows for f in self.files]
        return None if any(r is None for r in rows) else sum(rows)  # type: ignore[misc]

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.files[0].obs_shape

    def describe(self) -> str:
        where = self.files[0].path if len(self.files) == 1 else f"{len(self.files)} files"
        return f"{where}: {self.n_trajectories} trajectories"


def parquet_files(path: str | Path) -> list[Path]:
    """The file itself, or the ``*.parquet`` files of a folder in name order (none: a ``DatasetError``)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: expected a Parquet file or a folder of them, found no such path")
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{path}: expected a folder holding *.parquet files, found none")
    return files


def open_source(path: str | Path | Sequence[str | Path]) -> ParquetSource:
    """Read the metadata of every file (not the data) and split the files into units."""
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else parquet_files(path)
    files: list[FileMeta] = []
    runs_of: list[tuple[FileMeta, list[tuple[tuple[int, ...], int, int | None]]]] = []
    offset = 0
    for file_path in paths:
        try:
            handle = _open(file_path)
            meta = _metadata(handle)
            _check_columns(handle.schema_arrow.empty_table(), meta)
            footer_rows = handle.metadata.num_rows
            if meta["n_rows"] is not None and footer_rows != meta["n_rows"]:
                raise DatasetError(f"rows: expected n_rows={meta['n_rows']} (the metadata), found {footer_rows} in the row groups")
        except DatasetError as error:
            raise DatasetError(f"{file_path}: {error}") from None
        fm = FileMeta(
            str(file_path), meta["info"], meta["n_trajectories"], meta["horizon"], meta["obs_shape"], meta["n_rows"], offset,
            meta["row_group_digests"], meta["header"],
        )  # fmt: skip
        if files:
            _check_compatible(files[0], fm)
        files.append(fm)
        try:
            runs = _split_row_groups(handle, fm.n_trajectories)
        except DatasetError as error:
            raise DatasetError(f"{file_path}: {error}") from None
        runs_of.append((fm, runs))
        offset += fm.n_trajectories
    horizon = max(fm.horizon for fm in files)
    pieces = [(fm, groups, first, last) for fm, runs in runs_of for groups, first, last in runs]
    units = [Unit(k, fm, groups, first, last, horizon) for k, (fm, groups, first, last) in enumerate(pieces)]
    return ParquetSource(tuple(files), tuple(units))


def _check_compatible(first: FileMeta, other: FileMeta) -> None:
    a, b = first.info, other.info
    for what, x, y in (
        ("info.task", a.task, b.task),
        ("info.gamma", a.gamma, b.gamma),
        ("info.action_space", a.action_space, b.action_space),
        ("obs_shape", first.obs_shape, other.obs_shape),
    ):
        if x != y:
            raise DatasetError(f"{other.path}: {what}: expected {x!r} like {first.path}, found {y!r}")


def _split_row_groups(handle: pq.ParquetFile, n: int) -> list[tuple[tuple[int, ...], int, int | None]]:
    """Runs of row groups whose boundaries fall between trajectories, with their first/last trajectory.

    The boundaries come from the first and last value of each row group's ``trajectory`` column (decoded,
    page checksums verified), not from the footer's column statistics: pyarrow (26) aborts the process on
    some damaged column metadata instead of raising, and statistics are optional anyway.
    """
    groups = handle.metadata.num_row_groups
    if groups == 0:
        return [((), 0, None)]
    bounds = []
    for g in range(groups):
        try:
            column = handle.read_row_group(g, columns=["trajectory"]).column(0)
        except _READ_ERRORS as error:
            raise DatasetError(f"expected intact data pages, found a corrupt page in column 'trajectory' ({one_line(error)})") from None
        if len(column) == 0 or column.null_count:
            raise DatasetError(f"trajectory: expected row group {g} to hold rows without missing values, found {len(column)} rows, {column.null_count} missing")
        bounds.append((int(column[0].as_py()), int(column[-1].as_py())))
    runs: list[list[int]] = [[0]]
    for g in range(1, groups):
        if bounds[g][0] > bounds[g - 1][1]:  # a new trajectory starts with this group
            runs.append([g])
        else:
            runs[-1].append(g)
    out = []
    for k, run in enumerate(runs):
        last = bounds[run[-1]][1] if k + 1 < len(runs) else None
        out.append((tuple(run), bounds[run[0]][0] if k else 0, last))
    return out


def read_unit(
    unit: Unit, max_cells: int = DEFAULT_MAX_CELLS, extra_steps: int = 0, batch_rows: int = 1 << 16
) -> Iterator[tuple[int, LoggedDataset]]:
    """(global index of the chunk's first trajectory, chunk) for the trajectories of one unit, in order.

    Raises ``DatasetError`` naming the file for rows out of order, missing trajectories or steps, and, on a
    unit that ends its file, for a row or trajectory count that differs from the metadata.
    """
    fm = unit.file
    try:
        yield from _read_unit(unit, max_cells, extra_steps, batch_rows)
    except DatasetError as error:
        raise DatasetError(f"{fm.path}: {error}") from None


def _read_unit(unit: Unit, max_cells: int, extra_steps: int, batch_rows: int) -> Iterator[tuple[int, LoggedDataset]]:
    fm = unit.file
    trailing = trailing_shapes(fm.info, fm.obs_shape)
    handle = pq.ParquetFile(fm.path, page_checksum_verification=True)
    names = handle.schema_arrow.names
    pieces: list[dict[str, np.ndarray]] = []  # rows of the trajectory still being read, batch by batch
    expected_next = unit.first  # file-local number of the next trajectory to start
    rows_seen = 0
    digests = {"row_group_digests": fm.row_group_digests, "header": fm.header}
    for g in unit.row_groups:  # one row group decoded at a time (the writer bounds their size)
        try:
            table = handle.read_row_group(g)
        except _READ_ERRORS as error:
            raise DatasetError(f"expected intact data pages, found {_corrupt_column(handle)}({one_line(error)})") from None
        group = {name: _to_numpy(table[name], name, trailing[name]) for name in names}
        del table
        if fm.row_group_digests is not None:
            check_row_group(digests, g, group)
        rows_seen += len(group["trajectory"])
        for lo in range(0, len(group["trajectory"]), batch_rows):
            columns = {name: values[lo : lo + batch_rows] for name, values in group.items()}
            batch_traj = columns["trajectory"]
            if pieces and (batch_traj == pieces[0]["trajectory"][0]).all():
                pieces.append(columns)  # still inside one long trajectory: joined once, when it ends
                continue
            if pieces:
                columns = {name: np.concatenate([piece[name] for piece in pieces] + [columns[name]]) for name in names}
                pieces = []
            traj = columns["trajectory"]
            complete = int(np.searchsorted(traj, traj[-1], side="left")) if len(traj) else 0
            if len(traj) and (np.diff(traj) < 0).any():
                complete = len(traj)  # _emit reports the order defect
            ready = {name: values[:complete] for name, values in columns.items()}
            rest = {name: values[complete:] for name, values in columns.items()}
            pieces = [rest] if len(rest["trajectory"]) else []
            if complete:
                expected_next = yield from _emit(ready, fm, expected_next, max_cells, extra_steps, unit.horizon)
    if pieces:
        rest = {name: np.concatenate([piece[name] for piece in pieces]) for name in names}
        expected_next = yield from _emit(rest, fm, expected_next, max_cells, extra_steps, unit.horizon)
    last_expected = (fm.n_trajectories - 1) if unit.last is None else unit.last
    if expected_next - 1 != last_expected:
        raise DatasetError(
            f"trajectory: expected trajectories {unit.first}..{last_expected} in row groups {list(unit.row_groups)}, "
            f"found {unit.first}..{expected_next - 1}"
            + (" (rows missing or the metadata's n_trajectories is wrong)" if unit.last is None else "")
        )
    if unit.last is None and unit.first == 0 and fm.n_rows is not None and rows_seen != fm.n_rows:
        raise DatasetError(f"rows: expected n_rows={fm.n_rows} (the metadata), found {rows_seen}")


def _emit(
    columns: dict[str, np.ndarray], fm: FileMeta, expected_next: int, max_cells: int, extra_steps: int, cap: int
) -> Iterator[tuple[int, LoggedDataset]]:
    """Check rows of whole trajectories and yield them as chunks; returns the next expected trajectory."""
    traj, step = columns["trajectory"].astype(np.int64), columns["step"].astype(np.int64)
    m = len(traj)
    jumps = np.diff(traj)
    if (jumps < 0).any() or (jumps > 1).any() or traj[0] != expected_next:
        previous = np.concatenate([[expected_next - 1], traj[:-1]])
        bad = int(np.flatnonzero((traj - previous < 0) | (traj - previous > 1))[0])
        raise DatasetError(
            "trajectory: expected rows in trajectory order with consecutive numbers (as write_parquet writes them), "
            f"found trajectory {traj[bad]} after {previous[bad]}"
        )
    if traj[-1] >= fm.n_trajectories:
        raise DatasetError(f"trajectory: expected values in [0, {fm.n_trajectories - 1}] (n_trajectories in the metadata), found {traj[-1]}")
    starts = np.flatnonzero(np.concatenate([[True], jumps != 0]))
    lengths = np.diff(np.append(starts, m))
    position = np.arange(m) - np.repeat(starts, lengths)
    if (step != position).any():
        bad = int(np.flatnonzero(step != position)[0])
        raise DatasetError(
            f"step: expected steps 0, 1, … in order within each trajectory, found step {step[bad]} at position "
            f"{position[bad]} of trajectory {traj[bad]}"
        )
    if lengths.max() > fm.horizon:
        raise DatasetError(f"step: expected values in [0, {fm.horizon - 1}] (horizon={fm.horizon} in the metadata), found {lengths.max() - 1}")
    ends = np.cumsum(lengths)
    for lo, hi, h in chunk_bounds(lengths, max_cells, cap, extra_steps):
        first_row = int(ends[lo - 1]) if lo else 0
        last_row = int(ends[hi - 1])
        k = hi - lo
        chunk_lengths = lengths[lo:hi]
        i = np.repeat(np.arange(k), chunk_lengths)
        t = position[first_row:last_row]
        mask = np.zeros((k, h), dtype=bool)
        mask[i, t] = True
        arrays: dict[str, Any] = {FIELDS[column]: None for column in OPTIONAL_COLUMNS}
        for column, field_name in FIELDS.items():
            if column not in columns:
                continue
            values = columns[column][first_row:last_row]
            padded = np.full((k, h, *values.shape[1:]), FILL_VALUES[field_name], dtype=values.dtype)
            padded[i, t] = values
            arrays[field_name] = padded
        yield fm.offset + int(traj[first_row]), LoggedDataset(mask=mask, info=fm.info, **arrays)
    return int(traj[-1]) + 1


def concatenate(chunks: Sequence[LoggedDataset], horizon: int | None = None) -> LoggedDataset:
    """One dataset of the chunks' trajectories in order, padded to ``horizon`` (default: the longest chunk's)."""
    if not chunks:
        raise DatasetError("chunks: expected at least one chunk, found 0")
    H = max(c.horizon for c in chunks) if horizon is None else horizon
    if any(c.lengths.max() > H for c in chunks):
        raise DatasetError(f"horizon: expected >= the longest trajectory ({max(int(c.lengths.max()) for c in chunks)}), found {H}")
    arrays: dict[str, Any] = {}
    for name in ARRAY_FIELDS:
        parts = [getattr(c, name) for c in chunks]
        if parts[0] is None:
            arrays[name] = None
            continue
        fill = FILL_VALUES[name] if name != "mask" else False
        out = np.full((sum(len(p) for p in parts), H, *parts[0].shape[2:]), fill, dtype=np.result_type(*parts))
        row = 0
        for part in parts:
            out[row : row + len(part), : part.shape[1]] = part
            row += len(part)
        arrays[name] = out
    return LoggedDataset(info=chunks[0].info, **arrays)


def head(source: ParquetSource, n_trajectories: int, horizon: int | None = None, max_cells: int = DEFAULT_MAX_CELLS) -> LoggedDataset:
    """The first ``n_trajectories`` trajectories of a source (or all, if it holds fewer) as one dataset padded to
    ``horizon`` (default: the longest of them), e.g. a sample to fit a model on before streaming."""
    chunks: list[LoggedDataset] = []
    taken = 0
    for unit in source.units:
        for _, chunk in read_unit(unit, max_cells):
            keep = min(chunk.n_trajectories, n_trajectories - taken)
            chunks.append(chunk if keep == chunk.n_trajectories else chunk.subset(np.arange(keep)))
            taken += keep
            if taken >= n_trajectories:
                return concatenate(chunks, horizon)
    return concatenate(chunks, horizon)
