"""Speed and memory of percentile-bootstrap intervals on 10 policies × 10^6 logged transitions.

The synthetic inputs of ``benchmarks/estimators.py`` (n trajectories × horizon H, n·H = 10^6, P = 10, ~10%
of trajectories ending early). For each layout and each ``--n-bootstrap`` value, every one of the seven
standard estimators alone and all seven together go through
``opelab.ope.evaluate(..., interval="bootstrap")`` (fresh context: point estimates, input checks and the
bootstrap; best of ``--repeats``). Reported per cell: the wall time and the peak resident memory above the
process's memory before the call (the kernel's high-water mark, reset before each call through
``/proc/self/clear_refs``; Linux only). The goal: all seven in ≤ 5 s at 10^6 transitions.

A second table splits the time of all seven: point estimates (``evaluate`` without intervals), drawing
the counts, the resampling terms of the estimators, the matrix products and renormalisation (the rest of
``bootstrap_estimates``), and the percentiles.

BLAS threads: one (threadpoolctl) unless ``--threads`` says otherwise.

    python benchmarks/intervals.py            # prints the tables, writes benchmarks/results/intervals.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from estimators import BACKBONE, synthetic_case  # noqa: E402

from opelab.ope import evaluate  # noqa: E402
from opelab.ope import intervals  # noqa: E402
from opelab.ope.estimators import EstimationContext, get_estimator  # noqa: E402


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measured(fn) -> tuple[float, float]:
    """Wall seconds of ``fn()`` and its peak resident memory above the resident memory before, in MB."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current VmRSS
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return seconds, (_status_kib("VmHWM") - before) / 1024


def breakdown(ds, inputs, n_bootstrap: int) -> dict[str, float]:
    """Seconds of each stage of the bootstrap of all seven estimators."""
    estimators = [get_estimator(name) for name in BACKBONE]
    out: dict[str, float] = {}
    start = time.perf_counter()
    evaluate(ds, inputs, BACKBONE)
    out["point estimates"] = time.perf_counter() - start
    start = time.perf_counter()
    for _ in intervals.bootstrap_counts(ds.n_trajectories, n_bootstrap, seed=0):
        pass
    out["draw counts"] = time.perf_counter() - start
    ctx = EstimationContext(ds, inputs)
    for estimator in estimators:
        estimator.estimate(ctx)  # the shared ratios, as evaluate leaves them
    start = time.perf_counter()
    for estimator in estimators:
        estimator.resampling_terms(ctx)
    out["resampling terms"] = time.perf_counter() - start
    start = time.perf_counter()
    resampled = intervals.bootstrap_estimates(estimators, ctx, n_bootstrap, seed=0)
    total = time.perf_counter() - start
    out["products + renormalisation"] = total - out["draw counts"] - out["resampling terms"]
    start = time.perf_counter()
    for values in resampled:
        np.quantile(values, [0.025, 0.975], axis=1)
    out["percentiles"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-bootstrap", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per cell")
    parser.add_argument("--only-all", action="store_true", help="only the row of all seven estimators")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "intervals.md")
    args = parser.parse_args()
    threadpool_limits(args.threads)
    layouts = [(100_000, 10), (50_000, 20)]
    rows = [] if args.only_all else list(BACKBONE)
    rows.append("all 7")
    results: dict[tuple[int, int, str, int], tuple[float, float]] = {}
    stages: dict[tuple[int, int, int], dict[str, float]] = {}
    for n, H in layouts:
        ds, inputs = synthetic_case(n, H)
        _ = ds.discounted_rewards, ds.returns  # dataset-level caches, built once per dataset in real use
        evaluate(ds, inputs, ["tis"], interval="bootstrap", n_bootstrap=2)  # warm-up
        for B in args.n_bootstrap:
            for row in rows:
                names = list(BACKBONE) if row == "all 7" else [row]
                call = lambda: evaluate(ds, inputs, names, interval="bootstrap", n_bootstrap=B)  # noqa: E731
                runs = [measured(call) for _ in range(args.repeats)]
                results[n, H, row, B] = (min(r[0] for r in runs), max(r[1] for r in runs))
            if hasattr(intervals, "bootstrap_estimates"):
                stages[n, H, B] = breakdown(ds, inputs, B)
        del ds, inputs
    header = ["estimators", *(f"{n:,} × {H}, B = {B}" for n, H in layouts for B in args.n_bootstrap)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"**{row}**" if row == "all 7" else row]
        for n, H in layouts:
            for B in args.n_bootstrap:
                seconds, mb = results[n, H, row, B]
                cells.append(f"{seconds:.2f} s, {mb:.0f} MB")
        lines.append("| " + " | ".join(cells) + " |")
    if stages:
        names = list(next(iter(stages.values())))
        lines += ["", "| all 7: stage | " + " | ".join(header[1:]) + " |", "|" + "---|" * len(header)]
        for stage in names:
            cells = [stage] + [f"{stages[n, H, B][stage]:.2f} s" for n, H in layouts for B in args.n_bootstrap]
            lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    pools = threadpool_info()
    blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i['num_threads']} thread(s))" for i in pools)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}, "
        f"numpy {np.__version__}, {blas}; load average at the end {os.getloadavg()[0]:.2f}"
    )
    command = "python benchmarks/intervals.py"
    if args.n_bootstrap != [200, 1000]:
        command += " --n-bootstrap " + " ".join(map(str, args.n_bootstrap))
    command += "" if args.threads == 1 else f" --threads {args.threads}"
    command += "" if args.repeats == 2 else f" --repeats {args.repeats}"
    command += " --only-all" if args.only_all else ""
    print(f"{command} ({machine})")
    if args.out.name != "-":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# Bootstrap intervals: 10 policies × 10^6 logged transitions\n\n"
            f"Command: `{command}` ({machine}).\n"
            "Each cell: `opelab.ope.evaluate(..., interval=\"bootstrap\", n_bootstrap=B)`, "
            f"best of {args.repeats}, with a fresh\n"
            "context (point estimates and input checks included): wall time, and the peak resident memory above\n"
            "the process's memory before the call (inputs: about 420 MB). Goal: all 7 ≤ 5 s.\n\n" + table + "\n"
        )


if __name__ == "__main__":
    main()
