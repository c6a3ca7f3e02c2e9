"""Parquet storage of a ``LoggedDataset``: one row per logged step, padding rebuilt on read.

Columns: ``trajectory`` (int64), ``step`` (int64), ``observation`` (scalar, or a fixed-size list of the
flattened observation), ``action`` (int, or a fixed-size list for continuous actions), ``reward``,
``terminal``, ``behavior_pscore`` and, when present, ``behavior_action_probs`` (fixed-size list). The schema's
metadata key ``opelab`` holds a JSON document with the format version, the ``DatasetInfo``, the number of
trajectories, the horizon and the observation shape, so a file round-trips exactly (dtypes included).

Integrity (format version 3). A file is written with Parquet page checksums (CRC-32 of every data page,
verified on read), and its metadata also holds ``n_rows``, ``content_digest``, the SHA-256 of the dataset
(``LoggedDataset.content_digest``: info, dtypes, shapes and values), and ``row_group_digests``, one SHA-256 per
row group (``ROW_GROUP_ROWS`` rows each by default) of its decoded rows together with the file's header
(info, counts, horizon, observation shape). The reader rebuilds the dataset and compares the content
digest; a stream (``opelab.data.chunks``), which never holds the whole dataset, verifies each row group's
digest as it reads it. ``DatasetWriter`` appends chunks to one file without holding them all; its files have
no content digest (``null``), and ``read_parquet`` verifies their row-group digests instead. Why digests on
top of checksums: page checksums cover the page *bodies* only, not the page headers, the footer (Thrift:
schema, row counts, offsets, encodings) nor the key-value metadata, and a flip there can still parse, e.g. a
column's type in the embedded Arrow schema, a page's value count, or a digit of the horizon or of a reward
bound in the JSON. The digests are computed from what was decoded, so whatever changed the data (data,
schema or metadata) is refused; a flip that leaves the decoded data unchanged (column statistics, the
``created_by`` string, an unused offset) is harmless and the file loads. The digests are an integrity
check, not a signature: anyone who edits a file can recompute them. Format 2 files (content digest, no
row-group digests) and format 1 files (neither) still load.

Reading refuses, with one ``DatasetError`` line naming the file, what was expected and what was found: a
missing path, a directory, an empty, truncated or non-Parquet file, a Parquet file without the ``opelab``
key, metadata that is not a JSON object or lacks a key or has a key of the wrong type, a format version
from the future, counts that are not positive integers, columns whose types or widths contradict the
metadata (observation shape, action space, number of actions), trajectories without rows, failed page
checksums and a digest that does not match. Format version 1 files (written before page checksums and the
digests) still load, checked by everything but the digests.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from opelab.data.dataset import FILL_VALUES, DatasetInfo, LoggedDataset
from opelab.data.validation import DatasetError, check_keys, json_type, one_line, reject_json_constant
from opelab.resources import DataSize, ResourceError, check_memory, dataset_bytes

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
METADATA_KEY = b"opelab"
MAGIC = b"PAR1"
# what pyarrow raises on a damaged file: its own errors, I/O errors and names that are not UTF-8
_READ_ERRORS = (pa.ArrowException, OSError, UnicodeDecodeError)
COLUMNS = ("trajectory", "step", "observation", "action", "reward", "terminal", "behavior_pscore")
OPTIONAL_COLUMNS = ("behavior_action_probs", "position", "behavior_log_pscore", "behavior_marginal_pscore")
FIELDS = {  # column -> LoggedDataset field
    "observation": "observations",
    "action": "actions",
    "reward": "rewards",
    "terminal": "terminals",
    "behavior_pscore": "behavior_pscore",
    "behavior_action_probs": "behavior_action_probs",
    "position": "positions",
    "behavior_log_pscore": "behavior_log_pscore",
    "behavior_marginal_pscore": "behavior_marginal_pscore",
}


def _column(values: np.ndarray) -> pa.Array:
    """A step-major column; trailing axes become one fixed-size list per row."""
    if values.ndim == 1:
        return pa.array(values)
    width = int(np.prod(values.shape[1:]))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, width)


ROW_GROUP_ROWS = 1 << 20  # rows per row group: the unit a stream verifies and a worker reads


def _step_columns(dataset: LoggedDataset, first_trajectory: int = 0) -> dict[str, np.ndarray]:
    """The dataset's logged steps as flat numpy columns (what a reader decodes), trajectory-major."""
    traj, step = np.nonzero(dataset.mask)
    columns = {
        "trajectory": (traj + first_trajectory).astype(np.int64),
        "step": step.astype(np.int64),
        "observation": np.ascontiguousarray(dataset.observations[traj, step]),
        "action": np.ascontiguousarray(dataset.actions[traj, step]),
        "reward": np.ascontiguousarray(dataset.rewards[traj, step]),
        "terminal": np.ascontiguousarray(dataset.terminals[traj, step]),
        "behavior_pscore": np.ascontiguousarray(dataset.behavior_pscore[traj, step]),
    }
    for column in OPTIONAL_COLUMNS:
        values = getattr(dataset, FIELDS[column])
        if values is not None:
            columns[column] = np.ascontiguousarray(values[traj, step])
    return columns


