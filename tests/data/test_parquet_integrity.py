"""Parquet files that are damaged, foreign or contradict themselves: one ``DatasetError`` line, never a
silently different dataset.

What protects a file (``opelab.data.io``): page checksums (CRC-32 of each data page's body) and, in format
version 2, ``n_rows`` and a SHA-256 ``content_digest`` of the dataset in the metadata. The checksums cannot
see the page headers, the Thrift footer or the key-value metadata; there a flip may still parse. Flipping
every bit of the two small files below once (about 30,000 reads each, too slow to run here; the test below
samples every 7th byte) found 62 and 165 flips that turn a value of the metadata JSON (the task name, the
behavior policy, the seed, γ, an action bound, the horizon) into another valid one: the format checks accept
them and only the digest, recomputed from what was decoded, refuses them; none loaded a different dataset.
Format version 1 files have no digest: such a flip loads a different dataset; they are only checked for
never raising anything but ``DatasetError``. The digest is not a signature: whoever edits a file on purpose
can rewrite the digest too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset
from opelab.data.io import FORMAT_VERSION

LEGACY = Path(__file__).parent / "legacy"


# ---------------------------------------------------------------------------------------------- datasets
def small_discrete() -> LoggedDataset:
    """n=2, H=3, 3 actions, lengths [3, 2], trajectory 1 terminal, with behavior_action_probs."""
    probs_row = np.array([0.2, 0.3, 0.5])
    mask = np.array([[True, True, True], [True, True, False]])
    actions = np.array([[0, 1, 2], [2, 0, 0]], dtype=np.int64)
    return LoggedDataset(
        observations=np.array([[0, 1, 2], [3, 4, 0]], dtype=np.int64),
        actions=actions,
        rewards=np.array([[1.0, 0.5, -1.0], [0.0, 2.0, 0.0]]),
        terminals=np.array([[False, False, False], [False, True, False]]),
        mask=mask,
        behavior_pscore=np.where(mask, probs_row[actions], 1.0),
        behavior_action_probs=np.where(mask[..., None], probs_row, 0.0),
        info=DatasetInfo(task="toy", gamma=0.9, action_space=ActionSpace.discrete(3), behavior_policy="fixed", seed=7),
    )


def small_continuous() -> LoggedDataset:
    """n=2, H=3, action_dim 2 in [-1, 1]², float32 observations of shape (2, 2), lengths [3, 1]."""
    mask = np.array([[True, True, True], [True, False, False]])
    obs = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 2, 2) / 8
    obs[1, 1:] = 0
    actions = np.array([[[0.25, -0.5], [1.0, 0.0], [-1.0, 0.75]], [[0.5, 0.5], [0, 0], [0, 0]]])
    return LoggedDataset(
        observations=obs,
        actions=actions,
        rewards=np.array([[0.5, -0.25, 2.0], [1.5, 0.0, 0.0]]),
        terminals=np.array([[False, False, True], [False, False, False]]),
        mask=mask,
        behavior_pscore=np.array([[2.5, 0.75, 1.25], [0.125, 1.0, 1.0]]),
        info=DatasetInfo(
            task="toy-continuous", gamma=0.99, action_space=ActionSpace.continuous(2, low=[-1, -1], high=[1, 1]),
            behavior_policy="gauss", seed=None, pscore_estimated=True,
        ),  # fmt: skip
    )


DATASETS = {"discrete": small_discrete, "continuous": small_continuous}


def written(ds: LoggedDataset, path: Path) -> Path:
    ds.to_parquet(path)
    return path


def read_error(path: Path) -> str:
    """The message of the ``DatasetError`` reading ``path`` raises (checked to be one line naming the file)."""
    with pytest.raises(DatasetError) as info:
        LoggedDataset.read_parquet(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def with_metadata(source: Path, target: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """``source`` rewritten with ``edit(meta)`` applied in place to its opelab metadata."""
    meta = json.loads(pq.read_schema(source).metadata[b"opelab"])
    edit(meta)
    return with_raw_metadata(source, target, json.dumps(meta).encode())


def with_raw_metadata(source: Path, target: Path, raw: bytes) -> Path:
    """``source`` rewritten with ``raw`` as its opelab metadata."""
    table = pq.read_table(source)
    pq.write_table(table.replace_schema_metadata({b"opelab": raw}), target)
    return target


def with_table(source: Path, target: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """``source`` with its table replaced by ``edit(table)`` and its metadata kept as written."""
    table = pq.read_table(source)
    pq.write_table(edit(table).replace_schema_metadata(table.schema.metadata), target)
    return target


# ---------------------------------------------------------------------------------------------- bit flips
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_bit_flips_raise_or_load_the_same_dataset(name: str, tmp_path: Path) -> None:
    """Every 7th byte (seeded offset and bit): a DatasetError, or exactly the dataset written."""
    ds = DATASETS[name]()
    data = written(ds, tmp_path / "clean.parquet").read_bytes()
    rng = np.random.default_rng(2024)
    target = tmp_path / "flipped.parquet"
    outcomes = {"error": 0, "same": 0}
    for position in range(int(rng.integers(7)), len(data), 7):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        target.write_bytes(bytes(flipped))
        try:
            back = LoggedDataset.read_parquet(target)
        except DatasetError as error:
            assert "\n" not in str(error), (position, str(error))
            outcomes["error"] += 1
            continue
        assert back.equals(ds), f"flip at byte {position} loaded a different dataset"
        outcomes["same"] += 1
    assert outcomes["error"] > 200 and outcomes["same"] > 50, outcomes  # both kinds of bytes were hit


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_bit_flips_in_format_1_files_raise_only_dataset_errors(name: str, tmp_path: Path) -> None:
    """Format 1 (no checksums, no digest): some flips load a different dataset, but none raise anything else."""
    data = (LEGACY / f"v1_{name}.parquet").read_bytes()
    rng = np.random.default_rng(7)
    target = tmp_path / "flipped.parquet"
    for position in range(int(rng.integers(11)), len(data), 11):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        target.write_bytes(bytes(flipped))
        try:
            LoggedDataset.read_parquet(target)
        except DatasetError as error:
            assert "\n" not in str(error), (position, str(error))


def test_a_flipped_data_page_fails_its_checksum(tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(4)  # reward
    assert chunk.path_in_schema == "reward"
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    last = start + chunk.total_compressed_size - 1  # the last byte of the last data page's body
    data = bytearray(path.read_bytes())
    data[last] ^= 0x01
    path.write_bytes(bytes(data))
    assert "expected intact data pages, found a corrupt page in column 'reward' (" in read_error(path)
    assert "crc" in read_error(path).lower()


def test_a_metadata_value_changed_into_another_valid_one_is_caught_by_the_digest(tmp_path: Path) -> None:
    """γ 0.9 → 0.1 parses and validates; only the digest of what was read tells."""
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_metadata(path, tmp_path / "gamma.parquet", lambda m: m["info"].update(gamma=0.1))
    assert "content_digest: expected" in read_error(edited)
    renamed = with_metadata(path, tmp_path / "task.parquet", lambda m: m["info"].update(task="tox"))
    assert "content_digest" in read_error(renamed)


def test_the_digest_is_what_equals_compares() -> None:
    a, b = small_discrete(), small_discrete()
    assert a.content_digest == b.content_digest and len(a.content_digest) == 64
    assert a.with_info(seed=8).content_digest != a.content_digest
    narrow = LoggedDataset(**{**_fields(a), "observations": a.observations.astype(np.int32)}, info=a.info)
    assert not narrow.equals(a) and narrow.content_digest != a.content_digest
    assert small_continuous().content_digest != a.content_digest


def _fields(ds: LoggedDataset) -> dict[str, np.ndarray | None]:
    names = ("observations", "actions", "rewards", "terminals", "mask", "behavior_pscore", "behavior_action_probs")
    return {name: getattr(ds, name) for name in names}


# ---------------------------------------------------------------------------------------------- format 1
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_format_1_files_still_load(name: str) -> None:
    """Written by opelab 499c276 (format 1: no page checksums, no n_rows, no digest) from these datasets."""
    path = LEGACY / f"v1_{name}.parquet"
    assert json.loads(pq.read_schema(path).metadata[b"opelab"])["format_version"] == 1
    assert LoggedDataset.read_parquet(path).equals(DATASETS[name]())


def test_new_files_are_format_3_with_rows_and_digests(tmp_path: Path) -> None:
    ds = small_continuous()
    path = written(ds, tmp_path / "c.parquet")
    meta = json.loads(pq.read_schema(path).metadata[b"opelab"])
    assert meta["format_version"] == FORMAT_VERSION == 3
    assert meta["n_rows"] == ds.n_transitions and meta["content_digest"] == ds.content_digest
    assert len(meta["row_group_digests"]) == pq.ParquetFile(path).metadata.num_row_groups == 1
    assert LoggedDataset.read_parquet(path).equals(ds)


def test_format_2_without_its_integrity_keys_is_refused(tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    no_digest = with_metadata(path, tmp_path / "nodigest.parquet", lambda m: m.pop("content_digest"))
    assert "expected the key 'content_digest'" in read_error(no_digest)
    no_rows = with_metadata(path, tmp_path / "norows.parquet", lambda m: m.pop("n_rows"))
    assert "expected the key 'n_rows'" in read_error(no_rows)


# ---------------------------------------------------------------------------------------------- not a dataset file
def test_a_path_that_does_not_exist(tmp_path: Path) -> None:
    assert "found no such file" in read_error(tmp_path / "missing.parquet")


def test_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    written(small_discrete(), folder / "part-0.parquet")  # pyarrow alone would read it as a partitioned dataset
    assert "found a directory" in read_error(folder)


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")
    assert "found an empty file (0 bytes)" in read_error(path)


def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_text("trajectory,step,reward\n0,0,1.0\n", encoding="utf-8")
    assert "found a file starting with b'traj': not Parquet" in read_error(path)


@pytest.mark.parametrize("keep", [4, 5, 100, -8, -1])
def test_a_truncated_file(keep: int, tmp_path: Path) -> None:
    data = written(small_discrete(), tmp_path / "clean.parquet").read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(data[:keep])
    message = read_error(path)
    assert "truncated" in message or "corrupt" in message


def test_a_foreign_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    assert "(metadata key 'opelab'), found a Parquet file without it" in read_error(path)


# ---------------------------------------------------------------------------------------------- metadata
@pytest.mark.parametrize(
    "text, found",
    [
        ("", "does not parse (Expecting value: line 1 column 1 (char 0))"),
        ('{"format_version": 2,', "does not parse"),
        ('{"format_version": NaN}', "does not parse (NaN is not valid JSON)"),
        ("[1, 2]", "expected a JSON object, found a list"),
        ('"text"', "expected a JSON object, found a string"),
        (b"\xff\xfe{}", "expected UTF-8 JSON, found undecodable bytes at position 0"),
    ],
    ids=["empty", "cut", "nan", "list", "string", "not-utf8"],
)
def test_metadata_that_is_not_a_json_object(text: str | bytes, found: str, tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_raw_metadata(path, tmp_path / "edited.parquet", text if isinstance(text, bytes) else text.encode())
    message = read_error(edited)
    assert "metadata opelab" in message and found in message


@pytest.mark.parametrize("key", ["format_version", "info", "n_trajectories", "horizon", "obs_shape"])
def test_missing_metadata_keys_are_named(key: str, tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_metadata(path, tmp_path / "edited.parquet", lambda m: m.pop(key))
    assert f"metadata opelab: expected the key {key!r}, found keys [" in read_error(edited)


@pytest.mark.parametrize("key", ["task", "gamma", "action_space"])
def test_missing_info_keys_are_named(key: str, tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_metadata(path, tmp_path / "edited.parquet", lambda m: m["info"].pop(key))
    assert f"metadata opelab.info: expected the key {key!r}" in read_error(edited)


@pytest.mark.parametrize(
    "edit, found",
    [
        (lambda m: m.update(info=[1]), "metadata opelab.info: expected a JSON object, found a list"),
        (lambda m: m["info"].update(task=3), "metadata opelab.info.task: expected a str, found 3"),
        (lambda m: m["info"].update(gamma="0.9"), "metadata opelab.info.gamma: expected a float in [0, 1], found '0.9'"),
        (lambda m: m["info"].update(gamma=1.5), "metadata opelab.info.gamma: expected a float in [0, 1], found 1.5"),
        (lambda m: m["info"].update(seed=7.5), "metadata opelab.info.seed: expected an int or null, found 7.5"),
        (lambda m: m["info"].update(pscore_estimated=0), "metadata opelab.info.pscore_estimated: expected a bool, found 0"),
        (lambda m: m["info"].update(extra=1), "metadata opelab.info: expected only the keys"),
        (lambda m: m["info"]["action_space"].update(n_actions=3.0), "metadata opelab.info.action_space.n_actions: expected a positive int"),
        (lambda m: m["info"]["action_space"].update(type="box"), "metadata opelab.info.action_space.type: expected 'discrete' or 'continuous'"),
        (lambda m: m["info"]["action_space"].update(low="ab"), "metadata opelab.info.action_space.low: expected null or a list of numbers"),
        (lambda m: m.update(extra=True), "metadata opelab: expected only the keys"),
        (lambda m: m.update(obs_shape=3), "metadata opelab.obs_shape: expected a list of positive integers"),
        (lambda m: m.update(obs_shape=[0]), "metadata opelab.obs_shape: expected a list of positive integers"),
        (lambda m: m.update(content_digest="x"), "metadata opelab.content_digest: expected 64 lowercase hex digits"),
    ],
    ids=[
        "info-list", "task-int", "gamma-str", "gamma-range", "seed-float", "flag-int", "info-extra", "n-actions-float",
        "space-type", "low-str", "meta-extra", "obs-shape-int", "obs-shape-zero", "digest",
    ],  # fmt: skip
)
def test_metadata_of_the_wrong_type_is_named(edit, found: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_metadata(path, tmp_path / "edited.parquet", edit)
    message = read_error(edited)
    assert found in message, message


@pytest.mark.parametrize("version, found", [(4, "upgrade to read it"), (0, "found 0"), ("2", "found '2'"), (True, "found True")])
def test_format_versions_other_than_1_2_and_3(version: object, found: str, tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_metadata(path, tmp_path / "edited.parquet", lambda m: m.update(format_version=version))
    message = read_error(edited)
    assert "metadata opelab.format_version: expected one of [1, 2, 3]" in message and found in message


@pytest.mark.parametrize("key", ["n_trajectories", "horizon", "n_rows"])
@pytest.mark.parametrize("value", [0, -6, 2.5, "3", True, None])
def test_counts_that_are_not_positive_integers(key: str, value: object, tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_metadata(path, tmp_path / "edited.parquet", lambda m: m.update({key: value}))
    assert f"metadata opelab.{key}: expected a positive integer, found {value!r}" in read_error(edited)


# ---------------------------------------------------------------------------------------------- metadata vs data
# Edits of format 2 files would also break their digest; these are checked before it, so the message names
# the contradiction itself (as it does for format 1 files, which have no digest).
def test_obs_shape_contradicting_the_observation_column(tmp_path: Path) -> None:
    path = written(small_continuous(), tmp_path / "clean.parquet")
    wide = with_metadata(path, tmp_path / "wide.parquet", lambda m: m.update(obs_shape=[3, 2]))
    assert "observation: expected fixed-size lists of 6 numbers (obs_shape=[3, 2] in the metadata), found type fixed_size_list" in read_error(wide)
    scalar = with_metadata(path, tmp_path / "scalar.parquet", lambda m: m.update(obs_shape=[]))
    assert "observation: expected numbers, found type fixed_size_list" in read_error(scalar)
    discrete = written(small_discrete(), tmp_path / "discrete.parquet")
    vector = with_metadata(discrete, tmp_path / "vector.parquet", lambda m: m.update(obs_shape=[1]))
    assert "observation: expected fixed-size lists of 1 numbers" in read_error(vector)


def test_action_space_contradicting_the_action_column(tmp_path: Path) -> None:
    path = written(small_continuous(), tmp_path / "clean.parquet")

    def three_dims(m):  # type: ignore[no-untyped-def]
        m["info"]["action_space"].update(action_dim=3, low=[-1, -1, -1], high=[1, 1, 1])

    assert "action: expected fixed-size lists of 3 floats (continuous actions, action_dim=3 in the metadata)" in read_error(
        with_metadata(path, tmp_path / "dim.parquet", three_dims)
    )

    def discrete(m):  # type: ignore[no-untyped-def]
        m["info"]["action_space"] = {"type": "discrete", "n_actions": 2}

    assert "action: expected integers (discrete actions, n_actions=2 in the metadata)" in read_error(
        with_metadata(path, tmp_path / "discrete.parquet", discrete)
    )
    # discrete values beyond n_actions are refused by the dataset's own validation
    logged = written(small_discrete(), tmp_path / "logged.parquet")

    def fewer_actions(m):  # type: ignore[no-untyped-def]
        m["info"]["action_space"]["n_actions"] = 2

    message = read_error(with_metadata(logged, tmp_path / "fewer.parquet", fewer_actions))
    assert "behavior_action_probs: expected fixed-size lists of 2 floats (n_actions=2 in the metadata)" in message


def test_discrete_values_outside_the_action_space(tmp_path: Path) -> None:
    ds = small_discrete()
    path = written(dataclass_without_probs(ds), tmp_path / "clean.parquet")
    message = read_error(with_metadata(path, tmp_path / "two.parquet", lambda m: m["info"]["action_space"].update(n_actions=2)))
    assert "actions: expected integers in [0, 1], found 2" in message


def dataclass_without_probs(ds: LoggedDataset) -> LoggedDataset:
    return LoggedDataset(**{**_fields(ds), "behavior_action_probs": None}, info=ds.info)


def test_action_probs_in_a_continuous_file(tmp_path: Path) -> None:
    path = written(small_continuous(), tmp_path / "clean.parquet")

    def add_probs(table: pa.Table) -> pa.Table:
        flat = pa.array(np.full(table.num_rows * 2, 0.5))
        return table.append_column("behavior_action_probs", pa.FixedSizeListArray.from_arrays(flat, 2))

    message = read_error(with_table(path, tmp_path / "probs.parquet", add_probs))
    assert "behavior_action_probs: expected no such column for continuous actions" in message


def test_more_trajectories_in_the_metadata_than_in_the_data(tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_metadata(path, tmp_path / "more.parquet", lambda m: m.update(n_trajectories=4))
    assert "trajectory: expected rows for each of the n_trajectories=4 trajectories in the metadata, found none for 2 of them (first: trajectory 2)" in read_error(edited)


def test_a_horizon_shorter_than_the_logged_steps(tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_metadata(path, tmp_path / "short.parquet", lambda m: m.update(horizon=2))
    assert "step: expected values in [0, 1] (horizon=2 in the metadata), found range [0, 2]" in read_error(edited)


def test_rows_added_or_removed_contradict_n_rows(tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    shorter = with_table(path, tmp_path / "short.parquet", lambda t: t.slice(0, 4))
    assert "rows: expected n_rows=5 (the metadata), found 4" in read_error(shorter)


def test_a_changed_value_contradicts_the_digest(tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")

    def new_reward(table: pa.Table) -> pa.Table:
        rewards = table["reward"].to_numpy().copy()
        rewards[0] = 3.0
        return table.set_column(table.column_names.index("reward"), "reward", pa.array(rewards))

    assert "content_digest: expected" in read_error(with_table(path, tmp_path / "reward.parquet", new_reward))


@pytest.mark.parametrize(
    "column, replacement, found",
    [
        ("terminal", pa.array([0, 0, 0, 0, 1], type=pa.int8()), "terminal: expected booleans, found type int8"),
        ("behavior_pscore", pa.array([1, 1, 1, 1, 1]), "behavior_pscore: expected floats, found type int64"),
        ("reward", pa.array(["a"] * 5), "reward: expected numbers, found type string"),
        ("step", pa.array([0.0, 1, 2, 0, 1]), "step: expected integers, found type double"),
    ],
    ids=["terminal", "pscore", "reward", "step"],
)
def test_columns_of_the_wrong_type(column: str, replacement: pa.Array, found: str, tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    edited = with_table(path, tmp_path / "edited.parquet", lambda t: t.set_column(t.column_names.index(column), column, replacement))
    assert found in read_error(edited)


def test_missing_and_unexpected_columns(tmp_path: Path) -> None:
    path = written(small_discrete(), tmp_path / "clean.parquet")
    assert "missing ['reward']" in read_error(with_table(path, tmp_path / "a.parquet", lambda t: t.drop_columns(["reward"])))
    extra = with_table(path, tmp_path / "b.parquet", lambda t: t.append_column("note", pa.array(["x"] * t.num_rows)))
    assert "once each, found [" in read_error(extra)


def test_missing_values_inside_lists(tmp_path: Path) -> None:
    path = written(small_continuous(), tmp_path / "clean.parquet")

    def hole(table: pa.Table) -> pa.Table:
        flat = pa.array([None] + [0.5] * (2 * table.num_rows - 1), type=pa.float64())
        return table.set_column(table.column_names.index("action"), "action", pa.FixedSizeListArray.from_arrays(flat, 2))

    assert "action: expected no missing values, found 1 inside the lists" in read_error(with_table(path, tmp_path / "h.parquet", hole))


# ---------------------------------------------------------------------------------------------- format 3: row groups
def streamed(path: Path) -> list[LoggedDataset]:
    """Every chunk of the file as a stream reads it (each row group verified against its digest)."""
    from opelab.data.chunks import open_source, read_unit

    return [chunk for unit in open_source(path).units for _, chunk in read_unit(unit, max_cells=4)]


def same_steps(chunks: list[LoggedDataset], ds: LoggedDataset) -> bool:
    from opelab.data.chunks import concatenate

    return concatenate(chunks, ds.horizon).equals(ds)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_bit_flips_in_small_row_groups_stream_the_same_data_or_raise(name: str, tmp_path: Path) -> None:
    """A stream checks each row group's digest (it cannot check the whole-dataset one): every 5th byte of a
    file of one-row row groups, flipped, gives a DatasetError or exactly the data written."""
    ds = DATASETS[name]()
    path = tmp_path / "clean.parquet"
    ds.to_parquet(path, row_group_rows=1)
    assert pq.ParquetFile(path).metadata.num_row_groups == ds.n_transitions
    assert same_steps(streamed(path), ds)
    data = path.read_bytes()
    rng = np.random.default_rng(7)
    target = tmp_path / "flipped.parquet"
    outcomes = {"error": 0, "same": 0}
    for position in range(int(rng.integers(5)), len(data), 5):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        target.write_bytes(bytes(flipped))
        try:
            chunks = streamed(target)
        except DatasetError as error:
            assert "\n" not in str(error), (position, str(error))
            outcomes["error"] += 1
            continue
        assert same_steps(chunks, ds), f"flip at byte {position} streamed different data"
        outcomes["same"] += 1
    assert outcomes["error"] > 200 and outcomes["same"] > 20, outcomes


def test_a_metadata_edit_is_refused_by_the_row_group_digests(tmp_path: Path) -> None:
    """γ changed in the metadata: the data pages are intact, but every row group's digest binds the header."""
    from opelab.data.io import DatasetWriter

    ds = small_discrete()
    path = tmp_path / "w.parquet"
    with DatasetWriter(path, ds.info, horizon=ds.horizon, row_group_rows=2) as writer:
        writer.write(ds)
    raw = pq.ParquetFile(path).metadata.metadata[b"opelab"]

    def with_raw_metadata(source: Path, target: Path, value: bytes) -> Path:  # keeping the row groups
        pq.write_table(pq.read_table(source).replace_schema_metadata({b"opelab": value}), target, row_group_size=2)
        return target

    edited = with_raw_metadata(path, tmp_path / "gamma.parquet", raw.replace(b'"gamma": 0.9', b'"gamma": 0.8'))
    assert b'"gamma": 0.8' in pq.ParquetFile(edited).metadata.metadata[b"opelab"]
    assert "row_group_digests[0]: expected" in read_error(edited)  # no content digest in a writer's file
    with pytest.raises(DatasetError, match=r"gamma.parquet: row_group_digests\[0\]: expected"):
        streamed(edited)
    huge = with_raw_metadata(path, tmp_path / "huge.parquet", raw.replace(b'"horizon": 3', b'"horizon": 1000000000'))
    with pytest.raises(DatasetError, match=r"huge.parquet: row_group_digests\[0\]"):
        streamed(huge)


