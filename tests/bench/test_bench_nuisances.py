"""A cell's learned nuisances are stored with their convergence (schema 2) and their fits' wall time
(schema 3); older stores still open, read (nuisances "not recorded", seconds NaN) and are migrated when
written."""

from __future__ import annotations

import dataclasses
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from opelab.bench import Cell, ResultStore, parse_config, run_benchmark, run_cell
from opelab.bench.runner import NUISANCE_FIELDS, CellOutcome, nuisance_frame
from opelab.bench.store import MARKER, SCHEMA, SCHEMA_VERSION, TABLES
from opelab.cli import app

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

EXACT = """
n_datasets = 2
n_trajectories = 30
estimators = ["dm", "snpdis"]
[[tasks]]
name = "chain"
candidates = { epsilons = [0.0, 0.3], temperatures = [], adversarial_epsilons = [] }
"""
NEURAL = EXACT.replace("n_datasets = 2", "n_datasets = 1").replace("[[tasks]]", '[inputs]\nq_function = "neural_fqe"\n[[tasks]]')


@pytest.fixture(scope="module")
def neural_store(tmp_path_factory):
    db = tmp_path_factory.mktemp("nuisances") / "neural.duckdb"
    run_benchmark(parse_config(NEURAL), db)
    return db


def test_a_cell_with_neural_fqe_records_its_convergence():
    result = run_cell(parse_config(NEURAL), Cell("chain", 0))
    rows = result.nuisances
    assert list(rows.columns) == list(NUISANCE_FIELDS)
    assert rows[["nuisance", "policy", "n_fits", "steps", "residual_sample"]].values.tolist() == [["fqe", "all", 1, 100, "in-sample"]]
    row = rows.iloc[0]
    assert row.iterations >= 1 and 0 <= row.last_change and np.isfinite(row.residual) and isinstance(row.converged, (bool, np.bool_))
    assert 0 < row.seconds < result.seconds["inputs"]  # the fit is part of the inputs stage


def test_exact_nuisances_record_nothing():
    assert run_cell(parse_config(EXACT), Cell("chain", 0)).nuisances.empty


def test_the_store_holds_one_row_per_cell_and_nuisance(neural_store):
    with ResultStore(neural_store, read_only=True) as store:
        rows = store.nuisances()
        assert rows[["task", "dataset", "nuisance", "policy"]].values.tolist() == [["chain", 0, "fqe", "all"]]
        assert store.query(f"SELECT value FROM {MARKER} WHERE key = 'schema_version'").value[0] == str(SCHEMA_VERSION)
        assert rows.seconds.iloc[0] > 0


class Fit:  # a MinimaxFit's signals
    def __init__(self, change, converged, kind="weights", seconds=2.0):
        self.kind, self.n_steps, self.change, self.trend, self.residual, self.converged = kind, 10, change, -change, 0.2, converged
        self.seconds = seconds


def test_folds_keep_the_worst_fit_and_add_their_seconds():
    rows = nuisance_frame([Fit(0.1, False), Fit(0.01, True, seconds=3.0)])
    assert rows[["nuisance", "n_fits", "last_change", "trend", "converged", "seconds"]].values.tolist() == [["weights", 2, 0.1, -0.1, False, 5.0]]
    assert np.isnan(nuisance_frame([Fit(0.1, False, seconds=np.nan), Fit(0.1, False)]).seconds.iloc[0])  # a fold not timed


def test_fqe_and_minimax_rows_are_stored_together(neural_store, tmp_path):
    """FQE's iteration count next to the minimax learners' NULL (nullable integers reach DuckDB)."""
    result = run_cell(parse_config(NEURAL), Cell("chain", 0))
    rows = pd.concat([result.nuisances, nuisance_frame([Fit(0.5, False, kind="q")])], ignore_index=True)
    copy = tmp_path / "copy.duckdb"
    shutil.copy(neural_store, copy)
    with ResultStore(copy) as store:
        store.record(1, CellOutcome(result.cell, dataclasses.replace(result, nuisances=rows), None, None, 1.0), attempts=1)
        stored = store.nuisances(1)
    assert stored[["nuisance", "iterations", "converged"]].astype(object).where(stored.notna(), None).values.tolist()[1] == ["mql", None, False]


def _schema_1_store(path):
    """A store as schema 1 wrote it: the five tables and the marker at version 1, one finished cell."""
    con = duckdb.connect(str(path))
    con.execute(SCHEMA + f"CREATE TABLE {MARKER} (key VARCHAR PRIMARY KEY, value VARCHAR);")
    con.execute(f"INSERT INTO {MARKER} VALUES ('format', 'opelab results store'), ('schema_version', '1')")
    con.execute("INSERT INTO runs VALUES (1, 'old', 'h', 'text', 0, '{}', now()::TIMESTAMP)")
    con.close()


def test_a_schema_1_store_reads_as_not_recorded_and_is_migrated_when_written(tmp_path):
    old = tmp_path / "old.duckdb"
    _schema_1_store(old)
    with ResultStore(old, read_only=True) as store:
        assert store.latest_run() == 1 and store.nuisances() is None and not store.has_table("nuisances")
        assert store.table("nuisances").empty
        written = store.export_parquet(tmp_path / "parquet")
        assert [p.stem for p in written] == [name for name in TABLES if name != "nuisances"]
    with duckdb.connect(str(old), read_only=True) as con:  # reading changed nothing
        assert "nuisances" not in {n for (n,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    run_benchmark(parse_config(NEURAL), old)  # written: migrated, then the new run's rows
    with ResultStore(old, read_only=True) as store:
        assert store.query(f"SELECT value FROM {MARKER} WHERE key = 'schema_version'").value[0] == str(SCHEMA_VERSION)
        assert store.latest_run() == 2 and len(store.nuisances(2)) == 1 and store.nuisances(1).empty


def test_a_schema_2_store_reads_seconds_as_not_measured_and_gains_the_column_when_written(neural_store, tmp_path):
    old = tmp_path / "two.duckdb"
    shutil.copy(neural_store, old)
    with duckdb.connect(str(old)) as con:  # back to schema 2: no seconds column
        con.execute("ALTER TABLE nuisances DROP COLUMN seconds")
        con.execute(f"UPDATE {MARKER} SET value = '2' WHERE key = 'schema_version'")
    with ResultStore(old, read_only=True) as store:
        rows = store.nuisances()
        assert list(rows.columns)[-1] == "seconds" and rows.seconds.isna().all() and len(rows) == 1
    with duckdb.connect(str(old), read_only=True) as con:  # reading changed nothing
        assert "seconds" not in {c for (c,) in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'nuisances'").fetchall()}
    run_benchmark(parse_config(NEURAL), old)  # written: migrated, then the new run's rows
    with ResultStore(old, read_only=True) as store:
        assert store.query(f"SELECT value FROM {MARKER} WHERE key = 'schema_version'").value[0] == str(SCHEMA_VERSION)
        rows = store.nuisances()
        assert rows.run_id.tolist() == [1, 2] and np.isnan(rows.seconds.iloc[0]) and rows.seconds.iloc[1] > 0


def test_results_print_the_unconverged_cells(neural_store, tmp_path):
    out = CliRunner().invoke(app, ["results", str(neural_store)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    with ResultStore(neural_store, read_only=True) as store:
        bad = int((~store.nuisances().converged.astype(bool)).sum())
    assert f"Nuisances (fqe): {bad} of 1 cell(s) with an unconverged nuisance" in out.output
    old = tmp_path / "old.duckdb"
    _schema_1_store(old)
    assert "Nuisances" not in CliRunner().invoke(app, ["results", str(old)]).output