def data_digest(columns: dict[str, np.ndarray]) -> bytes:
    """SHA-256 of decoded step columns (names, dtypes, shapes, bytes in ``COLUMNS`` order)."""
    digest = hashlib.sha256(b"opelab.rows\0")
    for name in (*COLUMNS, *OPTIONAL_COLUMNS):
        if name in columns:
            values = np.ascontiguousarray(columns[name])
            digest.update(f"\0{name}:{values.dtype.str}:{values.shape}\0".encode())
            digest.update(values.data)
    return digest.digest()


def _header(info: DatasetInfo, n_trajectories: int, horizon: int, obs_shape: tuple[int, ...], n_rows: int) -> bytes:
    """What the metadata says about the whole file, as canonical JSON: part of every row-group digest."""
    doc = {"info": json.loads(info.to_json()), "n_trajectories": n_trajectories, "horizon": horizon, "obs_shape": list(obs_shape), "n_rows": n_rows}
    return json.dumps(doc, sort_keys=True).encode()


def row_group_digest(header: bytes, index: int, data: bytes) -> str:
    """Row group ``index``'s digest: its decoded rows (``data_digest``) bound to the file's header."""
    return hashlib.sha256(b"opelab.row_group\0" + header + f"\0{index}\0".encode() + data).hexdigest()


def _table(columns: dict[str, np.ndarray]) -> pa.Table:
    return pa.table({name: _column(values) for name, values in columns.items()})


def write_parquet(dataset: LoggedDataset, path: str | Path, row_group_rows: int = ROW_GROUP_ROWS) -> None:
    """One file (format 3: page checksums, row groups of ``row_group_rows`` rows each with its digest, and
    the whole dataset's content digest)."""
    if isinstance(row_group_rows, bool) or not isinstance(row_group_rows, int) or row_group_rows < 1:
        raise ValueError(f"row_group_rows: expected a positive int, found {row_group_rows!r}")
    columns = _step_columns(dataset)
    n_rows = len(columns["trajectory"])
    header = _header(dataset.info, dataset.n_trajectories, dataset.horizon, dataset.obs_shape, n_rows)
    bounds = [(lo, min(lo + row_group_rows, n_rows)) for lo in range(0, n_rows, row_group_rows)]
    digests = [
        row_group_digest(header, g, data_digest({name: values[lo:hi] for name, values in columns.items()}))
        for g, (lo, hi) in enumerate(bounds)
    ]
    meta = {
        "format_version": FORMAT_VERSION,
        "info": json.loads(dataset.info.to_json()),
        "n_trajectories": dataset.n_trajectories,
        "horizon": dataset.horizon,
        "obs_shape": list(dataset.obs_shape),
        "n_rows": n_rows,
        "content_digest": dataset.content_digest,
        "row_group_digests": digests,
    }
    table = _table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    with pq.ParquetWriter(path, table.schema, write_page_checksum=True) as writer:
        for lo, hi in bounds:
            writer.write_table(table.slice(lo, hi - lo), row_group_size=row_group_rows)