def test_the_writer_appends_chunks_into_one_file(tmp_path: Path) -> None:
    from opelab.data.io import DatasetWriter

    ds = small_discrete().subset([0, 1, 1, 0, 1])
    path = tmp_path / "appended.parquet"
    with DatasetWriter(path, ds.info, row_group_rows=3) as writer:
        for part in ([0, 1], [2], [3, 4]):
            writer.write(ds.subset(part))
        assert not path.exists()  # only a temporary name until it closes
    meta = json.loads(pq.ParquetFile(path).metadata.metadata[b"opelab"])
    assert (meta["format_version"], meta["n_trajectories"], meta["horizon"], meta["n_rows"]) == (3, 5, 3, ds.n_transitions)
    assert meta["content_digest"] is None and len(meta["row_group_digests"]) == pq.ParquetFile(path).metadata.num_row_groups
    assert LoggedDataset.read_parquet(path).equals(ds)
    assert same_steps(streamed(path), ds)


def test_the_writer_refuses_mixed_data_and_leaves_nothing_behind(tmp_path: Path) -> None:
    from opelab.data.io import DatasetWriter

    ds = small_discrete()
    path = tmp_path / "mixed.parquet"
    with pytest.raises(DatasetError, match="info: expected"):
        with DatasetWriter(path, ds.info) as writer:
            writer.write(ds)
            writer.write(ds.with_info(gamma=0.5))
    with pytest.raises(DatasetError, match="expected at least one trajectory written"):
        with DatasetWriter(path, ds.info):
            pass
    with pytest.raises(DatasetError, match=r"horizon: expected >= the longest trajectory written \(3\), found 2"):
        with DatasetWriter(path, ds.info, horizon=2) as writer:
            writer.write(ds)
    assert list(tmp_path.iterdir()) == []


