"""The results store: one DuckDB file, written by the driver alone, one transaction per finished cell.

Tables (primary keys in brackets; ``task`` is the task id of the config):

- ``runs`` [run_id]: name, config_hash, config_text, seed, versions (JSON: Python and package versions),
  created_at.
- ``cells`` [run_id, task, dataset]: status (``done`` / ``failed``), error (``Type: message``), traceback,
  attempts, n_trajectories, n_transitions, behavior_value (true J(π_b)), logged_value (the dataset's mean
  discounted return, the SharpeRatio baseline), wall_s, one ``<stage>_s`` column per stage, finished_at.
- ``estimates`` [run_id, task, dataset, estimator, policy]: estimate, lower, upper (NaN without intervals).
- ``ground_truth`` [run_id, task, dataset, policy]: value, se (0 when exact).
- ``metrics`` [run_id, task, dataset, estimator, metric]: value (nmse, rank_correlation, regret@k,
  normalized_regret@k, sharpe_ratio@k, best/worst/mean/std@k, type_i/type_ii).

Crash safety: a cell's rows (its ``cells`` row and all its estimates, truth and metrics) are written in one
transaction, so a crash loses only unfinished cells; the primary keys make a duplicate impossible, and a
cell that is rerun (a failed one, on resume) replaces its rows inside the same kind of transaction.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import pandas as pd

from opelab.bench.config import BenchmarkConfig
from opelab.bench.runner import STAGES, Cell, CellOutcome

__all__ = ["TABLES", "ResultStore", "package_versions"]

TABLES = ("runs", "cells", "estimates", "ground_truth", "metrics")
KEYS = {
    "runs": ("run_id",),
    "cells": ("run_id", "task", "dataset"),
    "estimates": ("run_id", "task", "dataset", "estimator", "policy"),
    "ground_truth": ("run_id", "task", "dataset", "policy"),
    "metrics": ("run_id", "task", "dataset", "estimator", "metric"),
}
_STAGE_COLUMNS = ", ".join(f"{stage}_s DOUBLE" for stage in STAGES)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, name VARCHAR, config_hash VARCHAR, config_text VARCHAR, seed BIGINT,
    versions VARCHAR, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS cells (
    run_id INTEGER, task VARCHAR, dataset INTEGER, status VARCHAR, error VARCHAR, traceback VARCHAR,
    attempts INTEGER, n_trajectories INTEGER, n_transitions BIGINT, behavior_value DOUBLE, logged_value DOUBLE,
    wall_s DOUBLE, {_STAGE_COLUMNS}, finished_at TIMESTAMP, PRIMARY KEY (run_id, task, dataset));
CREATE TABLE IF NOT EXISTS estimates (
    run_id INTEGER, task VARCHAR, dataset INTEGER, estimator VARCHAR, policy VARCHAR,
    estimate DOUBLE, lower DOUBLE, upper DOUBLE, PRIMARY KEY (run_id, task, dataset, estimator, policy));
CREATE TABLE IF NOT EXISTS ground_truth (
    run_id INTEGER, task VARCHAR, dataset INTEGER, policy VARCHAR, value DOUBLE, se DOUBLE,
    PRIMARY KEY (run_id, task, dataset, policy));
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER, task VARCHAR, dataset INTEGER, estimator VARCHAR, metric VARCHAR, value DOUBLE,
    PRIMARY KEY (run_id, task, dataset, estimator, metric));
"""
#: Columns that change from run to run of the same config (left out when comparing stores).
VOLATILE_COLUMNS = ("created_at", "finished_at", "wall_s", *(f"{stage}_s" for stage in STAGES), "traceback")

PACKAGES = ("opelab", "numpy", "scipy", "pandas", "pyarrow", "duckdb", "gymnasium", "torch", "d3rlpy", "ray")