class DatasetWriter:
    """Append datasets to one Parquet file without holding them all: ``with DatasetWriter(path, info) as w:
    w.write(chunk)`` for each chunk of whole trajectories (renumbered after the ones before).

    The file is the format ``read_parquet`` and the streams of ``opelab.data.chunks`` read (version 3),
    except that it has no whole-dataset content digest (that needs the whole padded dataset): every row group
    has its digest, which binds its rows to the metadata, and readers verify those instead. The horizon is
    ``horizon`` or, if not given, the longest trajectory written. The file appears under its name only when
    the writer closes without an error (it is written to a temporary name and renamed), so an interrupted
    run leaves no file that looks complete.
    """

    def __init__(self, path: str | Path, info: DatasetInfo, horizon: int | None = None, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        if isinstance(row_group_rows, bool) or not isinstance(row_group_rows, int) or row_group_rows < 1:
            raise ValueError(f"row_group_rows: expected a positive int, found {row_group_rows!r}")
        self.path = Path(path)
        self.info = info
        self._closed = False
        self.horizon = horizon
        self.row_group_rows = row_group_rows
        self._partial = self.path.with_name(f".{self.path.name}.partial")
        self._writer: pq.ParquetWriter | None = None
        self._data: list[bytes] = []
        self.n_trajectories = 0
        self.n_rows = 0
        self._longest = 0
        self._obs_shape: tuple[int, ...] | None = None

    def write(self, dataset: LoggedDataset) -> None:
        if self._closed:
            raise DatasetError(f"{self.path}: expected an open writer, found one already closed (open a new DatasetWriter)")
        if dataset.info != self.info:
            raise DatasetError(f"info: expected {self.info.to_json()} (the writer's), found {dataset.info.to_json()}")
        if self._obs_shape is not None and dataset.obs_shape != self._obs_shape:
            raise DatasetError(f"obs_shape: expected {self._obs_shape} like the data written before, found {dataset.obs_shape}")
        columns = _step_columns(dataset, self.n_trajectories)
        table = _table(columns)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._partial, table.schema, write_page_checksum=True)
            self._obs_shape = dataset.obs_shape
        elif not table.schema.equals(self._writer.schema):
            raise DatasetError(f"columns: expected the types written before ({self._writer.schema}), found {table.schema}")
        rows = table.num_rows
        for lo in range(0, rows, self.row_group_rows):
            hi = min(lo + self.row_group_rows, rows)
            self._data.append(data_digest({name: values[lo:hi] for name, values in columns.items()}))
            self._writer.write_table(table.slice(lo, hi - lo), row_group_size=self.row_group_rows)
        self.n_trajectories += dataset.n_trajectories
        self.n_rows += rows
        self._longest = max(self._longest, int(dataset.lengths.max()))

    def close(self) -> None:
        """Write the metadata and move the file into place (on an error, remove the partial file)."""
        if self._closed:
            raise DatasetError(f"{self.path}: expected an open writer, found one already closed")
        try:
            self._close()
            self._closed = True
        except BaseException:
            self.abort()
            raise

    def _close(self) -> None:
        if self._writer is None:
            raise DatasetError(f"{self.path}: expected at least one trajectory written, found none")
        horizon = self._longest if self.horizon is None else self.horizon
        if horizon < self._longest:
            raise DatasetError(f"horizon: expected >= the longest trajectory written ({self._longest}), found {horizon}")
        assert self._obs_shape is not None
        header = _header(self.info, self.n_trajectories, horizon, self._obs_shape, self.n_rows)
        meta = {
            "format_version": FORMAT_VERSION,
            "info": json.loads(self.info.to_json()),
            "n_trajectories": self.n_trajectories,
            "horizon": horizon,
            "obs_shape": list(self._obs_shape),
            "n_rows": self.n_rows,
            "content_digest": None,
            "row_group_digests": [row_group_digest(header, g, d) for g, d in enumerate(self._data)],
        }
        self._writer.add_key_value_metadata({METADATA_KEY: json.dumps(meta).encode()})
        self._writer.close()
        self._writer = None
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def read_parquet(path: str | Path) -> LoggedDataset:
    """Read a file written by ``write_parquet`` (module docstring); any defect is one ``DatasetError`` line."""
    path = Path(path)
    try:
        return _read(path)
    except DatasetError as error:
        raise DatasetError(f"{path}: {error}") from None
    except ResourceError as error:
        raise ResourceError(f"{path}: {error}") from None


# ---------------------------------------------------------------------------------------------- reading