def test_negative_zero_padding_round_trips(tmp_path: Path) -> None:
    """−0.0 equals the fill value, so it passes validation; it is made +0.0, since a file stores no padding
    and the digest hashes bytes (``rewards * mask`` with negative rewards leaves −0.0 there)."""
    ds = small_discrete()
    rewards = np.where(ds.mask, ds.rewards, -0.0)
    assert np.signbit(rewards[~ds.mask]).all()
    edited = LoggedDataset(**{**{k: getattr(ds, k) for k in ("observations", "actions", "terminals", "mask", "behavior_pscore", "behavior_action_probs")}, "rewards": rewards, "info": ds.info})
    assert not np.signbit(edited.rewards[~ds.mask]).any() and edited.equals(ds)
    assert LoggedDataset.read_parquet(written(edited, tmp_path / "z.parquet")).equals(ds)


def test_a_closed_writer_refuses_more_data(tmp_path: Path) -> None:
    from opelab.data.io import DatasetWriter

    ds = small_discrete()
    writer = DatasetWriter(tmp_path / "once.parquet", ds.info)
    writer.write(ds)
    writer.close()
    with pytest.raises(DatasetError, match="already closed"):
        writer.write(ds)
    with pytest.raises(DatasetError, match="already closed"):
        writer.close()
    assert LoggedDataset.read_parquet(tmp_path / "once.parquet").equals(ds)
    with pytest.raises(ValueError, match="row_group_rows"):
        DatasetWriter(tmp_path / "x.parquet", ds.info, row_group_rows=0)
