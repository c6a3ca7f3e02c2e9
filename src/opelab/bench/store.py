"""The results store: one DuckDB file, written by the driver alone, one transaction per finished cell.

Tables (primary keys in brackets; ``task`` is the task id of the config):

- ``runs`` [run_id]: name, config_hash, config_text, seed, versions (JSON: Python and package versions),
  created_at.
- ``cells`` [run_id, task, dataset]: status (``done`` / ``failed``), error (``Type: message``), traceback,
  attempts, n_trajectories, n_transitions, behavior_value (true J(π_b)), logged_value (the dataset's mean
  discounted return, the SharpeRatio baseline), wall_s, one ``<stage>_s`` column per stage, finished_at,
  behavior (schema 4: the behavior policy's name, which for ``behavior.attempts`` > 1 says the attempt kept).
- ``estimates`` [run_id, task, dataset, estimator, policy]: estimate, lower, upper (NaN without intervals).
- ``ground_truth`` [run_id, task, dataset, policy]: value, se (0 when exact).
- ``metrics`` [run_id, task, dataset, estimator, metric]: value (nmse, rank_correlation, regret@k,
  normalized_regret@k, sharpe_ratio@k, best/worst/mean/std@k, type_i/type_ii).

- ``nuisances`` [run_id, task, dataset, nuisance, policy] (schema 2): one row per learned nuisance of a
  cell — ``nuisance`` ``fqe`` / ``weights`` / ``state_weights`` / ``mql``, ``policy`` ``all`` (one network
  serves every policy) — with n_fits (cross-fitting folds), iterations (FQE; NULL for the minimax
  learners), steps (Adam steps per FQE iteration / of the minimax fit), last_change, trend, residual,
  residual_sample (``held-out`` / ``in-sample``), converged (every fold's; the signals are defined in
  ``opelab.ope.fqe`` and ``opelab.ope.minimax``; the worst fold's value is kept), seconds (schema 3: the
  wall time of its fits, all folds). Tabular tasks, whose nuisances are exact solutions, record none.

- ``opelab_store`` [key]: value; ``format`` = ``opelab results store`` and ``schema_version`` (4) mark the
  file as a store (stores written before the marker, with exactly the five tables of schema 1, are
  recognised and marked when next opened for writing).

Schema versions: 1 had the five tables ``runs`` … ``metrics``; 2 adds ``nuisances``; 3 adds its ``seconds``
column; 4 adds ``cells.behavior``. An older store opened for writing is migrated in one transaction (the
table created or the columns added, the version set to 4); opened read-only it is read as it is, and
readers take a missing ``nuisances`` table as "not recorded" (``ResultStore.nuisances`` returns None,
``table("nuisances")`` an empty frame), a missing ``seconds`` column as NaN (not measured) and a missing
``behavior`` column as None (not recorded).

Crash safety: a cell's rows (its ``cells`` row and all its estimates, truth, metrics and nuisances) are written in one
transaction, so a crash loses only unfinished cells; the primary keys make a duplicate impossible, and a
cell that is rerun (a failed one, on resume) replaces its rows inside the same kind of transaction.

Opening refuses, in one line (``StoreError``), what is not a store: a folder, an empty file, a file that is
not DuckDB (Parquet, SQLite, anything else), a DuckDB file holding other tables (a benchmark must not add
its tables to an unrelated database). ``read_only`` opens for queries only, with DuckDB's external access
off and the configuration locked: ``query()`` cannot write or read files (``COPY … TO``, ``EXPORT``,
``read_csv``), attach databases or install and load extensions. ``export_parquet`` therefore writes the
Parquet files itself (pyarrow, from the query results, batch by batch), each through a temporary file
renamed into place, and refuses to overwrite existing files without ``force``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opelab.bench.config import BenchmarkConfig
from opelab.bench.runner import STAGES, Cell, CellOutcome
from opelab.data.validation import one_line

__all__ = ["SCHEMA_VERSION", "TABLES", "ResultStore", "StoreError", "package_versions"]


SCHEMA_1_TABLES = ("runs", "cells", "estimates", "ground_truth", "metrics")
TABLES = (*SCHEMA_1_TABLES, "nuisances")
KEYS = {
    "runs": ("run_id",),
    "cells": ("run_id", "task", "dataset"),
    "estimates": ("run_id", "task", "dataset", "estimator", "policy"),
    "ground_truth": ("run_id", "task", "dataset", "policy"),
    "metrics": ("run_id", "task", "dataset", "estimator", "metric"),
    "nuisances": ("run_id", "task", "dataset", "nuisance", "policy"),
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
#: Added by schema 2 (``SCHEMA`` holds the five tables of schema 1).
NUISANCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS nuisances (
    run_id INTEGER, task VARCHAR, dataset INTEGER, nuisance VARCHAR, policy VARCHAR, n_fits INTEGER,
    iterations INTEGER, steps INTEGER, last_change DOUBLE, trend DOUBLE, residual DOUBLE, residual_sample VARCHAR,
    converged BOOLEAN, seconds DOUBLE, PRIMARY KEY (run_id, task, dataset, nuisance, policy));
"""
#: Added by schema 3 (the same column, on a nuisances table of schema 2).
NUISANCE_SECONDS = "ALTER TABLE nuisances ADD COLUMN IF NOT EXISTS seconds DOUBLE;"
#: Added by schema 4 (at the end of ``cells``, where a new store's column lands too: this statement adds it).
CELL_BEHAVIOR = "ALTER TABLE cells ADD COLUMN IF NOT EXISTS behavior VARCHAR;"
NUISANCE_COLUMNS = (
    "run_id", "task", "dataset", "nuisance", "policy", "n_fits", "iterations", "steps", "last_change", "trend",
    "residual", "residual_sample", "converged", "seconds",
)  # fmt: skip
MARKER = "opelab_store"
STORE_FORMAT = "opelab results store"
SCHEMA_VERSION = 4
MARKER_SCHEMA = f"CREATE TABLE IF NOT EXISTS {MARKER} (key VARCHAR PRIMARY KEY, value VARCHAR);"
#: DuckDB settings of a read-only store: no files, no network, no extensions, and no way to switch them back.
READ_ONLY_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}
EXPORT_BATCH_ROWS = 100_000
#: Columns that change from run to run of the same config (left out when comparing stores).
VOLATILE_COLUMNS = ("created_at", "finished_at", "wall_s", *(f"{stage}_s" for stage in STAGES), "traceback", "seconds")

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