def _read(path: Path) -> LoggedDataset:
    file = _open(path)
    meta = _metadata(file)
    try:
        table = file.read()
    except _READ_ERRORS as error:
        raise DatasetError(f"expected intact data pages, found {_corrupt_column(file)}({one_line(error)})") from None
    _check_columns(table, meta)
    n, H = meta["n_trajectories"], meta["horizon"]
    if meta["n_rows"] is not None and table.num_rows != meta["n_rows"]:
        raise DatasetError(f"rows: expected n_rows={meta['n_rows']} (the metadata), found {table.num_rows}")

    traj = _to_numpy(table["trajectory"], "trajectory", ())
    step = _to_numpy(table["step"], "step", ())
    for name, values, bound, key in (("trajectory", traj, n, "n_trajectories"), ("step", step, H, "horizon")):
        if values.size and (values.min() < 0 or values.max() >= bound):
            raise DatasetError(
                f"{name}: expected values in [0, {bound - 1}] ({key}={bound} in the metadata), "
                f"found range [{values.min()}, {values.max()}]"
            )
    traj, step = traj.astype(np.int64), step.astype(np.int64)  # in range, so exact
    rows = np.bincount(traj, minlength=n)
    if (rows == 0).any():
        empty = np.flatnonzero(rows == 0)
        raise DatasetError(
            f"trajectory: expected rows for each of the n_trajectories={n} trajectories in the metadata, "
            f"found none for {len(empty)} of them (first: trajectory {empty[0]})"
        )
    _check_padded_size(meta, n, H)
    mask = np.zeros((n, H), dtype=bool)
    mask[traj, step] = True
    if int(mask.sum()) != len(traj):
        raise DatasetError(f"trajectory/step: expected each (trajectory, step) pair once, found {len(traj) - int(mask.sum())} duplicates")

    info: DatasetInfo = meta["info"]
    trailing = trailing_shapes(info, meta["obs_shape"])
    arrays: dict[str, np.ndarray | None] = {FIELDS[column]: None for column in OPTIONAL_COLUMNS}
    for column, field_name in FIELDS.items():
        if column not in table.column_names:
            continue
        values = _to_numpy(table[column], column, trailing[column])
        padded = np.full((n, H, *values.shape[1:]), FILL_VALUES[field_name], dtype=values.dtype)
        padded[traj, step] = values
        arrays[field_name] = padded
    dataset = LoggedDataset(mask=mask, info=info, **arrays)
    if meta["content_digest"] is None and meta["row_group_digests"] is not None:
        _verify_row_groups(file, meta)  # written chunk by chunk (DatasetWriter): no whole-dataset digest
    if meta["content_digest"] is not None and dataset.content_digest != meta["content_digest"]:
        raise DatasetError(
            f"content_digest: expected {meta['content_digest'][:16]}… (the metadata), found {dataset.content_digest[:16]}… "
            "for the data read: the file was changed or corrupted after it was written"
        )
    return dataset


def _check_padded_size(meta: dict, n: int, H: int) -> None:
    """Refuse (``ResourceError``), before allocating, padded (n, H) arrays that cannot fit in memory: a file
    holding one very long trajectory, or metadata claiming an absurd horizon."""

    space = meta["info"].action_space
    size = DataSize(
        n, H, int(np.prod(meta["obs_shape"], dtype=np.int64)), space.n_actions if space.is_discrete else None,
        1 if space.is_discrete else int(space.action_dim),
    )  # fmt: skip
    check_memory(dataset_bytes(n, size), f"reading {n} trajectories padded to horizon {H}")


def _open(path: Path) -> pq.ParquetFile:
    """The file as a ``ParquetFile`` (page checksums verified on read), after the checks that name the defect."""
    expected = "expected a Parquet file written by LoggedDataset.to_parquet"
    if not path.exists():
        raise DatasetError(f"{expected}, found no such file")
    if path.is_dir():
        raise DatasetError(f"{expected}, found a directory (a dataset is one file)")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(max(size - 4, 0), os.SEEK_SET)
            tail = handle.read(4)
    except OSError as error:
        raise DatasetError(f"{expected}, found a file that cannot be read ({one_line(error)})") from None
    if size == 0:
        raise DatasetError(f"{expected}, found an empty file (0 bytes)")
    if head != MAGIC:
        raise DatasetError(f"{expected} (starting with {MAGIC!r}), found a file starting with {head!r}: not Parquet")
    if size < 12 or tail != MAGIC:
        raise DatasetError(
            f"{expected} (ending with {MAGIC!r}), found {size} bytes ending with {tail!r}: the file is truncated"
        )
    try:
        return pq.ParquetFile(path, page_checksum_verification=True)
    except _READ_ERRORS as error:
        raise DatasetError(f"expected a readable Parquet footer, found a corrupt one ({one_line(error)})") from None


def _corrupt_column(file: pq.ParquetFile) -> str:
    """Which column fails to decode, in words ("a corrupt page in column 'reward' "), for the error message."""
    try:
        names = file.schema_arrow.names
    except _READ_ERRORS:
        return "a corrupt file "
    for name in names:
        try:
            file.read(columns=[name])
        except _READ_ERRORS:
            return f"a corrupt page in column {name!r} "
    return "a corrupt file "


