"""The results store refuses what is not a store (other DuckDB databases, other files, folders), answers
read-only queries without touching files or extensions, and exports Parquet without overwriting by default."""

from __future__ import annotations

import os
import shutil

import duckdb
import pandas as pd
import pytest

from opelab.bench import ResultStore, parse_config, run_benchmark
from opelab.bench.store import MARKER, SCHEMA, SCHEMA_VERSION, TABLES, StoreError

CONFIG = """
n_datasets = 2
n_trajectories = 30
estimators = ["dm", "snpdis"]
[[tasks]]
name = "chain"
candidates = { epsilons = [0.0, 0.3], temperatures = [], adversarial_epsilons = [] }
"""


@pytest.fixture(scope="module")
def store_file(tmp_path_factory):
    db = tmp_path_factory.mktemp("store") / "results.duckdb"
    run_benchmark(parse_config(CONFIG), db)
    return db


@pytest.fixture
def store(store_file, tmp_path):
    """A private copy of the finished store (tests may write next to it)."""
    copy = tmp_path / "results.duckdb"
    shutil.copy(store_file, copy)
    return copy


def files_under(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values as None whatever the column's dtype (pandas reads Parquet strings as Arrow strings)."""
    return frame.astype(object).where(frame.notna(), None)


def table_names(path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()


# --------------------------------------------------------------------------- what is a store
def test_a_store_is_marked_with_its_format_and_schema_version(store):
    with ResultStore(store, read_only=True) as s:
        marker = dict(s.query(f"SELECT key, value FROM {MARKER}").itertuples(index=False))
        assert marker == {"format": "opelab results store", "schema_version": str(SCHEMA_VERSION)}
        assert len(s.table("cells")) == 2
    with ResultStore(store) as s:  # reopening for writing keeps it as it is
        assert s.latest_run() == 1


def test_a_store_written_before_the_marker_is_recognised_and_marked_when_written(tmp_path):
    legacy = tmp_path / "legacy.duckdb"
    con = duckdb.connect(str(legacy))
    con.execute(SCHEMA)
    con.execute("INSERT INTO runs VALUES (1, 'old', 'h', 'text', 0, '{}', now()::TIMESTAMP)")
    con.close()
    with ResultStore(legacy, read_only=True) as s:
        assert s.latest_run() == 1
    assert MARKER not in table_names(legacy)  # reading changes nothing
    with ResultStore(legacy) as s:
        assert s.latest_run() == 1
    assert table_names(legacy) == {*TABLES, MARKER}


def test_an_unrelated_duckdb_file_is_refused_and_left_alone(tmp_path):
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE customers (id INTEGER); CREATE TABLE orders (id INTEGER); CREATE VIEW big AS SELECT 1")
    con.close()
    before = other.read_bytes()
    for read_only in (False, True):
        with pytest.raises(StoreError) as info:
            ResultStore(other, read_only=read_only)
        message = str(info.value)
        assert message.startswith("db: expected an opelab results store (tables runs, cells, estimates, ground_truth, metrics), found ")
        assert f"{other} holding other tables: big, customers, orders; pass a new file (--db) instead" in message and "\n" not in message
    assert other.read_bytes() == before and table_names(other) == {"customers", "orders", "big"}
    with pytest.raises(StoreError, match="other tables"):
        run_benchmark(parse_config(CONFIG), other)
    assert table_names(other) == {"customers", "orders", "big"}


def test_opelab_tables_next_to_foreign_ones_without_the_marker_are_refused(tmp_path):
    mixed = tmp_path / "mixed.duckdb"
    con = duckdb.connect(str(mixed))
    con.execute(SCHEMA + "CREATE TABLE notes (text VARCHAR);")
    con.close()
    with pytest.raises(StoreError, match="holding other tables: cells, estimates, ground_truth, metrics, notes, runs"):
        ResultStore(mixed)


def test_a_store_from_a_newer_opelab_is_refused(store):
    con = duckdb.connect(str(store))
    con.execute(f"UPDATE {MARKER} SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match=rf"expected a results store of schema version <= {SCHEMA_VERSION}, found {SCHEMA_VERSION + 1}"):
        ResultStore(store, read_only=True)


def test_an_empty_duckdb_database_becomes_a_store(tmp_path):
    fresh = tmp_path / "fresh.duckdb"
    duckdb.connect(str(fresh)).close()
    with ResultStore(fresh) as s:
        assert s.latest_run() is None
    assert table_names(fresh) == {*TABLES, MARKER}


@pytest.mark.parametrize(
    "make, found",
    [
        (lambda p: pd.DataFrame({"a": [1]}).to_parquet(p), "a Parquet file at"),
        (lambda p: p.write_bytes(os.urandom(4096)), "a file that is not a DuckDB database at"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(100)), "an SQLite database at"),
        (lambda p: p.write_bytes(b""), "an empty file at"),
        (lambda p: p.mkdir(), "a folder at"),
    ],
    ids=["parquet", "random bytes", "sqlite", "empty", "folder"],
)
@pytest.mark.parametrize("read_only", [False, True], ids=["write", "read"])
def test_what_is_not_duckdb_is_named_in_one_line(tmp_path, make, found, read_only):
    path = tmp_path / "thing.duckdb"
    make(path)
    before = files_under(tmp_path)
    with pytest.raises(StoreError) as info:
        ResultStore(path, read_only=read_only)
    assert str(info.value) == f"db: expected a DuckDB results file written by opelab, found {found} {path}"
    assert files_under(tmp_path) == before


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(StoreError, match="db: expected an existing results file, found nothing at"):
        ResultStore(tmp_path / "none.duckdb", read_only=True)
    with pytest.raises(StoreError, match="db: expected an existing folder for .*, found none at"):
        ResultStore(tmp_path / "no" / "such" / "x.duckdb")


# --------------------------------------------------------------------------- read-only means read-only
FORBIDDEN = {
    "COPY TO a file": "COPY cells TO 'stolen.csv'",
    "COPY a query to Parquet": "COPY (SELECT * FROM estimates) TO 'stolen.parquet' (FORMAT parquet)",
    "EXPORT DATABASE": "EXPORT DATABASE 'dump'",
    "ATTACH": "ATTACH 'attached.duckdb' AS other",
    "read_csv": "SELECT * FROM read_csv('{outside}')",
    "read_text": "SELECT * FROM read_text('{outside}')",
    "INSTALL": "INSTALL httpfs",
    "LOAD": "LOAD httpfs",
    "turning external access back on": "SET enable_external_access = true",
    "a temp directory elsewhere": "SET temp_directory = 'spill'",
    "INSERT": "INSERT INTO runs VALUES (9, 'x', 'h', 't', 0, '{{}}', now()::TIMESTAMP)",
    "CREATE TABLE": "CREATE TABLE mine (a INTEGER)",
    "DELETE": "DELETE FROM cells",
}


@pytest.mark.parametrize("case", list(FORBIDDEN))
def test_a_read_only_store_refuses_files_extensions_and_writes(store, tmp_path, monkeypatch, case):
    outside = tmp_path / "outside.csv"
    outside.write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)  # relative paths in the SQL would land here
    before = files_under(tmp_path)
    with ResultStore(store, read_only=True) as s:
        with pytest.raises(StoreError) as info:
            s.query(FORBIDDEN[case].format(outside=outside))
        message = str(info.value)
        assert message.startswith("sql: expected a read-only query (no writes, no files, no extensions) the results store results.duckdb can answer, found ")
        assert "\n" not in message
        assert len(s.query("SELECT * FROM cells")) == 2  # the connection still answers
    assert files_under(tmp_path) == before


def test_a_read_only_store_answers_queries(store):
    with ResultStore(store, read_only=True) as s:
        frame = s.query("SELECT estimator, count(*) AS n FROM estimates GROUP BY estimator ORDER BY estimator")
    assert list(frame.estimator) == ["dm", "snpdis"] and (frame.n == 2 * 3).all()  # 2 datasets × 3 candidates


def test_a_bad_query_on_a_writable_store_is_a_store_error(store):
    with ResultStore(store) as s, pytest.raises(StoreError, match="sql: expected a query the results store results.duckdb can answer, found"):
        s.query("SELECT nope FROM cells")


# --------------------------------------------------------------------------- export
def test_export_writes_every_table_from_a_read_only_store(store, tmp_path):
    out = tmp_path / "parquet"
    with ResultStore(store, read_only=True) as s:
        written = s.export_parquet(out)
        assert [p.name for p in written] == [f"{name}.parquet" for name in TABLES]
        for name in TABLES:
            exported, stored = pd.read_parquet(out / f"{name}.parquet"), s.table(name)
            pd.testing.assert_frame_equal(plain(exported), plain(stored), check_dtype=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.parquet" for name in TABLES)  # no temporary files left


def test_export_refuses_to_overwrite_without_force(store, tmp_path):
    out = tmp_path / "parquet"
    out.mkdir()
    (out / "cells.parquet").write_text("mine")
    with ResultStore(store, read_only=True) as s:
        with pytest.raises(StoreError) as info:
            s.export_parquet(out)
        assert str(info.value) == f"export: expected no existing Parquet files in {out} (force=True, or --force, overwrites them), found cells.parquet"
        assert [p.name for p in out.iterdir()] == ["cells.parquet"] and (out / "cells.parquet").read_text() == "mine"
        s.export_parquet(out, force=True)
        assert len(pd.read_parquet(out / "cells.parquet")) == 2
        s.export_parquet(out, ["runs"], force=True)


def test_export_refuses_a_file_as_folder_and_unknown_tables(store, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with ResultStore(store, read_only=True) as s:
        with pytest.raises(StoreError, match="export: expected a folder, found a file at"):
            s.export_parquet(target)
        with pytest.raises(StoreError, match=r"export: expected tables among \['runs'.*found 'secrets'"):
            s.export_parquet(tmp_path / "out", ["secrets"])
    assert not (tmp_path / "out").exists()


def test_a_resume_without_its_store_creates_no_file_and_on_start_runs_once_checks_passed(tmp_path):
    db = tmp_path / "none.duckdb"
    with pytest.raises(ValueError, match="--resume: expected a run of this config .* found no such file"):
        run_benchmark(parse_config(CONFIG), db, resume=True, on_start=lambda: pytest.fail("started"))
    assert not db.exists()
    started = []
    run_benchmark(parse_config(CONFIG), db, on_start=lambda: started.append(db.exists()))
    assert started == [True]


class _Connection:
    """The store's DuckDB connection with some methods replaced (keyword arguments), the rest its own."""

    def __init__(self, con, **methods):
        self._con = con
        self.__dict__.update(methods)

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_an_interrupt_while_a_cell_is_written_rolls_it_back_and_is_a_keyboard_interrupt(store):
    """Ctrl-C during ``record``: DuckDB answers it with its own InterruptException mid-query; the store
    rolls the cell's transaction back and raises KeyboardInterrupt, so the CLI says "interrupted" (not a
    database error) and ``--resume`` runs the cell again."""
    from opelab.bench import Cell, CellOutcome

    with ResultStore(store) as s:
        real = s.con

        def execute(sql, *args):
            if sql.startswith("INSERT OR REPLACE INTO cells"):
                raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")
            return real.execute(sql, *args)

        before = s.table("cells", stable=True)
        run_id = int(before["run_id"].iloc[0])
        cell = Cell(task=str(before["task"].iloc[0]), dataset=0)
        s.con = _Connection(real, execute=execute)
        try:
            with pytest.raises(KeyboardInterrupt):
                s.record(run_id, CellOutcome(cell, None, "RuntimeError: boom", None, 1.0), attempts=1)
        finally:
            s.con = real
        after = s.table("cells", stable=True)
        estimates = s.table("estimates")
    pd.testing.assert_frame_equal(after, before)  # neither the deletes nor the failed row stayed
    assert (estimates["dataset"] == 0).any()


def test_an_interrupt_just_after_a_cells_commit_stays_an_interrupt(store):
    """Ctrl-C between the commit and the method's return: there is no transaction left to roll back, and
    the store must not replace the KeyboardInterrupt by DuckDB's "no transaction is active"."""
    from opelab.bench import Cell, CellOutcome

    with ResultStore(store) as s:
        real = s.con

        def commit():
            real.commit()
            raise KeyboardInterrupt

        run_id = int(s.table("cells")["run_id"].iloc[0])
        s.con = _Connection(real, commit=commit)
        try:
            with pytest.raises(KeyboardInterrupt):
                s.record(run_id, CellOutcome(Cell("chain", 5), None, "RuntimeError: boom", None, 1.0), attempts=1)
        finally:
            s.con = real
        cells = s.table("cells")
    assert cells[cells.dataset == 5].status.tolist() == ["failed"]  # committed before the interrupt


# --------------------------------------------------------------------------- schema 4: the behavior's name
def test_each_cell_records_its_behavior_policys_name(store):
    from opelab.bench.tasks import find_family

    config = parse_config(CONFIG)
    task = config.tasks[0]
    expected = find_family(task.name).create(task, config.inputs, config.ground_truth_rollouts, seed=config.seed).behavior_policy().name
    with ResultStore(store, read_only=True) as s:
        assert s.has_column("cells", "behavior") and not s.has_column("cells", "nope")
        assert s.table("cells").behavior.tolist() == [expected] * 2 and expected.startswith("behavior(softmax")


def test_a_schema_3_store_reads_the_behavior_as_not_recorded_and_gains_the_column_when_written(store):
    from opelab.report.store import read_store_report

    with duckdb.connect(str(store)) as con:  # back to schema 3: no behavior column
        con.execute("ALTER TABLE cells DROP COLUMN behavior")
        con.execute(f"UPDATE {MARKER} SET value = '3' WHERE key = 'schema_version'")
    with ResultStore(store, read_only=True) as s:
        assert not s.has_column("cells", "behavior")
        cells = s.table("cells")
        assert list(cells.columns)[-1] == "behavior" and cells.behavior.isna().all() and len(cells) == 2
        assert read_store_report(s, k=2, n_bootstrap=50).behavior.policy.isna().all()
    with duckdb.connect(str(store), read_only=True) as con:  # reading changed nothing
        assert "behavior" not in {c for (c,) in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'cells'").fetchall()}
    run_benchmark(parse_config(CONFIG.replace("n_datasets = 2", "n_datasets = 1")), store)  # written: migrated, then a new run
    with ResultStore(store, read_only=True) as s:
        assert s.query(f"SELECT value FROM {MARKER} WHERE key = 'schema_version'").value[0] == str(SCHEMA_VERSION) == "4"
        cells = s.table("cells")
        assert cells.run_id.tolist() == [1, 1, 2] and cells.behavior.isna().tolist() == [True, True, False]
