"""Benchmarks: config-driven grids of (task, dataset) cells, executors (in-process, process pool, Ray),
and a crash-safe DuckDB results store.

    config = load_config("configs/quick.toml")
    summary = run_benchmark(config, "quick.duckdb", resume=False)
"""

from opelab.bench.config import BenchmarkConfig, ConfigError, load_config, parse_config
from opelab.bench.executors import RunSummary, make_executor, run_benchmark
from opelab.bench.runner import Cell, CellOutcome, CellResult, cell_seed, execute_cell, expand, run_cell
from opelab.bench.store import ResultStore, StoreError
from opelab.bench.tasks import TASK_FAMILIES, BenchTask, GroundTruth, TaskFamily, register_task_family
from opelab.bench import learned as _learned  # noqa: F401  (registers the learned-task family)

__all__ = [
    "TASK_FAMILIES",
    "BenchTask",
    "BenchmarkConfig",
    "Cell",
    "CellOutcome",
    "CellResult",
    "ConfigError",
    "GroundTruth",
    "ResultStore",
    "RunSummary",
    "StoreError",
    "TaskFamily",
    "cell_seed",
    "execute_cell",
    "expand",
    "load_config",
    "make_executor",
    "parse_config",
    "register_task_family",
    "run_benchmark",
    "run_cell",
]
