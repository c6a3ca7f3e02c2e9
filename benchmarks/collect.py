"""Throughput of tabular data collection (``opelab.collect``), vectorized across trajectories.

Collects 10^6 transitions on three tasks and reports transitions per second (best of ``--repeats``):
a random 10-state MDP without terminal states (100,000 trajectories × horizon 10), the same with
100 states (larger transition rows), and the gridworld (variable-length episodes, horizon 20).

    python benchmarks/collect.py           # prints a table, writes benchmarks/results/collect.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from opelab.envs import TabularMDP, collect, gridworld
from opelab.policies import SoftmaxPolicy, TabularQ


def case(task: TabularMDP, n: int, repeats: int) -> tuple[float, int]:
    behavior = SoftmaxPolicy(TabularQ(task.optimal_q()), 1.0, name="behavior")
    best, transitions = np.inf, 0
    for r in range(repeats):
        start = time.perf_counter()
        ds = collect(task, behavior, n, seed=r)
        best = min(best, time.perf_counter() - start)
        transitions = ds.n_transitions
    return best, transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "collect.md")
    args = parser.parse_args()
    cases = [
        ("random S=10, A=3, H=10", TabularMDP.random(10, 3, horizon=10, gamma=0.95, seed=0, reward_noise=0.1), 100_000),
        ("random S=100, A=5, H=10", TabularMDP.random(100, 5, horizon=10, gamma=0.95, seed=0, reward_noise=0.1), 100_000),
        ("gridworld (variable length), H=20", gridworld(horizon=20), 60_000),
    ]
    lines = ["| task | trajectories | transitions | seconds | transitions/s |", "|---|---|---|---|---|"]
    for label, task, n in cases:
        seconds, transitions = case(task, n, args.repeats)
        lines.append(f"| {label} | {n:,} | {transitions:,} | {seconds:.2f} | {transitions / seconds:,.0f} |")
    table = "\n".join(lines)
    print(table)
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Tabular data collection throughput\n\n"
        f"Command: `python benchmarks/collect.py --repeats {args.repeats}` ({machine}; best of {args.repeats}).\n"
        "Includes building and validating the `LoggedDataset`.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