class StoreError(ValueError):
    """A results store that cannot be opened or used as asked (one line naming the file and what was found)."""


def _not_duckdb(path: Path) -> str | None:
    """What ``path`` is when it is not a DuckDB database (None when it is one, or does not exist)."""
    if path.is_dir():
        return f"a folder at {path}"
    if not path.exists():
        return None
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        return f"an unreadable file at {path} ({exc.strerror or exc})"
    if not head:
        return f"an empty file at {path}"
    if head[8:12] == b"DUCK":  # DuckDB's magic bytes follow an 8-byte checksum
        return None
    if head[:4] == b"PAR1":
        return f"a Parquet file at {path}"
    if head.startswith(b"SQLite format 3"):
        return f"an SQLite database at {path}"
    return f"a file that is not a DuckDB database at {path}"


class ResultStore:
    """A DuckDB results file. ``read_only`` opens it for queries (``opelab results``): no writes, no files,
    no extensions (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        import duckdb

        self.path = Path(path)
        self.read_only = read_only
        found = _not_duckdb(self.path)
        if found is not None:
            raise StoreError(f"db: expected a DuckDB results file written by opelab, found {found}")
        if read_only and not self.path.exists():
            raise StoreError(f"db: expected an existing results file, found nothing at {self.path}")
        if not self.path.exists() and not self.path.parent.is_dir():
            raise StoreError(f"db: expected an existing folder for {self.path}, found none at {self.path.parent}")
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only, config=dict(READ_ONLY_CONFIG if read_only else {}))
        except duckdb.Error as exc:
            raise StoreError(
                f"db: expected a DuckDB results file opelab can open, found {self.path} failing with {one_line(exc)}"
            ) from None
        try:
            self._check_identity()
        except BaseException:
            self.con.close()
            raise

    def _check_identity(self) -> None:
        """Refuse a DuckDB file that is not an opelab store; create (or mark) the store when writing."""
        rows = self.con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = current_database()"
        ).fetchall()
        names = {name if schema == "main" else f"{schema}.{name}" for schema, name in rows}
        if MARKER in names:
            version = self._scalar(f"SELECT max(value) FROM {MARKER} WHERE key = 'schema_version'")
            if version is None or not str(version).isdigit() or int(version) > SCHEMA_VERSION:
                found = "none" if version is None else version
                raise StoreError(
                    f"db: expected a results store of schema version <= {SCHEMA_VERSION}, found {found} in {self.path} (written by a newer opelab?)"
                )
        elif names and names != set(SCHEMA_1_TABLES):  # stores from before the marker hold exactly the five tables
            shown = sorted(names)
            listed = ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
            raise StoreError(
                f"db: expected an opelab results store (tables {', '.join(SCHEMA_1_TABLES)}), found {self.path} holding other "
                f"tables: {listed}; pass a new file (--db) instead"
            )
        self._tables = names
        if not self.read_only:  # create, mark or migrate (1: the nuisances table; 2: its seconds; 3: cells.behavior) in one transaction
            self.con.begin()
            self.con.execute(SCHEMA + NUISANCE_SCHEMA + NUISANCE_SECONDS + CELL_BEHAVIOR + MARKER_SCHEMA)
            self.con.execute(f"INSERT OR IGNORE INTO {MARKER} VALUES ('format', ?)", [STORE_FORMAT])
            self.con.execute(f"INSERT OR REPLACE INTO {MARKER} VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            self.con.commit()
            self._tables = {*TABLES, MARKER}

    def has_table(self, name: str) -> bool:
        """Whether the store holds table ``name`` (a schema-1 store opened read-only has no ``nuisances``)."""
        return name in self._tables

    def has_column(self, table: str, column: str) -> bool:
        """Whether table ``table`` has column ``column`` (a store opened read-only keeps its schema's columns)."""
        rows = self.con.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_catalog = current_database() AND table_schema = 'main' "
            "AND table_name = ? AND column_name = ?",
            [table, column],
        ).fetchall()
        return bool(rows)

    def _scalar(self, sql: str, parameters: Sequence[object] = ()) -> Any:
        """The one value of a one-row query (fetched to the end: DuckDB keeps a half-read result open)."""
        rows = self.con.execute(sql, list(parameters)).fetchall()
        return rows[0][0] if rows else None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # runs ------------------------------------------------------------------
    def start_run(self, config: BenchmarkConfig) -> int:
        """Record a new run of ``config`` and return its id."""
        last = self._scalar("SELECT coalesce(max(run_id), 0) FROM runs")
        run_id = int(last) + 1
        self.con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            [run_id, config.name, config.config_hash, config.text, config.seed, json.dumps(package_versions()), _now()],
        )
        return run_id

    def find_run(self, config: BenchmarkConfig) -> int | None:
        """The latest run of this exact config text, or None."""
        run_id = self._scalar("SELECT max(run_id) FROM runs WHERE config_hash = ?", [config.config_hash])
        return None if run_id is None else int(run_id)

    def latest_run(self) -> int | None:
        run_id = self._scalar("SELECT max(run_id) FROM runs")
        return None if run_id is None else int(run_id)

    def done_cells(self, run_id: int) -> list[Cell]:
        rows = self.con.execute(
            "SELECT task, dataset FROM cells WHERE run_id = ? AND status = 'done' ORDER BY task, dataset", [run_id]
        ).fetchall()
        return [Cell(task, int(dataset)) for task, dataset in rows]

    # cells -----------------------------------------------------------------
    def record(self, run_id: int, outcome: CellOutcome, attempts: int) -> None:
        """Write a finished (done or finally failed) cell in one transaction, replacing earlier rows of it."""
        import duckdb

        cell, result = outcome.cell, outcome.result
        key = [run_id, cell.task, cell.dataset]
        self.con.begin()
        try:
            for table in ("estimates", "ground_truth", "metrics", "nuisances"):
                self.con.execute(f"DELETE FROM {table} WHERE run_id = ? AND task = ? AND dataset = ?", key)
            stage_seconds = [None if result is None else result.seconds.get(stage) for stage in STAGES]
            self.con.execute(
                f"INSERT OR REPLACE INTO cells VALUES ({', '.join(['?'] * (14 + len(STAGES)))})",
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
                    None if result is None else result.behavior,
                ],
            )
            if result is not None:
                for table, frame in (
                    ("estimates", result.estimates),
                    ("ground_truth", result.ground_truth),
                    ("metrics", result.metrics),
                    ("nuisances", result.nuisances),
                ):
                    if frame.empty:
                        continue
                    rows = frame.copy()
                    rows.insert(0, "dataset", cell.dataset)
                    rows.insert(0, "task", cell.task)
                    rows.insert(0, "run_id", run_id)
                    self.con.register("cell_rows", rows)
                    self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM cell_rows")
                    self.con.unregister("cell_rows")
            self.con.commit()
        except duckdb.InterruptException:  # Ctrl-C while writing: DuckDB answers it; the cell stays unrecorded
            self._rollback()
            raise KeyboardInterrupt from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Roll the open transaction back; none open (an interrupt just after the commit) is no error, so
        that the exception being handled is the one raised."""
        import duckdb

        try:
            self.con.rollback()
        except duckdb.TransactionException:
            pass

    # reading ---------------------------------------------------------------
    def table(self, name: str, run_id: int | None = None, *, stable: bool = False) -> pd.DataFrame:
        """A whole table (or one run's rows) ordered by its primary key; ``stable`` drops the columns that
        change between identical runs (timestamps, timings, tracebacks)."""
        if name not in TABLES:
            raise ValueError(f"table: expected one of {list(TABLES)}, found {name!r}")
        if name == "nuisances" and not self.has_table(name):  # a schema-1 store: not recorded
            return pd.DataFrame(columns=list(NUISANCE_COLUMNS))
        where = "" if run_id is None else f" WHERE run_id = {int(run_id)}"
        frame = self.con.execute(f"SELECT * FROM {name}{where} ORDER BY {', '.join(KEYS[name])}").df()
        if name == "nuisances" and "seconds" not in frame.columns:  # a schema-2 store opened read-only: not measured
            frame["seconds"] = np.nan
        if name == "cells" and "behavior" not in frame.columns:  # a store before schema 4 opened read-only: not recorded
            frame["behavior"] = None
        if stable:
            frame = frame.drop(columns=[c for c in VOLATILE_COLUMNS if c in frame.columns])
        return frame

    def nuisances(self, run_id: int | None = None) -> pd.DataFrame | None:
        """The ``nuisances`` rows (of one run), or None when the store predates them (schema 1: not
        recorded). An empty frame means recorded and none learned (e.g. tabular tasks only)."""
        return self.table("nuisances", run_id) if self.has_table("nuisances") else None

    def query(self, sql: str) -> pd.DataFrame:
        """The rows of one SQL query. A read-only store answers queries only: statements that write, read or
        write files, attach databases or load extensions fail with a ``StoreError``."""
        import duckdb

        try:
            return self.con.execute(sql).df()
        except duckdb.Error as exc:
            kind = "a read-only query (no writes, no files, no extensions)" if self.read_only else "a query"
            name = self.path.name
            raise StoreError(f"sql: expected {kind} the results store {name} can answer, found {one_line(exc)}") from None

    def export_parquet(
        self, folder: str | os.PathLike[str], tables: Sequence[str] = TABLES, *, force: bool = False
    ) -> list[Path]:
        """Every table (that the store holds) as ``folder/<table>.parquet``, ordered by primary key, written with pyarrow from the
        query results (a read-only store cannot ``COPY``): batch by batch, into a temporary file renamed into
        place. Existing files are refused unless ``force``."""
        import pyarrow.parquet as pq

        unknown = [name for name in tables if name not in TABLES]
        if unknown:
            raise StoreError(f"export: expected tables among {list(TABLES)}, found {unknown[0]!r}")
        tables = [name for name in tables if self.has_table(name)]  # a schema-1 store has no nuisances to export
        out = Path(folder)
        if out.exists() and not out.is_dir():
            raise StoreError(f"export: expected a folder, found a file at {out}")
        targets = [out / f"{name}.parquet" for name in tables]
        existing = ", ".join(path.name for path in targets if path.exists())
        if existing and not force:
            raise StoreError(f"export: expected no existing Parquet files in {out} (force=True, or --force, overwrites them), found {existing}")
        out.mkdir(parents=True, exist_ok=True)
        for name, path in zip(tables, targets):
            relation = self.con.sql(f"SELECT * FROM {name} ORDER BY {', '.join(KEYS[name])}")
            # DuckDB 2: to_arrow_reader; 1.x: fetch_arrow_reader
            reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
            batches = reader(EXPORT_BATCH_ROWS)
            partial = path.with_name(f".{path.name}.partial")
            try:
                with pq.ParquetWriter(partial, batches.schema) as writer:
                    for batch in batches:
                        writer.write_batch(batch)
                os.replace(partial, path)
            finally:
                batches.close()  # DuckDB keeps the connection busy until the reader is closed
                partial.unlink(missing_ok=True)
        return targets