def _metadata(file: pq.ParquetFile) -> dict[str, Any]:
    """The ``opelab`` metadata, parsed and checked key by key (``info`` becomes a ``DatasetInfo``)."""
    try:
        key_values = file.metadata.metadata or {}
    except _READ_ERRORS as error:
        raise DatasetError(f"expected a readable Parquet footer, found a corrupt one ({one_line(error)})") from None
    raw = key_values.get(METADATA_KEY)
    if raw is None:
        keys = sorted(k.decode("utf-8", "replace") for k in key_values)
        raise DatasetError(
            f"expected a Parquet file written by LoggedDataset.to_parquet (metadata key 'opelab'), "
            f"found a Parquet file without it (metadata keys {keys})"
        )
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=reject_json_constant)
    except UnicodeDecodeError as error:
        raise DatasetError(f"metadata opelab: expected UTF-8 JSON, found undecodable bytes at position {error.start}") from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity
        raise DatasetError(f"metadata opelab: expected a JSON object, found text that does not parse ({one_line(error)})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"metadata opelab: expected a JSON object, found {json_type(meta)}")

    check_keys(meta, "metadata opelab", required=("format_version",), optional=tuple(meta))
    version = meta["format_version"]
    if not _is_int(version) or version not in READABLE_VERSIONS:
        newer = _is_int(version) and version > FORMAT_VERSION
        raise DatasetError(
            f"metadata opelab.format_version: expected one of {list(READABLE_VERSIONS)}, found {version!r}"
            + (": written by a newer opelab; upgrade to read it" if newer else "")
        )
    integrity = ("n_rows", "content_digest") if version >= 2 else ()
    integrity_keys = (*integrity, "row_group_digests") if version >= 3 else integrity
    check_keys(meta, "metadata opelab", required=("format_version", "info", "n_trajectories", "horizon", "obs_shape", *integrity_keys))
    for key in ("n_trajectories", "horizon", *integrity[:1]):
        if not _is_int(meta[key]) or meta[key] < 1:
            raise DatasetError(f"metadata opelab.{key}: expected a positive integer, found {meta[key]!r}")
    shape = meta["obs_shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 1 for d in shape):
        raise DatasetError(f"metadata opelab.obs_shape: expected a list of positive integers ([] for scalars), found {shape!r}")
    digest = meta.get("content_digest")
    if (version == 2 or digest is not None) and not _is_sha256(digest):
        raise DatasetError(
            f"metadata opelab.content_digest: expected 64 lowercase hex digits (SHA-256){' or null' if version >= 3 else ''}, found {digest!r}"
        )
    row_groups = None
    if version >= 3:
        row_groups = meta["row_group_digests"]
        try:
            expected = file.metadata.num_row_groups
        except _READ_ERRORS as error:
            raise DatasetError(f"expected a readable Parquet footer, found a corrupt one ({one_line(error)})") from None
        if not isinstance(row_groups, list) or not all(_is_sha256(d) for d in row_groups) or len(row_groups) != expected:
            found = f"{len(row_groups)} entries" if isinstance(row_groups, list) and all(_is_sha256(d) for d in row_groups) else repr(row_groups)[:80]
            raise DatasetError(
                f"metadata opelab.row_group_digests: expected one SHA-256 (64 lowercase hex digits) per row group ({expected}), found {found}"
            )
    info = DatasetInfo.from_dict(meta["info"], where="metadata opelab.info")
    return {
        "info": info,
        "n_trajectories": meta["n_trajectories"],
        "horizon": meta["horizon"],
        "obs_shape": tuple(shape),
        "n_rows": meta.get("n_rows"),
        "content_digest": digest,
        "row_group_digests": None if row_groups is None else tuple(row_groups),
        "header": None if row_groups is None else _header(info, meta["n_trajectories"], meta["horizon"], tuple(shape), meta["n_rows"]),
    }


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def trailing_shapes(info: DatasetInfo, obs_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Each column's shape per row, from the metadata's info and observation shape."""
    space = info.action_space
    return {
        "trajectory": (),
        "step": (),
        "observation": tuple(obs_shape),
        "action": () if space.is_discrete else (space.action_dim,),
        "reward": (),
        "terminal": (),
        "behavior_pscore": (),
        "behavior_action_probs": (space.n_actions,) if space.is_discrete else (),
        "position": (),
        "behavior_log_pscore": (),
        "behavior_marginal_pscore": (),
    }


def check_row_group(meta: dict[str, Any], index: int, columns: dict[str, np.ndarray]) -> None:
    """Refuse a row group whose decoded rows (or the file's metadata) differ from what was written."""
    expected = meta["row_group_digests"][index]
    found = row_group_digest(meta["header"], index, data_digest(columns))
    if found != expected:
        raise DatasetError(
            f"row_group_digests[{index}]: expected {expected[:16]}… (the metadata), found {found[:16]}… for the rows "
            "read: the file or its metadata was changed or corrupted after it was written"
        )


def _verify_row_groups(file: pq.ParquetFile, meta: dict[str, Any]) -> None:
    trailing = trailing_shapes(meta["info"], meta["obs_shape"])
    for g in range(len(meta["row_group_digests"])):
        try:
            table = file.read_row_group(g)
        except _READ_ERRORS as error:
            raise DatasetError(f"expected intact data pages, found {_corrupt_column(file)}({one_line(error)})") from None
        check_row_group(meta, g, {name: _to_numpy(table[name], name, trailing[name]) for name in table.column_names})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_columns(table: pa.Table, meta: dict[str, Any]) -> None:
    """Every column present with the type and width the metadata implies (before any value is converted)."""
    names = table.column_names
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DatasetError(f"columns: expected {list(COLUMNS)} (+ optional {list(OPTIONAL_COLUMNS)}), missing {missing}")
    unknown = [c for c in names if c not in (*COLUMNS, *OPTIONAL_COLUMNS)]
    if unknown or len(set(names)) != len(names):
        raise DatasetError(f"columns: expected {list(COLUMNS)} (+ optional {list(OPTIONAL_COLUMNS)}) once each, found {names}")
    space = meta["info"].action_space
    integer, floating, boolean = pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean

    def numeric(t: pa.DataType) -> bool:
        return integer(t) or floating(t)

    shape = meta["obs_shape"]
    expected: dict[str, tuple[str, Any, int | None]] = {
        "trajectory": ("integers", integer, None),
        "step": ("integers", integer, None),
        "observation": (
            ("numbers", numeric, None)
            if not shape
            else (f"fixed-size lists of {math.prod(shape)} numbers (obs_shape={list(shape)} in the metadata)", numeric, math.prod(shape))
        ),
        "action": (
            (f"integers (discrete actions, n_actions={space.n_actions} in the metadata)", integer, None)
            if space.is_discrete
            else (f"fixed-size lists of {space.action_dim} floats (continuous actions, action_dim={space.action_dim} in the metadata)", floating, space.action_dim)
        ),
        "reward": ("numbers", numeric, None),
        "terminal": ("booleans", boolean, None),
        "behavior_pscore": ("floats", floating, None),
    }
    if "behavior_action_probs" in names:
        if not space.is_discrete:
            raise DatasetError("behavior_action_probs: expected no such column for continuous actions (the metadata's action space), found one")
        expected["behavior_action_probs"] = (
            f"fixed-size lists of {space.n_actions} floats (n_actions={space.n_actions} in the metadata)", floating, space.n_actions
        )
    for column, what, kind in (
        ("position", "integers", integer),
        ("behavior_log_pscore", "floats", floating),
        ("behavior_marginal_pscore", "floats", floating),
    ):
        if column in names:
            expected[column] = (what, kind, None)
    for column, (what, kind, width) in expected.items():
        column_type = table.schema.field(column).type
        if width is None:
            ok = kind(column_type)
        else:
            ok = pa.types.is_fixed_size_list(column_type) and column_type.list_size == width and kind(column_type.value_type)
        if not ok:
            raise DatasetError(f"{column}: expected {what}, found type {column_type}")


def _to_numpy(column: pa.ChunkedArray | pa.Array, name: str, trailing: tuple[int, ...]) -> np.ndarray:
    """A column (types already checked by ``_check_columns``) as an array of shape (rows, *trailing)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        raise DatasetError(f"{name}: expected no missing values, found {array.null_count}")
    if pa.types.is_fixed_size_list(array.type):
        flat = array.flatten()
        if flat.null_count:
            raise DatasetError(f"{name}: expected no missing values, found {flat.null_count} inside the lists")
        return flat.to_numpy(zero_copy_only=False).reshape(len(array), *trailing)
    return array.to_numpy(zero_copy_only=False)
