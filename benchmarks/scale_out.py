"""Scale-out of the benchmark engine: one 20-cell grid run serially, on 2 local worker processes and on
Ray with 2 CPUs; checks that the three stores are identical and reports the speed-ups.

The grid: the three tabular tasks are too quick to show parallelism, so each cell is made heavier (more
trajectories, bootstrap intervals, every marginal estimator). Times are wall-clock of ``run_benchmark``,
pool / cluster start included (Ray's ``ray.init`` is timed separately; its workers' first imports are
inside the Ray time).

    python benchmarks/scale_out.py            # prints a table, writes benchmarks/results/scale_out.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from opelab.bench import ResultStore, expand, parse_config, run_benchmark
from opelab.bench.store import TABLES

GRID = """
name = "scale_out"
seed = 0
n_datasets = 10
n_trajectories = {n}
estimators = ["dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr", "sam_is", "sam_snis", "sam_dr", "sam_sndr"]

[intervals]
method = "bootstrap"
n_bootstrap = {n_bootstrap}

[[tasks]]
name = "gridworld"

[[tasks]]
name = "chain"
behavior = {{ head = "epsilon_greedy", epsilon = 0.3 }}
"""


def stable(db: Path) -> dict[str, pd.DataFrame]:
    with ResultStore(db, read_only=True) as store:
        return {name: store.table(name, stable=True) for name in TABLES}


def identical(a: Path, b: Path) -> bool:
    left, right = stable(a), stable(b)
    return all(left[name].equals(right[name]) for name in TABLES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="Trajectories per dataset.")
    parser.add_argument("--n-bootstrap", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale_out.md")
    args = parser.parse_args()
    config = parse_config(GRID.format(n=args.n, n_bootstrap=args.n_bootstrap))
    assert len(expand(config)) == 20

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        dbs = {}
        for label, executor in (("serial (in-process)", {"workers": 1}), (f"local, {args.workers} workers", {"workers": args.workers})):
            db = Path(folder) / f"{len(dbs)}.duckdb"
            start = time.perf_counter()
            run_benchmark(config.with_executor(kind="local", **executor), db)
            rows.append((label, time.perf_counter() - start, None))
            dbs[label] = db
        try:
            import ray
        except ImportError:
            ray = None
        if ray is not None:
            start = time.perf_counter()
            ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="WARNING")
            init_s = time.perf_counter() - start
            db = Path(folder) / "ray.duckdb"
            start = time.perf_counter()
            run_benchmark(config.with_executor(kind="ray", workers=args.workers), db)
            rows.append((f"ray, {args.workers} CPUs", time.perf_counter() - start, init_s))
            dbs[rows[-1][0]] = db
            ray.shutdown()
        serial = rows[0][1]
        same = {label: identical(dbs[rows[0][0]], db) for label, db in dbs.items()}

    header = "| executor | wall s | speed-up vs serial | ray.init s | identical to serial |\n|---|---|---|---|---|\n"
    lines = [
        f"| {label} | {seconds:.1f} | {serial / seconds:.2f}× | {'' if init is None else f'{init:.1f}'} | {'yes' if same[label] else 'NO'} |"
        for label, seconds, init in rows
    ]
    table = header + "\n".join(lines) + "\n"
    print(table)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, CPython {platform.python_version()}, load average after the run {load}"
    args.out.write_text(
        "# Benchmark engine scale-out: a 20-cell grid (2 tabular tasks × 10 datasets)\n\n"
        f"Command: `python benchmarks/scale_out.py --n {args.n} --n-bootstrap {args.n_bootstrap} --workers {args.workers}` "
        f"({machine}). Each cell: {args.n} trajectories, 11 estimators with {args.n_bootstrap} bootstrap resamples. "
        "Goal: ≥ 1.7× with 2 workers, identical stores (timestamps and timings aside). A load average above "
        "the core count means other processes shared the cores and the speed-ups understate the engine.\n\n" + table
    )
    if not all(same.values()):
        raise SystemExit("the executors disagree")


if __name__ == "__main__":
    main()