def package_versions() -> dict[str, str]:
    """Python and the installed versions of the packages results may depend on (missing ones left out)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


class ResultStore:
    """A DuckDB results file. ``read_only`` opens it for queries (``opelab results``)."""

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        import duckdb

        self.path = Path(path)
        if read_only and not self.path.exists():
            raise FileNotFoundError(f"db: expected an existing results file, found nothing at {self.path}")
        self.con = duckdb.connect(str(self.path), read_only=read_only)
        if not read_only:
            self.con.execute(SCHEMA)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # runs ------------------------------------------------------------------
    def start_run(self, config: BenchmarkConfig) -> int:
        """Record a new run of ``config`` and return its id."""
        (last,) = self.con.execute("SELECT coalesce(max(run_id), 0) FROM runs").fetchone()
        run_id = int(last) + 1
        self.con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            [run_id, config.name, config.config_hash, config.text, config.seed, json.dumps(package_versions()), _now()],
        )
        return run_id

    def find_run(self, config: BenchmarkConfig) -> int | None:
        """The latest run of this exact config text, or None."""
        row = self.con.execute(
            "SELECT max(run_id) FROM runs WHERE config_hash = ?", [config.config_hash]
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def latest_run(self) -> int | None:
        (run_id,) = self.con.execute("SELECT max(run_id) FROM runs").fetchone()
        return None if run_id is None else int(run_id)

    def done_cells(self, run_id: int) -> list[Cell]:
        rows = self.con.execute(
            "SELECT task, dataset FROM cells WHERE run_id = ? AND status = 'done' ORDER BY task, dataset", [run_id]
        ).fetchall()
        return [Cell(task, int(dataset)) for task, dataset in rows]

    # cells -----------------------------------------------------------------
    def record(self, run_id: int, outcome: CellOutcome, attempts: int) -> None:
        """Write a finished (done or finally failed) cell in one transaction, replacing earlier rows of it."""
        cell, result = outcome.cell, outcome.result
        key = [run_id, cell.task, cell.dataset]
        self.con.begin()
        try:
            for table in ("estimates", "ground_truth", "metrics"):
                self.con.execute(f"DELETE FROM {table} WHERE run_id = ? AND task = ? AND dataset = ?", key)
            stage_seconds = [None if result is None else result.seconds.get(stage) for stage in STAGES]
            self.con.execute(
                f"INSERT OR REPLACE INTO cells VALUES ({', '.join(['?'] * (13 + len(STAGES)))})",
                [
                    *key,
                    "done" if result is not None else "failed",
                    outcome.error,
                    outcome.traceback,
                    attempts,
                    None if result is None else result.n_trajectories,
                    None if result is None else result.n_transitions,
                    None if result is None else result.behavior_value,
                    None if result is None else result.logged_value,
                    outcome.wall_s,
                    *stage_seconds,
                    _now(),
                ],
            )
            if result is not None:
                for table, frame in (
                    ("estimates", result.estimates),
                    ("ground_truth", result.ground_truth),
                    ("metrics", result.metrics),
                ):
                    rows = frame.copy()
                    rows.insert(0, "dataset", cell.dataset)
                    rows.insert(0, "task", cell.task)
                    rows.insert(0, "run_id", run_id)
                    self.con.register("cell_rows", rows)
                    self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM cell_rows")
                    self.con.unregister("cell_rows")
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise

    # reading ---------------------------------------------------------------
    def table(self, name: str, run_id: int | None = None, *, stable: bool = False) -> pd.DataFrame:
        """A whole table (or one run's rows) ordered by its primary key; ``stable`` drops the columns that
        change between identical runs (timestamps, timings, tracebacks)."""
        if name not in TABLES:
            raise ValueError(f"table: expected one of {list(TABLES)}, found {name!r}")
        where = "" if run_id is None else f" WHERE run_id = {int(run_id)}"
        frame = self.con.execute(f"SELECT * FROM {name}{where} ORDER BY {', '.join(KEYS[name])}").df()
        if stable:
            frame = frame.drop(columns=[c for c in VOLATILE_COLUMNS if c in frame.columns])
        return frame

    def query(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).df()

    def export_parquet(self, folder: str | os.PathLike[str], tables: Sequence[str] = TABLES) -> list[Path]:
        """Every table as ``folder/<table>.parquet`` (DuckDB ``COPY``), ordered by primary key."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in tables:
            path = out / f"{name}.parquet"
            target = str(path).replace("'", "''")
            self.con.execute(f"COPY (SELECT * FROM {name} ORDER BY {', '.join(KEYS[name])}) TO '{target}' (FORMAT parquet)")
            written.append(path)
        return written
